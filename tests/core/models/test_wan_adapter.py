"""The Wan layout adapter's grounding tokens: GLIGEN's, plus an optional order (depth) embedding."""

import torch

from core.models.wan_adapter import WanLayoutAdapter


def _adapter(depth_slots: int) -> WanLayoutAdapter:
    torch.manual_seed(0)
    return WanLayoutAdapter(dim=32, heads=2, num_blocks=1, phrase_dim=8, depth_slots=depth_slots)


def test_order_embeddings_start_at_zero_and_mark_each_on_screen_entity_by_its_place():
    boxes = torch.rand(2, 4, 4).sort(-1).values
    masks = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 1.0, 1.0]])
    phrases = torch.randn(2, 4, 8)
    plain, ordered = _adapter(0), _adapter(3)
    ordered.position_net.load_state_dict(plain.position_net.state_dict())
    assert torch.equal(ordered.grounding_tokens(boxes, masks, phrases), plain.grounding_tokens(boxes, masks, phrases))  # zero-initialised
    with torch.no_grad():
        ordered.depth.weight.copy_(torch.arange(3.0)[:, None].expand(3, 32) + 1)
    extra = ordered.grounding_tokens(boxes, masks, phrases) - plain.grounding_tokens(boxes, masks, phrases)  # (frames, entities, dim)
    assert torch.allclose(extra[..., 0], torch.tensor([[1.0, 2.0, 3.0, 0.0], [1.0, 0.0, 3.0, 3.0]]))  # slot n + 1; entity 4 shares the last slot; off screen: none
