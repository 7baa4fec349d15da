"""PrunedUNet3DConditionModel: diffusers' UNet3D exactly by default; structured pruning of its input
temporal transformer keeps the heads and units that were measured to matter, and survives save/load."""

import pytest
import torch
from diffusers import UNet3DConditionModel

from core.models.unet import PrunedUNet3DConditionModel, transformer_in_importance

CONFIG = dict(
    sample_size=4, in_channels=4, out_channels=4, down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
    up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"), block_out_channels=(16, 32), layers_per_block=1,
    cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8,
)


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 4, 3, 4, 4, generator=g), torch.tensor([500, 500]), torch.randn(2, 5, 32, generator=g)


def output(unet, seed=0):
    sample, t, text = inputs(seed)
    with torch.no_grad():
        return unet(sample, t, encoder_hidden_states=text).sample


@pytest.fixture
def wide():
    torch.manual_seed(0)
    return UNet3DConditionModel(**CONFIG).eval()


def test_default_widths_are_diffusers_unet3d(wide):
    ours = PrunedUNet3DConditionModel(**CONFIG).eval()
    ours.load_state_dict(wide.state_dict())  # the same keys and shapes
    torch.testing.assert_close(output(ours), output(wide), rtol=0, atol=0)


def test_importance_scores_silenced_heads_and_units_zero(wide):
    block = wide.transformer_in.transformer_blocks[0]  # 8 heads of 4 = 32 wide, 128 feed-forward units
    with torch.no_grad():
        block.attn1.to_out[0].weight[:, 4:8] = 0  # head 1 of the first attention writes nothing
        block.ff.net[2].weight[:, :10] = 0  # nor do feed-forward units 0-9
    with transformer_in_importance(wide) as importance:
        output(wide)
    assert {k: tuple(v.shape) for k, v in importance.items()} == {"attn1": (8,), "attn2": (8,), "ff": (128,)}
    assert importance["attn1"][1] == 0 and torch.all(importance["attn1"][[0, *range(2, 8)]] > 0)
    assert torch.all(importance["attn2"] > 0)
    assert torch.all(importance["ff"][:10] == 0) and torch.all(importance["ff"][10:] > 0)


def test_narrowed_keeps_the_top_heads_and_units_and_equals_the_wide_model_with_the_rest_silenced(wide):
    with transformer_in_importance(wide) as importance:
        output(wide)
    assert torch.equal(output(PrunedUNet3DConditionModel.narrowed_from(wide, 8, None, importance)), output(wide))  # nothing dropped

    narrow = PrunedUNet3DConditionModel.narrowed_from(wide, 3, 40, importance)
    block = narrow.transformer_in.transformer_blocks[0]
    assert (block.attn1.heads, block.attn2.heads, block.ff.net[2].in_features) == (3, 3, 40)
    assert narrow.config.transformer_in_heads == 3 and narrow.config.transformer_in_ff_inner_dim == 40
    wide_block = wide.transformer_in.transformer_blocks[0]
    with torch.no_grad():  # silence what was dropped: the to_out columns of the other heads, the other units' outputs
        for name in ("attn1", "attn2"):
            dropped = torch.ones(8, dtype=torch.bool)
            dropped[importance[name].topk(3).indices] = False
            getattr(wide_block, name).to_out[0].weight.view(32, 8, 4)[:, dropped] = 0
        dropped = torch.ones(128, dtype=torch.bool)
        dropped[importance["ff"].topk(40).indices] = False
        wide_block.ff.net[2].weight[:, dropped] = 0
    torch.testing.assert_close(output(narrow), output(wide))
    rest = {k: v for k, v in narrow.state_dict().items() if not k.startswith("transformer_in.transformer_blocks.0.")}
    assert all(torch.equal(v, wide.state_dict()[k]) for k, v in rest.items())


def test_narrowed_unet_survives_save_and_load(wide, tmp_path):
    with transformer_in_importance(wide) as importance:
        output(wide)
    narrow = PrunedUNet3DConditionModel.narrowed_from(wide, 2, 16, importance)
    narrow.save_pretrained(tmp_path / "unet")
    loaded = PrunedUNet3DConditionModel.from_pretrained(tmp_path / "unet").eval()
    assert loaded.transformer_in.transformer_blocks[0].attn1.heads == 2
    torch.testing.assert_close(output(loaded, seed=1), output(narrow, seed=1), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("heads", "units", "message"),
    [
        (0, None, r"^transformer_in_heads: must be in \[1, 8\] to prune this UNet \(got 0\)"),
        (9, None, r"^transformer_in_heads: must be in \[1, 8\] to prune this UNet \(got 9\)"),
        (4, 129, r"^transformer_in_ff_inner_dim: must be in \[1, 128\] to prune this UNet \(got 129\)"),
    ],
)
def test_narrowing_outside_the_wide_model_names_the_field(wide, heads, units, message):
    importance = {"attn1": torch.ones(8), "attn2": torch.ones(8), "ff": torch.ones(128)}
    with pytest.raises(ValueError, match=message):
        PrunedUNet3DConditionModel.narrowed_from(wide, heads, units, importance)
    with pytest.raises(ValueError, match=r"^importance: needs attn1 \(8,\), attn2 \(8,\), ff \(128,\)"):
        PrunedUNet3DConditionModel.narrowed_from(wide, 4, None, {"attn1": torch.ones(8), "attn2": torch.ones(8)})
    with pytest.raises(ValueError, match=r"^transformer_in_heads: must be in \[1, 8\] \(got 0\)"):
        PrunedUNet3DConditionModel(**CONFIG, transformer_in_heads=0)
