"""Retrieval metrics of the IRRA protocol: R@k (CMC), mAP and mINP.

Introduced in ``01_data`` (worked by hand) and used from ``02_baseline_irra`` on.

Queries are the rows of the similarity matrix ``sim`` (captions), the gallery
its columns (images); a gallery image *matches* a query when it shows the
query's identity. Each row is ranked by similarity, highest first. If a query has ``m`` matches at 1-based
ranks ``r_1 < r_2 < ... < r_m``:

* ``R@k = 1 if r_1 <= k else 0`` (CMC: a match among the top ``k``);
* ``AP = (1/m) * sum_j j / r_j`` (precision at the rank of each match, averaged
  over the matches);
* ``INP = m / r_m`` (inverse negative penalty of Ye et al., TPAMI 2021: how far
  down the list the *last* match sits).

R@k, mAP and mINP are the means over queries, in percent. These are exactly the
definitions of IRRA's ``utils/metrics.py`` (function ``rank``).

Ties. Among equal scores the lower gallery index ranks first (the order a stable
sort gives), so results never depend on the sorting algorithm or the device.
IRRA sorts with ``torch.argsort``, whose order among equal scores is not
specified; the two agree whenever no match shares its score with a non-matching
image, which is the usual case for float32 features of a trained model. Ties do
matter for a collapsed model (every score equal) and for float16 scores.

Queries without a match. IRRA's code fails for them (its AP is ``0 / 0`` and
its INP looks up the last match of an empty list). Here they are an error by
default, naming how many there are; ``skip_unmatched=True`` leaves them out of
every mean (R@k included).

How it is computed. Only the ranks of the matches are needed, and each is a count:
``rank = 1 + #(scores above it) + #(equal scores at a lower gallery index)``.
Each chunk of queries is sorted by value only (numpy's vectorised sort, several
times faster than an argsort); the scores above a match come from a binary search
in its sorted row, run for all matches at once; the equal-score term is counted
directly, only for matches that share their score. There is no Python loop per
query. Everything runs in numpy on the CPU; a torch tensor is copied there first
(76 MB at CUHK-PEDES test size).
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch

from tireid_lite.errors import TIReIDError

ScoreMatrix = Union[np.ndarray, torch.Tensor]
Identities = Union[np.ndarray, torch.Tensor, Sequence[int]]

CMC_RANKS = (1, 5, 10)
DEFAULT_CHUNK_SIZE = 1024

_FLOAT_TORCH = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_FLOAT_NUMPY = (np.float16, np.float32, np.float64)


class RetrievalInputError(TIReIDError, ValueError):
    """A similarity matrix or identity list that the retrieval metrics cannot use."""


# ---------------------------------------------------------------- input checks


def _scores_as_numpy(similarity: ScoreMatrix) -> np.ndarray:
    """The scores as a CPU numpy array, float32 or float64 (exact for float16/bfloat16)."""
    if isinstance(similarity, torch.Tensor):
        if similarity.dtype not in _FLOAT_TORCH:
            raise RetrievalInputError(
                f"similarity has dtype {similarity.dtype}; pass float16, bfloat16, float32 or "
                "float64 scores (for example with .float())"
            )
        scores = similarity.detach()
        if scores.dtype != torch.float64:
            scores = scores.to(torch.float32)  # widening is exact: same order, same ties
        return scores.cpu().numpy()
    scores = np.asarray(similarity)
    if scores.dtype.type not in _FLOAT_NUMPY:
        raise RetrievalInputError(
            f"similarity has dtype {scores.dtype}; pass float16, float32 or float64 scores "
            "(for example with .astype(np.float32))"
        )
    if scores.dtype != np.float64:
        scores = scores.astype(np.float32, copy=False)
    return scores


def _check_scores(scores: np.ndarray) -> None:
    """A non-empty 2-D matrix without NaN."""
    if scores.ndim != 2:
        raise RetrievalInputError(
            f"similarity must be a 2-D (queries x gallery) matrix; got shape {tuple(scores.shape)}"
        )
    if scores.size == 0:
        raise RetrievalInputError(
            f"similarity has shape {tuple(scores.shape)}: at least one query and one gallery "
            "item are needed"
        )
    if np.isnan(scores.min()):  # min() is NaN exactly when a score is; one pass, no mask
        nan = np.isnan(scores)
        row, col = np.argwhere(nan)[0]
        raise RetrievalInputError(
            f"similarity of shape {tuple(scores.shape)} holds {int(nan.sum())} NaN scores, the "
            f"first at query {row}, gallery item {col}; check the features for NaN (for example "
            "a zero vector that was L2-normalised)"
        )


def _identities_as_numpy(pids: Identities, name: str) -> np.ndarray:
    """One integer identity per query or gallery item, as int64."""
    if isinstance(pids, torch.Tensor):
        arr = pids.detach().cpu().numpy()
    else:
        arr = np.asarray(pids)
    if arr.ndim != 1:
        raise RetrievalInputError(
            f"{name} must be 1-D (one identity per item); got shape {tuple(arr.shape)}"
        )
    if arr.size and not (np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_):
        raise RetrievalInputError(
            f"{name} has dtype {arr.dtype}; identities must be integers (the pid of each item)"
        )
    return arr.astype(np.int64, copy=False)


def _is_positive_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def _check_chunk_size(chunk_size: int) -> None:
    if not _is_positive_int(chunk_size):
        raise RetrievalInputError(f"chunk_size must be a positive integer; got {chunk_size!r}")


def _prepare(
    similarity: ScoreMatrix, query_pids: Identities, gallery_pids: Identities
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked numpy versions of the three inputs; shapes must agree."""
    scores = _scores_as_numpy(similarity)
    q_pids = _identities_as_numpy(query_pids, "query_pids")
    g_pids = _identities_as_numpy(gallery_pids, "gallery_pids")
    if scores.ndim == 2 and (len(q_pids), len(g_pids)) != scores.shape:
        raise RetrievalInputError(
            f"similarity has shape {tuple(scores.shape)} (queries x gallery) but query_pids has "
            f"{len(q_pids)} entries and gallery_pids {len(g_pids)}; pass one identity per row "
            "and one per column"
        )
    _check_scores(scores)
    return scores, q_pids, g_pids


class _GalleryByIdentity:
    """The gallery's indices grouped by identity, to find every query's matches without a scan."""

    def __init__(self, g_pids: np.ndarray) -> None:
        self.order = np.argsort(g_pids, kind="stable")  # (G,) within an identity: index ascending
        self.sorted_pids = g_pids[self.order]  # (G,)

    def count(self, q_pids: np.ndarray) -> np.ndarray:
        """(Q,) how many gallery items share each query's identity."""
        after_last = self.sorted_pids.searchsorted(q_pids, "right")
        return after_last - self.sorted_pids.searchsorted(q_pids, "left")

    def matches(self, q_pids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (query, matching gallery item) pair, as three (P,) arrays.

        ``rows`` is the query, ``cols`` the gallery item and ``slot`` the pair's
        number among its query's matches (0-based, in gallery-index order).
        """
        first = self.sorted_pids.searchsorted(q_pids, "left")  # (Q,)
        count = self.sorted_pids.searchsorted(q_pids, "right") - first  # (Q,)
        rows = np.repeat(np.arange(len(q_pids)), count)  # (P,)
        slot = np.arange(len(rows)) - np.repeat(np.cumsum(count) - count, count)  # (P,)
        cols = self.order[first[rows] + slot]  # (P,)
        return rows, slot, cols


# ------------------------------------------------------------- ranks of matches


def _count_at_most(sorted_rows: np.ndarray, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each entry: how many scores of ``sorted_rows[rows]`` are <= ``values``.

    A binary search run on all entries at once: ``count`` grows by the largest
    power of two that keeps ``sorted_rows[row, count - 1] <= value``, one step per
    bit of the gallery size (about 12 steps for 3,074 images).
    """
    num_gallery = sorted_rows.shape[1]
    count = np.zeros(len(rows), dtype=np.int64)  # (P,)
    step = 1 << (num_gallery.bit_length() - 1)
    while step:
        candidate = np.minimum(count + step, num_gallery)
        count = np.where(sorted_rows[rows, candidate - 1] <= values, candidate, count)
        step >>= 1
    return count


def _count_ties_before(scores: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """For each (row, col): gallery items left of ``col`` in that row with exactly its score."""
    out = np.empty(len(rows), dtype=np.int64)
    gallery_index = np.arange(scores.shape[1])
    block = len(scores)  # rows of (block, G) at a time: the memory of one chunk of queries
    for start in range(0, len(rows), block):
        r, c = rows[start : start + block], cols[start : start + block]
        same = scores[r] == scores[r, c][:, None]  # (B, G)
        out[start : start + block] = (same & (gallery_index[None, :] < c[:, None])).sum(1)
    return out


def _chunk_match_ranks(
    scores: np.ndarray, q_pids: np.ndarray, gallery: _GalleryByIdentity, width: int
) -> np.ndarray:
    """(C, width) ascending 1-based ranks of each query's matches, 0 where a row has fewer."""
    num_queries, num_gallery = scores.shape
    rows, slot, cols = gallery.matches(q_pids)  # (P,) each
    match_score = scores[rows, cols]  # (P,)

    sorted_rows = np.sort(scores, axis=1)  # (C, G) ascending, values only
    at_most = _count_at_most(sorted_rows, rows, match_score)  # (P,) >= 1: the match itself
    rank = num_gallery - at_most + 1  # 1 + scores strictly above
    # The match's score sits at position at_most - 1 of the sorted row (its last copy);
    # another gallery item has the same score iff position at_most - 2 holds it too.
    tied = (at_most >= 2) & (sorted_rows[rows, np.maximum(at_most - 2, 0)] == match_score)
    if tied.any():
        rank[tied] += _count_ties_before(scores, rows[tied], cols[tied])

    ranks = np.full((num_queries, width), np.iinfo(np.int64).max, dtype=np.int64)  # (C, M)
    ranks[rows, slot] = rank
    ranks.sort(axis=1)
    ranks[ranks == np.iinfo(np.int64).max] = 0
    return ranks


def _match_ranks(
    scores: np.ndarray, q_pids: np.ndarray, gallery: _GalleryByIdentity, chunk_size: int
) -> np.ndarray:
    """(Q, M) match ranks of all queries, ``chunk_size`` queries at a time."""
    width = max(int(gallery.count(q_pids).max()), 1)
    ranks = np.zeros((len(q_pids), width), dtype=np.int64)  # (Q, M)
    for start in range(0, len(q_pids), chunk_size):
        stop = start + chunk_size
        chunk = np.ascontiguousarray(scores[start:stop])  # (C, G); a no-op for row-major input
        ranks[start:stop] = _chunk_match_ranks(chunk, q_pids[start:stop], gallery, width)
    return ranks


def match_ranks(
    similarity: ScoreMatrix,
    query_pids: Identities,
    gallery_pids: Identities,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> np.ndarray:
    """The 1-based ranks of every query's matches, the quantity all metrics derive from.

    Returns an int64 array of shape ``(Q, M)``, ``M`` the largest number of
    matches of any query (at least 1): row ``i`` holds query ``i``'s match ranks in ascending
    order, padded with 0 (a query with no match has a row of zeros). Ties rank the
    lower gallery index first. Taught in ``02_baseline``.
    """
    _check_chunk_size(chunk_size)
    scores, q_pids, g_pids = _prepare(similarity, query_pids, gallery_pids)
    return _match_ranks(scores, q_pids, _GalleryByIdentity(g_pids), chunk_size)


# ---------------------------------------------------------------------- metrics


def _cmc_ranks(max_rank: int) -> list[int]:
    """The k of each reported R@k: 1, 5, 10 up to ``max_rank``, and ``max_rank`` itself."""
    ks = [k for k in CMC_RANKS if k <= max_rank]
    if max_rank not in ks:
        ks.append(max_rank)
    return ks


def retrieval_metrics(
    similarity: ScoreMatrix,
    query_pids: Identities,
    gallery_pids: Identities,
    max_rank: int = 10,
    *,
    skip_unmatched: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict[str, float]:
    """R@k, mAP and mINP in percent, with IRRA's definitions (see the module docstring).

    ``similarity`` is ``(Q, G)``: queries (captions) by gallery items (images), a
    numpy array or a torch tensor on any device (moved to the CPU), float16,
    bfloat16, float32 or float64. ``query_pids`` and ``gallery_pids`` hold one
    integer identity per row and per column. The keys are ``R1``, ``R5``,
    ``R10`` (each ``R{k}`` with ``k <= max_rank``, plus ``R{max_rank}``), then
    ``mAP`` and ``mINP``. A ``max_rank`` above the gallery size is allowed (the
    whole gallery is then the top ``k``). Queries with no match are an error
    unless ``skip_unmatched`` leaves them out of every mean. Queries are processed
    ``chunk_size`` at a time, which bounds memory and does not change the result.
    Taught in ``02_baseline``.
    """
    if not _is_positive_int(max_rank):
        raise RetrievalInputError(f"max_rank must be a positive integer; got {max_rank!r}")
    _check_chunk_size(chunk_size)
    scores, q_pids, g_pids = _prepare(similarity, query_pids, gallery_pids)

    gallery = _GalleryByIdentity(g_pids)
    num_matches = gallery.count(q_pids)  # (Q,)
    unmatched = np.flatnonzero(num_matches == 0)
    if len(unmatched) and not skip_unmatched:
        first = int(unmatched[0])
        raise RetrievalInputError(
            f"{len(unmatched)} of {len(q_pids)} queries have no gallery item of their identity "
            f"(the first is query {first}, identity {int(q_pids[first])}); give every query a "
            "match in the gallery or pass skip_unmatched=True to leave them out"
        )
    if len(unmatched) == len(q_pids):
        raise RetrievalInputError(
            f"none of the {len(q_pids)} queries has a gallery item of its identity; check that "
            "query_pids and gallery_pids use the same identity numbering"
        )

    ranks = _match_ranks(scores, q_pids, gallery, chunk_size)  # (Q, M)
    keep = num_matches > 0
    ranks, num_matches = ranks[keep], num_matches[keep]

    per_query = _per_query(ranks, num_matches, max_rank)
    return {name: float(values.mean()) for name, values in per_query.items()}


def _per_query(ranks: np.ndarray, num_matches: np.ndarray, max_rank: int) -> dict[str, np.ndarray]:
    """Each query's R@k (0 or 100), AP and INP (percent) from its match ranks (Q, M) and match counts (Q,)."""
    first_rank = ranks[:, 0]  # (Q',)
    last_rank = ranks[np.arange(len(ranks)), num_matches - 1]  # (Q',)
    match_number = np.arange(1, ranks.shape[1] + 1)[None, :]  # (1, M): j of the j-th match
    precision_at_match = np.where(ranks > 0, match_number / np.maximum(ranks, 1), 0.0)  # (Q', M)
    average_precision = precision_at_match.sum(1) / num_matches
    inverse_negative_penalty = num_matches / last_rank
    result = {f"R{k}": 100.0 * (first_rank <= k) for k in _cmc_ranks(max_rank)}
    result["mAP"] = 100.0 * average_precision
    result["mINP"] = 100.0 * inverse_negative_penalty
    return result


def per_query_metrics(
    similarity: ScoreMatrix,
    query_pids: Identities,
    gallery_pids: Identities,
    max_rank: int = 10,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict[str, np.ndarray]:
    """Each query's contribution to :func:`retrieval_metrics`: ``R1``, ``R5``, ``R10`` (0 or 100),
    ``mAP`` (the query's AP) and ``mINP`` (its INP), in percent, as (Q,) arrays whose means are the
    metrics. What paired comparisons resample (:mod:`tireid_lite.eval.statistics`). Every query
    must have a match. Taught in ``03_kpdm_key_phrase_masking``."""
    _check_chunk_size(chunk_size)
    scores, q_pids, g_pids = _prepare(similarity, query_pids, gallery_pids)
    gallery = _GalleryByIdentity(g_pids)
    num_matches = gallery.count(q_pids)
    if (num_matches == 0).any():
        raise RetrievalInputError(
            f"{int((num_matches == 0).sum())} of {len(q_pids)} queries have no gallery item of their identity; "
            "per-query metrics need a match for every query"
        )
    return _per_query(_match_ranks(scores, q_pids, gallery, chunk_size), num_matches, max_rank)


# --------------------------------------------------------------------- top-k


def rank_gallery(similarity: ScoreMatrix, k: int, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> np.ndarray:
    """The ``k`` best gallery indices of every query, best first: int64 ``(Q, k)``.

    Same order as the metrics: higher score first, among equal scores the lower
    gallery index first. Used to draw retrieval galleries (``02_baseline``).
    """
    _check_chunk_size(chunk_size)
    scores = _scores_as_numpy(similarity)
    _check_scores(scores)
    num_queries, num_gallery = scores.shape
    if not (_is_positive_int(k) and k <= num_gallery):
        raise RetrievalInputError(
            f"k must be an integer from 1 to the gallery size {num_gallery} (similarity has shape "
            f"{tuple(scores.shape)}); got {k!r}"
        )
    top = np.empty((num_queries, k), dtype=np.int64)
    for start in range(0, num_queries, chunk_size):
        chunk = np.ascontiguousarray(scores[start : start + chunk_size])  # (C, G)
        kth_best = np.partition(chunk, num_gallery - k, axis=1)[:, num_gallery - k]  # (C,)
        above = chunk > kth_best[:, None]  # fewer than k per row
        level = chunk == kth_best[:, None]
        still_needed = k - above.sum(1)  # >= 1: taken from the level, lowest index first
        chosen = above | (level & (np.cumsum(level, axis=1) <= still_needed[:, None]))
        cols = np.nonzero(chosen)[1].reshape(len(chunk), k)  # (C, k), gallery index ascending
        best_first = np.argsort(-np.take_along_axis(chunk, cols, axis=1), axis=1, kind="stable")
        top[start : start + chunk_size] = np.take_along_axis(cols, best_first, axis=1)
    return top
