"""The toy-world detector on frames drawn from known boxes and colours: exact answers."""

import numpy as np
import pytest

from core.toyworld.detect import box_iou, detect, frame_background
from core.toyworld.world import BACKGROUNDS, COLORS, KINDS, ToyObject, render_frame

BOX = (0.125, 0.25, 0.5, 0.625)  # on the 64-pixel grid: columns 8-32, rows 16-40


@pytest.mark.parametrize("background", list(BACKGROUNDS))
@pytest.mark.parametrize("color", list(COLORS))
def test_every_colour_on_every_background_is_found_with_its_exact_box(background, color):
    frame = render_frame(background, [ToyObject("square", color, BOX)])
    detections = detect(frame)
    assert [d.color for d in detections] == [color]
    assert detections[0].box == pytest.approx(BOX, abs=1 / 64 + 1e-9)  # PIL draws the right/bottom edge inclusively
    assert frame_background(frame) == background


@pytest.mark.parametrize(("kind", "min_iou"), [("ball", 1.0), ("square", 1.0), ("ring", 1.0), ("diamond", 1.0), ("cross", 1.0), ("triangle", 0.95), ("heart", 0.85), ("star", 0.8)])
def test_each_kind_gives_its_box_up_to_the_shape_geometry(kind, min_iou):
    frame = render_frame("grass", [ToyObject(kind, "red", BOX)])
    (detection,) = detect(frame)
    assert detection.color == "red" and box_iou(detection.box, BOX) >= min_iou - 1e-9


def test_two_objects_two_detections_and_an_empty_frame_none():
    frame = render_frame("night", [ToyObject("ball", "yellow", (0.05, 0.05, 0.3, 0.3)), ToyObject("star", "blue", (0.55, 0.5, 0.95, 0.9))])
    found = {d.color: d.box for d in detect(frame)}
    assert set(found) == {"yellow", "blue"}
    assert box_iou(found["yellow"], (0.05, 0.05, 0.3, 0.3)) > 0.85
    assert detect(render_frame("ocean", [])) == []


def test_a_two_colour_blob_is_two_partial_detections():
    frame = render_frame("sky", [ToyObject("square", "red", (0.1, 0.1, 0.5, 0.9)), ToyObject("square", "white", (0.5, 0.1, 0.9, 0.9))])
    colors = sorted(d.color for d in detect(frame))
    assert colors == ["red", "white"]


@pytest.mark.parametrize("size", [64, 128])
def test_a_star_is_boxed_to_its_points_and_not_along_a_neighbours_outline(size):
    # A star's fill ends short of its points; its box follows its own outline out to them. A perfect star
    # must pass IoU 0.5 against its planned box, or AP50 would fail exact drawings.
    ious = []
    for side in (0.22, 0.3, 0.45):
        box = (0.1, 0.2, 0.1 + side, 0.2 + side)
        (found,) = detect(render_frame("desert", [ToyObject("star", "blue", box)], size))
        ious.append(box_iou(found.box, box))
    assert min(ious) >= 0.7 and sum(ious) / len(ious) >= 0.8, ious
    # Touching squares: each box stays on its own square, although the outlines touch along a whole side.
    red, white = (0.1, 0.1, 0.5, 0.9), (0.5, 0.1, 0.9, 0.9)
    found = {d.color: d.box for d in detect(render_frame("sky", [ToyObject("square", "red", red), ToyObject("square", "white", white)], size))}
    assert found["red"] == pytest.approx(red, abs=2 / 64 + 1e-9) and found["white"] == pytest.approx(white, abs=2 / 64 + 1e-9)


def test_bad_frames_are_rejected_with_the_field_named():
    with pytest.raises(ValueError, match="frame: must be"):
        detect(np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="background: must be one of"):
        detect(np.zeros((8, 8, 3), dtype=np.uint8), background="moon")


def test_exact_drawings_are_read_as_well_at_128_pixels_as_at_64():
    # The outline is 1/48 of the frame thick: the detector's growth into it scales with the frame.
    def mean_iou(kind: str, size: int) -> float:
        ious = []
        for side in (0.2, 0.3, 0.45):
            box = (0.3, 0.25, 0.3 + side, 0.25 + side)
            found = detect(render_frame("grass", [ToyObject(kind, "red", box)], size), background="grass")
            ious.append(max((box_iou(d.box, box) for d in found), default=0.0))
        return sum(ious) / len(ious)

    for kind in KINDS:
        assert mean_iou(kind, 128) >= mean_iou(kind, 64) - 0.03, kind
    assert mean_iou("square", 128) > 0.95 and mean_iou("ball", 128) > 0.95


def test_a_soft_halo_that_is_mostly_background_stays_out_of_the_box():
    # A blurred render leaves a ring of pixels between the object and the background. Where a pixel is
    # nearer the background than the object's fill and outline, it is not the object (half coverage).
    box = (0.3, 0.3, 0.6, 0.6)
    frame = render_frame("grass", [ToyObject("square", "red", box)], 128).astype(np.float32)
    grass, red = np.array(BACKGROUNDS["grass"], dtype=np.float32), np.array(COLORS["red"], dtype=np.float32)
    ring = np.zeros((128, 128), dtype=bool)
    ring[30:84, 30:84] = True
    ring[38:77, 38:77] = False  # the square covers pixels 38-76
    frame[ring] = 0.7 * grass + 0.3 * red  # foreground (far enough from the grass), but mostly grass
    (found,) = detect(frame.round().astype(np.uint8), background="grass")
    assert found.color == "red" and found.box == pytest.approx(box, abs=2 / 64 + 1e-9)
