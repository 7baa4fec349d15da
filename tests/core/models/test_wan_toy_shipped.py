"""The shipped model v2 (``assets/wan-toy``): what a user who picks ``--model assets/wan-toy`` gets."""

from pathlib import Path

import numpy as np
import pytest

from core.evaluation.scoring import score_video
from core.planner.rules import plan_with_rules
from core.render import RenderSettings, load_pipeline, render_plan

SHIPPED = Path(__file__).resolve().parents[3] / "assets" / "wan-toy"


@pytest.fixture(scope="module")
def pipe():
    pipe = load_pipeline(SHIPPED)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_it_is_the_wan_path_with_its_box_control_at_128x128(pipe):
    assert pipe.family == "wan" and type(pipe.transformer).__name__ == "WanTransformer3DModel"
    assert pipe.layout_adapter is not None and pipe.layout_adapter.config.depth_slots == 3


def test_a_ball_is_drawn_on_the_planned_background_in_the_planned_colour_moving_the_planned_way(pipe):
    plan = plan_with_rules("A red ball rolls from left to right across the grass.")
    frames = render_plan(pipe, plan, RenderSettings(num_inference_steps=15))
    assert frames.shape == (plan.scenes[0].num_frames, 128, 128, 3) and frames.dtype == np.uint8
    score = score_video(plan, frames)
    assert np.mean(score.background_hits) == 1.0  # every frame's border reads as grass
    red = [t for t in score.entity_frames if t.detection is not None and t.detection.color == "red"]
    assert len(red) >= 0.75 * len(score.entity_frames)  # a red object overlaps the ball's box in most frames
    assert all(score.directions)  # and it moves right
