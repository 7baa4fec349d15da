"""The ``toy`` stage: the miniature Layout2Vid's autoencoder, its cached clips, and its UNet.

    python -m core.training toy --out runs/toy --seed 0

1. ``vae``: AutoencoderKL on random toy frames (L1 + MSE, shape pixels weighted, + a small KL
   term); saved to ``run/vae``; checkpoints in ``run/vae_ckpt.pt``, loss in ``run/vae_loss.csv``.
2. ``data``: random clips encoded to latents with caption token embeddings and per-frame
   grounding, cached in ``run/data.pt`` (:func:`core.training.toy_data.build_dataset`).
3. ``unet``: UNet3D + layout adapter, v-prediction on a zero-terminal-SNR schedule, with condition
   dropout for classifier-free guidance; checkpoints in ``run/unet_ckpt.pt``, loss in ``run/loss.csv``.

Each part resumes from its checkpoint; a finished part is skipped.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from core.toyworld.world import sample_clip
from core.training.config import ToyTrainConfig
from core.training.loop import CosineSchedule, StepLoss, StepRecord, TrainingLoop, TrainingState
from core.training.losses import unet_batch_loss
from core.training.toy_data import build_dataset, foreground_weights, frames_to_tensor
from core.training.weights import load_matching, pipeline_weights


def train_toy(out: Path, cfg: ToyTrainConfig) -> None:
    """Run all three parts of the stage in ``out`` (created), writing ``cfg`` to ``out/config.json``."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    train_vae(out, cfg)
    data = build_dataset(out, cfg)
    train_unet(out, cfg, data)


def train_vae(run: Path, cfg: ToyTrainConfig) -> None:
    """Train the toy AutoencoderKL and save it to ``run/vae`` (skipped when it exists).

    A fresh run with ``cfg.init_from`` starts from that pipeline's autoencoder, every tensor whose
    shape fits (:func:`core.training.weights.load_matching`). Cosine learning rate from
    ``cfg.vae_lr`` to 0, no warm-up, no clipping.
    """
    from core.models.toy import build_toy_vae

    if (run / "vae" / "config.json").exists():
        return
    vae = build_toy_vae(cfg.latent_channels)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    rng = np.random.default_rng(cfg.seed)
    loop = TrainingLoop(
        "vae", TrainingState({"model": vae}, optimizer, rng=rng), list(vae.parameters()), CosineSchedule(cfg.vae_steps),
        checkpoint=run / "vae_ckpt.pt", checkpoint_every=cfg.checkpoint_every, clip_grad_norm=None, log=run / "vae_loss.csv",
    )
    if not loop.resume() and cfg.init_from:
        fresh = load_matching(vae, pipeline_weights(cfg.init_from, "vae"))
        print(f"vae: started from {cfg.init_from}; fresh: {', '.join(fresh) or 'none'}", flush=True)
    vae.train()

    def batch_loss(step: int) -> StepLoss:
        clips = [sample_clip(rng, num_frames=2) for _ in range(cfg.vae_batch // 2)]
        frames = np.concatenate([c.frames for c in clips])  # (B, 64, 64, 3) uint8
        images = frames_to_tensor(frames)
        weight = foreground_weights(frames, [c.background for c in clips for _ in c.frames], cfg.vae_foreground_weight)
        posterior = vae.encode(images).latent_dist
        recon = vae.decode(posterior.sample()).sample
        l1 = (weight * (recon - images).abs()).mean()
        mse = (weight * (recon - images) ** 2).mean()
        kl = posterior.kl().mean() / images[0].numel()
        return StepLoss(l1 + mse + 1e-4 * kl, {"l1": l1, "mse": mse, "kl": kl})

    loop.run(batch_loss)
    vae.eval()
    vae.save_pretrained(run / "vae")


def _unet_row(record: StepRecord) -> list:
    return [record.step, f"{record.loss:.5f}", f"{record.lr:.2e}", f"{record.elapsed:.1f}"]


def train_unet(run: Path, cfg: ToyTrainConfig, data: dict) -> None:
    """Train UNet3D + LayoutAdapter on the cached clips (:func:`core.training.losses.unet_batch_loss`).

    AdamW (weight decay 0.01) at ``cfg.unet_lr``, ``cfg.warmup`` warm-up steps, cosine to 10 %,
    gradients clipped at norm 1; checkpoints in ``run/unet_ckpt.pt``, loss in ``run/loss.csv``
    (step, loss, learning rate, seconds).
    """
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
    loop = TrainingLoop(
        "unet", TrainingState({"unet": unet, "adapter": adapter}, optimizer, generator=generator), params,
        CosineSchedule(cfg.unet_steps, warmup=cfg.warmup, floor=0.1),
        checkpoint=run / "unet_ckpt.pt", checkpoint_every=cfg.checkpoint_every, log=run / "loss.csv",
    )
    loop.resume()
    if loop.finished:
        return
    unet.train()
    adapter.train()
    n = data["latents"].shape[0]

    def batch_loss(step: int) -> torch.Tensor:
        idx = torch.randint(0, n, (cfg.unet_batch,), generator=generator)
        return unet_batch_loss(unet, adapter, scheduler, data, idx, cfg, generator)

    loop.run(batch_loss, row=_unet_row)
