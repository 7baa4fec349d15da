"""The shape classifier on the toy world's own drawings: every kind at several sizes, aspect ratios,
colours and backgrounds, one object per frame, found by the detector and classified."""

import itertools

import numpy as np
import pytest

from core.toyworld.detect import detect
from core.toyworld.shapes import classify
from core.toyworld.world import BACKGROUNDS, COLORS, KINDS, ToyObject, render_frame

SIDES = (0.25, 0.35, 0.45, 0.6)  # of a 64-pixel frame; the detector misses stars and rings below about 0.2
ASPECTS = (0.7, 1.0, 1.4)  # width / height


def drawings(kind: str):
    """(frame, kind) for every side and aspect, colours and backgrounds cycled so each appears."""
    colors, backgrounds = itertools.cycle(COLORS), itertools.cycle(BACKGROUNDS)
    for side, aspect in itertools.product(SIDES, ASPECTS):
        width, height = side * np.sqrt(aspect), side / np.sqrt(aspect)
        x0, y0 = 0.47 - width / 2, 0.52 - height / 2  # off the pixel grid's centre on purpose
        yield render_frame(next(backgrounds), [ToyObject(kind, next(colors), (x0, y0, x0 + width, y0 + height))])


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_is_classified_as_itself_on_exact_drawings(kind):
    answers = []
    for frame in drawings(kind):
        (detection,) = detect(frame)
        answers.append(classify(frame, detection).kind)
    assert np.mean([a == kind for a in answers]) >= 0.98, answers


def test_an_object_of_another_colour_on_top_is_cut_away():
    frame = render_frame("grass", [ToyObject("star", "yellow", (0.1, 0.1, 0.6, 0.6)), ToyObject("square", "blue", (0.45, 0.45, 0.9, 0.9))])
    star = next(d for d in detect(frame) if d.color == "yellow")
    assert classify(frame, star).kind == "star"
