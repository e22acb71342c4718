"""CADA's association decoder: text tokens query image patches, with ATP's adaptive gate.

Each of the decoder's ``depth`` layers is a pre-norm transformer layer with
a cross-attention between its self-attention and its MLP (BLIP's text
encoder in matching mode, which CADA's code uses)::

    x <- x + SelfAttn(LN(x))                                      (B, L, D), padding masked
    a, A <- CrossAttn(LN(x), LN(image tokens))                    a: (B, L, D), A: (B, L, 1+N) heads averaged
    x <- x + g * a                                                g: (B, L, 1) the gate, 1 when off
    x <- x + MLP(LN(x))

**ATP's adaptive gate (the kit's reading).** CADA's abstract says the
association of text tokens to patches is *adaptive*, because aggregating
image features along a mistaken association distorts the token; its public
code shows no gate. Here each token's aggregated image feature ``a`` is
scaled by a confidence computed from its own attention distribution ``A_t``
over the N' = 1 + N image tokens::

    focus_t = 1 - H(A_t) / log N'              1 for attention on one token, 0 for uniform
    peak_t  = (max_j A_tj - 1/N') / (1 - 1/N')  the peak above uniform, in [0, 1]
    g_t = sigmoid(w_f focus_t + w_p peak_t + b)

with ``w_f, w_p, b`` learned, initialised to 4, 4 and 0 (a spread-out
attention starts near g = 0.5, a sharp one near 1). A token whose
attention is spread over the whole image (no region found) thus adds less
of the image to itself. ``gate=False`` is the public code's behaviour (g = 1).
Each layer's attention map and gate come back for figures. Taught in
``07_cada_dual_association``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn


def attention_confidence(attention: Tensor) -> tuple[Tensor, Tensor]:
    """``focus`` and ``peak`` (each (..., L)) of attention rows ``attention`` (..., L, N') (see module docstring)."""
    num = attention.shape[-1]
    if num < 2:
        raise ValueError(f"an attention row over {num} token carries no confidence; attend to 2 or more tokens")
    entropy = -(attention * torch.log(attention.clamp_min(1e-12))).sum(-1)  # (..., L)
    focus = 1.0 - entropy / math.log(num)
    peak = (attention.max(-1).values - 1.0 / num) / (1.0 - 1.0 / num)
    return focus, peak


class AdaptiveGate(nn.Module):
    """g = sigmoid(w_f focus + w_p peak + b) from a token's attention distribution."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(2, 1)
        nn.init.constant_(self.proj.weight, 4.0)
        nn.init.zeros_(self.proj.bias)

    def forward(self, attention: Tensor) -> Tensor:
        """Gate values (B, L) for attention rows (B, L, N')."""
        focus, peak = attention_confidence(attention.float())
        return torch.sigmoid(self.proj(torch.stack([focus, peak], dim=-1))).squeeze(-1).to(attention.dtype)


class AssociationLayer(nn.Module):
    """Self-attention over the text, cross-attention to the image with the gate, MLP (see module docstring)."""

    def __init__(self, dim: int, heads: int, gate: bool) -> None:
        super().__init__()
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_query = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.gate = AdaptiveGate() if gate else None

    def forward(self, x: Tensor, context: Tensor, padding: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """``x`` (B, L, D) text tokens, ``context`` (B, N', D) image tokens, ``padding`` (B, L) True at padding.
        Returns the new tokens, the cross-attention (B, L, N') and the gate (B, L)."""
        h = self.norm_self(x)
        x = x + self.self_attn(h, h, h, key_padding_mask=padding, need_weights=False)[0]
        ctx = self.norm_context(context)
        aggregated, attention = self.cross_attn(self.norm_query(x), ctx, ctx, need_weights=True)  # (B, L, D), (B, L, N')
        gate = self.gate(attention) if self.gate is not None else attention.new_ones(attention.shape[:2])
        x = x + gate.unsqueeze(-1) * aggregated
        x = x + self.mlp(self.norm_mlp(x))
        return x, attention, gate


@dataclass
class Association:
    """What the decoder returns: the fused text tokens and, per layer, attention maps and gate values."""

    tokens: Tensor  # (B, L, D)
    attentions: list[Tensor]  # (B, L, 1+N) per layer, heads averaged
    gates: list[Tensor]  # (B, L) per layer (all ones with the gate off)


class AssociationDecoder(nn.Module):
    """``depth`` :class:`AssociationLayer` s and a final LayerNorm: text tokens query image tokens."""

    def __init__(self, dim: int, heads: int, depth: int, gate: bool = True) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"the association decoder needs at least one layer, got depth={depth}")
        self.layers = nn.ModuleList(AssociationLayer(dim, heads, gate) for _ in range(depth))
        self.norm_out = nn.LayerNorm(dim)

    @property
    def gated(self) -> bool:
        return self.layers[0].gate is not None

    def forward(self, text_tokens: Tensor, image_tokens: Tensor, padding: Tensor | None = None) -> Association:
        x, attentions, gates = text_tokens, [], []
        for layer in self.layers:
            x, attention, gate = layer(x, image_tokens, padding)
            attentions.append(attention)
            gates.append(gate)
        return Association(self.norm_out(x), attentions, gates)
