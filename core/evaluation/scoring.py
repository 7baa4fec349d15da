"""Measured layout control: render prompts, detect objects, score them against the plan.

    python launch.py eval PROMPTS.jsonl --out DIR [--variant full|no-graph|no-layout|training-free] [--limit N]

Every prompt is planned with the offline ``rules`` planner and rendered; every frame goes through the
palette detector of :mod:`core.toyworld.detect` (independent of the model); each on-screen planned entity is
matched to at most one detection per frame (Hungarian assignment on box IoU, scipy). The metrics,
in the spirit of VPEval / ActionBench-Direction / Peekaboo's box IoU (all in [0, 1] except
``seconds_per_video``):

- ``box_miou``: mean IoU of each (entity, frame) with its matched detection (0 when unmatched).
- ``box_ap50``: class-agnostic average precision at IoU 0.5 over all frames (detections ranked by
  pixel count, all-point interpolation as in PASCAL VOC 2010+).
- ``centroid_error``: mean distance between planned and detected box centres over matched
  (entity, frame) pairs, divided by the frame diagonal.
- ``direction_accuracy``: for each entity track whose planned centre moves at least
  ``MIN_MOTION`` along its main axis, whether the detected centre (first vs last matched frame)
  moves with the same sign on that axis.
- ``color_accuracy``: per (entity, frame): the matched detection's colour equals the colour that
  frame's scene graph gives the entity (so a colour change is scored at its frame).
- ``count_accuracy``: per frame: the number of detections equals the number of planned on-screen
  entities.
- ``consistency``: per entity id and planned colour, appearance similarity (1 - RGB distance of the
  pixel-weighted mean colour / the RGB cube diagonal) between the scenes it appears in with that
  colour; one that appears in one scene compares its first and last matched frames. Keying by the
  planned colour keeps a colour change the plan asks for (scored by ``color_accuracy``) from
  counting as a change of identity.
- ``plan_check_pass_rate``: the prompt file's ``checks`` scored against the plan (:mod:`core.evaluation.checks`);
  ``plan_checks`` says how many were scored (a file without ``checks`` gives 0 of 0, rate 0).
- ``seconds_per_video``: mean wall-clock render time.
- ``color_change_accuracy``: ``color_accuracy`` over the ``color_change_videos`` whose plan changes
  an entity's colour (where the scene graph matters most).
- ``kind_accuracy``: per (entity, frame) whose planned kind is a toy-world kind: the matched
  detection's shape, by the nearest-template classifier of :mod:`core.toyworld.shapes` (>= 0.98 on the
  world's own drawings), is the planned kind (unmatched counts as wrong, as for colour);
  ``kind_accuracy_by_kind`` splits it by planned kind.
- ``background_accuracy``: per frame: the palette background nearest the median of the frame's
  border (:func:`core.toyworld.detect.frame_background`) is the scene's planned background.
- ``overlap_separation``: per (frame, pair of on-screen entities whose planned boxes intersect):
  both entities are matched to their own detection (two distinct objects) in their planned colours,
  i.e. the overlapping objects were drawn apart rather than fused into one blob or one colour;
  ``overlap_pairs`` says how many such (frame, pair)s were scored (0 when no boxes overlap, and the
  metric is then 0). On the toy world's exact drawings (the later entity drawn in front) it is 1
  wherever the one behind keeps a visible part.
- ``overlap_depth_accuracy``: per (frame, pair of on-screen entities of different planned colours
  whose planned shapes, each drawn alone in its planned box, share at least ``MIN_CONTESTED`` pixels
  at 64x64 (scaled by area)): among those contested pixels, more are nearest the planned colour of
  the entity later in the scene's order (the one in front, as the toy world draws it and as the
  layout's depth order asks) than that of the one behind. ``overlap_depth_pairs`` says how many were
  scored (0 when none, and the metric is then 0). Exact drawings score 1.
- ``frame_size``: the rendered frames' [height, width] in pixels (of the first video; the list of
  every size seen when the videos differ).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from core.plan import VideoPlan, interpolate_boxes
from core.scene_graph import entity_colors
from core.toyworld.detect import Detection, box_iou, detect, frame_background
from core.toyworld.shapes import classify
from core.toyworld.world import BACKGROUNDS, KINDS

MIN_MOTION = 0.1  # fraction of the frame along the main axis for a track to count as moving
MIN_CONTESTED = 4  # pixels (at 64x64) two planned shapes must share for their depth order to be scored


METRIC_KEYS = (
    "videos", "box_miou", "box_ap50", "centroid_error", "direction_accuracy", "color_accuracy",
    "count_accuracy", "consistency", "plan_check_pass_rate", "seconds_per_video", "kind_accuracy", "background_accuracy",
    "overlap_separation", "overlap_depth_accuracy",
)


@dataclass
class EntityFrame:
    """One planned (entity, frame) and what the detector matched to it."""

    entity_id: str
    scene: int
    frame: int
    planned_box: tuple[float, float, float, float]
    planned_color: str | None
    detection: Detection | None
    planned_kind: str | None = None  # a key of KINDS, or None for a kind outside the toy world
    detected_kind: str | None = None  # the classifier's kind of the matched detection

    @property
    def iou(self) -> float:
        return box_iou(self.planned_box, self.detection.box) if self.detection else 0.0


@dataclass
class VideoScore:
    """Per-video matches and counts, the raw material of :func:`aggregate`."""

    prompt: str
    entity_frames: list[EntityFrame] = field(default_factory=list)
    ranked: list[tuple[float, bool]] = field(default_factory=list)  # (score, true positive at IoU 0.5)
    num_planned: int = 0
    count_hits: list[bool] = field(default_factory=list)
    directions: list[bool] = field(default_factory=list)
    similarities: list[float] = field(default_factory=list)
    checks: list[bool] = field(default_factory=list)
    seconds: float = 0.0
    detections: list[list[Detection]] = field(default_factory=list)  # per global frame
    color_change: bool = False  # the plan changes some entity's colour
    background_hits: list[bool] = field(default_factory=list)  # per frame, for scenes with a palette background
    frame_size: tuple[int, int] = (0, 0)  # (height, width)
    overlap_hits: list[bool] = field(default_factory=list)  # per (frame, pair of entities with intersecting planned boxes)
    depth_hits: list[bool] = field(default_factory=list)  # per (frame, pair of differently coloured entities whose shapes overlap)


def match(planned: list[tuple[float, float, float, float]], detections: list[Detection], planned_colors: list[str | None]) -> list[int | None]:
    """Hungarian assignment of planned boxes to detections, maximising IoU (colour breaks ties).

    Returns:
        For each planned box, the index of its detection, or None (no detection overlaps it).
    """
    if not planned or not detections:
        return [None] * len(planned)
    gain = np.array([[box_iou(p, d.box) + (0.01 if d.color == c else 0.0) for d in detections] for p, c in zip(planned, planned_colors)])
    rows, cols = linear_sum_assignment(-gain)
    out: list[int | None] = [None] * len(planned)
    for r, c in zip(rows, cols):
        if box_iou(planned[r], detections[c].box) > 0:
            out[r] = int(c)
    return out


def average_precision(ranked: list[tuple[float, bool]], num_ground_truth: int) -> float:
    """All-point interpolated AP from (score, is true positive) pairs and the number of ground truths."""
    if num_ground_truth == 0:
        return 0.0
    ranked = sorted(ranked, key=lambda item: -item[0])
    tp = np.cumsum([hit for _, hit in ranked])
    fp = np.cumsum([not hit for _, hit in ranked])
    recall = np.concatenate([[0.0], tp / num_ground_truth])
    precision = np.concatenate([[1.0], tp / np.maximum(tp + fp, 1)])
    for i in range(len(precision) - 2, -1, -1):  # precision envelope
        precision[i] = max(precision[i], precision[i + 1])
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


def _ap_pairs(planned: list[tuple[float, float, float, float]], detections: list[Detection]) -> list[tuple[float, bool]]:
    """Greedy PASCAL matching at IoU 0.5, detections in order of pixel count."""
    taken = [False] * len(planned)
    pairs = []
    for det in sorted(detections, key=lambda d: -d.pixels):
        best, best_iou = None, 0.5
        for i, box in enumerate(planned):
            iou = box_iou(box, det.box)
            if not taken[i] and iou >= best_iou:
                best, best_iou = i, iou
        if best is not None:
            taken[best] = True
        pairs.append((float(det.pixels), best is not None))
    return pairs


def score_video(plan: VideoPlan, frames: np.ndarray, *, checks: list[dict] | None = None, seconds: float = 0.0) -> VideoScore:
    """Detect and match every frame of a rendered plan.

    Args:
        plan: the plan the video was rendered from.
        frames: (sum of num_frames, H, W, 3) uint8, scenes in order.
        checks: the prompt line's ``checks`` (scored against the plan), if any.
    """
    from core.evaluation.checks import check_plan

    score = VideoScore(prompt=plan.prompt, seconds=seconds, frame_size=(int(frames.shape[1]), int(frames.shape[2])))
    kinds = {e.id: (e.kind if e.kind in KINDS else None) for e in plan.entities}
    score.color_change = any(len(set(c)) > 1 for scene in plan.scenes for c in entity_colors(plan, scene).values())
    offset = 0
    appearance: dict[tuple[str, str | None], list[list[tuple[np.ndarray, int]]]] = {}  # (entity, colour) -> per scene [(mean rgb, pixels)]
    for s, scene in enumerate(plan.scenes):
        ids = scene.entity_ids()
        boxes, masks = interpolate_boxes(scene, ids)
        colors = entity_colors(plan, scene)
        tracks: dict[str, list[EntityFrame]] = {e: [] for e in ids}
        for f in range(scene.num_frames):
            frame = frames[offset + f]
            background = frame_background(frame)
            if scene.background in BACKGROUNDS:
                score.background_hits.append(background == scene.background)
            detections = detect(frame, background=background)
            score.detections.append(detections)
            present = [n for n in range(len(ids)) if masks[f, n]]
            planned = [tuple(float(v) for v in boxes[f, n]) for n in present]
            planned_colors = [colors[ids[n]][f] for n in present]
            matched = match(planned, detections, planned_colors)
            score.overlap_hits.extend(_overlap_hits(planned, planned_colors, [detections[i] if i is not None else None for i in matched]))
            score.depth_hits.extend(_depth_hits(frame, scene.background, planned, planned_colors, [kinds.get(ids[n]) for n in present]))
            for n, box, color, index in zip(present, planned, planned_colors, matched):
                detection = detections[index] if index is not None else None
                kind = kinds.get(ids[n])
                seen_kind = classify(frame, detection, background=background).kind if detection is not None and kind else None
                item = EntityFrame(ids[n], s, f, box, color, detection, planned_kind=kind, detected_kind=seen_kind)
                score.entity_frames.append(item)
                tracks[ids[n]].append(item)
            score.ranked.extend(_ap_pairs(planned, detections))
            score.num_planned += len(planned)
            score.count_hits.append(len(detections) == len(planned))
        for entity_id, track in tracks.items():
            if track:
                score.directions.extend(_direction(track))
                for color in dict.fromkeys(t.planned_color for t in track):
                    seen = [(np.array(t.detection.mean_rgb), t.detection.pixels) for t in track if t.detection and t.planned_color == color]
                    appearance.setdefault((entity_id, color), []).append(seen)
        offset += scene.num_frames
    for per_scene in appearance.values():
        score.similarities.append(_consistency(per_scene))
    if checks:
        score.checks = [ok for _, ok in check_plan(plan, checks)]
    return score


def _overlap_hits(planned: list[tuple[float, float, float, float]], colors: list[str | None], matched: list[Detection | None]) -> list[bool]:
    """For each pair of planned boxes of one frame that intersect (positive area): whether both got
    their own detection (``match`` assigns each detection once) in their planned colour."""
    hits = []
    for i in range(len(planned)):
        for j in range(i + 1, len(planned)):
            a, b = planned[i], planned[j]
            if min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1]):
                hits.append(all(d is not None and d.color == c for d, c in ((matched[i], colors[i]), (matched[j], colors[j]))))
    return hits


def _depth_hits(
    frame: np.ndarray, background: str, planned: list[tuple[float, float, float, float]], colors: list[str | None], kinds: list[str | None]
) -> list[bool]:
    """Depth order where two planned shapes overlap (see ``overlap_depth_accuracy`` in the module docstring).

    Args:
        frame: (H, W, 3) uint8, the rendered frame.
        background: the scene's planned background (a pair is skipped unless it is a palette background).
        planned, colors, kinds: per on-screen entity in the scene's order (later = in front): xyxy box in
            [0, 1], planned colour name, toy-world kind (None for others; such pairs are skipped).

    Returns:
        One bool per scored pair: the front entity's colour holds more of the contested pixels.
    """
    from core.toyworld.world import COLORS, OUTLINE_SCALE, ToyObject, render_frame

    if background not in BACKGROUNDS or frame.shape[0] != frame.shape[1]:  # toy-world drawings are square
        return []
    size = frame.shape[0]
    scorable = [n for n in range(len(planned)) if kinds[n] in KINDS and colors[n] in COLORS]
    masks: dict[int, np.ndarray] = {}

    def shape_mask(n: int) -> np.ndarray:  # the planned shape drawn alone: pixels that differ from the background
        if n not in masks:
            alone = render_frame(background, [ToyObject(kinds[n], colors[n], planned[n])], size).astype(np.int16)
            masks[n] = np.abs(alone - np.array(BACKGROUNDS[background], dtype=np.int16)).sum(-1) > 30
        return masks[n]

    names = list(COLORS)
    palette = np.array([COLORS[c] for c in names] + [[v * OUTLINE_SCALE for v in COLORS[c]] for c in names], dtype=np.float32)
    min_pixels = max(1, round(MIN_CONTESTED * (size / 64) ** 2))
    hits = []
    for a, i in enumerate(scorable):
        for j in scorable[a + 1:]:
            box_i, box_j = planned[i], planned[j]
            if colors[i] == colors[j] or not (min(box_i[2], box_j[2]) > max(box_i[0], box_j[0]) and min(box_i[3], box_j[3]) > max(box_i[1], box_j[1])):
                continue
            contested = shape_mask(i) & shape_mask(j)
            if contested.sum() < min_pixels:
                continue
            nearest = np.linalg.norm(frame[contested].astype(np.float32)[:, None, :] - palette, axis=-1).argmin(-1) % len(names)
            front, behind = (nearest == names.index(colors[j])).sum(), (nearest == names.index(colors[i])).sum()
            hits.append(bool(front > behind))
    return hits


def draw_plan(plan: VideoPlan, size: int = 64) -> np.ndarray:
    """The toy world's exact rendering of a plan: every on-screen entity drawn as its kind, in the
    colour its scene graph gives it at that frame, filling its interpolated box, on the scene's
    background (:func:`core.toyworld.world.render_frame`). The oracle video for a toy-world plan.

    Args:
        plan: a plan whose entity kinds and backgrounds are toy-world names.
        size: frame side in pixels.

    Returns:
        (sum of num_frames, size, size, 3) uint8, scenes in order.

    Raises:
        ValueError: a kind, colour or background outside the toy world's palette (from render_frame).
    """
    from core.toyworld.world import ToyObject, render_frame

    kinds = {e.id: e.kind for e in plan.entities}
    frames = []
    for scene in plan.scenes:
        ids = scene.entity_ids()
        boxes, masks = interpolate_boxes(scene, ids)
        colors = entity_colors(plan, scene)
        for f in range(scene.num_frames):
            objects = [ToyObject(kinds[e], colors[e][f], tuple(float(v) for v in boxes[f, n])) for n, e in enumerate(ids) if masks[f, n]]
            frames.append(render_frame(scene.background, objects, size))
    return np.stack(frames)


def _centre(box) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _direction(track: list[EntityFrame]) -> list[bool]:
    """[] for a static track, else [whether the detected motion has the planned sign on the main axis]."""
    planned = _centre(track[-1].planned_box) - _centre(track[0].planned_box)
    axis = int(np.argmax(np.abs(planned)))
    if abs(planned[axis]) < MIN_MOTION:
        return []
    seen = [t for t in track if t.detection]
    if len(seen) < 2:
        return [False]
    moved = _centre(seen[-1].detection.box) - _centre(seen[0].detection.box)
    return [bool(np.sign(moved[axis]) == np.sign(planned[axis]) and moved[axis] != 0)]


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    return float(1 - np.linalg.norm(a - b) / (255 * math.sqrt(3)))


def _consistency(per_scene: list[list[tuple[np.ndarray, int]]]) -> float:
    """Appearance similarity of one entity across its scenes (or first vs last frame in one scene)."""
    if len(per_scene) >= 2:
        means = []
        for items in per_scene:
            if not items:
                return 0.0
            weights = np.array([p for _, p in items], dtype=float)
            means.append(np.average(np.stack([m for m, _ in items]), axis=0, weights=weights))
        pairs = [(i, j) for i in range(len(means)) for j in range(i + 1, len(means))]
        return float(np.mean([_similarity(means[i], means[j]) for i, j in pairs]))
    items = per_scene[0]
    if len(items) < 2:
        return 0.0
    return _similarity(items[0][0], items[-1][0])


def aggregate(scores: list[VideoScore]) -> dict[str, float]:
    """The metrics of the module docstring over a list of scored videos (every value a float or int,
    except ``kind_accuracy_by_kind``, a dict of kind to float, and ``frame_size``, a list)."""
    entity_frames = [e for s in scores for e in s.entity_frames]
    matched = [e for e in entity_frames if e.detection]
    ranked = [pair for s in scores for pair in s.ranked]

    def mean(values) -> float:
        values = list(values)
        return float(np.mean(values)) if values else 0.0

    sizes = list(dict.fromkeys(s.frame_size for s in scores))
    by_kind = {
        kind: mean(e.detected_kind == kind for e in entity_frames if e.planned_kind == kind)
        for kind in KINDS if any(e.planned_kind == kind for e in entity_frames)
    }
    return {
        "videos": len(scores),
        "box_miou": mean(e.iou for e in entity_frames),
        "box_ap50": average_precision(ranked, sum(s.num_planned for s in scores)),
        "centroid_error": mean(np.linalg.norm(_centre(e.planned_box) - _centre(e.detection.box)) / math.sqrt(2) for e in matched),
        "direction_accuracy": mean(d for s in scores for d in s.directions),
        "color_accuracy": mean(bool(e.detection and e.detection.color == e.planned_color) for e in entity_frames if e.planned_color),
        "count_accuracy": mean(h for s in scores for h in s.count_hits),
        "consistency": mean(x for s in scores for x in s.similarities),
        "plan_check_pass_rate": mean(c for s in scores for c in s.checks),
        "plan_checks": sum(len(s.checks) for s in scores),
        "seconds_per_video": mean(s.seconds for s in scores),
        "color_change_videos": sum(s.color_change for s in scores),
        "color_change_accuracy": mean(
            bool(e.detection and e.detection.color == e.planned_color) for s in scores if s.color_change for e in s.entity_frames if e.planned_color
        ),
        "kind_accuracy": mean(e.detected_kind == e.planned_kind for e in entity_frames if e.planned_kind),
        "kind_accuracy_by_kind": by_kind,
        "background_accuracy": mean(h for s in scores for h in s.background_hits),
        "overlap_separation": mean(h for s in scores for h in s.overlap_hits),
        "overlap_pairs": sum(len(s.overlap_hits) for s in scores),
        "overlap_depth_accuracy": mean(h for s in scores for h in s.depth_hits),
        "overlap_depth_pairs": sum(len(s.depth_hits) for s in scores),
        "frame_size": list(sizes[0]) if len(sizes) == 1 else [list(size) for size in sizes],
    }
