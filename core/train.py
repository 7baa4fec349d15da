"""Train the miniature Layout2Vid on the procedural toy world.

    python -m core.train toy --out runs/toy --seed 0          # generate data and train, resumable
    python -m core.train graph --run runs/toy --steps 3600    # stage 4, see core.graph_training
    python -m core.train decoder --run runs/toy --steps 3000  # stage 5, see core.decoder_training
    python -m core.train refine --run runs/toy --clips 240    # stage 6, see core.decoder_training
    python -m core.train export --run runs/toy --to assets/layout2vid-toy
    python -m core.train adapter --model PATH --images DIR --annotations COCO.json   # see core.adapter_training

Stages (each resumes from its last checkpoint in ``--out``; a finished stage is skipped):
1. ``vae``: AutoencoderKL on random toy frames (L1 + MSE + a small KL term).
2. ``data``: random 8-frame clips encoded to latents, with caption token embeddings and per-frame
   grounding (boxes, on-screen masks, phrase ids), cached in ``data.pt``.
3. ``unet``: UNet3D + layout adapter, v-prediction on a zero-terminal-SNR schedule, with condition
   dropout for classifier-free guidance. The loss is logged to ``loss.csv``.
4. ``graph`` (its own command): Dysen's scene-graph encoder trained jointly with the UNet.
5. ``decoder`` (its own command): the autoencoder's decoder fine-tuned with the encoder frozen.
6. ``refine`` (its own command): the decoder goes on learning to decode the exported pipeline's own
   samples on random training clips into those clips' exact frames.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from tqdm import tqdm

from core.toyworld import BACKGROUNDS, COLORS, KINDS, sample_clip

MAX_TRAIN_ENTITIES = 3


@dataclass(frozen=True)
class ToyTrainConfig:
    """Settings of one toy training run (written to ``config.json`` in the run folder)."""

    seed: int = 0
    vae_steps: int = 3600
    vae_batch: int = 16
    vae_lr: float = 1e-3
    vae_foreground_weight: float = 8.0
    clips: int = 3000
    clip_frames: int = 8
    unet_steps: int = 2800
    unet_batch: int = 10
    unet_lr: float = 3e-4
    warmup: int = 100
    drop_both: float = 0.1
    drop_prompt: float = 0.05
    drop_layout: float = 0.05
    drop_adapter: float = 0.1  # whole batches without gated attention, so alpha < 1 works
    box_loss_weight: float = 1.0  # loss weight of latent cells inside an entity's box (1 = plain MSE)
    checkpoint_every: int = 200
    threads: int = 2
    latent_channels: int = 16  # channels of the 8x8 latent (core.models.toy.LATENT_CHANNELS, the shipped model's)
    init_from: str = ""  # a Layout2VidPipeline folder whose same-shaped weights start the VAE and the graph stage
    adapter_ff_mult: int = 4  # width of the adapter's gated feed-forward (GLIGEN 4); below init_from's: pruned, then fine-tuned
    box_masked_grounding: bool = False  # visual tokens read only the grounding tokens whose box covers them (LayoutAdapter box_masked)
    colour_direction_weight: float = 0.0  # extra loss on the error along the nearest palette-colour latent directions (0: none)
    transformer_in_heads: int = 0  # graph stage: heads of the UNet's input temporal transformer; 0 = init_from's (else diffusers' 8); below it: pruned, fine-tuned
    transformer_in_ff_inner_dim: int = 0  # graph stage: its feed-forward units; 0 = init_from's (else diffusers' 4x the block width); below it: pruned


def load_matching(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Copy every tensor of ``state`` whose name and shape match a parameter or buffer of ``module``.

    Used to start a run with another latent width from a trained model: only the layers that touch
    the latent (the VAE's ``conv_out``/``quant_conv``/``post_quant_conv``/decoder ``conv_in``, the
    UNet's ``conv_in``/``conv_out``) differ in shape and keep their fresh initialisation.

    Returns:
        The names of ``module``'s tensors left at their initialisation (missing or another shape).
    """
    own = module.state_dict()
    taken = {k: v.to(own[k].dtype) for k, v in state.items() if k in own and own[k].shape == v.shape}
    module.load_state_dict(taken, strict=False)
    return sorted(set(own) - set(taken))


def pipeline_weights(folder: str | Path, part: str) -> dict[str, torch.Tensor]:
    """The fp32 state dict of one part (``vae``, ``unet``, ``layout_adapter``, ``graph_encoder``) of a saved pipeline folder.

    Raises:
        FileNotFoundError: the folder has no such part.
    """
    from safetensors.torch import load_file

    path = Path(folder) / part / "diffusion_pytorch_model.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"init_from: {path} does not exist")
    return {k: v.float() for k, v in load_file(path).items()}


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def phrase_vocabulary() -> list[str]:
    """The toy world's entity phrases, ``"<colour> <kind>"``, in a fixed order."""
    return [f"{color} {kind}" for color in COLORS for kind in KINDS]


def _frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0


# --------------------------------------------------------------------------------------------
# Stage 1: the autoencoder
# --------------------------------------------------------------------------------------------


def _foreground_weight(clips, foreground_weight: float) -> torch.Tensor:
    """(N, 1, H, W) loss weights of the clips' frames, see :func:`_foreground_weight_frames`."""
    frames = np.concatenate([c.frames for c in clips])
    backgrounds = [c.background for c in clips for _ in c.frames]
    return _foreground_weight_frames(frames, backgrounds, foreground_weight)


def _foreground_weight_frames(frames: np.ndarray, backgrounds: list[str], foreground_weight: float) -> torch.Tensor:
    """(N, 1, H, W) loss weights: ``foreground_weight`` on shape pixels, 1 on background pixels.

    Shapes cover a few percent of a frame; without the weight the autoencoder learns backgrounds
    long before it learns the shapes' colours. frames: (N, H, W, 3) uint8; backgrounds: N names.
    """
    palette = np.array([BACKGROUNDS[b] for b in backgrounds], dtype=np.int16)[:, None, None]
    mask = torch.from_numpy(np.abs(frames.astype(np.int16) - palette).sum(-1) > 24).float()[:, None]
    return 1.0 + (foreground_weight - 1.0) * mask


def train_vae(run: Path, cfg: ToyTrainConfig) -> None:
    """Train the toy AutoencoderKL and save it to ``run/vae`` (resumes from ``run/vae_ckpt.pt``)."""
    from core.models.toy import build_toy_vae

    if (run / "vae" / "config.json").exists():
        return
    vae = build_toy_vae(cfg.latent_channels)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    rng = np.random.default_rng(cfg.seed)
    step = 0
    ckpt = run / "vae_ckpt.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        vae.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rng"]
        step = state["step"]
    elif cfg.init_from:
        fresh = load_matching(vae, pipeline_weights(cfg.init_from, "vae"))
        print(f"vae: started from {cfg.init_from}; fresh: {', '.join(fresh) or 'none'}", flush=True)
    vae.train()
    log = open(run / "vae_loss.csv", "a", newline="")
    writer = csv.writer(log)
    bar = tqdm(total=cfg.vae_steps, initial=step, desc="vae", file=sys.stdout, mininterval=10)
    while step < cfg.vae_steps:
        clips = [sample_clip(rng, num_frames=2) for _ in range(cfg.vae_batch // 2)]
        images = _frames_to_tensor(np.concatenate([c.frames for c in clips]))
        weight = _foreground_weight(clips, cfg.vae_foreground_weight)
        posterior = vae.encode(images).latent_dist
        recon = vae.decode(posterior.sample()).sample
        l1 = (weight * (recon - images).abs()).mean()
        mse = (weight * (recon - images) ** 2).mean()
        kl = posterior.kl().mean() / images[0].numel()
        loss = l1 + mse + 1e-4 * kl
        for group in optimizer.param_groups:
            group["lr"] = cfg.vae_lr * 0.5 * (1 + math.cos(math.pi * step / cfg.vae_steps))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        writer.writerow([step, f"{loss.item():.5f}", f"{l1.item():.5f}", f"{mse.item():.5f}", f"{kl.item():.5f}"])
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % cfg.checkpoint_every == 0 or step == cfg.vae_steps:
            log.flush()
            _atomic_save({"model": vae.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng.bit_generator.state, "step": step}, ckpt)
    log.close()
    vae.eval()
    vae.save_pretrained(run / "vae")


# --------------------------------------------------------------------------------------------
# Stage 2: encoded clips
# --------------------------------------------------------------------------------------------


def build_dataset(run: Path, cfg: ToyTrainConfig) -> dict:
    """Generate ``cfg.clips`` clips, encode them, and cache the tensors in ``run/data.pt``.

    Returns a dict with
        latents: (clips, latent_channels, frames, 8, 8) float16, already multiplied by the VAE's scaling factor;
        prompt_embeds: (clips, PROMPT_TOKENS, 384) float16 caption token embeddings;
        boxes: (clips, frames, 3, 4) float32 xyxy; masks: (clips, frames, 3) float32;
        phrase_ids: (clips, frames, 3) int64 into ``phrase_embeds`` (vocabulary of phrase_vocabulary());
        phrase_embeds: (64, 384) float32; empty_prompt: (PROMPT_TOKENS, 384) float32;
        scaling_factor: float.
    """
    from diffusers import AutoencoderKL

    from core.models.toy import PROMPT_TOKENS
    from core.text import load_minilm, sentence_embeddings, token_embeddings

    path = run / "data.pt"
    if path.exists():
        return torch.load(path, weights_only=False)
    vae = AutoencoderKL.from_pretrained(run / "vae").eval()
    text_encoder, tokenizer = load_minilm()
    vocab = phrase_vocabulary()
    index = {p: i for i, p in enumerate(vocab)}
    rng = np.random.default_rng(cfg.seed + 1)
    n, f, e = cfg.clips, cfg.clip_frames, MAX_TRAIN_ENTITIES
    latents = torch.zeros(n, vae.config.latent_channels, f, 8, 8, dtype=torch.float16)
    boxes = torch.zeros(n, f, e, 4)
    masks = torch.zeros(n, f, e)
    phrase_ids = torch.zeros(n, f, e, dtype=torch.long)
    captions = []
    chunk = 16
    for start in tqdm(range(0, n, chunk), desc="data", file=sys.stdout, mininterval=10):
        clips = [sample_clip(rng, num_frames=f) for _ in range(min(chunk, n - start))]
        frames = _frames_to_tensor(np.concatenate([c.frames for c in clips]))
        with torch.no_grad():
            z = vae.encode(frames).latent_dist.mean
        latents[start : start + len(clips)] = rearrange(z, "(b f) c h w -> b c f h w", f=f).half()
        for i, clip in enumerate(clips):
            captions.append(clip.caption)
            for j, track in enumerate(clip.tracks):
                for t in range(f):
                    phrase_ids[start + i, t, j] = index[f"{track.colors[t]} {track.kind}"]
                    if track.boxes[t] is not None:
                        boxes[start + i, t, j] = torch.tensor(track.boxes[t])
                        masks[start + i, t, j] = 1.0
    scaling_factor = float(1.0 / latents.float().std())
    latents = (latents.float() * scaling_factor).half()
    prompt_embeds = torch.cat(
        [token_embeddings(text_encoder, tokenizer, captions[i : i + 256], max_length=PROMPT_TOKENS) for i in range(0, n, 256)]
    ).half()
    data = {
        "latents": latents,
        "prompt_embeds": prompt_embeds,
        "boxes": boxes,
        "masks": masks,
        "phrase_ids": phrase_ids,
        "phrase_embeds": sentence_embeddings(text_encoder, tokenizer, vocab),
        "empty_prompt": token_embeddings(text_encoder, tokenizer, [""], max_length=PROMPT_TOKENS)[0],
        "scaling_factor": scaling_factor,
        "captions": captions,
    }
    _atomic_save(data, path)
    return data


# --------------------------------------------------------------------------------------------
# Stage 3: the denoiser and its layout adapter
# --------------------------------------------------------------------------------------------


def unet_batch_loss(unet, adapter, scheduler, data: dict, idx: torch.Tensor, cfg: ToyTrainConfig, generator, *, graph_encoder=None, graphs: dict | None = None) -> torch.Tensor:
    """v-prediction MSE of one batch of cached clips, with the condition dropout of ``cfg``.

    Latent cells in an entity's box weigh ``cfg.box_loss_weight``. With ``cfg.colour_direction_weight``
    w > 0 the loss adds ``w * sigma_t^2 * sum_k ((v_pred - v) . d_k)^2`` (same cell weights), the
    squared x0 error along each unit direction d_k of ``data["colour_directions"]`` (K, C) (see
    :func:`core.graph_training.near_colour_directions`).

    Args:
        idx: (B,) clip indices into ``data``. graphs: :func:`core.graph_training.graph_dataset`'s
            output when ``graph_encoder`` is trained too (dropped together with the layout).
    """
    batch = len(idx)
    f = data["latents"].shape[2]
    latents = data["latents"][idx].float()  # (B, C, F, 8, 8)
    prompt = data["prompt_embeds"][idx].float()  # (B, T, 384)
    boxes = rearrange(data["boxes"][idx], "b f n c -> (b f) n c")
    masks = rearrange(data["masks"][idx], "b f n -> (b f) n")
    phrases = data["phrase_embeds"][rearrange(data["phrase_ids"][idx], "b f n -> (b f) n")]
    # Condition dropout for classifier-free guidance.
    u = torch.rand(batch, generator=generator)
    drop_prompt = u < cfg.drop_both + cfg.drop_prompt
    drop_layout = (u < cfg.drop_both) | ((u >= cfg.drop_both + cfg.drop_prompt) & (u < cfg.drop_both + cfg.drop_prompt + cfg.drop_layout))
    prompt[drop_prompt] = data["empty_prompt"]
    masks = masks * (~drop_layout).float().repeat_interleave(f)[:, None]

    noise = torch.randn(latents.shape, generator=generator)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=generator)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    target = scheduler.get_velocity(latents, noise, timesteps)
    objs = adapter.grounding_tokens(boxes, masks, phrases)
    if torch.rand((), generator=generator) < cfg.drop_adapter:
        objs = None
    tokens = None
    if graph_encoder is not None:
        from core.graph_training import batch_graphs

        tokens, token_mask = graph_encoder.encode(batch_graphs(graphs, idx))
        token_mask = token_mask * (~drop_layout).float().repeat_interleave(f)[:, None]
        token_mask[:, 0] = 1  # the null token stays
        tokens = (tokens, token_mask)
    with adapter.grounding(objs, boxes=boxes.float(), masks=masks), (graph_encoder.conditioning(tokens) if graph_encoder is not None else nullcontext()):
        pred = unet(noisy, timesteps, encoder_hidden_states=prompt).sample
    weight = box_loss_weights(data["boxes"][idx], data["masks"][idx], latents.shape[-1], cfg.box_loss_weight)
    loss = (weight * (pred - target) ** 2).mean() / weight.mean()
    if cfg.colour_direction_weight > 0:
        # The x0 error is -sigma_t times the v error; its component along each near-colour
        # direction (unit, (K, C)) is what tells orange from red (core.graph_training.near_colour_directions).
        sigma2 = (1.0 - scheduler.alphas_cumprod[timesteps]).float()[:, None, None, None, None]  # (B, 1, 1, 1, 1)
        along = torch.einsum("bcfhw,kc->bkfhw", pred - target, data["colour_directions"])
        loss = loss + cfg.colour_direction_weight * (weight * sigma2 * along**2).sum(1, keepdim=True).mean() / weight.mean()
    return loss


def box_loss_weights(boxes: torch.Tensor, masks: torch.Tensor, size: int, weight: float) -> torch.Tensor:
    """Per-cell loss weights (B, 1, F, size, size): ``weight`` on latent cells that overlap an
    on-screen entity's box, 1 elsewhere.

    Objects cover a few percent of a toy frame, so a plain MSE is mostly about backgrounds; this
    spends more of the loss on the entities the metrics are about (the autoencoder's foreground
    weight, one stage later). boxes: (B, F, N, 4) xyxy in [0, 1]; masks: (B, F, N) 0/1.
    """
    low = torch.arange(size, dtype=torch.float32) / size
    high = low + 1.0 / size
    b = boxes.float()[..., None, None]  # (B, F, N, 4, 1, 1)
    overlap_x = (high[None, None, None, None, :] > b[..., 0, :, :]) & (low[None, None, None, None, :] < b[..., 2, :, :])
    overlap_y = (high[None, None, None, :, None] > b[..., 1, :, :]) & (low[None, None, None, :, None] < b[..., 3, :, :])
    inside = overlap_x & overlap_y
    covered = (inside & (masks[..., None, None] > 0)).any(dim=2)  # (B, F, size, size)
    return (1.0 + (weight - 1.0) * covered.float())[:, None]


def train_unet(run: Path, cfg: ToyTrainConfig, data: dict) -> None:
    """Train UNet3D + LayoutAdapter on the cached clips; checkpoints in ``run/unet_ckpt.pt``."""
    from core.models.layout import LayoutAdapter
    from core.models.toy import build_toy_scheduler, build_toy_unet

    torch.manual_seed(cfg.seed)
    unet = build_toy_unet(cfg.latent_channels)
    adapter = LayoutAdapter.for_unet(unet, gate_init=0.5, ff_mult=cfg.adapter_ff_mult, box_masked=cfg.box_masked_grounding)
    adapter.attach(unet)
    scheduler = build_toy_scheduler()
    params = list(unet.parameters()) + list(adapter.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(cfg.seed)
    step = 0
    ckpt = run / "unet_ckpt.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        unet.load_state_dict(state["unet"])
        adapter.load_state_dict(state["adapter"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        step = state["step"]
    if step >= cfg.unet_steps:
        return
    unet.train()
    adapter.train()
    n = data["latents"].shape[0]
    log = open(run / "loss.csv", "a", newline="")
    writer = csv.writer(log)
    bar = tqdm(total=cfg.unet_steps, initial=step, desc="unet", file=sys.stdout, mininterval=10)
    started = time.time()
    while step < cfg.unet_steps:
        idx = torch.randint(0, n, (cfg.unet_batch,), generator=generator)
        loss = unet_batch_loss(unet, adapter, scheduler, data, idx, cfg, generator)
        lr = cfg.unet_lr * min(1.0, (step + 1) / cfg.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / cfg.unet_steps)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        step += 1
        writer.writerow([step, f"{loss.item():.5f}", f"{lr:.2e}", f"{time.time() - started:.1f}"])
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % cfg.checkpoint_every == 0 or step == cfg.unet_steps:
            log.flush()
            state = {"unet": unet.state_dict(), "adapter": adapter.state_dict(), "optimizer": optimizer.state_dict(), "generator": generator.get_state(), "step": step}
            _atomic_save(state, ckpt)
    log.close()


def export(
    run: Path, target: Path, *, stage: str | None = None, ema: bool = False, guidance_scale: float | None = None,
    guidance_interval: tuple[float, float] | None = None,
) -> Path:
    """Assemble the trained parts into a ``Layout2VidPipeline`` folder at ``target`` (fp16 weights).

    ``stage``: ``"graph"`` exports ``graph_ckpt.pt`` with its scene-graph encoder, ``"unet"`` the UNet
    stage's ``unet_ckpt.pt``; None takes the graph stage when it exists. ``ema``: write the graph
    stage's exponential moving average of the weights instead of the last ones. ``guidance_scale``:
    the classifier-free guidance weight (0-30) renders use by default, chosen on the dev prompts
    (``default_guidance_scale`` in ``model_index.json``); None leaves the library default.
    ``guidance_interval``: (start, end), 0 <= start <= end <= 1, the fractions of the steps with
    guidance by default (``default_guidance_interval``); None: every step.

    Raises:
        ValueError: ``ema`` for a checkpoint that keeps no average; ``guidance_scale`` outside 0-30;
            ``guidance_interval`` out of order or outside [0, 1].
    """
    from diffusers import AutoencoderKL

    from core.models.layout import LayoutAdapter
    from core.models.toy import PROMPT_TOKENS, build_toy_scheduler, build_toy_unet
    from core.models.unet import TRANSFORMER_IN_HEADS
    from core.pipeline import Layout2VidPipeline
    from core.toyworld import BACKGROUNDS

    if guidance_scale is not None and not 0.0 <= guidance_scale <= 30.0:
        raise ValueError(f"--guidance-scale: must be in [0, 30] (got {guidance_scale})")
    if guidance_interval is not None and not 0.0 <= guidance_interval[0] <= guidance_interval[1] <= 1.0:
        raise ValueError(f"--guidance-interval: must be START END with 0 <= START <= END <= 1 (got {tuple(guidance_interval)})")
    stage = stage or ("graph" if (run / "graph_ckpt.pt").exists() else "unet")
    state = torch.load(run / f"{stage}_ckpt.pt", weights_only=False)
    data = torch.load(run / "data.pt", weights_only=False)
    # The decoder stages (5 and 6) keep the encoder, so their autoencoders fit the cached latents.
    vae = AutoencoderKL.from_pretrained(run / next(n for n in ("vae_refine", "vae_decoder", "vae") if (run / n / "config.json").exists()))
    vae.register_to_config(scaling_factor=data["scaling_factor"])
    config = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
    # The input temporal transformer's widths, read off the checkpoint (pruned runs are narrower).
    block = "transformer_in.transformer_blocks.0."
    width = state["unet"][block + "attn1.to_q.weight"].shape[1]  # TRANSFORMER_IN_HEADS * head dim
    heads = state["unet"][block + "attn1.to_q.weight"].shape[0] * TRANSFORMER_IN_HEADS // width
    units = state["unet"][block + "ff.net.2.weight"].shape[1]
    unet = build_toy_unet(
        data["latents"].shape[1], transformer_in_heads=heads, transformer_in_ff_inner_dim=None if units == 4 * width else units
    )
    unet.load_state_dict(state["unet"])
    adapter = LayoutAdapter.for_unet(unet, gate_init=0.5, ff_mult=config.get("adapter_ff_mult", 4), box_masked=config.get("box_masked_grounding", False))
    adapter.load_state_dict(state["adapter"])
    graph_encoder = None
    if "graph_encoder" in state:
        from core.models.graph_encoder import SceneGraphEncoder

        graph_encoder = SceneGraphEncoder.for_unet(unet)
        graph_encoder.load_state_dict(state["graph_encoder"])
    if ema:
        from core.graph_training import trained_parameters

        if "ema" not in state or graph_encoder is None:
            raise ValueError(f"--ema: {run / f'{stage}_ckpt.pt'} keeps no moving average (train the graph stage with --ema-decay)")
        with torch.no_grad():
            for param, shadow in zip(trained_parameters(unet, adapter, graph_encoder), state["ema"]["shadow_params"], strict=True):
                param.copy_(shadow)
    pipe = Layout2VidPipeline(
        vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=build_toy_scheduler(), layout_adapter=adapter,
        graph_encoder=graph_encoder, max_prompt_tokens=PROMPT_TOKENS, backgrounds=list(BACKGROUNDS), default_guidance_scale=guidance_scale,
        default_guidance_interval=list(guidance_interval) if guidance_interval is not None else None,
    )
    pipe.to(torch.float16)
    pipe.save_pretrained(target, safe_serialization=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.train", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    toy = sub.add_parser("toy", help="generate toy-world data and train (resumable)")
    toy.add_argument("--out", type=Path, default=Path("runs/toy"))
    for name, value in asdict(ToyTrainConfig()).items():
        if isinstance(value, bool):
            toy.add_argument(f"--{name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=value)
        else:
            toy.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    ada = sub.add_parser("adapter", help="train a layout adapter on a frozen backbone from COCO boxes (VideoDirectorGPT recipe)")
    ada.add_argument("--model", required=True, help="diffusers text-to-video folder or hub id")
    ada.add_argument("--images", type=Path, required=True, help="folder of the images named in the annotations")
    ada.add_argument("--annotations", type=Path, required=True, help="COCO instances JSON")
    ada.add_argument("--out", type=Path, default=Path("layout2vid.safetensors"))
    ada.add_argument("--steps", type=int, default=1000)
    ada.add_argument("--batch", type=int, default=4)
    ada.add_argument("--lr", type=float, default=5e-5)
    ada.add_argument("--seed", type=int, default=0)
    ada.add_argument("--ff-mult", type=int, default=0, choices=[0, 1, 2, 4], help="gated feed-forward width: 0 none (1.07x step FLOPs), 4 GLIGEN's full block (1.19x)")
    ada.add_argument("--device", default="cpu")
    ada.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"])
    graph = sub.add_parser("graph", help="stage 4: train the scene-graph encoder with the UNet (after the toy stages)")
    graph.add_argument("--run", type=Path, default=Path("runs/toy"))
    graph.add_argument("--steps", type=int, default=3600)
    graph.add_argument("--lr", type=float, default=1.2e-4, help="UNet and adapter learning rate")
    graph.add_argument("--graph-lr", type=float, default=3e-4, help="graph encoder learning rate")
    graph.add_argument("--threads", type=int, default=2)
    graph.add_argument("--box-loss-weight", type=float, default=None, help="loss weight inside entity boxes (default: the run's config, 1)")
    graph.add_argument("--ema-decay", type=float, default=0.0, help="keep an EMA of the weights with this decay, in [0, 1); 0 keeps none")
    graph.add_argument("--oversample", default="", help="comma-separated colour@background and colour+colour terms whose clips are drawn more often")
    graph.add_argument("--oversample-weight", type=float, default=3.0, help="draw weight of a matching clip, >= 1 (others 1)")
    dec = sub.add_parser("decoder", help="stage 5: fine-tune the autoencoder's decoder, encoder frozen (after the toy stages)")
    dec.add_argument("--run", type=Path, default=Path("runs/toy"))
    dec.add_argument("--steps", type=int, default=3000)
    dec.add_argument("--lr", type=float, default=3e-4)
    dec.add_argument("--batch", type=int, default=16)
    dec.add_argument("--foreground-weight", type=float, default=4.0)
    dec.add_argument("--latent-noise", type=float, default=0.1, help="largest latent perturbation, times the latents' std")
    dec.add_argument("--empty-share", type=float, default=0.1, help="probability that a plain frame is replaced by its empty background, in [0, 1]")
    dec.add_argument("--colour-mix-share", type=float, default=0.0, help="fraction of each batch mixed part way to a neighbouring palette colour, in [0, 1]")
    dec.add_argument("--colour-mix-max", type=float, default=0.45, help="largest share of the neighbouring colour's latents, in [0, 0.5)")
    dec.add_argument("--threads", type=int, default=2)
    ref = sub.add_parser("refine", help="stage 6: teach the decoder the denoiser's own samples (after stage 5)")
    ref.add_argument("--run", type=Path, default=Path("runs/toy"))
    ref.add_argument("--model", default="assets/layout2vid-toy", help="the pipeline whose samples the decoder learns")
    ref.add_argument("--clips", type=int, default=240, help="random training clips to sample (16 frames each)")
    ref.add_argument("--steps", type=int, default=1500)
    ref.add_argument("--lr", type=float, default=1e-4)
    ref.add_argument("--batch", type=int, default=16)
    ref.add_argument("--sample-share", type=float, default=0.5, help="fraction of each batch from the sampled pairs, in [0, 1)")
    ref.add_argument("--guidance-scale", type=float, default=None, help="guidance of the samples, 0-30 (default: the model's own, as a render)")
    ref.add_argument("--threads", type=int, default=2)
    exp = sub.add_parser("export", help="write a trained run as a pipeline folder")
    exp.add_argument("--run", type=Path, default=Path("runs/toy"))
    exp.add_argument("--to", type=Path, default=Path("assets/layout2vid-toy"))
    exp.add_argument("--stage", choices=["unet", "graph"], default=None, help="which checkpoint (default: graph if it exists)")
    exp.add_argument("--ema", action="store_true", help="write the graph stage's moving average of the weights")
    exp.add_argument("--guidance-scale", type=float, default=None, help="default classifier-free guidance of the exported model (0-30)")
    exp.add_argument(
        "--guidance-interval", type=float, nargs=2, default=None, metavar=("START", "END"),
        help="default fractions of the steps with guidance (0 <= START <= END <= 1; default every step)",
    )
    args = parser.parse_args(argv)
    if args.command == "adapter":
        from core.adapter_training import run

        try:
            return run(args)
        except (ValueError, OSError) as error:
            message = f"{error.filename}: no such file" if isinstance(error, FileNotFoundError) and error.filename else str(error)
            print(f"error: {message}", file=sys.stderr)
            return 2
    if args.command == "export":
        try:
            print(export(args.run, args.to, stage=args.stage, ema=args.ema, guidance_scale=args.guidance_scale, guidance_interval=args.guidance_interval))
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0
    if args.command == "decoder":
        from core.decoder_training import train_decoder

        torch.set_num_threads(args.threads)
        try:
            out = train_decoder(
                args.run, steps=args.steps, lr=args.lr, batch=args.batch, foreground_weight=args.foreground_weight, latent_noise=args.latent_noise,
                empty_share=args.empty_share, colour_mix_share=args.colour_mix_share, colour_mix_max=args.colour_mix_max,
            )
        except FileNotFoundError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except ValueError as error:  # "colour_mix_share: ..." -> "--colour-mix-share: ..."
            name, _, reason = str(error).partition(": ")
            print(f"error: --{name.replace('_', '-')}: {reason}", file=sys.stderr)
            return 2
        print(out)
        return 0
    if args.command == "refine":
        from core.decoder_training import sample_pairs, train_decoder
        from core.render import load_pipeline

        problems = [
            f"--sample-share: must be in [0, 1) (got {args.sample_share})" if not 0.0 <= args.sample_share < 1.0 else "",
            f"--clips: must be >= 1 (got {args.clips})" if args.clips < 1 else "",
            f"--steps: must be >= 1 (got {args.steps})" if args.steps < 1 else "",
            f"--guidance-scale: must be in [0, 30] (got {args.guidance_scale})" if args.guidance_scale is not None and not 0.0 <= args.guidance_scale <= 30.0 else "",
        ]
        if any(problems):
            print(f"error: {next(p for p in problems if p)}", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
        pipe = load_pipeline(args.model)
        pipe.set_progress_bar_config(disable=True)
        try:
            pairs = sample_pairs(pipe, args.run / "sample_pairs.pt", clips=args.clips, guidance_scale=args.guidance_scale)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        source = "vae_decoder" if (args.run / "vae_decoder" / "config.json").exists() else "vae"  # stage 5 is optional
        print(train_decoder(args.run, steps=args.steps, lr=args.lr, batch=args.batch, stage="refine", source=source, pairs=pairs, sample_share=args.sample_share))
        return 0
    if args.command == "graph":
        from core.graph_training import train_graph

        if not 0.0 <= args.ema_decay < 1.0:
            print(f"error: --ema-decay: must be in [0, 1) (got {args.ema_decay})", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
        cfg = ToyTrainConfig(**json.loads((args.run / "config.json").read_text()))
        if args.box_loss_weight is not None:
            cfg = replace(cfg, box_loss_weight=args.box_loss_weight)
        data = torch.load(args.run / "data.pt", weights_only=False)
        terms = [t.strip() for t in args.oversample.split(",") if t.strip()]
        try:
            train_graph(
                args.run, cfg, data, steps=args.steps, lr=args.lr, graph_lr=args.graph_lr, ema_decay=args.ema_decay,
                oversample=terms, oversample_weight=args.oversample_weight,
            )
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0
    cfg = ToyTrainConfig(**{k: getattr(args, k) for k in asdict(ToyTrainConfig())})
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    train_vae(args.out, cfg)
    data = build_dataset(args.out, cfg)
    train_unet(args.out, cfg, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def loss_table(path: Path, *, column: int = 1, rows: int = 12) -> str:
    """A markdown table of a loss log: mean loss over equal spans of steps."""
    if not path.exists():
        return "(no log)"
    with open(path) as handle:
        values = [(int(r[0]), float(r[column])) for r in csv.reader(handle) if r]
    if not values:
        return "(empty log)"
    values.sort()
    span = max(1, len(values) // rows)
    lines = ["| steps | mean loss |", "| --- | --- |"]
    for i in range(0, len(values), span):
        chunk = values[i : i + span]
        lines.append(f"| {chunk[0][0]}-{chunk[-1][0]} | {sum(v for _, v in chunk) / len(chunk):.4f} |")
    return "\n".join(lines)
