"""``launch.py eval``: plan every prompt (rules), render it here or on Ray (:mod:`core.batch`), score it (:mod:`core.evaluation.scoring`) and write ``metrics.json`` and ``report.html`` (:mod:`core.evaluation.report`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from core.evaluation.report import report_html, thumbnail_strip
from core.evaluation.scoring import VideoScore, aggregate, score_video
from core.outputs import atomic_write_bytes

VARIANTS = ("full", "no-graph", "no-layout", "training-free")


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
        "layout_alpha": settings.layout_alpha,  # None: the model's own (model_index.json)
        "guidance_interval": list(settings.guidance_interval or sampler_model["default_interval"] or (0.0, 1.0)),
        "guidance_rescale": settings.guidance_rescale,
        "autoguidance_scale": settings.autoguidance_scale,  # None: the model's own (model_index.json)
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
