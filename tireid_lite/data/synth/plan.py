"""What a SynthPEDES dataset holds before anything is drawn: its parameters, identities and ids.

:class:`SynthParams` checks and records the arguments (and hashes them into
the cache key); :func:`plan_identities` draws the identities of every split,
gives them ids, and pairs hard negatives in val and test. Taught in ``01_data``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from tireid_lite.data.synth.attributes import Identity, applicable_edits, apply_edit, sample_identities
from tireid_lite.data.synth.knobs import SynthKnobs
from tireid_lite.data.synth.scene import VIEWS, parse_size
from tireid_lite.errors import ConfigError

GENERATOR_VERSION = 1  # bump when the same parameters would produce different files


@dataclass(frozen=True)
class PlannedIdentity:
    """An identity with its id and split."""

    pid: int
    split: str
    identity: Identity


@dataclass(frozen=True)
class HardNegativePair:
    """Two identities of one split that differ in the one attribute ``attribute`` names."""

    pids: tuple[int, int]
    split: str
    attribute: str


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
        return {
            "generator_version": GENERATOR_VERSION,
            "ids_train": self.ids_train,
            "ids_val": self.ids_val,
            "ids_test": self.ids_test,
            "images_per_id": self.images_per_id,
            "size": list(self.size),
            "seed": self.seed,
            "knobs": self.knobs.as_dict(),
        }

    def cache_key(self) -> str:
        """A short hash of :meth:`record`: equal parameters, equal key."""
        text = json.dumps(self.record(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan_identities(
    params: SynthParams, rng: np.random.Generator
) -> tuple[list[PlannedIdentity], list[HardNegativePair]]:
    """Identities of every split with their ids (1, 2, ... across splits) and the hard-negative pairs.

    In val and test, ``hard_negative_fraction`` of the identities come in pairs
    that differ in one small attribute (shoe colour, a hat, a bag's side or
    colour, hair colour); every identity's described attributes are unique.
    """
    taken: set[tuple[Any, ...]] = set()
    zipf = params.knobs.colour_zipf
    planned: list[PlannedIdentity] = []
    pairs: list[HardNegativePair] = []
    next_pid = 1
    for split, count in (("train", params.ids_train), ("val", params.ids_val), ("test", params.ids_test)):
        groups: list[tuple[Identity, ...]] = []
        edits: list[str | None] = []
        n_pairs = int(params.knobs.hard_negative_fraction * count) // 2 if split != "train" else 0
        while len(groups) < n_pairs:
            base = sample_identities(1, rng, zipf, taken)[0]
            options = applicable_edits(base)
            edit = options[int(rng.integers(len(options)))]
            partner = apply_edit(base, edit, rng, zipf)
            if partner.described() in taken:
                continue
            taken.add(partner.described())
            groups.append((base, partner))
            edits.append(edit)
        for single in sample_identities(count - 2 * n_pairs, rng, zipf, taken):
            groups.append((single,))
            edits.append(None)
        for g in rng.permutation(len(groups)):  # partners keep neighbouring ids; groups are shuffled
            pids = []
            for identity in groups[g]:
                planned.append(PlannedIdentity(next_pid, split, identity))
                pids.append(next_pid)
                next_pid += 1
            if edits[g] is not None:
                pairs.append(HardNegativePair((pids[0], pids[1]), split, edits[g]))
    return planned, pairs


def views_for(images: int, rng: np.random.Generator) -> list[str]:
    """``images`` views cycling through shuffled rounds of all four views."""
    views: list[str] = []
    while len(views) < images:
        views += [VIEWS[i] for i in rng.permutation(len(VIEWS))]
    return views[:images]
