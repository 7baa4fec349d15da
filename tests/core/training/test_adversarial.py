"""The decoder's adversarial term: patch discriminator, hinge losses and the adaptive weight."""

import numpy as np
import pytest
import torch

from core.toyworld.world import ToyObject, render_frame
from core.training.adversarial import PatchDiscriminator, adaptive_weight, generator_loss, hinge_discriminator_loss


def test_the_discriminator_scores_overlapping_patches_and_refuses_other_depths():
    images = torch.zeros(2, 3, 128, 128)
    assert PatchDiscriminator(channels=8).forward(images).shape == (2, 1, 14, 14)  # 128 / 8 - 2: 70-pixel patches
    assert PatchDiscriminator(channels=8, layers=2)(images).shape == (2, 1, 30, 30)
    with pytest.raises(ValueError, match=r"^layers: must be in \[1, 4\] \(got 5\)$"):
        PatchDiscriminator(layers=5)
    with pytest.raises(ValueError, match=r"^channels: must be >= 1 \(got 0\)$"):
        PatchDiscriminator(channels=0)


def test_hinge_losses_vanish_only_past_the_margin():
    assert hinge_discriminator_loss(torch.full((2, 1, 4, 4), 2.0), torch.full((2, 1, 4, 4), -3.0)).item() == 0.0
    assert hinge_discriminator_loss(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)).item() == pytest.approx(1.0)
    assert hinge_discriminator_loss(torch.full((1, 1, 2, 2), 0.5), torch.full((1, 1, 2, 2), 0.5)).item() == pytest.approx(1.0)
    assert generator_loss(torch.tensor([[1.0, 3.0]])).item() == -2.0


def test_the_adaptive_weight_is_the_ratio_of_the_two_gradients_at_the_last_layer():
    last = torch.ones(3, requires_grad=True)
    reconstruction, adversarial = (2.0 * last).sum(), (0.5 * last).sum()  # gradient norms 2 sqrt(3) and 0.5 sqrt(3)
    weight = adaptive_weight(reconstruction, adversarial, last)
    assert weight.item() == pytest.approx(2.0 * 3**0.5 / (0.5 * 3**0.5 + 1e-4)) and not weight.requires_grad
    assert adaptive_weight((2.0 * last).sum(), (0.0 * last).sum(), last, max_weight=50.0).item() == 50.0  # no adversarial gradient: the cap
    (reconstruction + weight * adversarial).backward()  # both graphs were kept for the step's own backward
    assert torch.allclose(last.grad, torch.full((3,), 2.0 + weight.item() * 0.5))


def test_a_few_hinge_steps_teach_the_discriminator_a_drawn_star_from_a_blurred_one():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    frames = np.stack([
        render_frame("night", [ToyObject("star", "yellow", (float(x), float(y), float(x) + 0.3, float(y) + 0.3))], 64)
        for x, y in rng.uniform(0.05, 0.6, size=(8, 2))
    ])
    drawn = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (8, 3, 64, 64)
    blurred = torch.nn.functional.avg_pool2d(drawn, 5, stride=1, padding=2, count_include_pad=False)  # the star's points smudged
    discriminator = PatchDiscriminator(channels=8, layers=2)
    optimizer = torch.optim.AdamW(discriminator.parameters(), lr=2e-3, betas=(0.5, 0.9))
    with torch.no_grad():
        first = (discriminator(drawn) - discriminator(blurred)).mean().item()
    for _ in range(40):
        loss = hinge_discriminator_loss(discriminator(drawn), discriminator(blurred))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():  # every drawn frame now scores above its own blurred copy, by a margin that grew
        gaps = (discriminator(drawn) - discriminator(blurred)).mean(dim=(1, 2, 3))
    assert (gaps > 0).all() and gaps.mean().item() > 0.02 > 10 * abs(first)
