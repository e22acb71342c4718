"""IRRA's cross-modal interaction module, shared by every mechanism that reasons across modalities.

One multi-head cross-attention in which the *query* tokens of one modality
attend to the *context* tokens of the other (each side with its own
LayerNorm), followed by ``depth`` pre-norm transformer layers and a final
LayerNorm. IRRA uses it with masked caption tokens as queries and image tokens
as context (implicit relation reasoning, masked language modelling); BiLMa runs
it the other way round (masked image tokens query the caption).

Following IRRA, the module's output is the cross-attended context alone (no
residual from the queries), so a masked word can only be recovered through
what it found in the other modality and through the other query tokens.
Taught in ``02_baseline_irra``.
"""

from __future__ import annotations

import math

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn


class CrossModalEncoder(nn.Module):
    """Cross-attention (queries -> context) + ``depth`` transformer layers."""

    def __init__(self, dim: int, heads: int, depth: int) -> None:
        super().__init__()
        self.norm_query = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.layers = nn.ModuleList(Block(dim, heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth))
        self.norm_out = nn.LayerNorm(dim)
        scale = dim**-0.5
        nn.init.normal_(self.cross_attn.in_proj_weight, std=scale)
        nn.init.normal_(self.cross_attn.out_proj.weight, std=scale)

    def forward(
        self,
        queries: Tensor,
        context: Tensor,
        context_padding_mask: Tensor | None = None,
        return_attention: bool = False,
        zero_from: int | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """``queries`` (B, Lq, D) attend to ``context`` (B, Lc, D); returns (B, Lq, D).

        ``context_padding_mask`` (B, Lc) is ``True`` where a context token must be
        ignored. With ``return_attention`` the cross-attention weights (B, Lq, Lc),
        averaged over heads, come back too.

        ``zero_from``: the caller's promise that every query from this column on is a zero vector
        (the text tower returns zeros past the batch's longest caption). Those queries are equal,
        so every layer keeps them equal: they are computed as one query, whose key counts as
        many in the self-attention (``log(copies)`` added to its score, which is what ``copies``
        equal keys add to a softmax), and its output is repeated over them. The same result
        up to float rounding, with the layers run over ``zero_from + 1`` queries instead of Lq.
        """
        length = queries.shape[1]
        compact = (zero_from is not None and zero_from + 1 < length and not return_attention
                   and not torch.compiler.is_compiling())
        attn_mask = None
        if compact:
            copies = length - zero_from
            queries = queries[:, : zero_from + 1]  # (B, zero_from + 1, D): one zero query for all
            attn_mask = torch.zeros(1, zero_from + 1, dtype=queries.dtype, device=queries.device)
            attn_mask[0, -1] = math.log(copies)  # (1, Lk): added to every query's score of each key
        ctx = self.norm_context(context)
        x, weights = self.cross_attn(
            self.norm_query(queries), ctx, ctx,
            key_padding_mask=context_padding_mask,
            need_weights=return_attention,
        )  # (B, Lq, D)
        for layer in self.layers:
            x = layer(x, attn_mask=attn_mask)
        x = self.norm_out(x)
        if compact:
            x = torch.cat([x, x[:, -1:].expand(-1, copies - 1, -1)], dim=1)  # (B, Lq, D)
        return (x, weights) if return_attention else x


class TokenPredictionHead(nn.Module):
    """IRRA's MLM head: Linear -> GELU -> LayerNorm -> Linear to ``num_outputs`` classes.

    Also used for masked image modelling targets (part classes, RGB, pixels).
    """

    def __init__(self, dim: int, num_outputs: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim), nn.Linear(dim, num_outputs))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (..., num_outputs)
