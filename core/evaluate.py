"""Measured layout control: render prompts, detect objects, score them against the plan.

    python launch.py eval PROMPTS.jsonl --out DIR [--variant full|no-graph|no-layout|training-free] [--limit N]

Every prompt is planned with the offline ``rules`` planner and rendered; every frame goes through the
palette detector of :mod:`core.detect` (independent of the model); each on-screen planned entity is
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
- ``plan_check_pass_rate``: the prompt file's ``checks`` scored against the plan (:mod:`core.checks`);
  ``plan_checks`` says how many were scored (a file without ``checks`` gives 0 of 0, rate 0).
- ``seconds_per_video``: mean wall-clock render time.
- ``color_change_accuracy``: ``color_accuracy`` over the ``color_change_videos`` whose plan changes
  an entity's colour (where the scene graph matters most).
"""

from __future__ import annotations

import base64
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.optimize import linear_sum_assignment

from core.detect import Detection, box_iou, detect
from core.dsg import entity_colors
from core.plan import VideoPlan, atomic_write_bytes, interpolate_boxes

MIN_MOTION = 0.1  # fraction of the frame along the main axis for a track to count as moving
VARIANTS = ("full", "no-graph", "no-layout", "training-free")
METRIC_KEYS = (
    "videos", "box_miou", "box_ap50", "centroid_error", "direction_accuracy", "color_accuracy",
    "count_accuracy", "consistency", "plan_check_pass_rate", "seconds_per_video",
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
    from core.checks import check_plan

    score = VideoScore(prompt=plan.prompt, seconds=seconds)
    score.color_change = any(len(set(c)) > 1 for scene in plan.scenes for c in entity_colors(plan, scene).values())
    offset = 0
    appearance: dict[tuple[str, str | None], list[list[tuple[np.ndarray, int]]]] = {}  # (entity, colour) -> per scene [(mean rgb, pixels)]
    for s, scene in enumerate(plan.scenes):
        ids = scene.entity_ids()
        boxes, masks = interpolate_boxes(scene, ids)
        colors = entity_colors(plan, scene)
        tracks: dict[str, list[EntityFrame]] = {e: [] for e in ids}
        for f in range(scene.num_frames):
            detections = detect(frames[offset + f])
            score.detections.append(detections)
            present = [n for n in range(len(ids)) if masks[f, n]]
            planned = [tuple(float(v) for v in boxes[f, n]) for n in present]
            planned_colors = [colors[ids[n]][f] for n in present]
            matched = match(planned, detections, planned_colors)
            for n, box, color, index in zip(present, planned, planned_colors, matched):
                item = EntityFrame(ids[n], s, f, box, color, detections[index] if index is not None else None)
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


def draw_plan(plan: VideoPlan, size: int = 64) -> np.ndarray:
    """The toy world's exact rendering of a plan: every on-screen entity drawn as its kind, in the
    colour its scene graph gives it at that frame, filling its interpolated box, on the scene's
    background (:func:`core.toyworld.render_frame`). The oracle video for a toy-world plan.

    Args:
        plan: a plan whose entity kinds and backgrounds are toy-world names.
        size: frame side in pixels.

    Returns:
        (sum of num_frames, size, size, 3) uint8, scenes in order.

    Raises:
        ValueError: a kind, colour or background outside the toy world's palette (from render_frame).
    """
    from core.toyworld import ToyObject, render_frame

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
    """The metrics of the module docstring over a list of scored videos (every value a float or int)."""
    entity_frames = [e for s in scores for e in s.entity_frames]
    matched = [e for e in entity_frames if e.detection]
    ranked = [pair for s in scores for pair in s.ranked]

    def mean(values) -> float:
        values = list(values)
        return float(np.mean(values)) if values else 0.0

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
    }


def variant_settings(variant: str, **base):
    """RenderSettings for an evaluation variant.

    ``full``: the default layout control with per-frame scene graphs; ``no-graph``: phrases from the
    plan's entities only, not from each frame's scene graph; ``no-layout``: text only;
    ``training-free``: the adapter off and cross-attention box guidance on.

    Raises:
        ValueError: unknown variant.
    """
    from core.render import RenderSettings

    if variant not in VARIANTS:
        raise ValueError(f"--variant: must be one of {', '.join(VARIANTS)} (got {variant!r})")
    extra = {
        "full": {},
        "no-graph": {"use_scene_graph": False},
        "no-layout": {"layout_control": "none"},
        "training-free": {"layout_control": "guidance"},
    }[variant]
    return RenderSettings(**base, **extra)


def read_prompts(path: Path, limit: int | None = None) -> list[dict]:
    """Lines of a prompt file: ``{"prompt": str, ...}`` (extra keys kept).

    Raises:
        ValueError: a line that is not a JSON object with a non-empty ``prompt`` string (line named).
    """
    items = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{Path(path).name}:{number}: not JSON ({error.msg})") from None
        if not isinstance(item, dict) or not isinstance(item.get("prompt"), str) or not item["prompt"].strip():
            raise ValueError(f"{Path(path).name}:{number}: prompt: must be a non-empty string")
        items.append(item)
    if not items:
        raise ValueError(f"{Path(path).name}: has no prompts")
    return items[:limit] if limit else items


def run_eval(
    prompts: list[dict],
    out: Path,
    *,
    pipe=None,
    settings,
    variant: str,
    on_video: Callable[[int, int], None] | None = None,
    cluster=None,
    model: dict | None = None,
) -> dict[str, float]:
    """Plan, render, score and report every prompt; writes ``out/metrics.json``, ``out/report.html``,
    ``out/videos/NNN.mp4`` and ``out/videos/NNN.plan.json``. Returns the metrics.

    Renders here with ``pipe`` (the default, serial path), or on Ray with ``cluster`` (a
    :class:`core.batch.Cluster`) and ``model`` (keyword arguments of ``core.render.load_pipeline``):
    the same plans (``rules``), settings and scoring, with the videos scored in prompt order, so the
    metrics are the same up to the renders themselves (a worker's torch may use fewer threads, which
    can change a pixel value by one) and ``seconds_per_video`` (each worker's own render time).

    Raises:
        ValueError: neither ``pipe`` nor ``cluster`` given; a prompt that does not plan or render.
    """
    if (pipe is None) == (cluster is None) or (cluster is not None and model is None):
        raise ValueError("run_eval: give pipe (render here) or cluster and model (render on Ray)")
    videos = out / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    if cluster is None:
        rendered = _render_here(prompts, videos, pipe=pipe, settings=settings)
    else:
        from core.batch import eval_on_ray

        rendered = eval_on_ray(prompts, videos, settings=settings, model=model, cluster=cluster)
    scored: dict[int, tuple[VideoScore, bytes]] = {}
    sampler_model: dict = {}
    for index, plan, frames, seconds, sampler_model in rendered:
        score = score_video(plan, frames, checks=prompts[index].get("checks"), seconds=seconds)
        scored[index] = (score, thumbnail_strip(plan, frames, score))
        if on_video:
            on_video(len(scored), len(prompts))
    scores = [scored[i][0] for i in range(len(prompts))]
    strips = [scored[i][1] for i in range(len(prompts))]
    metrics = aggregate(scores)
    sampler = {
        "num_inference_steps": settings.num_inference_steps, "guidance_scale": sampler_model["guidance_scale"], "seed": settings.seed,
        "unconditional_layout": settings.unconditional_layout,
        "guidance_interval": list(settings.guidance_interval or sampler_model["default_interval"] or (0.0, 1.0)),
    }
    atomic_write_bytes(out / "metrics.json", (json.dumps({"variant": variant, **metrics, "settings": sampler}, indent=2) + "\n").encode())
    atomic_write_bytes(out / "report.html", report_html(metrics, scores, strips, variant=variant).encode())
    return metrics


def _render_here(prompts: list[dict], videos: Path, *, pipe, settings):
    """The serial path of :func:`run_eval`: plan (rules) and render each prompt in turn with ``pipe``.

    Yields:
        ``(index, plan, frames (F, H, W, 3) uint8, render seconds, {"guidance_scale": float,
        "default_interval": [start, end] | None})``, in prompt order.
    """
    from core.export import write_mp4
    from core.plan import save_plan
    from core.planner.rules import plan_with_rules
    from core.render import render_plan, resolve_controls

    interval = getattr(pipe.config, "default_guidance_interval", None)
    sampler = {"guidance_scale": resolve_controls(pipe, settings)["guidance_scale"], "default_interval": list(interval) if interval is not None else None}
    for i, item in enumerate(prompts):
        plan = plan_with_rules(item["prompt"])
        start = time.perf_counter()
        frames = render_plan(pipe, plan, settings)
        seconds = time.perf_counter() - start
        write_mp4(frames, videos / f"{i:03d}.mp4", fps=plan.fps)
        save_plan(plan, videos / f"{i:03d}.plan.json")
        yield i, plan, frames, seconds, sampler


def thumbnail_strip(plan: VideoPlan, frames: np.ndarray, score: VideoScore, *, every: int = 4, scale: int = 2) -> bytes:
    """PNG of every ``every``-th frame, planned boxes in white and matched detections in their colour."""
    from PIL import Image, ImageDraw

    from core.toyworld import COLORS

    by_frame: dict[int, list[EntityFrame]] = {}
    offset, starts = 0, []
    for scene in plan.scenes:
        starts.append(offset)
        offset += scene.num_frames
    for e in score.entity_frames:
        by_frame.setdefault(starts[e.scene] + e.frame, []).append(e)
    picked = list(range(0, len(frames), every))
    h, w = frames.shape[1] * scale, frames.shape[2] * scale
    strip = Image.new("RGB", (w * len(picked), h), "black")
    for k, index in enumerate(picked):
        tile = Image.fromarray(frames[index]).resize((w, h), Image.Resampling.NEAREST)
        draw = ImageDraw.Draw(tile)
        for e in by_frame.get(index, []):
            draw.rectangle([v * s for v, s in zip(e.planned_box, (w, h, w, h))], outline=(255, 255, 255), width=1)
            if e.detection:
                draw.rectangle([v * s for v, s in zip(e.detection.box, (w, h, w, h))], outline=COLORS[e.detection.color], width=2)
        strip.paste(tile, (k * w, 0))
    buffer = io.BytesIO()
    strip.save(buffer, format="PNG")
    return buffer.getvalue()


def report_html(metrics: dict[str, float], scores: list[VideoScore], strips: list[bytes], *, variant: str) -> str:
    """A self-contained HTML report: a plotly bar chart of the metrics, a per-video table, strips."""
    import plotly.graph_objects as go

    names = [k for k in METRIC_KEYS if k not in ("videos", "seconds_per_video")]
    chart = go.Figure(go.Bar(x=names, y=[metrics[k] for k in names], text=[f"{metrics[k]:.2f}" for k in names], textposition="outside"))
    chart.update_layout(title=f"variant {variant}: {metrics['videos']} videos, {metrics['seconds_per_video']:.1f} s per video", yaxis_range=[0, 1.1], height=420)
    per_video = [aggregate([s]) for s in scores]
    table = go.Figure(
        go.Table(
            header={"values": ["#", "prompt", "mIoU", "colour", "direction", "count"]},
            cells={
                "values": [
                    list(range(len(scores))), [s.prompt for s in scores],
                    *[[f"{m[k]:.2f}" for m in per_video] for k in ("box_miou", "color_accuracy", "direction_accuracy", "count_accuracy")],
                ]
            },
            columnwidth=[30, 400, 60, 60, 60, 60],
        )
    )
    table.update_layout(height=120 + 30 * len(scores))
    rows = "".join(
        f"<h3>{i:03d}: {s.prompt}</h3><img alt='frames of video {i}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
        for i, (s, png) in enumerate(zip(scores, strips))
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Director Studio evaluation</title></head><body>"
        f"<h1>Evaluation: {variant}</h1><pre>{json.dumps(metrics, indent=1)}</pre>"
        + chart.to_html(full_html=False, include_plotlyjs=True)
        + table.to_html(full_html=False, include_plotlyjs=False)
        + "<h2>Videos (every 4th frame; white: planned box, coloured: matched detection)</h2>"
        + rows
        + "</body></html>"
    )
