"""The notebook pipeline: parameter checking, papermill runs, the course summary page."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from tireid_lite.cli import main
from tireid_lite.course import check_parameters, notebook_parameters, run_course, run_notebook
from tireid_lite.errors import NotebookParameterError, TIReIDError
from tireid_lite.notebook import resolve_output_dir, resolve_profile, save_metrics


def _write_notebook(path: Path, body: str, params: str = 'profile = ""\noutput_dir = ""\nscale = 2') -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# test"), cell, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)
    return path


GOOD = """
from tireid_lite.notebook import resolve_output_dir, save_metrics
import matplotlib.pyplot as plt
out = resolve_output_dir(output_dir, "00_good")
plt.plot([0, 1], [0, scale]); plt.show()
save_metrics(out, {"answer": 21 * scale})
"""

BAD = """
raise RuntimeError("this notebook is broken on purpose")
"""


@pytest.fixture
def course_dir(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _write_notebook(folder / "00_good.ipynb", GOOD)
    _write_notebook(folder / "01_bad.ipynb", BAD)
    return folder


def test_parameters_are_read_from_the_tagged_cell(course_dir):
    assert notebook_parameters(course_dir / "00_good.ipynb") == {"profile": "", "output_dir": "", "scale": 2}


def test_unknown_parameter_names_the_notebook_and_the_known_ones(course_dir):
    with pytest.raises(NotebookParameterError) as err:
        check_parameters(course_dir / "00_good.ipynb", {"sclae": 3})
    message = str(err.value)
    assert "00_good.ipynb" in message and "'sclae'" in message
    assert "profile, output_dir, scale" in message


def test_unknown_parameter_is_refused_before_running(course_dir, tmp_path):
    with pytest.raises(NotebookParameterError):
        run_notebook(course_dir / "00_good.ipynb", tmp_path / "out", {"sclae": 3})
    assert not (tmp_path / "out").exists()


def test_non_literal_parameter_cell_is_refused(tmp_path):
    nb = _write_notebook(tmp_path / "02_x.ipynb", "pass", params="import os\noutput_dir = os.getcwd()")
    with pytest.raises(TIReIDError, match="literals only"):
        notebook_parameters(nb)


def test_run_notebook_passes_parameters_and_collects_metrics_and_figures(course_dir, tmp_path):
    run = run_notebook(course_dir / "00_good.ipynb", tmp_path / "out", {"scale": 3})
    assert run.status == "ok", run.error
    assert run.metrics == {"answer": 63}
    assert json.loads((tmp_path / "out" / "00_good" / "metrics.json").read_text()) == {"answer": 63}
    assert len(run.figures) == 1 and run.figures[0].read_bytes()[:4] == b"\x89PNG"


def test_failing_notebook_is_reported_not_raised(course_dir, tmp_path):
    run = run_notebook(course_dir / "01_bad.ipynb", tmp_path / "out")
    assert run.status == "failed"
    assert "RuntimeError" in run.error and "broken on purpose" in run.error


def test_course_runs_every_notebook_and_marks_failures(course_dir, tmp_path, capsys):
    code = main(["course", "--notebooks-dir", str(course_dir), "--runs-dir", str(tmp_path / "runs")])
    assert code == 1
    (stamp,) = list((tmp_path / "runs").iterdir())
    page = (stamp / "index.html").read_text()
    assert "00_good" in page and "01_bad" in page
    assert '<tr class="failed"><td><a href="#01_bad">' in page
    assert '<tr class="ok"><td><a href="#00_good">' in page
    assert "figures/figure_01.png" in page
    assert "summary:" in capsys.readouterr().out


def test_course_refuses_a_parameter_no_notebook_has(course_dir, tmp_path):
    with pytest.raises(NotebookParameterError, match="scale"):
        run_course(tmp_path / "runs", sorted(course_dir.glob("*.ipynb")), {"no_such": 1})


def test_resolve_profile_uses_environment(monkeypatch):
    monkeypatch.delenv("TIREID_PROFILE", raising=False)
    assert resolve_profile("") == "cpu"
    monkeypatch.setenv("TIREID_PROFILE", "gpu")
    assert resolve_profile("") == "gpu"
    assert resolve_profile("cpu") == "cpu"
    with pytest.raises(TIReIDError, match="unknown profile 'tpu'"):
        resolve_profile("tpu")


def test_save_metrics_refuses_non_finite_numbers(tmp_path):
    with pytest.raises(ValueError, match="'R1' is nan"):
        save_metrics(tmp_path, {"R1": float("nan")})
    assert not (tmp_path / "metrics.json").exists()
    save_metrics(tmp_path, {"R1": 12.5, "table": {"a": [1, 2]}})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"R1": 12.5, "table": {"a": [1, 2]}}


def test_resolve_output_dir_defaults_to_a_temporary_folder(tmp_path):
    assert resolve_output_dir(str(tmp_path / "x"), "01_data") == tmp_path / "x"
    assert resolve_output_dir("", "01_data").name == "01_data"


def test_ablation_overrides_shorten_cpu_runs_only():
    from tireid_lite.config import apply_overrides, get_profile
    from tireid_lite.errors import ConfigError
    from tireid_lite.notebook import ablation_overrides

    cfg = apply_overrides(get_profile("cpu"), ablation_overrides("cpu", epochs=3))
    assert cfg.data.train_identities == 500 and cfg.train.num_epochs == 3
    assert cfg.train.epoch_fraction * cfg.train.num_epochs == pytest.approx(1.0)
    assert ablation_overrides("gpu", epochs=3) == []
    with pytest.raises(ConfigError, match="epochs=0 is invalid"):
        ablation_overrides("cpu", epochs=0)


def test_mean_std_table_orders_rows_and_formats_mean_and_std():
    import pandas as pd

    from tireid_lite.notebook import mean_std_table

    runs = pd.DataFrame({"arm": ["b", "b", "a", "a"], "R1": [10.0, 12.0, 5.0, 5.0], "mAP": [1.0, 3.0, 2.0, 2.0]})
    table = mean_std_table(runs, ["b", "a"])
    assert list(table.index) == ["b", "a"]
    assert table.loc["b", "R1"] == "11.00 ± 1.41" and table.loc["a", "mAP"] == "2.00 ± 0.00"
    with pytest.raises(ValueError, match=r"no runs for \['c'\]"):
        mean_std_table(runs, ["c"])


def test_arms_table_pairs_each_arm_with_the_reference_over_the_same_queries(monkeypatch):
    from types import SimpleNamespace

    import numpy as np

    from tireid_lite import notebook

    rng = np.random.default_rng(0)
    base = {s: 100.0 * (rng.random(400) < 0.3) for s in (0, 1)}
    better = {s: np.maximum(base[s], 100.0 * (rng.random(400) < 0.2)) for s in (0, 1)}  # never worse, often better
    models = {}
    for arm, by_seed in (("ref", base), ("same", base), ("better", better)):
        for s, values in by_seed.items():
            models[arm, s] = SimpleNamespace(folder=f"/models/{arm}-{s}")
            monkeypatch.setitem(notebook._PER_QUERY, (f"/models/{arm}-{s}", "test"), {"R1": values})
    table = notebook.arms_table(models, None, ["ref", "same", "better"], "ref")
    assert list(table.index) == ["ref", "same", "better"] and set(table["seeds"]) == {2}
    assert table.loc["ref", "verdict"] == "reference" and table.loc["same", "diff"] == 0.0
    assert table.loc["same", "verdict"].startswith("interval includes 0 (2 seeds)")
    assert table.loc["better", "low"] > 0 and table.loc["better", "verdict"] == "interval excludes 0 (2 seeds): above ref"
    with pytest.raises(ValueError, match=r"no runs for \['gone'\]"):
        notebook.arms_table(models, None, ["ref", "gone"], "ref")


def test_the_kernels_tcp_warning_stays_out_of_the_course_log_and_errors_stay_in(course_dir, tmp_path, capfd):
    """ipykernel logs "running over TCP without encryption" at every start; the course's kernels log from
    ERROR up, so that line goes while a failing notebook is still reported."""
    good = run_notebook(course_dir / "00_good.ipynb", tmp_path / "out")
    bad = run_notebook(course_dir / "01_bad.ipynb", tmp_path / "out")
    captured = capfd.readouterr()  # the kernel processes write to this process's file descriptors
    assert good.status == "ok" and bad.status == "failed" and "broken on purpose" in bad.error
    assert "without encryption" not in captured.err + captured.out
    outputs = [o for cell in nbformat.read(good.executed, as_version=4).cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("name") == "stderr"]


TIMED = """
import os, time
from tireid_lite.notebook import resolve_output_dir, save_metrics
out = resolve_output_dir(output_dir, "timed")
start = time.time()
time.sleep(2)
save_metrics(out, {"start": start, "end": time.time(), "threads": os.environ.get("OMP_NUM_THREADS", "unset")})
"""


def test_jobs_run_notebooks_side_by_side_after_the_shared_cache_is_built(tmp_path, monkeypatch):
    from tireid_lite import course

    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name in ("00_a", "01_b", "02_c"):
        _write_notebook(folder / f"{name}.ipynb", TIMED)
    _write_notebook(folder / "03_bad.ipynb", BAD)
    prepared = []
    monkeypatch.setattr(course, "prepare_shared_cache", lambda profile: prepared.append(profile))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("TIREID_PROFILE", raising=False)
    lines = []
    _, runs = run_course(tmp_path / "runs", sorted(folder.glob("*.ipynb")), jobs=2,
                         echo=lambda *a, **k: lines.append(" ".join(map(str, a))))
    assert prepared == ["cpu"]
    assert [r.name for r in runs] == ["00_a", "01_b", "02_c", "03_bad"]  # the notebooks' order, whatever finished first
    assert [r.status for r in runs] == ["ok", "ok", "ok", "failed"]
    first, second = runs[0].metrics, runs[1].metrics
    assert second["start"] < first["end"] and first["start"] < second["end"]  # the two ran at the same time
    assert {r.metrics["threads"] for r in runs[:3]} == {str(max(1, (os.cpu_count() or 1) // 2))}
    assert "OMP_NUM_THREADS" not in os.environ  # given back after the course
    assert any(line.strip().startswith("03_bad: failed") for line in lines)


def test_jobs_must_be_a_positive_count_and_a_failed_preparation_is_one_clear_error(course_dir, tmp_path):
    from tireid_lite.course import prepare_shared_cache

    with pytest.raises(TIReIDError, match="jobs=0 is invalid"):
        run_course(tmp_path / "runs", sorted(course_dir.glob("*.ipynb")), jobs=0)
    with pytest.raises(TIReIDError, match=r"(?s)preparing the shared cache for profile .nosuch. failed.*unknown profile"):
        prepare_shared_cache("nosuch")
