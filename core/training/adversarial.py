"""An adversarial term for the frame decoder: a patch discriminator, hinge losses and the adaptive weight.

A decoder trained on per-pixel losses alone draws the mean of what a latent could hold: where a
small star's points or a ring's hole are uncertain by a pixel, the mean is a blob. The autoencoders
of latent diffusion (Esser et al. 2021, "Taming Transformers", section 3.1; Rombach et al. 2022,
appendix G) add a patch discriminator (Isola et al. 2017, "pix2pix", section 3.2.2) that scores
local patches as drawn or decoded, and weigh its loss against the reconstruction loss by the ratio
of their gradients at the decoder's last layer (Esser et al., eq. 7). This module holds those
pieces; :func:`core.training.wan_toy.tune_autoencoder` uses them when ``adversarial_weight`` > 0.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """A PatchGAN (Isola et al. 2017): 4x4 convolutions, ``layers`` of them at stride 2 and one at
    stride 1, then a 1-channel 4x4 convolution, so each output logit scores one overlapping patch
    (70 pixels across at ``layers`` 3, 34 at 2); LeakyReLU 0.2 between them. No normalisation: batch
    norm cannot be estimated from a batch of 8 frames, and spectral normalisation (Miyato et al. 2018)
    bounds the logits so tightly that a decoded frame, on average 0.012 from its drawing on the [-1, 1]
    scale, cannot be told from it within a few hundred steps.

    Args:
        channels: width of the first convolution (>= 1); each stride-2 layer doubles it, up to 8x.
        layers: stride-2 convolutions, in [1, 4].

    Raises:
        ValueError: ``channels`` below 1 or ``layers`` outside [1, 4].

    Shapes:
        (N, 3, H, W) float images in [-1, 1] -> (N, 1, h, w) float logits (h = H / 2**layers - 2
        for H divisible by 2**layers); positive means "drawn".
    """

    def __init__(self, channels: int = 32, layers: int = 3) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels: must be >= 1 (got {channels})")
        if not 1 <= layers <= 4:
            raise ValueError(f"layers: must be in [1, 4] (got {layers})")
        widths = [3] + [channels * min(2**i, 8) for i in range(layers + 1)]
        blocks: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            stride = 2 if i < layers else 1
            blocks += [nn.Conv2d(c_in, c_out, 4, stride=stride, padding=1), nn.LeakyReLU(0.2)]
        blocks.append(nn.Conv2d(widths[-1], 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*blocks)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Patch logits (N, 1, h, w) of images (N, 3, H, W) in [-1, 1]."""
        return self.net(images)


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's hinge loss (Lim & Ye 2017; Esser et al. 2021):
    ``0.5 * (mean(relu(1 - real)) + mean(relu(1 + fake)))``, a scalar >= 0 that is 0 once every drawn
    patch scores >= 1 and every decoded one <= -1."""
    return 0.5 * (torch.relu(1.0 - real_logits).mean() + torch.relu(1.0 + fake_logits).mean())


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The decoder's adversarial loss, ``-mean(fake_logits)``: lower as its patches look drawn."""
    return -fake_logits.mean()


def adaptive_weight(
    reconstruction_loss: torch.Tensor, adversarial_loss: torch.Tensor, last_layer: torch.Tensor, max_weight: float = 1e4,
) -> torch.Tensor:
    """Esser et al. 2021, eq. 7: ``||grad_L(reconstruction)|| / (||grad_L(adversarial)|| + 1e-4)``
    with ``L`` the decoder's last layer weight, clamped to [0, ``max_weight``] and detached, so the
    adversarial term pulls on that layer as hard as the reconstruction term whatever their scales.

    Args:
        reconstruction_loss, adversarial_loss: scalar tensors whose graphs reach ``last_layer``
            (both graphs are kept for the backward pass that follows).
        last_layer: the weight of the decoder's output convolution (requires grad).

    Returns:
        A scalar tensor without gradient.
    """
    (rec,) = torch.autograd.grad(reconstruction_loss, last_layer, retain_graph=True)
    (adv,) = torch.autograd.grad(adversarial_loss, last_layer, retain_graph=True)
    return (rec.norm() / (adv.norm() + 1e-4)).clamp(0.0, max_weight).detach()
