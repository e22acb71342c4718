"""What masked image modelling predicts for each patch, computed from the image and its part map.

BiLMa's appendix compares four targets; the kit offers three of them:

* ``"semantic"`` (SemMIM, BiLMa's choice): the patch's part label
  (:func:`~tireid_lite.data.patch_labels.patch_labels`), a classification;
* ``"rgb"``: the patch's mean colour, a 3-vector regression;
* ``"pixels"``: every pixel of the patch, normalised per patch, a regression.

Patches are numbered as the ViT numbers its tokens: row by row, left to
right, patch ``(r, c)`` is token ``r * cols + c`` (after the class token).
The loss on these targets is :func:`~tireid_lite.losses.mim.mim_loss`.
Taught in ``06_bilma_semantic_mim``.
"""

from __future__ import annotations

import numpy as np
import torch
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
