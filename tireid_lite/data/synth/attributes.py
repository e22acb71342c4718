"""The SynthPEDES attribute space: colours, garments, identities and hard-negative edits.

An identity is one combination of described attributes (gender, hair, hat,
top, bottom, shoes, bag) plus three undescribed traits (skin tone, build,
height) that vary the body but never appear in a caption. Clothing colours
follow a Zipf-like frequency: colour ``k`` in :data:`CLOTHING_COLOURS` is drawn
with probability proportional to ``1 / (k + 1) ** s``, so rare colour words
are the discriminative ones, as in real captions. Taught in ``01_data``.

Dependent attributes (``hair_colour``, ``hat_colour``, ``pattern_colour``,
``bag_colour``, ``bag_side``) are ``None`` when their parent says there is
nothing to colour (a bald head, no hat, a plain top, no bag, a backpack's side).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from tireid_lite.data.synth.rng import AnyRng


@dataclass(frozen=True)
class Colour:
    """A colour name, its RGB value and the other words a caption may use for it."""

    name: str
    rgb: tuple[int, int, int]
    synonyms: tuple[str, ...] = ()


# Ordered by frequency rank: index 0 is the most frequent under the Zipf draw.
CLOTHING_COLOURS: tuple[Colour, ...] = (
    Colour("black", (28, 28, 32)),
    Colour("white", (232, 232, 226)),
    Colour("grey", (128, 128, 132), ("gray",)),
    Colour("blue", (45, 88, 195)),
    Colour("red", (196, 34, 40)),
    Colour("navy", (28, 38, 92), ("dark blue",)),
    Colour("brown", (112, 72, 42)),
    Colour("green", (46, 136, 64)),
    Colour("pink", (236, 138, 176)),
    Colour("beige", (214, 194, 152), ("khaki",)),
    Colour("yellow", (232, 202, 48)),
    Colour("purple", (116, 54, 152)),
    Colour("orange", (236, 124, 34)),
)
# The rare-colour tail (knob ``rare_colours``): colours outside the default palette, drawn with a small
# fixed probability each (RARE_TRAIN_PROB in train, RARE_EVAL_PROB in val and test) before the Zipf draw.
RARE_COLOURS: tuple[Colour, ...] = (
    Colour("teal", (16, 128, 128)),
    Colour("maroon", (112, 22, 40)),
    Colour("turquoise", (64, 204, 192)),
    Colour("lime", (160, 214, 40)),
    Colour("magenta", (204, 36, 156)),
    Colour("gold", (212, 168, 36)),
)
RARE_TRAIN_PROB = 0.002
RARE_EVAL_PROB = 0.03
ALL_CLOTHING_COLOURS: tuple[Colour, ...] = CLOTHING_COLOURS + RARE_COLOURS
HAIR_COLOURS: tuple[Colour, ...] = (
    Colour("black", (22, 20, 20)),
    Colour("brown", (86, 56, 30)),
    Colour("blonde", (212, 176, 98), ("blond",)),
    Colour("grey", (150, 150, 150), ("gray",)),
)
HAIR_COLOUR_PROBS = (0.45, 0.30, 0.17, 0.08)
SKIN_TONES: tuple[tuple[int, int, int], ...] = (
    (246, 214, 186),
    (226, 184, 146),
    (196, 146, 108),
    (152, 104, 72),
    (104, 70, 48),
)

GENDERS = ("male", "female")
HAIR_STYLES = ("short", "long", "ponytail", "bald")
HATS = ("none", "cap", "beanie")
TOPS = ("t-shirt", "shirt", "sweater", "jacket", "coat")
PATTERNS = ("plain", "striped", "logo", "checked")
SLEEVES = ("short", "long")
BOTTOMS = ("trousers", "shorts", "skirt")
BAGS = ("none", "backpack", "shoulder bag", "handbag")
SIDES = ("left", "right")

# Each dependent attribute and the parent value under which it is None.
DEPENDENT: dict[str, tuple[str, str]] = {
    "hair_colour": ("hair_style", "bald"),
    "hat_colour": ("hat", "none"),
    "pattern_colour": ("top_pattern", "plain"),
    "bag_colour": ("bag", "none"),
    "bag_side": ("bag", "none"),
}
# Small attributes a hard-negative partner may differ in.
HARD_NEGATIVE_EDITS = ("shoe_colour", "hat", "bag_side", "bag_colour", "hair_colour")


@dataclass(frozen=True)
class Identity:
    """One SynthPEDES identity: described attributes first, then undescribed body traits."""

    gender: str
    hair_style: str
    hair_colour: str | None
    hat: str
    hat_colour: str | None
    top: str
    top_colour: str
    top_pattern: str
    pattern_colour: str | None
    sleeves: str
    bottom: str
    bottom_colour: str
    shoe_colour: str
    bag: str
    bag_colour: str | None
    bag_side: str | None
    # Undescribed: vary the body, never captioned.
    skin: int  # index into SKIN_TONES
    build: float  # shoulder/hip width factor, about 0.9-1.1
    stature: float  # height factor, about 0.93-1.0

    def described(self) -> tuple[Any, ...]:
        """The attributes a caption can mention, in field order (the identity's key)."""
        return tuple(getattr(self, name) for name in DESCRIBED_FIELDS)

    def as_dict(self) -> dict[str, Any]:
        """Every field by name, as written to ``attributes.json``."""
        return dataclasses.asdict(self)


UNDESCRIBED_FIELDS: tuple[str, ...] = ("skin", "build", "stature")
DESCRIBED_FIELDS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(Identity) if f.name not in UNDESCRIBED_FIELDS
)


def colour_probs(zipf: float, n: int = len(CLOTHING_COLOURS)) -> np.ndarray:
    """Zipf-like probabilities ``p_k ∝ 1 / (k + 1) ** zipf`` over ``n`` colours ranked by frequency."""
    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** zipf
    return weights / weights.sum()


def _pick(rng: AnyRng, values: tuple[str, ...], probs: tuple[float, ...]) -> str:
    """One of ``values`` drawn with probabilities ``probs`` (one uniform draw, inverse CDF)."""
    cumulative = list(itertools.accumulate(probs))
    return values[min(bisect.bisect_right(cumulative, rng.random() * cumulative[-1]), len(values) - 1)]


@functools.lru_cache(maxsize=16)
def _colour_cdf(zipf: float) -> tuple[float, ...]:
    return tuple(float(x) for x in np.cumsum(colour_probs(zipf)))


@dataclass(frozen=True)
class ColourTail:
    """Rare colours: each is drawn with probability ``prob`` before the Zipf draw of the common ones."""

    names: tuple[str, ...]
    prob: float


def clothing_colour(
    rng: AnyRng, zipf: float = 1.0, avoid: str | None = None, tail: ColourTail | None = None
) -> str:
    """A clothing colour drawn with the Zipf-like frequencies of :func:`colour_probs`, never ``avoid``.

    With a ``tail``, one uniform draw first picks each rare colour with probability ``tail.prob``.
    """
    while tail is not None and tail.names:
        k = int(rng.random() / tail.prob)
        if k >= len(tail.names):
            break
        if tail.names[k] != avoid:
            return tail.names[k]
    cdf = _colour_cdf(float(zipf))
    while True:
        index = min(bisect.bisect_right(cdf, rng.random() * cdf[-1]), len(cdf) - 1)
        if CLOTHING_COLOURS[index].name != avoid:
            return CLOTHING_COLOURS[index].name


def sample_identity(rng: np.random.Generator, zipf: float = 1.0, tail: ColourTail | None = None) -> Identity:
    """Draw one identity; clothing colours follow :func:`colour_probs` with exponent ``zipf`` (and ``tail``)."""
    gender = _pick(rng, GENDERS, (0.5, 0.5))
    male = gender == "male"
    hair_style = _pick(rng, HAIR_STYLES, (0.72, 0.10, 0.06, 0.12) if male else (0.22, 0.52, 0.26, 0.0))
    hair_names = tuple(c.name for c in HAIR_COLOURS)
    hair_colour = None if hair_style == "bald" else _pick(rng, hair_names, HAIR_COLOUR_PROBS)
    hat = _pick(rng, HATS, (0.72, 0.17, 0.11))
    top = _pick(rng, TOPS, (0.30, 0.20, 0.15, 0.20, 0.15))
    short_sleeve_prob = {"t-shirt": 0.8, "shirt": 0.5}.get(top, 0.0)
    sleeves = _pick(rng, SLEEVES, (short_sleeve_prob, 1.0 - short_sleeve_prob))
    top_colour = clothing_colour(rng, zipf, tail=tail)
    top_pattern = _pick(rng, PATTERNS, (0.55, 0.2, 0.15, 0.1))
    bottom = _pick(rng, BOTTOMS, (0.76, 0.24, 0.0) if male else (0.5, 0.2, 0.3))
    bag = _pick(rng, BAGS, (0.35, 0.30, 0.20, 0.15))
    return Identity(
        gender=gender,
        hair_style=hair_style,
        hair_colour=hair_colour,
        hat=hat,
        hat_colour=None if hat == "none" else clothing_colour(rng, zipf, tail=tail),
        top=top,
        top_colour=top_colour,
        top_pattern=top_pattern,
        pattern_colour=None if top_pattern == "plain" else clothing_colour(rng, zipf, avoid=top_colour, tail=tail),
        sleeves=sleeves,
        bottom=bottom,
        bottom_colour=clothing_colour(rng, zipf, tail=tail),
        shoe_colour=clothing_colour(rng, zipf, tail=tail),
        bag=bag,
        bag_colour=None if bag == "none" else clothing_colour(rng, zipf, tail=tail),
        bag_side=_pick(rng, SIDES, (0.5, 0.5)) if bag in ("shoulder bag", "handbag") else None,
        skin=int(rng.integers(len(SKIN_TONES))),
        build=round(float(rng.uniform(0.9, 1.1)), 3),
        stature=round(float(rng.uniform(0.93, 1.0)), 3),
    )


def sample_identities(
    n: int, rng: np.random.Generator, zipf: float = 1.0, taken: set[tuple[Any, ...]] | None = None,
    tail: ColourTail | None = None,
) -> list[Identity]:
    """Draw ``n`` identities whose described attributes are new (not in ``taken``, which is updated)."""
    taken = set() if taken is None else taken
    out: list[Identity] = []
    while len(out) < n:
        identity = sample_identity(rng, zipf, tail)
        if identity.described() not in taken:
            taken.add(identity.described())
            out.append(identity)
    return out


def applicable_edits(identity: Identity) -> tuple[str, ...]:
    """The hard-negative edits that make sense for ``identity`` (a bag side needs a side bag...)."""
    edits = ["shoe_colour", "hat"]
    if identity.bag != "none":
        edits.append("bag_colour")
    if identity.bag_side is not None:
        edits.append("bag_side")
    if identity.hair_colour is not None:
        edits.append("hair_colour")
    return tuple(e for e in HARD_NEGATIVE_EDITS if e in edits)


def apply_edit(
    identity: Identity, edit: str, rng: np.random.Generator, zipf: float = 1.0, tail: ColourTail | None = None
) -> Identity:
    """A partner of ``identity`` that differs in the one attribute ``edit`` names.

    ``hat`` adds a hat (type and colour) to a bare head or removes one; the
    other edits change one colour or flip the bag's side.
    """
    if edit not in applicable_edits(identity):
        raise ValueError(
            f"edit {edit!r} does not apply to this identity; choose one of {applicable_edits(identity)}"
        )
    if edit == "hat":
        if identity.hat == "none":
            return dataclasses.replace(
                identity, hat=_pick(rng, HATS[1:], (0.6, 0.4)), hat_colour=clothing_colour(rng, zipf, tail=tail)
            )
        return dataclasses.replace(identity, hat="none", hat_colour=None)
    if edit == "bag_side":
        return dataclasses.replace(identity, bag_side="left" if identity.bag_side == "right" else "right")
    if edit == "hair_colour":
        names = tuple(c.name for c in HAIR_COLOURS if c.name != identity.hair_colour)
        return dataclasses.replace(identity, hair_colour=names[int(rng.integers(len(names)))])
    current = getattr(identity, edit)
    return dataclasses.replace(identity, **{edit: clothing_colour(rng, zipf, avoid=current, tail=tail)})


def attribute_differences(a: Identity, b: Identity) -> list[str]:
    """The described attributes in which ``a`` and ``b`` differ.

    A dependent attribute is reported only when its parent agrees and is not
    the value that disables it, so adding a hat is one difference (``hat``),
    not two.
    """
    diffs = []
    for name in DESCRIBED_FIELDS:
        if name in DEPENDENT:
            parent, off = DEPENDENT[name]
            if getattr(a, parent) != getattr(b, parent) or getattr(a, parent) == off:
                continue
        if getattr(a, name) != getattr(b, name):
            diffs.append(name)
    return diffs


# Garment colours a colour-swap pair exchanges (knob ``colour_swap_fraction``).
SWAP_GARMENTS: tuple[tuple[str, str], ...] = (
    ("top_colour", "bottom_colour"), ("top_colour", "shoe_colour"), ("bottom_colour", "shoe_colour"),
)


def colour_swap(identity: Identity, first: str, second: str) -> Identity | None:
    """``identity`` with the colours of two garments exchanged (red top + blue trousers -> blue top + red
    trousers), or None when they are equal or the swap would put a top's pattern in the top's own colour."""
    a, b = getattr(identity, first), getattr(identity, second)
    if a == b:
        return None
    swapped = dataclasses.replace(identity, **{first: b, second: a})
    if swapped.pattern_colour is not None and swapped.pattern_colour == swapped.top_colour:
        return None
    return swapped
