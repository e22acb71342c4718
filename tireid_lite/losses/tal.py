"""RDE's triplet alignment loss (TAL), the matching loss of its noisy-correspondence training.

Taught in ``05_kpdm_trusted_consensus``, where it trains RDE's two embeddings
(global and token-selection) and its per-pair values feed the noise
partitioners of :mod:`tireid_lite.train.partition`.

TAL is a hinge on the gap between a pair's positives and its negatives. The
positive side is a softmax-weighted mean of the similarities to every
same-identity item of the batch, with the weights detached, and the negative
side is a temperature-scaled log-sum-exp over every other-identity item: a
smooth maximum, never below the hardest negative's similarity. So TAL bounds
from above the triplet loss with the hardest negative (RDE's TRL), while its
gradient is spread over all negatives instead of one. A pair whose positives
beat the smooth maximum by the margin contributes nothing.

Like :func:`~tireid_lite.losses.matching.sdm_loss`, the loss L2-normalises the
features itself and computes in at least float32 with autocast switched off.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from tireid_lite.losses.matching import _check_features, _cosine_t2i

TalReduction = Literal["mean", "sum", "none"]
TAL_REDUCTIONS = ("mean", "sum", "none")


def _tal_rows(sim: Tensor, positive: Tensor, margin: float, tau: float) -> Tensor:
    """One direction of TAL: row i of ``sim`` holds query i against every candidate j.

    ``sim`` is (B, B) and ``positive`` (B, B) bool with a true diagonal. Returns (B,).
    """
    logits = sim / tau  # (B, B)
    with torch.no_grad():
        # softmax over the row's positives only; the weights carry no gradient
        alpha = torch.softmax(logits.masked_fill(~positive, float("-inf")), dim=1)  # (B, B)
    positive_sim = (alpha * sim).sum(dim=1)  # (B,)
    has_negative = (~positive).any(dim=1)  # (B,)
    # A row without negatives would take log(0) = -inf and a NaN gradient; give it a
    # finite stand-in here and a term of exactly 0 below.
    negative_logits = logits.masked_fill(positive, float("-inf"))  # (B, B)
    negative_logits = torch.where(has_negative[:, None], negative_logits, torch.zeros_like(logits))
    negative_sim = tau * torch.logsumexp(negative_logits, dim=1)  # (B,)
    hinge = F.relu(margin - positive_sim + negative_sim)  # (B,)
    return torch.where(has_negative, hinge, torch.zeros_like(hinge))


def tal_loss(
    image_feats: Tensor,
    text_feats: Tensor,
    pids: Tensor,
    margin: float = 0.1,
    tau: float = 0.015,
    reduction: TalReduction = "mean",
    weights: Tensor | None = None,
) -> Tensor:
    r"""Triplet Alignment Loss (RDE, CVPR 2024), both directions, per pair.

    Row i of ``image_feats`` (B, D) and ``text_feats`` (B, D) is one image-text
    pair of identity ``pids[i]`` (B,). With S_ij the cosine similarity of text i
    and image j (the function L2-normalises), y_ij = 1 when pids i and j are
    equal, margin m and temperature tau::

        alpha_ij = y_ij exp(S_ij / tau) / sum_k y_ik exp(S_ik / tau)     (detached)
        S+_i     = sum_j alpha_ij S_ij
        L^{t2i}_i = [ m - S+_i + tau * log sum_j (1 - y_ij) exp(S_ij / tau) ]_+

    and L^{i2t}_i is the same with S transposed (image i against every text j).
    Pair i's loss is L_i = L^{i2t}_i + L^{t2i}_i. The negative term is a smooth
    maximum: as tau -> 0 it tends to the hardest negative's similarity. The
    positive weights alpha are computed without gradient, so the gradient of S+_i
    with respect to S_ij is alpha_ij. A row with no negative in the batch (every
    pair of one identity) has log 0 = -inf inside the hinge, so its term is 0.

    ``weights`` (B,), optional and non-negative, scale the pairs: w_i = 0 drops
    pair i (a pair judged noisy), a fraction down-weights it (an uncertain
    pair). Only the pair's own term is weighted; its image and text still serve
    as negatives in the other rows, as in RDE. Reductions, with w_i = 1 when
    ``weights`` is None::

        "none": (B,) with entry i = w_i L_i
        "sum":  sum_i w_i L_i
        "mean": sum_i w_i L_i / sum_i w_i     (0, still connected to the graph, when sum_i w_i = 0)

    Where the kit differs from RDE's code: RDE's code sums the weighted per-pair
    terms (``"sum"``); the kit's default ``"mean"`` divides by the total weight so
    that the scale does not depend on the batch size or on how many pairs a
    partitioner excluded (with RDE's learning rate, pass ``reduction="sum"`` to
    train at RDE's scale). The negative term uses ``logsumexp``, which equals
    RDE's ``log(sum(exp))`` but cannot overflow (RDE clamps the sum at 1e36
    instead), and features are normalised with ``F.normalize``.
    Taught in ``05_kpdm_trusted_consensus``.
    """
    _check_features(image_feats, text_feats)
    if reduction not in TAL_REDUCTIONS:
        raise ValueError(f"reduction={reduction!r} is not supported; use 'mean', 'sum' or 'none'")
    batch = image_feats.shape[0]
    if pids.shape != (batch,):
        raise ValueError(
            f"pids must have shape ({batch},), one identity per pair, got {tuple(pids.shape)}"
        )
    if not tau > 0:
        raise ValueError(f"tau={tau!r} must be a positive temperature; RDE uses 0.015")
    if weights is not None:
        if weights.shape != (batch,):
            raise ValueError(
                f"weights has shape {tuple(weights.shape)} but the batch holds {batch} pairs; "
                "pass one weight per pair"
            )
        if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
            raise ValueError(
                "weights must be finite and non-negative; use 0 to drop a pair, not a negative value"
            )
    with torch.autocast(device_type=image_feats.device.type, enabled=False):
        t2i_sim = _cosine_t2i(image_feats, text_feats)  # (B_text, B_image)
        positive = (pids[:, None] == pids[None, :]).to(t2i_sim.device)  # (B, B), symmetric
        t2i = _tal_rows(t2i_sim, positive, margin, tau)  # (B,)
        i2t = _tal_rows(t2i_sim.t(), positive, margin, tau)  # (B,)
        per_pair = i2t + t2i  # (B,)
        if weights is None:
            weights = torch.ones_like(per_pair)
        else:
            weights = weights.to(device=per_pair.device, dtype=per_pair.dtype)
        weighted = weights * per_pair  # (B,)
    if reduction == "none":
        return weighted
    if reduction == "sum":
        return weighted.sum()
    total_weight = weights.sum()
    # all weights zero: the numerator is 0 too, and 0 / 1 keeps backward() working
    safe_total = torch.where(total_weight > 0, total_weight, torch.ones_like(total_weight))
    return weighted.sum() / safe_total
