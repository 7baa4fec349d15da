"""Starting a run from the shipped model's weights."""

import pytest
import torch

from core.models.toy import LATENT_CHANNELS, build_toy_unet, build_toy_vae
from core.models.unet import PrunedUNet3DConditionModel
from core.render import REFERENCE_MODEL as TOY_MODEL
from core.training.weights import load_matching, pipeline_weights


def test_another_latent_width_starts_the_autoencoder_from_the_shipped_one_except_the_layers_that_touch_the_latent():
    shipped = pipeline_weights(TOY_MODEL, "vae")
    assert shipped["quant_conv.weight"].shape[0] == 2 * LATENT_CHANNELS  # the shipped model is the default width
    vae = build_toy_vae(latent_channels=4)
    fresh = load_matching(vae, shipped)
    assert set(fresh) == {
        "encoder.conv_out.weight", "encoder.conv_out.bias", "quant_conv.weight", "quant_conv.bias",
        "post_quant_conv.weight", "post_quant_conv.bias", "decoder.conv_in.weight",
    }
    assert torch.equal(vae.state_dict()["decoder.up_blocks.0.resnets.0.conv1.weight"], shipped["decoder.up_blocks.0.resnets.0.conv1.weight"].float())
    with torch.no_grad():
        latents = vae.encode(torch.zeros(2, 3, 64, 64)).latent_dist.mean
    assert latents.shape == (2, 4, 8, 8)


def test_another_latent_width_starts_the_unet_from_the_shipped_one_except_conv_in_and_conv_out():
    widths = PrunedUNet3DConditionModel.load_config(TOY_MODEL / "unet")  # the shipped input temporal transformer's
    unet = build_toy_unet(
        latent_channels=4, transformer_in_heads=widths.get("transformer_in_heads", 8), transformer_in_ff_inner_dim=widths.get("transformer_in_ff_inner_dim")
    )
    assert set(load_matching(unet, pipeline_weights(TOY_MODEL, "unet"))) == {"conv_in.weight", "conv_out.weight", "conv_out.bias"}
    with torch.no_grad():
        out = unet(torch.randn(1, 4, 2, 8, 8), 500, encoder_hidden_states=torch.zeros(1, 4, 384)).sample
    assert out.shape == (1, 4, 2, 8, 8)


def test_a_missing_part_names_init_from():
    with pytest.raises(FileNotFoundError, match="init_from"):
        pipeline_weights(TOY_MODEL, "no_such_part")
