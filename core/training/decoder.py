"""The ``decoder`` stage: the autoencoder's decoder fine-tuned with its encoder frozen.

    python -m core.training decoder --run runs/toy --steps 3000

Why: the first autoencoder capped every layout metric. Drawing the dev plans exactly and passing
them through its encode -> decode alone took AP50 from 0.96 to 0.70 and count accuracy from 0.99 to
0.63 (``benchmarks/vae_ceiling.py``): blank backgrounds decoded with a coloured blob in a corner,
edges got a light frame, shapes got halos of a neighbouring palette colour. The encoder and its
latent space stay as they are, so the cached training latents and the trained UNet, adapter and
graph encoder remain valid; only ``post_quant_conv`` and the decoder learn.

Each step draws fresh toy clips (two frames each, as the autoencoder's first training did),
replaces a share of the frames with empty backgrounds (frames between an entity's exit and the next
entrance are common in plans and rare in random clips), encodes them to the posterior mean (what
the UNet was trained to produce), perturbs the latents with Gaussian noise of a random scale up to
``latent_noise`` times their standard deviation (the denoiser's outputs are never exactly on the
encoder's manifold), and minimises L1 + MSE weighted ``foreground_weight`` times on shape pixels.
Checkpoints go to ``run/decoder_ckpt.pt`` (resumable); the finished autoencoder is saved to
``run/vae_decoder`` and :func:`core.training.export.export` prefers it over ``run/vae``.

With ``colour_mix_share`` a share of each batch is mixed part of the way toward a neighbouring
palette colour (:func:`colour_mix_batch`): the latents of a clip whose shapes are recoloured to
their nearest colours in latent space (red <-> orange, white -> pink), blended less than half way
in, decode to the clip as drawn. The denoiser lands between near colours more often than the
isotropic noise above reaches, and a decoder that draws such latents as the in-between colour
leaves the detector to pick the wrong palette entry.

The ``refine`` stage (:mod:`core.training.refine`) runs the same training with a share of each
batch taken from sampled pairs (:func:`pair_batch`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from core.toyworld.world import ToyObject, render_frame, sample_clip
from core.training.config import DecoderTrainConfig
from core.training.loop import CosineSchedule, StepLoss, TrainingLoop, TrainingState
from core.training.palette import palette_neighbours
from core.training.toy_data import foreground_weights, frames_to_tensor


def decoder_parameters(vae) -> list[torch.nn.Parameter]:
    """The parameters this stage trains: ``post_quant_conv`` and ``decoder`` (encoder side frozen)."""
    return [*vae.post_quant_conv.parameters(), *vae.decoder.parameters()]


def decoder_batch(rng: np.random.Generator, batch: int, empty_share: float) -> tuple[np.ndarray, list[str]]:
    """``batch`` toy frames and each frame's background name.

    Frames come in pairs from :func:`core.toyworld.world.sample_clip`; each frame is replaced by its
    empty background with probability ``empty_share`` (0-1).

    Returns:
        (frames (batch, 64, 64, 3) uint8, background names).
    """
    frames, backgrounds = [], []
    for _ in range((batch + 1) // 2):
        clip = sample_clip(rng, num_frames=2)
        for frame in clip.frames:
            empty = rng.random() < empty_share
            frames.append(render_frame(clip.background, []) if empty else frame)
            backgrounds.append(clip.background)
    return np.stack(frames[:batch]), backgrounds[:batch]


def pair_batch(pairs: dict, rng: np.random.Generator, batch: int) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """``batch`` random (clip, frame) items of :func:`core.training.refine.sample_pairs`' cache.

    Returns:
        (latents (batch, C, h, w) float32, drawn frames (batch, 64, 64, 3) uint8, background names).
    """
    clips, frames = pairs["latents"].shape[0], pairs["latents"].shape[2]
    c = rng.integers(0, clips, size=batch)
    f = rng.integers(0, frames, size=batch)
    latents = pairs["latents"][c, :, f].float()
    return latents, pairs["frames"][c, f].numpy(), [pairs["backgrounds"][i] for i in c]


def colour_mix_batch(
    rng: np.random.Generator, vae, batch: int, neighbours: dict[str, dict[str, list[str]]], mix_max: float
) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """``batch`` latents part of the way to a neighbouring colour, with the frame they should decode to.

    Each item is a one-frame toy clip drawn twice: as sampled (frame ``a``) and with every shape
    recoloured to one of its colour's :func:`~core.training.palette.palette_neighbours` on that
    background (frame ``b``; red -> orange, white -> pink). Its latents are ``z_a + t (z_b - z_a)``
    with ``t ~ U(0, mix_max)`` and its target is ``a``: a latent nearer to ``a``'s encoding than to
    ``b``'s decodes to ``a``'s colours. The denoiser's samples often land between two near palette
    colours (projected on the orange -> red axis, the orange diamond of dev video 004 sits up to
    0.46 of the way to red); a decoder trained only on encodings plus isotropic noise draws such
    latents as the in-between colour, which the detector then reads as the wrong one.

    Args:
        vae: the autoencoder (its encoder is used under ``no_grad``).
        neighbours: :func:`~core.training.palette.palette_neighbours`' table.
        mix_max: the largest ``t``, in [0, 0.5) so that the target stays the nearer colour.

    Returns:
        (latents (batch, C, h, w) float32 unscaled posterior means, frames ``a`` (batch, 64, 64, 3)
        uint8, background names).
    """
    frames, recoloured, backgrounds = [], [], []
    for _ in range(batch):
        clip = sample_clip(rng, num_frames=1)
        objects = [ToyObject(t.kind, t.colors[0], t.boxes[0]) for t in clip.tracks]
        swapped = [replace(o, color=str(rng.choice(neighbours[clip.background][o.color]))) for o in objects]
        frames.append(clip.frames[0])
        recoloured.append(render_frame(clip.background, swapped))
        backgrounds.append(clip.background)
    frames = np.stack(frames)
    with torch.no_grad():
        codes = vae.encode(frames_to_tensor(np.concatenate([frames, np.stack(recoloured)]))).latent_dist.mean
    a, b = codes[:batch], codes[batch:]
    t = torch.from_numpy(rng.uniform(0.0, mix_max, size=(batch, 1, 1, 1))).float()
    return a + t * (b - a), frames, backgrounds


def _check(run: Path, cfg: DecoderTrainConfig, pairs: dict | None) -> None:
    """Raise the stage's errors before anything is loaded (see :func:`train_decoder`)."""
    if pairs is not None and cfg.sample_share + cfg.colour_mix_share > 1.0:
        raise ValueError(
            f"colour_mix_share: with sample_share {cfg.sample_share} it must be <= {1 - cfg.sample_share:g} (got {cfg.colour_mix_share})"
        )
    if not (run / cfg.source / "config.json").exists():
        raise FileNotFoundError(f"{run / cfg.source}: train the earlier stages first (python -m core.training toy, then decoder)")


def train_decoder(run: Path, cfg: DecoderTrainConfig, *, pairs: dict | None = None) -> Path:
    """Fine-tune the decoder of ``run/<cfg.source>`` and save the result to ``run/vae_<cfg.stage>``.

    AdamW at ``cfg.lr`` (50 warm-up steps, cosine to 10 %), gradients clipped at norm 1. Each batch
    of ``cfg.batch`` frames holds, in this order: plain toy frames (encoded, noised), then
    ``round(batch * colour_mix_share)`` colour-mixed items, then (with ``pairs``)
    ``round(batch * sample_share)`` sampled pairs (taken first; the colour-mixed items fill what is
    left). Resumes from ``run/<stage>_ckpt.pt``; the loss goes to ``run/<stage>_loss.csv`` (step,
    loss, L1, MSE).

    Args:
        run: a toy run folder with ``<cfg.source>/`` (the autoencoder to start from).
        cfg: the stage's settings.
        pairs: :func:`core.training.refine.sample_pairs`' cache; None trains on encodings only.

    Returns:
        The saved autoencoder folder.

    Raises:
        ValueError: with ``pairs``, ``sample_share + colour_mix_share`` > 1 (named ``colour_mix_share``).
        FileNotFoundError: ``run/<cfg.source>`` does not exist.
    """
    from diffusers import AutoencoderKL

    _check(run, cfg, pairs)
    vae = AutoencoderKL.from_pretrained(run / cfg.source)
    vae.requires_grad_(False)
    params = decoder_parameters(vae)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    rng = np.random.default_rng(cfg.seed + 5)
    generator = torch.Generator().manual_seed(cfg.seed + 5)
    loop = TrainingLoop(
        cfg.stage, TrainingState({"model": vae}, optimizer, generator=generator, rng=rng), params, CosineSchedule(cfg.steps, warmup=50, floor=0.1),
        checkpoint=run / f"{cfg.stage}_ckpt.pt", checkpoint_every=cfg.checkpoint_every, log=run / f"{cfg.stage}_loss.csv",
    )
    loop.resume()
    vae.encoder.eval()
    vae.decoder.train()
    sampled = round(cfg.batch * cfg.sample_share) if pairs is not None else 0
    mixed = min(round(cfg.batch * cfg.colour_mix_share), cfg.batch - sampled)
    neighbours = palette_neighbours(vae) if mixed else None

    def batch_loss(step: int) -> StepLoss:
        parts = []  # (latents, frames, backgrounds) per kind of item
        with torch.no_grad():
            if cfg.batch - sampled - mixed:
                frames, backgrounds = decoder_batch(rng, cfg.batch - sampled - mixed, cfg.empty_share)
                parts.append((vae.encode(frames_to_tensor(frames)).latent_dist.mean, frames, backgrounds))
            if mixed:
                parts.append(colour_mix_batch(rng, vae, mixed, neighbours, cfg.colour_mix_max))
            latents = torch.cat([p[0] for p in parts])  # (items, C, 8, 8)
            frames, backgrounds = np.concatenate([p[1] for p in parts]), [b for p in parts for b in p[2]]
            scale = torch.rand(latents.shape[0], 1, 1, 1, generator=generator) * cfg.latent_noise * latents.std()
            latents = latents + scale * torch.randn(latents.shape, generator=generator)
        if sampled:
            pair_latents, pair_frames, pair_backgrounds = pair_batch(pairs, rng, sampled)
            latents = torch.cat([latents, pair_latents])
            frames, backgrounds = np.concatenate([frames, pair_frames]), backgrounds + pair_backgrounds
        images = frames_to_tensor(frames)
        weight = foreground_weights(frames, backgrounds, cfg.foreground_weight)
        recon = vae.decode(latents).sample
        l1 = (weight * (recon - images).abs()).mean()
        mse = (weight * (recon - images) ** 2).mean()
        return StepLoss(l1 + mse, {"l1": l1, "mse": mse})

    loop.run(batch_loss)
    vae.eval()
    out = run / f"vae_{cfg.stage}"
    vae.save_pretrained(out)
    return out
