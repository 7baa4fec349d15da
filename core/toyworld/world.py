"""The procedural toy world the shipped model is trained on.

Flat coloured shapes with a dark outline on flat backgrounds. Everything here is documented so that
an evaluator can segment frames against the same palette without looking inside the model.

Boxes are xyxy normalised to [0, 1] with the origin at the top left. A shape fills its box (a ball in
a wide box is an ellipse). Frames are ``numpy.ndarray`` of shape (H, W, 3), dtype uint8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

KINDS: tuple[str, ...] = ("ball", "square", "triangle", "star", "heart", "ring", "diamond", "cross")

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (245, 220, 40),
    "green": (40, 200, 70),
    "blue": (40, 90, 235),
    "purple": (140, 60, 200),
    "pink": (250, 130, 200),
    "white": (250, 250, 250),
}

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "sky": (150, 200, 240),
    "grass": (90, 130, 60),
    "desert": (210, 180, 125),
    "night": (20, 25, 60),
    "ocean": (25, 85, 130),
    "snow": (200, 210, 222),
}

OUTLINE_SCALE = 0.45  # outline colour = fill colour * OUTLINE_SCALE
SUPERSAMPLE = 4


@dataclass(frozen=True)
class ToyObject:
    """One shape in one frame: its kind, colour name and xyxy box in [0, 1]."""

    kind: str
    color: str
    box: tuple[float, float, float, float]


def _polygon(kind: str, x0: float, y0: float, x1: float, y1: float) -> list[tuple[float, float]]:
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    if kind == "triangle":
        return [(cx, y0), (x1, y1), (x0, y1)]
    if kind == "diamond":
        return [(cx, y0), (x1, cy), (cx, y1), (x0, cy)]
    if kind == "star":
        points = []
        for i in range(10):
            radius = 0.5 if i % 2 == 0 else 0.2
            angle = -math.pi / 2 + i * math.pi / 5
            points.append((cx + radius * w * math.cos(angle) / 1.0, cy + radius * h * math.sin(angle) / 0.95 + 0.03 * h))
        return points
    if kind == "heart":
        points = []
        for i in range(48):
            t = 2 * math.pi * i / 48
            px = 16 * math.sin(t) ** 3
            py = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            points.append((cx + px / 34 * w, cy - (py + 2.5) / 31 * h))
        return points
    if kind == "cross":
        a, b = 0.34, 0.66
        xs = [x0 + w * f for f in (0, a, b, 1)]
        ys = [y0 + h * f for f in (0, a, b, 1)]
        return [
            (xs[1], ys[0]), (xs[2], ys[0]), (xs[2], ys[1]), (xs[3], ys[1]), (xs[3], ys[2]), (xs[2], ys[2]),
            (xs[2], ys[3]), (xs[1], ys[3]), (xs[1], ys[2]), (xs[0], ys[2]), (xs[0], ys[1]), (xs[1], ys[1]),
        ]
    raise ValueError(f"kind: must be one of {', '.join(KINDS)} (got {kind!r})")


def _draw_shape(draw: ImageDraw.ImageDraw, obj: ToyObject, size: int) -> None:
    fill = COLORS[obj.color]
    outline = tuple(int(c * OUTLINE_SCALE) for c in fill)
    x0, y0, x1, y1 = (v * size for v in obj.box)
    width = max(1, size // 48)
    if obj.kind == "ball":
        draw.ellipse([x0, y0, x1, y1], fill=fill, outline=outline, width=width)
    elif obj.kind == "square":
        draw.rectangle([x0, y0, x1, y1], fill=fill, outline=outline, width=width)
    elif obj.kind == "ring":
        draw.ellipse([x0, y0, x1, y1], fill=fill, outline=outline, width=width)
        inset_x, inset_y = (x1 - x0) * 0.28, (y1 - y0) * 0.28
        draw.ellipse([x0 + inset_x, y0 + inset_y, x1 - inset_x, y1 - inset_y], fill=None, outline=outline, width=width)
    else:
        draw.polygon(_polygon(obj.kind, x0, y0, x1, y1), fill=fill, outline=outline, width=width)


def render_frame(background: str, objects: list[ToyObject], size: int = 64) -> np.ndarray:
    """Draw one toy-world frame.

    Args:
        background: a key of ``BACKGROUNDS``.
        objects: shapes drawn in order (later ones on top).
        size: output side in pixels.

    Returns:
        ``numpy.ndarray`` of shape (size, size, 3), dtype uint8.

    Raises:
        ValueError: unknown background, kind or colour.
    """
    if background not in BACKGROUNDS:
        raise ValueError(f"background: must be one of {', '.join(BACKGROUNDS)} (got {background!r})")
    big = size * SUPERSAMPLE
    image = Image.new("RGB", (big, big), BACKGROUNDS[background])
    draw = ImageDraw.Draw(image)
    for obj in objects:
        if obj.color not in COLORS:
            raise ValueError(f"color: must be one of {', '.join(COLORS)} (got {obj.color!r})")
        _draw_shape(draw, obj, big)
    # The ring's hole shows the background: redraw it after the outline pass.
    for obj in objects:
        if obj.kind == "ring":
            x0, y0, x1, y1 = (v * big for v in obj.box)
            ix, iy = (x1 - x0) * 0.28 + SUPERSAMPLE, (y1 - y0) * 0.28 + SUPERSAMPLE
            if x1 - x0 > 2 * ix and y1 - y0 > 2 * iy:
                draw.ellipse([x0 + ix, y0 + iy, x1 - ix, y1 - iy], fill=BACKGROUNDS[background])
    return np.asarray(image.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# Random clips for training
# --------------------------------------------------------------------------------------------

MOTION_WORDS = {
    (1, 0): ["moves right", "slides to the right", "rolls right", "drifts right"],
    (-1, 0): ["moves left", "slides to the left", "rolls left", "drifts left"],
    (0, 1): ["falls", "moves down", "drops"],
    (0, -1): ["rises", "moves up", "flies up"],
}


@dataclass
class ToyTrack:
    """One entity's appearance over a clip: per-frame colour and box (None where absent)."""

    kind: str
    colors: list[str]
    boxes: list[tuple[float, float, float, float] | None]


@dataclass
class ToyClip:
    """A random training clip: frames plus the layout and caption that generated them."""

    background: str
    caption: str
    tracks: list[ToyTrack]
    frames: np.ndarray = field(repr=False)  # (F, H, W, 3) uint8


def _random_box(rng: np.random.Generator, side: float) -> np.ndarray:
    w = side * rng.uniform(0.8, 1.25)
    h = side * rng.uniform(0.8, 1.25)
    w, h = min(w, 0.9), min(h, 0.9)
    x0 = rng.uniform(0.0, 1.0 - w)
    y0 = rng.uniform(0.0, 1.0 - h)
    return np.array([x0, y0, x0 + w, y0 + h])


def _sample_track(rng: np.random.Generator, num_frames: int, min_side: float) -> tuple[ToyTrack, str]:
    kind = str(rng.choice(KINDS))
    color = str(rng.choice(list(COLORS)))
    side = rng.uniform(min_side, 0.42)
    start = _random_box(rng, side)
    motion = rng.choice(["static", "move", "move", "move", "grow", "shrink"])
    end = start.copy()
    phrase = ""
    if motion == "move":
        end = _random_box(rng, side)
        if rng.random() < 0.6:  # mostly along one axis, as prompts describe
            axis = int(rng.integers(2))
            end[[1 - axis, 3 - axis]] = start[[1 - axis, 3 - axis]]
        delta = (end[:2] + end[2:] - start[:2] - start[2:]) / 2
        axis = int(np.argmax(np.abs(delta)))
        direction = (int(np.sign(delta[0])), 0) if axis == 0 else (0, int(np.sign(delta[1])))
        phrase = str(rng.choice(MOTION_WORDS.get(direction, ["moves"])))
    elif motion in ("grow", "shrink"):
        center = (start[:2] + start[2:]) / 2
        small, large = rng.uniform(0.12, 0.22), rng.uniform(0.35, 0.6)
        a, b = (small, large) if motion == "grow" else (large, small)
        start = np.concatenate([center - a / 2, center + a / 2]).clip(0, 1)
        end = np.concatenate([center - b / 2, center + b / 2]).clip(0, 1)
        phrase = "grows" if motion == "grow" else "shrinks"
    ts = np.linspace(0.0, 1.0, num_frames)
    boxes: list[tuple[float, float, float, float] | None] = [
        tuple(float(v) for v in (1 - t) * start + t * end) for t in ts
    ]
    colors = [color] * num_frames
    if num_frames > 1 and rng.random() < 0.25:  # colour change at a random frame
        new_color = str(rng.choice([c for c in COLORS if c != color]))
        at = int(rng.integers(1, num_frames))
        colors[at:] = [new_color] * (num_frames - at)
        phrase = (phrase + " and " if phrase else "") + f"turns {new_color}"
    if num_frames > 1 and rng.random() < 0.12:  # enter or leave
        cut = int(rng.integers(1, num_frames))
        if rng.random() < 0.5:
            boxes[:cut] = [None] * cut
            phrase = (phrase + " and " if phrase else "") + "appears"
        else:
            boxes[cut:] = [None] * (num_frames - cut)
            phrase = (phrase + " and " if phrase else "") + "disappears"
    article = "an" if color[0] in "aeiou" else "a"
    return ToyTrack(kind=kind, colors=colors, boxes=boxes), f"{article} {color} {kind} {phrase}".strip()


GROUP_VERBS = {  # MOTION_WORDS for a plural subject ("two red balls move right")
    (1, 0): ["move right", "slide to the right", "roll right", "drift right"],
    (-1, 0): ["move left", "slide to the left", "roll left", "drift left"],
    (0, 1): ["fall", "move down", "drop"],
    (0, -1): ["rise", "move up", "fly up"],
}
GROUP_GAP = (0.01, 0.12)  # gap between neighbours of a group, as a share of the frame


def plural(kind: str) -> str:
    """The plural of a toy kind: ``"cross"`` -> ``"crosses"``, ``"ball"`` -> ``"balls"``."""
    return kind + ("es" if kind.endswith(("s", "sh", "ch", "x")) else "s")


def _sample_group(rng: np.random.Generator, num_frames: int, min_side: float) -> tuple[list[ToyTrack], str]:
    """Two or three entities of one kind and colour, of one size, side by side in a row or a column
    with a gap of :data:`GROUP_GAP`, sitting still or moving together along one axis: the layout a
    planner gives "three purple squares" (one phrase per entity, as for any entity).

    Returns:
        (the tracks, the caption's subject and verb, e.g. ``"three purple squares sit"``).
    """
    count = int(rng.integers(2, 4))
    kind, color = str(rng.choice(KINDS)), str(rng.choice(list(COLORS)))
    axis = int(rng.integers(2))  # 0: a row (neighbours along x), 1: a column
    gap = rng.uniform(*GROUP_GAP)
    side = min(rng.uniform(min_side, 0.3), (0.95 - (count - 1) * gap) / count)
    span = count * side + (count - 1) * gap  # along the group's axis; ``side`` across it
    extent = np.array([span, side] if axis == 0 else [side, span])
    start = rng.uniform(0.0, 1.0 - extent)
    end = start.copy()
    verb = str(rng.choice(["sit", "sit in a row", "stand still"])) if axis == 0 else str(rng.choice(["sit", "stand in a column"]))
    move_axis = int(rng.integers(2))
    if rng.random() < 0.6 and 1.0 - extent[move_axis] >= 0.2:  # moves (where there is room to)
        end[move_axis] = rng.uniform(0.0, 1.0 - extent[move_axis])
        step = end[move_axis] - start[move_axis]
        if abs(step) < 0.1:  # too short to read as motion: go to the far side
            end[move_axis] = 0.0 if start[move_axis] > (1.0 - extent[move_axis]) / 2 else 1.0 - extent[move_axis]
            step = end[move_axis] - start[move_axis]
        direction = (int(np.sign(step)), 0) if move_axis == 0 else (0, int(np.sign(step)))
        verb = str(rng.choice(GROUP_VERBS[direction]))
    ts = np.linspace(0.0, 1.0, num_frames)
    tracks = []
    for i in range(count):
        offset = np.zeros(2)
        offset[axis] = i * (side + gap)
        boxes = []
        for t in ts:
            x0, y0 = (1 - t) * start + t * end + offset
            boxes.append((float(x0), float(y0), float(x0 + side), float(y0 + side)))
        tracks.append(ToyTrack(kind=kind, colors=[color] * num_frames, boxes=boxes))
    number = {2: "two", 3: "three"}[count]
    return tracks, f"{number} {color} {plural(kind)} {verb}"


def sample_clip(
    rng: np.random.Generator, num_frames: int = 8, size: int = 64, min_side: float = 0.18, group_share: float = 0.0
) -> ToyClip:
    """Sample a random toy clip with 1-3 entities, a background and a caption.

    Each entity's box side is drawn from [``min_side``, 0.42] of the frame (then stretched by
    0.8-1.25 per axis); growing and shrinking entities span 0.12-0.6 whatever ``min_side`` is.
    With probability ``group_share`` (in [0, 1]) the clip is instead a group of two or three
    entities of one kind and colour side by side (:func:`_sample_group`); at 0 the random stream,
    and so every clip, is that of earlier versions.

    Returns:
        ToyClip whose ``frames`` has shape (num_frames, size, size, 3), dtype uint8.
    """
    background = str(rng.choice(list(BACKGROUNDS)))
    if group_share > 0 and rng.random() < group_share:
        group, subject = _sample_group(rng, num_frames, min_side)
        tracks, phrases = tuple(group), (subject,)
    else:
        count = int(rng.choice([1, 1, 2, 2, 3]))
        tracks, phrases = zip(*(_sample_track(rng, num_frames, min_side) for _ in range(count)))
    frames = np.stack(
        [
            render_frame(
                background,
                [ToyObject(t.kind, t.colors[f], t.boxes[f]) for t in tracks if t.boxes[f] is not None],
                size,
            )
            for f in range(num_frames)
        ]
    )
    template = rng.integers(4)
    joined = " and ".join(phrases)
    caption = [
        f"{joined} on the {background}",
        f"{joined} in the {background}",
        f"the {background}: {joined}",
        f"{background}. {joined}",
    ][template]
    return ToyClip(background=background, caption=caption, tracks=list(tracks), frames=frames)
