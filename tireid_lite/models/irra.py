"""IRRA's heads (CVPR 2023): global matching (SDM), identity classification (ID) and implicit
relation reasoning (masked language modelling through the cross-modal module).

``baseline`` is SDM + ID; ``irra`` adds :class:`MaskedLanguageHead`; the
later methods start from these. Taught in ``02_baseline_irra``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from tireid_lite.config import Config
from tireid_lite.losses.identity import id_loss
from tireid_lite.losses.matching import sdm_loss
from tireid_lite.losses.mlm import (
    masked_accuracy,
    masked_token_accuracy,
    masked_token_loss,
    mlm_loss,
)
from tireid_lite.models.cross_modal import CrossModalEncoder, TokenPredictionHead
from tireid_lite.models.head import Encoded, Head, HeadContext
from tireid_lite.models.text_tower import TextTower, used_length
from tireid_lite.text.masking import IGNORE_INDEX, RandomTokenMasking

SHARED_CROSS = "cross"  # HeadContext.shared key of IRRA's cross-modal module


class SDMHead(Head):
    """IRRA's similarity distribution matching between the global image and text features."""

    name = "sdm"
    losses = ("sdm",)

    def __init__(self, temperature: float, weight: float) -> None:
        super().__init__()
        self.register_buffer("logit_scale", torch.tensor(1.0 / temperature), persistent=False)
        self.loss_weights = {"sdm": float(weight)}

    @classmethod
    def build(cls, cfg: Config, ctx: HeadContext) -> SDMHead:
        return cls(cfg.model.temperature, cfg.model.sdm_loss_weight)

    def forward(self, model: Any, enc: Encoded, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"sdm": sdm_loss(enc.image_feats, enc.text_feats, batch["pids"], self.logit_scale)}


class IdentityHead(Head):
    """One linear classifier over training identities shared by both modalities (IRRA's ID loss)."""

    name = "id"
    losses = ("id",)

    def __init__(self, dim: int, num_classes: int, weight: float = 1.0) -> None:
        super().__init__()
        self.classifier = nn.Linear(dim, num_classes)
        nn.init.normal_(self.classifier.weight, std=0.001)
        nn.init.zeros_(self.classifier.bias)
        self.loss_weights = {"id": float(weight)}

    @classmethod
    def build(cls, cfg: Config, ctx: HeadContext) -> IdentityHead | None:
        if cfg.model.id_loss_weight <= 0:
            return None
        return cls(ctx.dim, ctx.num_classes, cfg.model.id_loss_weight)

    def forward(self, model: Any, enc: Encoded, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        image_logits = self.classifier(enc.image_feats.float())  # (B, C)
        text_logits = self.classifier(enc.text_feats.float())  # (B, C)
        pids = batch["pids"]
        with torch.no_grad():
            acc = ((image_logits.argmax(1) == pids).float().mean() + (text_logits.argmax(1) == pids).float().mean()) / 2
        return {"id": id_loss(image_logits, text_logits, pids), "id_acc": acc}


class MaskedLanguageHead(Head):
    """IRRA's implicit relation reasoning: predict masked words from the image.

    The masked caption (``batch["mlm_ids"]``, drawn by the head's
    ``caption_hook`` in the training set) goes through the text tower; its
    tokens query the image tokens in the cross-modal module; a prediction head
    scores the vocabulary; the loss is the cross-entropy on the masked
    positions only. The cross-modal module is shared with later heads
    (BiLMa's masked patches) through ``HeadContext.shared``.
    """

    name = "mlm"
    losses = ("mlm",)

    def __init__(self, dim: int, heads: int, depth: int, vocab_size: int, weight: float = 1.0) -> None:
        super().__init__()
        self.cross = CrossModalEncoder(dim, heads, depth)
        self.predict = TokenPredictionHead(dim, vocab_size)
        self.loss_weights = {"mlm": float(weight)}

    @classmethod
    def build(cls, cfg: Config, ctx: HeadContext) -> MaskedLanguageHead | None:
        m = cfg.model
        if m.mlm_loss_weight <= 0:
            return None
        head = cls(ctx.dim, m.cross_heads, m.cross_depth, ctx.tokenizer.vocab_size, m.mlm_loss_weight)
        tok = ctx.tokenizer
        head.caption_hook = RandomTokenMasking(tok.mask_token_id, tok.vocab_size, tok.special_ids, m.mlm_prob)
        ctx.shared[SHARED_CROSS] = head.cross
        return head

    def fused(self, model: Any, mlm_ids: Tensor, image_tokens: Tensor) -> Tensor:
        """The masked captions' tokens (B, L, D) after querying ``image_tokens`` in the cross-modal module.

        The text tower returns zeros past the batch's longest caption (:func:`used_length`); the
        cross-modal module computes those columns once (``zero_from``), the same result for less work."""
        mask = model.tokenizer.attention_mask(mlm_ids)  # (B, L)
        text_tokens = model.text_tower(mlm_ids, mask)  # (B, L, D)
        zero_from = used_length(mask) if isinstance(model.text_tower, TextTower) else None
        return self.cross(text_tokens, image_tokens, zero_from=zero_from)  # (B, L, D)

    def image_context(self, model: Any, images: Tensor) -> Tensor:
        """The image tokens (B, T, D) this head's masked captions query for ``images``, as in training:
        all of them (1 + N). What a probe passes to :meth:`logits`."""
        return model.encode_image_tokens(images)  # (B, 1+N, D)

    def logits(self, model: Any, mlm_ids: Tensor, image_tokens: Tensor) -> Tensor:
        """Vocabulary scores (B, L, V) for every position of the masked captions."""
        return self.predict(self.fused(model, mlm_ids, image_tokens)).float()  # (B, L, V)

    def masked_losses(self, fused: Tensor, labels: Tensor, weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``mlm_loss`` and ``masked_accuracy`` of ``self.predict(fused)`` against ``labels`` (B, L), with
        the prediction head run at the masked positions only: the loss reads no other, so the values
        are those of every position's scores up to float rounding. ``weights`` (B, L) as for ``mlm_loss``.
        Inside ``torch.compile`` every position is scored (no data-dependent shape)."""
        if labels.shape != fused.shape[:2]:
            raise ValueError(f"labels {tuple(labels.shape)} must be (B, L) of the fused tokens {tuple(fused.shape)}")
        if torch.compiler.is_compiling():
            logits = self.predict(fused).float()  # (B, L, V)
            return mlm_loss(logits, labels, weights=weights), masked_accuracy(logits, labels)
        if weights is not None and weights.shape != labels.shape:
            raise ValueError(f"weights must have the shape of labels {tuple(labels.shape)}, got {tuple(weights.shape)}")
        masked = labels != IGNORE_INDEX  # (B, L)
        logits = self.predict(fused[masked]).float()  # (M, V)
        targets = labels[masked]  # (M,)
        loss = masked_token_loss(logits, targets, None if weights is None else weights[masked])
        return loss, masked_token_accuracy(logits, targets)

    def forward(self, model: Any, enc: Encoded, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        fused = self.fused(model, batch["mlm_ids"], enc.image_tokens)  # (B, L, D)
        loss, accuracy = self.masked_losses(fused, batch["mlm_labels"])
        return {"mlm": loss, "mlm_acc": accuracy}
