"""Which image patches matter: importance from the class token's attention, and keeping the top ones.

KPDM's second part ("cross-layer importance estimation") scores the image
patches by the attention the class token pays them across several layers,
keeps the important patches and drops the redundant ones before the
cross-modal module and the local (token-selection) embedding. Only the
abstract and inference code are public, so the rule below is **our reading**
of it, not the paper's exact method:

* ``method="mean"`` (:func:`cls_attention`): the CLS -> patch attention,
  averaged over heads and over the last ``L`` layers;
* ``method="rollout"`` (:func:`attention_rollout`): Abnar & Zuidema's
  attention rollout over the last ``L`` layers, which also follows attention
  that reaches a patch through other tokens;
* :func:`select_patches` keeps the top ``ratio`` of the patches (default in
  the course 0.5, KPDM's released ``select_ratio``) in their spatial order,
  :func:`gather_tokens` picks their tokens, :func:`keep_mask` draws them.

RDE's image-side token selection is the special case ``method="mean"``,
``layers=1`` (the last layer only) with ratio 0.3.

The attention maps are the image tower's
(``ImageTower.forward(images, return_attention=True).attentions``): one
(B, heads, 1+N, 1+N) softmax map per layer, rows are queries, the class token
is token 0 and the N patches follow row by row. Scores are computed in at
least float32. Taught in ``04_kpdm_patch_importance_fmlm``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from tireid_lite.errors import ConfigError

IMPORTANCE_METHODS = ("mean", "rollout")


def num_kept(num_tokens: int, ratio: float) -> int:
    """How many of ``num_tokens`` tokens a keep ``ratio`` keeps: K = max(1, round(ratio * N)).

    The rounding is half up (K = floor(ratio * N + 1/2), not Python's
    round-half-to-even), so ratio 0.5 keeps 2 of 3 and 3 of 5 tokens; at
    least one token is always kept and never more than N. ``ratio`` must lie
    in (0, 1]. Taught in ``04_kpdm_patch_importance_fmlm``.
    """
    _check_ratio(ratio)
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 1:
        raise ValueError(f"num_tokens={num_tokens!r} must be a positive integer (the number of tokens to choose from)")
    return min(num_tokens, max(1, math.floor(ratio * num_tokens + 0.5)))


def cls_attention(attentions: Sequence[Tensor], layers: int) -> Tensor:
    """Mean CLS -> patch attention of the last ``layers`` layers: (B, N).

    With A^(l,h) the softmax map of layer l and head h (H heads, depth d) and
    patches j = 1..N (token 0 is the class token)::

        s_j = 1/L * sum_{l=d-L+1..d} 1/H * sum_h A^(l,h)[0, j]

    The scores are not renormalised over the patches: they sum to the mean
    attention the class token pays the patches (1 minus what it pays itself).
    Taught in ``04_kpdm_patch_importance_fmlm``.
    """
    maps = _last_layers(attentions, layers)  # (L, B, H, T, T)
    return maps.mean(dim=2)[..., 0, 1:].mean(dim=0)  # (B, N)


def attention_rollout(attentions: Sequence[Tensor], layers: int, residual: bool = True) -> Tensor:
    """Attention rollout (Abnar & Zuidema, 2020) over the last ``layers`` layers: (B, N).

    Each layer's map is averaged over heads and, with ``residual``, mixed
    with the identity to account for the skip connection, then its rows are
    renormalised to sum to one::

        A'_l = (1/2 * mean_h A^(l,h) + 1/2 * I),   A'_l[i, :] <- A'_l[i, :] / sum_k A'_l[i, k]

    (without ``residual`` A'_l is the head mean alone, rows renormalised).
    The layers are chained from the first of the last L to the last, the
    later layer on the left, and the score of patch j is the class token's
    row of the product::

        R = A'_d @ A'_(d-1) @ ... @ A'_(d-L+1),   s_j = R[0, j],  j = 1..N

    With ``layers=1`` and ``residual=False`` this is the last layer's mean
    CLS attention. Not renormalised over the patches.
    Taught in ``04_kpdm_patch_importance_fmlm``.
    """
    maps = _last_layers(attentions, layers)  # (L, B, H, T, T)
    num_tokens = maps.shape[-1]
    eye = torch.eye(num_tokens, dtype=maps.dtype, device=maps.device)  # (T, T)
    rollout = eye.expand(maps.shape[1], num_tokens, num_tokens)  # (B, T, T)
    for layer_maps in maps:  # earliest of the last L layers first
        mixed = layer_maps.mean(dim=1)  # (B, T, T)
        if residual:
            mixed = 0.5 * mixed + 0.5 * eye
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        rollout = mixed @ rollout  # (B, T, T), the newer layer on the left
    return rollout[:, 0, 1:]  # (B, N)


def patch_importance(attentions: Sequence[Tensor], layers: int, method: str = "mean") -> Tensor:
    """Patch scores (B, N) from the tower's attention maps: ``"mean"`` or ``"rollout"``.

    ``"mean"`` is :func:`cls_attention`, ``"rollout"`` is
    :func:`attention_rollout` with the residual identity; both over the last
    ``layers`` layers. Higher means more important.
    Taught in ``04_kpdm_patch_importance_fmlm``.
    """
    if method == "mean":
        return cls_attention(attentions, layers)
    if method == "rollout":
        return attention_rollout(attentions, layers, residual=True)
    raise ConfigError(
        f"method={method!r} is not a patch-importance method; use one of {', '.join(map(repr, IMPORTANCE_METHODS))}"
    )


def select_patches(scores: Tensor, ratio: float) -> Tensor:
    """Indices (B, K) of the K highest-scoring patches of each row, in ascending order.

    ``scores`` is (B, N); K = :func:`num_kept` (N, ratio) = max(1, round(ratio * N)),
    rounding half up. The indices count patches from 0 (the class token is
    not one of them) and are sorted ascending, so the kept tokens keep their
    row-by-row spatial order. Ties go to the earlier patch.
    Taught in ``04_kpdm_patch_importance_fmlm``.
    """
    if scores.dim() != 2 or scores.shape[1] < 1:
        raise ValueError(f"scores must be (B, N) with N >= 1 patches, got shape {tuple(scores.shape)}")
    keep = num_kept(int(scores.shape[1]), ratio)
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :keep]  # (B, K), best first
    return order.sort(dim=1).values  # (B, K), spatial order


def gather_tokens(tokens: Tensor, keep_idx: Tensor, with_cls: bool = True) -> Tensor:
    """The kept tokens: (B, 1+K, D) with the class token first, or (B, K, D) without it.

    ``tokens`` is the tower's (B, 1+N, D) (class token first) and ``keep_idx``
    (B, K) holds patch indices in 0..N-1 (patch j is token j+1), as
    :func:`select_patches` returns them; the patches come out in the order of
    ``keep_idx``. Taught in ``04_kpdm_patch_importance_fmlm``.
    """
    if tokens.dim() != 3 or tokens.shape[1] < 2:
        raise ValueError(
            f"tokens must be (B, 1+N, D) with the class token first and N >= 1, got shape {tuple(tokens.shape)}"
        )
    num_patches = int(tokens.shape[1]) - 1
    _check_keep_idx(keep_idx, num_patches, batch=int(tokens.shape[0]))
    index = (keep_idx.long() + 1).unsqueeze(-1).expand(-1, -1, tokens.shape[2])  # (B, K, D)
    patches = tokens.gather(1, index)  # (B, K, D)
    if not with_cls:
        return patches
    return torch.cat([tokens[:, :1], patches], dim=1)  # (B, 1+K, D)


def keep_mask(keep_idx: Tensor, num_patches: int, keep_valid: Tensor | None = None) -> Tensor:
    """Bool (B, N), ``True`` at the kept patches (reshape to the tower's grid to draw it).

    ``keep_valid`` (B, K) bool, when given, leaves out the entries marked
    ``False`` (the padded entries of a text selection, see
    :func:`tireid_lite.models.token_selection.select_text_tokens`).
    Taught in ``04_kpdm_patch_importance_fmlm``.
    """
    if isinstance(num_patches, bool) or not isinstance(num_patches, int) or num_patches < 1:
        raise ValueError(f"num_patches={num_patches!r} must be a positive integer (N, the number of patches)")
    _check_keep_idx(keep_idx, num_patches)
    if keep_valid is None:
        keep_valid = torch.ones(keep_idx.shape, dtype=torch.bool, device=keep_idx.device)  # (B, K)
    elif keep_valid.dtype != torch.bool or keep_valid.shape != keep_idx.shape:
        raise ValueError(
            f"keep_valid must be a bool tensor shaped like keep_idx {tuple(keep_idx.shape)}, "
            f"got {keep_valid.dtype} {tuple(keep_valid.shape)}"
        )
    # count the valid entries per patch, so an index listed both valid and padded stays kept
    counts = torch.zeros(keep_idx.shape[0], num_patches, dtype=torch.long, device=keep_idx.device)  # (B, N)
    counts.scatter_add_(1, keep_idx.long(), keep_valid.long())
    return counts > 0  # (B, N)


def _check_ratio(ratio: float) -> None:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio <= 1.0:
        raise ConfigError(f"ratio={ratio!r} is not a keep ratio; use a value in (0, 1], e.g. 0.5 (KPDM's select ratio)")


def _check_keep_idx(keep_idx: Tensor, num_patches: int, batch: int | None = None) -> None:
    wrong_batch = batch is not None and keep_idx.dim() == 2 and keep_idx.shape[0] != batch
    if keep_idx.dim() != 2 or wrong_batch or keep_idx.dtype not in (torch.int32, torch.int64):
        raise ValueError(
            f"keep_idx must be an integer tensor of shape (B, K){'' if batch is None else f' with B = {batch}'}, "
            f"got {keep_idx.dtype} {tuple(keep_idx.shape)}; use select_patches to make it"
        )
    if keep_idx.numel() and (int(keep_idx.min()) < 0 or int(keep_idx.max()) >= num_patches):
        raise ValueError(
            f"keep_idx holds values in {int(keep_idx.min())}..{int(keep_idx.max())}, outside the patch range "
            f"0..{num_patches - 1}; patch indices count from 0 without the class token"
        )


def _last_layers(attentions: Sequence[Tensor], layers: int) -> Tensor:
    """The last ``layers`` maps stacked into (L, B, H, T, T), in at least float32."""
    if isinstance(attentions, Tensor) or not isinstance(attentions, Sequence) or len(attentions) == 0:
        raise ValueError(
            "attentions must be a non-empty list of (B, heads, 1+N, 1+N) maps, one per layer; "
            "run the image tower with return_attention=True"
        )
    depth = len(attentions)
    if isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers <= depth:
        raise ConfigError(
            f"layers={layers!r} is not a layer count in 1..{depth} (the attention maps come from {depth} layers); "
            f"choose L between 1 and {depth}"
        )
    first = attentions[0]
    for index, weights in enumerate(attentions):
        if weights.dim() != 4 or weights.shape[-1] != weights.shape[-2] or weights.shape[-1] < 2:
            raise ValueError(
                f"attention map {index} must be (B, heads, 1+N, 1+N) with N >= 1, got shape {tuple(weights.shape)}"
            )
        if weights.shape != first.shape:
            raise ValueError(
                f"attention map {index} has shape {tuple(weights.shape)} but map 0 has {tuple(first.shape)}; "
                "pass the maps of one forward pass"
            )
    dtype = torch.promote_types(first.dtype, torch.float32)
    return torch.stack([weights.to(dtype) for weights in attentions[depth - layers :]])  # (L, B, H, T, T)
