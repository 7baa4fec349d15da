"""The shipped autoencoder of model v2 (``assets/wan-toy/vae``): what a user's renders can keep."""

from pathlib import Path

import numpy as np
import pytest
import torch

from core.toyworld.detect import detect
from core.toyworld.shapes import classify
from core.toyworld.world import COLORS, KINDS, ToyObject, render_frame

SHIPPED = Path(__file__).resolve().parents[3] / "assets" / "wan-toy" / "vae"


@pytest.fixture(scope="module")
def vae():
    from core.models.toy_wan import FrameAutoencoderKL

    return FrameAutoencoderKL.from_pretrained(SHIPPED).eval()


def reconstruct(vae, frames: np.ndarray) -> np.ndarray:
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    video = images.permute(1, 0, 2, 3)[None]  # (1, 3, F, H, W): the frames as one video
    with torch.no_grad():
        decoded = vae.decode(vae.encode(video).latent_dist.mean).sample[0].permute(1, 0, 2, 3)
    return ((decoded.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def test_every_kind_keeps_its_shape_through_the_shipped_autoencoder(vae):
    # Side 0.24 (31 px), the median side of the dev plans' boxes; one colour per kind on the sky.
    frames = np.stack(
        [render_frame("sky", [ToyObject(kind, color, (0.3, 0.35, 0.54, 0.59))], 128) for kind, color in zip(KINDS, COLORS, strict=True)]
    )
    decoded = reconstruct(vae, frames)
    kinds = []
    for frame in decoded:
        found = detect(frame, background="sky")
        assert len(found) == 1  # one shape, no speck
        kinds.append(classify(frame, found[0], background="sky").kind)
    assert kinds == list(KINDS)


def test_latents_are_16_channels_at_an_eighth_of_the_side_with_measured_statistics(vae):
    frames = np.stack([render_frame("night", [ToyObject("star", "yellow", (0.2, 0.2, 0.5, 0.5))], 128)] * 3)
    images = torch.from_numpy(frames).permute(3, 0, 1, 2).float()[None] / 127.5 - 1.0  # (1, 3, 3, 128, 128)
    with torch.no_grad():
        latents = vae.encode(images).latent_dist.mean
    assert latents.shape == (1, 16, 3, 16, 16)
    assert len(vae.config.latents_std) == 16 and set(vae.config.latents_std) != {1.0}
