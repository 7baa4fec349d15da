"""The ``adapter`` stage: a layout adapter trained on a frozen text-to-video backbone from image boxes.

    python -m core.training adapter --model PATH --images DIR --annotations COCO.json --out layout2vid.safetensors

VideoDirectorGPT's Layout2Vid recipe (arXiv 2309.15091, section 3.2): only the GLIGEN-style gated
self-attention and the grounding position net are trained, on images with boxes treated as
one-frame videos, with the backbone (UNet3D, VAE, text encoder) frozen. The loss is the backbone's
own diffusion objective (epsilon or v-prediction MSE, per its scheduler config).

Annotations are COCO "instances" JSON: ``images`` (id, file_name, width, height), ``annotations``
(image_id, category_id, bbox = [x, y, w, h] in pixels) and ``categories`` (id, name). The phrase of
a box is its category name; the prompt of an image is its ``caption`` if it has one, else
``"a photo of <names>"``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.training.config import AdapterTrainConfig
from core.training.loop import CosineSchedule, StepRecord, TrainingLoop, TrainingState


class CocoImage(BaseModel):
    """One entry of a COCO file's ``images``."""

    model_config = ConfigDict(extra="ignore")
    id: int
    file_name: str
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    caption: str | None = None


class CocoAnnotation(BaseModel):
    """One entry of ``annotations``: a box ``[x, y, w, h]`` in pixels."""

    model_config = ConfigDict(extra="ignore")
    image_id: int
    category_id: int
    bbox: list[float] = Field(min_length=4, max_length=4)


class CocoCategory(BaseModel):
    """One entry of ``categories``: its name is the phrase of its boxes."""

    model_config = ConfigDict(extra="ignore")
    id: int
    name: str = Field(min_length=1)


class CocoInstances(BaseModel):
    """The part of a COCO instances file the adapter trainer reads."""

    model_config = ConfigDict(extra="ignore")
    images: list[CocoImage] = Field(min_length=1)
    annotations: list[CocoAnnotation]
    categories: list[CocoCategory] = Field(min_length=1)


def load_coco(path: Path) -> CocoInstances:
    """Parse and validate a COCO instances file.

    Raises:
        ValueError: not JSON, a missing or malformed field (named), or references to unknown ids.
        FileNotFoundError: no such file.
    """
    try:
        coco = CocoInstances.model_validate_json(Path(path).read_text())
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"annotations: {where}: {first['msg']}") from None
    images = {image.id for image in coco.images}
    categories = {c.id for c in coco.categories}
    for i, ann in enumerate(coco.annotations):
        if ann.image_id not in images:
            raise ValueError(f"annotations[{i}].image_id: {ann.image_id} is not an image id")
        if ann.category_id not in categories:
            raise ValueError(f"annotations[{i}].category_id: {ann.category_id} is not a category id")
        if ann.bbox[2] <= 0 or ann.bbox[3] <= 0:
            raise ValueError(f"annotations[{i}].bbox: width and height must be > 0 (got {ann.bbox})")
    return coco


def grounding_examples(coco: CocoInstances, images_dir: Path, *, size: tuple[int, int], max_boxes: int) -> list[dict]:
    """One example per annotated image: pixels, prompt, phrases, xyxy boxes in [0, 1].

    Args:
        size: (height, width) the images are resized to (bicubic).
        max_boxes: keep the largest this many boxes of an image.

    Returns:
        dicts with ``pixels`` torch.Tensor (3, H, W) float32 in [-1, 1], ``prompt`` str,
        ``phrases`` list[str] and ``boxes`` torch.Tensor (n, 4), the ``max_boxes`` largest boxes.

    Raises:
        FileNotFoundError: an image file is missing.
        ValueError: no image has a box.
    """
    names = {c.id: c.name for c in coco.categories}
    by_image: dict[int, list[CocoAnnotation]] = {}
    for ann in coco.annotations:
        by_image.setdefault(ann.image_id, []).append(ann)
    height, width = size
    examples = []
    for image in coco.images:
        anns = sorted(by_image.get(image.id, []), key=lambda a: -a.bbox[2] * a.bbox[3])[:max_boxes]
        if not anns:
            continue
        path = images_dir / image.file_name
        if not path.is_file():
            raise FileNotFoundError(2, "no such file", str(path))
        pixels = np.asarray(Image.open(path).convert("RGB").resize((width, height), Image.BICUBIC), dtype=np.float32)
        boxes = torch.tensor(
            [[a.bbox[0] / image.width, a.bbox[1] / image.height, (a.bbox[0] + a.bbox[2]) / image.width, (a.bbox[1] + a.bbox[3]) / image.height] for a in anns]
        ).clamp(0, 1)
        phrases = [names[a.category_id] for a in anns]
        prompt = image.caption or "a photo of " + ", ".join(dict.fromkeys(phrases))
        examples.append({"pixels": torch.from_numpy(pixels).permute(2, 0, 1) / 127.5 - 1, "prompt": prompt, "phrases": phrases, "boxes": boxes})
    if not examples:
        raise ValueError("annotations: no image has a box")
    return examples


def encode_examples(pipe, examples: list[dict], *, max_boxes: int) -> dict:
    """Encode examples once with the frozen VAE and text encoder.

    Returns:
        ``latents`` (N, C, 1, h, w), ``prompt_embeds`` (N, T, D), ``phrase_embeds`` (N, max_boxes, P),
        ``boxes`` (N, max_boxes, 4), ``masks`` (N, max_boxes); all float32 on the CPU.
    """
    latents, prompts, phrase_embeds, boxes, masks = [], [], [], [], []
    device = pipe._execution_device
    with torch.no_grad():
        for ex in examples:
            pixels = ex["pixels"][None].to(device=device, dtype=pipe.vae.dtype)
            latent = pipe.vae.encode(pixels).latent_dist.mean * pipe.vae.config.scaling_factor
            latents.append(latent[:, :, None].float().cpu())  # (1, C, 1, h, w)
            prompts.append(pipe.encode_prompt([ex["prompt"]]).float().cpu())
            n = len(ex["phrases"])
            table = torch.zeros(max_boxes, pipe.text_encoder.config.hidden_size)
            table[:n] = pipe.encode_phrases(ex["phrases"]).float().cpu()
            box = torch.zeros(max_boxes, 4)
            box[:n] = ex["boxes"]
            mask = torch.zeros(max_boxes)
            mask[:n] = 1
            phrase_embeds.append(table)
            boxes.append(box)
            masks.append(mask)
    return {
        "latents": torch.cat(latents), "prompt_embeds": torch.cat(prompts), "phrase_embeds": torch.stack(phrase_embeds),
        "boxes": torch.stack(boxes), "masks": torch.stack(masks),
    }


def diffusion_loss(pipe, adapter, batch: dict, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """The backbone's diffusion MSE on ``batch`` with the adapter's grounding (a scalar float32 tensor).

    Args:
        batch: a slice of :func:`encode_examples`' output. noise: like ``batch["latents"]``.
        timesteps: (N,) int64 training timesteps.
    """
    device, dtype = pipe._execution_device, pipe.unet.dtype
    latents = batch["latents"].to(device)
    noise = noise.to(device)
    timesteps = timesteps.to(device)
    noisy = pipe.scheduler.add_noise(latents, noise, timesteps)
    if pipe.scheduler.config.prediction_type == "v_prediction":
        target = pipe.scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    # A bf16/fp16 backbone with an fp32 adapter runs under autocast.
    with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32):
        objs = adapter.grounding_tokens(batch["boxes"].to(device), batch["masks"].to(device), batch["phrase_embeds"].to(device))
        with adapter.grounding(objs):
            pred = pipe.unet(noisy.to(dtype), timesteps, encoder_hidden_states=batch["prompt_embeds"].to(device, dtype)).sample
    return F.mse_loss(pred.float(), target.float())


def _adapter_row(record: StepRecord) -> list:
    return [record.step, f"{record.loss:.5f}", f"{record.lr:.2e}"]


def train_adapter(pipe, data: dict, cfg: AdapterTrainConfig, *, log_path: Path | None = None):
    """Train a new :class:`LayoutAdapter` (gates at 0) on ``data`` with the backbone frozen.

    AdamW at ``cfg.lr`` after a linear warm-up over the first 5 % of the steps, gradients clipped at
    norm 1; ``cfg.drop_grounding`` of the samples get null grounding tokens (for guidance). Not
    resumable: the run is short and writes no checkpoint.

    Args:
        pipe: a Layout2VidPipeline (its UNet, VAE and text encoder are frozen here).
        data: :func:`encode_examples`' output.
        log_path: a CSV log (step, loss, lr), rewritten, or None.

    Returns:
        (adapter, losses): the trained adapter (fp32, attached to ``pipe.unet``) and the loss of every step.
    """
    from core.pipelines.backbones import adapter_for

    torch.manual_seed(cfg.seed)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False)
    if pipe.layout_adapter is not None:
        pipe.layout_adapter.detach(pipe.unet)
    adapter = adapter_for(pipe.unet, pipe.text_encoder, gate_init=0.0, ff_mult=cfg.ff_mult).to(pipe._execution_device)
    adapter.attach(pipe.unet)
    adapter.train()
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=cfg.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(cfg.seed)
    n = data["latents"].shape[0]
    num_train = pipe.scheduler.config.num_train_timesteps
    loop = TrainingLoop(
        "adapter", TrainingState({"adapter": adapter}, optimizer, generator=generator), list(adapter.parameters()),
        CosineSchedule(cfg.steps, warmup=max(1, cfg.steps // 20), floor=1.0),
        log=log_path, log_header=["step", "loss", "lr"], progress={"disable": None},
    )

    def batch_loss(step: int) -> torch.Tensor:
        idx = torch.randint(0, n, (min(cfg.batch, n),), generator=generator)
        batch = {k: v[idx] for k, v in data.items()}
        drop = torch.rand(len(idx), generator=generator) < cfg.drop_grounding
        batch["masks"] = batch["masks"] * (~drop).float()[:, None]
        noise = torch.randn(batch["latents"].shape, generator=generator)
        timesteps = torch.randint(0, num_train, (len(idx),), generator=generator)
        return diffusion_loss(pipe, adapter, batch, noise, timesteps)

    losses = loop.run(batch_loss, row=_adapter_row)
    adapter.eval()
    return adapter, losses


def trainable_fraction(pipe, adapter) -> tuple[int, int]:
    """(adapter parameters, adapter + UNet (or Wan transformer) parameters): VideoDirectorGPT trains about 13 %."""
    trainable = sum(p.numel() for p in adapter.parameters())
    backbone = pipe.unet if getattr(pipe, "family", None) != "wan" else pipe.transformer
    return trainable, trainable + sum(p.numel() for p in backbone.parameters())


# -------------------------------------------------------------------------------------------------
# Wan (a DiT trained with flow matching): the same stage, one-frame videos, the adapter of core.models.wan_adapter
# -------------------------------------------------------------------------------------------------


def encode_examples_wan(pipe, examples: list[dict], *, max_boxes: int) -> dict:
    """:func:`encode_examples` for a WanLayoutPipeline: images as one-frame videos through Wan's VAE,
    normalised as the pipeline denormalises them ((z - latents_mean) / latents_std).

    Returns:
        ``latents`` (N, C, 1, h, w), ``prompt_embeds`` (N, T, D), ``phrase_embeds`` (N, max_boxes, d_model),
        ``boxes`` (N, max_boxes, 4), ``masks`` (N, max_boxes); all float32 on the CPU.
    """
    vae = pipe.vae
    device = pipe._execution_device
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    latents, prompts, phrase_embeds, boxes, masks = [], [], [], [], []
    with torch.no_grad():
        for ex in examples:
            pixels = ex["pixels"][None, :, None].to(device=device, dtype=vae.dtype)  # (1, 3, 1, H, W)
            z = vae.encode(pixels).latent_dist.mean.float().cpu()
            latents.append((z - mean) / std)
            prompts.append(pipe.encode_prompt(ex["prompt"], do_classifier_free_guidance=False)[0].float().cpu())
            n = len(ex["phrases"])
            table = torch.zeros(max_boxes, pipe.text_encoder.config.d_model)
            table[:n] = pipe.encode_phrases(ex["phrases"]).float().cpu()
            box, mask = torch.zeros(max_boxes, 4), torch.zeros(max_boxes)
            box[:n], mask[:n] = ex["boxes"], 1
            phrase_embeds.append(table)
            boxes.append(box)
            masks.append(mask)
    return {
        "latents": torch.cat(latents), "prompt_embeds": torch.cat(prompts), "phrase_embeds": torch.stack(phrase_embeds),
        "boxes": torch.stack(boxes), "masks": torch.stack(masks),
    }


def flow_matching_loss(pipe, adapter, batch: dict, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Wan's flow-matching MSE on ``batch`` with the adapter's grounding (a scalar float32 tensor).

    The noisy latent is ``x = (1 - sigma) x0 + sigma noise`` and the transformer predicts the velocity
    ``noise - x0`` at timestep ``1000 sigma`` (rectified flow, as Wan is trained).

    Args:
        batch: a slice of :func:`encode_examples_wan`' output. noise: like ``batch["latents"]``.
        sigmas: (N,) float in [0, 1].
    """
    transformer = pipe.transformer
    device, dtype = pipe._execution_device, transformer.dtype
    x0, noise, sigmas = batch["latents"].to(device), noise.to(device), sigmas.to(device)
    s = sigmas.view(-1, 1, 1, 1, 1)
    noisy = (1 - s) * x0 + s * noise
    _, p_h, p_w = transformer.config.patch_size
    rows, cols = x0.shape[3] // p_h, x0.shape[4] // p_w
    with torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32):
        objs = adapter.grounding_tokens(batch["boxes"].to(device), batch["masks"].to(device), batch["phrase_embeds"].to(device))  # (N, boxes, dim): one latent frame each
        with adapter.grounding(objs, frames=1, aspect=rows / cols):
            pred = transformer(
                hidden_states=noisy.to(dtype), timestep=sigmas * 1000, encoder_hidden_states=batch["prompt_embeds"].to(device, dtype), return_dict=False
            )[0]
    return F.mse_loss(pred.float(), (noise - x0).float())


def train_wan_adapter(pipe, data: dict, cfg: AdapterTrainConfig, *, log_path: Path | None = None):
    """:func:`train_adapter` for a WanLayoutPipeline: a new WanLayoutAdapter (gates at 0), the
    transformer, VAE and text encoder frozen, sigmas drawn uniformly in [0, 1].

    Returns:
        (adapter, losses): the trained adapter (fp32, hooked into ``pipe.transformer``) and every step's loss.
    """
    from core.pipelines.backbones import wan_adapter_for

    torch.manual_seed(cfg.seed)
    for module in (pipe.transformer, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False)
    adapter = wan_adapter_for(pipe, gate_init=0.0, ff_mult=cfg.ff_mult).to(pipe._execution_device)
    pipe.set_layout_adapter(adapter)
    adapter.train()
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=cfg.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(cfg.seed)
    n = data["latents"].shape[0]
    loop = TrainingLoop(
        "adapter", TrainingState({"adapter": adapter}, optimizer, generator=generator), list(adapter.parameters()),
        CosineSchedule(cfg.steps, warmup=max(1, cfg.steps // 20), floor=1.0),
        log=log_path, log_header=["step", "loss", "lr"], progress={"disable": None},
    )

    def batch_loss(step: int) -> torch.Tensor:
        idx = torch.randint(0, n, (min(cfg.batch, n),), generator=generator)
        batch = {k: v[idx] for k, v in data.items()}
        drop = torch.rand(len(idx), generator=generator) < cfg.drop_grounding
        batch["masks"] = batch["masks"] * (~drop).float()[:, None]
        noise = torch.randn(batch["latents"].shape, generator=generator)
        return flow_matching_loss(pipe, adapter, batch, noise, torch.rand(len(idx), generator=generator))

    losses = loop.run(batch_loss, row=_adapter_row)
    adapter.eval()
    return adapter, losses


def train_adapter_file(
    model: str, images: Path, annotations: Path, out: Path, cfg: AdapterTrainConfig, *, device: str = "cpu", dtype: str | None = None,
) -> str:
    """The whole stage: load the backbone, encode the annotated images, train, save the adapter file.

    Args:
        model: diffusers text-to-video folder or hub id (a ModelScope-class UNet3D, or Wan: a folder
            saved by ``WanPipeline``, whose adapter is :class:`core.models.wan_adapter.WanLayoutAdapter`).
        images: the folder of the images named in ``annotations`` (a COCO instances JSON).
        out: the adapter file (``.safetensors``); the loss log goes beside it (``.loss.csv``).
        device, dtype: where the backbone runs (dtype None: fp32 on the CPU, else bf16).

    Returns:
        A one-line summary (images, steps, first and last loss, trained fraction).

    Raises:
        ValueError: bad annotations, ``images`` not a folder, ``out`` not ``.safetensors``, or
            settings out of range (checked in that order, before the backbone is loaded).
        FileNotFoundError: a missing annotations or image file.
    """
    from core.pipelines.backbones import save_adapter
    from core.render import load_pipeline

    coco = load_coco(annotations)
    if not images.is_dir():
        raise ValueError(f"--images: {images} is not a folder")
    if out.suffix != ".safetensors":
        raise ValueError(f"--out: must end in .safetensors (got {out.name})")
    cfg.check()
    pipe = load_pipeline(model, device=device, dtype=dtype or ("fp32" if device == "cpu" else "bf16"))
    pipe.set_progress_bar_config(disable=True)
    if getattr(pipe, "family", None) == "wan":  # Wan: images at the model's render size, flow matching
        examples = grounding_examples(coco, images, size=(pipe.config.default_height, pipe.config.default_width), max_boxes=cfg.max_boxes)
        data = encode_examples_wan(pipe, examples, max_boxes=cfg.max_boxes)
        adapter, losses = train_wan_adapter(pipe, data, cfg, log_path=out.with_suffix(".loss.csv"))
    else:
        side = pipe.unet.config.sample_size * pipe.vae_scale_factor
        examples = grounding_examples(coco, images, size=(side, side), max_boxes=cfg.max_boxes)
        data = encode_examples(pipe, examples, max_boxes=cfg.max_boxes)
        adapter, losses = train_adapter(pipe, data, cfg, log_path=out.with_suffix(".loss.csv"))
    save_adapter(adapter, out)
    trained, total = trainable_fraction(pipe, adapter)
    window = max(1, math.ceil(len(losses) / 10))
    return (
        f"wrote {out}: {len(examples)} images, {cfg.steps} steps, loss {np.mean(losses[:window]):.4f} -> {np.mean(losses[-window:]):.4f}; "
        f"trained {trained:,} of {total:,} parameters ({100 * trained / total:.1f} %)"
    )
