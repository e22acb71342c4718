"""The notebooks as text: their code passes pyflakes-level checks, their markdown renders.

Code: every ``notebooks/NN_*.py`` twin (and ``notebooks/solutions/NN_*_solutions.py``) is checked by ruff's pyflakes rules (F:
unused imports, undefined names, ...) and syntax errors (E9). Markdown: no
control characters (a ``\\t`` or ``\\b`` that lost its backslash in ``\\tfrac``
or ``\\big``), and every ``$``-delimited formula closed. Stored outputs hold
no absolute paths of the machine that ran them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOLUTIONS = NOTEBOOKS / "solutions"  # the instructors' solutions, linted like the course
IPYNB = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")) + sorted(SOLUTIONS.glob("[0-9][0-9]_*_solutions.ipynb"))
CONTROL = re.compile(r"[\x00-\x09\x0b\x0c\x0e-\x1f\x7f]")  # tab included: markdown has no use for one
ABSOLUTE = re.compile(r"(?<![\w.])/(tmp|root|home|work)/")


def _ruff() -> list[str]:
    exe = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    return [exe]


def test_there_are_notebooks_to_lint():
    assert len(IPYNB) >= 7


def test_notebook_code_passes_pyflakes_rules():
    twins = [str(p.with_suffix(".py")) for p in IPYNB]
    result = subprocess.run([*_ruff(), "check", "--no-cache", "--select", "F,E9", "--output-format", "concise",
                             *twins], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def markdown_problems(text: str) -> list[str]:
    """What would keep a markdown cell from rendering: control characters, unclosed $ formulas."""
    problems = []
    if CONTROL.search(text):
        problems.append(f"control character {CONTROL.search(text).group()!r} (a lost backslash?)")
    stripped = re.sub(r"`[^`]*`", "", text)  # code spans may hold a lone $
    display = stripped.count("$$")
    if display % 2:
        problems.append("a $$ formula is not closed")
    inline = stripped.replace("$$", "").replace(r"\$", "").count("$")
    if inline % 2:
        problems.append("a $ formula is not closed")
    return problems


def test_markdown_checker_catches_what_it_should():
    assert markdown_problems("fine $a + b$ and $$c$$") == []
    assert markdown_problems("$\tfrac12$") and markdown_problems("broken $a + b") and markdown_problems("$$x$")
    assert markdown_problems("`$HOME` is a variable") == []


@pytest.mark.parametrize("ipynb", IPYNB, ids=lambda p: p.stem)
def test_markdown_renders_and_outputs_hold_no_absolute_paths(ipynb):
    cells = json.loads(ipynb.read_text(encoding="utf-8"))["cells"]
    problems = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "markdown":
            problems += [f"cell {i}: {p}" for p in markdown_problems("".join(cell["source"]))]
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", "")) + "".join(output.get("data", {}).get("text/plain", ""))
            if ABSOLUTE.search(text):
                problems.append(f"cell {i}: an absolute path in an output ({ABSOLUTE.search(text).group()}...)")
    assert problems == []
