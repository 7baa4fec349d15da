"""Stage 5 of the toy model: fine-tune the autoencoder's decoder with its encoder frozen.

    python -m core.train decoder --run runs/toy --steps 3000

Why: the first autoencoder capped every layout metric. Drawing the dev plans exactly and passing
them through its encode -> decode alone took AP50 from 0.96 to 0.70 and count accuracy from 0.99 to
0.63 (``benchmarks/vae_ceiling.py``): blank backgrounds decoded with a coloured blob in a corner,
edges got a light frame, shapes got halos of a neighbouring palette colour. The encoder and its latent space stay as they are, so the
cached training latents and the trained UNet, adapter and graph encoder remain valid; only
``post_quant_conv`` and the decoder learn.

Each step draws fresh toy clips (two frames each, as the first stage did), replaces a share of the
frames with empty backgrounds (frames between an entity's exit and the next entrance are common in
plans and rare in random clips), encodes them to the posterior mean (what the UNet was trained to
produce), perturbs the latents with Gaussian noise of a random scale up to ``latent_noise`` times
their standard deviation (the denoiser's outputs are never exactly on the encoder's manifold), and
minimises L1 + MSE weighted ``foreground_weight`` times on shape pixels. Checkpoints go to
``run/decoder_ckpt.pt`` (resumable); the finished autoencoder is saved to ``run/vae_decoder`` and
:func:`core.train.export` prefers it over ``run/vae``.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.toyworld import render_frame, sample_clip


def decoder_parameters(vae) -> list[torch.nn.Parameter]:
    """The parameters this stage trains: ``post_quant_conv`` and ``decoder`` (encoder side frozen)."""
    return [*vae.post_quant_conv.parameters(), *vae.decoder.parameters()]


def decoder_batch(rng: np.random.Generator, batch: int, empty_share: float) -> tuple[np.ndarray, list[str]]:
    """``batch`` toy frames (batch, 64, 64, 3) uint8 and each frame's background name.

    Frames come in pairs from :func:`core.toyworld.sample_clip`; each frame is replaced by its
    empty background with probability ``empty_share`` (0-1).
    """
    frames, backgrounds = [], []
    for _ in range((batch + 1) // 2):
        clip = sample_clip(rng, num_frames=2)
        for frame in clip.frames:
            empty = rng.random() < empty_share
            frames.append(render_frame(clip.background, []) if empty else frame)
            backgrounds.append(clip.background)
    return np.stack(frames[:batch]), backgrounds[:batch]


def train_decoder(
    run: Path,
    *,
    steps: int,
    lr: float = 3e-4,
    batch: int = 16,
    foreground_weight: float = 4.0,
    latent_noise: float = 0.1,
    empty_share: float = 0.1,
    seed: int = 0,
    checkpoint_every: int = 200,
) -> Path:
    """Fine-tune the decoder of ``run/vae`` and save the result to ``run/vae_decoder``.

    Args:
        run: a toy run folder with ``vae/`` (stage 1).
        steps: total optimiser steps (resuming from ``run/decoder_ckpt.pt`` counts the steps done).
        lr: peak AdamW learning rate (cosine decay to 10 %, 50 warm-up steps).
        batch: frames per step.
        foreground_weight: loss weight of shape pixels relative to background pixels (>= 1).
        latent_noise: largest latent perturbation, as a multiple of the latents' std (0-1).
        empty_share: probability that a frame is replaced by its empty background (0-1).

    Returns:
        The saved autoencoder folder.

    Raises:
        FileNotFoundError: ``run/vae`` does not exist.
    """
    from diffusers import AutoencoderKL

    from core.train import _atomic_save, _foreground_weight_frames, _frames_to_tensor

    if not (run / "vae" / "config.json").exists():
        raise FileNotFoundError(f"{run / 'vae'}: train the autoencoder first (python -m core.train toy)")
    vae = AutoencoderKL.from_pretrained(run / "vae")
    vae.requires_grad_(False)
    params = decoder_parameters(vae)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed + 5)
    generator = torch.Generator().manual_seed(seed + 5)
    step = 0
    ckpt = run / "decoder_ckpt.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        vae.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rng"]
        generator.set_state(state["generator"])
        step = state["step"]
    vae.encoder.eval()
    vae.decoder.train()
    log = open(run / "decoder_loss.csv", "a", newline="")
    writer = csv.writer(log)
    bar = tqdm(total=steps, initial=step, desc="decoder", file=sys.stdout, mininterval=10)
    while step < steps:
        frames, backgrounds = decoder_batch(rng, batch, empty_share)
        images = _frames_to_tensor(frames)
        weight = _foreground_weight_frames(frames, backgrounds, foreground_weight)
        with torch.no_grad():
            latents = vae.encode(images).latent_dist.mean
            scale = torch.rand(latents.shape[0], 1, 1, 1, generator=generator) * latent_noise * latents.std()
            latents = latents + scale * torch.randn(latents.shape, generator=generator)
        recon = vae.decode(latents).sample
        l1 = (weight * (recon - images).abs()).mean()
        mse = (weight * (recon - images) ** 2).mean()
        loss = l1 + mse
        warm = min(1.0, (step + 1) / 50)
        for group in optimizer.param_groups:
            group["lr"] = lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        step += 1
        writer.writerow([step, f"{loss.item():.5f}", f"{l1.item():.5f}", f"{mse.item():.5f}"])
        bar.update(1)
        if step % checkpoint_every == 0 or step == steps:
            log.flush()
            state = {"model": vae.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng.bit_generator.state, "generator": generator.get_state(), "step": step}
            _atomic_save(state, ckpt)
    log.close()
    vae.eval()
    out = run / "vae_decoder"
    vae.save_pretrained(out)
    return out
