"""Each notebook and its py:percent twin say the same thing (course notebooks and their solutions).

The twin is regenerated from the .ipynb (fixed direction, never timestamps)
with the project's jupytext configuration and compared line by line.
"""

from __future__ import annotations

import difflib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOLUTIONS = NOTEBOOKS / "solutions"  # the instructors' solutions are pairs too
IPYNBS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")) + sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))
TWINS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py")) + sorted(SOLUTIONS.glob("[0-9][0-9]_*.py"))
JUPYTEXT = [sys.executable, "-m", "jupytext"]


def test_there_are_notebooks():
    assert IPYNBS, f"no NN_slug.ipynb notebooks in {NOTEBOOKS}"


def test_every_notebook_has_a_twin_and_every_twin_a_notebook():
    stems_nb = {p.stem for p in IPYNBS}
    stems_py = {p.stem for p in TWINS}
    assert not stems_nb - stems_py, f"notebooks without a .py twin: {sorted(stems_nb - stems_py)} (run `make sync`)"
    assert not stems_py - stems_nb, f".py twins without a notebook: {sorted(stems_py - stems_nb)} (run `make sync`)"


def regenerate_twin(ipynb: Path) -> str:
    result = subprocess.run(
        [*JUPYTEXT, "--to", "py:percent", "--output", "-", str(ipynb)],
        capture_output=True, text=True, cwd=ipynb.parent, check=True,
    )
    return result.stdout


def twin_diff(ipynb: Path) -> str:
    """A unified diff between the twin on disk and the twin regenerated from ``ipynb``."""
    twin = ipynb.with_suffix(".py")
    expected = regenerate_twin(ipynb)
    actual = twin.read_text(encoding="utf-8")
    return "".join(difflib.unified_diff(
        expected.splitlines(True), actual.splitlines(True), f"{ipynb.name} (as py:percent)", twin.name,
    ))


@pytest.mark.parametrize("ipynb", IPYNBS, ids=lambda p: p.stem)
def test_twin_matches_notebook(ipynb):
    diff = twin_diff(ipynb)
    if diff:
        pytest.fail(f"{ipynb.with_suffix('.py').name} differs from {ipynb.name}; edit one and run `make sync`:\n{diff}")


@pytest.mark.parametrize("twin", TWINS, ids=lambda p: p.stem)
def test_twin_does_not_record_the_jupytext_version(twin):
    header = twin.read_text(encoding="utf-8").split("\n# ---\n", 1)[0]
    assert not re.search(r"^#\s+jupytext_version:", header, re.MULTILINE), f"{twin.name} records jupytext_version"


def test_an_edited_twin_is_caught(tmp_path):
    """The check itself: a one-line edit of a twin makes :func:`twin_diff` report it."""
    (tmp_path / "notebooks").mkdir()
    shutil.copy(NOTEBOOKS.parent / "pyproject.toml", tmp_path / "pyproject.toml")
    ipynb = shutil.copy(IPYNBS[0], tmp_path / "notebooks" / IPYNBS[0].name)
    twin = Path(shutil.copy(IPYNBS[0].with_suffix(".py"), tmp_path / "notebooks" / IPYNBS[0].with_suffix(".py").name))
    assert twin_diff(Path(ipynb)) == ""
    lines = twin.read_text().splitlines(True)
    code_line = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    lines[code_line] = lines[code_line].rstrip("\n") + "  # edited\n"
    twin.write_text("".join(lines))
    assert "# edited" in twin_diff(Path(ipynb))
