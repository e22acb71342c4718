"""What a SynthPEDES ``attributes.json`` marks for probes and samplers, read in one place.

:func:`read_markings` returns a :class:`SynthMarkings`: the hard-negative and
colour-swap pairs (with their split), the rare colours and their words, each
identity's difficulty and rich detail, and each image's distractor count. A
marking whose knob was off is empty (the file then has no such key), so code
that reads them works on every SynthPEDES, the kit's default draw included. The
keys are described in :mod:`tireid_lite.data.synth.generate`. Taught in ``01_data``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tireid_lite.errors import DatasetError


@dataclass(frozen=True)
class HardNegativeMark:
    """Two identities that differ in the one described attribute ``attribute``."""

    ids: tuple[int, int]
    split: str
    attribute: str


@dataclass(frozen=True)
class ColourSwapMark:
    """Two identities whose ``garments`` wear ``colours`` (the first) and the swapped colours (the second)."""

    ids: tuple[int, int]
    split: str
    garments: tuple[str, str]
    colours: tuple[str, str]


@dataclass(frozen=True)
class RareColourMark:
    """A tail colour: the words that name it and how many identities of each split wear it."""

    colour: str
    words: tuple[str, ...]
    rgb: tuple[int, int, int]
    identities: dict[str, int]  # split -> identities wearing it


@dataclass(frozen=True)
class SynthMarkings:
    """Every marking of one SynthPEDES (empty where its knob was off)."""

    hard_negative_pairs: list[HardNegativeMark] = field(default_factory=list)
    colour_swap_pairs: list[ColourSwapMark] = field(default_factory=list)
    rare_colours: list[RareColourMark] = field(default_factory=list)
    difficulty: dict[int, str] = field(default_factory=dict)  # id -> normal | dark | occluded
    detail: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> the identity's rich detail
    distractors: dict[str, int] = field(default_factory=dict)  # image file_path -> distractor people

    def partners(self, split: str) -> list[tuple[int, int]]:
        """The id pairs of ``split`` that a hard-negative sampler keeps together: hard negatives, then colour swaps."""
        return [m.ids for m in self.hard_negative_pairs if m.split == split] + [
            m.ids for m in self.colour_swap_pairs if m.split == split
        ]

    def rare_words(self) -> set[str]:
        """Every word that names a rare colour (a query holding one asks for a colour rare in train)."""
        return {w for m in self.rare_colours for w in m.words}


def read_markings(root: str | os.PathLike[str]) -> SynthMarkings:
    """The markings of the SynthPEDES at ``root`` (its ``attributes.json``)."""
    path = Path(root) / "attributes.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return SynthMarkings(
            hard_negative_pairs=[
                HardNegativeMark((int(p["ids"][0]), int(p["ids"][1])), str(p["split"]), str(p["attribute"]))
                for p in record.get("hard_negative_pairs", [])
            ],
            colour_swap_pairs=[
                ColourSwapMark((int(p["ids"][0]), int(p["ids"][1])), str(p["split"]),
                               (str(p["garments"][0]), str(p["garments"][1])),
                               (str(p["colours"][0]), str(p["colours"][1])))
                for p in record.get("colour_swap_pairs", [])
            ],
            rare_colours=[
                RareColourMark(str(r["colour"]), tuple(str(w) for w in r["words"]),
                               (int(r["rgb"][0]), int(r["rgb"][1]), int(r["rgb"][2])),
                               {s: int(r[f"{s}_identities"]) for s in ("train", "val", "test")})
                for r in record.get("rare_colours", [])
            ],
            difficulty={int(p["id"]): str(p["difficulty"]) for p in record["identities"] if "difficulty" in p},
            detail={int(p["id"]): dict(p["detail"]) for p in record["identities"] if "detail" in p},
            distractors={str(i["file_path"]): int(i["distractors"]) for i in record["images"] if "distractors" in i},
        )
    except FileNotFoundError:
        raise DatasetError(f"{path} is missing; the markings are in the attributes.json of a SynthPEDES "
                           "(tireid synth --out DIR, or the cached draw)") from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, IndexError) as err:
        raise DatasetError(f"{path} does not hold readable SynthPEDES markings ({type(err).__name__}: {err}); "
                           "regenerate the dataset with tireid synth") from None
