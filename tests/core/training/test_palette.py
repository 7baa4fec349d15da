"""Where the palette colours lie in the shipped autoencoder's latent space."""

import pytest
import torch
from diffusers import AutoencoderKL

from core.render import REFERENCE_MODEL as TOY_MODEL
from core.toyworld.world import BACKGROUNDS, COLORS
from core.training.palette import near_colour_directions, palette_latents, palette_neighbours


@pytest.fixture(scope="module")
def shipped_vae():
    return AutoencoderKL.from_pretrained(TOY_MODEL / "vae").float().eval()


def test_palette_neighbours_of_the_shipped_autoencoder_pair_the_colours_it_confuses(shipped_vae):
    neighbours = palette_neighbours(shipped_vae, k=2)
    assert set(neighbours) == set(BACKGROUNDS)
    for background, table in neighbours.items():
        assert set(table) == set(COLORS)
        assert all(len(near) == 2 and colour not in near and set(near) <= set(COLORS) for colour, near in table.items())
        assert table["white"][0] == "pink", background  # the pink rings of benchmarks/vae_ceiling.py
    assert "red" in neighbours["ocean"]["orange"] and neighbours["ocean"]["red"][0] == "orange"


def test_palette_neighbours_reject_a_k_beyond_the_palette(shipped_vae):
    with pytest.raises(ValueError, match=r"k: must be in \[1, 7\] \(got 8\)"):
        palette_neighbours(shipped_vae, k=8)


def test_red_and_orange_are_the_nearest_colours_in_the_shipped_latent_and_their_direction_is_first(shipped_vae):
    vae = shipped_vae
    codes = palette_latents(vae, vae.config.scaling_factor)
    assert codes.shape == (len(BACKGROUNDS), len(COLORS), vae.config.latent_channels)
    directions = near_colour_directions(vae, vae.config.scaling_factor, pairs=3)
    assert directions.shape == (3, vae.config.latent_channels)
    torch.testing.assert_close(directions.norm(dim=-1), torch.ones(3))
    red, orange = list(COLORS).index("red"), list(COLORS).index("orange")
    expected = torch.nn.functional.normalize((codes[:, red] - codes[:, orange]).mean(0), dim=0)
    torch.testing.assert_close(directions[0], expected)
