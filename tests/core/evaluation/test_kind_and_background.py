"""kind_accuracy, background_accuracy and frame_size on videos drawn from a plan by the toy world
(:func:`core.evaluation.scoring.draw_plan`), so the answers are known."""

import pytest

from core.evaluation.scoring import aggregate, draw_plan, score_video
from core.plan import parse_plan


def plan_of(kind="triangle", background="snow"):
    scene = {
        "id": "s1", "description": f"a red {kind} slides right", "background": background, "num_frames": 8,
        "keyframes": [{"frame": 0, "boxes": {"e1": [0.05, 0.3, 0.45, 0.7]}}, {"frame": 7, "boxes": {"e1": [0.5, 0.3, 0.9, 0.7]}}],
        "events": [{"agent": "e1", "predicate": "slides", "target": None, "start": 0, "end": 7}],
    }
    entity = {"id": "e1", "name": kind, "kind": kind, "attributes": {"color": "red"}}
    return parse_plan({"prompt": f"a red {kind} slides right", "entities": [entity], "scenes": [scene]})


@pytest.mark.parametrize("kind", ["ball", "square", "triangle", "star", "heart", "ring", "diamond", "cross"])
def test_exact_drawings_have_the_planned_kind(kind):
    plan = plan_of(kind)
    assert aggregate([score_video(plan, draw_plan(plan))])["kind_accuracy"] == 1.0


def test_a_drawing_of_another_kind_scores_zero():
    assert aggregate([score_video(plan_of("triangle"), draw_plan(plan_of("ball")))])["kind_accuracy"] == 0.0


def test_exact_drawings_have_the_planned_background():
    plan = plan_of()
    assert aggregate([score_video(plan, draw_plan(plan))])["background_accuracy"] == 1.0


def test_frames_on_the_wrong_background_score_zero():
    assert aggregate([score_video(plan_of(background="snow"), draw_plan(plan_of(background="night")))])["background_accuracy"] == 0.0


def test_frame_size_is_the_rendered_height_and_width():
    plan = plan_of()
    assert aggregate([score_video(plan, draw_plan(plan, size=48))])["frame_size"] == [48, 48]
