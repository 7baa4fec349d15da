"""Wan 2.x backbones: tiny random components saved by the stock WanPipeline and by ours, loaded through
``--model``; layout off equals the stock output; the box mask moves an entity's cross-attention into its box;
a layout adapter file loads with ``--adapter`` and leaves the output alone while its gates are closed."""

import json

import numpy as np
import pytest
import torch
from diffusers import WanPipeline

from core.cli import main as cli_main
from core.export import read_mp4
from core.models.wan_adapter import WanLayoutAdapter
from core.models.wan_attention import CrossAttentionControl
from core.pipelines.backbones import AdapterMismatchError, model_family, save_adapter, wan_adapter_for
from core.pipelines.guidance import phrase_token_weights
from core.pipelines.layout2vid import LayoutConditioning
from core.pipelines.wan import WanLayoutPipeline, box_cells, latent_boxes, latent_frame_sources, video_frames
from core.plan import save_plan
from core.planner.rules import plan_with_rules
from core.render import RenderSettings, load_pipeline, render_plan, resolve_controls
from tests.core.pipelines.tiny_wan import save_stock, tiny_components

PROMPT = "the grass: a red ball and a blue cube"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wan")
    parts = tiny_components()
    stock = save_stock(tmp / "stock", parts)
    ours = tmp / "ours"
    WanLayoutPipeline(**parts, default_height=32, default_width=32).save_pretrained(ours)
    plan = plan_with_rules("A red ball rolls from left to right across the grass.", num_frames=8)
    save_plan(plan, tmp / "plan.json")
    return {"tmp": tmp, "stock": stock, "ours": ours, "plan": plan}


@pytest.fixture(scope="module")
def pipes(folders):
    stock = WanPipeline.from_pretrained(folders["stock"])
    ours = load_pipeline(folders["stock"])
    for pipe in (stock, ours):
        pipe.set_progress_bar_config(disable=True)
    return stock, ours


def two_entity_layout(frames: int, *, seeds=None, frame_prompts=None) -> LayoutConditioning:
    boxes = torch.tensor([[0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 1.0, 1.0]]).expand(frames, 2, 4).clone()
    return LayoutConditioning(
        phrases=[["red ball", "blue cube"]] * frames, boxes=boxes, masks=torch.ones(frames, 2), entity_seeds=seeds, frame_prompts=frame_prompts
    )


def test_family_is_read_from_model_index(folders):
    for name, family in (("stock", "wan"), ("ours", "wan")):
        index = json.loads((folders[name] / "model_index.json").read_text())
        assert model_family(index) == family
    assert json.loads((folders["stock"] / "model_index.json").read_text())["_class_name"] == "WanPipeline"
    assert model_family({"_class_name": "TextToVideoSDPipeline"}) == "unet3d"
    assert model_family({"_class_name": "Layout2VidPipeline"}) == "layout2vid"


def test_plan_frames_map_to_4k_plus_1_video_frames_and_latent_frames():
    assert [video_frames(f) for f in (1, 2, 5, 8, 9, 81)] == [1, 5, 5, 9, 9, 81]
    assert latent_frame_sources(8) == [[0], [1, 2, 3, 4], [5, 6, 7]]
    assert latent_frame_sources(9) == [[0], [1, 2, 3, 4], [5, 6, 7, 8]]
    layout = LayoutConditioning(
        phrases=[["ball"]] * 5, boxes=torch.tensor([[[0.1 * f, 0.2, 0.1 * f + 0.3, 0.6]] for f in range(5)]), masks=torch.tensor([[1.0], [1.0], [0.0], [1.0], [1.0]])
    )
    boxes, masks = latent_boxes(layout, latent_frame_sources(5))
    assert torch.allclose(boxes[1, 0], torch.tensor([0.1, 0.2, 0.7, 0.6]))  # union of frames 1, 3, 4 (2 is off screen)
    assert masks.tolist() == [[1.0], [1.0]]
    assert box_cells(torch.tensor([0.0, 0.0, 0.5, 1.0]), 2, 4).tolist() == [[True, True, False, False]] * 2
    assert box_cells(torch.tensor([0.6, 0.6, 0.62, 0.62]), 4, 4).sum() == 1  # a small box keeps its centre cell


def test_layout_off_equals_stock_wan_pipeline(pipes):
    stock, ours = pipes
    kwargs = {"num_frames": 9, "height": 32, "width": 32, "num_inference_steps": 2, "guidance_scale": 5.0}
    expected = stock(PROMPT, generator=torch.Generator().manual_seed(3), output_type="latent", **kwargs).frames
    got = ours(PROMPT, generator=torch.Generator().manual_seed(3), layout_alpha=0.0, output_type="latent", **kwargs).frames
    assert torch.allclose(got, expected, atol=1e-6, rtol=0)
    # Boxes with layout_alpha 0 (no seeds, no frame prompts) change nothing either.
    boxed = ours(PROMPT, two_entity_layout(9), generator=torch.Generator().manual_seed(3), layout_alpha=0.0, output_type="latent", **kwargs).frames
    assert torch.allclose(boxed, expected, atol=1e-6, rtol=0)
    frames = ours(PROMPT, generator=torch.Generator().manual_seed(3), layout_alpha=0.0, **kwargs).frames
    reference = (stock(PROMPT, generator=torch.Generator().manual_seed(3), output_type="np", **kwargs).frames[0] * 255).round()
    assert frames.shape == (9, 32, 32, 3) and frames.dtype == np.uint8
    assert np.abs(frames.astype(np.float64) - reference).max() <= 1


def test_same_prompt_on_every_frame_matches_one_prompt(pipes):
    _, ours = pipes
    kwargs = {"num_frames": 8, "height": 32, "width": 32, "num_inference_steps": 2, "layout_alpha": 0.0, "output_type": "latent"}
    single = ours(PROMPT, generator=torch.Generator().manual_seed(4), **kwargs).frames
    per_frame = ours(PROMPT, two_entity_layout(8, frame_prompts=[PROMPT] * 8), generator=torch.Generator().manual_seed(4), **kwargs).frames
    assert torch.allclose(per_frame, single, atol=1e-4)
    other = ours(PROMPT, two_entity_layout(8, frame_prompts=[PROMPT] * 4 + ["a green tree"] * 4), generator=torch.Generator().manual_seed(4), **kwargs).frames
    assert not torch.allclose(other, single, atol=1e-3)


def entity_mass_in_box(records, allowed_cells: torch.Tensor, tokens: torch.Tensor) -> float:
    """The share of the entity tokens' attention that comes from video tokens inside its box."""
    inside = total = 0.0
    for probs in records:  # (1, S, T)
        mass = probs[0][:, tokens].sum(-1)  # (S,)
        inside += float(mass[allowed_cells].sum())
        total += float(mass.sum())
    return inside / total


def test_box_control_moves_cross_attention_mass_into_the_box(pipes):
    _, pipe = pipes
    height = width = 64
    layout = two_entity_layout(9)
    sources = latent_frame_sources(9)
    grid = pipe.token_grid(len(sources), height, width)  # (3, 4, 4)
    prompts = [PROMPT] * len(sources)
    control = pipe.box_control(layout, prompts, sources, grid, groups=1, max_sequence_length=512)
    embeds = pipe.encode_prompt(PROMPT, do_classifier_free_guidance=False, max_sequence_length=512)[0]
    latents = torch.randn(1, 16, *grid[:1], height // 8, width // 8, generator=torch.Generator().manual_seed(0))
    tokens = phrase_token_weights(pipe.tokenizer, [PROMPT], [["red ball", "blue cube"]], max_length=512)[0, 0] > 0
    cells = box_cells(torch.tensor([0.0, 0.0, 0.5, 1.0]), grid[1], grid[2]).flatten().repeat(grid[0])  # (L * h * w,)
    masses = {}
    for name, used in (("off", CrossAttentionControl()), ("on", control)):
        with pipe.control_state.use(used), pipe.control_state.recording() as records:
            pipe.transformer(hidden_states=latents, timestep=torch.tensor([500.0]), encoder_hidden_states=embeds, return_dict=False)
        assert len(records) == 2  # one per block
        masses[name] = entity_mass_in_box(records, cells, tokens)
    print(f"red ball cross-attention mass inside its box: off {masses['off']:.3f}, on {masses['on']:.3f}")
    assert masses["on"] > masses["off"]
    assert masses["on"] > 0.99 and masses["off"] < 0.9


def test_box_control_runs_for_the_first_layout_alpha_of_the_steps(pipes):
    _, pipe = pipes
    kwargs = {"num_frames": 9, "height": 32, "width": 32, "num_inference_steps": 4, "guidance_scale": 1.0, "output_type": "latent"}
    with pipe.control_state.recording() as records:
        controlled = pipe(PROMPT, two_entity_layout(9), layout_alpha=0.5, generator=torch.Generator().manual_seed(5), **kwargs).frames
    assert len(records) == 2 * 2  # 2 controlled steps of 4, 2 blocks each
    free = pipe(PROMPT, two_entity_layout(9), layout_alpha=0.0, generator=torch.Generator().manual_seed(5), **kwargs).frames
    assert not torch.allclose(controlled, free, atol=1e-4)


def test_entity_noise_is_placed_under_its_boxes(pipes):
    _, pipe = pipes
    layout = LayoutConditioning(phrases=[["ball"]] * 9, boxes=torch.tensor([[[0.0, 0.0, 0.5, 0.5]]]).expand(9, 1, 4), masks=torch.ones(9, 1), entity_seeds=[7])
    latents = pipe.paste_entity_noise(torch.zeros(1, 16, 3, 8, 8), layout, latent_frame_sources(9))
    canvas = torch.randn((16, 8, 8), generator=torch.Generator().manual_seed(7))
    for j in range(3):
        assert torch.equal(latents[0, :, j, :4, :4], canvas[:, :4, :4])
    assert latents[0, :, :, 4:, :].abs().sum() == 0


def test_stock_folder_loads_as_wan_with_its_own_defaults(folders):
    pipe = load_pipeline(folders["stock"])
    assert isinstance(pipe, WanLayoutPipeline)
    assert type(pipe.scheduler).__name__ == "UniPCMultistepScheduler"
    controls = resolve_controls(pipe, RenderSettings(guidance_scale=None, layout_alpha=None))
    assert controls["guidance_scale"] == 5.0 and controls["layout_alpha"] == 0.3 and controls["box_guidance"] is None
    with pytest.raises(ValueError, match="adapter"):
        load_pipeline(folders["stock"], adapter=folders["tmp"] / "plan.json")
    with pytest.raises(ValueError, match="scheduler"):
        load_pipeline(folders["stock"], scheduler="ddim")


def test_plan_renders_through_the_cli_and_render_plan(folders, capsys):
    out = folders["tmp"] / "wan.mp4"
    argv = ["render", "--plan", str(folders["tmp"] / "plan.json"), "--model", str(folders["ours"]), "--steps", "2", "--out", str(out)]
    assert cli_main(argv) == 0, capsys.readouterr().err
    frames, _ = read_mp4(out)
    assert frames.shape == (8, 32, 32, 3)
    pipe = load_pipeline(folders["stock"])
    pipe.register_to_config(default_height=32, default_width=32)
    steps = []
    video = render_plan(pipe, folders["plan"], RenderSettings(num_inference_steps=2), on_progress=lambda p: steps.append(p.step))
    assert video.shape == (8, 32, 32, 3) and steps == [1, 2]


def test_adapter_with_closed_gates_keeps_the_stock_output_and_open_gates_change_it(folders, pipes):
    stock, _ = pipes
    pipe = load_pipeline(folders["stock"])
    pipe.set_progress_bar_config(disable=True)
    kwargs = {"num_frames": 9, "height": 32, "width": 32, "num_inference_steps": 2, "output_type": "latent"}
    expected = stock(PROMPT, generator=torch.Generator().manual_seed(6), **kwargs).frames
    for gate, same in ((0.0, True), (0.5, False)):
        pipe.set_layout_adapter(wan_adapter_for(pipe, gate_init=gate))
        got = pipe(PROMPT, two_entity_layout(9), layout_alpha=1.0, generator=torch.Generator().manual_seed(6), **kwargs).frames
        assert torch.allclose(got, expected, atol=1e-6) == same
    pipe.set_layout_adapter(None)
    assert torch.allclose(pipe(PROMPT, two_entity_layout(9), layout_alpha=0.0, generator=torch.Generator().manual_seed(6), **kwargs).frames, expected, atol=1e-6)


def test_adapter_file_loads_with_model_and_renders_through_the_cli(folders, capsys):
    pipe = load_pipeline(folders["ours"])
    torch.manual_seed(2)
    adapter = wan_adapter_for(pipe, gate_init=0.5)
    path = save_adapter(adapter, folders["tmp"] / "wan-adapter.safetensors")
    loaded = load_pipeline(folders["ours"], adapter=path)
    assert all(torch.equal(a, b) for a, b in zip(loaded.layout_adapter.state_dict().values(), adapter.state_dict().values()))
    assert resolve_controls(loaded, RenderSettings())["layout_mode"] == "adapter"
    assert resolve_controls(loaded, RenderSettings(layout_control="guidance"))["layout_mode"] == "mask"
    with pytest.raises(ValueError, match="adapter"):
        resolve_controls(pipe, RenderSettings(layout_control="adapter"))
    out = folders["tmp"] / "wan-adapter.mp4"
    argv = ["render", "--plan", str(folders["tmp"] / "plan.json"), "--model", str(folders["ours"]), "--adapter", str(path), "--steps", "2", "--out", str(out)]
    assert cli_main(argv) == 0, capsys.readouterr().err
    assert read_mp4(out)[0].shape == (8, 32, 32, 3)
    wrong = save_adapter(WanLayoutAdapter(dim=48, heads=2, num_blocks=2, phrase_dim=32), folders["tmp"] / "wrong.safetensors")
    with pytest.raises(AdapterMismatchError, match="shape mismatches"):
        load_pipeline(folders["ours"], adapter=wrong)


def _coco_images(folder, count=6):
    """Toy-world images with known boxes and a COCO instances file: (images folder, JSON path)."""
    from PIL import Image

    from core.toyworld.world import ToyObject, render_frame

    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        x0, y0 = rng.uniform(0.05, 0.45, size=2)
        box = (x0, y0, x0 + 0.45, y0 + 0.45)
        Image.fromarray(render_frame("grass", [ToyObject(["ball", "square"][i % 2], "red", box)], size=32)).save(folder / "images" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "width": 32, "height": 32})
        annotations.append({"id": i, "image_id": i, "category_id": i % 2, "bbox": [box[0] * 32, box[1] * 32, 0.45 * 32, 0.45 * 32]})
    coco = {"images": images, "annotations": annotations, "categories": [{"id": 0, "name": "ball"}, {"id": 1, "name": "square"}]}
    (folder / "coco.json").write_text(json.dumps(coco))
    return folder / "images", folder / "coco.json"


def test_wan_adapter_training_lowers_the_flow_loss_and_the_command_writes_a_loadable_file(folders, capsys):
    from core.training.adapter import encode_examples_wan, flow_matching_loss, grounding_examples, load_coco, train_wan_adapter
    from core.training.cli import main as training_main
    from core.training.config import AdapterTrainConfig

    images, annotations = _coco_images(folders["tmp"] / "coco")
    pipe = load_pipeline(folders["ours"])
    examples = grounding_examples(load_coco(annotations), images, size=(32, 32), max_boxes=2)
    data = encode_examples_wan(pipe, examples, max_boxes=2)
    assert data["latents"].shape == (6, 16, 1, 4, 4)
    generator = torch.Generator().manual_seed(5)
    noise, sigmas = torch.randn(data["latents"].shape, generator=generator), torch.full((6,), 0.5)
    before = wan_adapter_for(pipe, gate_init=0.0)
    pipe.set_layout_adapter(before)
    with torch.no_grad():
        loss_before = float(flow_matching_loss(pipe, before, data, noise, sigmas))
    adapter, losses = train_wan_adapter(pipe, data, AdapterTrainConfig(steps=60, batch=6, lr=3e-3, drop_grounding=0.0))
    assert len(losses) == 60
    with torch.no_grad():
        loss_after = float(flow_matching_loss(pipe, adapter, data, noise, sigmas))
    assert loss_after < 0.95 * loss_before, (loss_before, loss_after)
    print(f"flow-matching loss on a fixed batch: {loss_before:.4f} before, {loss_after:.4f} after 60 steps")
    out = folders["tmp"] / "trained-wan.safetensors"
    argv = ["adapter", "--model", str(folders["ours"]), "--images", str(images), "--annotations", str(annotations), "--steps", "2", "--out", str(out)]
    assert training_main(argv) == 0, capsys.readouterr().err
    assert load_pipeline(folders["ours"], adapter=out).layout_adapter is not None


def test_region_bias_ties_an_entitys_tokens_and_is_off_by_default(pipes):
    from core.models.wan_attention import region_self_bias

    regions = torch.tensor([[True, True, False, False], [False, False, False, True]])
    bias = region_self_bias(regions, 2.0)[0, 0]
    assert bias.tolist() == [[2, 2, 0, 0], [2, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 2]]
    _, pipe = pipes
    kwargs = {"num_frames": 9, "height": 32, "width": 32, "num_inference_steps": 2, "guidance_scale": 1.0, "output_type": "latent"}
    mask_only = pipe(PROMPT, two_entity_layout(9), layout_alpha=1.0, generator=torch.Generator().manual_seed(8), **kwargs).frames
    biased = pipe(PROMPT, two_entity_layout(9), layout_alpha=1.0, region_bias=3.0, generator=torch.Generator().manual_seed(8), **kwargs).frames
    assert not torch.allclose(biased, mask_only, atol=1e-4)
    assert pipe.control_state.self_bias is None
    grid = pipe.token_grid(3, 32, 32)
    assert pipe.token_regions(two_entity_layout(9), latent_frame_sources(9), grid).sum(1).tolist() == [6, 6]  # left / right column of 2x2, 3 frames
    with pytest.raises(ValueError, match="region_bias"):
        pipe(PROMPT, two_entity_layout(9), region_bias=-1.0, **kwargs)


def test_energy_guidance_steps_lower_the_box_energy_and_change_the_render(pipes):
    from core.pipelines.guidance import BoxGuidance, guided_latents

    _, pipe = pipes
    layout = two_entity_layout(9)
    sources = latent_frame_sources(9)
    grid = pipe.token_grid(len(sources), 32, 32)
    embeds = pipe.encode_prompt(PROMPT, do_classifier_free_guidance=False, max_sequence_length=512)[0]
    energy = pipe.box_energy(BoxGuidance(alpha=0.5, scale=2.0), layout, [PROMPT] * len(sources), sources, grid, groups=1, steps=4,
                             prompt_embeds=embeds, max_sequence_length=512)
    assert energy.guided_steps == 2
    latents = torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    t = torch.tensor(600.0)
    before = float(energy.energy(latents, t).detach())
    after = float(energy.energy(guided_latents(latents, lambda x: energy.energy(x, t), scale=2.0)[0], t).detach())
    print(f"box energy before {before:.4f}, after one guidance step {after:.4f}")
    assert 0 < after < before
    assert torch.equal(energy(3, t, latents), latents)  # past the guided steps: unchanged

    kwargs = {"num_frames": 9, "height": 32, "width": 32, "num_inference_steps": 4, "guidance_scale": 1.0, "layout_alpha": 0.0, "output_type": "latent"}
    plain = pipe(PROMPT, layout, generator=torch.Generator().manual_seed(5), **kwargs).frames
    guided = pipe(PROMPT, layout, box_guidance=BoxGuidance(alpha=0.5, scale=2.0), generator=torch.Generator().manual_seed(5), **kwargs).frames
    assert not torch.allclose(plain, guided, atol=1e-4)
    with pytest.raises(ValueError, match="^box_guidance.method: must be 'energy' on Wan"):
        pipe(PROMPT, layout, box_guidance=BoxGuidance(method="mask"), **kwargs)


def test_render_settings_choose_the_mask_by_default_and_energy_on_request(pipes):
    _, pipe = pipes
    default = resolve_controls(pipe, RenderSettings(layout_control="guidance"))
    assert default["layout_mode"] == "mask" and default["box_guidance"] is None and default["layout_alpha"] > 0
    energy = resolve_controls(pipe, RenderSettings(layout_control="guidance", box_guidance_method="energy", box_guidance_alpha=0.4))
    assert energy["layout_alpha"] == 0.0 and energy["box_guidance"].method == "energy" and energy["box_guidance"].alpha == 0.4


def test_group_offload_renders_what_the_pipeline_renders_in_place(folders, pipes):
    from core.render import apply_offload

    _, pipe = pipes
    kwargs = {"num_frames": 9, "height": 32, "width": 32, "num_inference_steps": 2, "output_type": "latent"}
    expected = pipe(PROMPT, two_entity_layout(9), generator=torch.Generator().manual_seed(6), **kwargs).frames
    offloaded = load_pipeline(folders["stock"])
    offloaded.set_progress_bar_config(disable=True)
    apply_offload(offloaded, "group", "cpu")  # the hooks a GPU gets, with the CPU as both homes
    assert any(hasattr(m, "_diffusers_hook") for m in offloaded.transformer.modules())
    got = offloaded(PROMPT, two_entity_layout(9), generator=torch.Generator().manual_seed(6), **kwargs).frames
    assert torch.allclose(got, expected, atol=1e-6)
    with pytest.raises(ValueError, match="^cpu_offload: must be one of model, group"):
        load_pipeline(folders["stock"], cpu_offload="disk")
    with pytest.raises(ValueError, match="^cpu_offload: needs a cuda device"):
        load_pipeline(folders["stock"], cpu_offload="group")


def test_guidance_rescale_matches_the_guided_predictions_spread_to_the_conditional_ones(pipes):
    """Lin et al. 2024, Eqs. 15-16: at phi 1 every guided step's prediction has the conditional
    prediction's standard deviation; at 0 (the default) it is plain guidance, wider than it."""
    _, pipe = pipes
    kwargs = {"num_frames": 9, "height": 32, "width": 32, "num_inference_steps": 3, "guidance_scale": 4.0, "output_type": "latent"}

    def spreads(**extra):
        """(std of the prediction the scheduler steps with, std of the conditional one) per step."""
        conditional, stepped = [], []
        hook = pipe.transformer.register_forward_hook(lambda module, args, output: conditional.append(output[0]) if len(conditional) == len(stepped) else None)
        step = pipe.scheduler.step
        pipe.scheduler.step = lambda model_output, *args, **kw: stepped.append(model_output) or step(model_output, *args, **kw)
        try:
            latents = pipe(PROMPT, two_entity_layout(9), generator=torch.Generator().manual_seed(3), **kwargs, **extra).frames
        finally:
            hook.remove()
            del pipe.scheduler.step
        assert len(stepped) == 3
        return latents, [(s.std().item(), c.std().item()) for s, c in zip(stepped, conditional)]

    plain, plain_spreads = spreads()
    torch.testing.assert_close(spreads(guidance_rescale=0.0)[0], plain, rtol=0, atol=0)
    assert all(guided > cond for guided, cond in plain_spreads)
    rescaled, rescaled_spreads = spreads(guidance_rescale=1.0)
    assert all(abs(guided - cond) < 1e-4 * cond for guided, cond in rescaled_spreads)
    assert not torch.allclose(rescaled, plain, atol=1e-4)
    with pytest.raises(ValueError, match=r"^guidance_rescale: must be in \[0, 1\] \(got 1.5\)"):
        pipe(PROMPT, two_entity_layout(9), guidance_rescale=1.5, **kwargs)


def test_autoguidance_adds_the_push_away_from_the_guiding_model_which_loads_from_the_model_folder(folders, capsys):
    """Karras et al. 2024, Eq. 2: each step's prediction gains (w_ag - 1) * (cond - guide) on top of
    classifier-free guidance; a guide with the model's own weights adds nothing; the guiding model
    is the folder's guidance_model/, and the folder's model_index can make it the default."""
    import shutil

    from diffusers import WanTransformer3DModel

    folder = folders["tmp"] / "with-guide"
    shutil.copytree(folders["ours"], folder)
    load_pipeline(folders["ours"]).transformer.save_pretrained(folder / "guidance_model" / "transformer")
    pipe = load_pipeline(folder)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.guidance_model is not None and load_pipeline(folders["ours"]).guidance_model is None
    kwargs = {"num_frames": 9, "height": 32, "width": 32, "num_inference_steps": 2, "guidance_scale": 3.0, "output_type": "latent"}

    def render(**extra):
        return pipe(PROMPT, two_entity_layout(9), generator=torch.Generator().manual_seed(4), **kwargs, **extra).frames

    plain = render(autoguidance_scale=1.0)
    torch.testing.assert_close(render(), plain, rtol=0, atol=0)  # no default in the folder: off
    torch.testing.assert_close(render(autoguidance_scale=3.0), plain)  # the same weights: nothing to push from

    with torch.no_grad():  # a weaker guide
        for weight in pipe.guidance_model.transformer.parameters():
            weight.mul_(0.8)
    main_out, guide_out, stepped = [], [], []
    hooks = [
        pipe.transformer.register_forward_hook(lambda module, args, output: main_out.append(output[0])),
        pipe.guidance_model.transformer.register_forward_hook(lambda module, args, output: guide_out.append(output[0])),
    ]
    step = pipe.scheduler.step
    pipe.scheduler.step = lambda model_output, *args, **kw: stepped.append(model_output) or step(model_output, *args, **kw)
    try:
        pushed = render(autoguidance_scale=3.0)
    finally:
        for hook in hooks:
            hook.remove()
        del pipe.scheduler.step
    assert not torch.allclose(pushed, plain, atol=1e-4)
    assert len(main_out) == 4 and len(guide_out) == 2 and len(stepped) == 2
    for i in range(2):
        cond, uncond, guide = main_out[2 * i], main_out[2 * i + 1], guide_out[i]
        torch.testing.assert_close(stepped[i], uncond + 3.0 * (cond - uncond) + 2.0 * (cond - guide))

    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "default_autoguidance_scale": 3.0}))
    by_default = load_pipeline(folder)
    by_default.set_progress_bar_config(disable=True)
    with torch.no_grad():
        for weight in by_default.guidance_model.transformer.parameters():
            weight.mul_(0.8)
    torch.testing.assert_close(by_default(PROMPT, two_entity_layout(9), generator=torch.Generator().manual_seed(4), **kwargs).frames, pushed)

    out = folders["tmp"] / "autoguided.mp4"
    argv = ["render", "--plan", str(folders["tmp"] / "plan.json"), "--model", str(folder), "--autoguidance-scale", "2", "--steps", "2", "--out", str(out)]
    assert cli_main(argv) == 0, capsys.readouterr().err
    assert read_mp4(out)[0].shape == (8, 32, 32, 3)
    with pytest.raises(ValueError, match=r"^autoguidance_scale: above 1 needs a guiding model"):
        load_pipeline(folders["ours"])(PROMPT, two_entity_layout(9), autoguidance_scale=2.0, **kwargs)
    with pytest.raises(ValueError, match=r"^autoguidance_scale: must be in \[1, 10\] \(got 0.5\)"):
        render(autoguidance_scale=0.5)
    config = {**pipe.transformer.config, "num_attention_heads": 3}
    WanTransformer3DModel.from_config(config).save_pretrained(folder / "guidance_model" / "transformer")
    with pytest.raises(ValueError, match=r"^guidance_model: .* does not match the model's transformer"):
        load_pipeline(folder)
