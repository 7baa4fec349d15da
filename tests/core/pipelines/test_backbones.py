"""ModelScope-class backbones: tiny random components in the diffusers layout, saved by our pipeline and by
the stock TextToVideoSDPipeline, loaded through ``--model``, with an adapter file or training-free guidance."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import TextToVideoSDPipeline

from core.cli import main as cli_main
from core.export import read_mp4
from core.pipelines.backbones import AdapterMismatchError, adapter_for, load_adapter, save_adapter
from core.pipelines.layout2vid import Layout2VidPipeline
from core.plan import save_plan
from core.planner.rules import plan_with_rules
from core.render import RenderSettings, load_pipeline, render_plan
from tests.core.pipelines.tiny_modelscope import save_stock, tiny_components


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("backbones")
    parts = tiny_components(tmp)
    stock = save_stock(tmp / "stock", parts)
    ours = tmp / "ours"
    adapter = adapter_for(parts["unet"], parts["text_encoder"], gate_init=0.8)
    Layout2VidPipeline(**parts, layout_adapter=adapter, max_prompt_tokens=77).save_pretrained(ours)
    torch.manual_seed(1)
    loose = adapter_for(parts["unet"], parts["text_encoder"], gate_init=0.8)
    adapter_file = save_adapter(loose, tmp / "layout2vid.safetensors")
    plan = plan_with_rules("A red ball rolls from left to right across the grass.", num_frames=8)
    save_plan(plan, tmp / "plan.json")
    return {"tmp": tmp, "stock": stock, "ours": ours, "adapter": adapter_file, "plan": plan}


def test_stock_folder_is_the_stock_layout(folders):
    index = json.loads((folders["stock"] / "model_index.json").read_text())
    assert index["_class_name"] == TextToVideoSDPipeline.__name__
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]


@pytest.mark.parametrize("which", ["stock", "ours"])
def test_both_layouts_render_an_mp4_through_the_cli(folders, which, capsys):
    out = folders["tmp"] / f"{which}.mp4"
    argv = ["render", "--plan", str(folders["tmp"] / "plan.json"), "--model", str(folders[which]), "--steps", "3", "--out", str(out)]
    if which == "stock":
        argv += ["--adapter", str(folders["adapter"])]
    assert cli_main(argv) == 0, capsys.readouterr().err
    frames, _ = read_mp4(out)
    assert frames.shape == (8, 16, 16, 3)


def test_backbone_defaults_dpm_solver_and_clip_prompt_length(folders):
    pipe = load_pipeline(folders["stock"])
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert pipe.config.max_prompt_tokens == 77
    assert pipe.layout_adapter is None


def _render(pipe, plan, **settings):
    return render_plan(pipe, plan, RenderSettings(num_inference_steps=3, **settings))


def test_adapter_and_guidance_each_change_the_video(folders):
    plan = folders["plan"]
    plain = load_pipeline(folders["stock"])
    plain.set_progress_bar_config(disable=True)
    text_only = _render(plain, plan, layout_control="none")
    guided = _render(plain, plan, layout_control="guidance", box_guidance_alpha=1.0)
    assert np.abs(guided.astype(int) - text_only.astype(int)).mean() > 0.5
    with_adapter = load_pipeline(folders["stock"], adapter=folders["adapter"])
    with_adapter.set_progress_bar_config(disable=True)
    grounded = _render(with_adapter, plan, layout_control="adapter", layout_alpha=1.0)
    assert np.abs(grounded.astype(int) - text_only.astype(int)).mean() > 0.5


def test_adapter_round_trip_keeps_every_weight(folders):
    pipe = load_pipeline(folders["stock"])
    loaded = load_adapter(folders["adapter"], pipe.unet, pipe.text_encoder)
    torch.manual_seed(1)
    original = adapter_for(pipe.unet, pipe.text_encoder, gate_init=0.8)
    for key, value in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_adapter_key_mismatch_lists_the_keys(folders):
    from safetensors.torch import load_file, save_file

    state = load_file(folders["adapter"])
    dropped = sorted(state)[0]
    del state[dropped]
    state["fusers.99.alpha_attn"] = torch.zeros(1)
    bad = folders["tmp"] / "bad.safetensors"
    save_file(state, bad)
    pipe = load_pipeline(folders["stock"])
    with pytest.raises(AdapterMismatchError) as info:
        load_adapter(bad, pipe.unet, pipe.text_encoder)
    message = str(info.value)
    assert dropped in message and "fusers.99.alpha_attn" in message
    assert "\n" not in message


def test_adapter_mismatch_is_one_cli_error_line(folders, capsys):
    bad = folders["tmp"] / "wrong-shape.safetensors"
    from safetensors.torch import load_file, save_file

    state = load_file(folders["adapter"])
    key = next(k for k in sorted(state) if k.endswith("linear.weight"))
    state[key] = torch.zeros(3, 3)
    save_file(state, bad)
    out = folders["tmp"] / "never.mp4"
    code = cli_main(["render", "--plan", str(folders["tmp"] / "plan.json"), "--model", str(folders["stock"]), "--adapter", str(bad), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: adapter:") and key in err[0]
    assert not out.exists()


@pytest.mark.parametrize(
    ("options", "field"),
    [(["--device", "cuda"], "device"), (["--device", "tpu"], "device"), (["--dtype", "bf16"], "dtype"), (["--model", "/nonexistent/model"], "model")],
)
def test_wrong_device_dtype_or_model_is_a_clear_error(folders, options, field, capsys):
    if field == "device" and options[1] == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = folders["tmp"] / "never.mp4"
    code = cli_main(["render", "--plan", str(folders["tmp"] / "plan.json"), "--out", str(out), *options])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {field}:"), err
    assert not out.exists()


def test_the_studio_workspace_renders_with_a_backbone_and_adapter(folders):
    from core.project.workspace import Workspace

    workspace = Workspace(folders["tmp"] / "studio-data", model=str(folders["stock"]), adapter=folders["adapter"])
    project = workspace.create_project(folders["plan"])
    record = workspace.render(project, RenderSettings(num_inference_steps=2))
    frames, _ = read_mp4(record.video)
    assert frames.shape == (8, 16, 16, 3) and Path(record.plan).exists()
    assert workspace.renders(project) == [record]
    assert workspace.pipeline().layout_adapter is not None
