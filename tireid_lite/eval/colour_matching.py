"""A hand-made retrieval score: the colour words of a caption against the colours worn in an image.

Nothing here is learned. A caption becomes a vector of colour-word counts
(``"a man in a red jacket and grey trousers"`` -> one ``red``, one ``grey``);
an image becomes the share of its clothing pixels nearest to each named colour
(the part map says which pixels are clothing, hair, hat, shoes or bag; without
one every pixel counts). The score is the cosine of the two vectors.

It is the floor a learned model has to beat: it knows the colour vocabulary of
SynthPEDES by heart but not *which* garment is red, nor anything about shape,
pattern, bags or viewpoint. Taught in ``00_welcome``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from tireid_lite.data.synth.attributes import CLOTHING_COLOURS, HAIR_COLOURS
from tireid_lite.data.synth.materials import PART_INDEX

# One column per colour name; hair-only colours (blonde) come after the clothing ones.
_PALETTE = {c.name: c for c in (*CLOTHING_COLOURS, *HAIR_COLOURS)}
COLOUR_NAMES: tuple[str, ...] = tuple(_PALETTE)
_RGB = np.array([_PALETTE[name].rgb for name in COLOUR_NAMES], dtype=np.float32)  # (C, 3)
_WORD_TO_COLOUR = {name: name for name in COLOUR_NAMES}
_WORD_TO_COLOUR.update({syn: c.name for c in _PALETTE.values() for syn in c.synonyms})
COLOUR_WORDS: frozenset[str] = frozenset(w for w in _WORD_TO_COLOUR if " " not in w)  # one-word names and synonyms
# Longest phrase first so "dark blue" is read as navy, not as blue.
_COLOUR_WORDS = re.compile(
    r"\b(" + "|".join(sorted(map(re.escape, _WORD_TO_COLOUR), key=len, reverse=True)) + r")\b"
)
WORN_PARTS = tuple(PART_INDEX[p] for p in ("hat", "hair", "upper_clothes", "lower_clothes", "shoes", "bag"))


def caption_colour_vector(caption: str) -> np.ndarray:
    """``(C,)`` counts of each colour of :data:`COLOUR_NAMES` named in ``caption`` (synonyms included)."""
    counts = np.zeros(len(COLOUR_NAMES), dtype=np.float32)
    for word in _COLOUR_WORDS.findall(caption.lower()):
        counts[COLOUR_NAMES.index(_WORD_TO_COLOUR[word])] += 1
    return counts


def image_colour_histogram(image: np.ndarray, part_map: np.ndarray | None = None) -> np.ndarray:
    """``(C,)`` share of the worn pixels of ``image`` (H, W, 3 uint8) nearest to each named colour.

    With a ``part_map`` (H, W; indices into ``PART_CLASSES``) only hat, hair,
    clothes, shoes and bag pixels count; without one, every pixel does. Sums to
    1, or is all zeros when no pixel counts.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image has shape {image.shape}; expected (H, W, 3) RGB")
    pixels = image.reshape(-1, 3).astype(np.float32)  # (H*W, 3)
    if part_map is not None:
        if part_map.shape != image.shape[:2]:
            raise ValueError(f"part map has shape {part_map.shape} but the image is {image.shape[:2]}; give the image's own map")
        pixels = pixels[np.isin(part_map.reshape(-1), WORN_PARTS)]
    histogram = np.zeros(len(COLOUR_NAMES), dtype=np.float32)
    if len(pixels) == 0:
        return histogram
    distances = ((pixels[:, None, :] - _RGB[None, :, :]) ** 2).sum(-1)  # (P, C)
    np.add.at(histogram, distances.argmin(1), 1.0)
    return histogram / len(pixels)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def colour_match_scores(
    captions: Sequence[str],
    images: Sequence[np.ndarray],
    part_maps: Sequence[np.ndarray] | None = None,
) -> np.ndarray:
    """``(Q, G)`` cosine between each caption's colour words and each image's worn colours.

    A caption without colour words (or an image without worn pixels) scores 0
    against everything.
    """
    if part_maps is not None and len(part_maps) != len(images):
        raise ValueError(f"{len(images)} images but {len(part_maps)} part maps; give one map per image")
    text = np.stack([caption_colour_vector(c) for c in captions])  # (Q, C)
    maps = part_maps if part_maps is not None else [None] * len(images)
    image = np.stack([image_colour_histogram(im, pm) for im, pm in zip(images, maps)])  # (G, C)
    return _unit_rows(text) @ _unit_rows(image).T  # (Q, G)
