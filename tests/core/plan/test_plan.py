import copy

import numpy as np
import pytest

from core.plan import PlanValidationError, interpolate_boxes, load_plan, parse_plan, save_plan


def make_plan(**scene_overrides):
    scene = {
        "id": "s1",
        "description": "A red ball rolls right.",
        "background": "grass",
        "num_frames": 16,
        "keyframes": [
            {"frame": 0, "boxes": {"e1": [0.1, 0.4, 0.3, 0.6]}},
            {"frame": 15, "boxes": {"e1": [0.7, 0.4, 0.9, 0.6]}},
        ],
        "events": [{"agent": "e1", "predicate": "rolls", "target": None, "start": 0, "end": 15}],
    }
    scene.update(scene_overrides)
    return {
        "schema_version": 1,
        "prompt": "A red ball rolls right.",
        "fps": 8,
        "entities": [{"id": "e1", "name": "ball", "kind": "ball", "attributes": {"color": "red"}}],
        "scenes": [scene],
    }


def error_of(data) -> str:
    with pytest.raises(PlanValidationError) as info:
        parse_plan(data)
    return str(info.value)


def test_round_trip_through_json_file(tmp_path):
    plan = parse_plan(make_plan())
    save_plan(plan, tmp_path / "plan.json")
    again = load_plan(tmp_path / "plan.json")
    assert again == plan
    assert again.model_dump() == plan.model_dump()
    (tmp_path / "plain.txt").write_text("x")  # the atomic write keeps the mode a plain write gives
    assert (tmp_path / "plan.json").stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777


def test_box_order_error_names_the_field_and_values():
    data = make_plan()
    data["scenes"][0]["keyframes"][1]["boxes"]["e1"] = [0.6, 0.4, 0.1, 0.6]
    assert error_of(data) == "scenes[0].keyframes[1].boxes.e1: x0 must be < x1 (got 0.6 >= 0.1)"


@pytest.mark.parametrize(
    "box, message",
    [
        ([0.1, 0.7, 0.3, 0.2], "y0 must be < y1 (got 0.7 >= 0.2)"),
        ([0.1, 0.1, 1.3, 0.2], "x1 must be in [0, 1] (got 1.3)"),
        ([-0.1, 0.1, 0.3, 0.2], "x0 must be in [0, 1] (got -0.1)"),
        ([0.1, 0.1, 0.3], "a box must have 4 numbers [x0, y0, x1, y1] (got 3)"),
    ],
)
def test_bad_boxes(box, message):
    data = make_plan()
    data["scenes"][0]["keyframes"][0]["boxes"]["e1"] = box
    assert error_of(data) == f"scenes[0].keyframes[0].boxes.e1: {message}"


def test_unknown_entity_in_boxes_and_events():
    data = make_plan()
    data["scenes"][0]["keyframes"][0]["boxes"]["ghost"] = [0.1, 0.1, 0.2, 0.2]
    assert error_of(data) == "scenes[0].keyframes[0].boxes.ghost: unknown entity id (allowed: e1)"
    data = make_plan()
    data["scenes"][0]["events"][0]["agent"] = "ghost"
    assert "scenes[0].events[0].agent: unknown entity id 'ghost'" in error_of(data)


@pytest.mark.parametrize("frames, message", [(7, "must be >= 8 (got 7)"), (65, "must be <= 64 (got 65)")])
def test_frame_count_limits(frames, message):
    assert error_of(make_plan(num_frames=frames)) == f"scenes[0].num_frames: {message}"


def test_scene_count_limits():
    data = make_plan()
    data["scenes"] = []
    assert error_of(data) == "scenes: must have at least 1 item(s) (got 0)"
    data = make_plan()
    data["scenes"] = [dict(copy.deepcopy(data["scenes"][0]), id=f"s{i}") for i in range(9)]
    assert error_of(data).startswith("scenes: must have at most 8 items")


def test_entities_per_scene_limit():
    data = make_plan()
    data["entities"] = [{"id": f"e{i}", "name": "ball", "kind": "ball"} for i in range(1, 10)]
    data["scenes"][0]["keyframes"][0]["boxes"] = {f"e{i}": [0.1, 0.1, 0.2, 0.2] for i in range(1, 10)}
    assert error_of(data) == "scenes[0]: must have 1-8 entities with boxes (got 9)"


def test_prompt_length_limits():
    data = make_plan()
    data["prompt"] = ""
    assert error_of(data) == "prompt: must have at least 1 character(s) (got '')"
    data["prompt"] = "x" * 2001
    assert error_of(data).startswith("prompt: must have at most 2000 characters")


def test_keyframes_must_cover_first_and_last_frame():
    data = make_plan()
    data["scenes"][0]["keyframes"][1]["frame"] = 12
    assert error_of(data) == "scenes[0].keyframes: must include frame 0 and frame 15 (num_frames - 1) (got [0, 12])"


def test_event_times_inside_scene():
    data = make_plan()
    data["scenes"][0]["events"][0]["end"] = 16
    assert error_of(data) == "scenes[0].events[0]: start <= end <= 15 required (got 0..16)"


def test_invalid_json_is_a_plan_error():
    with pytest.raises(PlanValidationError):
        parse_plan("{not json")


def test_linear_interpolation_between_keyframes():
    plan = parse_plan(make_plan())
    boxes, masks = interpolate_boxes(plan.scenes[0])
    assert boxes.shape == (16, 1, 4) and masks.all()
    np.testing.assert_allclose(boxes[0, 0], [0.1, 0.4, 0.3, 0.6])
    np.testing.assert_allclose(boxes[15, 0], [0.7, 0.4, 0.9, 0.6])
    np.testing.assert_allclose(boxes[5, 0], [0.1 + 0.6 * 5 / 15, 0.4, 0.3 + 0.6 * 5 / 15, 0.6], atol=1e-6)
    centres = (boxes[:, 0, 0] + boxes[:, 0, 2]) / 2
    assert np.all(np.diff(centres) > 0)


def test_entity_absent_at_one_end_is_off_screen_in_between():
    data = make_plan()
    data["scenes"][0]["keyframes"] = [
        {"frame": 0, "boxes": {}},
        {"frame": 6, "boxes": {"e1": [0.1, 0.1, 0.3, 0.3]}},
        {"frame": 15, "boxes": {"e1": [0.5, 0.1, 0.7, 0.3]}},
    ]
    _, masks = interpolate_boxes(parse_plan(data).scenes[0])
    assert masks[:6, 0].tolist() == [False] * 6
    assert masks[6:, 0].all()
