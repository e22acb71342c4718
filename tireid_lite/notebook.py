"""Small helpers every notebook calls in its first cells (taught in ``00_welcome``).

A notebook's ``parameters`` cell holds literals only (papermill replaces it);
the cell after it resolves them::

    profile = resolve_profile(profile)            # "" -> $TIREID_PROFILE or "cpu"
    output_dir = resolve_output_dir(output_dir, "01_data")

and its last cell writes the numbers it computed with :func:`save_metrics`, which
the regression tests compare with ``tests/golden/<notebook>.json``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from tireid_lite.config import PROFILES
from tireid_lite.errors import ConfigError


def resolve_profile(profile: str = "") -> str:
    """The profile to run: ``profile`` if given, else ``$TIREID_PROFILE``, else ``"cpu"``."""
    name = (profile or os.environ.get("TIREID_PROFILE", "") or "cpu").strip().lower()
    if name not in PROFILES:
        raise ConfigError(
            f"unknown profile {name!r}; use one of {', '.join(PROFILES)} "
            "(set it with the notebook parameter `profile` or TIREID_PROFILE)"
        )
    return name


def resolve_output_dir(output_dir: str, notebook: str) -> Path:
    """Where a notebook writes ``metrics.json``; a fresh temporary folder when not given."""
    if output_dir:
        path = Path(output_dir).expanduser()
    else:
        path = Path(tempfile.gettempdir()) / "tireid-lite-notebooks" / notebook
    path.mkdir(parents=True, exist_ok=True)
    return path


def _check_value(key: str, value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"metric {key!r} is {value}; only finite numbers can be compared")
        return value
    if hasattr(value, "item"):  # numpy / torch scalars
        return _check_value(key, value.item())
    if isinstance(value, Mapping):
        return {str(k): _check_value(f"{key}.{k}", v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_check_value(f"{key}[{i}]", v) for i, v in enumerate(value)]
    raise TypeError(f"metric {key!r} has type {type(value).__name__}; use numbers, strings or lists")


def save_metrics(output_dir: str | os.PathLike, metrics: Mapping[str, Any]) -> Path:
    """Write ``metrics.json`` (atomically) into ``output_dir`` and return its path."""
    clean = {str(k): _check_value(str(k), v) for k, v in metrics.items()}
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "metrics.json"
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".metrics-", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(clean, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, target)
    return target


# The cpu profile's ablation runs (notebooks 03-05): one pass over the first 500 training identities,
# 62 steps of batch 64, about a quarter of a full cpu-profile run, so that a notebook can afford
# several arms x seeds within the course budget. The gpu profile trains every arm in full.
ABLATION_IDENTITIES = 500


def ablation_overrides(profile: str, epochs: int = 1) -> list[str]:
    """Config overrides that make an ablation arm short in the cpu profile, none in the gpu profile.

    cpu: ``data.train_identities=500`` and one pass over them split into
    ``epochs`` epochs (``train.epoch_fraction = 1 / epochs``), so a run with a
    partition warm-up can still have epochs after it at the same cost.
    Taught in ``03_kpdm_key_phrase_masking``.
    """
    profile = resolve_profile(profile)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs={epochs!r} is invalid; use a positive number of epochs")
    if profile != "cpu":
        return []
    return [f"data.train_identities={ABLATION_IDENTITIES}", f"train.num_epochs={epochs}",
            f"train.epoch_fraction={1.0 / epochs!r}"]


def mean_std_table(runs, order, by: str = "arm", metrics=("R1", "mAP"), digits: int = 2):
    """``mean ± std`` over seeds of each metric, one row per value of ``by`` in ``order`` (a DataFrame).

    ``runs`` has one row per run with a ``by`` column and the ``metrics``
    columns. With one run per row value the std is ``nan``. Taught in
    ``03_kpdm_key_phrase_masking``.
    """
    import pandas as pd

    missing = [c for c in (by, *metrics) if c not in runs.columns]
    if missing:
        raise ValueError(f"runs lacks the columns {missing}; it has {list(runs.columns)}")
    unknown = [value for value in order if value not in set(runs[by])]
    if unknown:
        raise ValueError(f"no runs for {unknown} in column {by!r}")
    stats = runs.groupby(by)[list(metrics)].agg(["mean", "std"]).reindex(list(order))
    return pd.DataFrame(
        {m: [f"{stats.loc[v, (m, 'mean')]:.{digits}f} ± {stats.loc[v, (m, 'std')]:.{digits}f}" for v in order]
         for m in metrics},
        index=list(order),
    )


def train_arms(arms: Mapping[str, tuple[str, Sequence[str]]], profile: str, seeds: Sequence[int],
               shared: Sequence[str] = ()):
    """Train (or load from the zoo) every arm over ``seeds``: one row per (arm, seed) and the models.

    ``arms`` maps an arm's name to ``(method, overrides)``; ``shared`` are
    overrides every arm gets first (e.g. :func:`ablation_overrides`). Returns
    a DataFrame with ``arm``, ``seed``, the five test metrics and ``train_s``
    (training seconds), and ``{(arm, seed): ZooModel}``. Taught in
    ``03_kpdm_key_phrase_masking``.
    """
    import pandas as pd

    from tireid_lite.zoo import get_or_train

    rows, models = [], {}
    for arm, (method, overrides) in arms.items():
        for seed in seeds:
            trained = get_or_train(method, profile, seed, overrides=[*shared, *overrides])
            models[arm, seed] = trained
            rows.append({"arm": arm, "seed": seed, **trained.test_metrics, "train_s": trained.train_seconds()})
    return pd.DataFrame(rows), models


_PER_QUERY: dict[tuple[str, str], dict] = {}  # (model folder, split) -> per-query metrics, computed once


def per_query_results(model, data, split: str = "test") -> dict:
    """A zoo model's per-query metrics on ``split`` (:func:`~tireid_lite.eval.metrics.per_query_metrics`),
    computed once per model and split."""
    from tireid_lite.eval.metrics import per_query_metrics
    from tireid_lite.eval.retrieval import score_split

    key = (str(model.folder), split)
    if key not in _PER_QUERY:
        sim, q_pids, g_pids = score_split(model.model, data, split)
        _PER_QUERY[key] = per_query_metrics(sim, q_pids, g_pids)
    return _PER_QUERY[key]


def compare_arms(models: Mapping, data, a: str, b: str, metric: str = "R1", split: str = "test"):
    """The paired difference ``b - a`` of two arms of :func:`train_arms` over their common seeds and the
    same queries, with a bootstrap interval over queries
    (:func:`~tireid_lite.eval.statistics.paired_difference`). Taught in ``03_kpdm_key_phrase_masking``."""
    import numpy as np

    from tireid_lite.eval.statistics import paired_difference

    seeds = sorted({seed for arm, seed in models if arm == a} & {seed for arm, seed in models if arm == b})
    if not seeds:
        raise ValueError(f"arms {a!r} and {b!r} share no seed; train both with the same seeds")
    values = {arm: np.stack([per_query_results(models[arm, seed], data, split)[metric] for seed in seeds])
              for arm in (a, b)}
    return paired_difference(values[a], values[b], metric)


def arms_table(models: Mapping, data, order: Sequence[str], reference: str, metric: str = "R1",
               split: str = "test"):
    """:func:`~tireid_lite.eval.statistics.paired_table` of arms of :func:`train_arms`: per arm in ``order``,
    ``mean ± std`` of ``metric`` over seeds and ``arm - reference`` over the common seeds and the same
    queries of ``split``, with its bootstrap interval and the number of seeds. Taught in
    ``03_kpdm_key_phrase_masking``."""
    from tireid_lite.eval.statistics import paired_table

    missing = [arm for arm in order if not any(a == arm for a, _ in models)]
    if missing:
        raise ValueError(f"no runs for {missing}; arms with runs: {sorted({a for a, _ in models})}")
    per_query = {arm: {seed: per_query_results(models[a, seed], data, split)[metric]
                       for a, seed in models if a == arm} for arm in order}
    table = paired_table(per_query, reference, metric)
    return table.set_index("arm")[["seeds", "mean ± std", "diff", "low", "high", "verdict"]]
