"""Benchmark: retrieval metrics at CUHK-PEDES test size.

Times :func:`tireid_lite.eval.metrics.retrieval_metrics` on random similarities
of 6,156 queries x 3,074 gallery images of 1,000 identities (the size of the
CUHK-PEDES test split), given as a numpy array and as a torch tensor, and the
same metrics computed one query at a time (a stable argsort of each row, then the
definitions) for comparison. The two must agree: the per-query loop is an
independent reading of IRRA's definitions.

Run alone: ``python benchmarks/bench_metrics.py [--quick]`` prints the result.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable

import numpy as np
import torch

from run_all import budget_met
from tireid_lite.eval.metrics import retrieval_metrics

NUM_QUERIES, NUM_GALLERY, NUM_IDENTITIES = 6156, 3074, 1000

BUDGET_TEXT = (
    "Metrics at CUHK-PEDES test size (6,156 queries x 3,074 images): identical to IRRA's "
    "definitions, well under a second (taken here as at most 0.5 s)."
)
LIMITS = {
    "numpy_input_median_s": {"max": 0.5},
    "torch_input_median_s": {"max": 0.5},
    "max_abs_diff_vs_loop_pct": {"max": 1e-9},
}


def cuhk_sized_case(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random float32 similarities with CUHK-PEDES's test-split shape and identity layout.

    Every identity has at least one image (about 3 each); every image has two
    captions (a few have three), so every query has a match.
    """
    rng = np.random.default_rng(seed)
    extra_images = rng.integers(0, NUM_IDENTITIES, NUM_GALLERY - NUM_IDENTITIES)
    gallery_pids = np.concatenate([np.arange(NUM_IDENTITIES), extra_images])  # (G,)
    extra_captions = rng.integers(0, NUM_GALLERY, NUM_QUERIES - 2 * NUM_GALLERY)
    caption_image = np.concatenate([np.arange(NUM_GALLERY), np.arange(NUM_GALLERY), extra_captions])
    query_pids = gallery_pids[caption_image]  # (Q,)
    similarity = rng.uniform(-1.0, 1.0, (NUM_QUERIES, NUM_GALLERY)).astype(np.float32)  # (Q, G)
    return similarity, query_pids, gallery_pids


def per_query_loop(
    similarity: np.ndarray, query_pids: np.ndarray, gallery_pids: np.ndarray
) -> dict[str, float]:
    """The metrics one query at a time: stable argsort of the row, ranks of its matches."""
    cmc_ks = (1, 5, 10)
    hits = np.zeros(len(cmc_ks))
    ap_sum = inp_sum = 0.0
    for row, pid in zip(similarity, query_pids):
        order = np.argsort(-row, kind="stable")
        ranks = np.flatnonzero(gallery_pids[order] == pid) + 1  # ascending, 1-based
        hits += ranks[0] <= np.array(cmc_ks)
        ap_sum += np.mean(np.arange(1, len(ranks) + 1) / ranks)
        inp_sum += len(ranks) / ranks[-1]
    n = len(query_pids)
    result = {f"R{k}": 100.0 * hit / n for k, hit in zip(cmc_ks, hits)}
    result.update(mAP=100.0 * ap_sum / n, mINP=100.0 * inp_sum / n)
    return result


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(quick: bool = False) -> dict:
    """Time the metrics for numpy and torch input and for the per-query loop."""
    repeats, loop_repeats = (3, 1) if quick else (7, 3)
    sim, q_pids, g_pids = cuhk_sized_case()
    sim_torch, q_torch, g_torch = torch.from_numpy(sim), torch.from_numpy(q_pids), torch.from_numpy(g_pids)

    vectorised = retrieval_metrics(sim, q_pids, g_pids)  # max_rank 10: R1, R5, R10
    loop = per_query_loop(sim, q_pids, g_pids)
    numpy_s = median_seconds(lambda: retrieval_metrics(sim, q_pids, g_pids), repeats)
    torch_s = median_seconds(lambda: retrieval_metrics(sim_torch, q_torch, g_torch), repeats)
    loop_s = median_seconds(lambda: per_query_loop(sim, q_pids, g_pids), loop_repeats)

    figures = {
        "queries": NUM_QUERIES,
        "gallery": NUM_GALLERY,
        "torch_threads": torch.get_num_threads(),
        "numpy_input_median_s": round(numpy_s, 4),
        "torch_input_median_s": round(torch_s, 4),
        "per_query_loop_median_s": round(loop_s, 4),
        "speedup_vs_loop": round(loop_s / numpy_s, 1),
        "max_abs_diff_vs_loop_pct": max(abs(vectorised[key] - loop[key]) for key in loop),
    }
    return {
        "name": "metrics",
        "description": "retrieval_metrics at CUHK-PEDES test size vs a per-query loop",
        "figures": figures,
        "budget": {"text": BUDGET_TEXT, "limits": LIMITS},
        "met": budget_met(figures, LIMITS),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    print(json.dumps(main(quick=parser.parse_args().quick), indent=2))
