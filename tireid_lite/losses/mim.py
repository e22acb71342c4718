"""Masked image modelling (MIM): which patches to mask, the loss on them, and accuracy per part class.

BiLMa masks image patches (the image tower puts its mask token there, see
:class:`~tireid_lite.models.image_tower.ImageTower`) and predicts each masked
patch through the cross-modal module with the caption visible. What is
predicted (the patch's part label, mean colour or pixels) is computed from the
data by :func:`~tireid_lite.data.mim_targets.mim_targets`; this module holds
the mask and the loss, pure functions of tensors. Patches are numbered as the
ViT numbers its tokens: row by row, left to right. Taught in
``06_bilma_semantic_mim``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from tireid_lite.data.mim_targets import MIM_TARGETS


def mim_loss(pred: Tensor, target: Tensor, patch_mask: Tensor, kind: str, *, class_balance: float = 0.0) -> Tensor:
    r"""The MIM loss over the masked patches only.

    ``patch_mask`` (B, N) bool marks the masked patches, M their set. For
    ``kind="semantic"``, ``pred`` (B, N, C) are logits and ``target`` (B, N)
    int64 part labels::

        L_mim = (1/|M|) sum_{m in M} -log softmax(pred_m)[target_m]

    For ``"rgb"`` and ``"pixels"``, ``pred`` and ``target`` are (B, N, D)::

        L_mim = (1/|M|) sum_{m in M} (1/D) ||pred_m - target_m||^2

    ``class_balance`` b > 0 (``"semantic"`` only; the kit's experiment, not BiLMa's) weighs each masked
    patch by n_c ** -b, n_c the number of masked patches of its class in the batch, normalised to
    mean 1 over M: b = 1 gives every class present the same total weight, so small parts (hat, shoes,
    bag) are not drowned by the torso and the background; b = 0 is the plain mean above.

    Unmasked patches never contribute, whatever their prediction. When no
    patch is masked the loss is a zero that stays connected to ``pred``, so
    ``backward()`` works and gives zero gradients (as :func:`~tireid_lite.losses.mlm.mlm_loss`). BiLMa
    adds it as ``beta L_mim`` to IRRA's losses. Taught in
    ``06_bilma_semantic_mim``.
    """
    if kind not in MIM_TARGETS:
        raise ValueError(f"unknown MIM target {kind!r}; use one of {', '.join(MIM_TARGETS)}")
    if not 0.0 <= class_balance <= 1.0 or (class_balance and kind != "semantic"):
        raise ValueError(
            f"class_balance={class_balance!r} is invalid for the {kind!r} target; use 0 (plain), or a value in "
            "(0, 1] with the 'semantic' target (model.bilma.mim_class_balance)"
        )
    if pred.dim() != 3 or patch_mask.shape != pred.shape[:2] or patch_mask.dtype != torch.bool:
        raise ValueError(
            f"pred must be (B, N, C) and patch_mask a bool (B, N) for the same B and N, got pred "
            f"{tuple(pred.shape)} and patch_mask {patch_mask.dtype} {tuple(patch_mask.shape)}"
        )
    if not bool(patch_mask.any()):
        return pred.sum() * 0.0
    if kind == "semantic":
        if target.shape != patch_mask.shape or target.is_floating_point():
            raise ValueError(
                f"the 'semantic' target must be int64 labels (B, N) = {tuple(patch_mask.shape)}, got "
                f"{target.dtype} {tuple(target.shape)}; build it with tireid_lite.data.mim_targets.mim_targets(..., 'semantic')"
            )
        labels = target[patch_mask]  # (M,)
        num_classes = pred.shape[-1]
        if bool(((labels < 0) | (labels >= num_classes)).any()):
            raise ValueError(
                f"masked patch labels range from {int(labels.min())} to {int(labels.max())} but pred has "
                f"{num_classes} classes; size the MIM head to len(PART_CLASSES)"
            )
        if class_balance == 0:
            return F.cross_entropy(pred[patch_mask], labels.long())  # (M, C) -> mean over M
        counts = torch.bincount(labels.long(), minlength=num_classes).to(pred.dtype)  # (C,)
        weights = counts[labels.long()].pow(-float(class_balance))  # (M,)
        weights = weights * (labels.numel() / weights.sum())  # mean 1 over M
        return (weights * F.cross_entropy(pred[patch_mask], labels.long(), reduction="none")).mean()
    if target.shape != pred.shape:
        raise ValueError(
            f"the {kind!r} target must have the shape of pred {tuple(pred.shape)}, got {tuple(target.shape)}"
        )
    squared = (pred[patch_mask] - target[patch_mask].to(pred.dtype)) ** 2  # (M, D)
    return squared.mean()


def num_masked(num_patches: int, ratio: float) -> int:
    """How many of ``num_patches`` patches a ``ratio`` masks: ``ratio * N`` rounded half up, at least 1."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"mask ratio {ratio!r} must be in (0, 1], e.g. 0.15 as in BiLMa")
    if num_patches <= 0:
        raise ValueError(f"num_patches={num_patches!r} must be positive")
    return max(1, min(num_patches, math.floor(ratio * num_patches + 0.5)))


def random_patch_mask(
    batch: int,
    num_patches: int,
    ratio: float,
    generator: torch.Generator | None = None,
    *,
    device: torch.device | str | None = None,
) -> Tensor:
    """A bool (B, N) mask with exactly :func:`num_masked` patches masked per image, uniformly at random.

    Each image masks the ``k = max(1, round(ratio * N))`` patches (rounded half
    up) with the smallest of N uniform draws, i.e. a uniformly random k-subset.
    ``generator`` makes it reproducible; the mask lives on ``device``, by
    default the generator's. Taught in ``06_bilma_semantic_mim``.
    """
    k = num_masked(num_patches, ratio)
    if device is None:
        device = generator.device if generator is not None else "cpu"
    scores = torch.rand(batch, num_patches, generator=generator, device=device)  # (B, N)
    chosen = scores.argsort(dim=1)[:, :k]  # (B, k)
    mask = torch.zeros(batch, num_patches, dtype=torch.bool, device=device)
    return mask.scatter_(1, chosen, True)  # (B, N)


@torch.no_grad()
def per_class_accuracy(pred_logits: Tensor, labels: Tensor, patch_mask: Tensor, num_classes: int) -> Tensor:
    """Accuracy of the arg-max prediction per true class, over the masked patches: float (num_classes,).

    Entry c is (masked patches of class c predicted as c) / (masked patches of
    class c); NaN for a class without any masked patch. ``pred_logits``
    (B, N, C), ``labels`` (B, N), ``patch_mask`` (B, N) bool. Shows whether a
    SemMIM head only learnt the frequent classes (background, upper clothes).
    Taught in ``06_bilma_semantic_mim``.
    """
    if (pred_logits.dim() != 3 or labels.shape != pred_logits.shape[:2] or patch_mask.shape != labels.shape
            or patch_mask.dtype != torch.bool):
        raise ValueError(
            f"pred_logits must be (B, N, C) with labels (B, N) and a bool patch_mask (B, N), got "
            f"{tuple(pred_logits.shape)}, {tuple(labels.shape)} and {patch_mask.dtype} {tuple(patch_mask.shape)}"
        )
    true = labels[patch_mask].long()  # (M,)
    if true.numel() and bool(((true < 0) | (true >= num_classes)).any()):
        raise ValueError(
            f"masked labels range from {int(true.min())} to {int(true.max())}, outside the {num_classes} "
            "classes asked for; pass num_classes=len(PART_CLASSES)"
        )
    correct = (pred_logits[patch_mask].argmax(dim=-1) == true).float()  # (M,)
    support = torch.bincount(true, minlength=num_classes).float()  # (C,)
    hits = torch.bincount(true, weights=correct, minlength=num_classes)  # (C,)
    accuracy = hits / support.clamp_min(1.0)
    return torch.where(support > 0, accuracy, torch.full_like(accuracy, float("nan")))
