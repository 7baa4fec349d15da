"""Toy training stages: the decoder stage keeps the latent space; the box-weighted loss."""

import numpy as np
import torch
from diffusers import AutoencoderKL

from core.decoder_training import decoder_batch, train_decoder
from core.models.toy import build_toy_vae
from core.toyworld import BACKGROUNDS
from core.train import box_loss_weights


def test_decoder_stage_changes_the_decoder_and_leaves_the_encoder(tmp_path):
    torch.manual_seed(0)
    build_toy_vae().save_pretrained(tmp_path / "vae")
    before = AutoencoderKL.from_pretrained(tmp_path / "vae").state_dict()
    out = train_decoder(tmp_path, steps=3, batch=4, checkpoint_every=2)
    after = AutoencoderKL.from_pretrained(out).state_dict()
    for name, value in before.items():
        changed = not torch.equal(value, after[name])
        if name.startswith(("encoder.", "quant_conv.")):
            assert not changed, name
    assert any(not torch.equal(before[n], after[n]) for n in before if n.startswith("decoder."))
    assert (tmp_path / "decoder_loss.csv").read_text().count("\n") == 3
    # Resuming at the finished step count trains nothing more and saves the same weights.
    again = AutoencoderKL.from_pretrained(train_decoder(tmp_path, steps=3, batch=4)).state_dict()
    assert all(torch.equal(after[n], again[n]) for n in after)


def test_decoder_batches_include_empty_backgrounds():
    frames, backgrounds = decoder_batch(np.random.default_rng(0), 64, empty_share=0.5)
    assert frames.shape == (64, 64, 64, 3) and frames.dtype == np.uint8 and len(backgrounds) == 64
    empty = [np.all(f == np.array(BACKGROUNDS[b], dtype=np.uint8)) for f, b in zip(frames, backgrounds)]
    assert 16 <= sum(empty) <= 48


def test_box_loss_weights_cover_every_cell_an_on_screen_box_touches():
    boxes = torch.tensor([[[[0.0, 0.0, 0.5, 0.5], [0.75, 0.75, 1.0, 1.0]], [[0.3, 0.3, 0.4, 0.4], [0.0, 0.0, 0.0, 0.0]]]])
    masks = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # the second entity is off screen in both frames
    weights = box_loss_weights(boxes, masks, 8, 4.0)
    assert weights.shape == (1, 1, 2, 8, 8)
    first, second = weights[0, 0]
    assert (first[:4, :4] == 4).all() and first.sum() == 16 * 4 + 48  # the off-screen box adds nothing
    assert (second[2:4, 2:4] == 4).all() and second.sum() == 4 * 4 + 60  # a box smaller than a cell still counts
