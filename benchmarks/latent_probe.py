"""Is a small shape's kind still in model v2's latents? A probe on the encoder's output against the
decoder's reconstruction.

    .venv/bin/python benchmarks/latent_probe.py [--vae assets/wan-toy/vae] [--sides 0.15 0.24]

The autoencoder's ceiling (``benchmarks/vae_ceiling.py --grid``) shows small stars and rings
decoding as discs. That loss is either in the encoder (a 16x16x16 latent cannot tell a 19-pixel
star from a disc) or in the decoder (the latent can, and the decoder does not draw it). This script
tells them apart. For each side, one exact drawing of every kind x colour x background (384 frames)
is drawn at ``--train-draws`` sets of random places for training and one more for testing. Each
frame is encoded (posterior mean, normalised by the config's ``latents_mean`` / ``latents_std``) and
the 5x5 latent cells around the shape's centre (400 numbers) are the features. A small MLP
(400 -> 256 -> 8, AdamW, full batch) is trained on the training frames to name the kind. On the
test frames the script prints, per kind, the probe's accuracy and the shape classifier's accuracy
on the decoder's reconstruction of the same frames (what ``vae_ceiling.py --grid`` measures).

A probe well above the reconstruction says the kind is in the latents and a stronger decoder can
draw it without retraining the denoiser (the latents stay the same); a probe near it says the
encoder is the bottleneck. The probe sees only single shapes on flat backgrounds, so it is an
upper bound on what the latents hold, not a prediction of any decoder's score.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WINDOW = 5  # latent cells a side around the shape's centre


def draw_set(side: float, rng: np.random.Generator):
    """One exact drawing of every kind x colour x background at a random place.

    Returns:
        (frames (384, 128, 128, 3) uint8, kinds (384,) int64 indices into KINDS, centres (384, 2) in [0, 1] (x, y)).
    """
    from core.toyworld.world import BACKGROUNDS, COLORS, KINDS, ToyObject, render_frame

    frames, kinds, centres = [], [], []
    for kind, color, background in itertools.product(KINDS, COLORS, BACKGROUNDS):
        x, y = rng.uniform(0.05, 0.95 - side, size=2)
        frames.append(render_frame(background, [ToyObject(kind, color, (x, y, x + side, y + side))], 128))
        kinds.append(KINDS.index(kind))
        centres.append((x + side / 2, y + side / 2))
    return np.stack(frames), np.array(kinds), np.array(centres)


@torch.no_grad()
def encode(vae, frames: np.ndarray) -> torch.Tensor:
    """frames (N, 128, 128, 3) uint8 -> normalised posterior means (N, C, 16, 16) float32."""
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1)
    out = []
    for i in range(0, len(frames), 64):
        images = torch.from_numpy(frames[i : i + 64].copy()).permute(0, 3, 1, 2).float() / 127.5 - 1
        out.append((vae.encode(images).latent_dist.mean - mean) / std)
    return torch.cat(out)


def windows(latents: torch.Tensor, centres: np.ndarray) -> torch.Tensor:
    """The WINDOW x WINDOW latent cells around each centre, zero-padded at the edges: (N, C * WINDOW**2)."""
    n, c, h, w = latents.shape
    half = WINDOW // 2
    padded = torch.nn.functional.pad(latents, (half, half, half, half))
    out = torch.empty(n, c, WINDOW, WINDOW)
    for i, (cx, cy) in enumerate(centres):
        col, row = min(int(cx * w), w - 1), min(int(cy * h), h - 1)
        out[i] = padded[i, :, row : row + WINDOW, col : col + WINDOW]
    return out.flatten(1)


def train_probe(features: torch.Tensor, labels: torch.Tensor, classes: int, steps: int = 1500, seed: int = 0) -> torch.nn.Module:
    """An MLP (features -> 256 -> classes) fitted by AdamW (lr 1e-3, weight decay 1e-2) on the whole set."""
    torch.manual_seed(seed)
    probe = torch.nn.Sequential(torch.nn.Linear(features.shape[1], 256), torch.nn.GELU(), torch.nn.Dropout(0.2), torch.nn.Linear(256, classes))
    optimizer = torch.optim.AdamW(probe.parameters(), lr=1e-3, weight_decay=1e-2)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(probe(features), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return probe.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vae", type=Path, default=ROOT / "assets" / "wan-toy" / "vae", help="a FrameAutoencoderKL folder")
    parser.add_argument("--sides", type=float, nargs="+", default=[0.15, 0.24], help="shape sides, shares of the frame")
    parser.add_argument("--train-draws", type=int, default=6, help="sets of 384 training frames per side")
    args = parser.parse_args()

    from core.models.toy_wan import FrameAutoencoderKL
    from core.toyworld.detect import detect
    from core.toyworld.shapes import classify
    from core.toyworld.world import BACKGROUNDS, COLORS, KINDS

    torch.set_num_threads(2)
    vae = FrameAutoencoderKL.from_pretrained(args.vae).float().eval()
    combos = list(itertools.product(KINDS, COLORS, BACKGROUNDS))
    print(f"| side | what | all | " + " | ".join(KINDS) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in KINDS) + " |")
    for side in args.sides:
        rng = np.random.default_rng(1)
        draws = [draw_set(side, rng) for _ in range(args.train_draws + 1)]
        features, labels = [], []
        for frames, kinds, centres in draws[:-1]:
            features.append(windows(encode(vae, frames), centres))
            labels.append(torch.from_numpy(kinds))
        x, y = torch.cat(features), torch.cat(labels)
        scale_mean, scale_std = x.mean(0), x.std(0).clamp(min=1e-6)
        probe = train_probe((x - scale_mean) / scale_std, y, len(KINDS))

        frames, kinds, centres = draws[-1]
        latents = encode(vae, frames)
        with torch.no_grad():
            predicted = probe((windows(latents, centres) - scale_mean) / scale_std).argmax(1).numpy()
            mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1)
            std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1)
            decoded = torch.cat([vae.decode(latents[i : i + 64] * std + mean).sample for i in range(0, len(latents), 64)])
        decoded = ((decoded.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        reconstructed = []
        for frame, (kind, _, background) in zip(decoded, combos):
            found = detect(frame, background=background)
            reconstructed.append(bool(found) and classify(frame, found[0], background=background).kind == kind)
        reconstructed = np.array(reconstructed)
        probe_ok = predicted == kinds
        for what, ok in (("latent probe", probe_ok), ("decoded, shape classifier", reconstructed)):
            per_kind = [ok[kinds == k].mean() for k in range(len(KINDS))]
            print(f"| {side:.2f} | {what} | {ok.mean():.3f} | " + " | ".join(f"{v:.2f}" for v in per_kind) + " |")


if __name__ == "__main__":
    main()
