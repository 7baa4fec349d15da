"""Which cached clips a stage draws: backgrounds read from captions and over-sampling weights."""

import pytest
import torch

from core.training.toy_data import clip_backgrounds, mixture_weights, phrase_vocabulary

VOCAB = {p: i for i, p in enumerate(phrase_vocabulary())}
# Four clips of two frames and up to three entities: (phrases, per-frame on-screen masks, caption).
CLIPS = [
    (["orange diamond", "red ball", "red ball"], [[1, 0, 0], [1, 0, 0]], "an orange diamond on the ocean"),
    (["orange diamond", "white heart", "red ball"], [[1, 1, 0], [1, 0, 0]], "the grass: an orange diamond and a white heart"),
    (["white heart", "orange square", "red ball"], [[1, 0, 0], [0, 1, 0]], "sky. a white heart and an orange square"),  # never together
    (["blue ball", "blue star", "red ball"], [[1, 1, 0], [1, 1, 0]], "two blue things in the night"),
]
DATA = {
    "phrase_ids": torch.tensor([[[VOCAB[p] for p in phrases]] * 2 for phrases, _, _ in CLIPS]),
    "masks": torch.tensor([masks for _, masks, _ in CLIPS], dtype=torch.float32),
    "captions": [caption for _, _, caption in CLIPS],
}


def test_clip_backgrounds_are_read_from_the_captions():
    assert clip_backgrounds(DATA["captions"]) == ["ocean", "grass", "sky", "night"]
    with pytest.raises(ValueError, match=r"captions\[0\]: must name exactly one background"):
        clip_backgrounds(["a ball on the grass under the sky"])


def test_mixture_weights_oversample_the_clips_that_match_a_colour_background_or_colour_pair():
    assert mixture_weights(DATA, [], 3.0).tolist() == [1, 1, 1, 1]
    assert mixture_weights(DATA, ["orange@ocean"], 3.0).tolist() == [3, 1, 1, 1]
    assert mixture_weights(DATA, ["white+orange"], 4.0).tolist() == [1, 4, 1, 1]  # clip 2 never shows both at once
    assert mixture_weights(DATA, ["blue+blue", "red+orange"], 2.0).tolist() == [1, 1, 1, 2]  # red balls are off screen


def test_mixture_weights_oversample_the_clips_that_show_a_kind():
    assert mixture_weights(DATA, ["star"], 3.0).tolist() == [1, 1, 1, 3]
    assert mixture_weights(DATA, ["heart", "square"], 2.0).tolist() == [1, 2, 2, 1]  # clip 1's heart is on screen in frame 0
    assert mixture_weights(DATA, ["ball"], 2.0).tolist() == [1, 1, 1, 2]  # only the blue ball is ever on screen


@pytest.mark.parametrize(("terms", "weight", "message"), [
    (["teal@ocean"], 3.0, r"--oversample: 'teal@ocean': colour must be one of red, orange"),
    (["orange@moon"], 3.0, r"--oversample: 'orange@moon': background must be one of sky, grass"),
    (["orange"], 3.0, r"--oversample: 'orange': must be a kind \(ball, .*\), colour@background, colour\+colour or overlap"),
    (["orange@ocean"], 0.5, r"--oversample-weight: must be >= 1 \(got 0.5\)"),
])
def test_mixture_weights_reject_bad_terms_and_weights(terms, weight, message):
    with pytest.raises(ValueError, match=message):
        mixture_weights(DATA, terms, weight)
