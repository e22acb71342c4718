"""The instructors' solutions (``notebooks/solutions/``) run, and stay out of the students' way.

Each course notebook ``NN_slug`` has ``solutions/NN_slug_solutions.ipynb``. Every
solution is executed with papermill and ``quick=True``, which shrinks each
training to a few steps on a few identities (32 in most, 64 in 05, the 4 of 09's fixture; see each
solution's quick settings; the committed outputs are those of a
run with the default settings); it must finish and write the answers it computed
into ``metrics.json``. The course runner never lists them.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tireid_lite.course import (
    list_notebooks,
    notebook_parameters,
    notebooks_dir,
    run_notebook,
)

SOLUTIONS_DIR = notebooks_dir() / "solutions"
SOLUTIONS = sorted(SOLUTIONS_DIR.glob("[0-9][0-9]_*_solutions.ipynb"))


def test_every_course_notebook_has_solutions_and_every_solution_a_notebook():
    course = {p.stem for p in list_notebooks()}
    solved = {p.stem.removesuffix("_solutions") for p in SOLUTIONS}
    assert not course - solved, f"course notebooks without solutions in {SOLUTIONS_DIR}: {sorted(course - solved)}"
    assert not solved - course, f"solutions without a course notebook: {sorted(solved - course)}"


def test_the_course_does_not_run_the_solutions():
    assert all(p.parent == notebooks_dir() for p in list_notebooks())
    assert not any("solutions" in p.stem for p in list_notebooks())


def test_nbval_does_not_collect_the_solutions():
    """``make test`` runs nbval over ``notebooks/``; the solutions' committed outputs come from minutes of
    training each, so notebooks/conftest.py keeps them out (this module runs them in quick mode instead)."""
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "--nbval", "-p", "no:cacheprovider",
                             str(notebooks_dir())], check=False, capture_output=True, text=True,
                            cwd=notebooks_dir().parent)
    collected = [line for line in result.stdout.splitlines() if "::" in line]
    assert any(line.startswith("notebooks/00_welcome.ipynb::") for line in collected), result.stdout + result.stderr
    assert not [line for line in collected if "solutions" in line]


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_defaults_to_the_full_answer(solution):
    params = notebook_parameters(solution)
    assert params.get("quick") is False, f"{solution.name}: the parameters cell needs `quick = False`"
    assert {"profile", "output_dir"} <= set(params), f"{solution.name}: parameters {sorted(params)}"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_runs_in_quick_mode(solution, tmp_path):
    run = run_notebook(solution, tmp_path, {"profile": "cpu", "quick": True})
    assert run.status == "ok", f"{solution.name} failed: {run.error}"
    assert run.metrics.get("quick") is True, f"{solution.name} did not record that it ran in quick mode"
    answers = {k: v for k, v in run.metrics.items() if k != "quick"}
    assert answers, f"{solution.name} wrote no computed answer into metrics.json"
