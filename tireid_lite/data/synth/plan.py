"""What a SynthPEDES dataset holds before anything is drawn: its parameters, identities and ids.

:class:`SynthParams` checks and records the arguments (and hashes them into
the cache key); :func:`plan_identities` draws the identities of every split,
gives them ids, pairs hard negatives (and, with the detail knobs, colour swaps),
and gives rich identities their detail and difficulty. Taught in ``01_data``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from tireid_lite.data.synth.attributes import (
    RARE_COLOURS, RARE_EVAL_PROB, RARE_TRAIN_PROB, SWAP_GARMENTS, ColourTail, Identity, applicable_edits, apply_edit,
    colour_swap, sample_identities,
)
from tireid_lite.data.synth.knobs import SynthKnobs
from tireid_lite.data.synth.scene import VIEWS, parse_size
from tireid_lite.data.synth.vocab import Detail, draw_detail, partner_detail
from tireid_lite.errors import ConfigError

GENERATOR_VERSION = 1  # bump when the same parameters would produce different files
DETAIL_VERSION = 2  # the same, for draws with a detail knob on (recorded only for them)


@dataclass(frozen=True)
class PlannedIdentity:
    """An identity with its id and split."""

    pid: int
    split: str
    identity: Identity
    detail: Detail | None = None  # vocabulary=rich
    difficulty: str = "normal"  # normal | dark | occluded (knobs dark_fraction, occluded_fraction)


@dataclass(frozen=True)
class HardNegativePair:
    """Two identities of one split that differ in the one attribute ``attribute`` names."""

    pids: tuple[int, int]
    split: str
    attribute: str


@dataclass(frozen=True)
class ColourSwapPair:
    """Two identities of one split whose ``garments`` (two colour fields) have exchanged colours.

    ``colours`` are the first identity's colours of the two garments, in order;
    the second identity wears them the other way round.
    """

    pids: tuple[int, int]
    split: str
    garments: tuple[str, str]
    colours: tuple[str, str]


@dataclass(frozen=True)
class SynthParams:
    """Everything that determines a SynthPEDES dataset's bytes."""

    ids_train: int
    ids_val: int
    ids_test: int
    images_per_id: int
    size: tuple[int, int]
    seed: int
    knobs: SynthKnobs

    @classmethod
    def build(
        cls,
        ids_train: int,
        ids_val: int,
        ids_test: int,
        images_per_id: int,
        size: tuple[int, int],
        seed: int,
        knobs: dict[str, Any],
    ) -> "SynthParams":
        """Check every value and build; errors name the parameter and the fix."""
        counts = (("ids_train", ids_train, 1), ("ids_val", ids_val, 0), ("ids_test", ids_test, 1),
                  ("images_per_id", images_per_id, 1), ("seed", seed, 0))
        for name, value, low in counts:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ConfigError(f"SynthPEDES {name}={value!r} is not valid; give an integer >= {low}")
        if images_per_id > 99:
            raise ConfigError(f"SynthPEDES images_per_id={images_per_id} is too many; give at most 99")
        return cls(
            int(ids_train), int(ids_val), int(ids_test), int(images_per_id), parse_size(size), int(seed),
            SynthKnobs.from_kwargs(**knobs),
        )

    def record(self) -> dict[str, Any]:
        """The parameters as plain JSON values (written to ``attributes.json``, hashed for the cache key)."""
        record: dict[str, Any] = {
            "generator_version": GENERATOR_VERSION,
            "ids_train": self.ids_train,
            "ids_val": self.ids_val,
            "ids_test": self.ids_test,
            "images_per_id": self.images_per_id,
            "size": list(self.size),
            "seed": self.seed,
            "knobs": self.knobs.as_dict(),
        }
        if self.knobs.detail_on:
            record["detail_version"] = DETAIL_VERSION
        return record

    def cache_key(self) -> str:
        """A short hash of :meth:`record`: equal parameters, equal key."""
        text = json.dumps(self.record(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan_identities(
    params: SynthParams, rng: np.random.Generator
) -> tuple[list[PlannedIdentity], list[HardNegativePair], list[ColourSwapPair]]:
    """Identities of every split with their ids (1, 2, ... across splits), hard-negative and colour-swap pairs.

    In val and test, ``hard_negative_fraction`` of the identities come in pairs
    that differ in one small attribute (shoe colour, a hat, a bag's side or
    colour, hair colour); in train, ``train_hard_negative_fraction``. Then
    ``colour_swap_fraction`` of each split's identities come in pairs whose two
    garments' colours are exchanged. Every identity's described attributes are
    unique. With ``rare_colours`` the tail colours are drawn with
    ``RARE_TRAIN_PROB`` each in train and ``RARE_EVAL_PROB`` in val and test.
    With ``vocabulary=rich`` each identity gets its detail (a partner shares its
    base's, redrawn where they differ); with ``dark_fraction`` /
    ``occluded_fraction`` its difficulty. These draws come after the default ones.
    """
    knobs = params.knobs
    taken: set[tuple[Any, ...]] = set()
    zipf = knobs.colour_zipf
    rare = tuple(c.name for c in RARE_COLOURS[: knobs.rare_colours])
    planned: list[PlannedIdentity] = []
    pairs: list[HardNegativePair] = []
    swaps: list[ColourSwapPair] = []
    next_pid = 1
    for split, count in (("train", params.ids_train), ("val", params.ids_val), ("test", params.ids_test)):
        tail = ColourTail(rare, RARE_TRAIN_PROB if split == "train" else RARE_EVAL_PROB) if rare else None
        groups: list[tuple[Identity, ...]] = []
        edits: list[tuple[str, Any] | None] = []  # ("edit", attribute) | ("swap", (field, field)) | None
        fraction = knobs.train_hard_negative_fraction if split == "train" else knobs.hard_negative_fraction
        n_pairs = int(fraction * count) // 2
        while len(groups) < n_pairs:
            base = sample_identities(1, rng, zipf, taken, tail)[0]
            options = applicable_edits(base)
            edit = options[int(rng.integers(len(options)))]
            partner = apply_edit(base, edit, rng, zipf, tail)
            if partner.described() in taken:
                continue
            taken.add(partner.described())
            groups.append((base, partner))
            edits.append(("edit", edit))
        n_swaps = min(int(knobs.colour_swap_fraction * count) // 2, (count - 2 * n_pairs) // 2)
        while len(groups) < n_pairs + n_swaps:
            base = sample_identities(1, rng, zipf, taken, tail)[0]
            garments = SWAP_GARMENTS[int(rng.integers(len(SWAP_GARMENTS)))]
            swapped = colour_swap(base, *garments)
            if swapped is None or swapped.described() in taken:
                continue
            taken.add(swapped.described())
            groups.append((base, swapped))
            edits.append(("swap", garments))
        for single in sample_identities(count - 2 * (n_pairs + n_swaps), rng, zipf, taken, tail):
            groups.append((single,))
            edits.append(None)
        first = len(planned)
        for g in rng.permutation(len(groups)):  # partners keep neighbouring ids; groups are shuffled
            pids = []
            for identity in groups[g]:
                planned.append(PlannedIdentity(next_pid, split, identity))
                pids.append(next_pid)
                next_pid += 1
            kind = edits[g]
            if kind is not None and kind[0] == "edit":
                pairs.append(HardNegativePair((pids[0], pids[1]), split, kind[1]))
            elif kind is not None:
                base = groups[g][0]
                swaps.append(ColourSwapPair((pids[0], pids[1]), split, kind[1],
                                            (getattr(base, kind[1][0]), getattr(base, kind[1][1]))))
        if knobs.vocabulary == "rich":
            _add_details(planned, first, groups, edits, rng, zipf)
    if knobs.dark_fraction > 0 or knobs.occluded_fraction > 0:
        for i, p in enumerate(planned):
            u = float(rng.random())
            level = "dark" if u < knobs.dark_fraction else (
                "occluded" if u < knobs.dark_fraction + knobs.occluded_fraction else "normal")
            planned[i] = dataclasses.replace(p, difficulty=level)
    return planned, pairs, swaps


def _add_details(planned: list[PlannedIdentity], first: int, groups: list[tuple[Identity, ...]],
                 edits: list[tuple[str, Any] | None], rng: np.random.Generator, zipf: float) -> None:
    """Give the identities ``planned[first:]`` (one split, in id order) their rich detail, partners alike."""
    by_identity = {id(g[0]): (g, e) for g, e in zip(groups, edits)}
    i = first
    while i < len(planned):
        group, edit = by_identity[id(planned[i].identity)]
        base = draw_detail(group[0], rng, zipf)
        planned[i] = dataclasses.replace(planned[i], detail=base)
        if len(group) == 2:
            swap = edit[1] if edit is not None and edit[0] == "swap" else None
            planned[i + 1] = dataclasses.replace(
                planned[i + 1], detail=partner_detail(base, group[1], group[0], rng, swap=swap)
            )
        i += len(group)


def views_for(images: int, rng: np.random.Generator) -> list[str]:
    """``images`` views cycling through shuffled rounds of all four views."""
    views: list[str] = []
    while len(views) < images:
        views += [VIEWS[i] for i in rng.permutation(len(VIEWS))]
    return views[:images]
