"""Mechanism floors: a probe minus its control must reach a margin; a head cut off from its input fails."""

from __future__ import annotations

import numpy as np

from tireid_lite.eval.floors import FLOORS, check_floors
from tireid_lite.eval.probes import detection_probe


def _floor(name: str, min_gap: float) -> dict:
    return {**{k: FLOORS[name][k] for k in ("metric", "control")}, "min_gap": min_gap, "why": FLOORS[name]["broken"]}


def test_check_floors_by_hand():
    floors = {"mlm": _floor("mlm_reads_the_image", 5.0)}
    assert check_floors({"mlm_colour_true": 30.0, "mlm_colour_shuffled": 20.0}, floors) == []
    assert check_floors({"mlm_colour_true": 22.0, "mlm_colour_shuffled": 20.0}, floors) == [
        ("floor mlm: mlm_colour_true 22.00 - mlm_colour_shuffled 20.00 = +2.00, below the floor +5.00 "
         "(the MLM head guesses colours as well with another person's image)")]
    assert check_floors({"mlm_colour_true": 22.0}, floors) == [
        "floor mlm: mlm_colour_shuffled not written (or not a finite number)"]
    assert check_floors({"mlm_colour_true": float("nan"), "mlm_colour_shuffled": 1.0}, floors)[0].endswith(
        "not written (or not a finite number)")
    assert check_floors({}, {"x": {"metric": "a", "control": "b", "min_gap": 0}}) == [
        "floor x: needs 'metric', 'control', 'min_gap' and a non-empty 'why'"]


def test_a_partitioner_cut_off_from_its_input_fails_the_detection_floor():
    rng = np.random.default_rng(0)
    noisy = rng.random(2000) < 0.2
    loss = rng.normal(0, 1, 2000) + 2.5 * noisy  # what a partitioner reads: noisy pairs have higher loss
    floors = {"detection": _floor("detection_beats_chance", 0.2)}
    reads = detection_probe(loss > 1.5, noisy)
    assert check_floors({f"detection_{k}": v for k, v in reads.items()}, floors) == []
    cut_off = rng.normal(0, 1, 2000)  # the same rule on a signal that no longer depends on the pair
    blind = detection_probe(cut_off > 1.5, noisy)
    assert abs(blind["f1"] - blind["random_f1"]) < 0.05  # a disconnected partitioner is the random flagger
    assert check_floors({f"detection_{k}": v for k, v in blind.items()}, floors)[0].startswith("floor detection:")
