"""Paired comparisons of two arms: the difference over the same queries and seeds, with a bootstrap interval.

Two arms of an ablation (say IRRA without and with a mechanism) are trained
with the same seeds and scored on the same test queries, so their difference
is measured query by query. With ``a[s, q]`` and ``b[s, q]`` a per-query
metric (R@1 as 0/100, AP, ...) of seed ``s`` and query ``q``::

    d_q = mean_s (b[s, q] - a[s, q])            the paired difference of query q
    D = mean_q d_q                               = metric(B) - metric(A), averaged over seeds

and the 95% interval of D comes from resampling the queries with
replacement (a percentile bootstrap). Queries, not seeds, are resampled: with
two or three seeds there is nothing to resample among them, and each seed
already sees every query. The interval says how much D moves with the choice
of test queries; the seeds' own spread is reported beside it. A conclusion
("B beats A") is drawn only when the interval excludes 0
(:attr:`PairedDifference.verdict`). Taught in ``03_kpdm_key_phrase_masking``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedDifference:
    """``B - A`` of one metric: the mean over queries and seeds and its bootstrap interval."""

    metric: str
    diff: float  # mean over seeds and queries of b - a
    low: float  # the interval's bounds
    high: float
    seed_diffs: tuple[float, ...]  # the difference of each seed (its spread is the seeds' share of the noise)
    queries: int
    level: float = 0.95

    @property
    def seeds(self) -> int:
        return len(self.seed_diffs)

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0."""
        return self.low > 0 or self.high < 0

    @property
    def verdict(self) -> str:
        """One line stating the difference, its interval and what follows from it."""
        side = "B above A" if self.low > 0 else "B below A" if self.high < 0 else "no difference shown"
        test = "excludes 0" if self.excludes_zero else "includes 0"
        return (f"{self.metric} B - A = {self.diff:+.2f} [{self.low:+.2f}, {self.high:+.2f}] "
                f"({self.level:.0%} bootstrap over {self.queries} queries, {self.seeds} seed(s)): "
                f"the interval {test}, {side}")

    def as_dict(self) -> dict[str, float | int | bool]:
        return {"diff": self.diff, "low": self.low, "high": self.high, "seeds": self.seeds,
                "queries": self.queries, "excludes_zero": self.excludes_zero}


def interval_reading(low: float, high: float, above: str, below: str, neither: str) -> str:
    """What an interval ``[low, high]`` of a difference supports, as one phrase: ``"the interval excludes 0: "``
    + ``above`` (all of it above 0) or ``below`` (all below), else ``"the interval includes 0: "`` + ``neither``.
    The notebooks state every probe's conclusion through it, so the test is the interval, never the prose."""
    if low > high:
        raise ValueError(f"interval [{low}, {high}] has its low bound above its high bound")
    if low > 0:
        return f"the interval excludes 0: {above}"
    if high < 0:
        return f"the interval excludes 0: {below}"
    return f"the interval includes 0: {neither}"


def paired_difference(
    a: np.ndarray, b: np.ndarray, metric: str = "R1", *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> PairedDifference:
    """``B - A`` over the same queries (and seeds): ``a`` and ``b`` are (Q,) or (S, Q) per-query values
    (e.g. :func:`~tireid_lite.eval.metrics.per_query_metrics` of each seed's run); see the module docstring."""
    a2, b2 = np.atleast_2d(np.asarray(a, dtype=np.float64)), np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a2.shape != b2.shape or a2.ndim != 2:
        raise ValueError(f"a and b must be paired (Q,) or (S, Q) arrays of the same shape, got {a2.shape} and {b2.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level} must be in (0, 1), e.g. 0.95")
    if n_boot < 100:
        raise ValueError(f"n_boot={n_boot} is too few resamples for an interval; use 1000 or more")
    per_query = (b2 - a2).mean(axis=0)  # (Q,) d_q
    num = per_query.size
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, 500):  # bounded memory: 500 resamples of Q indices at a time
        stop = min(start + 500, n_boot)
        index = rng.integers(0, num, size=(stop - start, num))
        means[start:stop] = per_query[index].mean(axis=1)
    tail = (1.0 - level) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return PairedDifference(metric=metric, diff=float(per_query.mean()), low=float(low), high=float(high),
                            seed_diffs=tuple(float(d) for d in (b2 - a2).mean(axis=1)), queries=num, level=level)


def seed_summary(values, digits: int = 2) -> str:
    """``mean ± std (n seeds)`` of one metric's per-seed values (std with ``ddof=1``; ``± nan`` for one seed)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no values to summarise; train at least one seed")
    std = float(x.std(ddof=1)) if x.size > 1 else float("nan")
    return f"{x.mean():.{digits}f} ± {std:.{digits}f} ({x.size} seed{'s' if x.size != 1 else ''})"


def paired_table(per_query, reference: str, metric: str = "R1", *, n_boot: int = 2000, seed: int = 0):
    """One row per arm: its metric as ``mean ± std`` over seeds and ``arm - reference`` with its interval.

    ``per_query`` maps an arm's name to ``{seed: (Q,) per-query values}`` (the
    same queries for every arm, e.g. :func:`~tireid_lite.eval.metrics.per_query_metrics`).
    Each difference is a :func:`paired_difference` over the seeds the two arms
    share. Columns: ``arm``, ``seeds``, ``mean ± std``, ``diff``, ``low``,
    ``high``, ``excludes_zero`` and ``verdict`` ("reference" for the reference
    arm; else the interval's reading). A DataFrame. Taught in ``10_paper_tables``.
    """
    import pandas as pd

    if reference not in per_query:
        raise ValueError(f"reference arm {reference!r} has no runs; arms with runs: {sorted(per_query)}")
    rows = []
    for arm, by_seed in per_query.items():
        means = [float(np.mean(v)) for v in by_seed.values()]
        row = {"arm": arm, "seeds": len(by_seed), "mean ± std": seed_summary(means)}
        if arm == reference:
            row.update(diff=0.0, low=0.0, high=0.0, excludes_zero=False, verdict="reference")
        else:
            common = sorted(set(by_seed) & set(per_query[reference]))
            if not common:
                raise ValueError(f"arms {reference!r} and {arm!r} share no seed; train both with the same seeds")
            d = paired_difference(np.stack([per_query[reference][s] for s in common]),
                                  np.stack([by_seed[s] for s in common]), metric, n_boot=n_boot, seed=seed)
            side = "above" if d.low > 0 else "below" if d.high < 0 else "not distinguishable from"
            test = "excludes" if d.excludes_zero else "includes"
            seeds = f"{len(common)} seed{'s' if len(common) != 1 else ''}"
            row.update(diff=d.diff, low=d.low, high=d.high, excludes_zero=d.excludes_zero,
                       verdict=f"interval {test} 0 ({seeds}): {side} {reference}")
        rows.append(row)
    return pd.DataFrame(rows)
