"""Evaluation metrics on hand-made videos (drawn from the plan, so the answers are known), AP on a hand-made
ranking, and ``launch.py eval`` end to end on two prompts with the shipped model."""

import json

import numpy as np
import pytest

from core.cli import main as cli_main
from core.evaluation.scoring import METRIC_KEYS, aggregate, average_precision, score_video
from core.plan import interpolate_boxes, parse_plan
from core.render import recommended_guidance_scale
from core.scene_graph import entity_colors
from core.toyworld.world import ToyObject, render_frame
from tests.conftest import EVAL_PROMPTS


def rolling_ball(color_change_at=None):
    scene = {
        "id": "s1", "description": "a red ball rolls right", "background": "grass", "num_frames": 8,
        "keyframes": [{"frame": 0, "boxes": {"e1": [0.0, 0.3, 0.25, 0.55]}}, {"frame": 7, "boxes": {"e1": [0.7, 0.3, 0.95, 0.55]}}],
        "events": [{"agent": "e1", "predicate": "rolls", "target": None, "start": 0, "end": 7}],
    }
    if color_change_at is not None:
        scene["events"].append({"agent": "e1", "predicate": "turns", "target": "blue", "start": color_change_at, "end": 7})
    return parse_plan({"prompt": "a red ball rolls right", "entities": [{"id": "e1", "name": "ball", "kind": "ball", "attributes": {"color": "red"}}], "scenes": [scene]})


def draw(plan, *, color_of=None, mirror=False):
    """Frames with each planned box drawn in its planned colour (or ``color_of(frame)``), optionally mirrored."""
    scene = plan.scenes[0]
    boxes, _masks = interpolate_boxes(scene, ["e1"])
    colors = entity_colors(plan, scene)["e1"]
    frames = []
    for f in range(scene.num_frames):
        x0, y0, x1, y1 = boxes[f, 0]
        box = (1 - x1, y0, 1 - x0, y1) if mirror else (x0, y0, x1, y1)
        frames.append(render_frame("grass", [ToyObject("ball", color_of(f) if color_of else colors[f], tuple(box))]))
    return np.stack(frames)


def test_a_video_drawn_from_its_plan_scores_perfectly():
    plan = rolling_ball()
    metrics = aggregate([score_video(plan, draw(plan))])
    assert metrics["box_miou"] > 0.9 and metrics["box_ap50"] == 1.0 and metrics["centroid_error"] < 0.02
    assert metrics["direction_accuracy"] == 1.0 and metrics["color_accuracy"] == 1.0 and metrics["count_accuracy"] == 1.0
    assert metrics["consistency"] == pytest.approx(1.0)


def test_wrong_direction_and_wrong_colour_are_caught():
    plan = rolling_ball()
    metrics = aggregate([score_video(plan, draw(plan, color_of=lambda f: "blue", mirror=True))])
    assert metrics["direction_accuracy"] == 0.0
    assert metrics["color_accuracy"] == 0.0
    assert metrics["box_miou"] < 0.5


def test_colour_is_scored_against_each_frames_scene_graph():
    plan = rolling_ball(color_change_at=4)
    right = aggregate([score_video(plan, draw(plan))])
    never_changes = aggregate([score_video(plan, draw(plan, color_of=lambda f: "red"))])
    assert right["color_accuracy"] == 1.0 and right["color_change_accuracy"] == 1.0 and right["color_change_videos"] == 1
    assert never_changes["color_accuracy"] == pytest.approx(0.5) and never_changes["color_change_accuracy"] == pytest.approx(0.5)
    assert aggregate([score_video(rolling_ball(), draw(rolling_ball()))])["color_change_videos"] == 0
    # Consistency is measured within each planned colour: the change the plan asks for is not a change of identity.
    assert right["consistency"] == pytest.approx(1.0, abs=0.01) and never_changes["consistency"] == pytest.approx(1.0, abs=0.01)
    flickers = aggregate([score_video(plan, draw(plan, color_of=lambda f: ("red", "blue")[f % 2]))])
    assert flickers["consistency"] < 0.8


def test_an_empty_video_finds_nothing():
    plan = rolling_ball()
    empty = np.stack([render_frame("grass", []) for _ in range(8)])
    metrics = aggregate([score_video(plan, empty)])
    assert metrics["box_miou"] == 0.0 and metrics["box_ap50"] == 0.0 and metrics["count_accuracy"] == 0.0 and metrics["direction_accuracy"] == 0.0


def test_average_precision_on_a_hand_made_ranking():
    # ranks: TP (P 1, R 0.5), FP, TP (P 2/3, R 1) -> 0.5 * 1 + 0.5 * 2/3
    assert average_precision([(3.0, True), (2.0, False), (1.0, True)], 2) == pytest.approx(0.5 + 1 / 3)
    assert average_precision([(1.0, True)], 2) == pytest.approx(0.5)
    assert average_precision([], 0) == 0.0


def test_eval_command_on_two_prompts(tmp_path, capsys):
    out = tmp_path / "eval"
    prompts = EVAL_PROMPTS / "toyworld_dev.jsonl"
    assert cli_main(["eval", str(prompts), "--out", str(out), "--limit", "2", "--steps", "4"]) == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["videos"] == 2 and metrics["variant"] == "full"
    for key in METRIC_KEYS:
        assert isinstance(metrics[key], (int, float)), key
    assert len(metrics["frame_size"]) == 2 and all(isinstance(v, int) and v > 0 for v in metrics["frame_size"])
    assert metrics["plan_check_pass_rate"] == 1.0 and metrics["plan_checks"] == 5 and metrics["seconds_per_video"] > 0
    assert metrics["settings"] == {
        "num_inference_steps": 4, "guidance_scale": recommended_guidance_scale(), "seed": 0, "unconditional_layout": "null",
        "guidance_interval": [0.0, 1.0], "layout_alpha": None, "guidance_rescale": 0.0, "autoguidance_scale": None,
    }
    assert (out / "videos" / "000.mp4").exists() and (out / "videos" / "001.plan.json").exists()
    report = (out / "report.html").read_text()
    assert "plotly" in report.lower() and report.count("alt='frames of video") == 2


def test_eval_rejects_a_bad_variant_and_a_bad_prompt_file(tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a red ball"}\n{"text": "no prompt key"}\n')
    assert cli_main(["eval", str(prompts), "--out", str(tmp_path / "o"), "--variant", "best"]) == 2
    assert capsys.readouterr().err.strip() == "error: --variant: must be one of full, no-graph, no-layout, training-free (got 'best')"
    assert cli_main(["eval", str(prompts), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == "error: p.jsonl:2: prompt: must be a non-empty string"
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_draw_plan_is_the_oracle_video_of_a_plan():
    from core.evaluation.scoring import draw_plan

    plan = rolling_ball(color_change_at=4)
    frames = draw_plan(plan)
    assert frames.shape == (plan.scenes[0].num_frames, 64, 64, 3) and frames.dtype == np.uint8
    metrics = aggregate([score_video(plan, frames)])
    assert metrics["box_ap50"] == 1.0 and metrics["color_accuracy"] == 1.0 and metrics["count_accuracy"] == 1.0
