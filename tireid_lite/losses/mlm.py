"""Masked language modelling: cross-entropy on the masked caption tokens only.

IRRA calls its use of it implicit relation reasoning (IRR): the masked
caption attends to the image, and the model must fill the blanks from what it
sees. Taught in ``02_baseline_irra``; the frequency-weighted variant (KPDM's
FMLM, taught in ``03_kpdm_key_phrase_masking``) passes per-token ``weights``
from :func:`frequency_weights` to the same function.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tireid_lite.errors import ConfigError


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
    if torch.compiler.is_compiling():
        return _mlm_loss_dense(logits, labels, ignore_index, weights)
    masked = labels != ignore_index  # (B, L)
    if weights is not None and weights.shape != labels.shape:
        raise ValueError(f"weights must have the shape of labels {tuple(labels.shape)}, got {tuple(weights.shape)}")
    return masked_token_loss(logits[masked], labels[masked], None if weights is None else weights[masked])


def masked_token_loss(logits: Tensor, targets: Tensor, weights: Tensor | None = None) -> Tensor:
    """:func:`mlm_loss` from the masked positions alone: ``logits`` (M, V) and ``targets`` (M,) of the
    M masked tokens, ``weights`` (M,) or None. A head that scores the vocabulary only where a word
    was masked (the loss reads no other position) calls it directly; M = 0 gives a zero that stays
    connected to ``logits``. Taught in ``02_baseline_irra``."""
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"logits must be (M, V) and targets (M,) for the same M, got {tuple(logits.shape)} "
                         f"and {tuple(targets.shape)}")
    vocab_size = logits.shape[-1]
    if targets.numel() and bool(((targets < 0) | (targets >= vocab_size)).any()):
        raise ValueError(
            f"masked labels range from {int(targets.min())} to {int(targets.max())} but the logits "
            f"have a vocabulary of {vocab_size}; size the prediction head to the tokenizer's vocabulary"
        )
    ce = F.cross_entropy(logits, targets, reduction="none")  # (M, V) -> (M,)
    if weights is None:
        token_weights = torch.ones_like(ce)  # (M,)
    else:
        if weights.shape != targets.shape:
            raise ValueError(f"weights must have the shape of targets {tuple(targets.shape)}, got {tuple(weights.shape)}")
        token_weights = weights.to(ce.dtype)  # (M,)
        if bool((token_weights < 0).any()):
            raise ValueError("weights must be non-negative at masked positions; clip them to >= 0")
    total_weight = token_weights.sum().clamp_min(torch.finfo(ce.dtype).tiny)
    return (token_weights * ce).sum() / total_weight


def _mlm_loss_dense(logits: Tensor, labels: Tensor, ignore_index: int, weights: Tensor | None) -> Tensor:
    """:func:`mlm_loss` without selecting the masked positions (no data-dependent shape, so
    ``torch.compile`` keeps one graph): every position's cross-entropy, weighted by 0 where not
    masked. The same value up to float rounding; the input checks are left to eager calls."""
    masked = labels != ignore_index  # (B, L)
    ce = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=ignore_index,
                         reduction="none").view_as(labels)  # (B, L), 0 where not masked
    token_weights = masked.to(ce.dtype) if weights is None else weights.to(ce.dtype) * masked  # (B, L)
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


@torch.no_grad()
def masked_token_accuracy(logits: Tensor, targets: Tensor) -> Tensor:
    """:func:`masked_accuracy` from the masked positions alone: ``logits`` (M, V), ``targets`` (M,)."""
    correct = logits.argmax(dim=-1) == targets  # (M,)
    return correct.sum().float() / max(targets.numel(), 1)


# --------------------------------------------------------------------------- FMLM (KPDM)

FMLM_ALPHA = 0.5
FMLM_W_MIN = 0.1
FMLM_W_MAX = 10.0


def frequency_weights(
    labels: Tensor,
    token_counts: Tensor | np.ndarray,
    alpha: float = FMLM_ALPHA,
    w_min: float = FMLM_W_MIN,
    w_max: float = FMLM_W_MAX,
    ignore_index: int = -100,
) -> Tensor:
    r"""FMLM's per-position weights (B, L): rare tokens weigh more, normalised to mean 1 over the masked positions.

    ``labels`` (B, L) as for :func:`mlm_loss`; ``token_counts`` (V,) the
    corpus count of each token id (:func:`~tireid_lite.text.corpus.corpus_token_counts`). With f_t the
    count of the masked token at a position and f_med the median count of
    the tokens that occur in the corpus (count > 0; the mean of the two middle
    counts when their number is even)::

        u_t = clip((f_t / f_med) ** (-alpha), w_min, w_max)
        w_t = u_t * |M| / sum_{m in M} u_m      at masked positions M, 0 elsewhere

    The median, not the mean, is the reference because token counts follow a
    Zipf law: the mean is dominated by "a", "the" and ".", the median is a
    typical word, so a typical word gets u = 1 and only clearly rarer
    (commoner) words are up- (down-) weighted. A token never seen in the
    corpus (count 0) gets w_max before normalisation. ``alpha = 0`` gives all
    ones (plain MLM); the weights carry no gradient. The default clip range
    [0.1, 10] is the kit's choice: at alpha = 0.5 it binds only for tokens
    100 times rarer or commoner than the median, so one rare word cannot
    dominate a batch.

    Our reading of KPDM's frequency-based MLM (the paper names it without a
    formula): FMLM is :func:`mlm_loss` with these weights,
    ``L_fmlm = sum_m w_m ce_m / sum_m w_m``, so rare, informative words
    ("burgundy", "plaid") count more than common ones ("a", "shirt");
    ``alpha = 0`` recovers plain MLM. Taught in ``03_kpdm_key_phrase_masking``.
    """
    if alpha < 0:
        raise ConfigError(f"FMLM alpha={alpha} is negative; use alpha >= 0 (0 is plain MLM, 0.5 the default)")
    if not 0 < w_min <= 1 <= w_max:
        raise ConfigError(
            f"FMLM clip range [{w_min}, {w_max}] must hold 1 with w_min > 0; use e.g. [{FMLM_W_MIN}, {FMLM_W_MAX}]"
        )
    if labels.dim() != 2 or labels.dtype.is_floating_point:
        raise ValueError(f"labels must be (B, L) integer token ids, got shape {tuple(labels.shape)} and {labels.dtype}")
    counts = torch.as_tensor(np.asarray(token_counts), dtype=torch.float64, device=labels.device)  # (V,)
    if counts.dim() != 1 or bool((counts < 0).any()):
        raise ValueError(f"token_counts must be a (V,) vector of non-negative counts, got shape {tuple(counts.shape)}")
    seen = counts[counts > 0]
    if seen.numel() == 0:
        raise ValueError("token_counts are all zero; count the training captions with tireid_lite.text.corpus.corpus_token_counts")
    masked = labels != ignore_index  # (B, L)
    targets = labels[masked]  # (M,)
    if targets.numel() and bool(((targets < 0) | (targets >= counts.numel())).any()):
        raise ValueError(
            f"masked labels range from {int(targets.min())} to {int(targets.max())} but token_counts covers "
            f"{counts.numel()} ids; count with the tokenizer that made the labels"
        )
    median = torch.quantile(seen, 0.5)  # interpolates: numpy's median
    relative = counts[targets] / median  # (M,)
    unclipped = torch.pow(relative, -float(alpha))  # (M,) 0 ** -a = inf for unseen tokens, 0 ** 0 = 1
    clipped = unclipped.clamp(w_min, w_max)  # (M,)
    weights = torch.zeros(labels.shape, dtype=torch.float32, device=labels.device)  # (B, L)
    if targets.numel():
        weights[masked] = (clipped * targets.numel() / clipped.sum()).to(torch.float32)
    return weights
