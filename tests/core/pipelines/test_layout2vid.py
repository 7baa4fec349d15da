"""Layout2VidPipeline with tiny random components (diffusers style): shapes, determinism, grounding,
callbacks, interruption and save/load."""

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
from transformers import AutoTokenizer, BertConfig, BertModel

from core.models.layout import LayoutAdapter, spatial_transformer_blocks
from core.pipelines.layout2vid import Layout2VidPipeline, LayoutConditioning
from core.text import minilm_path


def get_dummy_components():
    torch.manual_seed(0)
    unet = UNet3DConditionModel(
        sample_size=4,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
        up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
    )
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    text_encoder = BertModel(
        BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37),
        add_pooling_layer=False,
    ).eval()
    adapter = LayoutAdapter.for_unet(unet, phrase_dim=32, gate_init=0.7)
    scheduler = DDIMScheduler(prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing", clip_sample=False)
    return dict(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler, layout_adapter=adapter)


def dummy_layout(frames=4, x_shift=0.0):
    boxes = torch.tensor([[[0.1 + x_shift, 0.1, 0.5 + x_shift, 0.5]]]).repeat(frames, 1, 1)
    phrases = [["red ball"] for _ in range(frames)]
    phrases[-1] = ["blue ball"]
    return LayoutConditioning(phrases=phrases, boxes=boxes, masks=torch.ones(frames, 1), entity_seeds=[7])


@pytest.fixture
def pipe():
    pipe = Layout2VidPipeline(**get_dummy_components())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, layout=None, seed=0, **kwargs):
    kwargs.setdefault("num_frames", 4)
    kwargs.setdefault("num_inference_steps", 2)
    return pipe("a red ball on the grass", layout, generator=torch.Generator().manual_seed(seed), **kwargs)


def test_output_shape_and_dtype(pipe):
    out = run(pipe, dummy_layout())
    assert out.frames.shape == (4, 8, 8, 3)  # sample_size 4 x vae_scale_factor 2
    assert out.frames.dtype == np.uint8


def test_same_seed_same_video_other_seed_other_video(pipe):
    a, b, c = run(pipe, dummy_layout()).frames, run(pipe, dummy_layout()).frames, run(pipe, dummy_layout(), seed=1).frames
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).sum() > 0


def test_boxes_change_the_output(pipe):
    a = run(pipe, dummy_layout(), output_type="latent").frames
    b = run(pipe, dummy_layout(x_shift=0.4), output_type="latent").frames
    assert not torch.allclose(a, b)


def test_layout_alpha_zero_ignores_boxes(pipe):
    # With grounding off for every step, only the entity noise placement depends on the boxes.
    layout_a, layout_b = dummy_layout(), dummy_layout(x_shift=0.4)
    layout_a.entity_seeds = layout_b.entity_seeds = None
    a = run(pipe, layout_a, layout_alpha=0.0, output_type="latent").frames
    b = run(pipe, layout_b, layout_alpha=0.0, output_type="latent").frames
    torch.testing.assert_close(a, b)


def test_unconditional_layout_none_grounds_only_the_conditional_branch(pipe):
    # GLIGEN's null tokens in the unconditional branch, or no gated attention there: both follow
    # the boxes, and they differ from each other only through that branch.
    null = run(pipe, dummy_layout(), guidance_scale=3.0, output_type="latent").frames
    none = run(pipe, dummy_layout(), guidance_scale=3.0, unconditional_layout="none", output_type="latent").frames
    shifted = run(pipe, dummy_layout(x_shift=0.4), guidance_scale=3.0, unconditional_layout="none", output_type="latent").frames
    assert not torch.allclose(null, none)
    assert not torch.allclose(none, shifted)
    # Without classifier-free guidance there is no unconditional branch: the option changes nothing.
    torch.testing.assert_close(
        run(pipe, dummy_layout(), guidance_scale=1.0, output_type="latent").frames,
        run(pipe, dummy_layout(), guidance_scale=1.0, unconditional_layout="none", output_type="latent").frames,
    )


def test_gated_attention_leaves_the_rows_without_grounding_tokens_alone():
    from core.models.layout import GroundedSelfAttention

    torch.manual_seed(0)
    fuser = GroundedSelfAttention(8, 6, 2, 4, gate_init=0.5).eval()
    x, objs = torch.randn(4, 16, 8), torch.randn(2, 3, 6)
    with torch.no_grad():
        out = fuser(x, objs)
        torch.testing.assert_close(out[:2], x[:2])  # the first rows have no tokens
        torch.testing.assert_close(out[2:], fuser(x[2:], objs))
        assert not torch.allclose(out[2:], x[2:])


def test_grounding_attention_bias_hides_a_token_from_the_cells_its_box_misses():
    from core.models.layout import grounding_attention_bias

    boxes = torch.tensor([[[0.0, 0.0, 0.5, 1.0], [0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0]]])  # left half, top-left cell, off screen
    bias = grounding_attention_bias(boxes, torch.tensor([[1.0, 1.0, 0.0]]), 2, 2, penalty=9.0)  # cells: TL, TR, BL, BR
    assert bias.shape == (1, 7, 7)
    hidden = torch.tensor([[0, 9, 0, 9], [0, 9, 9, 9], [0, 0, 0, 0]], dtype=torch.float32).T  # (cells, entities)
    torch.testing.assert_close(bias[0, :4, 4:], -hidden)
    assert torch.all(bias[0, :4, :4] == 0) and torch.all(bias[0, 4:] == 0)  # visual-visual and token queries are free


def test_box_masked_gated_attention_keeps_each_phrase_inside_its_box():
    torch.manual_seed(0)
    boxes = torch.tensor([[0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 1.0, 1.0]]).expand(2, 2, 4)  # entity 0 left, entity 1 right
    x, objs = torch.randn(2, 16, 8), torch.randn(2, 2, 6)  # a 4 x 4 grid; columns 0-1 are the left half
    other = objs.clone()
    other[:, 1] = torch.randn(2, 6)  # entity 1 gets another phrase
    left = torch.arange(16).reshape(4, 4)[:, :2].flatten()
    right = torch.arange(16).reshape(4, 4)[:, 2:].flatten()
    for box_masked in (True, False):
        adapter = LayoutAdapter(block_dims=[8], block_heads=[2], grounding_dim=6, phrase_dim=5, gate_init=0.5, box_masked=box_masked).eval()
        fuser = adapter.fusers[0]
        with torch.no_grad(), adapter.grounding(objs, boxes=boxes, masks=torch.ones(2, 2)):
            before, after = fuser(x, objs), fuser(x, other)
        assert not torch.allclose(before[:, right], after[:, right], atol=1e-4)
        # Masked, entity 1's phrase cannot reach the cells of entity 0's box; unmasked (GLIGEN), it does.
        assert torch.allclose(before[:, left], after[:, left]) == box_masked
    # An off-screen entity's token (GLIGEN's null feature) is read everywhere, as in training.
    masked = LayoutAdapter(block_dims=[8], block_heads=[2], grounding_dim=6, phrase_dim=5, gate_init=0.5, box_masked=True).eval()
    with torch.no_grad(), masked.grounding(objs, boxes=boxes, masks=torch.tensor([[1.0, 0.0]] * 2)):
        assert not torch.allclose(masked.fusers[0](x, objs)[:, left], masked.fusers[0](x, other)[:, left], atol=1e-4)
    with pytest.raises(ValueError, match=r"boxes, masks: a box-masked adapter needs \(2, 2, 4\) boxes"):
        with masked.grounding(objs):
            pass


def test_box_masked_adapter_renders_with_guidance_and_survives_save_and_load(tmp_path):
    components = get_dummy_components()
    components["layout_adapter"] = LayoutAdapter.for_unet(components["unet"], phrase_dim=32, gate_init=0.7, box_masked=True)
    components["layout_adapter"].load_state_dict(get_dummy_components()["layout_adapter"].state_dict())
    masked = Layout2VidPipeline(**components)
    masked.set_progress_bar_config(disable=True)
    plain = Layout2VidPipeline(**get_dummy_components())
    plain.set_progress_bar_config(disable=True)
    two = LayoutConditioning(
        phrases=[["red ball", "blue star"]] * 4, boxes=torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]]).repeat(4, 1, 1),
        masks=torch.ones(4, 2),
    )
    for unconditional_layout in ("null", "none"):  # (2F, ...) and (F, ...) grounding rows
        expected = run(masked, two, guidance_scale=4.0, unconditional_layout=unconditional_layout, output_type="latent").frames
        assert not torch.allclose(expected, run(plain, two, guidance_scale=4.0, unconditional_layout=unconditional_layout, output_type="latent").frames)
    masked.save_pretrained(tmp_path / "pipe")
    loaded = Layout2VidPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.layout_adapter.config.box_masked
    torch.testing.assert_close(run(loaded, two, guidance_scale=4.0, unconditional_layout="none", output_type="latent").frames, expected)


def test_contiguous_geglu_matches_diffusers_geglu():
    from diffusers.models.activations import GEGLU

    from core.models.layout import ContiguousGEGLU

    torch.manual_seed(0)
    stock, ours = GEGLU(16, 64), ContiguousGEGLU(16, 64)
    ours.load_state_dict(stock.state_dict())
    x = torch.randn(3, 10, 16)
    torch.testing.assert_close(ours(x), stock(x))
    assert ours(x).shape == (3, 10, 64)


@pytest.mark.parametrize("frame_prompts", [False, True])
def test_guidance_interval_guides_only_its_steps_and_runs_the_conditional_branch_on_the_rest(pipe, frame_prompts):
    layout = dummy_layout()
    if frame_prompts:
        layout.frame_prompts = [f"a red ball, frame {i}" for i in range(4)]

    def latents(**kwargs):
        return run(pipe, layout, guidance_scale=3.0, num_inference_steps=4, output_type="latent", **kwargs).frames

    every = latents()
    torch.testing.assert_close(latents(guidance_interval=(0.0, 1.0)), every, rtol=0, atol=0)
    # An empty interval is the conditional branch alone: exactly the unguided render (grounding,
    # region and frame prompts all taken from the conditional half).
    unguided = run(pipe, layout, guidance_scale=1.0, num_inference_steps=4, output_type="latent").frames
    torch.testing.assert_close(latents(guidance_interval=(0.5, 0.5)), unguided)
    later = latents(guidance_interval=(0.5, 1.0))
    assert not torch.allclose(later, every) and not torch.allclose(later, unguided)
    # The UNet batch: the conditional branch alone on the first two steps, both branches on the last two.
    rows = []
    handle = pipe.unet.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    latents(guidance_interval=(0.5, 1.0))
    handle.remove()
    assert rows == [1, 1, 2, 2]
    with pytest.raises(ValueError, match=r"^guidance_interval: must be \(start, end\) with 0 <= start <= end <= 1 \(got \(0.8, 0.2\)\)"):
        latents(guidance_interval=(0.8, 0.2))


def test_guidance_rescale_gives_guided_steps_the_conditional_spread_and_leaves_unguided_ones_alone(pipe):
    stepped = []
    step = pipe.scheduler.step
    pipe.scheduler.step = lambda model_output, *args, **kw: stepped.append(model_output) or step(model_output, *args, **kw)
    cond = []
    hook = pipe.unet.register_forward_hook(lambda module, args, output: cond.append(output.sample.chunk(2)[1] if output.sample.shape[0] == 2 else output.sample))
    try:
        rescaled = run(pipe, dummy_layout(), guidance_scale=3.0, guidance_rescale=1.0, num_inference_steps=4, guidance_interval=(0.5, 1.0), output_type="latent").frames
    finally:
        hook.remove()
        del pipe.scheduler.step
    # Steps 0-1 run the conditional branch alone (nothing to rescale); steps 2-3 are guided and rescaled.
    torch.testing.assert_close(stepped[0], cond[0])
    torch.testing.assert_close(stepped[1], cond[1])
    for guided, conditional in zip(stepped[2:], cond[2:]):
        assert abs(guided.std().item() - conditional.std().item()) < 1e-4 * conditional.std().item()
    plain = run(pipe, dummy_layout(), guidance_scale=3.0, num_inference_steps=4, guidance_interval=(0.5, 1.0), output_type="latent").frames
    assert not torch.allclose(rescaled, plain, atol=1e-5)
    with pytest.raises(ValueError, match=r"^guidance_rescale: must be in \[0, 1\] \(got -0.5\)"):
        run(pipe, dummy_layout(), guidance_scale=3.0, guidance_rescale=-0.5)


def test_autoguidance_is_refused_on_unet3d_models_with_one_line(pipe):
    from core.render import RenderSettings, resolve_controls

    assert resolve_controls(pipe, RenderSettings(autoguidance_scale=1.0))["guidance_scale"] == 4.0
    with pytest.raises(ValueError, match=r"^autoguidance_scale: needs a Wan model with a guiding model"):
        resolve_controls(pipe, RenderSettings(autoguidance_scale=2.0))


def test_default_guidance_interval_comes_from_the_saved_model(tmp_path):
    from core.render import RenderSettings

    pipe = Layout2VidPipeline(**get_dummy_components(), default_guidance_interval=[0.5, 1.0])
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = Layout2VidPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    kwargs = dict(guidance_scale=3.0, num_inference_steps=4, output_type="latent")
    torch.testing.assert_close(run(loaded, dummy_layout(), **kwargs).frames, run(loaded, dummy_layout(), guidance_interval=(0.5, 1.0), **kwargs).frames)
    assert not torch.allclose(run(loaded, dummy_layout(), **kwargs).frames, run(loaded, dummy_layout(), guidance_interval=(0.0, 1.0), **kwargs).frames)
    with pytest.raises(ValueError, match=r"guidance_interval\n.*must be \(start, end\) with 0 <= start <= end <= 1 \(got \(0.5, 1.5\)\)"):
        RenderSettings(guidance_interval=(0.5, 1.5))


def test_narrowed_adapter_keeps_the_highest_scored_feed_forward_units_and_nothing_else_changes():
    from core.models.layout import feed_forward_importance

    torch.manual_seed(0)
    wide = LayoutAdapter(block_dims=[8, 16], block_heads=[2, 2], grounding_dim=6, phrase_dim=5, gate_init=0.5, ff_mult=4).eval()
    x = torch.randn(2, 9, 8)
    # Score the units of block 0 from its own activity, after silencing ten of its output columns.
    with torch.no_grad():
        wide.fusers[0].ff.net[2].weight[:, :10] = 0
    with torch.no_grad(), feed_forward_importance(wide) as importance:
        wide.fusers[0].ff(x)
    assert importance[0].shape == (32,) and importance[1].shape == (64,)
    assert torch.all(importance[0][:10] == 0) and torch.all(importance[0][10:] > 0)
    assert torch.all(importance[1] == 0)  # block 1 never ran

    narrow = wide.narrowed(2, importance)
    assert narrow.config.ff_mult == 2 and narrow.fusers[0].ff.net[2].weight.shape == (8, 16)
    keep = importance[0].topk(16).indices
    dropped = torch.ones(32, dtype=torch.bool)
    dropped[keep] = False
    with torch.no_grad():  # the wide block with the dropped units' output columns zeroed is the narrow block
        reference = wide.fusers[0].ff.net[2].weight.clone()
        wide.fusers[0].ff.net[2].weight[:, dropped] = 0
        torch.testing.assert_close(narrow.fusers[0].ff(x), wide.fusers[0].ff(x))
        wide.fusers[0].ff.net[2].weight.copy_(reference)
    same = {k: v for k, v in narrow.state_dict().items() if ".ff." not in k}
    assert all(torch.equal(v, wide.state_dict()[k]) for k, v in same.items())
    # Full width keeps every unit: the same block.
    y = torch.randn(2, 9, 16)
    with torch.no_grad():
        torch.testing.assert_close(wide.narrowed(4, importance).fusers[1].ff(y), wide.fusers[1].ff(y))
    with pytest.raises(ValueError, match=r"ff_mult: must be in \[1, 4\] for an adapter with ff_mult 4 \(got 0\)"):
        wide.narrowed(0, importance)
    with pytest.raises(ValueError, match="importance: needs one"):
        wide.narrowed(2, importance[:1])
    with pytest.raises(ValueError, match="ff_mult 0"):
        with feed_forward_importance(LayoutAdapter(block_dims=[8], block_heads=[2], grounding_dim=6, phrase_dim=5, ff_mult=0)):
            pass


def test_adapter_keeps_unet_state_dict_stock(pipe):
    keys = pipe.unet.state_dict().keys()
    assert not any("fuser" in k for k in keys)
    assert len(spatial_transformer_blocks(pipe.unet)) == len(pipe.layout_adapter.fusers)


def test_callback_sees_every_step_and_can_interrupt(pipe):
    seen = []

    def callback(p, step, timestep, tensors):
        seen.append((step, tuple(tensors["latents"].shape)))
        if step == 1:
            p._interrupt = True
        return tensors

    out = run(pipe, dummy_layout(), num_inference_steps=4, callback_on_step_end=callback)
    assert out.interrupted and out.frames is None
    assert [s for s, _ in seen] == [0, 1]
    assert seen[0][1] == (1, 4, 4, 4, 4)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"guidance_scale": -1.0}, "guidance_scale"),
        ({"layout_alpha": 1.5}, "layout_alpha"),
        ({"height": 15}, "height"),
        ({"unconditional_layout": "empty"}, "unconditional_layout"),
    ],
)
def test_bad_arguments_name_the_field(pipe, kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}"):
        run(pipe, dummy_layout(), **kwargs)


def test_layout_shape_mismatch(pipe):
    with pytest.raises(ValueError, match="^layout"):
        run(pipe, dummy_layout(frames=3))


def test_save_load_round_trip(pipe, tmp_path):
    expected = run(pipe, dummy_layout()).frames
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = Layout2VidPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.layout_adapter, LayoutAdapter)
    np.testing.assert_array_equal(run(loaded, dummy_layout()).frames, expected)


def test_default_guidance_scale_comes_from_the_saved_model(tmp_path):
    from core.render import recommended_guidance_scale

    pipe = Layout2VidPipeline(**get_dummy_components(), default_guidance_scale=1.0)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path / "pipe")
    assert recommended_guidance_scale(tmp_path / "pipe") == 1.0
    loaded = Layout2VidPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    unset = run(loaded, dummy_layout(), output_type="latent").frames
    torch.testing.assert_close(unset, run(loaded, dummy_layout(), guidance_scale=1.0, output_type="latent").frames)
    assert not torch.allclose(unset, run(loaded, dummy_layout(), guidance_scale=4.0, output_type="latent").frames)
    assert recommended_guidance_scale(tmp_path) == 4.0  # no model_index.json: the library default


def test_entity_seed_noise_follows_the_box(pipe):
    layout = dummy_layout()
    latents = pipe.prepare_latents(4, 8, 8, torch.float32, "cpu", torch.Generator().manual_seed(0), layout)
    moved = dummy_layout(x_shift=0.5)
    moved_latents = pipe.prepare_latents(4, 8, 8, torch.float32, "cpu", torch.Generator().manual_seed(0), moved)
    # The same entity noise sits under the box wherever the box is (latent grid 4x4: cols 0-1 vs 2-3).
    torch.testing.assert_close(latents[0, :, :, 0:2, 0:2], moved_latents[0, :, :, 0:2, 2:4])
