"""RDE's token-selection embedding (TSE): a local embedding built from the most-attended tokens.

RDE learns two embeddings per modality: the global one (BGE, the image's
class token and the caption's end token) and the token-selection one (TSE).
TSE keeps the top R (RDE: R = 0.3; KPDM's release: 0.5) of the tokens by
the attention the global token pays them in the tower's last layer,
L2-normalises each kept token, maps it by a 2-layer MLP plus a linear
branch and max-pools over the kept tokens::

    x_k <- x_k / ||x_k||_2,    e_k = MLP(x_k) + FC(x_k),    e = max_k e_k   (element-wise)

The retrieval score averages the two embeddings' cosine similarities,
(S_bge + S_tse) / 2.

Choices of the kit (our reading where the description leaves room):

* the MLP is Linear(D, hidden) -> ReLU -> Linear(hidden, embed_dim) with
  ``hidden = embed_dim // 2`` by default and no batch normalisation, so the
  padded entries of a text selection cannot reach any statistic;
* image tokens are chosen by :func:`tireid_lite.models.patch_importance.select_patches`
  (KPDM's cross-layer importance, or RDE's last layer with ``layers=1``)
  and passed without the class token;
* caption tokens are chosen by :func:`select_text_tokens` from the end
  token's row of the text tower's last attention map (:func:`end_token_attention`): never padding,
  and (``skip_ends=True``, as RDE does) never the start or end token. The
  number kept, K, follows from the padded caption length so every caption
  of a batch gives the same K; a caption with fewer candidate tokens than K
  fills its selection with entries marked invalid, which the max-pool skips.

:class:`TokenSelector` makes both choices for a batch (KPDM's heads share one).
Taught in ``04_kpdm_patch_importance_fmlm``; trained with TAL in
``05_kpdm_trusted_consensus``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tireid_lite.errors import ConfigError
from tireid_lite.models.patch_importance import num_kept, patch_importance, select_patches
from tireid_lite.text.tokenizers import Tokenizer


def select_text_tokens(
    attn_row: Tensor, attention_mask: Tensor, ratio: float, skip_ends: bool = True
) -> tuple[Tensor, Tensor]:
    """Choose the top ``ratio`` of each caption's tokens by the end token's attention.

    ``attn_row`` (B, L) is the attention the end (or class) token pays every
    position, e.g. the last layer's map averaged over heads, taken at the end
    token's row; ``attention_mask`` (B, L) is 1/``True`` on the caption's
    tokens and 0/``False`` on padding (the tokenizer's ``attention_mask``).
    Candidates are the unpadded positions, less the first and the last of
    them (the start and end tokens) when ``skip_ends``.

    K = max(1, round(ratio * L')) with L' = L - 2 when ``skip_ends`` else L
    (the padded length, so K is the same for every caption; half rounds up,
    see :func:`~tireid_lite.models.patch_importance.num_kept`). Returns

    * ``keep_idx`` (B, K) long: positions in 0..L-1, the valid ones first in
      ascending order (the caption's word order), then the filler;
    * ``keep_valid`` (B, K) bool: ``False`` on filler entries, which exist
      when a caption has fewer than K candidates. Give ``~keep_valid`` to
      :class:`TokenSelectionEmbedding` as its ``padding_mask``.

    Ties go to the earlier position. Taught in ``04_kpdm_patch_importance_fmlm``.
    """
    if attn_row.dim() != 2 or attention_mask.shape != attn_row.shape:
        raise ValueError(
            f"attn_row and attention_mask must both be (B, L), got {tuple(attn_row.shape)} "
            f"and {tuple(attention_mask.shape)}"
        )
    batch, length = attn_row.shape
    pool_size = length - 2 if skip_ends else length
    if pool_size < 1:
        raise ValueError(
            f"captions of length {length} leave no token to choose once the start and end tokens are skipped; "
            "use longer captions or skip_ends=False"
        )
    keep = num_kept(pool_size, ratio)
    candidates = attention_mask.bool()  # (B, L)
    if skip_ends:
        positions = torch.arange(length, device=attn_row.device)  # (L,)
        first = candidates.long().argmax(dim=1, keepdim=True)  # (B, 1)
        last = length - 1 - candidates.flip(1).long().argmax(dim=1, keepdim=True)  # (B, 1)
        candidates = candidates & (positions != first) & (positions != last)  # (B, L)
    scores = attn_row.float().masked_fill(~candidates, float("-inf"))  # (B, L)
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :keep]  # (B, K), best first
    valid = candidates.gather(1, order)  # (B, K)
    # valid entries first in word order, then the filler: sort on position + L for filler
    sort_key = (order + length * (~valid).long()).sort(dim=1).values  # (B, K)
    return sort_key % length, sort_key < length


class TokenSelectionEmbedding(nn.Module):
    """RDE's TSE head: L2-normalise, MLP(x) + FC(x), max-pool over the selected tokens.

    ``dim`` is the tower's token width D, ``embed_dim`` the embedding's width
    and ``hidden`` the MLP's hidden width (default ``embed_dim // 2``);
    ``batchnorm`` puts a BatchNorm over the selected tokens after the MLP's first
    layer, as RDE's code does (``model/CrossEmbeddingLayer_tse.py``: 512 -> 512 -> 1024).
    Taught in ``04_kpdm_patch_importance_fmlm``.
    """

    def __init__(self, dim: int, embed_dim: int, hidden: int | None = None, *, batchnorm: bool = False) -> None:
        super().__init__()
        hidden = max(1, embed_dim // 2) if hidden is None else hidden
        for name, value in (("dim", dim), ("embed_dim", embed_dim), ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} is not a width; use a positive integer")
        if batchnorm:  # RDE's MLP: Linear -> BatchNorm over every selected token -> ReLU -> Linear
            self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, embed_dim))
        else:
            self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, embed_dim))
        self.fc = nn.Linear(dim, embed_dim)
        self.dim, self.embed_dim, self.hidden, self.batchnorm = dim, embed_dim, hidden, bool(batchnorm)

    def forward(self, tokens: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Embed the selected ``tokens`` (B, K, D) into (B, embed_dim).

        ``padding_mask`` (B, K) bool is ``True`` on entries to ignore (for a
        caption, ``~keep_valid`` from :func:`select_text_tokens`); they take
        no part in the max-pool, so their features cannot change the output.
        A row whose entries are all padding gives zeros.
        """
        if tokens.dim() != 3 or tokens.shape[2] != self.dim:
            raise ValueError(
                f"tokens must be (B, K, {self.dim}), got shape {tuple(tokens.shape)}; "
                f"build TokenSelectionEmbedding with dim={tokens.shape[-1]} or pass the tower's tokens"
            )
        x = F.normalize(tokens, dim=-1)  # (B, K, D)
        if self.batchnorm:
            mlp = self.mlp(x.flatten(0, 1)).unflatten(0, x.shape[:2])  # BatchNorm1d wants (B*K, hidden)
        else:
            mlp = self.mlp(x)
        features = mlp + self.fc(x)  # (B, K, E)
        if padding_mask is None:
            return features.amax(dim=1)  # (B, E)
        if padding_mask.dtype != torch.bool or tuple(padding_mask.shape) != tuple(tokens.shape[:2]):
            raise ValueError(
                f"padding_mask must be a bool tensor of shape (B, K) = {tuple(tokens.shape[:2])}, "
                f"got {padding_mask.dtype} {tuple(padding_mask.shape)}; pass ~keep_valid"
            )
        features = features.masked_fill(padding_mask.unsqueeze(-1), float("-inf"))  # (B, K, E)
        pooled = features.amax(dim=1)  # (B, E)
        any_valid = (~padding_mask).any(dim=1, keepdim=True)  # (B, 1)
        return torch.where(any_valid, pooled, torch.zeros_like(pooled))  # (B, E)


# --------------------------------------------------------------------------- one batch's selection

SELECTION_KEY = "token_selection"  # where a batch's selection is kept in Encoded.extras


@dataclass
class Selection:
    """The tokens kept for one batch."""

    image_idx: Tensor  # (B, K) kept patch indices 0..N-1 (class token excluded), spatial order
    text_idx: Tensor | None  # (B, Kt) kept caption positions, valid ones first; None without caption selection
    text_valid: Tensor | None  # (B, Kt) bool, False on filler entries


def end_token_attention(attentions: Sequence[Tensor], ids: Tensor, eot_id: int) -> Tensor:
    """The attention each caption's end token pays every position in the last layer: (B, L).

    ``attentions`` are the text tower's (B, heads, L, L) maps, one per layer;
    the last is averaged over heads and read at the row of each caption's
    first ``eot_id`` token (RDE's selection row).
    """
    last = attentions[-1].float().mean(dim=1)  # (B, L, L)
    end = (ids == eot_id).to(torch.int8).argmax(dim=1)  # (B,) first end token
    return last[torch.arange(ids.shape[0], device=ids.device), end]  # (B, L)


class TokenSelector:
    """Which image patches and caption tokens are kept (KPDM's two heads share one).

    ``ratio`` is ``model.kpdm.select_ratio`` (1.0 keeps every patch and skips
    the scoring), ``layers`` and ``method`` the patch-importance settings;
    ``text`` selects caption tokens too (needed by the caption's TSE only).
    """

    def __init__(self, tokenizer: Tokenizer, ratio: float, layers: int, method: str, text: bool) -> None:
        self.tokenizer = tokenizer
        self.ratio = float(ratio)
        self.layers = int(layers)
        self.method = method
        self.text = text

    @torch.no_grad()
    def image(self, tokens: Tensor, attentions: Sequence[Tensor] | None) -> Tensor:
        """Kept patch indices (B, K) for image ``tokens`` (B, 1+N, D) and the tower's attention maps."""
        batch, num_patches = tokens.shape[0], tokens.shape[1] - 1
        if self.ratio >= 1.0:
            return torch.arange(num_patches, device=tokens.device).expand(batch, num_patches)  # (B, N)
        if attentions is None:
            raise ValueError(
                "patch selection needs the image tower's attention maps; run the tower with return_attention=True"
            )
        scores = patch_importance(attentions, self.layers, self.method)  # (B, N)
        return select_patches(scores, self.ratio)  # (B, K)

    @torch.no_grad()
    def caption(self, ids: Tensor, attentions: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Kept caption positions (B, Kt) and their validity (B, Kt) from the text tower's attention maps."""
        row = end_token_attention(attentions, ids, self.tokenizer.eot_id)  # (B, L)
        return select_text_tokens(row, self.tokenizer.attention_mask(ids), self.ratio)

    def for_batch(self, enc, caption_ids: Tensor) -> Selection:
        """The batch's selection, computed once and kept in ``enc.extras`` for the other head."""
        selection = enc.extras.get(SELECTION_KEY)
        if selection is None:
            image_idx = self.image(enc.image_tokens, enc.image_attentions)
            text_idx = text_valid = None
            if self.text:
                if enc.text_attentions is None:
                    raise ValueError("caption selection needs the text tower's attention maps (return_attention=True)")
                text_idx, text_valid = self.caption(caption_ids, enc.text_attentions)
            selection = enc.extras[SELECTION_KEY] = Selection(image_idx, text_idx, text_valid)
        return selection
