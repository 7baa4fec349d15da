"""The denoiser's training loss: box weights and the colour-direction term."""

from dataclasses import replace

import pytest
import torch

from core.models.layout import LayoutAdapter
from core.models.toy import build_toy_scheduler, build_toy_unet
from core.training.losses import box_loss_weights, unet_batch_loss


def test_box_loss_weights_cover_every_cell_an_on_screen_box_touches():
    boxes = torch.tensor([[[[0.0, 0.0, 0.5, 0.5], [0.75, 0.75, 1.0, 1.0]], [[0.3, 0.3, 0.4, 0.4], [0.0, 0.0, 0.0, 0.0]]]])
    masks = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # the second entity is off screen in both frames
    weights = box_loss_weights(boxes, masks, 8, 4.0)
    assert weights.shape == (1, 1, 2, 8, 8)
    first, second = weights[0, 0]
    assert (first[:4, :4] == 4).all() and first.sum() == 16 * 4 + 48  # the off-screen box adds nothing
    assert (second[2:4, 2:4] == 4).all() and second.sum() == 4 * 4 + 60  # a box smaller than a cell still counts


def test_colour_direction_loss_adds_a_weighted_term_along_the_directions(graph_run):
    cfg, data = graph_run
    torch.manual_seed(0)
    unet = build_toy_unet(data["latents"].shape[1])
    adapter = LayoutAdapter.for_unet(unet, gate_init=0.5, ff_mult=2)
    adapter.attach(unet)
    scheduler = build_toy_scheduler()
    channels = data["latents"].shape[1]
    idx = torch.tensor([0, 1])

    def loss(weight, directions):
        with torch.no_grad():
            run = {**data, "colour_directions": directions}
            return float(unet_batch_loss(unet, adapter, scheduler, run, idx, replace(cfg, colour_direction_weight=weight), torch.Generator().manual_seed(3)))

    some = torch.nn.functional.normalize(torch.randn(2, channels), dim=-1)
    plain, one, two = loss(0.0, some), loss(1.0, some), loss(2.0, some)
    assert one > plain
    assert two - plain == pytest.approx(2 * (one - plain), rel=1e-4)  # linear in the weight
    # A direction no error can have (all zero) adds nothing.
    assert loss(1.0, torch.zeros(1, channels)) == pytest.approx(plain, rel=1e-6)
