"""The graph stage: its moving average, pruning to narrower widths, box-masked grounding, and the
exports of each."""

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from core.models.layout import LayoutAdapter
from core.models.unet import PrunedUNet3DConditionModel
from core.pipelines.layout2vid import LayoutConditioning
from core.render import load_pipeline
from core.training.cli import main
from core.training.config import GraphTrainConfig
from core.training.graph import train_graph


def _renders(pipe, phrases: list[str], boxes: list[list[float]]) -> bool:
    """Whether ``pipe`` renders a two-frame, two-step clip of these entities at 64x64."""
    layout = LayoutConditioning(boxes=torch.tensor([boxes]).repeat(2, 1, 1), masks=torch.ones(2, len(phrases)), phrases=[phrases] * 2)
    frames = pipe(f"a {' and a '.join(phrases)} on the grass", layout=layout, num_frames=2, num_inference_steps=2, output_type="np").frames
    return frames.shape == (2, 64, 64, 3)


def test_graph_stage_moving_average_starts_on_resume_continues_and_export_writes_it(tmp_path, graph_run, capsys):
    from safetensors.torch import load_file

    cfg, data = graph_run
    train_graph(tmp_path, cfg, data, GraphTrainConfig(steps=1))
    capsys.readouterr()
    # A checkpoint without an average: a clear error, and nothing written.
    assert main(["export", "--run", str(tmp_path), "--to", str(tmp_path / "ema"), "--ema"]) == 2
    assert capsys.readouterr().err.strip() == f"error: --ema: {tmp_path / 'graph_ckpt.pt'} keeps no moving average (train the graph stage with --ema-decay)"
    assert not (tmp_path / "ema").exists()

    train_graph(tmp_path, cfg, data, GraphTrainConfig(steps=2, ema_decay=0.99))  # the average starts from the resumed weights
    assert "EMA (decay 0.99) starts from the weights at step 1" in capsys.readouterr().out
    train_graph(tmp_path, cfg, data, GraphTrainConfig(steps=3, ema_decay=0.99))  # and is resumed, not restarted
    assert torch.load(tmp_path / "graph_ckpt.pt", weights_only=False)["ema"]["optimization_step"] == 2

    assert main(["export", "--run", str(tmp_path), "--to", str(tmp_path / "last")]) == 0
    assert main(["export", "--run", str(tmp_path), "--to", str(tmp_path / "ema"), "--ema"]) == 0
    last = load_file(tmp_path / "last" / "unet" / "diffusion_pytorch_model.safetensors")
    ema = load_file(tmp_path / "ema" / "unet" / "diffusion_pytorch_model.safetensors")
    assert last.keys() == ema.keys()
    assert any(not torch.equal(last[k], ema[k]) for k in last)


def test_graph_stage_prunes_the_adapter_feed_forward_when_the_run_asks_for_a_narrower_one(tmp_path, graph_run, capsys):
    cfg, data = graph_run
    wide = LayoutAdapter.load_config(Path(cfg.init_from) / "layout_adapter")["ff_mult"]  # the shipped model's width
    narrow = wide // 2
    with pytest.raises(ValueError, match=rf"adapter_ff_mult: must be in \[1, {wide}\] to start from .*layout2vid-toy \(got 0\)"):
        train_graph(tmp_path, replace(cfg, adapter_ff_mult=0), data, GraphTrainConfig(steps=1))
    assert not (tmp_path / "graph_ckpt.pt").exists()
    cfg = replace(cfg, adapter_ff_mult=narrow)
    (tmp_path / "config.json").write_text(json.dumps(asdict(cfg)))
    train_graph(tmp_path, cfg, data, GraphTrainConfig(steps=1))
    assert f"adapter feed-forward pruned from {wide}x to {narrow}x the block width" in capsys.readouterr().out
    assert main(["export", "--run", str(tmp_path), "--to", str(tmp_path / "narrow")]) == 0
    pipe = load_pipeline(tmp_path / "narrow")
    assert pipe.layout_adapter.config.ff_mult == narrow
    dims = pipe.layout_adapter.config.block_dims
    assert [f.ff.net[2].weight.shape for f in pipe.layout_adapter.fusers] == [(d, narrow * d) for d in dims]
    # The narrow model renders and the run resumes at its own width.
    assert _renders(pipe, ["red ball"], [[0.1, 0.1, 0.5, 0.5]])
    train_graph(tmp_path, cfg, data, GraphTrainConfig(steps=2))
    assert torch.load(tmp_path / "graph_ckpt.pt", weights_only=False)["step"] == 2


def test_graph_stage_prunes_the_input_temporal_transformer_and_export_keeps_its_width_and_guidance_interval(tmp_path, graph_run, capsys):
    cfg, data = graph_run
    shipped = PrunedUNet3DConditionModel.load_config(Path(cfg.init_from) / "unet")
    heads = shipped.get("transformer_in_heads", 8)
    units = shipped.get("transformer_in_ff_inner_dim") or 4 * 8 * shipped["attention_head_dim"]
    with pytest.raises(ValueError, match=rf"^transformer_in_heads: must be in \[1, [1-8]\].* \(got {heads + 1}\)"):
        train_graph(tmp_path, replace(cfg, transformer_in_heads=heads + 1), data, GraphTrainConfig(steps=1))
    assert not (tmp_path / "graph_ckpt.pt").exists()
    cfg = replace(cfg, transformer_in_heads=heads // 2, transformer_in_ff_inner_dim=units // 2)
    (tmp_path / "config.json").write_text(json.dumps(asdict(cfg)))
    train_graph(tmp_path, cfg, data, GraphTrainConfig(steps=1))
    assert f"input temporal transformer pruned from {heads} heads, {units} feed-forward units to {heads // 2}, {units // 2}" in capsys.readouterr().out
    assert main(["export", "--run", str(tmp_path), "--to", str(tmp_path / "narrow"), "--guidance-interval", "0.5", "1"]) == 0
    pipe = load_pipeline(tmp_path / "narrow")
    assert isinstance(pipe.unet, PrunedUNet3DConditionModel)
    block = pipe.unet.transformer_in.transformer_blocks[0]
    assert (block.attn1.heads, block.attn2.heads, block.ff.net[2].in_features) == (heads // 2, heads // 2, units // 2)
    assert pipe.config.default_guidance_interval == [0.5, 1.0]
    assert _renders(pipe, ["red ball"], [[0.1, 0.1, 0.5, 0.5]])
    train_graph(tmp_path, cfg, data, GraphTrainConfig(steps=2))  # resumes at its own width
    assert torch.load(tmp_path / "graph_ckpt.pt", weights_only=False)["step"] == 2


def test_graph_stage_trains_and_exports_a_box_masked_adapter(tmp_path, graph_run):
    cfg, data = graph_run
    cfg = replace(cfg, box_masked_grounding=True)
    (tmp_path / "config.json").write_text(json.dumps(asdict(cfg)))
    train_graph(tmp_path, cfg, data, GraphTrainConfig(steps=1))
    assert main(["export", "--run", str(tmp_path), "--to", str(tmp_path / "masked")]) == 0
    pipe = load_pipeline(tmp_path / "masked")
    assert pipe.layout_adapter.config.box_masked
    assert _renders(pipe, ["red ball", "white ring"], [[0.0, 0.0, 0.4, 0.4], [0.6, 0.6, 1.0, 1.0]])
