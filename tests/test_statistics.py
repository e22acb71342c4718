"""Per-query metrics and paired differences with a bootstrap interval over queries, on hand values."""

from __future__ import annotations

import numpy as np
import pytest

from tireid_lite.eval.metrics import per_query_metrics, retrieval_metrics
from tireid_lite.eval.statistics import paired_difference


def test_per_query_metrics_by_hand_and_their_means_are_the_metrics():
    sim = np.array([[0.9, 0.8, 0.1],    # query pid 1
                    [0.2, 0.7, 0.4]])   # query pid 2
    q_pids, g_pids = [1, 2], [2, 1, 1]
    per = per_query_metrics(sim, q_pids, g_pids)
    # query 0: order 0 (pid 2), 1 (pid 1), 2 (pid 1) -> match ranks 2, 3: R1 0, AP (1/2 + 2/3) / 2, INP 2/3
    # query 1: order 1 (pid 1), 2 (pid 1), 0 (pid 2) -> match rank 3: R1 0, R5 100, AP 1/3, INP 1/3
    assert per["R1"].tolist() == [0.0, 0.0] and per["R5"].tolist() == [100.0, 100.0]
    assert per["mAP"] == pytest.approx([100 * (1 / 2 + 2 / 3) / 2, 100 / 3])
    assert per["mINP"] == pytest.approx([100 * 2 / 3, 100 / 3])
    rng = np.random.default_rng(0)
    big = rng.normal(size=(40, 30))
    qp, gp = rng.integers(0, 6, 40), np.arange(30) % 6
    means = {name: values.mean() for name, values in per_query_metrics(big, qp, gp).items()}
    assert means == pytest.approx(retrieval_metrics(big, qp, gp))


def test_paired_difference_on_hand_values():
    a = np.zeros(4)
    b = np.array([100.0, 0.0, 0.0, 0.0])  # B finds one query more out of four
    result = paired_difference(a, b, "R1", n_boot=2000, seed=1)
    assert result.diff == pytest.approx(25.0) and result.queries == 4 and result.seeds == 1
    assert 0.0 <= result.low <= 25.0 <= result.high <= 100.0
    assert not result.excludes_zero  # one query in four: resampling often leaves it out
    assert "includes 0, no difference shown" in result.verdict
    clear = paired_difference(np.zeros(200), np.full(200, 100.0) * (np.arange(200) % 2), "R1")
    assert clear.diff == pytest.approx(50.0) and clear.excludes_zero and clear.low > 35
    assert "excludes 0, B above A" in clear.verdict
    worse = paired_difference(np.full(200, 100.0) * (np.arange(200) % 2), np.zeros(200), "R1")
    assert worse.high < 0 and "B below A" in worse.verdict


def test_paired_difference_averages_seeds_per_query():
    a = np.array([[0.0, 100.0, 0.0], [0.0, 0.0, 0.0]])  # (S=2, Q=3)
    b = np.array([[100.0, 100.0, 0.0], [0.0, 100.0, 0.0]])
    result = paired_difference(a, b)
    assert result.diff == pytest.approx((50 + 50 + 0) / 3)
    assert result.seed_diffs == pytest.approx((100 / 3, 100 / 3)) and result.seeds == 2
    same = paired_difference(a, a)
    assert same.diff == 0 and same.low == 0 and same.high == 0 and not same.excludes_zero
    with pytest.raises(ValueError, match="same shape"):
        paired_difference(a, b[:, :2])


def test_seed_summary_states_mean_std_and_the_number_of_seeds():
    from tireid_lite.eval.statistics import seed_summary

    assert seed_summary([1.0, 3.0]) == "2.00 ± 1.41 (2 seeds)"  # std of (1, 3) with ddof 1 = sqrt(2)
    assert seed_summary([5.0]) == "5.00 ± nan (1 seed)"


def test_paired_table_gives_each_arm_its_difference_to_the_reference():
    from tireid_lite.eval.statistics import paired_table

    q = 400
    rng = np.random.default_rng(0)
    base = {s: (rng.random(q) < 0.3) * 100.0 for s in (0, 1)}
    better = {s: np.maximum(base[s], (rng.random(q) < 0.5) * 100.0) for s in (0, 1)}  # never worse, often better
    same = {s: base[s].copy() for s in (0, 1)}
    table = paired_table({"base": base, "better": better, "same": same}, "base").set_index("arm")
    expected = np.mean([better[s] - base[s] for s in (0, 1)])
    assert table.loc["better", "diff"] == pytest.approx(expected)
    assert table.loc["better", "excludes_zero"] and "excludes 0 (2 seeds): above base" in table.loc["better", "verdict"]
    assert table.loc["same", "diff"] == 0.0 and not table.loc["same", "excludes_zero"]
    assert table.loc["base", "verdict"] == "reference" and table.loc["base", "seeds"] == 2
    with pytest.raises(ValueError, match="no runs"):
        paired_table({"base": base}, "other")


def test_interval_reading_states_what_the_interval_supports():
    from tireid_lite.eval.statistics import interval_reading

    words = ("above", "below", "neither")
    assert interval_reading(0.1, 2.0, *words) == "the interval excludes 0: above"
    assert interval_reading(-2.0, -0.1, *words) == "the interval excludes 0: below"
    assert interval_reading(-0.1, 0.1, *words) == "the interval includes 0: neither"
    assert interval_reading(0.0, 1.0, *words) == "the interval includes 0: neither"  # touching 0 is not excluding it
    with pytest.raises(ValueError, match="low bound above its high bound"):
        interval_reading(1.0, -1.0, *words)
