"""The evaluation's HTML report: the metrics, and a strip of frames per video with planned boxes and matched detections."""

from __future__ import annotations

import base64
import io
import json

import numpy as np

from core.evaluation.scoring import METRIC_KEYS, EntityFrame, VideoScore, aggregate
from core.plan import VideoPlan


def thumbnail_strip(plan: VideoPlan, frames: np.ndarray, score: VideoScore, *, every: int = 4, scale: int = 2) -> bytes:
    """PNG of every ``every``-th frame, planned boxes in white and matched detections in their colour."""
    from PIL import Image, ImageDraw

    from core.toyworld.world import COLORS

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
    size = "x".join(str(v) for v in metrics["frame_size"]) if metrics["frame_size"] and isinstance(metrics["frame_size"][0], int) else "mixed"
    chart.update_layout(title=f"variant {variant}: {metrics['videos']} videos of {size} frames, {metrics['seconds_per_video']:.1f} s per video", yaxis_range=[0, 1.1], height=420)
    per_video = [aggregate([s]) for s in scores]
    table = go.Figure(
        go.Table(
            header={"values": ["#", "prompt", "mIoU", "colour", "kind", "background", "direction", "count"]},
            cells={
                "values": [
                    list(range(len(scores))), [s.prompt for s in scores],
                    *[[f"{m[k]:.2f}" for m in per_video] for k in ("box_miou", "color_accuracy", "kind_accuracy", "background_accuracy", "direction_accuracy", "count_accuracy")],
                ]
            },
            columnwidth=[30, 400, 60, 60, 60, 60, 60, 60],
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
