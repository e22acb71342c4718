"""The interface every mechanism implements: a :class:`Head` of ``TIReIDModel``.

A method of the course is the two towers plus a few heads, one per
mechanism (SDM, ID, IRRA's masked words, BiLMa's masked patches, RDE's and
KPDM's alignment, ...); :mod:`tireid_lite.models.methods` lists which heads
make each method. A head

* is built from the config by :meth:`Head.build` (``None`` when the config
  switches it off) and says beforehand what it needs (:meth:`Head.needs`:
  part maps, key phrases, per-pair weights from a noise partitioner, the
  image tower's mask token), so code outside ``models/`` asks the method
  instead of testing its name;
* computes its losses in :meth:`Head.forward` from what the towers encoded for
  the batch (:class:`Encoded`) and returns them with any logged values; the
  model sums ``loss_weights[name] * out[name]``;
* may draw something per caption in the training set (``caption_hook``: the
  masked words), set itself up once per dataset (:meth:`Head.prepare`: parse
  key phrases, count tokens), read the per-pair weights the Trainer puts in
  ``batch["pair_weights"]`` (a noise partition), add an embedding to the
  retrieval score (``embedding``, :meth:`Head.image_embedding`,
  :meth:`Head.text_embedding`; the scorer combines them) and offer a second
  retrieval stage that re-ranks the top of the gallery (:meth:`Head.rerank`).

A head never holds the Trainer: what the Trainer computes between epochs
reaches the heads through the batch. Heads receive the model as an argument
(to reach the towers and the tokenizer) and never import it. Taught in
``02_baseline_irra``.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn

from tireid_lite.config import Config
from tireid_lite.errors import ConfigError
from tireid_lite.text.tokenizers import Tokenizer

# What a head may need prepared from the data or from the run (see Head.needs).
NEEDS_PART_MAPS = "part_maps"  # each training item carries its part map (batch["part_map"])
NEEDS_KEY_PHRASES = "key_phrases"  # the training captions' key phrases are parsed before training
NEEDS_PAIR_WEIGHTS = "pair_weights"  # its losses read batch["pair_weights"]: a noise partitioner may act
NEEDS_MASK_TOKEN = "image_mask_token"  # the image tower has a learned mask token for masked patches


@dataclass
class Encoded:
    """What the towers produced for one training batch."""

    image_tokens: Tensor  # (B, 1+N, D), class token first
    text_tokens: Tensor  # (B, L, D)
    image_feats: Tensor  # (B, D) global image feature (class token, or mean of patches)
    text_feats: Tensor  # (B, D) global text feature (end token, or mean of tokens)
    # each layer's attention map, when a head asks the towers for them (Head.wants_attention)
    image_attentions: list[Tensor] | None = None  # (B, heads, 1+N, 1+N) per layer
    text_attentions: list[Tensor] | None = None  # (B, heads, L, L) per layer
    extras: dict = field(default_factory=dict)  # values heads share within one batch (e.g. KPDM's selection)


@dataclass
class HeadContext:
    """What a head's builder may read besides the config: sizes, the tokenizer, and modules that
    heads built before it chose to share (``shared``, e.g. IRRA's cross-modal module, which BiLMa's
    masked patches go through too)."""

    dim: int  # the joint embedding width of both towers
    tokenizer: Tokenizer
    num_classes: int  # training identities
    patch_size: int
    num_patches: int
    image_depth: int  # layers of the image tower
    shared: dict[str, Any] = field(default_factory=dict)


@dataclass
class RerankInputs:
    """What a second retrieval stage sees (see :meth:`Head.rerank`)."""

    query_ids: Tensor  # (Q, L) the queries' caption token ids
    text_feats: Tensor  # (Q, F) the queries' retrieval features
    image_feats: Tensor  # (G, F) the gallery's retrieval features
    candidates: Tensor  # (Q, k) gallery indices of each query's top k by the first stage, best first
    scores: Tensor  # (Q, k) their first-stage similarities
    load_images: Any  # callable: gallery indices (n,) -> images (n, 3, H, W) on the model's device


class Head(nn.Module, metaclass=ABCMeta):
    """One mechanism of a method (see the module docstring). Subclasses set ``name`` and define
    :meth:`build` and :meth:`forward`; everything else is optional."""

    name: ClassVar[str] = ""  # its key in model.heads
    losses: tuple[str, ...] = ()  # the losses forward returns, in the order they are summed
    wants_attention: bool = False  # the towers must return their attention maps (training and encoding)
    embedding: str | None = None  # the name of the retrieval embedding it adds, if any
    embedding_weight: float = 1.0  # that embedding's weight in the scorer's similarity
    embedding_dim: int | None = None  # that embedding's width; None: the towers' joint width D

    def __init__(self) -> None:
        super().__init__()
        self.loss_weights: dict[str, float] = {}  # weight of each of its losses in the total
        self.caption_hook = None  # a per-caption draw the training set applies (masked words), or None

    # ------------------------------------------------------------------ construction
    @classmethod
    @abstractmethod
    def build(cls, cfg: Config, ctx: HeadContext) -> Head | None:
        """The head for ``cfg``, or ``None`` when the config switches it off."""

    @classmethod
    def needs(cls, cfg: Config) -> frozenset[str]:
        """What this head needs for ``cfg`` (the ``NEEDS_*`` names), decided without building it."""
        return frozenset()

    # ------------------------------------------------------------------ training
    @abstractmethod
    def forward(self, model: Any, enc: Encoded, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Its losses (names in ``losses``) and logged scalars for one batch."""

    def prepare(self, model: Any, data: Any) -> None:
        """Set up once per dataset before training (``data``: :class:`~tireid_lite.data.build.Data`)."""

    # ------------------------------------------------------------------ retrieval
    def image_embedding(self, model: Any, tokens: Tensor, attentions: list[Tensor] | None) -> Tensor:
        """This head's image embedding (B, D) from the image tower's tokens (B, 1+N, D) and attention maps."""
        raise TypeError(f"{type(self).__name__} sets embedding={self.embedding!r}; it must define image_embedding")

    def text_embedding(
        self, model: Any, tokens: Tensor, attentions: list[Tensor] | None, caption_ids: Tensor
    ) -> Tensor:
        """This head's caption embedding (B, D) from the text tower's tokens (B, L, D) and attention maps."""
        raise TypeError(f"{type(self).__name__} sets embedding={self.embedding!r}; it must define text_embedding")

    def offers_rerank(self) -> bool:
        """Whether this head offers a second retrieval stage (its class defines :meth:`rerank`)."""
        return type(self).rerank is not Head.rerank

    def rerank(self, model: Any, inputs: RerankInputs) -> Tensor:
        """New scores (Q, k) for each query's top-k candidates; higher ranks first. Only the top k
        is reordered (:func:`~tireid_lite.models.scorer.rerank_top_k`)."""
        raise ConfigError(f"the {self.name!r} head offers no second retrieval stage; evaluate with rerank_k=0")
