"""Retrieval metrics (IRRA protocol): hand-computed cases, ties, input kinds, a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tireid_lite.errors import TIReIDError
from tireid_lite.eval.metrics import (
    RetrievalInputError,
    match_ranks,
    rank_gallery,
    retrieval_metrics,
)

# ------------------------------------------------------------ the hand example
#
# Gallery identities (columns 0..4): 1, 2, 1, 3, 2.   Queries (rows): identities 1, 2, 3.
HAND_SIM = np.array(
    [
        [0.9, 0.8, 0.3, 0.5, 0.1],  # id 1: order 0,1,3,2,4 -> matches (cols 0, 2) at ranks 1, 4
        [0.7, 0.2, 0.6, 0.4, 0.5],  # id 2: order 0,2,4,3,1 -> matches (cols 4, 1) at ranks 3, 5
        [0.1, 0.3, 0.2, 0.9, 0.4],  # id 3: order 3,4,1,2,0 -> match  (col 3)     at rank  1
    ],
    dtype=np.float32,
)
HAND_Q = [1, 2, 3]
HAND_G = [1, 2, 1, 3, 2]
# AP:  row 0 (1/1 + 2/4)/2 = 0.75;  row 1 (1/3 + 2/5)/2 = 11/30;  row 2 1/1 = 1
# INP: row 0 2/4 = 0.5;             row 1 2/5 = 0.4;              row 2 1/1 = 1
# R1 = 2/3 (rows 0, 2), R2 = 2/3, R3 = 3/3, R5 = 3/3
HAND_EXPECTED = {
    "R1": 100 * 2 / 3,
    "R5": 100.0,
    "mAP": 100 * (0.75 + 11 / 30 + 1.0) / 3,  # 70.555...
    "mINP": 100 * (0.5 + 0.4 + 1.0) / 3,  # 63.333...
}


def test_hand_example():
    got = retrieval_metrics(HAND_SIM, HAND_Q, HAND_G, max_rank=5)
    assert list(got) == ["R1", "R5", "mAP", "mINP"]
    assert got == pytest.approx(HAND_EXPECTED, abs=1e-9)
    assert all(type(v) is float for v in got.values())


def test_hand_example_ranks_and_keys_for_other_max_ranks():
    assert match_ranks(HAND_SIM, HAND_Q, HAND_G).tolist() == [[1, 4], [3, 5], [1, 0]]
    assert retrieval_metrics(HAND_SIM, HAND_Q, HAND_G, max_rank=3) == pytest.approx(
        {"R1": 100 * 2 / 3, "R3": 100.0, "mAP": HAND_EXPECTED["mAP"], "mINP": HAND_EXPECTED["mINP"]}
    )
    assert list(retrieval_metrics(HAND_SIM, HAND_Q, HAND_G, max_rank=2)) == ["R1", "R2", "mAP", "mINP"]
    # k above the gallery size: the top k is the whole gallery.
    wide = retrieval_metrics(HAND_SIM, HAND_Q, HAND_G, max_rank=20)
    assert list(wide) == ["R1", "R5", "R10", "R20", "mAP", "mINP"]
    assert (wide["R10"], wide["R20"]) == (100.0, 100.0)


def test_rank_gallery_hand_example():
    assert rank_gallery(HAND_SIM, 3).tolist() == [[0, 1, 3], [0, 2, 4], [3, 4, 1]]
    assert rank_gallery(HAND_SIM, 5)[1].tolist() == [0, 2, 4, 3, 1]


# ----------------------------------------------------------------------- ties


def test_all_equal_scores_rank_by_gallery_index():
    # Every score equal: the order is 0,1,2,3,4. Identity 2 sits at columns 1, 4 -> ranks 2, 5.
    sim = np.full((1, 5), 0.5, dtype=np.float32)
    got = retrieval_metrics(sim, [2], HAND_G, max_rank=5)
    # AP = (1/2 + 2/5)/2 = 0.45, INP = 2/5
    assert got == pytest.approx({"R1": 0.0, "R5": 100.0, "mAP": 45.0, "mINP": 40.0})
    assert rank_gallery(sim, 5).tolist() == [[0, 1, 2, 3, 4]]


def test_partial_ties_keep_gallery_order():
    # Order: col 1 (0.9), then the tie at 0.5 in index order 0, 2, 3, then col 4.
    sim = np.array([[0.5, 0.9, 0.5, 0.5, 0.2]] * 3, dtype=np.float64)
    ranks = match_ranks(sim, [1, 3, 2], HAND_G)
    assert ranks.tolist() == [[2, 3], [4, 0], [1, 5]]
    got = retrieval_metrics(sim, [1, 3, 2], HAND_G, max_rank=1)
    # AP: (1/2 + 2/3)/2 = 7/12; 1/4; (1/1 + 2/5)/2 = 0.7.  INP: 2/3; 1/4; 2/5.
    assert got == pytest.approx(
        {"R1": 100 / 3, "mAP": 100 * (7 / 12 + 0.25 + 0.7) / 3, "mINP": 100 * (2 / 3 + 0.25 + 0.4) / 3}
    )
    assert rank_gallery(sim, 4)[0].tolist() == [1, 0, 2, 3]


def test_negative_zero_ties_with_zero():
    # -0.0 == 0.0, so column 0 ranks first and the match (column 1) is second.
    sim = np.array([[-0.0, 0.0]], dtype=np.float32)
    assert match_ranks(sim, [7], [3, 7]).tolist() == [[2]]
    assert rank_gallery(sim, 2).tolist() == [[0, 1]]


def test_infinite_scores_are_ranked():
    sim = np.array([[-np.inf, 1.0, np.inf, np.inf]], dtype=np.float32)
    # order: col 2, col 3 (tie at +inf, index order), col 1, col 0
    assert match_ranks(sim, [5], [5, 0, 0, 5]).tolist() == [[2, 4]]
    assert rank_gallery(sim, 4).tolist() == [[2, 3, 1, 0]]


def test_float16_ties_are_resolved_on_float16_values():
    # 1.0 and 1.0001 are the same float16 number: the tie puts column 0 first.
    sim32 = np.array([[1.0, 1.0001]], dtype=np.float32)
    assert match_ranks(sim32, [1], [0, 1]).tolist() == [[1]]
    assert match_ranks(sim32.astype(np.float16), [1], [0, 1]).tolist() == [[2]]
    assert match_ranks(torch.from_numpy(sim32).half(), [1], [0, 1]).tolist() == [[2]]
    assert match_ranks(torch.from_numpy(sim32).bfloat16(), [1], [0, 1]).tolist() == [[2]]


def test_single_gallery_item():
    # One image: every query's only match is at rank 1.
    assert match_ranks(np.array([[0.3], [-2.0]]), [4, 4], [4]).tolist() == [[1], [1]]
    assert retrieval_metrics(np.array([[0.3], [-2.0]]), [4, 4], [4], max_rank=1) == {
        "R1": 100.0,
        "mAP": 100.0,
        "mINP": 100.0,
    }
    assert rank_gallery(np.array([[0.3]]), 1).tolist() == [[0]]


# ---------------------------------------------------------------- input kinds


def test_numpy_and_torch_inputs_agree():
    expected = retrieval_metrics(HAND_SIM, HAND_Q, HAND_G, max_rank=5)
    # HAND_SIM in float32 differs from its float64 literals, but not in order: same metrics.
    variants = [
        (torch.tensor(HAND_SIM), torch.tensor(HAND_Q), torch.tensor(HAND_G)),
        (torch.tensor(HAND_SIM, dtype=torch.float64), HAND_Q, np.array(HAND_G, dtype=np.int32)),
        (HAND_SIM.astype(np.float16), np.array(HAND_Q, dtype=np.uint8), tuple(HAND_G)),
        (torch.tensor(HAND_SIM).half(), torch.tensor(HAND_Q, dtype=torch.int32), HAND_G),
        (torch.tensor(HAND_SIM, requires_grad=True), HAND_Q, HAND_G),
        (np.asfortranarray(HAND_SIM), HAND_Q, HAND_G),
    ]
    for sim, q, g in variants:
        assert retrieval_metrics(sim, q, g, max_rank=5) == expected


def test_transposed_view_gives_image_to_text_metrics():
    # i2t: the images (columns of HAND_SIM) query the captions (its rows).
    got = retrieval_metrics(torch.tensor(HAND_SIM).t(), HAND_G, HAND_Q, max_rank=1)
    # per image query (rows of the transpose): ranks of its identity's caption row
    # col0 [.9,.7,.1] id1 -> row0 rank 1; col1 [.8,.2,.3] id2 -> row1 rank 3;
    # col2 [.3,.6,.2] id1 -> row0 rank 2; col3 [.5,.4,.9] id3 -> row2 rank 1;
    # col4 [.1,.5,.4] id2 -> row1 rank 1.  One match each: AP = INP = 1/rank.
    per_query = np.array([1, 1 / 3, 1 / 2, 1, 1])
    assert got == pytest.approx(
        {"R1": 60.0, "mAP": 100 * per_query.mean(), "mINP": 100 * per_query.mean()}
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensor_input():
    sim = torch.tensor(HAND_SIM, device="cuda")
    pids = torch.tensor(HAND_Q, device="cuda")
    assert retrieval_metrics(sim, pids, HAND_G, max_rank=5) == pytest.approx(HAND_EXPECTED, abs=1e-9)
    assert rank_gallery(sim, 3).tolist() == [[0, 1, 3], [0, 2, 4], [3, 4, 1]]


# ---------------------------------------------- brute-force reference (pure Python)


def reference_metrics(sim: np.ndarray, q_pids, g_pids, max_rank: int) -> dict[str, float]:
    """One query at a time with Python's sorted(), straight from the definitions."""
    cmc_ks = [k for k in (1, 5, 10) if k <= max_rank] + ([max_rank] if max_rank not in (1, 5, 10) else [])
    hits = {k: 0 for k in cmc_ks}
    ap_sum = inp_sum = 0.0
    for row, q in zip(sim.tolist(), q_pids):
        order = sorted(range(len(row)), key=lambda j: (-row[j], j))
        ranks = [pos + 1 for pos, j in enumerate(order) if g_pids[j] == q]
        for k in cmc_ks:
            hits[k] += ranks[0] <= k
        ap_sum += sum((n + 1) / r for n, r in enumerate(ranks)) / len(ranks)
        inp_sum += len(ranks) / ranks[-1]
    n = len(q_pids)
    out = {f"R{k}": 100 * hits[k] / n for k in cmc_ks}
    out.update(mAP=100 * ap_sum / n, mINP=100 * inp_sum / n)
    return out


def reference_top_k(sim: np.ndarray, k: int) -> list[list[int]]:
    return [sorted(range(len(row)), key=lambda j: (-row[j], j))[:k] for row in sim.tolist()]


def random_case(seed: int, num_queries: int, num_gallery: int, num_ids: int, decimals: int | None):
    """Random scores (rounded to force ties when ``decimals`` is set), every query matched."""
    rng = np.random.default_rng(seed)
    g_pids = np.concatenate([np.arange(num_ids), rng.integers(0, num_ids, num_gallery - num_ids)])
    q_pids = rng.integers(0, num_ids, num_queries)
    sim = rng.standard_normal((num_queries, num_gallery))
    if decimals is not None:
        sim = np.round(sim, decimals)
    return sim, q_pids, g_pids


@pytest.mark.parametrize(
    "seed, decimals, max_rank",
    [(0, None, 10), (1, 1, 10), (2, 0, 7), (3, 2, 1), (4, None, 30)],
)
def test_agrees_with_brute_force_reference(seed, decimals, max_rank):
    sim, q_pids, g_pids = random_case(seed, 37, 53, 9, decimals)
    got = retrieval_metrics(sim, q_pids, g_pids, max_rank=max_rank, chunk_size=8)
    expected = reference_metrics(sim, q_pids.tolist(), g_pids.tolist(), max_rank)
    assert list(got) == list(expected)
    assert got == pytest.approx(expected, abs=1e-6)
    assert rank_gallery(sim, 11, chunk_size=5).tolist() == reference_top_k(sim, 11)


def test_float16_agrees_with_reference_on_float16_values():
    sim, q_pids, g_pids = random_case(5, 29, 41, 6, None)
    half = sim.astype(np.float16)
    expected = reference_metrics(half.astype(np.float64), q_pids.tolist(), g_pids.tolist(), 10)
    assert retrieval_metrics(torch.from_numpy(half), q_pids, g_pids) == pytest.approx(expected, abs=1e-6)


def test_rank_gallery_against_reference_with_heavy_ties():
    sim, _, _ = random_case(6, 23, 31, 4, 0)  # integers in about -3..3: many ties
    for k in (1, 2, 9, 31):
        assert rank_gallery(sim, k, chunk_size=4).tolist() == reference_top_k(sim, k)


def test_chunking_does_not_change_results():
    sim, q_pids, g_pids = random_case(7, 45, 38, 7, 1)
    whole = retrieval_metrics(sim, q_pids, g_pids, chunk_size=10_000)
    for chunk_size in (1, 2, 7, 44, 45):
        assert retrieval_metrics(sim, q_pids, g_pids, chunk_size=chunk_size) == whole
        assert np.array_equal(
            match_ranks(sim, q_pids, g_pids, chunk_size=chunk_size), match_ranks(sim, q_pids, g_pids)
        )


# ----------------------------------------------------------- unmatched queries


def test_unmatched_queries_are_an_error_by_default():
    expected = r"2 of 4 queries have no gallery item .* query 1, identity 8"
    with pytest.raises(RetrievalInputError, match=expected):
        retrieval_metrics(np.zeros((4, 5)), [1, 8, 2, 9], HAND_G)


def test_skip_unmatched_leaves_them_out_of_every_mean():
    # Rows 1 and 3 (identities 8, 9) have no match; rows 0 and 2 are rows 0 and 1 of HAND_SIM.
    sim = np.stack([HAND_SIM[0], HAND_SIM[2], HAND_SIM[1], HAND_SIM[2]])
    got = retrieval_metrics(sim, [1, 8, 2, 9], HAND_G, max_rank=5, skip_unmatched=True)
    # kept: ranks (1, 4) and (3, 5) -> R1 1/2, R5 2/2, AP 0.75 and 11/30, INP 0.5 and 0.4
    assert got == pytest.approx(
        {"R1": 50.0, "R5": 100.0, "mAP": 100 * (0.75 + 11 / 30) / 2, "mINP": 100 * 0.45}
    )
    assert match_ranks(sim, [1, 8, 2, 9], HAND_G).tolist() == [[1, 4], [0, 0], [3, 5], [0, 0]]


def test_no_query_matched_is_an_error_even_when_skipping():
    with pytest.raises(RetrievalInputError, match="none of the 2 queries"):
        retrieval_metrics(np.zeros((2, 5)), [8, 9], HAND_G, skip_unmatched=True)


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "sim, q, g, message",
    [
        (np.zeros(5), [1], HAND_G, r"2-D \(queries x gallery\) matrix; got shape \(5,\)"),
        (np.zeros((3, 5)), [1, 2], HAND_G, r"shape \(3, 5\) .* query_pids has 2 entries and gallery_pids 5"),
        (np.zeros((3, 4)), HAND_Q, HAND_G, r"shape \(3, 4\) .* query_pids has 3 entries and gallery_pids 5"),
        (np.zeros((0, 5)), [], HAND_G, r"shape \(0, 5\): at least one query and one gallery item"),
        (np.zeros((3, 0)), HAND_Q, [], r"shape \(3, 0\): at least one query and one gallery item"),
        (np.zeros((3, 5), dtype=np.int64), HAND_Q, HAND_G, "dtype int64; pass float16"),
        (torch.zeros(3, 5, dtype=torch.int32), HAND_Q, HAND_G, r"dtype torch.int32; pass float16"),
        (np.zeros((3, 5)), [[1, 2, 3]], HAND_G, r"query_pids must be 1-D .* shape \(1, 3\)"),
        (np.zeros((3, 5)), HAND_Q, [1.0, 2.0, 1.0, 3.0, 2.0], "gallery_pids has dtype float64"),
    ],
)
def test_bad_input_gets_one_clear_error(sim, q, g, message):
    with pytest.raises(RetrievalInputError, match=message):
        retrieval_metrics(sim, q, g)


def test_nan_scores_are_reported_with_their_position():
    sim = HAND_SIM.copy()
    sim[1, 3] = np.nan
    sim[2, 0] = np.nan
    expected = r"shape \(3, 5\) holds 2 NaN scores, the first at query 1, gallery item 3"
    with pytest.raises(RetrievalInputError, match=expected):
        retrieval_metrics(sim, HAND_Q, HAND_G)
    with pytest.raises(RetrievalInputError, match="NaN"):
        rank_gallery(torch.from_numpy(sim), 2)


@pytest.mark.parametrize("max_rank", [0, -1, 2.5, True])
def test_bad_max_rank(max_rank):
    with pytest.raises(RetrievalInputError, match="max_rank must be a positive integer"):
        retrieval_metrics(HAND_SIM, HAND_Q, HAND_G, max_rank=max_rank)


@pytest.mark.parametrize("k", [0, 6, 1.0])
def test_bad_k_names_the_gallery_size(k):
    with pytest.raises(RetrievalInputError, match=r"from 1 to the gallery size 5 .*shape \(3, 5\)"):
        rank_gallery(HAND_SIM, k)


def test_bad_chunk_size():
    with pytest.raises(RetrievalInputError, match="chunk_size must be a positive integer; got 0"):
        retrieval_metrics(HAND_SIM, HAND_Q, HAND_G, chunk_size=0)


def test_errors_are_kit_errors_for_the_cli():
    assert issubclass(RetrievalInputError, TIReIDError)
    assert issubclass(RetrievalInputError, ValueError)
