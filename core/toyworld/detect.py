"""A toy-world object detector that knows only the documented palette, not the model.

Frames of the toy world (:mod:`core.toyworld.world`) are flat shapes with a darker outline on one flat
background. The detector:

1. takes the background as the palette background (``BACKGROUNDS``) nearest to the median colour of
   the frame's border pixels;
2. marks a pixel as foreground when it is farther than ``FOREGROUND_DISTANCE`` (RGB Euclidean,
   0-255 scale) from that background colour;
3. labels each foreground pixel with the nearest palette entry among the eight fills and their
   outlines (outline-like pixels, including anti-aliased edges, get no colour of their own);
4. splits each fill colour's pixels into 8-connected components (``scipy.ndimage.label``) and keeps
   those of at least ``MIN_PIXELS`` pixels that survive a 3x3 erosion (so one-pixel strips of
   blended edge colours are not objects);
5. boxes each component with its outline: the component grown by up to two pixels into the
   foreground, and on, up to ``REACH`` times as far, through the pixels that belong to it rather
   than to the background or another object (a geodesic dilation): no fill, nearer in RGB to its
   own fill or outline colour than to the background (half coverage, as a rasteriser decides a
   pixel), and nearer its fill than any other object's. That reaches the outline and anti-aliased
   edge of thin parts, such as a star's points, whose fill ends short of the tip, and leaves out a
   blurred render's soft ring where it is mostly background. Both scale with the frame: the
   outline is drawn 1/48 of the frame thick, so on a 128-pixel frame the growth is four pixels, the
   reach twelve, and the least component 24 pixels (``scale = side / 64``: growth
   ``round(2 * scale)``, at least 2; ``MIN_PIXELS * scale^2``). A detection has a colour, an xyxy
   box normalised to [0, 1], its pixel count and mean RGB.

On frames drawn by :func:`core.toyworld.world.render_frame` the box is exact for solid shapes (balls,
squares: up to the one-pixel box-filter border) and for stars up to their drawing (a star's points
span 0.95 of its box): single stars of sides 0.12-0.6 get a mean IoU of 0.79 at 128 pixels
(``benchmarks/detector_exactness.py --size 128`` measures each kind), where the two-pixel growth
alone gave 0.58 and so failed AP50's IoU 0.5 on exact drawings. Stars and rings drawn smaller than
about 0.2 of the frame often have no 3x3 core and are missed. It is deliberately strict on
rendered frames: an object rendered in two colours becomes two partial detections, which costs both
box IoU and colour accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from core.toyworld.world import BACKGROUNDS, COLORS, OUTLINE_SCALE

FOREGROUND_DISTANCE = 40.0
MIN_PIXELS = 6
REACH = 3  # how far the box follows an object's own outline and edge pixels, in outline growths

_NAMES = list(COLORS)
_PALETTE = np.array([COLORS[c] for c in _NAMES] + [[v * OUTLINE_SCALE for v in COLORS[c]] for c in _NAMES], dtype=np.float32)
_PALETTE_LABEL = np.array(list(range(len(_NAMES))) * 2)


@dataclass(frozen=True)
class Detection:
    """One detected object.

    Attributes:
        color: a key of ``core.toyworld.world.COLORS``.
        box: (x0, y0, x1, y1) normalised to [0, 1], origin top left, pixel-edge coordinates.
        pixels: number of pixels in the component.
        mean_rgb: mean colour of those pixels, 0-255.
    """

    color: str
    box: tuple[float, float, float, float]
    pixels: int
    mean_rgb: tuple[float, float, float]


def frame_background(frame: np.ndarray) -> str:
    """The palette background nearest to the median colour of the frame's one-pixel border.

    Args:
        frame: (H, W, 3) uint8.
    """
    border = np.concatenate([frame[0], frame[-1], frame[:, 0], frame[:, -1]]).astype(np.float32)
    median = np.median(border, axis=0)
    names = list(BACKGROUNDS)
    distances = [np.linalg.norm(median - np.array(BACKGROUNDS[n], dtype=np.float32)) for n in names]
    return names[int(np.argmin(distances))]


def detect(frame: np.ndarray, *, background: str | None = None) -> list[Detection]:
    """Detect the coloured shapes of one frame (see the module docstring).

    Args:
        frame: (H, W, 3) uint8 RGB.
        background: a key of ``BACKGROUNDS``; None estimates it from the border.

    Returns:
        Detections sorted by pixel count, largest first.

    Raises:
        ValueError: a frame that is not (H, W, 3) uint8, or an unknown background.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame: must be (H, W, 3) uint8 (got {frame.shape} {frame.dtype})")
    background = background or frame_background(frame)
    if background not in BACKGROUNDS:
        raise ValueError(f"background: must be one of {', '.join(BACKGROUNDS)} (got {background!r})")
    height, width, _ = frame.shape
    scale = max(height, width) / 64
    grow, min_pixels = max(2, round(2 * scale)), max(MIN_PIXELS, round(MIN_PIXELS * scale**2))
    pixels = frame.astype(np.float32)
    to_background = np.linalg.norm(pixels - np.array(BACKGROUNDS[background], dtype=np.float32), axis=-1)  # (H, W)
    to_palette = np.linalg.norm(pixels[..., None, :] - _PALETTE, axis=-1)  # (H, W, 16): the fills, then their outlines
    foreground = to_background > FOREGROUND_DISTANCE
    nearest = to_palette.argmin(-1)  # (H, W) palette index
    is_fill = foreground & (nearest < len(_NAMES))
    square = np.ones((3, 3), dtype=bool)
    objects: list[tuple[str, np.ndarray]] = []  # (colour, component mask) of every accepted component
    for index, name in enumerate(_NAMES):
        fill = is_fill & (nearest == index)
        solid = ndimage.binary_erosion(fill, structure=square)
        components, count = ndimage.label(fill, structure=square)
        for component in range(1, count + 1):
            mask = components == component
            if mask.sum() >= min_pixels and (solid & mask).any():  # specks and one-pixel strips are anti-aliased edges
                objects.append((name, mask))
    if not objects:
        return []
    owner = np.zeros((height, width), dtype=np.int32)  # 1 + index of the object whose fill is nearest
    for number, (_, mask) in enumerate(objects, start=1):
        owner[mask] = number
    rows_of, cols_of = ndimage.distance_transform_edt(owner == 0, return_distances=False, return_indices=True)
    owner = owner[rows_of, cols_of]
    detections = []
    for number, (name, mask) in enumerate(objects, start=1):
        index = _NAMES.index(name)
        outline = ndimage.binary_dilation(mask, structure=square, iterations=grow) & foreground
        more_object = np.minimum(to_palette[..., index], to_palette[..., index + len(_NAMES)]) < to_background  # half-coverage
        own = more_object & (owner == number) & ~(is_fill & ~mask)  # edge pixels of this object, nearer it than any other
        edges = ndimage.binary_dilation(mask, structure=square, iterations=REACH * grow, mask=own)  # geodesic: thin points
        extent = outline | edges
        rows, cols = np.flatnonzero(extent.any(1)), np.flatnonzero(extent.any(0))
        mean = pixels[mask].mean(axis=0)
        detections.append(
            Detection(
                color=name,
                box=(float(cols[0] / width), float(rows[0] / height), float((cols[-1] + 1) / width), float((rows[-1] + 1) / height)),
                pixels=int(mask.sum()),
                mean_rgb=(float(mean[0]), float(mean[1]), float(mean[2])),
            )
        )
    return sorted(detections, key=lambda d: -d.pixels)


def box_iou(a, b) -> float:
    """IoU of two xyxy boxes (any consistent units); 0 when they do not overlap."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
