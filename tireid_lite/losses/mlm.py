"""Masked language modelling: cross-entropy on the masked caption tokens only.

IRRA calls its use of it implicit relation reasoning (IRR): the masked
caption attends to the image, and the model must fill the blanks from what it
sees. Taught in ``02_baseline_irra``; the frequency-weighted variant (FMLM)
passes per-token ``weights`` to the same function.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_logits_labels(logits: Tensor, labels: Tensor) -> None:
    if logits.dim() != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(
            f"logits must be (B, L, V) and labels (B, L) for the same B and L, got "
            f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        )


def mlm_loss(
    logits: Tensor,
    labels: Tensor,
    ignore_index: int = -100,
    weights: Tensor | None = None,
) -> Tensor:
    r"""Cross-entropy over the masked positions only, optionally weighted per token.

    ``logits`` (B, L, V) are the vocabulary scores at every caption position;
    ``labels`` (B, L) hold the original token id at masked positions and
    ``ignore_index`` elsewhere. With M the set of masked positions and
    ce_m = -log softmax(logits_m)[label_m]::

        weights=None:  L_mlm = (1/|M|) sum_{m in M} ce_m
        weights w:     L_mlm = sum_{m in M} w_m ce_m / sum_{m in M} w_m

    ``weights`` (B, L) must be non-negative; only its values at masked
    positions matter, and all-ones weights give the plain loss. When no
    position of the batch is masked (or all masked weights are zero) the loss
    is a zero that stays connected to ``logits``, so ``backward()`` works and
    gives zero gradients.

    Where the kit differs from IRRA's code: IRRA marks unmasked positions with
    label 0; the kit uses ``ignore_index`` (-100, PyTorch's convention) so that
    token id 0 can be an ordinary token. Taught in ``02_baseline_irra``.
    """
    _check_logits_labels(logits, labels)
    vocab_size = logits.shape[-1]
    masked = labels != ignore_index  # (B, L)
    targets = labels[masked]  # (M,)
    if targets.numel() and bool(((targets < 0) | (targets >= vocab_size)).any()):
        raise ValueError(
            f"masked labels range from {int(targets.min())} to {int(targets.max())} but the logits "
            f"have a vocabulary of {vocab_size}; size the prediction head to the tokenizer's vocabulary"
        )
    ce = F.cross_entropy(logits[masked], targets, reduction="none")  # (M, V) -> (M,)
    if weights is None:
        token_weights = torch.ones_like(ce)  # (M,)
    else:
        if weights.shape != labels.shape:
            raise ValueError(
                f"weights must have the shape of labels {tuple(labels.shape)}, got {tuple(weights.shape)}"
            )
        token_weights = weights[masked].to(ce.dtype)  # (M,)
        if bool((token_weights < 0).any()):
            raise ValueError("weights must be non-negative at masked positions; clip them to >= 0")
    total_weight = token_weights.sum().clamp_min(torch.finfo(ce.dtype).tiny)
    return (token_weights * ce).sum() / total_weight


@torch.no_grad()
def masked_accuracy(logits: Tensor, labels: Tensor, ignore_index: int = -100) -> Tensor:
    """Fraction of masked positions whose arg-max prediction is the original token.

    ``logits`` (B, L, V), ``labels`` (B, L) as for :func:`mlm_loss`. Returns a
    float scalar tensor without gradient; 0.0 when no position is masked.
    Taught in ``02_baseline_irra``.
    """
    _check_logits_labels(logits, labels)
    masked = labels != ignore_index  # (B, L)
    correct = (logits.argmax(dim=-1) == labels) & masked  # (B, L)
    return correct.sum().float() / masked.sum().clamp_min(1).float()
