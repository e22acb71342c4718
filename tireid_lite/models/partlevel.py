"""Part-level cross-modal correspondence (Park et al., ACCV 2024) as a head: ``model.method=partlevel``.

The paper's abstract names two things: an encoder-decoder that extracts
coarse-to-fine embeddings aligned across the modalities *without part
supervision*, and a "commonality-based margin ranking loss" that measures
how common each body part is across people, so that similar parts of
different people are not pushed apart while the details are learned. No code
or equations are public; everything below is **the kit's reading**:

* a shared decoder: K learnable part queries (``model.part.num_parts``)
  attend, in one cross-attention (``model.part.heads`` heads, 1 by default so
  each part has one attention map), over the image's patch tokens (no class
  token) and, separately, over the caption's word tokens (padding, start and
  end tokens masked). The attended values go through an MLP with a residual
  and a LayerNorm; as in IRRA's cross-modal module there is no residual from
  the queries, so a part embedding holds only what its query found. Queries,
  attention and MLP are the same for both modalities: K part embeddings per
  image and per caption (fine) beside the towers' global feature (coarse);
* the part ranking loss of :mod:`tireid_lite.losses.ranking`: part
  similarities s_k, the commonality c_k (mean of s_k over the batch's
  negative pairs, detached, min-max normalised across the parts:
  ``model.part.commonality``; why not the absolute mean, see that module), margin m (1 - c_k)
  (``model.part.margin_mode=commonality``) or m (``fixed``), semi-hard
  negatives by default or the hardest (``model.part.negatives``; with the
  hardest negative a fresh decoder collapses, see that module), weight
  ``model.part.loss_weight`` beside SDM and ID (the ``partlevel`` row is the
  baseline plus this head);
* retrieval: the part embeddings, each normalised, side by side and divided
  by sqrt(K), are one scorer view named ``parts`` of width K D whose cosine is
  the mean of the K part cosines; the scorer's similarity is then
  ``(S_global + w * mean_k s_k) / (1 + w)`` with ``w =
  model.part.embedding_weight`` (0: parts trained, not scored).

The commonality of every part is logged each logged step (``common_0``,
..., and the negatives' mean part similarity before normalising,
``negsim_0``, ...), so the training log shows which parts are common. What is not in the
reading: no part supervision anywhere (the part maps of SynthPEDES are read
only by :func:`query_part_iou`, to measure whether parts emerged), no
diversity loss between queries, one decoder layer. Taught in
``08_partlevel_commonality``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tireid_lite.config import Config
from tireid_lite.losses.ranking import (
    commonality,
    negative_mean,
    part_margins,
    part_ranking_loss,
    part_similarities,
)
from tireid_lite.models.head import Encoded, Head, HeadContext


class PartDecoder(nn.Module):
    """K learnable queries cross-attend over a token sequence: (B, K, D) part embeddings and their attention."""

    def __init__(self, dim: int, num_parts: int, heads: int = 1) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_parts, dim) * dim**-0.5)  # (K, D)
        self.norm_query = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.norm_out = nn.LayerNorm(dim)

    @property
    def num_parts(self) -> int:
        return self.queries.shape[0]

    def forward(self, context: Tensor, padding_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Part embeddings (B, K, D) and attention weights (B, K, Lc), averaged over heads, of ``context``
        (B, Lc, D); ``padding_mask`` (B, Lc) is ``True`` where a token must be ignored."""
        batch = context.shape[0]
        queries = self.norm_query(self.queries).unsqueeze(0).expand(batch, -1, -1)  # (B, K, D)
        ctx = self.norm_context(context)
        parts, weights = self.attn(queries, ctx, ctx, key_padding_mask=padding_mask, need_weights=True)  # (B, K, D)
        parts = parts + self.mlp(self.norm_mlp(parts))
        return self.norm_out(parts), weights  # (B, K, D), (B, K, Lc)


def flatten_parts(parts: Tensor) -> Tensor:
    """The scorer's ``parts`` view (B, K D): each part normalised, side by side, divided by sqrt(K), so
    the cosine of two such vectors is the mean of their K part cosines."""
    return F.normalize(parts.float(), dim=-1).flatten(1) / math.sqrt(parts.shape[1])


class PartHead(Head):
    """Part queries with the commonality-based margin ranking loss (see the module docstring)."""

    name = "part"
    losses = ("part",)
    embedding = "parts"

    def __init__(
        self,
        dim: int,
        num_parts: int,
        *,
        heads: int = 1,
        margin: float = 0.2,
        margin_mode: str = "commonality",
        commonality: str = "minmax",
        negatives: str = "semihard",
        weight: float = 1.0,
        embedding_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.decoder = PartDecoder(dim, num_parts, heads)
        self.margin, self.margin_mode, self.negatives = float(margin), margin_mode, negatives
        self.commonality = commonality
        self.loss_weights = {"part": float(weight)}
        self.embedding = "parts" if embedding_weight > 0 else None
        self.embedding_weight = float(embedding_weight)
        self.embedding_dim = num_parts * dim

    @classmethod
    def build(cls, cfg: Config, ctx: HeadContext) -> PartHead | None:
        p = cfg.model.part
        if p.loss_weight <= 0:
            return None
        return cls(ctx.dim, p.num_parts, heads=p.heads, margin=p.margin, margin_mode=p.margin_mode,
                   commonality=p.commonality, negatives=p.negatives, weight=p.loss_weight,
                   embedding_weight=p.embedding_weight)

    @property
    def num_parts(self) -> int:
        return self.decoder.num_parts

    # ------------------------------------------------------------- part embeddings
    def word_padding(self, model: Any, caption_ids: Tensor) -> Tensor:
        """``True`` (B, L) at positions the text side never attends: padding, start, end and other special tokens."""
        tok = model.tokenizer
        special = torch.tensor(sorted(tok.special_ids), device=caption_ids.device)
        return ~tok.attention_mask(caption_ids).bool() | torch.isin(caption_ids, special)

    def image_parts(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Image part embeddings (B, K, D) and attention over the patches (B, K, N) from tokens (B, 1+N, D)."""
        return self.decoder(tokens[:, 1:])

    def text_parts(self, model: Any, tokens: Tensor, caption_ids: Tensor) -> tuple[Tensor, Tensor]:
        """Caption part embeddings (B, K, D) and attention over the positions (B, K, L) from tokens (B, L, D)."""
        return self.decoder(tokens, self.word_padding(model, caption_ids))

    def image_embedding(self, model: Any, tokens: Tensor, attentions: list[Tensor] | None) -> Tensor:
        return flatten_parts(self.image_parts(tokens)[0])  # (B, K D)

    def text_embedding(
        self, model: Any, tokens: Tensor, attentions: list[Tensor] | None, caption_ids: Tensor
    ) -> Tensor:
        return flatten_parts(self.text_parts(model, tokens, caption_ids)[0])  # (B, K D)

    @torch.no_grad()
    def part_attention(self, model: Any, images: Tensor | None = None, caption_ids: Tensor | None = None) -> Tensor:
        """Where each part query looks: over the patches (B, K, N) of ``images``, or over the positions
        (B, K, L) of ``caption_ids`` (0 at padding and special tokens)."""
        if (images is None) == (caption_ids is None):
            raise ValueError("part_attention takes images or caption_ids, one of them")
        if images is not None:
            return self.image_parts(model.encode_image_tokens(images))[1]
        return self.text_parts(model, model.encode_text_tokens(caption_ids), caption_ids)[1]

    # ------------------------------------------------------------- training
    def forward(self, model: Any, enc: Encoded, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        pids = batch["pids"]
        image_parts, _ = self.image_parts(enc.image_tokens)  # (B, K, D)
        text_parts, _ = self.text_parts(model, enc.text_tokens, batch["caption_ids"])  # (B, K, D)
        sims = part_similarities(text_parts, image_parts)  # (K, B, B)
        common = commonality(sims, pids, self.commonality)  # (K,)
        margins = part_margins(common, self.margin, self.margin_mode)
        per_part = part_ranking_loss(sims, pids, margins, self.negatives)  # (K,)
        negative = negative_mean(sims, pids)  # (K,)
        out = {"part": per_part.mean()}
        for k in range(self.num_parts):
            out[f"common_{k}"] = common[k]
            out[f"negsim_{k}"] = negative[k]
        return out


# --------------------------------------------------------------------------- did parts emerge?


def attention_masks(attention: np.ndarray, mass: float = 0.5) -> np.ndarray:
    """Binarise attention (..., N): the fewest patches that hold ``mass`` of each map's weight (..., N) bool."""
    order = np.argsort(-attention, axis=-1)
    sorted_weights = np.take_along_axis(attention, order, axis=-1)
    total = sorted_weights.sum(-1, keepdims=True)
    before = np.cumsum(sorted_weights, axis=-1) - sorted_weights  # weight of the patches ranked above
    keep_sorted = before < mass * total
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    return keep


def query_part_iou(
    attention: np.ndarray, labels: np.ndarray, num_classes: int, mass: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Which query found which part: IoU (K, C) of each query's attended patches with each part class.

    ``attention`` (B, K, N) image attention of the part queries, ``labels`` (B,
    N) each patch's part class (:func:`~tireid_lite.data.patch_labels.patch_labels`,
    0 = background). A query's patches are the fewest that hold ``mass`` of
    its attention (:func:`attention_masks`); intersections and unions are
    summed over the images before dividing (dataset IoU, as in segmentation).
    Also returns the chance level (K, C): the expected IoU of as many patches
    drawn at random in each image. Taught in ``08_partlevel_commonality``.
    """
    keep = attention_masks(np.asarray(attention, dtype=np.float64), mass)  # (B, K, N)
    onehot = np.eye(num_classes, dtype=np.float64)[labels]  # (B, N, C)
    inter = np.einsum("bkn,bnc->kc", keep.astype(np.float64), onehot)  # (K, C)
    size_q = keep.sum(-1).astype(np.float64)  # (B, K)
    size_c = onehot.sum(1)  # (B, C)
    union = size_q.sum(0)[:, None] + size_c.sum(0)[None, :] - inter  # (K, C)
    num = labels.shape[1]
    expected = np.einsum("bk,bc->kc", size_q, size_c) / num  # (K, C) random patches' expected intersection
    chance_union = size_q.sum(0)[:, None] + size_c.sum(0)[None, :] - expected
    iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
    chance = np.where(chance_union > 0, expected / np.maximum(chance_union, 1e-12), 0.0)
    return iou, chance


def word_attention(attention: np.ndarray, caption_ids: np.ndarray, min_count: int = 20) -> dict[int, np.ndarray]:
    """Which words each query attends to: ``{token id: (K,) mean attention lift}`` over captions.

    ``attention`` (B, K, L) text attention of the part queries (0 at padding and
    special tokens), ``caption_ids`` (B, L). A word's lift for query k is the
    mean over its occurrences of its attention times the caption's number of
    attended words (1 = a uniform share); words seen fewer than ``min_count``
    times are left out. Taught in ``08_partlevel_commonality``.
    """
    attended = attention.sum(1) > 0  # (B, L) positions any query may attend
    words = attended.sum(-1, keepdims=True)  # (B, 1)
    lift = attention * words[:, None, :]  # (B, K, L)
    ids = caption_ids[attended]  # (M,)
    values = lift.transpose(0, 2, 1)[attended]  # (M, K)
    out = {}
    for token in np.unique(ids):
        rows = ids == token
        if rows.sum() >= min_count:
            out[int(token)] = values[rows].mean(0)
    return out
