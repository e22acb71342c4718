"""Masked image modelling (MIM): which patches to mask, what to predict there, and the loss.

BiLMa masks image patches (the image tower puts its mask token there, see
:class:`~tireid_lite.models.image_tower.ImageTower`) and predicts each masked
patch through the cross-modal module with the caption visible. Its appendix
compares four targets; the kit offers three of them:

* ``"semantic"`` (SemMIM, BiLMa's choice): the patch's part label
  (:func:`~tireid_lite.data.patch_labels.patch_labels`), a classification;
* ``"rgb"``: the patch's mean colour, a 3-vector regression;
* ``"pixels"``: every pixel of the patch, normalised per patch, a regression.

Patches are numbered as the ViT numbers its tokens: row by row, left to
right, patch ``(r, c)`` is token ``r * cols + c`` (after the class token).
Taught in ``06_bilma_semantic_mim``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tireid_lite.data.patch_labels import patch_labels

MIM_TARGETS = ("semantic", "rgb", "pixels")
PIXEL_NORM_EPS = 1e-6  # added to a patch's variance before the square root (MAE's value)


def _patch_grid(images: Tensor, patch_size: int) -> tuple[int, int]:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    height, width = images.shape[-2:]
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"images of {height}x{width} are not a whole number of {patch_size}x{patch_size} patches; "
            "use the model's input size, a multiple of its patch_size"
        )
    return height // patch_size, width // patch_size


def _patches(images: Tensor, patch_size: int) -> Tensor:
    """(B, 3, H, W) -> (B, N, 3, p, p): each patch's pixels, patches in the ViT's token order."""
    rows, cols = _patch_grid(images, patch_size)
    batch, p = images.shape[0], patch_size
    patches = images.reshape(batch, 3, rows, p, cols, p)  # (B, 3, rows, p, cols, p)
    return patches.permute(0, 2, 4, 1, 3, 5).reshape(batch, rows * cols, 3, p, p)  # (B, N, 3, p, p)


@torch.no_grad()
def mim_targets(
    images: Tensor,
    part_maps: Tensor | np.ndarray | None,
    patch_size: int,
    target: str,
    *,
    coverage: float = 0.5,
    pixel_norm: bool = True,
) -> Tensor:
    r"""The MIM target of every patch, in the ViT's token order (no gradient).

    ``images`` (B, 3, H, W) are the normalised model inputs; ``part_maps``
    (B, H, W) integer class indices at the same H, W (only ``"semantic"`` reads
    them; pass ``None`` otherwise). With N = (H/p)(W/p) patches and x_n the
    (3, p, p) pixels of patch n:

    * ``"semantic"``: int64 (B, N), the patch label of :func:`patch_labels`
      (majority non-background part, background below ``coverage``);
    * ``"rgb"``: float (B, N, 3), ``mean_{i,j} x_n[:, i, j]``, the patch's mean
      colour in the normalised input space;
    * ``"pixels"``: float (B, N, 3 p^2), ``x_n`` flattened channel first, then
      pixel row, then pixel column: the order of a conv patch embedding's
      weight (3, p, p), as in timm's ``PatchEmbed``. With ``pixel_norm`` (the
      default, MAE's better-performing choice) each patch is standardised over
      its 3 p^2 values: ``(x_n - mean(x_n)) / sqrt(var(x_n) + 1e-6)`` (biased
      variance); without, the raw normalised pixels.

    Taught in ``06_bilma_semantic_mim``.
    """
    if target not in MIM_TARGETS:
        raise ValueError(f"unknown MIM target {target!r}; use one of {', '.join(MIM_TARGETS)}")
    rows, cols = _patch_grid(images, patch_size)
    batch = images.shape[0]
    if target == "semantic":
        if part_maps is None:
            raise ValueError("the 'semantic' target needs part_maps (B, H, W); load them with ParsingMaps")
        maps = part_maps.detach().cpu().numpy() if isinstance(part_maps, Tensor) else np.asarray(part_maps)
        if maps.shape != (batch, *images.shape[-2:]):
            raise ValueError(
                f"part_maps must be (B, H, W) = {(batch, *images.shape[-2:])} like the images, got {maps.shape}; "
                "resize them to the model's input size with resize_part_map"
            )
        labels = patch_labels(maps, patch_size, coverage=coverage)  # (B, rows, cols)
        return torch.from_numpy(labels).to(images.device).reshape(batch, rows * cols)  # (B, N)
    patches = _patches(images.detach(), patch_size)  # (B, N, 3, p, p)
    if target == "rgb":
        return patches.mean(dim=(-2, -1))  # (B, N, 3)
    pixels = patches.flatten(2)  # (B, N, 3 p^2)
    if pixel_norm:
        mean = pixels.mean(dim=-1, keepdim=True)
        var = pixels.var(dim=-1, unbiased=False, keepdim=True)
        pixels = (pixels - mean) / torch.sqrt(var + PIXEL_NORM_EPS)
    return pixels


def mim_loss(pred: Tensor, target: Tensor, patch_mask: Tensor, kind: str) -> Tensor:
    r"""The MIM loss over the masked patches only.

    ``patch_mask`` (B, N) bool marks the masked patches, M their set. For
    ``kind="semantic"``, ``pred`` (B, N, C) are logits and ``target`` (B, N)
    int64 part labels::

        L_mim = (1/|M|) sum_{m in M} -log softmax(pred_m)[target_m]

    For ``"rgb"`` and ``"pixels"``, ``pred`` and ``target`` are (B, N, D)::

        L_mim = (1/|M|) sum_{m in M} (1/D) ||pred_m - target_m||^2

    Unmasked patches never contribute, whatever their prediction. When no
    patch is masked the loss is a zero that stays connected to ``pred``, so
    ``backward()`` works and gives zero gradients (as :func:`~tireid_lite.losses.mlm.mlm_loss`). BiLMa
    adds it as ``beta L_mim`` to IRRA's losses. Taught in
    ``06_bilma_semantic_mim``.
    """
    if kind not in MIM_TARGETS:
        raise ValueError(f"unknown MIM target {kind!r}; use one of {', '.join(MIM_TARGETS)}")
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
                f"{target.dtype} {tuple(target.shape)}; build it with mim_targets(..., 'semantic')"
            )
        labels = target[patch_mask]  # (M,)
        num_classes = pred.shape[-1]
        if bool(((labels < 0) | (labels >= num_classes)).any()):
            raise ValueError(
                f"masked patch labels range from {int(labels.min())} to {int(labels.max())} but pred has "
                f"{num_classes} classes; size the MIM head to len(PART_CLASSES)"
            )
        return F.cross_entropy(pred[patch_mask], labels.long())  # (M, C) -> mean over M
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
