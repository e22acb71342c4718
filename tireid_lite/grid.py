"""``tireid grid --spec FILE.yaml``: a paper's ablation as arms x seeds x noise rates, resumable, in one tidy table.

A spec names the arms (an arm = a method and a set of config overrides), the
seeds, optionally the noise rates (``data.noise_rate``), the overrides every
arm shares and the reference arm the others are compared with::

    name: irra_three_passes
    paper: IRRA (CVPR 2023), Table 3
    reference: baseline
    seeds: [0, 1, 2]
    profile_overrides:                       # per profile, after shared
      cpu: ["data.train_identities=500", "train.num_epochs=3", "train.epoch_fraction=1.0"]
    course_overrides:                        # optional: the course's shorter runs (course_budget)
      cpu: ["data.train_identities=500", "train.num_epochs=1", "train.epoch_fraction=1.0"]
    arms:
      baseline: {method: baseline}
      irra: {method: irra}
    probes: [partners, rare_colour, mlm]     # optional; default: every probe that applies

Each cell (arm, seed, noise) is trained once through the model cache
(:func:`~tireid_lite.zoo.get_or_train`), scored on the test split, probed
(:mod:`tireid_lite.eval.probes`, :mod:`tireid_lite.eval.head_probes`) and written
to ``<out>/cells/<cell>.json`` (with its per-query values and the MLM probe's
per-word hits in ``.npz``) before the next starts, so a killed grid resumes
where it stopped; a cell whose config (or the kit's probe set,
``PROBES_VERSION``) changed since it was written runs again. At the end
``<out>/tidy.csv`` has one row per (arm, seed, noise, metric) with the value,
the config hash (the zoo key) and the commit; ``summary.csv`` the mean ± std
over seeds of every metric; ``paired.csv`` each arm minus the reference,
paired over seeds and queries with a bootstrap interval and the verdict it
supports (:func:`~tireid_lite.eval.statistics.paired_table`);
``mlm_pooled.csv`` the MLM probe (true - shuffled image, every test caption)
of each arm pooled over its seeds word by word, with its interval over the
masked words (:func:`mlm_pooled`).

Cells run one after the other in this process (``--executor local``), or as
jobs through ``submitit`` (``--executor submitit``, with the spec's ``slurm:``
parameters): on Slurm, or with ``--cluster local`` one process per cell here. ``make tables`` runs every spec in
``grids/``; ``--arms``, ``--seeds`` and ``--noise`` run part of a grid (the reference arm always). Taught in ``10_paper_tables``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from tireid_lite.errors import ConfigError

PROBES = ("partners", "rare_colour", "mlm", "mim", "detection")
PAIRED_METRICS = ("R1", "mAP", "partner")  # per-query values kept for paired differences
MLM_CLASSES = ("colour", "garment")  # the MLM probe's word classes, pooled over seeds in mlm_pooled.csv
PROBES_VERSION = 2  # a cell written by an older probe set runs again (its model from the cache)
SPEC_KEYS = {"name", "paper", "reference", "seeds", "noise", "shared", "profile_overrides", "course_overrides", "arms",
             "probes", "profile", "slurm", "description", "paper_numbers"}


@dataclass(frozen=True)
class Arm:
    name: str
    method: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cell:
    arm: str
    seed: int
    noise: float | None  # None: the spec sets no noise rate

    @property
    def key(self) -> str:
        return f"{self.arm}-seed{self.seed}" + ("" if self.noise is None else f"-noise{self.noise:g}")


@dataclass(frozen=True)
class Spec:
    name: str
    reference: str
    seeds: tuple[int, ...]
    arms: dict[str, Arm]
    noise: tuple[float, ...] | None = None
    shared: tuple[str, ...] = ()
    profile_overrides: dict[str, tuple[str, ...]] = field(default_factory=dict)  # profile -> overrides
    course_overrides: dict[str, tuple[str, ...]] = field(default_factory=dict)  # profile -> the course's shorter runs
    extra: tuple[str, ...] = ()  # `tireid grid --set`
    probes: tuple[str, ...] = PROBES
    profile: str = ""
    paper: str = ""
    description: str = ""
    slurm: dict[str, Any] = field(default_factory=dict)
    paper_numbers: dict[str, Any] = field(default_factory=dict)

    def cells(self) -> list[Cell]:
        rates: Sequence[float | None] = self.noise if self.noise is not None else (None,)
        return [Cell(arm, seed, rate) for rate in rates for arm in self.arms for seed in self.seeds]

    def overrides(self, cell: Cell, profile: str = "cpu") -> list[str]:
        """Overrides of one cell: shared, then the profile's, then ``--set``, the arm's, the noise rate."""
        noise = [] if cell.noise is None else [f"data.noise_rate={cell.noise!r}"]
        return [*self.shared, *self.profile_overrides.get(profile, ()), *self.extra, *self.arms[cell.arm].overrides,
                *noise]


def _strings(path: Path, where: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path}: {where} must be a list of 'section.key=value' strings, got {value!r}")
    return tuple(value)


def load_spec(path: str | os.PathLike, *, extra_overrides: Sequence[str] = ()) -> Spec:
    """Read and check a grid spec (see the module docstring); ``extra_overrides`` go after ``shared``."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"grid spec {path} not found; give the path of a YAML spec (see grids/)") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"grid spec {path} is not valid YAML ({err}); fix the file") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"grid spec {path} must be a mapping with name, reference, seeds and arms")
    unknown = sorted(set(raw) - SPEC_KEYS)
    if unknown:
        raise ConfigError(f"grid spec {path}: unknown keys {unknown}; allowed: {sorted(SPEC_KEYS)}")
    missing = [k for k in ("name", "reference", "seeds", "arms") if k not in raw]
    if missing:
        raise ConfigError(f"grid spec {path}: missing {missing}; add them (see grids/ for examples)")
    seeds = raw["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           for s in seeds):
        raise ConfigError(f"grid spec {path}: seeds must be a non-empty list of integers, got {seeds!r}")
    if not isinstance(raw["arms"], dict) or not raw["arms"]:
        raise ConfigError(f"grid spec {path}: arms must map each arm's name to {{method, overrides}}")
    arms = {}
    for name, arm in raw["arms"].items():
        if not isinstance(arm, dict) or "method" not in arm or set(arm) - {"method", "overrides"}:
            raise ConfigError(f"grid spec {path}: arm {name!r} must be {{method: M, overrides: [...]}}, got {arm!r}")
        arms[str(name)] = Arm(str(name), str(arm["method"]), _strings(path, f"arms.{name}.overrides",
                                                                      arm.get("overrides")))
    if raw["reference"] not in arms:
        raise ConfigError(f"grid spec {path}: reference {raw['reference']!r} is not an arm; use one of {list(arms)}")
    noise = raw.get("noise")
    if noise is not None and (not isinstance(noise, list) or not noise
                              or not all(isinstance(r, (int, float)) and 0 <= r < 1 for r in noise)):
        raise ConfigError(f"grid spec {path}: noise must be a list of rates in [0, 1), got {noise!r}")
    probes = raw.get("probes", list(PROBES))
    if not isinstance(probes, list) or set(probes) - set(PROBES):
        raise ConfigError(f"grid spec {path}: probes must be a list of {list(PROBES)}, got {probes!r}")
    by_profile = {}
    for key in ("profile_overrides", "course_overrides"):
        by_profile[key] = raw.get(key) or {}
        if not isinstance(by_profile[key], dict):
            raise ConfigError(f"grid spec {path}: {key} must map a profile (cpu, gpu) to a list of overrides")
    name = str(raw["name"])
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"grid spec {path}: name {name!r} must be letters, digits, '-' or '_' (it names a folder)")
    return Spec(name=name, reference=str(raw["reference"]), seeds=tuple(seeds), arms=arms,
                noise=None if noise is None else tuple(float(r) for r in noise),
                shared=_strings(path, "shared", raw.get("shared")), extra=tuple(extra_overrides),
                **{key: {str(k): _strings(path, f"{key}.{k}", v) for k, v in mapping.items()}
                   for key, mapping in by_profile.items()},
                probes=tuple(probes),
                profile=str(raw.get("profile", "") or ""), paper=str(raw.get("paper", "")),
                description=str(raw.get("description", "")), slurm=dict(raw.get("slurm") or {}),
                paper_numbers=dict(raw.get("paper_numbers") or {}))


def kit_commit() -> str:
    """The kit's git commit (short hash, ``-dirty`` with uncommitted changes), or ``unknown`` outside git."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cell_probes(trained, data, probes: Iterable[str], split: str = "test") -> tuple[dict, dict, list[str]]:
    """Test metrics and probe values of one trained zoo model: ``(metrics, per_query, notes)``."""
    from tireid_lite.eval.head_probes import has_language_head, mim_caption_probe, mlm_image_probe
    from tireid_lite.eval.metrics import per_query_metrics
    from tireid_lite.eval.probes import (
        detection_from_record,
        partner_outcomes,
        rare_colour_probe,
        split_pairs,
    )
    from tireid_lite.eval.retrieval import score_split

    probes = set(probes)
    metrics: dict[str, float] = dict(trained.test_metrics)
    notes: list[str] = []
    sim, q_pids, g_pids = score_split(trained.model, data, split)
    per_q = per_query_metrics(sim, q_pids, g_pids)
    per_query = {"R1": per_q["R1"], "mAP": per_q["mAP"]}
    captions = data.queries(split).captions
    attributes_path = Path(data.dataset.root) / "attributes.json"
    attributes = json.loads(attributes_path.read_text(encoding="utf-8")) if attributes_path.is_file() else {}
    if "partners" in probes:
        for key, label in (("hard_negative_pairs", "partner"), ("colour_swap_pairs", "colour_swap")):
            pairs = split_pairs(attributes, key, split)
            if pairs is None:
                notes.append(f"{key}: not marked in {attributes_path.name}; probe {label} skipped")
                continue
            index, wins, _ = partner_outcomes(sim, q_pids, g_pids, captions, pairs)
            metrics[f"{label}_share"] = 100.0 * float(wins.mean()) if len(wins) else float("nan")
            metrics[f"{label}_trials"] = float(len(wins))
            if label == "partner":
                per_query["partner"] = 100.0 * wins
                per_query["partner_index"] = index
    if "rare_colour" in probes:
        train_captions = None
        if "rare_colours" not in attributes:
            notes.append("rare_colours: not marked in attributes.json; rarity from the training captions' counts")
            train_captions = [p.caption for p in data.dataset.train_pairs(data.train_identities)]
        rare = rare_colour_probe(per_q["R1"], captions, attributes=attributes, train_captions=train_captions)
        metrics.update(rare_colour_R1=rare.r1_rare, other_colour_R1=rare.r1_other,
                       rare_colour_queries=float(rare.rare_queries))
    model = trained.model
    if "mlm" in probes and has_language_head(model):
        # every caption of the split, each masked word's hit kept: write_tables pools the seeds word by word
        for name, result in mlm_image_probe(model, data, split, max_captions=None, keep_hits=True).items():
            for k in ("true", "shuffled", "gap", "low", "high", "words"):
                if k in result:
                    metrics[f"mlm_{name}_{k}"] = float(result[k])
            if "true_hits" in result:
                per_query[f"mlm_{name}_word_ids"] = np.asarray(result["word_ids"], dtype=np.int64)
                for k in ("true_hits", "shuffled_hits"):  # 0 or 100 per masked word
                    per_query[f"mlm_{name}_{k}"] = np.asarray(result[k]).astype(np.uint8)
    if "mim" in probes and "mim" in model.heads and model.heads["mim"].target == "semantic":
        result = mim_caption_probe(model, data, split, seed=trained.cfg.train.seed)
        for k in ("with_caption", "without_caption", "prior", "small_with_caption", "small_prior",
                  "small_over_prior", "small_over_prior_low", "small_over_prior_high", "caption_gain",
                  "caption_gain_low", "caption_gain_high"):
            if k in result:
                metrics[f"mim_{k}"] = float(result[k])
    if "detection" in probes and trained.cfg.train.partitioner != "none":
        records = [r for r in trained.history() if "partition_precision" in r]
        if records:
            last = records[-1]
            estimate = None
            if "partition_true_noisy" not in last and last["partition_recall"] <= 0:
                # an older record without the truth: the injected share (a little above it, see data.noise)
                total = int(last["partition_clean"] + last["partition_noisy"] + last["partition_uncertain"])
                estimate = round(trained.cfg.data.noise_rate * total)
                notes.append("detection: true noisy count estimated from data.noise_rate (older run record)")
            for k, v in detection_from_record(last, estimate).items():
                metrics[f"detection_{k}"] = float(v)
        else:
            notes.append("detection: the run has no partition record (no epoch after the warm-up)")
    return metrics, per_query, notes


def run_cell(spec: Spec, cell: Cell, out_dir: str | os.PathLike, profile: str) -> dict:
    """Train (or load) one cell, probe it and write ``cells/<key>.json`` and ``.npz``; returns the record."""
    from tireid_lite.data.build import build_data
    from tireid_lite.zoo import get_or_train, model_key, zoo_config

    arm = spec.arms[cell.arm]
    overrides = spec.overrides(cell, profile)
    start = time.perf_counter()
    trained = get_or_train(arm.method, profile, cell.seed, overrides=overrides)
    data = build_data(trained.cfg, trained.tokenizer, train=False)
    metrics, per_query, notes = cell_probes(trained, data, spec.probes)
    record = {"spec": spec.name, "arm": cell.arm, "method": arm.method, "seed": cell.seed, "noise": cell.noise,
              "config_hash": model_key(zoo_config(arm.method, profile, cell.seed, overrides)),
              "commit": kit_commit(), "probes_version": PROBES_VERSION, "trained_now": trained.trained_now,
              "train_s": trained.train_seconds(), "cell_s": time.perf_counter() - start, "metrics": metrics,
              "notes": notes}
    cells = Path(out_dir) / "cells"
    cells.mkdir(parents=True, exist_ok=True)
    def save_arrays(path: Path) -> None:
        with open(path, "wb") as fh:
            np.savez(fh, **per_query)

    _write_atomic(cells / f"{cell.key}.npz", save_arrays)
    _write_atomic(cells / f"{cell.key}.json", lambda p: p.write_text(json.dumps(record, indent=1) + "\n"))
    return record


class LocalExecutor:
    """Runs the cells one after the other in this process."""

    def run(self, fn: Callable[..., dict], jobs: Sequence[tuple]) -> Iterator[dict]:
        for job in jobs:
            yield fn(*job)


class SubmititExecutor:
    """Runs each cell as a job through ``submitit``, with the spec's ``slurm:`` parameters.

    ``cluster="slurm"`` submits every cell at once and collects the results in
    order; ``cluster="local"`` runs the jobs on this machine one after the
    other, each in its own process (the same code path without Slurm, as CI
    tests it); ``None`` lets submitit pick Slurm when ``sbatch`` is available,
    else the local cluster. A failed job stops the grid with its cell and log
    file named; the cells already written stay, so a rerun resumes.
    """

    def __init__(self, folder: Path, parameters: dict[str, Any], cluster: str | None = None) -> None:
        try:
            import submitit
        except ImportError:
            raise ConfigError("--executor submitit needs the submitit package (pip install submitit); "
                              "or run the grid with --executor local") from None
        if cluster not in (None, "slurm", "local"):
            raise ConfigError(f"submitit cluster {cluster!r}: use 'slurm', 'local' or leave it unset")
        self.executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
        try:
            self.executor.update_parameters(**parameters)
        except (TypeError, ValueError, NameError) as err:  # submitit raises NameError for unknown names
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError(f"the spec's slurm: parameters {sorted(parameters)} were refused by submitit: {reason}. "
                              "Use submitit's names (e.g. timeout_min, gpus_per_node, cpus_per_task, "
                              "slurm_partition)") from None
        self.cluster = self.executor.cluster

    def _result(self, job, args: tuple) -> dict:
        from submitit.core.utils import FailedJobError, UncompletedJobError

        try:
            return job.result()
        except (FailedJobError, UncompletedJobError) as err:
            cell = getattr(args[1], "key", "?")
            raise RuntimeError(f"grid cell {cell} failed in job {job.job_id}; its log: {job.paths.stderr}. "
                               f"Cells finished so far are kept: rerun the grid to resume. ({err})") from None

    def run(self, fn: Callable[..., dict], jobs: Sequence[tuple]) -> Iterator[dict]:
        if self.cluster == "local":  # one process at a time: several would fight over this machine's cores
            for job in jobs:
                yield self._result(self.executor.submit(fn, *job), job)
            return
        submitted = [(self.executor.submit(fn, *job), job) for job in jobs]
        for job, args in submitted:
            yield self._result(job, args)


def _cell_done(path: Path, expected_hash: str) -> bool:
    if not path.is_file() or not path.with_suffix(".npz").is_file():
        return False
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return record.get("config_hash") == expected_hash and record.get("probes_version") == PROBES_VERSION
    except (OSError, json.JSONDecodeError):
        return False  # a broken record: run the cell again


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def pending_cells(spec: Spec, out_dir: str | os.PathLike, profile: str = "") -> list[Cell]:
    """The cells of ``spec`` not yet done in ``out_dir/cells``: missing, or written for another config or probe set."""
    from tireid_lite.notebook import resolve_profile
    from tireid_lite.zoo import model_key, zoo_config

    profile = resolve_profile(profile or spec.profile)
    return [c for c in spec.cells() if not _cell_done(Path(out_dir) / "cells" / f"{c.key}.json", model_key(zoo_config(
        spec.arms[c.arm].method, profile, c.seed, spec.overrides(c, profile))))]


def run_grid(spec: Spec, out_dir: str | os.PathLike, *, profile: str = "", executor=None,
             say: Callable[[str], None] = print) -> dict[str, pd.DataFrame]:
    """Run every cell not yet done (one progress line each, with an ETA) and write the tables."""
    from tireid_lite.notebook import resolve_profile

    profile = resolve_profile(profile or spec.profile)
    out = Path(out_dir)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    executor = executor or LocalExecutor()
    cells = spec.cells()
    todo = pending_cells(spec, out, profile)
    say(f"grid {spec.name}: {len(cells)} cells ({len(spec.arms)} arms x {len(spec.seeds)} seeds"
        + (f" x {len(spec.noise)} noise rates" if spec.noise else "") + f"), {len(cells) - len(todo)} done before, "
        f"profile {profile}")
    start, durations = time.perf_counter(), []
    for done, record in enumerate(executor.run(run_cell, [(spec, c, out, profile) for c in todo]), start=1):
        durations.append(record["cell_s"])
        left = len(todo) - done
        eta = _duration(np.mean(durations) * left) if left else "0m00s"
        noise = "" if record["noise"] is None else f" noise {record['noise']:g}"
        say(f"[{len(cells) - len(todo) + done}/{len(cells)}] {record['arm']} seed {record['seed']}{noise}: "
            f"R1 {record['metrics']['R1']:.2f} ({'trained' if record['trained_now'] else 'from the cache'}, "
            f"{record['cell_s']:.0f} s) | elapsed {_duration(time.perf_counter() - start)}, ETA {eta}")
    return write_tables(spec, out)


def read_cells(spec: Spec, out_dir: str | os.PathLike) -> tuple[list[dict], dict]:
    """The records and per-query arrays of the spec's finished cells in ``out_dir/cells``."""
    records, per_query = [], {}
    for cell in spec.cells():
        path = Path(out_dir) / "cells" / f"{cell.key}.json"
        if path.is_file() and path.with_suffix(".npz").is_file():
            records.append(json.loads(path.read_text(encoding="utf-8")))
            with np.load(path.with_suffix(".npz")) as arrays:
                per_query[cell] = {k: arrays[k] for k in arrays.files}
    return records, per_query


def mlm_pooled(spec: Spec, per_query: dict) -> pd.DataFrame:
    """The MLM probe of each arm pooled over its seeds: one row per (arm, noise, word class).

    Every seed's model was probed on the same masked words of the test split
    (all its captions), so ``true - shuffled`` is averaged over the seeds word
    by word and its 95% interval resamples the words
    (:func:`~tireid_lite.eval.head_probes.pooled_gap`). Columns: ``arm``,
    ``noise``, ``words`` (the class), ``seeds``, ``masked`` (words per seed),
    ``true``, ``shuffled``, ``gap``, ``low``, ``high``, ``excludes_zero``. An
    arm with a seed probed without its hits (an older cell) is left out.
    """
    from tireid_lite.eval.head_probes import pooled_gap

    rows = []
    for rate in spec.noise if spec.noise is not None else (None,):
        for arm in spec.arms:
            cells = sorted((c for c in per_query if c.arm == arm and c.noise == rate), key=lambda c: c.seed)
            for name in MLM_CLASSES:
                keys = [f"mlm_{name}_{k}" for k in ("word_ids", "true_hits", "shuffled_hits")]
                if not cells or not all(set(keys) <= set(per_query[c]) for c in cells):
                    continue
                probes = [{name: {"word_ids": per_query[c][keys[0]], "true_hits": per_query[c][keys[1]].astype(float),
                                  "shuffled_hits": per_query[c][keys[2]].astype(float)}} for c in cells]
                try:
                    d = pooled_gap(probes, name)
                except ValueError as err:
                    raise ValueError(f"grid {spec.name}, arm {arm}: {err}") from None
                rows.append({"arm": arm, "noise": rate, "words": name, "seeds": d.seeds, "masked": d.queries,
                             "true": float(np.mean([p[name]["true_hits"].mean() for p in probes])),
                             "shuffled": float(np.mean([p[name]["shuffled_hits"].mean() for p in probes])),
                             "gap": d.diff, "low": d.low, "high": d.high, "excludes_zero": d.excludes_zero})
    return pd.DataFrame(rows, columns=["arm", "noise", "words", "seeds", "masked", "true", "shuffled", "gap", "low",
                                       "high", "excludes_zero"])


def write_tables(spec: Spec, out_dir: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """``tidy.csv``, ``summary.csv``, ``paired.csv`` and ``mlm_pooled.csv`` from the finished cells (see the module
    docstring)."""
    from tireid_lite.eval.statistics import paired_table, seed_summary

    out = Path(out_dir)
    records, per_query = read_cells(spec, out)
    if not records:
        raise ConfigError(f"no finished cells of grid {spec.name} in {out / 'cells'}; run the grid first")
    tidy = pd.DataFrame([{"spec": r["spec"], "arm": r["arm"], "method": r["method"], "seed": r["seed"],
                          "noise": r["noise"], "metric": m, "value": v, "config_hash": r["config_hash"],
                          "commit": r["commit"]} for r in records for m, v in r["metrics"].items()])
    keys = ["arm", "noise", "metric"]
    summary = (tidy.assign(noise=tidy["noise"].fillna(-1.0)).groupby(keys, sort=False)["value"]
               .agg(lambda v: seed_summary(v.to_numpy())).rename("mean ± std").reset_index())
    summary["noise"] = summary["noise"].where(summary["noise"] >= 0, None)
    paired = []
    rates = spec.noise if spec.noise is not None else (None,)
    for rate in rates:
        for metric in PAIRED_METRICS:
            arrays = {arm: {c.seed: v[metric] for c, v in per_query.items()
                            if c.arm == arm and c.noise == rate and metric in v} for arm in spec.arms}
            arrays = {arm: by_seed for arm, by_seed in arrays.items() if by_seed}
            if spec.reference not in arrays or len(arrays) < 2:
                continue
            table = paired_table(arrays, spec.reference, metric)
            paired.append(table.assign(metric=metric, noise=rate, reference=spec.reference))
    paired_df = pd.concat(paired, ignore_index=True) if paired else pd.DataFrame()
    pooled = mlm_pooled(spec, per_query)
    for name, frame in (("tidy", tidy), ("summary", summary), ("paired", paired_df), ("mlm_pooled", pooled)):
        _write_atomic(out / f"{name}.csv", lambda p, f=frame: f.to_csv(p, index=False))
    notes = sorted({n for r in records for n in r["notes"]})
    _write_atomic(out / "notes.json", lambda p: p.write_text(json.dumps(
        {"spec": spec.name, "paper": spec.paper, "cells": len(records), "of": len(spec.cells()), "notes": notes,
         "paper_numbers": spec.paper_numbers}, indent=1) + "\n"))
    return {"tidy": tidy, "summary": summary, "paired": paired_df, "mlm_pooled": pooled}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", type=Path, required=True, help="a grid spec (YAML); the kit's are in grids/")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: results/tables/<name>)")
    parser.add_argument("--profile", default="", help="cpu or gpu (default: the spec's, else $TIREID_PROFILE, cpu)")
    parser.add_argument("--executor", choices=("local", "submitit"), default="local",
                        help="local: cells one after the other here; submitit: one Slurm job per cell")
    parser.add_argument("--cluster", choices=("auto", "slurm", "local"), default="auto",
                        help="with --executor submitit: slurm, local (one job at a time on this machine, "
                             "each in its own process), or auto (slurm when sbatch is found)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override every cell gets after the spec's shared ones (repeatable)")
    parser.add_argument("--arms", default="", help="only these arms, comma-separated (the reference is kept)")
    parser.add_argument("--seeds", default="", help="only these seeds, comma-separated, e.g. 0")
    parser.add_argument("--noise", default="", help="only these noise rates of the spec, comma-separated, e.g. 0.5")


def course_budget(spec: Spec) -> Spec:
    """``spec`` with the course notebooks' budget: each profile's ``course_overrides`` in place of its
    ``profile_overrides`` (a profile without them keeps its own). Notebook 10's miniature runs the grids this way,
    so its cells are the models notebooks 02-08 trained."""
    return replace(spec, profile_overrides={**spec.profile_overrides, **spec.course_overrides})


def select(spec: Spec, arms: str = "", seeds: str = "", noise: str = "") -> Spec:
    """``spec`` restricted to some arms (the reference always kept), seeds and noise rates, for a partial run."""
    chosen_arms = [a for a in arms.split(",") if a] or list(spec.arms)
    unknown = [a for a in chosen_arms if a not in spec.arms]
    if unknown:
        raise ConfigError(f"--arms {unknown} not in grid {spec.name}; its arms are {list(spec.arms)}")
    try:
        chosen_seeds = tuple(int(x) for x in seeds.split(",") if x) or spec.seeds
    except ValueError:
        raise ConfigError(f"--seeds {seeds!r} must be comma-separated integers, e.g. 0,1") from None
    try:
        rates = tuple(float(x) for x in noise.split(",") if x)
    except ValueError:
        raise ConfigError(f"--noise {noise!r} must be comma-separated rates, e.g. 0.5") from None
    if rates and (spec.noise is None or set(rates) - set(spec.noise)):
        raise ConfigError(f"--noise {noise}: grid {spec.name} has noise rates {list(spec.noise or [])}")
    keep = {a: spec.arms[a] for a in spec.arms if a in chosen_arms or a == spec.reference}
    return replace(spec, arms=keep, seeds=chosen_seeds, noise=rates or spec.noise)


def run(args: argparse.Namespace) -> int:
    spec = select(load_spec(args.spec, extra_overrides=args.set), args.arms, args.seeds, args.noise)
    out = args.out or Path("results") / "tables" / spec.name
    cluster = None if args.cluster == "auto" else args.cluster
    executor = (SubmititExecutor(out / "slurm", spec.slurm, cluster) if args.executor == "submitit"
                else LocalExecutor())
    tables = run_grid(spec, out, profile=args.profile, executor=executor)
    if not tables["paired"].empty:
        shown = tables["paired"][tables["paired"]["arm"] != spec.reference]
        print(shown[["noise", "metric", "arm", "mean ± std", "diff", "low", "high", "verdict"]].to_string(index=False))
    print(f"tables written to {out}: tidy.csv, summary.csv, paired.csv")
    return 0
