"""The text tower: a transformers encoder plus a projection, pooled at the end token.

IRRA encodes a caption with CLIP's text transformer (77 tokens, causal
attention) and takes the feature at the end-of-text token; every token leaves
the tower through the final LayerNorm and the text projection, so the local
(token) features live in the same space as the global one. Two kinds share
that interface:

- ``clip``: ``transformers.CLIPTextModel``, tiny from scratch or loaded from a
  local CLIP checkpoint with its ``text_projection`` (the ``gpu`` profile).
  CLIP's tokenizer keeps its 49,408 ids (the mask token takes the id of the
  last BPE merge, as in IRRA); a tokenizer whose vocabulary differs from the
  checkpoint's gets resized token embeddings.
- ``bert``: a tiny from-scratch ``transformers.BertModel`` (bidirectional,
  no pooler, no dropout) for the ``cpu`` profile. Trained from scratch on
  the toy data, a bidirectional encoder learns several times faster than a
  causal CLIP text model of the same size. BERT's last layer ends with a
  LayerNorm, so its outputs are already normalised.

Pooling is the caller's: :func:`pool_at` picks the first end token of each
row, which is right whether or not extra tokens were added to the vocabulary.

Taught in notebook 02 (baseline).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tireid_lite.errors import ConfigError
from tireid_lite.models.image_tower import TowerOutput

TEXT_KINDS = ("bert", "clip")
# The cpu profile's tiny encoder; a pretrained tower takes these from its checkpoint.
TINY_TEXT_ARCH = {"width": 128, "depth": 3, "heads": 4, "out_dim": 128}


class TextTower(nn.Module):
    """A transformers text encoder and a bias-free projection over all its tokens.

    Build it with :func:`build_text_tower`. Attributes: ``kind``, ``width``,
    ``depth``, ``num_heads``, ``out_dim``, ``max_length``, ``vocab_size``.
    """

    def __init__(self, encoder: nn.Module, out_dim: int, kind: str) -> None:
        super().__init__()
        config = encoder.config
        self.encoder = encoder
        self.kind = kind
        self.width = int(config.hidden_size)
        self.depth = int(config.num_hidden_layers)
        self.num_heads = int(config.num_attention_heads)
        self.max_length = int(config.max_position_embeddings)
        self.out_dim = int(out_dim)
        self.proj = nn.Linear(self.width, self.out_dim, bias=False)
        nn.init.normal_(self.proj.weight, std=self.width**-0.5)  # CLIP's init of its projection

    def set_grad_checkpointing(self, enable: bool = True, *, eager: bool = False) -> None:
        """Recompute each layer in the backward pass (transformers' gradient checkpointing, training only).

        ``eager`` keeps transformers' eager attention for every call: a model that reads the text
        tower's attention maps needs it, since the recomputation runs outside the call that asked
        for them and must take the same path."""
        if enable:
            self.encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            if eager:
                self.encoder.set_attn_implementation("eager")
        else:
            self.encoder.gradient_checkpointing_disable()

    @property
    def vocab_size(self) -> int:
        """Rows of the token embedding: ids must be below this."""
        return int(self.encoder.get_input_embeddings().num_embeddings)

    def forward(self, ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Encode ``ids`` (B, L) with ``attention_mask`` (B, L; 1 = real token) into (B, L, out_dim).

        Trailing columns that are padding in every row are not computed: their
        tokens come back as zeros (see :func:`used_length`).
        """
        return self.encode(ids, attention_mask).tokens

    def encode(self, ids: Tensor, attention_mask: Tensor, return_attention: bool = False) -> TowerOutput:
        """Like :meth:`forward`, returning a ``TowerOutput``.

        With ``return_attention=True`` it also holds each layer's
        (B, heads, L, L) softmax attention map (computed by transformers'
        eager attention for this call; the tokens are the same).
        """
        self._check_inputs(ids, attention_mask)
        length = ids.shape[1]
        used = used_length(attention_mask)
        with _eager_attention(self.encoder, return_attention):
            out = self.encoder(
                input_ids=ids[:, :used],
                attention_mask=attention_mask[:, :used],
                output_attentions=return_attention,
            )
        tokens = self.proj(out.last_hidden_state)  # (B, used, W) -> (B, used, out_dim)
        tokens = F.pad(tokens, (0, 0, 0, length - used))  # (B, L, out_dim)
        if torch.compiler.is_compiling():  # untrimmed: zero the columns past the last real one, as trimming does
            tokens = tokens * _used_columns(attention_mask)[None, :, None].to(tokens.dtype)
        attentions = None
        if return_attention:
            pad = (0, length - used, 0, length - used)
            attentions = [F.pad(weights, pad) for weights in out.attentions]  # each (B, heads, L, L)
        return TowerOutput(tokens=tokens, attentions=attentions)

    def _check_inputs(self, ids: Tensor, attention_mask: Tensor) -> None:
        if ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"ids must be an integer tensor of shape (B, L), got {ids.dtype} {tuple(ids.shape)}")
        if tuple(attention_mask.shape) != tuple(ids.shape):
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)} but ids {tuple(ids.shape)}; "
                "give one mask value per token"
            )
        if ids.shape[1] > self.max_length:
            raise ValueError(
                f"ids have length {ids.shape[1]} but the text tower holds {self.max_length} positions; "
                f"tokenize with max_length={self.max_length}"
            )
        if ids.numel() == 0:
            raise ValueError("ids are empty; give at least one token per caption")
        if torch.compiler.is_compiling():
            return  # the range check reads values (a graph break); a compiled step was checked eagerly first
        low, high = (int(value) for value in torch.aminmax(ids))
        if low < 0 or high >= self.vocab_size:
            raise ValueError(
                f"token ids range over [{low}, {high}] but the text tower's vocabulary has "
                f"{self.vocab_size} entries; build it with the tokenizer's vocab_size"
            )


def used_length(attention_mask: Tensor) -> int:
    """One past the last column of ``attention_mask`` (B, L) that holds a real token in any row.

    Columns after it are padding in every row; no real token attends to them
    (they are masked as keys, and a causal model never looks ahead), so the
    tower skips them and returns zeros there. At least 1. Inside ``torch.compile`` the full
    length (no trimming: the same tokens up to float rounding, without a data-dependent shape).
    """
    if torch.compiler.is_compiling():
        return attention_mask.shape[1]
    real_columns = torch.nonzero(attention_mask.bool().any(dim=0))  # (n, 1)
    return int(real_columns.max()) + 1 if real_columns.numel() else 1


def _used_columns(attention_mask: Tensor) -> Tensor:
    """(L,) bool: True up to and including the last column of ``attention_mask`` (B, L) holding a real
    token in any row (the columns :func:`used_length` keeps), without a data-dependent shape."""
    real = attention_mask.bool().any(dim=0)  # (L,)
    return real.flip(0).cummax(dim=0).values.flip(0)


def pool_at(tokens: Tensor, ids: Tensor, eot_id: int) -> Tensor:
    """The feature (B, D) of each row's first ``eot_id`` token in ``tokens`` (B, L, D).

    IRRA's global text feature is the end-of-text token's. Every row of
    ``ids`` (B, L) must contain ``eot_id``. Taught in notebook 02 (baseline).
    """
    if tokens.dim() != 3 or tuple(ids.shape) != tuple(tokens.shape[:2]):
        raise ValueError(f"tokens (B, L, D) and ids (B, L) disagree: {tuple(tokens.shape)} vs {tuple(ids.shape)}")
    is_eot = ids == eot_id  # (B, L)
    has_eot = is_eot.any(dim=1)  # (B,)
    if not torch.compiler.is_compiling() and not bool(has_eot.all()):
        rows = torch.nonzero(~has_eot).flatten().tolist()
        raise ValueError(
            f"rows {rows[:8]} of ids have no end token {eot_id}; "
            "tokenize with the end token kept (truncate before it, not after)"
        )
    position = is_eot.to(torch.int8).argmax(dim=1)  # (B,), argmax returns the first maximum
    return tokens[torch.arange(tokens.shape[0], device=tokens.device), position]  # (B, D)


def build_text_tower(
    *,
    kind: str = "bert",
    vocab_size: int,
    max_length: int,
    width: int | None = None,
    depth: int | None = None,
    heads: int | None = None,
    out_dim: int | None = None,
    pretrained_dir: str | Path | None = None,
) -> TextTower:
    """Build the text tower: ``bert`` or ``clip`` from scratch, or ``clip`` from a local checkpoint.

    From scratch, unset sizes take the cpu profile's values (width 128,
    depth 3, heads 4, out_dim 128); ``max_length`` sets the number of
    positions. With ``pretrained_dir`` (``kind="clip"`` only) the sizes come
    from the checkpoint: leave them unset or give the checkpoint's values;
    ``max_length`` may not exceed its positions (77 for OpenAI's CLIP) and
    ``vocab_size`` may not be below its vocabulary; a larger ``vocab_size``
    adds token embeddings. Taught in notebook 02 (baseline).
    """
    if kind not in TEXT_KINDS:
        raise ConfigError(f"text tower kind '{kind}' is unknown; use one of {', '.join(TEXT_KINDS)}")
    if vocab_size < 1 or max_length < 1:
        raise ConfigError(f"vocab_size={vocab_size} and max_length={max_length} must both be positive")
    given = {"width": width, "depth": depth, "heads": heads, "out_dim": out_dim}
    if pretrained_dir is not None:
        if kind != "clip":
            raise ConfigError(
                f"pretrained text weights come from a CLIP checkpoint, but kind='{kind}'; use kind='clip'"
            )
        return _pretrained_clip(pretrained_dir, vocab_size, max_length, given)
    arch = {name: value if value is not None else TINY_TEXT_ARCH[name] for name, value in given.items()}
    if arch["width"] % arch["heads"]:
        raise ConfigError(
            f"width={arch['width']} is not divisible by heads={arch['heads']}; choose heads that divide it"
        )
    sizes = dict(
        vocab_size=vocab_size,
        hidden_size=arch["width"],
        num_hidden_layers=arch["depth"],
        num_attention_heads=arch["heads"],
        intermediate_size=4 * arch["width"],
        max_position_embeddings=max_length,
        pad_token_id=None,
    )
    if kind == "bert":
        from transformers import BertConfig, BertModel

        config = BertConfig(type_vocab_size=1, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **sizes)
        encoder = BertModel(config, add_pooling_layer=False)
    else:
        from transformers import CLIPTextConfig, CLIPTextModel

        # transformers pools at eos_token_id inside the model; the kit pools with pool_at instead.
        config = CLIPTextConfig(bos_token_id=None, eos_token_id=vocab_size - 1, projection_dim=arch["out_dim"], **sizes)
        encoder = CLIPTextModel(config)
    return TextTower(encoder, arch["out_dim"], kind)


def _pretrained_clip(pretrained_dir: str | Path, vocab_size: int, max_length: int, given: dict) -> TextTower:
    from transformers import CLIPTextModel

    from tireid_lite.models.clip_weights import load_clip_config, load_clip_text_weights

    config = load_clip_config(pretrained_dir)
    text = config.text_config
    arch = {
        "width": int(text.hidden_size),
        "depth": int(text.num_hidden_layers),
        "heads": int(text.num_attention_heads),
        "out_dim": int(config.projection_dim),
    }
    for name, value in given.items():
        if value is not None and value != arch[name]:
            raise ConfigError(
                f"{name}={value} disagrees with the CLIP checkpoint in {pretrained_dir} ({name}={arch[name]}); "
                f"leave {name} unset or set it to {arch[name]}"
            )
    if max_length > text.max_position_embeddings:
        raise ConfigError(
            f"max_length={max_length} exceeds the {text.max_position_embeddings} positions of the CLIP checkpoint "
            f"in {pretrained_dir}; use max_length <= {text.max_position_embeddings}"
        )
    if vocab_size < text.vocab_size:
        raise ConfigError(
            f"vocab_size={vocab_size} is below the CLIP checkpoint's {text.vocab_size} tokens in {pretrained_dir}; "
            "use CLIP's tokenizer from the same directory"
        )
    encoder = CLIPTextModel(text)
    tower = TextTower(encoder, arch["out_dim"], "clip")
    load_clip_text_weights(encoder, tower.proj, pretrained_dir)
    if vocab_size > text.vocab_size:
        encoder.resize_token_embeddings(vocab_size)  # new rows start at the mean of the old ones
    return tower


@contextmanager
def _eager_attention(encoder: nn.Module, needed: bool) -> Iterator[None]:
    """Switch ``encoder`` to transformers' eager attention (which can return weights) for one call."""
    previous = encoder.config._attn_implementation
    if not needed or previous == "eager":
        yield
        return
    encoder.set_attn_implementation("eager")
    try:
        yield
    finally:
        encoder.set_attn_implementation(previous)
