"""Layout of the rules planner: time slots, box sizes and boxes over time (no parser needed)."""

import pytest

from core.planner.layout import ROW_GAP, ROW_MARGIN, SceneLayout, Timeline, Track, default_size, row_centres
from core.planner.parse import Clause


def test_sequential_clauses_take_consecutive_slots_and_concurrent_ones_share():
    clauses = [Clause(tokens=[]), Clause(tokens=[], concurrent=True), Clause(tokens=[])]
    assert Timeline.of_clauses(clauses, 16).slots == [0, 0, 1]


def test_a_clause_before_the_previous_one_swaps_slots():
    clauses = [Clause(tokens=[]), Clause(tokens=[], before_previous=True)]
    assert Timeline.of_clauses(clauses, 16).slots == [1, 0]


def test_slots_split_the_frames_evenly():
    timeline = Timeline.of_clauses([Clause(tokens=[]), Clause(tokens=[])], 16)
    assert [timeline.frames(k) for k in (0, 1)] == [(0, 8), (8, 15)]


@pytest.mark.parametrize(
    "head, attributes, size",
    [("ball", {}, (0.24, 0.24)), ("woman", {}, (0.2, 0.45)), ("car", {}, (0.36, 0.26)), ("ball", {"size": "big"}, (0.324, 0.324))],
)
def test_default_sizes_by_kind_of_thing(head, attributes, size):
    assert default_size(head, attributes) == size


def test_a_box_is_kept_inside_the_frame():
    assert Track("e1", (0.2, 0.2), [0.0, 1.0]).box() == [0.0, 0.8, 0.2, 1.0]


def test_boxes_move_linearly_between_waypoints():
    track = Track("e1", (0.2, 0.2), [0.5, 0.5], waypoints={0: [0.0, 0.0, 0.2, 0.2], 10: [0.4, 0.0, 0.6, 0.2]})
    assert track.box_at(5) == [0.2, 0.0, 0.4, 0.2]


def test_a_hidden_waypoint_hides_the_entity_between_waypoints():
    track = Track("e1", (0.2, 0.2), [0.5, 0.5], waypoints={0: None, 4: [0.0, 0.0, 0.2, 0.2]})
    assert [track.box_at(f) for f in (0, 2, 4)] == [None, None, [0.0, 0.0, 0.2, 0.2]]


def test_entities_start_spread_in_a_row():
    layout = SceneLayout([("e1", (0.2, 0.2)), ("e2", (0.2, 0.2))], 16)
    assert [t.center for t in layout.tracks.values()] == [[1 / 3, 0.55], [2 / 3, 0.55]]


def gaps(boxes):
    return [round(b[0] - a[2], 4) for a, b in zip(boxes, boxes[1:])]


def test_three_entities_in_a_row_keep_a_latent_cell_apart():
    layout = SceneLayout([(f"e{n}", (0.24, 0.24)) for n in range(3)], 16)
    boxes = [t.box() for t in layout.tracks.values()]
    assert gaps(boxes) == [ROW_GAP, ROW_GAP]  # evenly spaced they would be 0.01 apart: one pixel at 128x128
    assert boxes[0][0] >= ROW_MARGIN and boxes[-1][2] <= 1 - ROW_MARGIN


@pytest.mark.parametrize("widths", [[0.24] * 4, [0.324] * 3, [0.36, 0.24, 0.2]])
def test_a_crowded_row_spaces_its_boxes_as_widely_as_fits_and_never_overlaps(widths):
    centres = row_centres(widths)
    boxes = [[c - w / 2, 0.4, c + w / 2, 0.6] for c, w in zip(centres, widths)]
    assert min(gaps(boxes)) >= 0
    assert boxes[0][0] >= 0 and boxes[-1][2] <= 1
    evenly = [(n + 1) / (len(widths) + 1) for n in range(len(widths))]
    assert min(gaps(boxes)) > min(b - a - (wa + wb) / 2 for a, b, wa, wb in zip(evenly, evenly[1:], widths, widths[1:]))


def test_an_appearing_entity_is_absent_at_the_first_frame():
    layout = SceneLayout([("e1", (0.2, 0.2))], 16)
    layout.move("e1", Clause(tokens=[], verb="appear"), 0, 15, agents=["e1"], target_ids=[])
    (first, last) = layout.keyframes([0, 15])
    assert (first.boxes, list(last.boxes)) == ({}, ["e1"])


def test_above_puts_the_agent_over_its_target():
    layout = SceneLayout([("e1", (0.2, 0.2)), ("e2", (0.2, 0.2))], 16)
    layout.relate(["e1"], "above", ["e2"])
    above, below = layout.tracks["e1"].box(), layout.tracks["e2"].box()
    assert above[3] <= below[1] and above[0] == below[0]
