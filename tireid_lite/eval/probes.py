"""Mechanism probes that need only scores and labels: hard-negative partners, rare colours, noise detection.

R@1 says how often the right person comes first; a probe asks whether the
*mechanism* a paper adds does what it claims, each beside the control that a
model without it would score:

* :func:`partner_probe`: on hard-negative pairs (two identities that differ in
  one small attribute, ``hard_negative_pairs`` of ``attributes.json``) and on
  colour-swap pairs (``colour_swap_pairs``, when the dataset marks them), the
  share of captions that name the separating attribute for which the true
  identity scores above its partner. Chance is 50%; the 95% interval is
  Wilson's binomial interval (:func:`wilson_interval`);
* :func:`rare_colour_probe`: R@1 on the queries that name a rare colour,
  beside the other queries; rarity from ``rare_colours`` of
  ``attributes.json`` when marked, else from the colour words' counts in the
  training captions;
* :func:`detection_probe`: precision, recall and F1 of a noise partitioner
  beside a random flagger that flags as many pairs (its expected values are
  exact, see the function).

The probes that run a model's heads (masked words, masked patches) live in
:mod:`tireid_lite.eval.head_probes`. Taught in ``10_paper_tables``; used by
``tireid grid``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tireid_lite.eval.colour_matching import (
    COLOUR_NAMES,
    COLOUR_WORDS,
    caption_colour_vector,
)

# The grammar's words for each attribute a hard-negative pair may differ in: a caption names the
# separating feature when it uses one of them (for ``hat`` only the wearer's captions can: the
# grammar never writes "no hat"). Counted over captions in ``01_data`` (the pairs' ceiling).
TELLING_WORDS: dict[str, frozenset[str]] = {
    "shoe_colour": frozenset({"shoes", "sneakers"}),
    "hat": frozenset({"cap", "beanie", "knit"}),
    "bag_side": frozenset({"left", "right"}),
    "bag_colour": frozenset({"bag", "backpack", "handbag"}),
    "hair_colour": frozenset({"hair", "ponytail"}),
}
_WORD = re.compile(r"[a-z]+")


def words_of(caption: str) -> set[str]:
    """The lower-case words of ``caption`` (letters only)."""
    return set(_WORD.findall(caption.lower()))


def wilson_interval(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for a binomial share ``successes / trials`` (both bounds in [0, 1]).

    ``(p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)`` with ``z`` the
    normal quantile of ``level``; ``(0, 1)`` when there are no trials.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level} must be in (0, 1), e.g. 0.95")
    if trials < 0 or not 0 <= successes <= max(trials, 0):
        raise ValueError(f"successes={successes} and trials={trials}: need 0 <= successes <= trials")
    if trials == 0:
        return 0.0, 1.0
    z = _normal_quantile(0.5 + level / 2)
    p = successes / trials
    centre = p + z * z / (2 * trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    scale = 1 + z * z / trials
    return max(0.0, (centre - half) / scale), min(1.0, (centre + half) / scale)


def _normal_quantile(q: float) -> float:
    """The standard normal quantile (bisection on ``erf``; exact to 1e-12, no scipy needed)."""
    low, high = -10.0, 10.0
    for _ in range(100):
        mid = (low + high) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < q:
            low = mid
        else:
            high = mid
    return (low + high) / 2


@dataclass(frozen=True)
class ShareProbe:
    """A share of trials won, against a chance level, with its Wilson interval."""

    name: str
    wins: int
    trials: int
    chance: float
    low: float
    high: float
    note: str = ""

    @property
    def share(self) -> float:
        return self.wins / self.trials if self.trials else float("nan")

    @property
    def above_chance(self) -> bool:
        """True when the whole interval lies above the chance level."""
        return self.trials > 0 and self.low > self.chance

    @property
    def verdict(self) -> str:
        if not self.trials:
            return f"{self.name}: no trials ({self.note or 'nothing to count'})"
        side = ("above chance" if self.low > self.chance else "below chance" if self.high < self.chance
                else "not distinguishable from chance")
        return (f"{self.name}: {self.share:.1%} of {self.trials} [{self.low:.1%}, {self.high:.1%}] "
                f"(chance {self.chance:.0%}, Wilson 95%): {side}")

    def as_dict(self) -> dict[str, float | int | bool | str]:
        return {"share": self.share if self.trials else None, "wins": self.wins, "trials": self.trials,
                "chance": self.chance, "low": self.low, "high": self.high, "above_chance": self.above_chance,
                "note": self.note}


def caption_tells(caption: str, attribute: str) -> bool:
    """Whether ``caption`` names the feature separating a pair that differs in ``attribute``.

    Known attributes use :data:`TELLING_WORDS`; a colour-swap pair
    (``attribute`` ``"colour_swap:<colour>,<colour>"``, see :func:`pair_attribute`)
    counts a caption naming one of the swapped colours; any other kind counts a
    caption that names a colour at all.
    """
    if attribute.startswith("colour_swap:"):
        colours = [c for c in attribute.split(":", 1)[1].split(",") if c]
        return bool(colours) and bool(_phrases(colours).search(caption.lower()))
    words = words_of(caption)
    telling = TELLING_WORDS.get(attribute)
    if telling is None:
        return bool(words & COLOUR_WORDS)
    return bool(words & telling)


def _phrases(names: Iterable[str]) -> re.Pattern:
    """A pattern matching any of ``names`` as whole words (longest first)."""
    ordered = sorted({n.lower() for n in names}, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(map(re.escape, ordered)) + r")\b")


def pair_attribute(pair: Mapping) -> str:
    """What separates a marked pair: its ``attribute``, or for a colour-swap pair (``colours`` listed)
    ``"colour_swap:<colour>,<colour>"``."""
    if "attribute" in pair:
        return str(pair["attribute"])
    if "colours" in pair:
        return "colour_swap:" + ",".join(str(c) for c in pair["colours"])
    return ""


def partner_outcomes(
    sim,
    q_pids: Sequence[int],
    g_pids: Sequence[int],
    captions: Sequence[str],
    pairs: Iterable[Mapping],
    *,
    tells: Callable[[str, str], bool] = caption_tells,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """The queries :func:`partner_probe` counts and whether each wins: ``(index (T,), wins (T,) bool,
    any_pair)``, ``any_pair`` False when no pair has both identities in the gallery. The same queries
    for every model of the same data, so two arms can be compared query by query."""
    scores = np.asarray(sim.detach().cpu().float() if hasattr(sim, "detach") else sim, dtype=np.float64)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    if scores.shape != (len(q_pids), len(g_pids)):
        raise ValueError(f"sim has shape {scores.shape} but there are {len(q_pids)} queries and {len(g_pids)} "
                         "gallery images; pass the split's own scores")
    if len(captions) != len(q_pids):
        raise ValueError(f"{len(captions)} captions for {len(q_pids)} queries; pass the split's query captions")
    in_gallery = set(g_pids.tolist())
    partner, attribute = {}, {}
    for pair in pairs:
        a, b = (int(i) for i in pair["ids"])
        if a in in_gallery and b in in_gallery:
            partner[a], partner[b] = b, a
            attribute[a] = attribute[b] = pair_attribute(pair)
    columns = {pid: np.flatnonzero(g_pids == pid) for pid in partner}
    index, wins = [], []
    for q, pid in enumerate(q_pids.tolist()):
        if pid not in partner or not tells(captions[q], attribute[pid]):
            continue
        index.append(q)
        wins.append(scores[q, columns[pid]].max() > scores[q, columns[partner[pid]]].max())
    return np.asarray(index, dtype=np.int64), np.asarray(wins, dtype=bool), bool(partner)


def partner_probe(
    sim,
    q_pids: Sequence[int],
    g_pids: Sequence[int],
    captions: Sequence[str],
    pairs: Iterable[Mapping],
    *,
    name: str = "hard-negative partners",
    tells: Callable[[str, str], bool] = caption_tells,
    level: float = 0.95,
) -> ShareProbe:
    """The share of telling captions whose own identity outscores its partner (see module docstring).

    ``sim`` (Q, G) scores of the split; ``pairs`` are records with ``ids``
    (two identities) and ``attribute`` (what separates them), as written to
    ``attributes.json``; pairs whose identities are not both in the gallery are
    skipped. A query *wins* when the best score among its own identity's
    images is above the best among its partner's (a tie loses). Only captions
    for which ``tells(caption, attribute)`` holds count: a caption that does not
    name the difference cannot separate the partners.
    """
    _, wins, any_pair = partner_outcomes(sim, q_pids, g_pids, captions, pairs, tells=tells)
    low, high = wilson_interval(int(wins.sum()), len(wins), level)
    note = "" if any_pair else "no pair of this kind has both identities in the split"
    return ShareProbe(name=name, wins=int(wins.sum()), trials=len(wins), chance=0.5, low=low, high=high, note=note)


def split_pairs(attributes: Mapping, key: str, split: str) -> list[dict] | None:
    """The pairs listed under ``key`` of ``attributes.json`` for ``split``; ``None`` when the dataset does
    not mark that kind of pair at all (so a probe can say it is absent rather than report zero)."""
    if key not in attributes:
        return None
    return [dict(pair) for pair in attributes[key] if pair.get("split", split) == split]


def colour_counts(captions: Iterable[str]) -> Counter:
    """How often each colour of :data:`~tireid_lite.eval.colour_matching.COLOUR_NAMES` is named in
    ``captions`` (a synonym counts for its colour: "gray" for grey)."""
    total = np.zeros(len(COLOUR_NAMES))
    for caption in captions:
        total += caption_colour_vector(caption)
    return Counter({name: int(n) for name, n in zip(COLOUR_NAMES, total)})


def rare_colours_from_counts(counts: Mapping[str, int], share: float = 0.1) -> frozenset[str]:
    """The colours that together make up at most ``share`` of all colour mentions, rarest first
    (a colour never named is not counted as rare: no query names it)."""
    if not 0.0 < share < 1.0:
        raise ValueError(f"share={share} must be in (0, 1), e.g. 0.1 for the rarest tenth of mentions")
    total = sum(counts.values())
    rare, seen = set(), 0
    for word, count in sorted(counts.items(), key=lambda item: (item[1], item[0])):
        if count == 0:
            continue
        if seen + count > share * total:
            break
        rare.add(word)
        seen += count
    return frozenset(rare)


@dataclass(frozen=True)
class RareColourProbe:
    rare_words: tuple[str, ...]
    source: str  # "attributes.json" or "training counts"
    r1_rare: float
    r1_other: float
    rare_queries: int
    other_queries: int

    def as_dict(self) -> dict:
        return {"rare_words": list(self.rare_words), "source": self.source, "R1_rare": self.r1_rare,
                "R1_other": self.r1_other, "rare_queries": self.rare_queries, "other_queries": self.other_queries}


def rare_colour_mask(captions: Sequence[str], rare_colours: Iterable[str]) -> np.ndarray:
    """(Q,) bool: the caption names one of ``rare_colours``. A colour of the kit's palette counts with its
    synonyms ("gray" for grey); any other name (a dataset's own shade) counts where it is written."""
    rare = sorted(set(rare_colours))
    columns = [COLOUR_NAMES.index(c) for c in rare if c in COLOUR_NAMES]
    others = [c for c in rare if c not in COLOUR_NAMES]
    pattern = _phrases(others) if others else None
    return np.array([bool(caption_colour_vector(c)[columns].any())
                     or bool(pattern is not None and pattern.search(c.lower())) for c in captions], dtype=bool)


def _rare_names(record) -> list[str]:
    if isinstance(record, Mapping):
        return [str(record["colour"]), *(str(w) for w in record.get("words", ()))]
    return [str(record)]


def rare_colour_probe(
    r1: Sequence[float],
    captions: Sequence[str],
    *,
    attributes: Mapping | None = None,
    train_captions: Iterable[str] | None = None,
    share: float = 0.1,
) -> RareColourProbe:
    """R@1 (per query, 0/100) on the queries naming a rare colour and on the others.

    The rare colours are ``attributes["rare_colours"]`` when the dataset marks
    them (names, or records with a ``colour`` and the ``words`` a caption uses
    for it), else :func:`rare_colours_from_counts` of ``train_captions``.
    """
    r1 = np.asarray(r1, dtype=np.float64)
    if len(r1) != len(captions):
        raise ValueError(f"{len(r1)} per-query values for {len(captions)} captions; pass the same split's")
    if attributes is not None and "rare_colours" in attributes:
        words, source = frozenset(w for r in attributes["rare_colours"] for w in _rare_names(r)), "attributes.json"
    elif train_captions is not None:
        words, source = rare_colours_from_counts(colour_counts(train_captions), share), "training counts"
    else:
        raise ValueError("no rare colours: attributes.json does not mark `rare_colours`; pass train_captions "
                         "to count them")
    mask = rare_colour_mask(captions, words)
    return RareColourProbe(
        rare_words=tuple(sorted(words)), source=source,
        r1_rare=float(r1[mask].mean()) if mask.any() else float("nan"),
        r1_other=float(r1[~mask].mean()) if (~mask).any() else float("nan"),
        rare_queries=int(mask.sum()), other_queries=int((~mask).sum()),
    )


def random_flagger(flagged: int, noisy: int, total: int) -> dict[str, float]:
    """Expected precision, recall and F1 of flagging ``flagged`` of ``total`` pairs uniformly at random
    when ``noisy`` of them are noisy.

    The true positives TP are hypergeometric with mean ``flagged * noisy / total``;
    precision = TP / flagged, recall = TP / noisy and F1 = 2 TP / (flagged + noisy)
    are linear in TP (their denominators are fixed), so their expectations are
    exact: ``noisy / total``, ``flagged / total`` and
    ``2 flagged noisy / (total (flagged + noisy))``.
    """
    if total <= 0 or not 0 <= flagged <= total or not 0 <= noisy <= total:
        raise ValueError(f"flagged={flagged}, noisy={noisy}, total={total}: need 0 <= flagged, noisy <= total > 0")
    tp = flagged * noisy / total
    return {"precision": tp / flagged if flagged else 1.0, "recall": tp / noisy if noisy else 1.0,
            "f1": 2 * tp / (flagged + noisy) if flagged + noisy else 1.0}


def detection_probe(flagged, noisy) -> dict[str, float]:
    """Precision, recall, F1 of ``flagged`` (N,) bool against the truth ``noisy`` (N,) bool, beside the
    random flagger's exact expectations (``random_*``) and ``f1_over_random`` (the floor a partitioner
    must clear)."""
    pred, true = np.asarray(flagged, dtype=bool), np.asarray(noisy, dtype=bool)
    if pred.shape != true.shape or pred.ndim != 1:
        raise ValueError(f"flagged {pred.shape} and noisy {true.shape} must be (N,) arrays of the same length")
    return detection_from_counts(int((pred & true).sum()), int(pred.sum()), int(true.sum()), len(true))


def detection_from_counts(tp: int, flagged: int, noisy: int, total: int) -> dict[str, float]:
    """:func:`detection_probe` from the confusion counts alone (what a training log keeps)."""
    if not 0 <= tp <= min(flagged, noisy):
        raise ValueError(f"tp={tp} must lie in [0, min(flagged={flagged}, noisy={noisy})]")
    chance = random_flagger(flagged, noisy, total)
    out = {"precision": tp / flagged if flagged else 1.0, "recall": tp / noisy if noisy else 1.0,
           "f1": 2 * tp / (flagged + noisy) if flagged + noisy else 1.0,
           "flag_rate": flagged / total, "noisy_rate": noisy / total}
    out.update({f"random_{k}": v for k, v in chance.items()})
    out["f1_over_random"] = out["f1"] - out["random_f1"]
    return out


def detection_from_record(record: Mapping, noisy: int | None = None) -> dict[str, float]:
    """:func:`detection_from_counts` of one partition record of a training history (``partition_*`` keys).

    The true noisy count is the record's ``partition_true_noisy``; an older
    record without it gives it back from ``tp / recall``, else ``noisy`` must
    be passed (e.g. the training set's injected noisy pairs).
    """
    needed = {"partition_precision", "partition_recall", "partition_clean", "partition_noisy", "partition_uncertain"}
    if not needed <= set(record):
        raise ValueError(f"not a partition record: it lacks {sorted(needed - set(record))}; pass an entry of "
                         "history() logged after the warm-up")
    total = int(record["partition_clean"] + record["partition_noisy"] + record["partition_uncertain"])
    flagged = int(record["partition_noisy"])
    tp = round(record["partition_precision"] * flagged)
    if "partition_true_noisy" in record:
        noisy = int(record["partition_true_noisy"])
    elif record["partition_recall"] > 0:
        noisy = round(tp / record["partition_recall"])
    elif noisy is None:
        raise ValueError("the record keeps no true noisy count and flagged no noisy pair; pass noisy= "
                         "(the training set's injected noisy pairs)")
    return detection_from_counts(tp, flagged, int(noisy), total)
