"""CADA's losses: image-text matching (ITM) with hard negatives mined in the batch, and its global loss.

Taught in ``07_cada_dual_association``. Each function is a pure function of
tensors; the decoder that produces the matching logits lives in
:mod:`tireid_lite.models.cada_decoder`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tireid_lite.losses.matching import _check_features, _cosine_t2i, matching_distribution


def mine_hard_negatives(sim: Tensor, pids: Tensor) -> tuple[Tensor, Tensor]:
    r"""For each text its most similar image of another identity, and for each image its most similar text.

    ``sim`` (B, B) holds the similarity of text i (row) and image j (column)
    of one batch, ``pids`` (B,) the identity of pair i (text i and image i
    show the same person)::

        neg_image[i] = argmax_{j : pid_j != pid_i} sim[i, j]      (a text's hard negative image)
        neg_text[j]  = argmax_{i : pid_i != pid_j} sim[i, j]      (an image's hard negative text)

    Pairs of the same identity are never negatives, even when they are not
    the pair's own partner (a second caption of the same person is a match).
    CADA's code takes the argmax of a softmax over the masked similarities,
    the same choice. Returns ``(neg_image, neg_text)``, two (B,) index
    vectors. Raises when some pair has no other identity in the batch.
    """
    if sim.dim() != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"sim must be a (B, B) text x image similarity matrix, got shape {tuple(sim.shape)}")
    if pids.shape != (sim.shape[0],):
        raise ValueError(f"pids must have shape ({sim.shape[0]},), one identity per pair, got {tuple(pids.shape)}")
    same = pids[:, None] == pids[None, :]  # (B, B)
    if bool(same.all(dim=1).any()):
        raise ValueError("a pair has no other identity in the batch to mine a negative from; draw several identities per batch")
    masked = sim.detach().float().masked_fill(same, float("-inf"))  # (B_text, B_image)
    neg_image = masked.argmax(dim=1)  # (B,) for each text
    neg_text = masked.argmax(dim=0)  # (B,) for each image
    return neg_image, neg_text


def itm_loss(pos_logits: Tensor, neg_logits: Tensor) -> Tensor:
    r"""Image-text matching: a two-way classifier says matched (1) or not (0).

    ``pos_logits`` (P, 2) are the logits of matched pairs, ``neg_logits``
    (N, 2) those of unmatched ones (in CADA two per matched pair: each text
    with its hard negative image and each image with its hard negative
    text)::

        L_itm = mean over the P + N pairs of CE(logits, label),   label 1 for matched, 0 for unmatched

    The same function gives CADA's local ITM when the logits are those of
    groups of text tokens (each group labelled like its pair).
    """
    if pos_logits.dim() != 2 or pos_logits.shape[-1] != 2 or neg_logits.dim() != 2 or neg_logits.shape[-1] != 2:
        raise ValueError(
            f"ITM logits must be (n, 2) (not matched, matched), got {tuple(pos_logits.shape)} and {tuple(neg_logits.shape)}"
        )
    logits = torch.cat([pos_logits, neg_logits]).float()  # (P + N, 2)
    labels = torch.cat([torch.ones(len(pos_logits)), torch.zeros(len(neg_logits))]).long().to(logits.device)
    return F.cross_entropy(logits, labels)


def itm_accuracy(pos_logits: Tensor, neg_logits: Tensor) -> Tensor:
    """The share of pairs the ITM classifier labels right (matched for ``pos_logits``, not for ``neg_logits``)."""
    hits = torch.cat([pos_logits.argmax(-1) == 1, neg_logits.argmax(-1) == 0])
    return hits.float().mean()


def itm_score(logits: Tensor) -> Tensor:
    """The matching score of (n, 2) ITM logits: the log-odds of "matched", logit_1 - logit_0 (n,)."""
    return (logits[..., 1] - logits[..., 0]).float()


def cada_global_loss(
    image_feats: Tensor,
    text_feats: Tensor,
    pids: Tensor,
    logit_scale: float | Tensor,
    eps: float = 1e-8,
) -> Tensor:
    r"""CADA's global loss: SDM's KL, the reverse KL and the cross-entropy to the identity distribution.

    With ``p_i = softmax_j(s_ij / tau)`` (text i over the batch's images, and
    likewise image i over the texts) and SDM's target ``q_ij = y_ij / sum_k
    y_ik`` (:func:`~tireid_lite.losses.matching.matching_distribution`), for
    each direction::

        KL(p_i || q_i) = sum_j p_ij (log p_ij - log(q_ij + eps))        (SDM)
        KL(q_i || p_i) = sum_{j: q_ij > 0} q_ij (log q_ij - log p_ij)   (reverse KL)
        CE(q_i, p_i)   = -sum_j q_ij log p_ij                            (identity cross-entropy)
        L = sum over both directions of mean_i [KL(p||q) + KL(q||p) + CE(q, p)]

    The reverse KL and the cross-entropy differ by the entropy of q, a
    constant, so together they give the cross-entropy's gradient twice;
    written as the three terms PAPERS.md lists. Taught in ``07_cada_dual_association``.
    """
    _check_features(image_feats, text_feats)
    if pids.shape != (image_feats.shape[0],):
        raise ValueError(f"pids must have shape ({image_feats.shape[0]},), one identity per pair, got {tuple(pids.shape)}")
    with torch.autocast(device_type=image_feats.device.type, enabled=False):
        cosine = _cosine_t2i(image_feats, text_feats)  # (B_text, B_image)
        q = matching_distribution(pids).to(cosine)  # (B, B)
        log_q_eps = torch.log(q + eps)
        log_q = torch.where(q > 0, torch.log(q.clamp_min(1e-30)), torch.zeros_like(q))
        total = cosine.new_zeros(())
        for logits in (logit_scale * cosine, logit_scale * cosine.t()):
            log_p = F.log_softmax(logits, dim=1)  # (B, B)
            kl = (log_p.exp() * (log_p - log_q_eps)).sum(dim=1)  # (B,)
            reverse = (q * (log_q - log_p)).sum(dim=1)  # (B,)
            ce = -(q * log_p).sum(dim=1)  # (B,)
            total = total + (kl + reverse + ce).mean()
    return total
