"""Papermill regression: each notebook, run in the cpu profile, reproduces its golden metrics.

``tests/golden/<notebook>.json`` holds, for every metric the notebook writes,
``{"value": ..., "tol": ..., "why": "..."}``: the expected value, the absolute
tolerance allowed, and a one-line reason for that tolerance. An optional
``floors`` section holds mechanism floors (a probe minus its control, at least
``min_gap``; :func:`~tireid_lite.eval.floors.check_floors`), which catch a head
cut off from its input even where every value stays within its tolerance.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tireid_lite.course import list_notebooks, run_notebook
from tireid_lite.eval.floors import check_floors

GOLDEN = Path(__file__).resolve().parent / "golden"
NOTEBOOKS = list_notebooks()


def compare_metrics(actual: dict, golden: dict) -> list[str]:
    """Every difference between a run's metrics and the golden record, as readable lines."""
    problems = []
    for key in sorted(set(actual) - set(golden)):
        problems.append(f"{key}: produced but has no golden value (add it with a tolerance and a reason)")
    for key, spec in sorted(golden.items()):
        if not {"value", "tol", "why"} <= set(spec) or not str(spec["why"]).strip():
            problems.append(f"{key}: golden entry needs 'value', 'tol' and a non-empty 'why'")
            continue
        if key not in actual:
            problems.append(f"{key}: expected {spec['value']!r} but the notebook did not write it")
            continue
        problems += _compare(key, actual[key], spec["value"], float(spec["tol"]))
    return problems


def _compare(key, got, want, tol) -> list[str]:
    if isinstance(want, bool) or isinstance(want, str) or want is None:
        return [] if got == want else [f"{key}: got {got!r}, expected {want!r}"]
    if isinstance(want, (int, float)):
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            return [f"{key}: got {got!r}, expected a number near {want}"]
        return [] if math.isclose(got, want, rel_tol=0, abs_tol=tol) else [
            f"{key}: got {got}, expected {want} +- {tol}"
        ]
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return [f"{key}: got {got!r}, expected a list like {want!r}"]
        return [p for i, (g, w) in enumerate(zip(got, want)) for p in _compare(f"{key}[{i}]", g, w, tol)]
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            return [f"{key}: got {got!r}, expected keys {sorted(want)}"]
        return [p for k in sorted(want) for p in _compare(f"{key}.{k}", got[k], want[k], tol)]
    return [f"{key}: golden value of unsupported type {type(want).__name__}"]


def test_compare_metrics_reports_each_kind_of_difference():
    golden = {
        "R1": {"value": 50.0, "tol": 2.0, "why": "training noise"},
        "ids": {"value": 10, "tol": 0, "why": "deterministic"},
        "name": {"value": "synth", "tol": 0, "why": "fixed"},
        "missing": {"value": 1, "tol": 0, "why": "x"},
    }
    actual = {"R1": 51.9, "ids": 11, "name": "synth", "extra": 3}
    problems = compare_metrics(actual, golden)
    assert problems == [
        "extra: produced but has no golden value (add it with a tolerance and a reason)",
        "ids: got 11, expected 10 +- 0.0",
        "missing: expected 1 but the notebook did not write it",
    ]
    assert compare_metrics({"R1": 47.9}, {"R1": golden["R1"]}) == ["R1: got 47.9, expected 50.0 +- 2.0"]
    assert compare_metrics({"x": 1}, {"x": {"value": 1, "tol": 0, "why": ""}}) == [
        "x: golden entry needs 'value', 'tol' and a non-empty 'why'"
    ]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_reproduces_golden_metrics(notebook, tmp_path):
    golden_file = GOLDEN / f"{notebook.stem}.json"
    assert golden_file.exists(), f"{notebook.name} has no golden metrics file {golden_file}"
    run = run_notebook(notebook, tmp_path, {"profile": "cpu"})
    assert run.status == "ok", f"{notebook.name} failed: {run.error}"
    record = json.loads(golden_file.read_text())
    problems = compare_metrics(run.metrics, record["metrics"]) + check_floors(run.metrics, record.get("floors", {}))
    assert not problems, f"{notebook.name} metrics differ from {golden_file.name}:\n" + "\n".join(problems)
