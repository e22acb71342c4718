"""The hand-made colour score of ``00_welcome``, on values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tireid_lite.data.synth import PART_CLASSES
from tireid_lite.eval.colour_matching import (
    COLOUR_NAMES,
    caption_colour_vector,
    colour_match_scores,
    image_colour_histogram,
)

RED, NAVY, WHITE = (196, 34, 40), (28, 38, 92), (232, 232, 226)
UPPER, LOWER, BACKGROUND = (PART_CLASSES.index(p) for p in ("upper_clothes", "lower_clothes", "background"))


def named(vector: np.ndarray) -> dict[str, float]:
    return {name: float(v) for name, v in zip(COLOUR_NAMES, vector) if v}


def test_caption_counts_colour_words_and_synonyms():
    caption = "A man in a red jacket, dark blue trousers, gray shoes and a RED cap; blond hair."
    assert named(caption_colour_vector(caption)) == {"red": 2.0, "navy": 1.0, "grey": 1.0, "blonde": 1.0}
    assert named(caption_colour_vector("redness is not a colour word here")) == {}


def test_histogram_counts_worn_pixels_only():
    image = np.array([[RED, RED], [NAVY, WHITE]], dtype=np.uint8)  # (2, 2, 3)
    parts = np.array([[UPPER, UPPER], [LOWER, BACKGROUND]])
    assert named(image_colour_histogram(image, parts)) == pytest.approx({"red": 2 / 3, "navy": 1 / 3})
    assert named(image_colour_histogram(image)) == pytest.approx({"red": 0.5, "navy": 0.25, "white": 0.25})
    nearly_red = np.array([[[200, 40, 30]]], dtype=np.uint8)  # nearest named colour wins
    assert named(image_colour_histogram(nearly_red)) == {"red": 1.0}
    assert not image_colour_histogram(image, np.full((2, 2), BACKGROUND)).any()


def test_scores_are_cosines():
    image = np.array([[RED, RED], [NAVY, WHITE]], dtype=np.uint8)
    parts = np.array([[UPPER, UPPER], [LOWER, BACKGROUND]])
    sim = colour_match_scores(["red top, dark blue skirt, grey shoes", "a person walking"], [image], [parts])
    # text (red, navy, grey) = (1, 1, 1); image (red, navy) = (2/3, 1/3): cosine 3 / sqrt(3 * 5)
    assert sim.shape == (2, 1)
    assert sim[0, 0] == pytest.approx(3 / math.sqrt(15))
    assert sim[1, 0] == 0.0


def test_bad_shapes_name_the_problem():
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"expected \(H, W, 3\)"):
        image_colour_histogram(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="part map has shape"):
        image_colour_histogram(image, np.zeros((3, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="one map per image"):
        colour_match_scores(["red"], [image, image], [np.zeros((2, 2), dtype=np.uint8)])


def test_colour_words_are_the_one_word_names_and_synonyms():
    from tireid_lite.eval.colour_matching import COLOUR_WORDS

    assert {"red", "navy", "gray", "khaki", "blond", "blonde"} <= COLOUR_WORDS
    assert "dark blue" not in COLOUR_WORDS and "dark" not in COLOUR_WORDS
