"""`tireid grid`: spec checks, a two-cell grid through the model cache, resuming, the tidy and paired tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from tireid_lite.errors import ConfigError
from tireid_lite.grid import Cell, LocalExecutor, load_spec, mlm_pooled, pending_cells, run_grid

TINY = [
    "data.dataset=synth", "data.synth_ids_train=8", "data.synth_ids_val=3", "data.synth_ids_test=4",
    "data.synth_images_per_id=2", "data.image_size=[48,16]", "data.max_length=48", "data.train_identities=0",
    "model.image_width=32", "model.image_depth=1", "model.image_heads=2", "model.text_width=32",
    "model.text_depth=1", "model.text_heads=2", "model.embed_dim=32", "model.cross_depth=1", "model.cross_heads=2",
    "model.warm_start=none", "train.batch_size=8", "train.num_epochs=1", "train.threads=1", "train.epoch_fraction=1",
]


def _spec(tmp_path, **changes):
    spec = {"name": "tiny", "paper": "IRRA (CVPR 2023)", "reference": "baseline", "seeds": [0], "shared": TINY,
            "arms": {"baseline": {"method": "baseline"}, "irra": {"method": "irra"}},
            "probes": ["partners", "rare_colour", "mlm"], **changes}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TIREID_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TIREID_PROGRESS", "0")


@pytest.mark.parametrize(("changes", "message"), [
    ({"reference": "other"}, "reference 'other' is not an arm"),
    ({"seeds": []}, "seeds must be a non-empty list"),
    ({"arms": {"a": {"method": "irra", "overide": []}}}, "arm 'a' must be"),
    ({"noise": [1.5]}, "noise must be a list of rates"),
    ({"probes": ["nope"]}, "probes must be a list"),
    ({"course_overrides": ["train.num_epochs=1"]}, "course_overrides must map a profile"),
    ({"colour": 1}, "unknown keys ['colour']"),
])
def test_a_bad_spec_is_one_clear_error(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_spec(_spec(tmp_path, **changes))
    with pytest.raises(ConfigError, match="not found"):
        load_spec(tmp_path / "absent.yaml")


def test_cells_cross_arms_seeds_and_noise_rates(tmp_path):
    spec = load_spec(_spec(tmp_path, seeds=[0, 1], noise=[0.0, 0.2]))
    assert len(spec.cells()) == 2 * 2 * 2
    cell = spec.cells()[-1]
    assert cell.key == "irra-seed1-noise0.2" and spec.overrides(cell)[-1] == "data.noise_rate=0.2"


def test_a_two_cell_grid_runs_resumes_and_writes_its_tables(tmp_path, cache):
    spec = load_spec(_spec(tmp_path))
    out = tmp_path / "results"
    lines: list[str] = []
    tables = run_grid(spec, out, profile="cpu", executor=LocalExecutor(), say=lines.append)
    progress = [line for line in lines if line.startswith("[")]
    assert len(progress) == 2 and all("ETA" in line for line in progress) and progress[-1].startswith("[2/2]")
    tidy = pd.read_csv(out / "tidy.csv")
    assert set(tidy.columns) >= {"arm", "seed", "noise", "metric", "value", "config_hash", "commit"}
    assert set(tidy["arm"]) == {"baseline", "irra"}
    record = json.loads((out / "cells" / "irra-seed0.json").read_text())
    assert tidy.query("arm == 'irra' and metric == 'R1'")["value"].item() == pytest.approx(record["metrics"]["R1"])
    assert record["config_hash"].startswith("irra-cpu-seed0-")
    assert {"mlm_colour_true", "mlm_colour_shuffled", "partner_share", "rare_colour_R1"} <= set(record["metrics"])
    assert "mlm_colour_true" not in json.loads((out / "cells" / "baseline-seed0.json").read_text())["metrics"]
    assert any("colour_swap_pairs: not marked" in n for n in json.loads((out / "notes.json").read_text())["notes"])
    paired = pd.read_csv(out / "paired.csv")
    row = paired.query("arm == 'irra' and metric == 'R1'").iloc[0]
    assert row["low"] <= row["diff"] <= row["high"] and "0 (1 seed): " in row["verdict"]
    assert row["diff"] == pytest.approx(record["metrics"]["R1"] - tables["tidy"].query(
        "arm == 'baseline' and metric == 'R1'")["value"].item())
    with np.load(out / "cells" / "irra-seed0.npz") as arrays:  # every masked word's hit, for pooling over seeds
        hits = arrays["mlm_colour_true_hits"]
        assert len(hits) == len(arrays["mlm_colour_word_ids"]) == record["metrics"]["mlm_colour_words"] > 0
    pooled = pd.read_csv(out / "mlm_pooled.csv").query("words == 'colour'")
    assert list(pooled["arm"]) == ["irra"] and pooled["seeds"].item() == 1  # the baseline has no MLM head
    assert pooled["true"].item() == pytest.approx(record["metrics"]["mlm_colour_true"])
    assert pooled["gap"].item() == pytest.approx(record["metrics"]["mlm_colour_gap"])

    assert pending_cells(spec, out, "cpu") == []  # what notebook 10 asks before reading a make tables run
    changed = load_spec(_spec(tmp_path), extra_overrides=["train.lr=0.0002"])
    assert [c.key for c in pending_cells(changed, out, "cpu")] == ["baseline-seed0", "irra-seed0"]

    lines.clear()  # everything done: nothing runs again
    run_grid(spec, out, profile="cpu", say=lines.append)
    assert "2 done before" in lines[0] and not [line for line in lines if line.startswith("[")]

    older = json.loads((out / "cells" / "baseline-seed0.json").read_text())  # as written before the probes' hits
    del older["probes_version"]
    (out / "cells" / "baseline-seed0.json").write_text(json.dumps(older))
    lines.clear()
    run_grid(spec, out, profile="cpu", say=lines.append)
    assert "1 done before" in lines[0] and "baseline seed 0" in next(line for line in lines if line.startswith("["))

    (out / "cells" / "irra-seed0.json").unlink()  # as if killed before the last cell finished
    lines.clear()
    run_grid(spec, out, profile="cpu", say=lines.append)
    assert "1 done before" in lines[0]
    assert next(line for line in lines if line.startswith("[")).startswith("[2/2] irra seed 0: R1")
    assert "from the cache" in lines[-1]

    from tireid_lite.cli import main

    assert main(["grid", "--spec", str(tmp_path / "tiny.yaml"), "--out", str(out), "--profile", "cpu"]) == 0
    assert (out / "paired.csv").stat().st_size > 0


def test_the_kit_ships_one_valid_spec_per_paper():
    from pathlib import Path

    from tireid_lite.zoo import zoo_config

    specs = {p.stem: load_spec(p) for p in sorted((Path(__file__).parents[1] / "grids").glob("*.yaml"))}
    assert set(specs) == {"irra", "kpdm", "bilma", "noise", "cada", "partlevel"}
    for spec in specs.values():
        for cell in spec.cells():  # every cell's config is valid in both profiles
            for profile in ("cpu", "gpu"):
                zoo_config(spec.arms[cell.arm].method, profile, cell.seed, spec.overrides(cell, profile))


def test_the_course_budget_gives_the_models_the_course_notebooks_train():
    """Notebook 10's miniature (course_budget) trains nothing the course has not: each shipped grid's cells at the
    course budget are the configs of notebooks 02-08; the longer grids' own cells are not."""
    from pathlib import Path

    from tireid_lite.grid import course_budget
    from tireid_lite.notebook import ablation_overrides
    from tireid_lite.zoo import model_key, zoo_config

    def key(method, overrides):
        return model_key(zoo_config(method, "cpu", 0, overrides))

    course = {"irra": [], "noise": [*ablation_overrides("cpu", epochs=3), "model.mlm_loss_weight=0"]}
    longer = 0
    for path in sorted((Path(__file__).parents[1] / "grids").glob("*.yaml")):
        spec = load_spec(path)
        short = course_budget(spec)
        for cell in short.cells():
            if cell.seed != 0:
                continue
            arm = spec.arms[cell.arm]
            noise = [] if cell.noise is None else [f"data.noise_rate={cell.noise!r}"]
            expected = [*course.get(spec.name, ablation_overrides("cpu")), *arm.overrides, *noise]
            assert key(arm.method, short.overrides(cell, "cpu")) == key(arm.method, expected), (spec.name, cell)
            if spec.course_overrides:
                assert key(arm.method, spec.overrides(cell, "cpu")) != key(arm.method, expected), (spec.name, cell)
        longer += bool(spec.course_overrides)
        assert course_budget(spec).overrides(spec.cells()[0], "gpu") == spec.overrides(spec.cells()[0], "gpu")
    assert longer == 4  # kpdm, bilma, cada, partlevel run three passes in make tables


def test_select_keeps_the_reference_and_refuses_unknown_arms(tmp_path):
    from tireid_lite.grid import select

    spec = select(load_spec(_spec(tmp_path, seeds=[0, 1, 2])), arms="irra", seeds="1")
    assert list(spec.arms) == ["baseline", "irra"] and spec.seeds == (1,)
    with pytest.raises(ConfigError, match="not in grid tiny"):
        select(spec, arms="nope")
    noisy = load_spec(_spec(tmp_path, noise=[0.0, 0.5]))
    assert select(noisy, noise="0.5").noise == (0.5,) and len(select(noisy, noise="0.5").cells()) == 2
    with pytest.raises(ConfigError, match="has noise rates"):
        select(noisy, noise="0.3")


def test_the_submitit_executor_runs_a_two_cell_grid_as_local_jobs(tmp_path, cache):
    """The submitit path (pickled cells, one process per job, results read back) on its local cluster."""
    from tireid_lite.grid import SubmititExecutor

    spec = load_spec(_spec(tmp_path))
    out = tmp_path / "results"
    executor = SubmititExecutor(out / "slurm", {"timeout_min": 20}, cluster="local")
    lines: list[str] = []
    tables = run_grid(spec, out, profile="cpu", executor=executor, say=lines.append)
    assert [line[:5] for line in lines if line.startswith("[")] == ["[1/2]", "[2/2]"]
    assert set(tables["tidy"]["arm"]) == {"baseline", "irra"}
    assert len(list((out / "slurm").glob("*_log.out"))) == 2  # each cell ran as its own job
    # the jobs trained through the shared model cache: the in-process executor now finds both cells done
    again: list[str] = []
    run_grid(spec, out, profile="cpu", executor=LocalExecutor(), say=again.append)
    assert "2 done before" in again[0]


def _fails(*_args):
    raise ValueError("broken cell")


def test_a_failed_submitit_job_names_its_cell_and_log(tmp_path):
    from tireid_lite.grid import Cell, SubmititExecutor

    executor = SubmititExecutor(tmp_path / "slurm", {}, cluster="local")
    with pytest.raises(RuntimeError, match=r"grid cell irra-seed0 failed in job .*its log: .*rerun the grid"):
        list(executor.run(_fails, [(None, Cell("irra", 0, None))]))
    with pytest.raises(ConfigError, match="slurm: parameters \\['colour'\\] were refused"):
        SubmititExecutor(tmp_path / "slurm", {"colour": 1}, cluster="local")


def test_mlm_pooled_averages_the_seeds_word_by_word(tmp_path):
    spec = load_spec(_spec(tmp_path, seeds=[0, 1]))
    words = np.array([5, 7, 7, 9])
    hits = {0: ([100, 100, 0, 0], [0, 100, 0, 0]), 1: ([100, 0, 100, 100], [100, 0, 0, 0])}  # gaps +25, +50
    per_query = {Cell("baseline", s, None): {"R1": np.zeros(3)} for s in (0, 1)}
    per_query |= {Cell("irra", s, None): {"mlm_colour_word_ids": words,
                                          "mlm_colour_true_hits": np.array(t, np.uint8),
                                          "mlm_colour_shuffled_hits": np.array(f, np.uint8)}
                  for s, (t, f) in hits.items()}
    row = mlm_pooled(spec, per_query).iloc[0]
    assert (row["arm"], row["words"], row["seeds"], row["masked"]) == ("irra", "colour", 2, 4)
    assert (row["true"], row["shuffled"], row["gap"]) == (pytest.approx(62.5), pytest.approx(25.0), pytest.approx(37.5))
    assert row["low"] <= row["gap"] <= row["high"]
    del per_query[Cell("irra", 1, None)]["mlm_colour_true_hits"]  # a seed probed without its hits: left out
    assert mlm_pooled(spec, per_query).empty
    per_query[Cell("irra", 1, None)] |= {"mlm_colour_true_hits": np.zeros(3, np.uint8),
                                         "mlm_colour_shuffled_hits": np.zeros(3, np.uint8),
                                         "mlm_colour_word_ids": np.array([5, 7, 9])}
    with pytest.raises(ValueError, match="grid tiny, arm irra: the probes masked different 'colour' words"):
        mlm_pooled(spec, per_query)
