"""overlap_separation and overlap_depth_accuracy on videos drawn from a plan by the toy world
(:func:`core.evaluation.scoring.draw_plan`): two entities whose boxes cross must come out as two objects
in their own colours, the later one in front."""

from core.evaluation.scoring import aggregate, draw_plan, score_video
from core.plan import parse_plan


def two_entities(second_color="blue", second_start=(0.35, 0.3, 0.75, 0.7), square_in_front=True):
    """A red ball and a second square; the square's box starts at ``second_start`` and ends far right.
    The square is later in the scene's order (in front) unless ``square_in_front`` is False."""
    first = {"e1": [0.05, 0.3, 0.5, 0.75], "e2": list(second_start)}
    if not square_in_front:
        first = dict(reversed(first.items()))
    scene = {
        "id": "s1", "description": "a red ball and a square", "background": "grass", "num_frames": 8,
        "keyframes": [
            {"frame": 0, "boxes": first},
            {"frame": 7, "boxes": {"e1": [0.05, 0.3, 0.5, 0.75], "e2": [0.55, 0.25, 0.95, 0.65]}},
        ],
        "events": [{"agent": "e2", "predicate": "slides", "target": None, "start": 0, "end": 7}],
    }
    entities = [
        {"id": "e1", "name": "ball", "kind": "ball", "attributes": {"color": "red"}},
        {"id": "e2", "name": "square", "kind": "square", "attributes": {"color": second_color}},
    ]
    return parse_plan({"prompt": "a red ball and a square", "entities": entities, "scenes": [scene]})


def test_exact_drawings_of_crossing_boxes_are_two_objects():
    plan = two_entities()
    metrics = aggregate([score_video(plan, draw_plan(plan))])
    assert metrics["overlap_pairs"] >= 3  # the first frames, before the square slides clear of the ball
    assert metrics["overlap_separation"] == 1.0


def test_two_objects_fused_into_one_colour_are_caught():
    # the same layout drawn with both shapes red: one red blob where the plan asks for red and blue
    metrics = aggregate([score_video(two_entities("blue"), draw_plan(two_entities("red")))])
    assert metrics["overlap_pairs"] >= 3 and metrics["overlap_separation"] == 0.0


def test_boxes_that_never_cross_score_no_pairs():
    plan = two_entities(second_start=(0.55, 0.25, 0.95, 0.65))
    metrics = aggregate([score_video(plan, draw_plan(plan))])
    assert metrics["overlap_pairs"] == 0 and metrics["overlap_separation"] == 0.0


def test_exact_drawings_put_the_later_entity_in_front():
    plan = two_entities()
    metrics = aggregate([score_video(plan, draw_plan(plan))])
    assert metrics["overlap_depth_pairs"] >= 3 and metrics["overlap_depth_accuracy"] == 1.0


def test_the_wrong_entity_in_front_is_caught():
    # the plan puts the blue square in front; the video draws the red ball over it
    metrics = aggregate([score_video(two_entities(), draw_plan(two_entities(square_in_front=False)))])
    assert metrics["overlap_depth_pairs"] >= 3 and metrics["overlap_depth_accuracy"] == 0.0
    assert metrics["overlap_separation"] == 1.0  # both objects are still there: only the order is wrong


def test_depth_order_is_not_scored_between_entities_of_one_colour():
    plan = two_entities(second_color="red")
    metrics = aggregate([score_video(plan, draw_plan(plan))])
    assert metrics["overlap_pairs"] >= 3 and metrics["overlap_depth_pairs"] == 0
