"""Floors that catch a broken mechanism: a probe must beat its control by a margin, not only land near a value.

A regression that checks R@1 within +-3 points passes when a head is cut off:
R@1 barely depends on the MLM head, and a MIM head that ignores the caption
still scores its position prior. A *floor* compares a probe with the control
measured beside it, in the same run::

    metric - control >= min_gap

* ``mlm_colour_true - mlm_colour_shuffled``: the MLM head names more masked
  colours with the caption's own image than with another identity's
  (:func:`~tireid_lite.eval.head_probes.mlm_image_probe`);
* ``mim_small_with_caption - mim_small_prior``: the MIM head beats the
  position-only prior on the small parts
  (:func:`~tireid_lite.eval.head_probes.mim_caption_probe`);
* ``detection_f1 - detection_random_f1``: the partitioner beats a random
  flagger with its flag rate (:func:`~tireid_lite.eval.probes.detection_probe`);
* ``mlm_any_true - mlm_any_prior``: the MLM head names more of a random 15%
  of masked words than always naming the commonest one (a head cut off from
  its input, or untrained, sits at that prior);
* ``mim_with_caption - mim_without_caption``: the MIM head names more masked
  patches with the image's caption than with an empty one (a head that
  ignores the caption gains nothing);
* ``kept_on_person - person_share``: the patches kept by importance lie on
  the person more often than patches drawn at random;
* ``partner_share - partner_chance``: captions naming the attribute that
  separates hard-negative partners rank their own person above the partner
  more often than a coin (:func:`~tireid_lite.eval.probes.partner_probe`).

A golden floor names the metric and the control as its notebook writes them
(e.g. ``F1_ccd_50`` and ``F1_random_ccd_50``); :data:`FLOORS` gives the kit's
default names and what each floor catches.

Golden files (``tests/golden/*.json``) may hold a ``floors`` section with one
entry per floor: ``{"metric", "control", "min_gap", "why"}``; the regression
test reports every floor that is not met (:func:`check_floors`). Taught in
``10_paper_tables``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

# The kit's floors, by name: metric, control, and what a broken mechanism looks like.
FLOORS: dict[str, dict[str, str]] = {
    "mlm_reads_the_image": {"metric": "mlm_colour_true", "control": "mlm_colour_shuffled",
                            "broken": "the MLM head guesses colours as well with another person's image"},
    "mim_beats_the_prior": {"metric": "mim_small_with_caption", "control": "mim_small_prior",
                            "broken": "the MIM head names small parts no better than where they usually are"},
    "detection_beats_chance": {"metric": "detection_f1", "control": "detection_random_f1",
                               "broken": "the partitioner flags noisy pairs no better than at random"},
    "mlm_beats_the_word_prior": {"metric": "mlm_any_true", "control": "mlm_any_prior",
                                 "broken": "the MLM head names masked words no better than always naming the commonest"},
    "mim_reads_the_caption": {"metric": "mim_with_caption", "control": "mim_without_caption",
                              "broken": "the MIM head names masked patches as well without the caption"},
    "importance_keeps_the_person": {"metric": "kept_on_person_mean", "control": "person_share",
                                    "broken": "the kept patches lie on the person no more often than random ones"},
    "partners_beat_chance": {"metric": "partner_share_hard_negative", "control": "partner_chance",
                             "broken": "the model ranks a person above the hard-negative partner no more often than a coin"},
}


def check_floors(metrics: Mapping[str, float], floors: Mapping[str, Mapping]) -> list[str]:
    """One line per floor of ``floors`` that ``metrics`` does not meet (empty when all hold).

    Each floor is ``{"metric": M, "control": C, "min_gap": g, "why": ...}``:
    it holds when ``metrics[M] - metrics[C] >= g``. A metric or control that
    was not written, or is not a finite number, fails the floor.
    """
    problems = []
    for name, floor in sorted(floors.items()):
        if not {"metric", "control", "min_gap", "why"} <= set(floor) or not str(floor["why"]).strip():
            problems.append(f"floor {name}: needs 'metric', 'control', 'min_gap' and a non-empty 'why'")
            continue
        values = [metrics.get(floor[k]) for k in ("metric", "control")]
        missing = [floor[k] for k, v in zip(("metric", "control"), values)
                   if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)]
        if missing:
            problems.append(f"floor {name}: {', '.join(missing)} not written (or not a finite number)")
            continue
        gap = values[0] - values[1]
        if gap < float(floor["min_gap"]):
            problems.append(f"floor {name}: {floor['metric']} {values[0]:.2f} - {floor['control']} {values[1]:.2f} "
                            f"= {gap:+.2f}, below the floor {float(floor['min_gap']):+.2f} ({floor['why']})")
    return problems
