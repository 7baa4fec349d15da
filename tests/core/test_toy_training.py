"""Toy training stages: the decoder stages keep the latent space; the refine stage's sampled pairs;
the box-weighted loss."""

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from core.decoder_training import clip_conditioning, colour_mix_batch, decoder_batch, palette_neighbours, pair_batch, sample_pairs, train_decoder
from core.models.toy import build_toy_vae
from core.toyworld import BACKGROUNDS, sample_clip
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


@pytest.fixture(scope="module")
def toy_pipe():
    from core.render import load_pipeline

    pipe = load_pipeline(None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


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
    assert len(torch.load(path, weights_only=False)["latents"]) == 2


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

    out = train_decoder(tmp_path, steps=40, batch=8, lr=1e-3, stage="refine", source="vae_decoder", pairs=pairs, sample_share=0.75)
    after = AutoencoderKL.from_pretrained(out).eval()
    assert out == tmp_path / "vae_refine" and (tmp_path / "refine_loss.csv").exists()
    # The same steps on encodings alone (stage 5's objective) do not teach those latents.
    plain = AutoencoderKL.from_pretrained(train_decoder(tmp_path, steps=40, batch=8, lr=1e-3, stage="plain", source="vae_decoder")).eval()
    assert pair_error(after) < 0.8 * min(pair_error(before), pair_error(plain))
    for name, value in before.state_dict().items():
        if name.startswith(("encoder.", "quant_conv.")):
            assert torch.equal(value, after.state_dict()[name]), name


def test_palette_neighbours_of_the_shipped_autoencoder_pair_the_colours_it_confuses():
    from core.render import DEFAULT_MODEL as TOY_MODEL
    from core.toyworld import COLORS

    vae = AutoencoderKL.from_pretrained(TOY_MODEL / "vae").float().eval()
    neighbours = palette_neighbours(vae, k=2)
    assert set(neighbours) == set(BACKGROUNDS)
    for background, table in neighbours.items():
        assert set(table) == set(COLORS)
        assert all(len(near) == 2 and colour not in near and set(near) <= set(COLORS) for colour, near in table.items())
        assert table["white"][0] == "pink", background  # the pink rings of benchmarks/vae_ceiling.py
    assert "red" in neighbours["ocean"]["orange"] and neighbours["ocean"]["red"][0] == "orange"
    with pytest.raises(ValueError, match=r"k: must be in \[1, 7\] \(got 8\)"):
        palette_neighbours(vae, k=8)


def test_colour_mix_latents_start_at_the_frames_encoding_and_move_toward_a_neighbouring_colour():
    from core.toyworld import COLORS

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


def test_decoder_stage_trains_on_colour_mixed_items_alone_and_rejects_bad_shares(tmp_path):
    torch.manual_seed(0)
    build_toy_vae(latent_channels=4).save_pretrained(tmp_path / "vae")
    out = train_decoder(tmp_path, steps=2, batch=4, colour_mix_share=1.0)
    assert (out / "config.json").exists() and (tmp_path / "decoder_loss.csv").read_text().count("\n") == 2
    with pytest.raises(ValueError, match=r"colour_mix_max: must be in \[0, 0.5\) \(got 0.5\)"):
        train_decoder(tmp_path, steps=2, colour_mix_share=0.5, colour_mix_max=0.5)
    pairs = {"latents": torch.zeros(1, 4, 2, 8, 8), "frames": torch.zeros(1, 2, 64, 64, 3, dtype=torch.uint8), "backgrounds": ["sky"]}
    with pytest.raises(ValueError, match="colour_mix_share: with sample_share 0.75 it must be <= 0.25"):
        train_decoder(tmp_path, steps=2, stage="refine", pairs=pairs, sample_share=0.75, colour_mix_share=0.5)


@pytest.mark.parametrize(("argv", "message"), [
    (["--colour-mix-max", "0.5"], "error: --colour-mix-max: must be in [0, 0.5) (got 0.5)"),
    (["--colour-mix-share", "-0.1"], "error: --colour-mix-share: must be in [0, 1] (got -0.1)"),
    (["--empty-share", "2"], "error: --empty-share: must be in [0, 1] (got 2.0)"),
    (["--latent-noise", "1.5"], "error: --latent-noise: must be in [0, 1] (got 1.5)"),
])
def test_decoder_command_rejects_bad_options_before_writing_anything(tmp_path, capsys, argv, message):
    from core.train import main

    assert main(["decoder", "--run", str(tmp_path), "--steps", "1", *argv]) == 2
    assert capsys.readouterr().err.strip() == message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("argv", "message"), [
    (["--clips", "0"], "error: --clips: must be >= 1 (got 0)"),
    (["--sample-share", "1"], "error: --sample-share: must be in [0, 1) (got 1.0)"),
    (["--steps", "-5"], "error: --steps: must be >= 1 (got -5)"),
    (["--guidance-scale", "31"], "error: --guidance-scale: must be in [0, 30] (got 31.0)"),
])
def test_refine_command_rejects_bad_options_before_loading_anything(tmp_path, capsys, argv, message):
    from core.train import main

    assert main(["refine", "--run", str(tmp_path), *argv]) == 2
    assert capsys.readouterr().err.strip() == message
    assert list(tmp_path.iterdir()) == []


def test_another_latent_width_starts_from_the_shipped_model_except_the_layers_that_touch_the_latent():
    from core.models.toy import LATENT_CHANNELS, build_toy_unet
    from core.render import DEFAULT_MODEL as TOY_MODEL
    from core.train import load_matching, pipeline_weights

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

    from core.models.unet import PrunedUNet3DConditionModel

    widths = PrunedUNet3DConditionModel.load_config(TOY_MODEL / "unet")  # the shipped input temporal transformer's
    unet = build_toy_unet(
        latent_channels=4, transformer_in_heads=widths.get("transformer_in_heads", 8), transformer_in_ff_inner_dim=widths.get("transformer_in_ff_inner_dim")
    )
    assert set(load_matching(unet, pipeline_weights(TOY_MODEL, "unet"))) == {"conv_in.weight", "conv_out.weight", "conv_out.bias"}
    with torch.no_grad():
        out = unet(torch.randn(1, 4, 2, 8, 8), 500, encoder_hidden_states=torch.zeros(1, 4, 384)).sample
    assert out.shape == (1, 4, 2, 8, 8)
    with pytest.raises(FileNotFoundError, match="init_from"):
        pipeline_weights(TOY_MODEL, "no_such_part")


def _graph_stage_run(tmp_path):
    """A four-clip run that starts its graph stage from the shipped pipeline."""
    import json
    import shutil
    from dataclasses import asdict

    from core.render import DEFAULT_MODEL as TOY_MODEL
    from core.train import ToyTrainConfig, build_dataset

    cfg = ToyTrainConfig(clips=4, clip_frames=4, unet_batch=2, checkpoint_every=2, init_from=str(TOY_MODEL))
    shutil.copytree(TOY_MODEL / "vae", tmp_path / "vae")
    (tmp_path / "config.json").write_text(json.dumps(asdict(cfg)))
    return cfg, build_dataset(tmp_path, cfg)


def test_graph_stage_moving_average_starts_on_resume_continues_and_export_writes_it(tmp_path, capsys):
    from safetensors.torch import load_file

    from core.graph_training import train_graph
    from core.train import main

    cfg, data = _graph_stage_run(tmp_path)
    train_graph(tmp_path, cfg, data, steps=1)
    capsys.readouterr()
    # A checkpoint without an average: a clear error, and nothing written.
    assert main(["export", "--run", str(tmp_path), "--to", str(tmp_path / "ema"), "--ema"]) == 2
    assert capsys.readouterr().err.strip() == f"error: --ema: {tmp_path / 'graph_ckpt.pt'} keeps no moving average (train the graph stage with --ema-decay)"
    assert not (tmp_path / "ema").exists()
    assert main(["graph", "--run", str(tmp_path), "--ema-decay", "1"]) == 2
    assert capsys.readouterr().err.strip() == "error: --ema-decay: must be in [0, 1) (got 1.0)"

    train_graph(tmp_path, cfg, data, steps=2, ema_decay=0.99)  # the average starts from the resumed weights
    assert "EMA (decay 0.99) starts from the weights at step 1" in capsys.readouterr().out
    train_graph(tmp_path, cfg, data, steps=3, ema_decay=0.99)  # and is resumed, not restarted
    assert torch.load(tmp_path / "graph_ckpt.pt", weights_only=False)["ema"]["optimization_step"] == 2

    assert main(["export", "--run", str(tmp_path), "--to", str(tmp_path / "last")]) == 0
    assert main(["export", "--run", str(tmp_path), "--to", str(tmp_path / "ema"), "--ema"]) == 0
    last = load_file(tmp_path / "last" / "unet" / "diffusion_pytorch_model.safetensors")
    ema = load_file(tmp_path / "ema" / "unet" / "diffusion_pytorch_model.safetensors")
    assert last.keys() == ema.keys()
    assert any(not torch.equal(last[k], ema[k]) for k in last)


def test_mixture_weights_oversample_the_clips_that_match_a_colour_background_or_colour_pair():
    from core.graph_training import clip_backgrounds, mixture_weights
    from core.train import phrase_vocabulary

    vocab = {p: i for i, p in enumerate(phrase_vocabulary())}
    # Four clips of two frames and up to three entities.
    clips = [
        (["orange diamond", "red ball", "red ball"], [[1, 0, 0], [1, 0, 0]], "an orange diamond on the ocean"),
        (["orange diamond", "white heart", "red ball"], [[1, 1, 0], [1, 0, 0]], "the grass: an orange diamond and a white heart"),
        (["white heart", "orange square", "red ball"], [[1, 0, 0], [0, 1, 0]], "sky. a white heart and an orange square"),  # never together
        (["blue ball", "blue star", "red ball"], [[1, 1, 0], [1, 1, 0]], "two blue things in the night"),
    ]
    data = {
        "phrase_ids": torch.tensor([[[vocab[p] for p in phrases]] * 2 for phrases, _, _ in clips]),
        "masks": torch.tensor([masks for _, masks, _ in clips], dtype=torch.float32),
        "captions": [caption for _, _, caption in clips],
    }
    assert clip_backgrounds(data["captions"]) == ["ocean", "grass", "sky", "night"]
    assert mixture_weights(data, [], 3.0).tolist() == [1, 1, 1, 1]
    assert mixture_weights(data, ["orange@ocean"], 3.0).tolist() == [3, 1, 1, 1]
    assert mixture_weights(data, ["white+orange"], 4.0).tolist() == [1, 4, 1, 1]  # clip 2 never shows both at once
    assert mixture_weights(data, ["blue+blue", "red+orange"], 2.0).tolist() == [1, 1, 1, 2]  # red balls are off screen
    with pytest.raises(ValueError, match=r"--oversample: 'teal@ocean': colour must be one of red, orange"):
        mixture_weights(data, ["teal@ocean"], 3.0)
    with pytest.raises(ValueError, match=r"--oversample: 'orange@moon': background must be one of sky, grass"):
        mixture_weights(data, ["orange@moon"], 3.0)
    with pytest.raises(ValueError, match=r"--oversample: 'orange': must be colour@background or colour\+colour"):
        mixture_weights(data, ["orange"], 3.0)
    with pytest.raises(ValueError, match=r"--oversample-weight: must be >= 1 \(got 0.5\)"):
        mixture_weights(data, ["orange@ocean"], 0.5)
    with pytest.raises(ValueError, match=r"captions\[0\]: must name exactly one background"):
        clip_backgrounds(["a ball on the grass under the sky"])


def test_graph_stage_prunes_the_adapter_feed_forward_when_the_run_asks_for_a_narrower_one(tmp_path, capsys):
    import json
    from dataclasses import asdict, replace

    from core.graph_training import train_graph
    from core.render import load_pipeline
    from core.train import main

    from core.models.layout import LayoutAdapter

    cfg, data = _graph_stage_run(tmp_path)
    wide = LayoutAdapter.load_config(Path(cfg.init_from) / "layout_adapter")["ff_mult"]  # the shipped model's width
    narrow = wide // 2
    with pytest.raises(ValueError, match=rf"adapter_ff_mult: must be in \[1, {wide}\] to start from .*layout2vid-toy \(got 0\)"):
        train_graph(tmp_path, replace(cfg, adapter_ff_mult=0), data, steps=1)
    assert not (tmp_path / "graph_ckpt.pt").exists()
    cfg = replace(cfg, adapter_ff_mult=narrow)
    (tmp_path / "config.json").write_text(json.dumps(asdict(cfg)))
    train_graph(tmp_path, cfg, data, steps=1)
    assert f"adapter feed-forward pruned from {wide}x to {narrow}x the block width" in capsys.readouterr().out
    assert main(["export", "--run", str(tmp_path), "--to", str(tmp_path / "narrow")]) == 0
    pipe = load_pipeline(tmp_path / "narrow")
    assert pipe.layout_adapter.config.ff_mult == narrow
    dims = pipe.layout_adapter.config.block_dims
    assert [f.ff.net[2].weight.shape for f in pipe.layout_adapter.fusers] == [(d, narrow * d) for d in dims]
    # The narrow model renders (two steps) and the run resumes at its own width.
    from core.pipeline import LayoutConditioning

    layout = LayoutConditioning(
        boxes=torch.tensor([[[0.1, 0.1, 0.5, 0.5]]]).repeat(2, 1, 1), masks=torch.ones(2, 1), phrases=[["red ball"]] * 2
    )
    frames = pipe("a red ball on the grass", layout=layout, num_frames=2, num_inference_steps=2, output_type="np").frames
    assert frames.shape == (2, 64, 64, 3)
    train_graph(tmp_path, cfg, data, steps=2)
    assert torch.load(tmp_path / "graph_ckpt.pt", weights_only=False)["step"] == 2


def test_graph_stage_prunes_the_input_temporal_transformer_and_export_keeps_its_width_and_guidance_interval(tmp_path, capsys):
    import json
    from dataclasses import asdict, replace

    from core.graph_training import train_graph
    from core.models.unet import PrunedUNet3DConditionModel
    from core.pipeline import LayoutConditioning
    from core.render import load_pipeline
    from core.train import main

    cfg, data = _graph_stage_run(tmp_path)
    shipped = PrunedUNet3DConditionModel.load_config(Path(cfg.init_from) / "unet")
    heads = shipped.get("transformer_in_heads", 8)
    units = shipped.get("transformer_in_ff_inner_dim") or 4 * 8 * shipped["attention_head_dim"]
    with pytest.raises(ValueError, match=rf"^transformer_in_heads: must be in \[1, [1-8]\].* \(got {heads + 1}\)"):
        train_graph(tmp_path, replace(cfg, transformer_in_heads=heads + 1), data, steps=1)
    assert not (tmp_path / "graph_ckpt.pt").exists()
    cfg = replace(cfg, transformer_in_heads=heads // 2, transformer_in_ff_inner_dim=units // 2)
    (tmp_path / "config.json").write_text(json.dumps(asdict(cfg)))
    train_graph(tmp_path, cfg, data, steps=1)
    assert f"input temporal transformer pruned from {heads} heads, {units} feed-forward units to {heads // 2}, {units // 2}" in capsys.readouterr().out
    assert main(["export", "--run", str(tmp_path), "--to", str(tmp_path / "narrow"), "--guidance-interval", "0.5", "1"]) == 0
    assert main(["export", "--run", str(tmp_path), "--to", str(tmp_path / "bad"), "--guidance-interval", "0.8", "0.2"]) == 2
    assert "--guidance-interval: must be START END with 0 <= START <= END <= 1 (got (0.8, 0.2))" in capsys.readouterr().err
    pipe = load_pipeline(tmp_path / "narrow")
    assert isinstance(pipe.unet, PrunedUNet3DConditionModel)
    block = pipe.unet.transformer_in.transformer_blocks[0]
    assert (block.attn1.heads, block.attn2.heads, block.ff.net[2].in_features) == (heads // 2, heads // 2, units // 2)
    assert pipe.config.default_guidance_interval == [0.5, 1.0]
    layout = LayoutConditioning(boxes=torch.tensor([[[0.1, 0.1, 0.5, 0.5]]]).repeat(2, 1, 1), masks=torch.ones(2, 1), phrases=[["red ball"]] * 2)
    frames = pipe("a red ball on the grass", layout=layout, num_frames=2, num_inference_steps=2, output_type="np").frames
    assert frames.shape == (2, 64, 64, 3)
    train_graph(tmp_path, cfg, data, steps=2)  # resumes at its own width
    assert torch.load(tmp_path / "graph_ckpt.pt", weights_only=False)["step"] == 2


def test_graph_stage_trains_and_exports_a_box_masked_adapter(tmp_path):
    import json
    from dataclasses import asdict, replace

    from core.graph_training import train_graph
    from core.pipeline import LayoutConditioning
    from core.render import load_pipeline
    from core.train import main

    cfg, data = _graph_stage_run(tmp_path)
    cfg = replace(cfg, box_masked_grounding=True)
    (tmp_path / "config.json").write_text(json.dumps(asdict(cfg)))
    train_graph(tmp_path, cfg, data, steps=1)
    assert main(["export", "--run", str(tmp_path), "--to", str(tmp_path / "masked")]) == 0
    pipe = load_pipeline(tmp_path / "masked")
    assert pipe.layout_adapter.config.box_masked
    layout = LayoutConditioning(
        boxes=torch.tensor([[[0.0, 0.0, 0.4, 0.4], [0.6, 0.6, 1.0, 1.0]]]).repeat(2, 1, 1), masks=torch.ones(2, 2),
        phrases=[["red ball", "white ring"]] * 2,
    )
    frames = pipe("a red ball and a white ring on the grass", layout=layout, num_frames=2, num_inference_steps=2, output_type="np").frames
    assert frames.shape == (2, 64, 64, 3)


def test_red_and_orange_are_the_nearest_colours_in_the_shipped_latent_and_their_direction_is_first():
    from core.graph_training import near_colour_directions, palette_latents
    from core.render import DEFAULT_MODEL as TOY_MODEL
    from core.toyworld import COLORS

    vae = AutoencoderKL.from_pretrained(TOY_MODEL / "vae").float().eval()
    codes = palette_latents(vae, vae.config.scaling_factor)
    assert codes.shape == (len(BACKGROUNDS), len(COLORS), vae.config.latent_channels)
    directions = near_colour_directions(vae, vae.config.scaling_factor, pairs=3)
    assert directions.shape == (3, vae.config.latent_channels)
    torch.testing.assert_close(directions.norm(dim=-1), torch.ones(3))
    red, orange = list(COLORS).index("red"), list(COLORS).index("orange")
    expected = torch.nn.functional.normalize((codes[:, red] - codes[:, orange]).mean(0), dim=0)
    torch.testing.assert_close(directions[0], expected)


def test_colour_direction_loss_adds_a_weighted_term_along_the_directions(tmp_path):
    from dataclasses import replace

    from core.models.layout import LayoutAdapter
    from core.models.toy import build_toy_scheduler, build_toy_unet
    from core.train import unet_batch_loss

    cfg, data = _graph_stage_run(tmp_path)
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
