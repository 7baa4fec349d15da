"""Where the palette colours lie in an autoencoder's latent space.

The denoiser's MSE is least pushed to separate colours whose latents lie close together (red and
orange for the shipped autoencoder, ``benchmarks/colour_latents.py``). The ``graph`` stage can add
a loss along those directions (:func:`near_colour_directions`); the ``decoder`` stage mixes
latents toward each colour's nearest neighbours (:func:`palette_neighbours`).
"""

from __future__ import annotations

import numpy as np
import torch

from core.toyworld.world import BACKGROUNDS, COLORS

PATCH = slice(20, 44)  # a 24x24 square in a 64x64 frame; latent cells 3-4 lie wholly inside it


def palette_latents(vae, scaling_factor: float) -> torch.Tensor:
    """Latents of flat palette-colour squares.

    For each background of ``core.toyworld.world.BACKGROUNDS`` and each colour of ``COLORS`` (in their
    order), a 64x64 frame with a 24x24 square of the colour in the middle is encoded (posterior mean
    times ``scaling_factor``) and the 2x2 latent cells inside the square are averaged.

    Args:
        vae: an ``AutoencoderKL`` taking 64x64 frames to 8x8 latents.

    Returns:
        torch.Tensor of shape (backgrounds, colours, latent_channels), float32.
    """
    out = torch.zeros(len(BACKGROUNDS), len(COLORS), vae.config.latent_channels)
    for b, background in enumerate(BACKGROUNDS.values()):
        frames = np.empty((len(COLORS), 64, 64, 3), np.float32)
        frames[:] = background
        for c, colour in enumerate(COLORS.values()):
            frames[c, PATCH, PATCH] = colour
        pixels = torch.from_numpy(frames / 127.5 - 1.0).permute(0, 3, 1, 2)  # (colours, 3, 64, 64) in [-1, 1]
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.mean * scaling_factor
        out[b] = latents[:, :, 3:5, 3:5].mean((-1, -2))
    return out


def near_colour_directions(vae, scaling_factor: float, *, pairs: int = 5) -> torch.Tensor:
    """Unit latent directions between the ``pairs`` nearest palette colours.

    The distance of two colours is the L2 distance of their :func:`palette_latents`, averaged over
    the backgrounds; a pair's direction is the mean difference, normalised. Used as
    ``data["colour_directions"]`` by :func:`core.training.losses.unet_batch_loss` when
    ``ToyTrainConfig.colour_direction_weight`` > 0.

    Returns:
        torch.Tensor of shape (pairs, latent_channels), float32, nearest pair first.
    """
    codes = palette_latents(vae, scaling_factor)  # (B, K, C)
    colours = codes.shape[1]
    ranked = sorted(
        ((i, j) for i in range(colours) for j in range(i + 1, colours)), key=lambda p: float((codes[:, p[0]] - codes[:, p[1]]).norm(dim=-1).mean())
    )
    directions = torch.stack([(codes[:, i] - codes[:, j]).mean(0) for i, j in ranked[:pairs]])
    return torch.nn.functional.normalize(directions, dim=-1)


def palette_neighbours(vae, *, k: int = 2) -> dict[str, dict[str, list[str]]]:
    """For each background and palette colour, the ``k`` colours whose encodings lie nearest.

    Distances are the L2 distances of :func:`palette_latents` (flat squares of each colour on each
    background, encoded by ``vae``), per background: on the ocean white's nearest is pink,
    orange's is red.

    Returns:
        ``{background: {colour: [nearest colour, ...]}}`` over ``core.toyworld.world`` names.

    Raises:
        ValueError: ``k`` not in [1, number of colours - 1].
    """
    names = list(COLORS)
    if not 1 <= k < len(names):
        raise ValueError(f"k: must be in [1, {len(names) - 1}] (got {k})")
    codes = palette_latents(vae, 1.0)  # (backgrounds, colours, C)
    out = {}
    for b, background in enumerate(BACKGROUNDS):
        distance = torch.cdist(codes[b], codes[b]).fill_diagonal_(float("inf"))
        out[background] = {name: [names[j] for j in distance[i].argsort()[:k].tolist()] for i, name in enumerate(names)}
    return out
