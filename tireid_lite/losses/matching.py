"""Global image-text matching losses: SDM (IRRA) and InfoNCE (CLIP).

Taught in ``02_baseline_irra``, which compares the two on a batch holding
several captions of the same person: InfoNCE's targets are the diagonal of
the similarity matrix, so a second caption of the same person is pushed away
like any stranger; SDM's target spreads the probability evenly over every
pair of the same identity, so it is not.

Both losses L2-normalise the features themselves and compute in at least
float32 with autocast switched off, so bf16 features from an autocast region
do not round the similarities (a bf16 cosine near 1 carries an error of up to
about 0.002, which a logit scale of 50 turns into 0.1 in the logits).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Reduction = Literal["mean", "none"]
REDUCTIONS = ("mean", "none")


def _check_features(image_feats: Tensor, text_feats: Tensor) -> None:
    if image_feats.dim() != 2 or text_feats.dim() != 2:
        raise ValueError(
            f"image_feats and text_feats must be (B, D) matrices, got shapes "
            f"{tuple(image_feats.shape)} and {tuple(text_feats.shape)}; pool token features first"
        )
    if image_feats.shape != text_feats.shape:
        raise ValueError(
            f"image_feats {tuple(image_feats.shape)} and text_feats {tuple(text_feats.shape)} "
            "must have the same shape: row i of each is one image-text pair"
        )


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r} is not supported; use 'mean' or 'none'")


def _working_dtype(x: Tensor) -> torch.dtype:
    """float32 for half/bf16 inputs, the input's own dtype for float32/float64."""
    return torch.promote_types(x.dtype, torch.float32)


def _cosine_t2i(image_feats: Tensor, text_feats: Tensor) -> Tensor:
    """Cosine similarities, row i = text i against every image j. Call with autocast off."""
    dtype = _working_dtype(image_feats)
    image_norm = F.normalize(image_feats.to(dtype), dim=-1)  # (B, D)
    text_norm = F.normalize(text_feats.to(dtype), dim=-1)  # (B, D)
    return text_norm @ image_norm.t()  # (B_text, B_image)


def matching_distribution(pids: Tensor) -> Tensor:
    """SDM's target: q_ij = y_ij / sum_k y_ik, with y_ij = 1 when pids i and j are equal.

    ``pids`` is (B,); the result is a (B, B) float matrix whose rows sum to 1.
    It is symmetric in which pair is the image and which the text, so the same
    matrix serves image->text and text->image. Taught in ``02_baseline_irra``.
    """
    if pids.dim() != 1:
        raise ValueError(f"pids must be a (B,) vector of identities, got shape {tuple(pids.shape)}")
    same_identity = (pids[:, None] == pids[None, :]).float()  # (B, B)
    return same_identity / same_identity.sum(dim=1, keepdim=True)


def _kl_rows(logits: Tensor, log_q: Tensor) -> Tensor:
    """Row-wise KL(softmax(logits) || q) given log q: (B, B) -> (B,)."""
    log_p = F.log_softmax(logits, dim=1)  # (B, B)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def sdm_loss(
    image_feats: Tensor,
    text_feats: Tensor,
    pids: Tensor,
    logit_scale: float | Tensor,
    eps: float = 1e-8,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Similarity Distribution Matching (IRRA, CVPR 2023).

    Row i of ``image_feats`` (B, D) and ``text_feats`` (B, D) is one
    image-text pair of identity ``pids[i]`` (B,). With cosine similarities
    s_ij between text i and image j (the function L2-normalises) and
    ``logit_scale`` = 1/tau::

        p^{t2i}_{ij} = softmax_j(s_ij / tau)          (text i over the batch's images)
        p^{i2t}_{ij} = softmax_j(s_ji / tau)          (image i over the batch's texts)
        q_ij = y_ij / sum_k y_ik,   y_ij = 1 if pids_i == pids_j else 0
        KL(p_i || q_i) = sum_j p_ij (log p_ij - log(q_ij + eps))
        L_sdm = mean_i KL(p^{i2t}_i || q_i) + mean_i KL(p^{t2i}_i || q_i)

    ``eps`` keeps log q finite: probability put on another identity costs
    log(1/eps) (about 18.4 for 1e-8) per unit, not infinity.

    ``reduction="mean"`` returns the scalar L_sdm. ``reduction="none"``
    returns a (B,) tensor whose entry i is pair i's own share, its image->text
    row term plus its text->image row term, so that mechanisms which weight
    pairs individually can do so; its mean equals the scalar.

    Where the kit differs from IRRA's code: the features are normalised with
    ``F.normalize`` (a zero vector gives zero similarity instead of NaN) and
    the loss is computed in at least float32; the value is otherwise the same.
    Taught in ``02_baseline_irra``.
    """
    _check_features(image_feats, text_feats)
    _check_reduction(reduction)
    if pids.shape != (image_feats.shape[0],):
        raise ValueError(
            f"pids must have shape ({image_feats.shape[0]},), one identity per pair, "
            f"got {tuple(pids.shape)}"
        )
    with torch.autocast(device_type=image_feats.device.type, enabled=False):
        t2i_cosine = _cosine_t2i(image_feats, text_feats)  # (B_text, B_image)
        log_q = torch.log(matching_distribution(pids).to(t2i_cosine) + eps)  # (B, B)
        t2i_rows = _kl_rows(logit_scale * t2i_cosine, log_q)  # (B,)
        i2t_rows = _kl_rows(logit_scale * t2i_cosine.t(), log_q)  # (B,)
        per_pair = i2t_rows + t2i_rows  # (B,)
    return per_pair.mean() if reduction == "mean" else per_pair


def infonce_loss(
    image_feats: Tensor,
    text_feats: Tensor,
    logit_scale: float | Tensor,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""CLIP's symmetric InfoNCE: cross-entropy with the diagonal as the only positive.

    With cosine similarities s_ij between text i and image j (the function
    L2-normalises) and ``logit_scale`` = 1/tau::

        L_t2i = -mean_i log softmax_j(s_ij / tau)[i]
        L_i2t = -mean_i log softmax_j(s_ji / tau)[i]
        L_itc = (L_i2t + L_t2i) / 2

    Identities play no part: two captions of the same person in one batch are
    negatives for each other's images. ``reduction="none"`` returns the (B,)
    per-pair terms (CE_i2t_i + CE_t2i_i) / 2, whose mean is the scalar.
    Taught in ``02_baseline_irra`` as the contrast to :func:`sdm_loss`.
    """
    _check_features(image_feats, text_feats)
    _check_reduction(reduction)
    with torch.autocast(device_type=image_feats.device.type, enabled=False):
        t2i_logits = logit_scale * _cosine_t2i(image_feats, text_feats)  # (B_text, B_image)
        targets = torch.arange(t2i_logits.shape[0], device=t2i_logits.device)  # (B,)
        t2i = F.cross_entropy(t2i_logits, targets, reduction="none")  # (B,)
        i2t = F.cross_entropy(t2i_logits.t(), targets, reduction="none")  # (B,)
        per_pair = (i2t + t2i) / 2  # (B,)
    return per_pair.mean() if reduction == "mean" else per_pair
