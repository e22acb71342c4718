"""The library's one direction of imports (DESIGN.md's layers, pyproject's import-linter contract), and no cycles."""

from __future__ import annotations

import os
from pathlib import Path

import grimp
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_the_layers_contract_is_kept():
    cwd = os.getcwd()
    os.chdir(ROOT)  # lint-imports reads pyproject.toml from the working folder
    try:
        assert lint_imports(no_cache=True, no_logo=True) == 0
    finally:
        os.chdir(cwd)


def test_no_module_imports_itself_through_others():
    graph = grimp.build_graph("tireid_lite")
    cycles = sorted(
        {tuple(sorted((module, imported)))
         for module in graph.modules
         for imported in graph.find_modules_directly_imported_by(module)
         if graph.find_shortest_chain(importer=imported, imported=module)}
    )
    assert cycles == []


def test_a_lower_layer_importing_a_higher_one_is_caught(tmp_path):
    """The contract can fail: the same check on a copy of the package where models imports the Trainer."""
    import shutil
    import sys

    copy = tmp_path / "tireid_lite"
    shutil.copytree(ROOT / "tireid_lite", copy, ignore=shutil.ignore_patterns("__pycache__"))
    bad = copy / "models" / "irra.py"
    bad.write_text(bad.read_text() + "\nfrom tireid_lite.train.trainer import Trainer  # noqa: E402,F401\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    cwd, path = os.getcwd(), list(sys.path)
    saved = {name: module for name, module in sys.modules.items() if name.split(".")[0] == "tireid_lite"}
    os.chdir(tmp_path)
    sys.path.insert(0, str(tmp_path))
    for name in saved:
        del sys.modules[name]
    try:
        assert lint_imports(no_cache=True, no_logo=True) == 1
    finally:
        os.chdir(cwd)
        sys.path[:] = path
        for name in [n for n in sys.modules if n.split(".")[0] == "tireid_lite"]:
            del sys.modules[name]
        sys.modules.update(saved)
