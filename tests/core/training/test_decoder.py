"""The decoder stage keeps the latent space: its batches, colour-mixed items and settings."""

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from core.models.toy import build_toy_vae
from core.toyworld.world import BACKGROUNDS, COLORS
from core.training.config import DecoderTrainConfig
from core.training.decoder import colour_mix_batch, decoder_batch, train_decoder


def test_decoder_stage_changes_the_decoder_and_leaves_the_encoder(tmp_path):
    torch.manual_seed(0)
    build_toy_vae().save_pretrained(tmp_path / "vae")
    before = AutoencoderKL.from_pretrained(tmp_path / "vae").state_dict()
    out = train_decoder(tmp_path, DecoderTrainConfig(steps=3, batch=4, checkpoint_every=2))
    after = AutoencoderKL.from_pretrained(out).state_dict()
    for name, value in before.items():
        changed = not torch.equal(value, after[name])
        if name.startswith(("encoder.", "quant_conv.")):
            assert not changed, name
    assert any(not torch.equal(before[n], after[n]) for n in before if n.startswith("decoder."))
    assert (tmp_path / "decoder_loss.csv").read_text().count("\n") == 3
    # Resuming at the finished step count trains nothing more and saves the same weights.
    again = AutoencoderKL.from_pretrained(train_decoder(tmp_path, DecoderTrainConfig(steps=3, batch=4))).state_dict()
    assert all(torch.equal(after[n], again[n]) for n in after)


def test_decoder_batches_include_empty_backgrounds():
    frames, backgrounds = decoder_batch(np.random.default_rng(0), 64, empty_share=0.5)
    assert frames.shape == (64, 64, 64, 3) and frames.dtype == np.uint8 and len(backgrounds) == 64
    empty = [np.all(f == np.array(BACKGROUNDS[b], dtype=np.uint8)) for f, b in zip(frames, backgrounds)]
    assert 16 <= sum(empty) <= 48


def test_colour_mix_latents_start_at_the_frames_encoding_and_move_toward_a_neighbouring_colour():
    torch.manual_seed(0)
    vae = build_toy_vae(latent_channels=4).eval()
    neighbours = {b: {c: ["red" if c != "red" else "orange"] for c in COLORS} for b in BACKGROUNDS}

    def encode(frames):
        with torch.no_grad():
            return vae.encode(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1).latent_dist.mean

    latents, frames, backgrounds = colour_mix_batch(np.random.default_rng(0), vae, 6, neighbours, mix_max=0.0)
    assert latents.shape == (6, 4, 8, 8) and frames.shape == (6, 64, 64, 3) and frames.dtype == np.uint8 and len(backgrounds) == 6
    torch.testing.assert_close(latents, encode(frames))  # t = 0: the target frame's own encoding
    mixed, same_frames, _ = colour_mix_batch(np.random.default_rng(0), vae, 6, neighbours, mix_max=0.45)
    assert np.array_equal(same_frames, frames)  # the target stays the frame as sampled
    assert (mixed - latents).flatten(1).norm(dim=1).min() > 0  # every item moved toward its recoloured twin


def test_decoder_stage_trains_on_colour_mixed_items_alone(tmp_path):
    torch.manual_seed(0)
    build_toy_vae(latent_channels=4).save_pretrained(tmp_path / "vae")
    out = train_decoder(tmp_path, DecoderTrainConfig(steps=2, batch=4, colour_mix_share=1.0))
    assert (out / "config.json").exists() and (tmp_path / "decoder_loss.csv").read_text().count("\n") == 2


def test_decoder_settings_reject_bad_shares(tmp_path):
    with pytest.raises(ValueError, match=r"colour_mix_max: must be in \[0, 0.5\) \(got 0.5\)"):
        DecoderTrainConfig(steps=2, colour_mix_share=0.5, colour_mix_max=0.5)
    pairs = {"latents": torch.zeros(1, 4, 2, 8, 8), "frames": torch.zeros(1, 2, 64, 64, 3, dtype=torch.uint8), "backgrounds": ["sky"]}
    with pytest.raises(ValueError, match="colour_mix_share: with sample_share 0.75 it must be <= 0.25"):
        train_decoder(tmp_path, DecoderTrainConfig(steps=2, stage="refine", sample_share=0.75, colour_mix_share=0.5), pairs=pairs)
    assert list(tmp_path.iterdir()) == []
