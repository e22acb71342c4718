"""KPDM (Key Phrase Dynamic Masking, AAAI 2026) as heads of ``TIReIDModel``: ``model.method=kpdm``.

KPDM builds on RDE (CVPR 2024), which learns two embeddings per modality,
the global one (BGE: the image's global feature and the caption's) and a
token-selection one (TSE: the most-attended tokens, embedded and max-pooled),
trains both with the triplet alignment loss (TAL) and scores retrieval with
their mean, (S_bge + S_tse) / 2. KPDM adds four parts (PAPERS.md):

1. key-phrase masking: whole "adjective + noun" phrases are masked, re-drawn
   every time a caption is drawn (:class:`~tireid_lite.text.masking.KeyPhraseMasking`);
2. cross-layer importance estimation: image patches scored by the class
   token's attention over the last layers, the top ``select_ratio`` kept for
   the cross-modal module and for the TSE
   (:mod:`tireid_lite.models.patch_importance`);
3. FMLM, a masked-language loss weighted by inverse word frequency
   (:func:`~tireid_lite.losses.mlm.frequency_weights`);
4. trusted consensus partitioning (TCP): noisy pairs found from each
   identity's image-text similarities (:func:`~tireid_lite.train.tcp.tcp_partition`), run by the Trainer between epochs.

What is known and what is the kit's reading. Known (K): RDE's BGE + TSE, TAL
(m = 0.1, tau = 0.015), its inference score and its CCD partitioner; KPDM's
four parts by name, its released select ratio 0.5 and its results. Only
KPDM's abstract and inference code are public, so how each part is trained
here is **our reading**, not the paper's exact method:

* SDM or TAL: RDE replaces IRRA's SDM by TAL, and KPDM's release is RDE's
  model, so ``kpdm`` trains TAL on the global embeddings (``tal_bge``) and on
  the TSE (``tal_tse``), each with weight 1, and drops SDM
  (the method has no SDM head; the logs show ``tal_bge`` and ``tal_tse``
  and no ``sdm``). The baseline's ID loss stays (``id``), as does
  the masked-language loss (``mlm``).
* Token selection: image patches by ``patch_importance(attentions,
  model.kpdm.importance_layers, model.kpdm.importance_method)``, the top
  ``model.kpdm.select_ratio`` kept; caption tokens by the end token's row of the
  text tower's last attention map (heads averaged), the same ratio,
  never padding, start or end tokens
  (:class:`~tireid_lite.models.token_selection.TokenSelector`).
* What the masked-language module sees: the masked caption's tokens query the
  class token and the *kept* patch tokens only (1 + K tokens); the dropped
  patches never reach the cross-modal module. Its loss is FMLM with
  ``model.kpdm.fmlm_alpha`` and the corpus counts of the training captions (alpha 0 is plain MLM).
* Key phrases are parsed once per dataset, for the training captions and
  their mirrored versions (the dataset mirrors left/right when it flips an
  image), by :meth:`KPDMLanguageHead.prepare`, which the Trainer calls
  through ``model.prepare(data)`` before it hands ``model.caption_hook`` to
  the dataset; they are cached under ``$TIREID_CACHE/key_phrases/``
  (:func:`~tireid_lite.text.phrase_table.phrase_cache_path`). Without
  ``prepare`` a caption is parsed the first time it is drawn (slow, correct).
* Noise partitioning (``train.partitioner`` ccd or tcp) is a procedure of
  the Trainer between epochs (:mod:`tireid_lite.train.noise`); both heads
  declare that they read per-pair weights, and scale their losses by
  ``batch["pair_weights"]`` (1 clean, 0 noisy, 1/2 uncertain): TAL on both
  views and the masked-language loss of the pair, since a noisy caption
  describes another person, so predicting its masked words from this image
  would teach wrong relations. The ID loss is the baseline's and stays
  unweighted.

Every part is a switch of ``method=kpdm`` (ablations are config overrides):
``model.kpdm.mask_strategy`` random | phrase, ``model.kpdm.fmlm_alpha`` (0 =
plain MLM), ``model.kpdm.select_ratio`` (1.0 = no selection),
``model.kpdm.tse`` (false = global embedding only), ``train.partitioner``
none | ccd | tcp.

Taught in 03-05: ``03_kpdm_key_phrase_masking``,
``04_kpdm_patch_importance_fmlm`` and ``05_kpdm_trusted_consensus``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from tireid_lite.config import Config
from tireid_lite.data.torch_data import training_captions
from tireid_lite.errors import ConfigError
from tireid_lite.losses.mlm import frequency_weights
from tireid_lite.losses.tal import tal_loss
from tireid_lite.models.head import NEEDS_KEY_PHRASES, NEEDS_PAIR_WEIGHTS, Encoded, Head, HeadContext
from tireid_lite.models.irra import MaskedLanguageHead
from tireid_lite.models.patch_importance import gather_tokens
from tireid_lite.models.token_selection import TokenSelectionEmbedding, TokenSelector
from tireid_lite.text.corpus import corpus_token_counts
from tireid_lite.text.masking import KeyPhraseMasking, RandomTokenMasking
from tireid_lite.text.phrase_table import PhraseTable, phrase_cache_path

SHARED_SELECTOR = "kpdm_selector"  # HeadContext.shared key of the token selector both heads use


def kpdm_selector(cfg: Config, ctx: HeadContext) -> TokenSelector:
    """The batch's token selector, made by whichever KPDM head is built first and shared."""
    selector = ctx.shared.get(SHARED_SELECTOR)
    if selector is None:
        k = cfg.model.kpdm
        if k.select_ratio < 1.0 and k.importance_layers > ctx.image_depth:
            raise ConfigError(
                f"config key 'model.kpdm.importance_layers' is {k.importance_layers}; it must be between 1 and "
                f"the image tower's depth ({ctx.image_depth})"
            )
        selector = ctx.shared[SHARED_SELECTOR] = TokenSelector(
            ctx.tokenizer, k.select_ratio, k.importance_layers, k.importance_method, text=k.tse)
    return selector


# --------------------------------------------------------------------------- matching: TAL on BGE and TSE


class AlignmentHead(Head):
    """RDE's matching: TAL on the global embeddings (``tal_bge``) and on the TSE (``tal_tse``).

    With ``tse`` it adds the token-selection embedding to retrieval (the
    scorer's ``tse`` view, weight 1 beside the global one: RDE's
    (S_bge + S_tse) / 2). Its losses read ``batch["pair_weights"]``.
    """

    name = "tal"

    def __init__(self, dim: int, selector: TokenSelector, *, tse: bool = True, margin: float = 0.1,
                 tau: float = 0.015, tse_width: int = 0, tse_batchnorm: bool = False) -> None:
        super().__init__()
        self.losses = ("tal_bge", "tal_tse") if tse else ("tal_bge",)
        self.loss_weights = {name: 1.0 for name in self.losses}
        self.selector = selector
        self.dim = int(dim)
        self.tse = bool(tse)
        width = int(tse_width) or self.dim  # RDE: 1024 beside the 512-wide global embedding
        self.image_tse = TokenSelectionEmbedding(dim, width, batchnorm=tse_batchnorm) if tse else None
        self.text_tse = TokenSelectionEmbedding(dim, width, batchnorm=tse_batchnorm) if tse else None
        self.embedding_dim = width if tse and width != self.dim else None
        self.margin, self.tau = float(margin), float(tau)
        self.wants_attention = self.tse or selector.ratio < 1.0
        self.embedding = "tse" if tse else None

    @classmethod
    def build(cls, cfg: Config, ctx: HeadContext) -> AlignmentHead:
        k = cfg.model.kpdm
        return cls(ctx.dim, kpdm_selector(cfg, ctx), tse=k.tse, margin=k.tal_margin, tau=k.tal_tau,
                   tse_width=k.tse_width, tse_batchnorm=k.tse_batchnorm)

    @classmethod
    def needs(cls, cfg: Config) -> frozenset[str]:
        return frozenset({NEEDS_PAIR_WEIGHTS})

    # ------------------------------------------------------------- embeddings
    def image_local(self, tokens: Tensor, keep_idx: Tensor) -> Tensor:
        """The image TSE (B, E) of the kept patches of ``tokens`` (B, 1+N, D)."""
        return self.image_tse(gather_tokens(tokens, keep_idx, with_cls=False))  # (B, K, D) -> (B, D)

    def text_local(self, tokens: Tensor, keep_idx: Tensor, keep_valid: Tensor) -> Tensor:
        """The caption TSE (B, D) of the kept positions of ``tokens`` (B, L, D); filler entries are skipped."""
        index = keep_idx.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])  # (B, Kt, D)
        return self.text_tse(tokens.gather(1, index), padding_mask=~keep_valid)  # (B, D)

    def image_embedding(self, model: Any, tokens: Tensor, attentions: list[Tensor] | None) -> Tensor:
        """The image TSE (B, D) of the patches the selector keeps."""
        return self.image_local(tokens, self.selector.image(tokens, attentions))

    def text_embedding(
        self, model: Any, tokens: Tensor, attentions: list[Tensor] | None, caption_ids: Tensor
    ) -> Tensor:
        """The caption TSE (B, D) of the tokens the selector keeps."""
        keep_idx, keep_valid = self.selector.caption(caption_ids, attentions)
        return self.text_local(tokens, keep_idx, keep_valid)

    # ------------------------------------------------------------- training
    def forward(self, model: Any, enc: Encoded, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        pids = batch["pids"]
        tal = dict(margin=self.margin, tau=self.tau, weights=batch.get("pair_weights"))
        out = {"tal_bge": tal_loss(enc.image_feats, enc.text_feats, pids, **tal)}
        if self.tse:
            selection = self.selector.for_batch(enc, batch["caption_ids"])
            image_local = self.image_local(enc.image_tokens, selection.image_idx)  # (B, D)
            text_local = self.text_local(enc.text_tokens, selection.text_idx, selection.text_valid)  # (B, D)
            out["tal_tse"] = tal_loss(image_local, text_local, pids, **tal)
        return out


# --------------------------------------------------------------------------- masked words over the kept patches


class KPDMLanguageHead(MaskedLanguageHead):
    """Masked words predicted from the class token and the kept patches only, with FMLM's weights.

    The masked caption (drawn by its ``caption_hook``: random or key-phrase
    masking) goes through the text tower and queries 1 + K image tokens in
    the cross-modal module. Loss: :func:`~tireid_lite.losses.mlm.mlm_loss`
    with each masked token weighted by FMLM's
    :func:`~tireid_lite.losses.mlm.frequency_weights` (``alpha`` 0: all ones)
    times its pair's weight (``batch["pair_weights"]``).
    """

    name = "kpdm_mlm"

    def __init__(
        self,
        dim: int,
        heads: int,
        depth: int,
        vocab_size: int,
        selector: TokenSelector,
        *,
        alpha: float = 0.0,
        token_counts: np.ndarray | None = None,
        phrase_table: PhraseTable | None = None,
        weight: float = 1.0,
    ) -> None:
        super().__init__(dim, heads, depth, vocab_size, weight)
        self.selector = selector
        self.alpha = float(alpha)
        self.token_counts = token_counts  # (V,) corpus counts, needed when alpha > 0
        self.phrase_table = phrase_table  # filled by prepare() under key-phrase masking

    @classmethod
    def build(cls, cfg: Config, ctx: HeadContext) -> KPDMLanguageHead | None:
        m, k, tok = cfg.model, cfg.model.kpdm, ctx.tokenizer
        if m.mlm_loss_weight <= 0:
            return None
        phrase_table = PhraseTable() if k.mask_strategy == "phrase" else None
        counts = getattr(tok, "word_counts", None)
        head = cls(ctx.dim, m.cross_heads, m.cross_depth, tok.vocab_size, kpdm_selector(cfg, ctx), alpha=k.fmlm_alpha,
                   token_counts=None if counts is None else np.asarray(counts, dtype=np.int64),
                   phrase_table=phrase_table, weight=m.mlm_loss_weight)
        if phrase_table is not None:
            head.caption_hook = KeyPhraseMasking(tok, phrase_table, m.mlm_prob)
        else:
            head.caption_hook = RandomTokenMasking(tok.mask_token_id, tok.vocab_size, tok.special_ids, m.mlm_prob)
        return head

    @classmethod
    def needs(cls, cfg: Config) -> frozenset[str]:
        if cfg.model.mlm_loss_weight <= 0:
            return frozenset()
        phrases = {NEEDS_KEY_PHRASES} if cfg.model.kpdm.mask_strategy == "phrase" else set()
        return frozenset({NEEDS_PAIR_WEIGHTS, *phrases})

    def token_weights(self, labels: Tensor, pair_weights: Tensor | None) -> Tensor | None:
        """Per-position weights (B, L) for ``mlm_loss``; None when every masked token weighs 1."""
        weights = None
        if self.alpha > 0:
            if self.token_counts is None:
                raise ConfigError(
                    "model.kpdm.fmlm_alpha > 0 needs the corpus counts of the tokenizer's tokens; this tokenizer keeps "
                    "none, so call model.prepare(data) with the training data first (the Trainer does)"
                )
            weights = frequency_weights(labels, self.token_counts, self.alpha)  # (B, L)
        if pair_weights is not None:
            scale = pair_weights.to(torch.float32).unsqueeze(1)  # (B, 1)
            weights = scale.expand(labels.shape) if weights is None else weights * scale
        return weights

    def forward(self, model: Any, enc: Encoded, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        selection = self.selector.for_batch(enc, batch["caption_ids"])
        context = gather_tokens(enc.image_tokens, selection.image_idx, with_cls=True)  # (B, 1+K, D)
        fused = self.fused(model, batch["mlm_ids"], context)  # (B, L, D)
        labels = batch["mlm_labels"]
        loss, accuracy = self.masked_losses(fused, labels, self.token_weights(labels, batch.get("pair_weights")))
        return {"mlm": loss, "mlm_acc": accuracy}

    def image_context(self, model: Any, images: Tensor) -> Tensor:
        """The class token and the kept patches (B, 1+K, D) of ``images``, selected as in training."""
        out = model.image_tower(images, return_attention=self.selector.ratio < 1.0)
        keep = self.selector.image(out.tokens, out.attentions)  # (B, K)
        return gather_tokens(out.tokens, keep, with_cls=True)  # (B, 1+K, D)

    def prepare(self, model: Any, data: Any) -> None:
        """Parse the training captions' key phrases (cached) and count tokens for FMLM, once per run."""
        train_set = getattr(data, "train_set", None)
        if train_set is None:
            return
        if self.phrase_table is not None:
            captions = training_captions(train_set)
            self.phrase_table.add(captions, phrase_cache_path(data.dataset.name, captions))
        if self.alpha > 0 and self.token_counts is None:
            self.token_counts = corpus_token_counts(model.tokenizer, [pair.caption for pair in train_set.pairs])
