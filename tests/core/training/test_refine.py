"""The refine stage: sampled pairs of the pipeline's own latents and drawn frames, and what the
decoder learns from them."""

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from core.models.toy import build_toy_vae
from core.toyworld.world import BACKGROUNDS, sample_clip
from core.training.config import DecoderTrainConfig
from core.training.decoder import pair_batch, train_decoder
from core.training.refine import clip_conditioning, denoiser_fingerprint, sample_pairs


def test_clip_conditioning_is_the_clips_layout_frame_by_frame():
    rng = np.random.default_rng(3)
    clip = next(c for c in (sample_clip(rng, num_frames=6) for _ in range(200)) if len(c.tracks) == 2 and any(None in t.boxes for t in c.tracks))
    prompt, layout = clip_conditioning(clip, np.random.default_rng(0))
    assert prompt == clip.caption
    assert layout.boxes.shape == (6, 2, 4) and layout.masks.shape == (6, 2) and len(layout.entity_seeds) == 2
    for n, track in enumerate(clip.tracks):
        for f, box in enumerate(track.boxes):
            assert layout.phrases[f][n] == f"{track.colors[f]} {track.kind}"
            assert layout.masks[f, n] == (box is not None)
            if box is not None:
                assert torch.allclose(layout.boxes[f, n], torch.tensor(box, dtype=torch.float32))
    # One scene graph per frame, holding exactly the entities on screen in that frame.
    assert len(layout.scene_graphs) == 6
    for f, graph in enumerate(layout.scene_graphs):
        objects = [n for n, d in graph.nodes(data=True) if d["type"] == "object"]
        assert len(objects) == int(layout.masks[f].sum())


def test_sample_pairs_caches_the_shipped_models_samples_beside_drawn_frames_and_resumes(tmp_path, toy_pipe):
    path = tmp_path / "pairs.pt"
    first = sample_pairs(toy_pipe, path, clips=1, num_frames=4, num_inference_steps=10)
    channels = toy_pipe.vae.config.latent_channels
    assert first["latents"].shape == (1, channels, 4, 8, 8) and first["latents"].dtype == torch.float16
    assert first["frames"].shape == (1, 4, 64, 64, 3) and first["frames"].dtype == torch.uint8
    assert first["backgrounds"][0] in BACKGROUNDS
    # The latents are unscaled: the model's own decoder turns them into a toy frame on that background.
    with torch.no_grad():
        image = toy_pipe.vae.decode(first["latents"][0, :, 0][None].to(toy_pipe.vae.dtype)).sample[0].float()
    border = torch.cat([image[:, 0], image[:, -1]], dim=1).mean(1)
    expected = torch.tensor(BACKGROUNDS[first["backgrounds"][0]], dtype=torch.float32) / 127.5 - 1
    assert (border - expected).abs().max() < 0.25
    # Resuming keeps the cached clip and samples a new one.
    second = sample_pairs(toy_pipe, path, clips=2, num_frames=4, num_inference_steps=10)
    assert torch.equal(second["latents"][0], first["latents"][0]) and torch.equal(second["frames"][0], first["frames"][0])
    assert not torch.equal(second["frames"][1], second["frames"][0])
    latents, frames, backgrounds = pair_batch(second, np.random.default_rng(0), 5)
    assert latents.shape == (5, channels, 8, 8) and frames.shape == (5, 64, 64, 3) and len(backgrounds) == 5
    # The samples are drawn at the guidance a render of this model uses, and a cache is not mixed.
    assert second["guidance_scale"] == toy_pipe.config.default_guidance_scale
    with pytest.raises(ValueError, match="sampled at guidance_scale 2.5, not 4.0"):
        sample_pairs(toy_pipe, path, clips=3, num_frames=4, num_inference_steps=10, guidance_scale=4.0)
    with pytest.raises(ValueError, match="drawn with group_share 0.0, not 1.0"):
        sample_pairs(toy_pipe, path, clips=3, num_frames=4, num_inference_steps=10, group_share=1.0)
    assert len(torch.load(path, weights_only=False)["latents"]) == 2
    # Nor are samples of another denoiser: the cache records the one that sampled it.
    cache = torch.load(path, weights_only=False)
    assert cache["denoiser"] == denoiser_fingerprint(toy_pipe)
    torch.save({**cache, "denoiser": "0" * 16}, path)
    with pytest.raises(ValueError, match="sampled from another denoiser"):
        sample_pairs(toy_pipe, path, clips=3, num_frames=4, num_inference_steps=10)


def test_the_denoiser_fingerprint_follows_the_denoisers_weights_not_the_decoders(toy_pipe):
    before = denoiser_fingerprint(toy_pipe)
    for module, changes in ((toy_pipe.vae, False), (toy_pipe.unet, True)):
        weight = next(p for name, p in module.named_parameters() if name.startswith(("decoder.", "conv_in.")))
        kept = weight.detach().clone()
        try:
            with torch.no_grad():
                weight.add_(0.5)
            assert (denoiser_fingerprint(toy_pipe) != before) is changes
        finally:
            with torch.no_grad():
                weight.copy_(kept)
    assert denoiser_fingerprint(toy_pipe) == before


def test_training_clips_with_a_group_share_are_rows_of_one_kind_and_the_plain_stream_is_unchanged():
    import itertools

    from core.training.refine import training_clips

    groups = [clip for clip, _ in itertools.islice(training_clips(1, num_frames=2, size=64, group_share=1.0), 6)]
    for clip in groups:
        assert 2 <= len(clip.tracks) <= 3 and len({(t.kind, t.colors[0]) for t in clip.tracks}) == 1
    # At share 0 the stream is the one earlier caches were sampled from (their replays must match).
    rng = np.random.default_rng([0, 6])
    plain = [clip for clip, _ in itertools.islice(training_clips(0, num_frames=2, size=64), 3)]
    for clip in plain:
        assert np.array_equal(clip.frames, sample_clip(rng, num_frames=2, size=64).frames)
        rng.integers(0, 2**31 - 1, size=3)  # the stream also draws each clip's entity seeds


def test_refine_stage_learns_to_decode_sampled_latents_into_drawn_frames(tmp_path):
    torch.manual_seed(0)
    build_toy_vae(latent_channels=4).save_pretrained(tmp_path / "vae_decoder")
    before = AutoencoderKL.from_pretrained(tmp_path / "vae_decoder").eval()
    # Pairs whose latents are not encodings of their frames (as a denoiser's samples are not).
    rng = np.random.default_rng(0)
    clips = [sample_clip(rng, num_frames=2) for _ in range(2)]
    pairs = {
        "latents": torch.randn(2, 4, 2, 8, 8, generator=torch.Generator().manual_seed(1)).half(),
        "frames": torch.from_numpy(np.stack([c.frames for c in clips])),
        "backgrounds": [c.background for c in clips],
    }

    def pair_error(vae):
        latents = pairs["latents"].float().permute(0, 2, 1, 3, 4).reshape(4, 4, 8, 8)
        target = pairs["frames"].reshape(4, 64, 64, 3).permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.no_grad():
            return float((vae.decode(latents).sample - target).abs().mean())

    cfg = DecoderTrainConfig(steps=40, batch=8, lr=1e-3, stage="refine", source="vae_decoder", sample_share=0.75)
    out = train_decoder(tmp_path, cfg, pairs=pairs)
    after = AutoencoderKL.from_pretrained(out).eval()
    assert out == tmp_path / "vae_refine" and (tmp_path / "refine_loss.csv").exists()
    # The same steps on encodings alone (the decoder stage's objective) do not teach those latents.
    plain = AutoencoderKL.from_pretrained(train_decoder(tmp_path, DecoderTrainConfig(steps=40, batch=8, lr=1e-3, stage="plain", source="vae_decoder"))).eval()
    assert pair_error(after) < 0.8 * min(pair_error(before), pair_error(plain))
    for name, value in before.state_dict().items():
        if name.startswith(("encoder.", "quant_conv.")):
            assert torch.equal(value, after.state_dict()[name]), name
