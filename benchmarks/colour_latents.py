"""How far apart the autoencoder puts the toy world's colours: latent distances between flat patches.

    .venv/bin/python benchmarks/colour_latents.py [--vae DIR]

For every background of :data:`core.toyworld.world.BACKGROUNDS`, one 64x64 frame per palette colour is
drawn with a 24x24 square of that colour in the middle (pixels 20-43, so the 2x2 latent cells 3-4
lie wholly inside it), encoded to the posterior mean times ``scaling_factor``, and the mean of
those cells is taken (:func:`core.training.palette.palette_latents`): the L2 distance between two
colours' latents, averaged over the backgrounds. The denoiser is trained with a mean squared error on these latents,
so the closest pairs are the colours it is least pushed to tell apart. Prints the distance table
and the pairs from nearest to farthest, next to their RGB distance.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    import numpy as np
    import torch
    from diffusers import AutoencoderKL

    from core.toyworld.world import BACKGROUNDS, COLORS
    from core.training.palette import palette_latents

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vae", type=Path, default=ROOT / "assets" / "layout2vid-toy" / "vae")
    args = parser.parse_args()

    vae = AutoencoderKL.from_pretrained(args.vae).float().eval()
    names = list(COLORS)
    codes = palette_latents(vae, vae.config.scaling_factor)  # (backgrounds, colours, C)
    distance = torch.cdist(codes, codes).mean(0)
    print(f"latent L2 between colour patches, mean over {len(BACKGROUNDS)} backgrounds ({args.vae})")
    print("| | " + " | ".join(names) + " |")
    print("| --- " * (len(names) + 1) + "|")
    for i, name in enumerate(names):
        print(f"| {name} | " + " | ".join(f"{float(distance[i, j]):.1f}" for j in range(len(names))) + " |")
    print("pairs, nearest first (latent L2; RGB L2):")
    pairs = sorted(itertools.combinations(range(len(names)), 2), key=lambda p: float(distance[p]))
    for i, j in pairs:
        rgb = np.linalg.norm(np.subtract(COLORS[names[i]], COLORS[names[j]]))
        print(f"  {names[i]}-{names[j]}: {float(distance[i, j]):.2f}; {rgb:.0f}")


if __name__ == "__main__":
    main()
