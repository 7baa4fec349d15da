"""The ``wan-toy`` stage (model v2): a tiny run in chunks, its export, and a render through the Wan path."""

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from core.training.cli import main
from core.training.config import WanExportConfig, WanToyTrainConfig
from core.training.toy_data import clip_sampler, phrase_vocabulary
from core.training.wan_toy import export_wan_toy, flow_matching_loss, random_frame_clips, train_wan_toy

TINY = WanToyTrainConfig(
    vae_steps=2, vae_batch=2, vae_crop=32, checkpoint_every=1, stats_frames=5, refine_steps=2, decoder_steps=2, tune_batch=1, clips=2,
    transformer_steps=2, transformer_batch=1,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished tiny run, trained in two commands: the first stops at its time limit."""
    run = tmp_path_factory.mktemp("wan-toy")
    first = train_wan_toy(run, WanToyTrainConfig(**{**TINY.__dict__, "max_minutes": 1e-6}))
    assert first.startswith("vae: stopped at the time limit")
    assert torch.load(run / "vae_ckpt.pt", weights_only=False)["step"] == 1
    assert train_wan_toy(run, TINY) == "done"
    return run


def test_a_run_stopped_by_its_time_limit_resumes_where_it_stopped(tiny_run):
    rows = (tiny_run / "vae_loss.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows] == ["1", "2"]  # step 1 from the first command, step 2 from the second
    assert torch.load(tiny_run / "transformer_ckpt.pt", weights_only=False)["step"] == 2
    vae_config = json.loads((tiny_run / "vae" / "config.json").read_text())
    assert len(vae_config["latents_mean"]) == 16 and all(s > 0 for s in vae_config["latents_std"])
    assert vae_config["latents_std"] != [1.0] * 16  # measured, not the builder's placeholder


def test_refine_tunes_the_whole_autoencoder_then_decoder_only_and_the_export_ships_it(tiny_run, tmp_path):
    from safetensors.torch import load_file

    first, refined, tuned = (load_file(tiny_run / part / "diffusion_pytorch_model.safetensors") for part in ("vae", "refine", "decoder"))
    encoder = [k for k in first if k.startswith(("encoder.", "quant_conv."))]
    decoder = [k for k in first if k.startswith(("decoder.", "post_quant_conv."))]
    assert encoder and decoder and len(encoder) + len(decoder) == len(first)
    assert any(not torch.equal(first[k], refined[k]) for k in encoder)  # refine trains the encoder
    assert all(torch.equal(refined[k], tuned[k]) for k in encoder)  # the decoder part does not: cached latents stay valid
    assert any(not torch.equal(refined[k], tuned[k]) for k in decoder)
    stats = {part: json.loads((tiny_run / part / "config.json").read_text())["latents_std"] for part in ("vae", "refine", "decoder")}
    assert stats["refine"] != stats["vae"] and stats["decoder"] == stats["refine"]  # measured again for the new encoder
    for part in ("refine", "decoder"):
        assert [row.split(",")[0] for row in (tiny_run / f"{part}_loss.csv").read_text().splitlines()] == ["1", "2"]
    shipped = load_file(export_wan_toy(tiny_run, tmp_path / "model") / "vae" / "diffusion_pytorch_model.safetensors")
    assert torch.equal(shipped[decoder[0]], tuned[decoder[0]].half())


def test_a_run_from_a_trained_autoencoder_skips_to_the_data_part_and_caches_the_same_latents(tiny_run, tmp_path):
    run = tmp_path / "from-autoencoder"
    assert train_wan_toy(run, TINY, autoencoder=tiny_run / "decoder") == "done"
    assert not (run / "vae_ckpt.pt").exists() and not (run / "refine").exists()  # parts 1-3 skipped
    shipped = (run / "decoder" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert shipped == (tiny_run / "decoder" / "diffusion_pytorch_model.safetensors").read_bytes()
    ours, theirs = (torch.load(r / "data.pt", weights_only=False) for r in (run, tiny_run))
    assert torch.equal(ours["latents"], theirs["latents"])  # the same encoder and clips
    assert torch.load(run / "transformer_ckpt.pt", weights_only=False)["step"] == 2


def test_the_autoencoder_alone_exports_in_float16_and_is_taken_as_a_later_runs_autoencoder(tiny_run, tmp_path):
    from safetensors.torch import load_file

    from core.models.toy_wan import FrameAutoencoderKL
    from core.training.wan_toy import use_autoencoder

    assert main(["wan-export", "--run", str(tiny_run), "--to", str(tmp_path / "v2"), "--autoencoder-only"]) == 0
    assert sorted(p.name for p in (tmp_path / "v2").iterdir()) == ["vae"]  # no pipeline yet: nothing else is written
    written = load_file(tmp_path / "v2" / "vae" / "diffusion_pytorch_model.safetensors")
    trained = load_file(tiny_run / "decoder" / "diffusion_pytorch_model.safetensors")
    assert all(written[k].dtype == torch.float16 and torch.equal(written[k], trained[k].half()) for k in trained)
    assert FrameAutoencoderKL.from_pretrained(tmp_path / "v2" / "vae").dtype == torch.float32  # a run trains in float32
    use_autoencoder(tmp_path / "run", tmp_path / "v2" / "vae")
    assert (tmp_path / "run" / "decoder" / "config.json").exists() and not (tmp_path / "run" / "decoder.partial").exists()


def test_an_autoencoder_that_is_not_trained_is_one_line_before_anything_is_written(tmp_path, capsys):
    from core.models.toy_wan import build_toy_wan_vae

    build_toy_wan_vae().save_pretrained(tmp_path / "untrained")  # placeholder latent statistics
    out = tmp_path / "run"
    assert main(["wan-toy", "--out", str(out), "--autoencoder", str(tmp_path / "untrained")]) == 2
    assert main(["wan-toy", "--out", str(out), "--autoencoder", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    for line, folder in zip(err, ("untrained", "missing"), strict=True):
        assert line.startswith(f"error: --autoencoder: {tmp_path / folder} is not a trained FrameAutoencoderKL folder")
    assert not out.exists()


def test_a_run_initialised_from_an_exported_model_starts_its_transformer_from_those_weights(tiny_run, tmp_path):
    from safetensors.torch import load_file

    model = export_wan_toy(tiny_run, tmp_path / "model", WanExportConfig(ema=False))
    still = WanToyTrainConfig(**{**TINY.__dict__, "transformer_lr": 0.0})  # no step moves a weight: the checkpoint holds the start
    run = tmp_path / "continued"
    assert train_wan_toy(run, still, autoencoder=tiny_run / "decoder", init_from=model) == "done"
    state = torch.load(run / "transformer_ckpt.pt", weights_only=False)
    for part, folder in (("transformer", "transformer"), ("adapter", "layout_adapter")):
        exported = load_file(model / folder / "diffusion_pytorch_model.safetensors")
        assert set(state[part]) == set(exported)
        assert all(torch.equal(state[part][k], exported[k].float()) for k in exported)
    fresh = tmp_path / "fresh"
    assert train_wan_toy(fresh, still, autoencoder=tiny_run / "decoder") == "done"
    other = torch.load(fresh / "transformer_ckpt.pt", weights_only=False)["transformer"]
    assert any(not torch.equal(other[k], state["transformer"][k]) for k in other)  # without it: the seed's random weights


def test_a_deeper_run_from_an_exported_model_denoises_as_that_model_until_trained(tiny_run, tmp_path):
    from core.models.toy_wan import deepen_transformer
    from core.models.wan_adapter import WanLayoutAdapter
    from core.text import MINILM_DIM
    from core.training.toy_data import MAX_TRAIN_ENTITIES
    from core.training.wan_toy import initial_weights, run_transformer

    model = export_wan_toy(tiny_run, tmp_path / "model", WanExportConfig(ema=False))
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 16, 2, 8, 8, generator=generator)
    prompt = torch.randn(1, 6, MINILM_DIM, generator=generator)
    boxes = torch.tensor([[0.1, 0.1, 0.5, 0.6], [0.4, 0.3, 0.9, 0.8]]).expand(2, 2, 4)
    phrases = torch.randn(2, 2, MINILM_DIM, generator=generator)

    def denoise(layers: int, nudge: bool = False) -> torch.Tensor:
        weights = initial_weights(model, WanToyTrainConfig(layers=layers))
        transformer = run_transformer(layers=layers).eval()
        adapter = WanLayoutAdapter.for_transformer(transformer, phrase_dim=MINILM_DIM, depth_slots=MAX_TRAIN_ENTITIES).eval()
        transformer.load_state_dict(weights["transformer"])
        adapter.load_state_dict(weights["adapter"])
        if nudge:  # a trained new block (the third of six) changes the output
            transformer.blocks[2].attn1.to_out[0].weight.data.add_(0.05)
        adapter.attach(transformer)
        with torch.no_grad(), adapter.grounding(adapter.grounding_tokens(boxes, torch.ones(2, 2), phrases), frames=2, aspect=1.0):
            return transformer(latents, torch.tensor([400]), prompt, return_dict=False)[0]

    four = denoise(4)
    assert torch.allclose(denoise(6), four, atol=1e-5)
    assert not torch.allclose(denoise(6, nudge=True), four, atol=1e-3)
    weights = initial_weights(model, WanToyTrainConfig(layers=6))
    assert float(weights["adapter"]["fusers.2.alpha_attn"]) == 0.0 and float(weights["adapter"]["fusers.5.alpha_attn"]) == 0.0
    assert torch.equal(weights["transformer"]["blocks.2.attn1.to_q.weight"], weights["transformer"]["blocks.1.attn1.to_q.weight"])
    with pytest.raises(ValueError, match=r"layers: must be above the 6 blocks of the weights it deepens, with one fuser a block \(got 6; 6 fusers\)"):
        deepen_transformer(weights["transformer"], weights["adapter"], 6)


def test_an_init_from_folder_that_is_not_an_exported_model_is_one_line_before_anything_is_written(tiny_run, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["wan-toy", "--out", str(out), "--init-from", str(tiny_run)]) == 2  # a run folder, not an export
    assert capsys.readouterr().err.splitlines() == [
        f"error: --init-from: {tiny_run} is not an exported wan-toy pipeline (transformer/ and layout_adapter/ weights), e.g. assets/wan-toy"
    ]
    assert not out.exists()


def test_runs_with_other_seeds_join_their_clips_into_one_data_part_and_train_on_all_of_them(tiny_run, tmp_path):
    other = tmp_path / "seed1"
    assert train_wan_toy(other, WanToyTrainConfig(**{**TINY.__dict__, "seed": 1}), autoencoder=tiny_run / "decoder") == "done"
    first, second = (torch.load(r / "data.pt", weights_only=False) for r in (tiny_run, other))
    assert not torch.equal(first["latents"], second["latents"])  # another seed draws other clips
    joined_run = tmp_path / "joined"
    assert main(["wan-toy", "--out", str(joined_run), "--autoencoder", str(tiny_run / "decoder"), "--data-from", str(tiny_run), str(other),
                 "--vae-steps", "2", "--transformer-steps", "2", "--transformer-batch", "1", "--checkpoint-every", "1"]) == 0
    joined = torch.load(joined_run / "data.pt", weights_only=False)
    assert torch.equal(joined["latents"], torch.cat([first["latents"], second["latents"]]))  # 2 + 2 clips, in the order named
    assert joined["captions"] == first["captions"] + second["captions"]
    assert torch.equal(joined["phrase_ids"][2:], second["phrase_ids"]) and torch.equal(joined["boxes"][:2], first["boxes"])
    assert torch.load(joined_run / "transformer_ckpt.pt", weights_only=False)["step"] == 2


def test_clips_from_another_autoencoder_or_a_folder_without_clips_are_one_line_and_no_data_is_written(tiny_run, tmp_path, capsys):
    import shutil

    foreign = tmp_path / "foreign"  # its clips were encoded by the first autoencoder part, not the decoder part's
    foreign.mkdir()
    (foreign / "data.pt").symlink_to(tiny_run / "data.pt")
    shutil.copytree(tiny_run / "vae", foreign / "decoder")
    out = tmp_path / "run"
    assert main(["wan-toy", "--out", str(out), "--autoencoder", str(tiny_run / "decoder"), "--data-from", str(tiny_run), str(foreign)]) == 2
    assert main(["wan-toy", "--out", str(tmp_path / "run2"), "--data-from", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"error: --data-from: {foreign} was encoded by another autoencoder (its latents_mean / latents_std differ from {out / 'decoder'}'s)"
    assert err[1] == f"error: {tmp_path / 'nothing' / 'data.pt'}: no such file"
    assert len(err) == 2 and not (out / "data.pt").exists() and not (tmp_path / "run2").exists()


def test_lost_contrast_counts_fading_into_the_background_relative_to_each_pixels_own_contrast():
    from core.toyworld.world import BACKGROUNDS
    from core.training.wan_toy import lost_contrast

    night = torch.tensor(BACKGROUNDS["night"], dtype=torch.float32)
    dim, bright = night + torch.tensor([0.0, 0.0, 45.0]), night + torch.tensor([0.0, 0.0, 180.0])  # a star's point and its fill
    image = torch.stack([dim, bright]).T.reshape(1, 3, 1, 2) / 127.5 - 1.0
    shape = torch.ones(1, 1, 1, 2, dtype=torch.bool)
    towards_night = image - torch.tensor([0.0, 0.0, 10.0 / 127.5]).view(1, 3, 1, 1)  # both 10 RGB units nearer the background
    assert lost_contrast(image, image, ["night"], shape) == 0.0
    assert lost_contrast(image + (image - night.view(1, 3, 1, 1) / 127.5 + 1.0), image, ["night"], shape) == 0.0  # standing out more is not lost
    assert torch.isclose(lost_contrast(towards_night, image, ["night"], shape), torch.tensor((10 / 45 + 10 / 180) / 2))
    faded_point = lost_contrast(towards_night, image, ["night"], torch.tensor([[[[True, False]]]]))
    faded_fill = lost_contrast(towards_night, image, ["night"], torch.tensor([[[[False, True]]]]))
    assert faded_point > 3.9 * faded_fill  # the dim point counts 4x: the same 10 units are a quarter of its contrast
    assert lost_contrast(image, image, ["night"], torch.zeros_like(shape)) == 0.0


def test_silhouette_margin_costs_a_faint_point_that_fades_out_of_the_foreground_and_haze_that_rises_into_it():
    from core.toyworld.world import BACKGROUNDS
    from core.training.wan_toy import silhouette_margin

    night = torch.tensor(BACKGROUNDS["night"], dtype=torch.float32)

    def frame(*distances):  # one row of pixels that many RGB units from the night sky, in the blue channel
        return (night.view(3, 1) + torch.tensor([[0.0], [0.0], [1.0]]) * torch.tensor(distances)).reshape(1, 3, 1, -1) / 127.5 - 1.0

    drawn = frame(48.0, 180.0, 0.0, 0.0)  # a blue star's point (its outline), its fill, and two background pixels
    assert silhouette_margin(drawn, drawn, ["night"]) == 0.0
    assert silhouette_margin(frame(60.0, 250.0, 0.0, 20.0), drawn, ["night"]) == 0.0  # brighter shapes, haze well below 40: no cost
    assert torch.isclose(silhouette_margin(frame(40.0, 180.0, 0.0, 0.0), drawn, ["night"]), torch.tensor(1.0 / 2), atol=1e-4)  # the point at the threshold
    assert torch.isclose(silhouette_margin(frame(48.0, 100.0, 0.0, 0.0), drawn, ["night"]), torch.tensor(0.0), atol=1e-4)  # the fill dims but stays clear
    assert torch.isclose(silhouette_margin(frame(48.0, 180.0, 0.0, 40.0), drawn, ["night"]), torch.tensor(1.0 / 2), atol=1e-4)  # haze reaching the threshold
    empty = frame(0.0, 0.0, 0.0, 0.0)
    assert silhouette_margin(empty, empty, ["night"]) == 0.0
    assert silhouette_margin(drawn, empty, ["night"]) > 10.0  # shapes on an empty sky: every one of them gained
    pale = drawn.clone()
    pale[0, :, 0, 0] = (night + torch.tensor([48.0, 0.0, 0.0])) / 127.5 - 1.0  # the point 48 units away, but towards red
    # Not clear of the threshold along its own colour at all: 48 units short, 6 margins, over 2 foreground pixels.
    assert torch.isclose(silhouette_margin(pale, drawn, ["night"]), torch.tensor(48.0 / 8 / 2), atol=1e-4)


def test_silhouette_margin_limited_to_some_frames_charges_only_their_pixels_at_the_whole_batchs_rate():
    from core.toyworld.world import BACKGROUNDS
    from core.training.wan_toy import silhouette_margin

    night = torch.tensor(BACKGROUNDS["night"], dtype=torch.float32)

    def frame(*distances):
        return (night.view(3, 1) + torch.tensor([[0.0], [0.0], [1.0]]) * torch.tensor(distances)).reshape(1, 3, 1, -1) / 127.5 - 1.0

    drawn = torch.cat([frame(48.0, 180.0), frame(48.0, 180.0)])  # two frames, each a faint point beside a fill
    faded = torch.cat([frame(40.0, 180.0), frame(40.0, 180.0)])  # both points at the threshold: a full margin each
    both = silhouette_margin(faded, drawn, ["night", "night"])
    assert torch.isclose(both, torch.tensor(2.0 / 4), atol=1e-4)
    first = silhouette_margin(faded, drawn, ["night", "night"], frames=torch.tensor([True, False]))
    assert torch.isclose(first, torch.tensor(1.0 / 4), atol=1e-4)  # the second frame's point is free; the count is still all 4 pixels
    assert silhouette_margin(faded, drawn, ["night", "night"], frames=torch.tensor([False, False])) == 0.0


def test_faint_sheets_draw_only_the_colours_whose_outline_barely_clears_the_detectors_threshold():
    from core.toyworld.detect import FOREGROUND_DISTANCE, detect
    from core.toyworld.world import BACKGROUNDS, COLORS, OUTLINE_SCALE
    from core.training.wan_toy import FAINT_SIDES, faint_pairs, small_shape_frames

    pairs = faint_pairs()
    assert ("blue", "night") in pairs and ("red", "sky") not in pairs and len(pairs) == 5
    assert faint_pairs(55.0) == [("blue", "night"), ("blue", "ocean"), ("purple", "night")] and faint_pairs(40.0) == []
    for color, background in pairs:
        assert FOREGROUND_DISTANCE < np.linalg.norm(np.array(COLORS[color]) * OUTLINE_SCALE - BACKGROUNDS[background]) < 64
    frames, backgrounds = small_shape_frames(np.random.default_rng(0), 20, FAINT_SIDES, pairs, cells=(2, 3))
    assert frames.shape == (20, 128, 128, 3) and {b for _, b in pairs} >= set(backgrounds)
    found = [(d, b) for frame, b in zip(frames, backgrounds) for d in detect(frame, background=b)]
    assert len(found) >= 20 and all((d.color, b) in pairs for d, b in found)
    sides = [max(d.box[2] - d.box[0], d.box[3] - d.box[1]) for d, _ in found]
    assert min(sides) > 0.1 and max(sides) <= 0.4


def test_outline_weights_cover_both_sides_of_a_ring_band_and_leave_its_hole_open():
    from core.toyworld.world import ToyObject, render_frame
    from core.training.wan_toy import outline_weights

    frame = render_frame("ocean", [ToyObject("ring", "white", (0.25, 0.25, 0.75, 0.75))], 128)
    row = outline_weights(frame[None], ["ocean"], 8.0, 4.0)[0, 0, 64]
    assert row[64] == 1.0 and row[2] == 1.0  # the middle of the hole and the far background
    assert row[30] == 32.0 and row[34] == 32.0  # just outside and just inside the outer edge
    assert (row[36:64] == 8.0).any() and (row[36:64] == 32.0).any()  # the band's inside, then its inner edge


def test_cached_clips_are_normalised_latents_of_16_frames_at_16x16(tiny_run):
    data = torch.load(tiny_run / "data.pt", weights_only=False)
    assert data["latents"].shape == (2, 16, 16, 16, 16)
    assert data["prompt_embeds"].shape == (2, 32, 384) and data["phrase_embeds"].shape == (64, 384)
    on = data["masks"] > 0
    assert on.any() and (data["boxes"][on][:, 2:] > data["boxes"][on][:, :2]).all()


def test_the_export_renders_a_plan_at_128x128_through_the_wan_pipeline(tiny_run, tmp_path):
    from core.planner.rules import plan_with_rules
    from core.render import RenderSettings, load_pipeline, render_plan
    from core.vocabulary import model_vocabulary

    folder = export_wan_toy(tiny_run, tmp_path / "model", WanExportConfig(guidance_scale=3.0))
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "WanLayoutPipeline" and index["text_encoder"] == [None, None]
    pipe = load_pipeline(folder)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.family == "wan" and pipe.layout_adapter is not None
    assert model_vocabulary(pipe.config).backgrounds == ("sky", "grass", "desert", "night", "ocean", "snow")
    plan = plan_with_rules("a red ball rolls right on the grass")
    frames = render_plan(pipe, plan, RenderSettings(num_inference_steps=2))
    assert frames.shape == (plan.scenes[0].num_frames, 128, 128, 3) and frames.dtype == np.uint8
    # A fresh interpreter loads it too (diffusers imports no module a model_index.json names).
    fresh = subprocess.run([sys.executable, "-c", f"from core.render import load_pipeline; load_pipeline({str(folder)!r})"], capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stderr[-500:]


def render_counting_tokens(folder):
    """One scene of a plan rendered by the exported model in ``folder`` at one step: its frames (F, H, W, 3)
    uint8 and the set of video-token counts its transformer's first block saw."""
    from core.planner.rules import plan_with_rules
    from core.render import RenderSettings, load_pipeline, render_plan

    pipe = load_pipeline(folder)
    pipe.set_progress_bar_config(disable=True)
    seen = []
    hook = pipe.transformer.blocks[0].register_forward_hook(lambda module, args, out: seen.append(args[0].shape[1]))
    plan = plan_with_rules("a red ball rolls right on the grass")
    frames = render_plan(pipe, plan, RenderSettings(num_inference_steps=1))
    hook.remove()
    assert len(frames) == plan.scenes[0].num_frames and seen
    return frames, set(seen)


def test_a_run_with_patch_1_trains_exports_and_renders_with_four_times_the_tokens(tiny_run, tmp_path, capsys):
    fine = WanToyTrainConfig(**{**TINY.__dict__, "patch": 1, "layers": 1, "heads": 1})
    run = tmp_path / "patch1"
    assert train_wan_toy(run, fine, autoencoder=tiny_run / "decoder") == "done"
    folder = export_wan_toy(run, tmp_path / "model")
    config = json.loads((folder / "transformer" / "config.json").read_text())
    assert config["patch_size"] == [1, 1, 1] and config["num_layers"] == 1 and config["num_attention_heads"] == 1
    frames, tokens = render_counting_tokens(folder)
    assert frames.shape[1:] == (128, 128, 3)
    assert tokens == {len(frames) * 16 * 16}  # a token per latent cell: 256 a frame
    # the shipped architecture's weights cannot start it: one line naming the options that must match
    shipped = export_wan_toy(tiny_run, tmp_path / "patch2")
    out = tmp_path / "mismatch"
    capsys.readouterr()
    assert main(["wan-toy", "--out", str(out), "--patch", "1", "--init-from", str(shipped)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: --init-from: {shipped / 'transformer' / 'diffusion_pytorch_model.safetensors'} does not fit this run's transformer "
        "(other names or shapes; --patch and --heads must match it, --layers match or exceed it)"
    ]
    assert not out.exists()


def test_an_image_batch_trains_on_one_frame_of_each_clip_with_that_frames_boxes_and_phrases(tiny_run):
    from core.models.toy_wan import build_toy_wan_transformer
    from core.models.wan_adapter import WanLayoutAdapter

    data = torch.load(tiny_run / "data.pt", weights_only=False)
    transformer = build_toy_wan_transformer(num_layers=1)
    adapter = WanLayoutAdapter.for_transformer(transformer, phrase_dim=384, gate_init=0.5, depth_slots=3)
    adapter.attach(transformer)
    cfg = WanToyTrainConfig(**{**TINY.__dict__, "drop_layout": 0.0, "drop_prompt": 0.0, "bf16": False})
    idx = torch.tensor([0, 1])

    def loss(data, frame=None):
        return flow_matching_loss(transformer, adapter, data, idx, cfg, torch.Generator().manual_seed(0), frame=frame).loss

    per_frame = ("boxes", "masks", "phrase_ids")
    for j in (3, 9):
        only_j = {**data, "latents": data["latents"][:, :, j : j + 1], **{k: data[k][:, j : j + 1] for k in per_frame}}  # one-frame clips
        assert torch.allclose(loss(data, frame=torch.tensor([j, j])), loss(only_j), rtol=1e-5)
    moved = {**data, **{k: data[k][:, [0] * 16] for k in per_frame}}  # every frame given frame 0's boxes and phrases
    assert not torch.allclose(loss(data, frame=torch.tensor([9, 9])), loss(moved, frame=torch.tensor([9, 9])), rtol=1e-5)


def test_the_timestep_shift_moves_the_training_noise_levels_as_the_sampler_shifts_them(tiny_run):
    from core.models.toy_wan import FLOW_SHIFT, build_toy_wan_transformer
    from core.models.wan_adapter import WanLayoutAdapter

    assert WanToyTrainConfig().timestep_shift == FLOW_SHIFT  # by default training sees the sampler's noise levels
    data = torch.load(tiny_run / "data.pt", weights_only=False)
    transformer = build_toy_wan_transformer(num_layers=1)
    adapter = WanLayoutAdapter.for_transformer(transformer, phrase_dim=384, gate_init=0.5, depth_slots=3)
    adapter.attach(transformer)
    idx = torch.zeros(64, dtype=torch.long)

    def mean_sigma(shift: float) -> float:
        cfg = WanToyTrainConfig(**{**TINY.__dict__, "bf16": False, "timestep_shift": shift})
        with torch.no_grad():
            step = flow_matching_loss(transformer, adapter, data, idx, cfg, torch.Generator().manual_seed(0), frame=torch.zeros_like(idx))
        return float(step.terms["sigma"])

    uniform, shifted = mean_sigma(1.0), mean_sigma(FLOW_SHIFT)
    assert 0.4 < uniform < 0.6  # sigma = u
    assert shifted > uniform + 0.15  # 3u / (1 + 2u): most steps near pure noise
    assert mean_sigma(0.5) < uniform - 0.1  # below 1: most steps near the clean latents


def test_a_run_with_an_image_batch_logs_its_video_and_image_losses(tiny_run, tmp_path):
    run = tmp_path / "joint"
    assert train_wan_toy(run, WanToyTrainConfig(**{**TINY.__dict__, "image_batch": 3}), autoencoder=tiny_run / "decoder") == "done"
    rows = [row.split(",") for row in (run / "loss.csv").read_text().splitlines()]
    assert [row[0] for row in rows] == ["1", "2"]
    for _, total, _, video, image in rows:  # step, loss, sigma, video, image
        assert float(total) == pytest.approx(float(video) + float(image), abs=2e-5)


def test_an_oversampled_kind_is_drawn_that_much_more_often_for_videos_and_images(tiny_run, tmp_path, capsys):
    vocab = {p: i for i, p in enumerate(phrase_vocabulary())}
    phrases = [["red ball", "blue star"], ["red ball", "red square"], ["white ring", "blue heart"], ["red cross", "blue star"]]
    on = [[1, 1], [1, 1], [1, 1], [1, 0]]  # the last clip's star is there but never on screen
    data = {"latents": torch.zeros(4, 1, 1, 1, 1), "phrase_ids": torch.tensor([[[vocab[p] for p in clip]] for clip in phrases]),
            "masks": torch.tensor([[m] for m in on], dtype=torch.float32)}
    cfg = WanToyTrainConfig(**{**TINY.__dict__, "oversample": ("star",), "oversample_weight": 100.0})
    draws = clip_sampler(data, cfg.oversample, cfg.oversample_weight, torch.Generator().manual_seed(0), "transformer part")(400)
    assert "1 of 4 clips match star; 97% of draws" in capsys.readouterr().out
    assert (draws == 0).float().mean() > 0.9  # 0.25 when drawn uniformly
    uniform = clip_sampler(data, TINY.oversample, TINY.oversample_weight, torch.Generator().manual_seed(0), "transformer part")(400)
    assert 0.15 < (uniform == 0).float().mean() < 0.35
    run = tmp_path / "oversampled"
    assert train_wan_toy(run, WanToyTrainConfig(**{**cfg.__dict__, "image_batch": 2}), autoencoder=tiny_run / "decoder") == "done"
    assert json.loads((run / "config.json").read_text())["oversample"] == ["star"]
    assert [row.split(",")[0] for row in (run / "loss.csv").read_text().splitlines()] == ["1", "2"]


def test_overlap_oversamples_clips_where_one_box_covers_part_of_another(capsys):
    covered = [[0.1, 0.1, 0.5, 0.5], [0.3, 0.3, 0.5, 0.5]]  # the small box lies wholly inside the big one
    corner = [[0.1, 0.1, 0.4, 0.4], [0.3, 0.3, 0.6, 0.6]]  # 0.01 shared, 0.11 of either box: under OVERLAP_SHARE
    apart = [[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.7, 0.7]]
    data = {"latents": torch.zeros(4, 1, 1, 1, 1), "boxes": torch.tensor([[covered], [corner], [apart], [covered]]),
            "masks": torch.tensor([[[1.0, 1.0]], [[1.0, 1.0]], [[1.0, 1.0]], [[1.0, 0.0]]]),  # the last clip's small box is off screen
            "phrase_ids": torch.zeros(4, 1, 2, dtype=torch.long)}
    draws = clip_sampler(data, ("overlap",), 100.0, torch.Generator().manual_seed(0), "transformer part")(400)
    assert "1 of 4 clips match overlap; 97% of draws" in capsys.readouterr().out
    assert (draws == 0).float().mean() > 0.9


def test_bad_options_are_one_line_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["wan-toy", "--out", str(out), "--vae-crop", "60"]) == 2
    assert main(["wan-toy", "--out", str(out), "--max-minutes", "151"]) == 2
    assert main(["wan-toy", "--out", str(out), "--min-side", "0.5"]) == 2
    assert main(["wan-toy", "--out", str(out), "--group-share", "1.5"]) == 2
    assert main(["wan-toy", "--out", str(out), "--visibility-weight", "-1"]) == 2
    assert main(["wan-toy", "--out", str(out), "--image-batch", "-1"]) == 2
    assert main(["wan-toy", "--out", str(out), "--patch", "3"]) == 2
    assert main(["wan-toy", "--out", str(out), "--latent-factor", "2"]) == 2
    assert main(["wan-toy", "--out", str(out), "--layers", "0"]) == 2
    assert main(["wan-toy", "--out", str(out), "--oversample", "star,moon"]) == 2
    assert main(["wan-toy", "--out", str(out), "--oversample", "star", "--oversample-weight", "0.5"]) == 2
    assert main(["wan-toy", "--out", str(out), "--timestep-shift", "0"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "error: --vae-crop: must be a multiple of 8 in [16, 128] (got 60)",
        "error: --max-minutes: must be in (0, 150] (got 151.0)",
        "error: --min-side: must be in [0.05, 0.42] (got 0.5)",
        "error: --group-share: must be in [0, 1] (got 1.5)",
        "error: --visibility-weight: must be >= 0 (got -1.0)",
        "error: --image-batch: must be >= 0 (got -1)",
        "error: --patch: must be 1, 2 or 4 (got 3)",
        "error: --latent-factor: must be 4 or 8 (got 2)",
        "error: --layers: must be in [1, 40] (got 0)",
        "error: --oversample: 'moon': must be a kind (ball, square, triangle, star, heart, ring, diamond, cross), colour@background, colour+colour or overlap",
        "error: --oversample-weight: must be >= 1 (got 0.5)",
        "error: --timestep-shift: must be in [0.25, 10] (got 0.0)",
    ]
    assert not out.exists()


def test_a_device_other_than_cpu_or_cuda_or_one_this_machine_lacks_is_one_line_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["wan-toy", "--out", str(out), "--device", "tpu"]) == 2
    assert capsys.readouterr().err.splitlines() == ["error: --device: must be cpu or cuda[:N] (got 'tpu')"]
    if not torch.cuda.is_available():
        assert main(["wan-toy", "--out", str(out), "--device", "cuda"]) == 2
        assert capsys.readouterr().err.splitlines() == ["error: --device: 'cuda' requested but torch sees no CUDA device (allowed here: cpu)"]
    assert not out.exists()


def test_the_frame_autoencoder_codes_each_frame_of_a_video_as_an_image():
    from core.models.toy_wan import build_toy_wan_vae

    vae = build_toy_wan_vae().eval()
    video = torch.rand(1, 3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        latents = vae.encode(video).latent_dist.mean
        assert latents.shape == (1, 16, 3, 4, 4)
        assert torch.allclose(latents[:, :, 1], vae.encode(video[:, :, 1]).latent_dist.mean, atol=1e-4)
        decoded = vae.decode(latents).sample
        assert decoded.shape == video.shape and torch.allclose(decoded[:, :, 2], vae.decode(latents[:, :, 2]).sample, atol=1e-4)
    assert vae.config.scale_factor_temporal == 1 and vae.config.scale_factor_spatial == 8  # what WanPipeline reads


def test_a_factor_4_autoencoder_codes_a_latent_cell_per_4x4_pixels():
    from core.models.toy_wan import build_toy_wan_vae

    vae = build_toy_wan_vae(4).eval()
    video = torch.rand(1, 3, 2, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        latents = vae.encode(video).latent_dist.mean
        assert latents.shape == (1, 16, 2, 8, 8)
        assert vae.decode(latents).sample.shape == video.shape
    assert vae.config.scale_factor_spatial == 4 and len(vae.config.block_out_channels) == 3
    with pytest.raises(ValueError, match=r"^latent_factor: must be 4 or 8 \(got 16\)$"):
        build_toy_wan_vae(16)


def test_a_run_with_latent_factor_4_caches_32x32_latents_and_renders_with_patch_4(tmp_path):
    """``--latent-factor 4 --patch 4``: the finer latent, and as many tokens a frame as the shipped 16x16 one at patch 2."""
    run = tmp_path / "f4"
    assert train_wan_toy(run, WanToyTrainConfig(**{**TINY.__dict__, "latent_factor": 4, "patch": 4, "layers": 1, "heads": 1})) == "done"
    assert json.loads((run / "decoder" / "config.json").read_text())["scale_factor_spatial"] == 4
    assert torch.load(run / "data.pt", weights_only=False)["latents"].shape == (2, 16, 16, 32, 32)
    frames, tokens = render_counting_tokens(export_wan_toy(run, tmp_path / "model"))
    assert frames.shape[1:] == (128, 128, 3)
    assert tokens == {len(frames) * 8 * 8}  # 32x32 cells in 4x4 patches: 64 tokens a frame


def test_autoencoder_clips_are_consecutive_frames_cut_to_one_window():
    frames, backgrounds = random_frame_clips(np.random.default_rng(0), 3, 5, crop=48)
    assert frames.shape == (3, 5, 48, 48, 3) and len(backgrounds) == 3
    whole, _ = random_frame_clips(np.random.default_rng(0), 1, 5)
    assert whole.shape == (1, 5, 128, 128, 3)


def test_training_frames_hold_shapes_as_small_as_the_smallest_a_plan_draws():
    """Plans draw shapes from 0.13 of the frame; the v2 recipe trains on sides from ``min_side`` (0.12)."""
    from core.toyworld.world import sample_clip

    def sides(min_side):
        rng = np.random.default_rng(0)
        clips = [sample_clip(rng, num_frames=1, min_side=min_side) for _ in range(300)]
        return np.array([((b[2] - b[0]) * (b[3] - b[1])) ** 0.5 for c in clips for t in c.tracks for b in t.boxes if b is not None])

    assert WanToyTrainConfig().min_side == 0.12
    small, default = sides(0.12), sides(0.18)
    assert (small < 0.15).mean() > 0.09 and (default < 0.15).mean() < 0.07  # 0.11 and 0.05 (grown and shrunk shapes)


def test_small_shape_sheets_hold_many_separate_small_shapes_of_every_kind():
    """The decoder's sheets (``--small-share``): what the detector sees in them is small, separate and varied."""
    from core.toyworld.detect import detect
    from core.toyworld.shapes import classify
    from core.training.wan_toy import small_shape_frames

    frames, backgrounds = small_shape_frames(np.random.default_rng(0), 40)
    assert frames.shape == (40, 128, 128, 3) and frames.dtype == np.uint8 and len(backgrounds) == 40
    found = [detect(frame, background=background) for frame, background in zip(frames, backgrounds)]
    counts = np.array([len(d) for d in found])
    sides = np.array([max(b.box[2] - b.box[0], b.box[3] - b.box[1]) for d in found for b in d])
    assert counts.min() >= 3 and counts.mean() > 7  # 3x3 or 4x4 cells, 0.8 of them filled
    assert 0.09 < sides.min() and sides.max() <= 0.3  # 0.1-0.22, stretched 0.8-1.25 a side, with the outline
    kinds = {classify(frame, b, background=background).kind for frame, background, d in zip(frames, backgrounds, found) for b in d}
    assert len(kinds) == 8
    assert small_shape_frames(np.random.default_rng(0), 0)[0].shape == (0, 128, 128, 3)


@pytest.mark.parametrize("factor", [8, 4])
def test_patch_mixed_frames_recolour_one_object_and_mask_a_patch_of_its_cells(factor):
    """``--patch-mix-share``: frame b is frame a with one object in a neighbouring colour; the mask is inside that object."""
    from core.toyworld.world import BACKGROUNDS, COLORS
    from core.training.wan_toy import patch_mixed_frames

    names = list(COLORS)
    neighbours = {b: {c: [names[(i + 1) % len(names)]] for i, c in enumerate(names)} for b in BACKGROUNDS}
    drawn, recoloured, masks, backgrounds = patch_mixed_frames(np.random.default_rng(0), 30, neighbours, latent_factor=factor)
    cells = 128 // factor
    assert drawn.shape == recoloured.shape == (30, 128, 128, 3) and masks.shape == (30, 1, cells, cells) and len(backgrounds) == 30
    for a, b, mask in zip(drawn, recoloured, masks[:, 0]):
        changed = (a != b).any(-1)
        assert changed.any() and set(np.unique(mask)) == {0.0, 1.0}
        rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))  # the recoloured object's extent
        cell_rows, cell_cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert rows[0] // factor - 1 <= cell_rows[0] and cell_rows[-1] <= rows[-1] // factor + 1
        assert cols[0] // factor - 1 <= cell_cols[0] and cell_cols[-1] <= cols[-1] // factor + 1
        assert mask.sum() < ((rows[-1] // factor - rows[0] // factor + 1) * (cols[-1] // factor - cols[0] // factor + 1))  # a patch, not the whole object
    assert patch_mixed_frames(np.random.default_rng(0), 0, neighbours)[0].shape == (0, 128, 128, 3)


def test_a_deepened_decoder_decodes_as_before_until_trained_and_reloads(tmp_path):
    from core.models.toy_wan import FrameAutoencoderKL, build_toy_wan_vae, deepen_decoder

    torch.manual_seed(0)
    vae = build_toy_wan_vae().eval()
    deeper = deepen_decoder(vae, 2).eval()
    assert [len(block.resnets) for block in deeper.decoder.up_blocks] == [3, 3, 3, 3]  # diffusers' Decoder: layers + 1
    assert [len(block.resnets) for block in deeper.encoder.down_blocks] == [1, 1, 1, 1]
    latents = torch.randn(1, 16, 2, 4, 4)
    with torch.no_grad():
        assert torch.allclose(deeper.decode(latents).sample, vae.decode(latents).sample, atol=1e-5)
        deeper.decoder.up_blocks[0].resnets[2].conv2.weight.add_(0.1)  # a trained new layer changes the output
        assert not torch.allclose(deeper.decode(latents).sample, vae.decode(latents).sample, atol=1e-3)
    deeper.save_pretrained(tmp_path / "vae")
    reloaded = FrameAutoencoderKL.from_pretrained(tmp_path / "vae").eval()
    with torch.no_grad():
        assert torch.equal(reloaded.decode(latents).sample, deeper.decode(latents).sample)
    with pytest.raises(ValueError, match=r"decoder_layers: must be above the decoder's 2 layers a level \(got 2\)"):
        deepen_decoder(deeper, 2)


def test_a_widened_decoder_decodes_as_before_until_trained_and_reloads(tmp_path):
    from core.models.toy_wan import FrameAutoencoderKL, build_toy_wan_vae, deepen_decoder, widen_decoder

    torch.manual_seed(0)
    vae = deepen_decoder(build_toy_wan_vae(), 2).eval()
    for param in vae.decoder.parameters():  # trained-looking weights: no zeroed layer hides a wrong copy
        param.data.add_(0.05 * torch.randn_like(param))
    latents = torch.randn(1, 16, 2, 4, 4)
    with torch.no_grad():
        narrow = vae.decode(latents).sample
    for width in (64, 96):
        wide = widen_decoder(vae, width).eval()
        assert wide.decoder.conv_out.in_channels == width and wide.decoder.up_blocks[-1].resnets[2].conv2.out_channels == width
        assert wide.decoder.up_blocks[-2].resnets[0].conv1.out_channels == 64  # the 64x64 level is as it was
        with torch.no_grad():
            assert torch.allclose(wide.decode(latents).sample, narrow, atol=1e-4)
    # The copies of a channel read by the next layer get unequal shares, so they can learn apart.
    weight = wide.decoder.conv_out.weight  # (3, 96, 3, 3): old channel 0's copies are 0, 2 and 4 (groups of 2 -> 6)
    assert not torch.allclose(weight[:, 0], weight[:, 2])
    wide.save_pretrained(tmp_path / "vae")
    reloaded = FrameAutoencoderKL.from_pretrained(tmp_path / "vae").eval()
    assert reloaded.config.decoder_block_out_channels == [96, 64, 64, 128] and reloaded.config.decoder_layers_per_block == 2
    with torch.no_grad():
        assert torch.equal(reloaded.decode(latents).sample, wide.decode(latents).sample)
    with pytest.raises(ValueError, match=r"decoder_width: must be a multiple of the decoder's 96 channels above it \(got 128\)"):
        widen_decoder(wide, 128)


def test_a_soup_of_exported_models_averages_their_weights_and_renders(tiny_run, tmp_path):
    from safetensors.torch import load_file

    from core.planner.rules import plan_with_rules
    from core.render import RenderSettings, load_pipeline, render_plan

    averaged = export_wan_toy(tiny_run, tmp_path / "ema")
    last = export_wan_toy(tiny_run, tmp_path / "last", WanExportConfig(ema=False))
    target = tmp_path / "soup"
    target.mkdir()
    (target / "MODEL_CARD.md").write_text("kept")
    assert main(["wan-soup", "--models", str(averaged), str(last), "--to", str(target), "--guidance-scale", "2.5"]) == 0
    assert (target / "MODEL_CARD.md").read_text() == "kept"
    assert json.loads((target / "model_index.json").read_text())["default_guidance_scale"] == 2.5
    for part in ("transformer", "layout_adapter"):
        a, b, soup = (load_file(folder / part / "diffusion_pytorch_model.safetensors") for folder in (averaged, last, target))
        assert soup.keys() == a.keys()
        assert any(not torch.equal(a[k], b[k]) for k in a)  # two different models went in
        for k in a:
            assert soup[k].dtype == torch.float16
            torch.testing.assert_close(soup[k].float(), (a[k].float() + b[k].float()) / 2, atol=1e-3, rtol=1e-3)
    pipe = load_pipeline(target)
    pipe.set_progress_bar_config(disable=True)
    plan = plan_with_rules("a blue star falls on the night")
    frames = render_plan(pipe, plan, RenderSettings(num_inference_steps=2))
    assert frames.shape == (plan.scenes[0].num_frames, 128, 128, 3)


def test_a_soup_of_a_model_and_its_deeper_fine_tune_averages_the_deepened_model_with_it(tiny_run, tmp_path):
    from safetensors.torch import load_file, save_file

    from core.models.toy_wan import deepen_transformer
    from core.planner.rules import plan_with_rules
    from core.render import RenderSettings, load_pipeline, render_plan

    shallow = export_wan_toy(tiny_run, tmp_path / "shallow")
    deep = export_wan_toy(tiny_run, tmp_path / "deep")
    weights = "diffusion_pytorch_model.safetensors"
    blocks = json.loads((shallow / "transformer" / "config.json").read_text())["num_layers"]
    grown = deepen_transformer(load_file(shallow / "transformer" / weights), load_file(shallow / "layout_adapter" / weights), blocks + 2)
    generator = torch.Generator().manual_seed(0)
    for part, state in zip(("transformer", "layout_adapter"), grown):  # stands in for a trained deeper fine-tune
        save_file({k: v + 0.01 * torch.randn(v.shape, generator=generator).to(v.dtype) for k, v in state.items()}, deep / part / weights)
        config = json.loads((deep / part / "config.json").read_text())
        config["num_layers" if part == "transformer" else "num_blocks"] = blocks + 2
        (deep / part / "config.json").write_text(json.dumps(config))
    for order in ((shallow, deep), (deep, shallow)):
        target = tmp_path / f"soup-{order[0].name}"
        assert main(["wan-soup", "--models", *map(str, order), "--to", str(target)]) == 0
        assert json.loads((target / "transformer" / "config.json").read_text())["num_layers"] == blocks + 2
        for part, start in zip(("transformer", "layout_adapter"), grown):
            soup, tuned = load_file(target / part / weights), load_file(deep / part / weights)
            assert soup.keys() == start.keys()
            for k in soup:  # halfway between the deepened start and the fine-tune
                torch.testing.assert_close(soup[k].float(), (start[k].float() + tuned[k].float()) / 2, atol=1e-3, rtol=1e-3)
    pipe = load_pipeline(target)
    pipe.set_progress_bar_config(disable=True)
    plan = plan_with_rules("a red ball rolls across the grass")
    assert render_plan(pipe, plan, RenderSettings(num_inference_steps=2)).shape == (plan.scenes[0].num_frames, 128, 128, 3)


def test_a_soup_of_one_model_or_of_models_on_other_autoencoders_is_one_line_and_writes_nothing(tiny_run, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    model = export_wan_toy(tiny_run, tmp_path / "model")
    other = export_wan_toy(tiny_run, tmp_path / "other")
    vae_file = other / "vae" / "diffusion_pytorch_model.safetensors"
    save_file({k: v + 1 if v.is_floating_point() else v for k, v in load_file(vae_file).items()}, vae_file)
    out = tmp_path / "soup"
    assert main(["wan-soup", "--models", str(model), "--to", str(out)]) == 2
    assert main(["wan-soup", "--models", str(model), str(tiny_run), "--to", str(out)]) == 2  # a run folder, not an export
    assert main(["wan-soup", "--models", str(model), str(other), "--to", str(out)]) == 2
    assert main(["wan-soup", "--models", str(model), str(model), "--to", str(out), "--guidance-scale", "31"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("error: --models: ") for line in lines[:3]), lines
    assert "at least 2" in lines[0] and "not an exported" in lines[1] and "autoencoder differs" in lines[2]
    assert lines[3].startswith("error: --guidance-scale: ")
    assert not out.exists()


def test_wan_refine_teaches_the_decoder_the_models_own_samples_and_keeps_the_rest_of_the_model(tiny_run, tmp_path):
    from safetensors.torch import load_file

    from core.models.toy_wan import FrameAutoencoderKL
    from core.render import load_pipeline
    from core.training.refine import decoder_latents

    model = export_wan_toy(tiny_run, tmp_path / "model", WanExportConfig(guidance_scale=3.0))
    run, out = tmp_path / "refine", tmp_path / "refined"
    args = ["wan-refine", "--run", str(run), "--model", str(model), "--to", str(out), "--clips", "1", "--batch", "2", "--sample-share", "0.5"]
    assert main([*args, "--steps", "12", "--lr", "1e-3", "--patch-mix-share", "1"]) == 0  # every encoded frame patch-mixed
    pairs = torch.load(run / "sample_pairs.pt", weights_only=False)
    assert pairs["latents"].shape == (1, 16, 16, 16, 16) and pairs["latents"].dtype == torch.float16
    assert pairs["frames"].shape == (1, 16, 128, 128, 3) and pairs["guidance_scale"] == 3.0  # sampled as a render of this model
    assert [row.split(",")[0] for row in (run / "vae_refine_loss.csv").read_text().splitlines()] == [str(i) for i in range(1, 13)]
    # The cached latents are what the autoencoder decodes: the pipeline's normalisation undone.
    pipe = load_pipeline(model)
    z = torch.randn(1, 16, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        direct = pipe.vae.decode(decoder_latents(pipe.vae, z).to(pipe.vae.dtype)).sample[0].float().permute(1, 2, 3, 0)
    assert np.abs(pipe.decode_latents(z).astype(float) - ((direct.clamp(-1, 1) + 1) * 127.5).numpy()).max() <= 1.0

    def pair_error(folder):
        vae = FrameAutoencoderKL.from_pretrained(folder / "vae").float()
        with torch.no_grad():
            decoded = vae.decode(pairs["latents"].float()).sample[0].permute(1, 2, 3, 0)
        return ((decoded.clamp(-1, 1) + 1) * 127.5 - pairs["frames"][0].float()).abs().mean().item()

    # The refined decoder draws the model's own samples closer to the frames drawn for their layouts.
    assert pair_error(out) < pair_error(model)
    # Only the decoder learns: the encoder (so the latents), transformer and adapter are the model's.
    original, refined = (load_file(folder / "vae" / "diffusion_pytorch_model.safetensors") for folder in (model, out))
    assert all(torch.equal(original[k].float(), refined[k].float()) for k in original if k.startswith(("encoder.", "quant_conv.")))
    assert any(not torch.equal(original[k].float(), refined[k].float()) for k in original if k.startswith("decoder."))
    for part in ("transformer", "layout_adapter"):
        for name in (p.name for p in (model / part).iterdir()):
            assert (out / part / name).read_bytes() == (model / part / name).read_bytes()
    # A second run samples groups of one kind side by side and trains on them beside the first run's pairs,
    # with a decoder one layer a level deeper and twice as wide at full resolution, and a patch discriminator whose loss
    # joins the decoder's from the second step: the encoder (so the latents) stays the model's.
    groups, joined = tmp_path / "groups", tmp_path / "joined"
    args = ["wan-refine", "--run", str(groups), "--model", str(model), "--to", str(joined), "--clips", "1", "--batch", "4", "--steps", "2"]
    assert main([
        *args, "--seed", "1", "--group-share", "1", "--pairs-from", str(run), "--decoder-layers", "2", "--decoder-width", "64", "--small-share", "0.5",
        "--faint-share", "0.5", "--silhouette-weight", "1", "--adversarial-weight", "0.5", "--adversarial-start", "1", "--shift-tolerance", "1",
    ]) == 0
    rows = [[float(v) for v in row.split(",")] for row in (groups / "vae_refine_loss.csv").read_text().splitlines()]
    assert [len(row) for row in rows] == [10, 10]  # step, loss, l1, mse, edge, faded, silhouette, discriminator, adversarial, adaptive weight
    assert rows[0][-1] == 0.0 and rows[1][-1] > 0.0  # the discriminator trains alone for the first step
    checkpoint = torch.load(groups / "vae_refine_ckpt.pt", weights_only=False)
    assert "discriminator" in checkpoint and checkpoint["aux_optimizers"]["discriminator"]["state"]
    group = torch.load(groups / "sample_pairs.pt", weights_only=False)
    assert group["group_share"] == 1.0 and len(group["latents"]) == 1
    deeper = FrameAutoencoderKL.from_pretrained(joined / "vae")
    assert deeper.config.decoder_layers_per_block == 2 and len(deeper.decoder.up_blocks[0].resnets) == 3
    assert deeper.decoder.conv_out.in_channels == 64 and deeper.encoder.conv_in.out_channels == 32
    assert len(FrameAutoencoderKL.from_pretrained(model / "vae").decoder.up_blocks[0].resnets) == 2
    deep = load_file(joined / "vae" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(original[k].float(), deep[k].float()) for k in original if k.startswith(("encoder.", "quant_conv.")))
    assert load_pipeline(joined).decode_latents(z).shape == (2, 128, 128, 3)


def test_wan_refine_bad_options_are_one_line_before_anything_is_written(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["wan-refine", "--run", str(run), "--model", "assets/wan-toy", "--to", "assets/wan-toy"]) == 2
    assert main(["wan-refine", "--run", str(run), "--model", str(tmp_path), "--to", str(tmp_path / "out")]) == 2
    assert main(["wan-refine", "--run", str(run), "--to", str(tmp_path / "out"), "--sample-share", "1"]) == 2
    assert main(["wan-refine", "--run", str(run), "--to", str(tmp_path / "out"), "--clips", "0"]) == 2
    assert main(["wan-refine", "--run", str(run), "--to", str(tmp_path / "out"), "--pair-outline-weight", "-1"]) == 2
    assert main(["wan-refine", "--run", str(run), "--to", str(tmp_path / "out"), "--decoder-layers", "5"]) == 2
    assert main(["wan-refine", "--run", str(run), "--to", str(tmp_path / "out"), "--decoder-width", "48"]) == 2
    assert main(["wan-refine", "--run", str(run), "--to", str(tmp_path / "out"), "--small-share", "-0.1"]) == 2
    assert main(["wan-refine", "--run", str(run), "--to", str(tmp_path / "out"), "--small-share", "0.5", "--patch-mix-share", "0.8"]) == 2
    assert main(["wan-refine", "--run", str(run), "--to", str(tmp_path / "out"), "--adversarial-weight", "11"]) == 2
    assert main(["wan-refine", "--run", str(run), "--to", str(tmp_path / "out"), "--adversarial-start", "-1"]) == 2
    assert main(["wan-refine", "--run", str(run), "--to", str(tmp_path / "out"), "--shift-tolerance", "3"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: --to: assets/wan-toy must be a new folder, not --model or --run",
        f"error: --model: {tmp_path} is not a wan-toy pipeline folder (vae/ and transformer/), e.g. assets/wan-toy",
        "error: --sample-share: must be in [0, 1) (got 1.0)",
        "error: --clips: must be >= 1 (got 0)",
        "error: --pair-outline-weight: must be >= 0 (got -1.0)",
        "error: --decoder-layers: must be in [1, 4] (got 5)",
        "error: --decoder-width: must be 32, 64, 96 or 128 (got 48)",
        "error: --small-share: must be in [0, 1] (got -0.1)",
        "error: --patch-mix-share: must be in [0, 0.5] (got 0.8)",
        "error: --adversarial-weight: must be in [0, 10] (got 11.0)",
        "error: --adversarial-start: must be >= 0 (got -1)",
        "error: --shift-tolerance: must be in [0, 2] (got 3)",
    ]
    assert not run.exists() and not (tmp_path / "out").exists()
    assert main(["wan-refine", "--run", str(run), "--to", str(tmp_path / "out"), "--group-share", "1.5"]) == 2
    assert main(["wan-refine", "--run", str(run), "--to", str(tmp_path / "out"), "--pairs-from", str(tmp_path / "nowhere")]) == 2
    assert main(["wan-refine", "--run", str(run), "--to", str(tmp_path / "out"), "--small-share", "0.5", "--faint-share", "0.6"]) == 2
    assert main(["wan-refine", "--run", str(run), "--to", str(tmp_path / "out"), "--silhouette-weight", "11"]) == 2
    assert main(["wan-refine", "--run", str(run), "--to", str(tmp_path / "out"), "--faint-outline", "40"]) == 2
    (tmp_path / "sampled").mkdir()
    torch.save({"latents": torch.zeros(1, 16, 2, 16, 16), "frames": torch.zeros(1, 2, 128, 128, 3, dtype=torch.uint8)}, tmp_path / "sampled" / "sample_pairs.pt")
    aligned = ["--pairs-from", str(tmp_path / "sampled"), "--pair-targets", "aligned"]
    assert main(["wan-refine", "--run", str(run), "--to", str(tmp_path / "out"), *aligned]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: --group-share: must be in [0, 1] (got 1.5)",
        f"error: --pairs-from: {tmp_path / 'nowhere'} has no sample_pairs.pt; name a wan-refine run whose sampling has finished",
        "error: --faint-share: must be in [0, 0.5] (got 0.6)",
        "error: --silhouette-weight: must be in [0, 10] (got 11.0)",
        "error: --faint-outline: must be in (48, 100] (got 40.0)",
        f"error: --pairs-from: {tmp_path / 'sampled'} has no aligned_frames.pt for its 1 clips; run it with --pair-targets aligned first",
    ]
    assert not run.exists() and not (tmp_path / "out").exists()


def test_joined_pairs_keep_every_clip_and_refuse_another_guidance_scale_or_denoiser():
    from core.training.refine import join_pairs

    def part(clips, scale, background):
        return {
            "latents": torch.full((clips, 16, 2, 16, 16), float(clips), dtype=torch.float16),
            "frames": torch.zeros(clips, 2, 128, 128, 3, dtype=torch.uint8),
            "backgrounds": [background] * clips, "guidance_scale": scale,
        }

    joined = join_pairs([part(2, 2.0, "sky"), part(3, 2.0, "snow")])
    assert joined["latents"].shape[0] == joined["frames"].shape[0] == 5 and joined["guidance_scale"] == 2.0
    assert joined["backgrounds"] == ["sky", "sky", "snow", "snow", "snow"]
    assert joined["latents"][:2].eq(2).all() and joined["latents"][2:].eq(3).all()
    with pytest.raises(ValueError, match=r"^--pairs-from: the runs' clips were sampled at different guidance scales \(2.0, 3.0\)"):
        join_pairs([part(1, 2.0, "sky"), part(1, 3.0, "sky")])
    # Clips of two denoisers are refused; a cache written before the fingerprint existed joins either.
    assert join_pairs([{**part(1, 2.0, "sky"), "denoiser": "aa"}, part(1, 2.0, "sky")])["denoiser"] == "aa"
    with pytest.raises(ValueError, match=r"^--pairs-from: the runs' clips were sampled from different denoisers \(aa, bb\)"):
        join_pairs([{**part(1, 2.0, "sky"), "denoiser": "aa"}, {**part(1, 2.0, "sky"), "denoiser": "bb"}])


def test_aligned_targets_redraw_each_object_where_the_sample_put_it():
    from core.models.toy_wan import FrameAutoencoderKL
    from core.toyworld.detect import box_iou
    from core.toyworld.world import ToyObject, render_frame
    from core.training.refine import aligned_frames, training_clips

    # Stand-in samples: the shipped autoencoder's encodings of each clip drawn 5 px to the right of its plan.
    vae = FrameAutoencoderKL.from_pretrained("assets/wan-toy/vae").float().eval()
    clips = [clip for clip, _ in itertools.islice(training_clips(0, num_frames=2, size=128), 3)]
    shift = 5 / 128

    def drawn(clip, dx):
        return np.stack([
            render_frame(clip.background, [
                ToyObject(t.kind, t.colors[f], (t.boxes[f][0] + dx, t.boxes[f][1], t.boxes[f][2] + dx, t.boxes[f][3]))
                for t in clip.tracks if t.boxes[f] is not None
            ], 128)
            for f in range(2)
        ])

    shifted = np.stack([drawn(clip, shift) for clip in clips])  # (3, 2, 128, 128, 3)
    with torch.no_grad():
        latents = vae.encode(torch.from_numpy(shifted).permute(0, 4, 1, 2, 3).float() / 127.5 - 1).latent_dist.mean
    pairs = {"latents": latents, "frames": torch.from_numpy(np.stack([clip.frames for clip in clips]))}
    aligned = aligned_frames(pairs, vae, seed=0)
    assert aligned.shape == pairs["frames"].shape and aligned.dtype == torch.uint8
    # In clips whose objects stand apart, the objects follow the sample: the aligned frames are near
    # the shifted drawings, far nearer than the planned ones. Overlapping objects keep their plan.
    apart = [i for i, clip in enumerate(clips) if not any(
        None not in (a.boxes[f], b.boxes[f]) and box_iou(a.boxes[f], b.boxes[f]) for f in range(2) for a, b in itertools.combinations(clip.tracks, 2)
    )]
    assert apart and len(apart) < len(clips), "seed 0's first clips have objects apart and overlapping"
    error = {name: np.abs(frames.numpy().astype(int) - shifted)[apart].mean() for name, frames in (("aligned", aligned), ("planned", pairs["frames"]))}
    assert error["aligned"] < 0.4 * error["planned"]
    overlapping = [i for i in range(len(clips)) if i not in apart]
    assert torch.equal(aligned[overlapping], pairs["frames"][overlapping])
    # Another seed's clips are refused, not silently misaligned.
    with pytest.raises(ValueError, match="^seed: clip 0 of the pairs was not sampled with seed 1$"):
        aligned_frames(pairs, vae, seed=1)


def test_shift_tolerant_terms_forgive_a_sharp_shape_a_pixel_off_but_not_a_blur():
    from core.toyworld.world import ToyObject, render_frame
    from core.training.toy_data import frames_to_tensor
    from core.training.wan_toy import image_differences, outline_weights, shift_tolerant_terms

    drawn = np.stack([render_frame("night", [ToyObject("star", "yellow", (0.3, 0.3, 0.45, 0.45))], 128)])
    images, weight = frames_to_tensor(drawn), outline_weights(drawn, ["night"], 8.0, 4.0)
    # At tolerance 0 the terms are the plain weighted L1, MSE and edge means.
    recon = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1
    (rx, ry), (ix, iy) = image_differences(recon), image_differences(images)
    wx, wy = torch.maximum(weight[..., :, 1:], weight[..., :, :-1]), torch.maximum(weight[..., 1:, :], weight[..., :-1, :])
    plain = [(weight * (recon - images).abs()).mean(), (weight * (recon - images) ** 2).mean(), 0.5 * ((wx * (rx - ix).abs()).mean() + (wy * (ry - iy).abs()).mean())]
    assert torch.allclose(torch.stack(shift_tolerant_terms(recon, images, weight, 1.0, 0)), torch.stack(plain), rtol=1e-5)
    # Scored as drawn, the star drawn a pixel right and down costs more than its blur; within tolerance 1 it costs nothing.
    moved = torch.roll(images, (1, 1), dims=(2, 3))
    blurred = torch.nn.functional.avg_pool2d(images, 3, stride=1, padding=1, count_include_pad=False)

    def total(recon, tolerance):
        l1, mse, edge = shift_tolerant_terms(recon, images, weight, 1.0, tolerance)
        return (l1 + mse + edge).item()

    assert total(moved, 0) > total(blurred, 0)
    assert total(moved, 1) == 0.0 < total(blurred, 1)
