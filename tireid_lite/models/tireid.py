"""``TIReIDModel``: the two towers plus the heads a method switches on.

Every method of the course is this one model with different heads:

* ``baseline``: global matching (SDM) + identity classification (ID);
* ``irra``: baseline + implicit relation reasoning (masked language
  modelling through the cross-modal module, :class:`MaskedLanguageHead`);
* ``bilma``: irra + masked image modelling through the same module, the
  caption visible (:class:`~tireid_lite.models.bilma.MaskedImageHead`).

``kpdm`` (:mod:`tireid_lite.models.kpdm`) trains RDE's TAL on the global and
token-selection embeddings instead of SDM (its head sets ``replaces_sdm``),
keeps ID, and predicts masked words from the kept image patches only.

A head is a small module with ``forward(model, enc, batch) -> dict`` returning
its losses (names listed in ``head.losses``) and extra logged values; the model
sums the losses with the weights of the config (``model.<name>_loss_weight``).
New mechanisms add heads; the towers, the global features and the evaluation
path stay the same. Taught in ``02_baseline_irra``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tireid_lite.config import Config
from tireid_lite.losses.identity import id_loss
from tireid_lite.losses.matching import sdm_loss
from tireid_lite.losses.mlm import masked_accuracy, mlm_loss
from tireid_lite.models.cross_modal import CrossModalEncoder, TokenPredictionHead
from tireid_lite.models.towers import build_image_tower, build_text_tower, pool_at
from tireid_lite.text.masking import RandomTokenMasking
from tireid_lite.text.tokenizers import Tokenizer

# Which heads each method uses (mechanisms of later notebooks extend this table).
METHOD_HEADS: dict[str, tuple[str, ...]] = {
    "baseline": ("id",),
    "irra": ("id", "mlm"),
    "bilma": ("id", "mlm", "mim"),
    # KPDM (tireid_lite.models.kpdm): TAL on the global and token-selection embeddings instead of SDM,
    # masked words over the kept patches only
    "kpdm": ("id", "tal", "kpdm_mlm"),
}


@dataclass
class Encoded:
    """What the towers produced for one training batch."""

    image_tokens: Tensor  # (B, 1+N, D), class token first
    text_tokens: Tensor  # (B, L, D)
    image_feats: Tensor  # (B, D) global image feature (class token, or mean of patches)
    text_feats: Tensor  # (B, D) global text feature (end token, or mean of tokens)
    # each layer's attention map, when the model asks the towers for them (``return_attention``)
    image_attentions: list[Tensor] | None = None  # (B, heads, 1+N, 1+N) per layer
    text_attentions: list[Tensor] | None = None  # (B, heads, L, L) per layer
    extras: dict = field(default_factory=dict)  # values heads share within one batch (e.g. KPDM's selection)


class IdentityHead(nn.Module):
    """One linear classifier over training identities shared by both modalities (IRRA's ID loss)."""

    losses = ("id",)

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(dim, num_classes)
        nn.init.normal_(self.classifier.weight, std=0.001)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, model: "TIReIDModel", enc: Encoded, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        image_logits = self.classifier(enc.image_feats.float())  # (B, C)
        text_logits = self.classifier(enc.text_feats.float())  # (B, C)
        pids = batch["pids"]
        with torch.no_grad():
            acc = ((image_logits.argmax(1) == pids).float().mean() + (text_logits.argmax(1) == pids).float().mean()) / 2
        return {"id": id_loss(image_logits, text_logits, pids), "id_acc": acc}


class MaskedLanguageHead(nn.Module):
    """IRRA's implicit relation reasoning: predict masked words from the image.

    The masked caption (``batch["mlm_ids"]``, drawn by the dataset's caption
    hook) goes through the text tower; its tokens query the image tokens in
    the cross-modal module; a prediction head scores the vocabulary; the loss
    is the cross-entropy on the masked positions only.
    """

    losses = ("mlm",)

    def __init__(self, dim: int, heads: int, depth: int, vocab_size: int) -> None:
        super().__init__()
        self.cross = CrossModalEncoder(dim, heads, depth)
        self.predict = TokenPredictionHead(dim, vocab_size)

    def logits(self, model: "TIReIDModel", mlm_ids: Tensor, image_tokens: Tensor) -> Tensor:
        """Vocabulary scores (B, L, V) for every position of the masked captions."""
        text_tokens = model.text_tower(mlm_ids, model.tokenizer.attention_mask(mlm_ids))  # (B, L, D)
        fused = self.cross(text_tokens, image_tokens)  # (B, L, D)
        return self.predict(fused).float()  # (B, L, V)

    def forward(self, model: "TIReIDModel", enc: Encoded, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = self.logits(model, batch["mlm_ids"], enc.image_tokens)
        labels = batch["mlm_labels"]
        return {"mlm": mlm_loss(logits, labels), "mlm_acc": masked_accuracy(logits, labels)}


class TIReIDModel(nn.Module):
    """Image tower + text tower + the heads of ``cfg.model.method``.

    ``forward(batch)`` returns ``{"loss": weighted total, <each loss>, <logged values>}``;
    ``encode_images`` / ``encode_texts`` give the global features used for
    retrieval and ``similarity`` scores queries (texts) against the gallery (images).
    """

    def __init__(self, cfg: Config, tokenizer: Tokenizer, num_classes: int) -> None:
        super().__init__()
        m = cfg.model
        if m.method not in METHOD_HEADS:
            from tireid_lite.errors import ConfigError

            raise ConfigError(
                f"model.method {m.method!r} is not built into TIReIDModel yet; available: {', '.join(METHOD_HEADS)}"
            )
        self.method = m.method
        self.tokenizer = tokenizer
        self.image_pool, self.text_pool = m.image_pool, m.text_pool
        pretrained = m.pretrained_dir or None
        wanted = METHOD_HEADS[m.method]
        self.image_tower = build_image_tower(
            img_size=tuple(cfg.data.image_size),
            mask_token="mim" in wanted and m.mim_loss_weight > 0,
            **({} if pretrained else dict(patch_size=m.patch_size, width=m.image_width, depth=m.image_depth,
                                          heads=m.image_heads, out_dim=m.embed_dim)),
            pretrained_dir=pretrained,
        )
        self.text_tower = build_text_tower(
            kind=m.text_kind,
            vocab_size=tokenizer.vocab_size,
            max_length=cfg.data.max_length,
            **({} if pretrained else dict(width=m.text_width, depth=m.text_depth, heads=m.text_heads,
                                          out_dim=m.embed_dim)),
            pretrained_dir=pretrained,
        )
        dim = self.image_tower.out_dim
        self.register_buffer("logit_scale", torch.tensor(1.0 / m.temperature), persistent=False)
        self.loss_weights = {"sdm": m.sdm_loss_weight, "id": m.id_loss_weight, "mlm": m.mlm_loss_weight,
                             "mim": m.mim_loss_weight}
        self.heads = nn.ModuleDict()
        if "id" in wanted and m.id_loss_weight > 0:
            self.heads["id"] = IdentityHead(dim, num_classes)
        if "mlm" in wanted and m.mlm_loss_weight > 0:
            self.heads["mlm"] = MaskedLanguageHead(dim, m.cross_heads, m.cross_depth, tokenizer.vocab_size)
        if "mim" in wanted and m.mim_loss_weight > 0:
            from tireid_lite.models.bilma import MaskedImageHead

            shared = self.heads["mlm"].cross if "mlm" in self.heads else None
            self.heads["mim"] = MaskedImageHead(dim, m.cross_heads, m.cross_depth, target=m.mim_target,
                                                ratio=m.mim_ratio, patch_size=self.image_tower.patch_size,
                                                cross=shared)
        self.caption_hook = (
            RandomTokenMasking(tokenizer.mask_token_id, tokenizer.vocab_size, tokenizer.special_ids, m.mlm_prob)
            if "mlm" in self.heads else None
        )
        # Switches a mechanism may turn on (KPDM's, see tireid_lite.models.kpdm)
        self.return_attention = False  # encode_pair also keeps the towers' attention maps
        self.retrieval_head: str | None = None  # a head that encodes and scores for retrieval instead
        self.pair_weights: Tensor | None = None  # (num training pairs,) from a noise partitioner; None = all 1
        self.epoch_stats: dict = {}  # the heads' figures for the current epoch (the Trainer records them)
        if m.method == "kpdm":
            from tireid_lite.models.kpdm import add_kpdm_heads

            add_kpdm_heads(self, cfg)
        elif cfg.train.partitioner != "none":
            from tireid_lite.errors import ConfigError

            raise ConfigError(
                f"config key 'train.partitioner' is {cfg.train.partitioner!r} but model.method {m.method!r} has no "
                "loss it can weight; use model.method=kpdm or train.partitioner=none"
            )
        self.pretrained = pretrained is not None

    # ----------------------------------------------------------------- encoding
    def encode_image_tokens(self, images: Tensor) -> Tensor:
        return self.image_tower(images).tokens  # (B, 1+N, D)

    def encode_text_tokens(self, caption_ids: Tensor) -> Tensor:
        return self.text_tower(caption_ids, self.tokenizer.attention_mask(caption_ids))  # (B, L, D)

    def image_global(self, image_tokens: Tensor) -> Tensor:
        """The global image feature (B, D) from the tokens (B, 1+N, D): the class token (IRRA)
        or, with ``model.image_pool=mean``, the mean of the patch tokens."""
        if self.image_pool == "mean":
            return image_tokens[:, 1:].mean(dim=1)
        return image_tokens[:, 0]

    def text_global(self, text_tokens: Tensor, caption_ids: Tensor) -> Tensor:
        """The global text feature (B, D) from the tokens (B, L, D): the end token (IRRA) or,
        with ``model.text_pool=mean``, the mean over the caption's tokens (start and end included)."""
        if self.text_pool == "mean":
            keep = self.tokenizer.attention_mask(caption_ids).unsqueeze(-1).to(text_tokens.dtype)  # (B, L, 1)
            return (text_tokens * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)
        return pool_at(text_tokens, caption_ids, self.tokenizer.eot_id)

    def encode_images(self, images: Tensor) -> Tensor:
        """Global image features (B, D), see :meth:`image_global`; or the retrieval head's
        features (KPDM with TSE: global and token-selection embeddings side by side, (B, 2D))."""
        if self.retrieval_head is not None:
            return self.heads[self.retrieval_head].encode_images(self, images)
        return self.image_global(self.encode_image_tokens(images))

    def encode_texts(self, caption_ids: Tensor) -> Tensor:
        """Global text features (B, D), see :meth:`text_global`; or the retrieval head's features."""
        if self.retrieval_head is not None:
            return self.heads[self.retrieval_head].encode_texts(self, caption_ids)
        return self.text_global(self.encode_text_tokens(caption_ids), caption_ids)

    def similarity(self, text_feats: Tensor, image_feats: Tensor) -> Tensor:
        """Cosine similarity (Q, G) between text queries and gallery images; or the retrieval
        head's score (KPDM with TSE: the mean of the global and token-selection cosines)."""
        if self.retrieval_head is not None:
            return self.heads[self.retrieval_head].similarity(text_feats, image_feats)
        return F.normalize(text_feats.float(), dim=-1) @ F.normalize(image_feats.float(), dim=-1).t()

    def encode_pair(self, batch: dict[str, Tensor]) -> Encoded:
        if self.return_attention:
            return self._encode_pair_with_attention(batch)
        image_tokens = self.encode_image_tokens(batch["images"])
        text_tokens = self.encode_text_tokens(batch["caption_ids"])
        return Encoded(
            image_tokens=image_tokens,
            text_tokens=text_tokens,
            image_feats=self.image_global(image_tokens),
            text_feats=self.text_global(text_tokens, batch["caption_ids"]),
        )

    def _encode_pair_with_attention(self, batch: dict[str, Tensor]) -> Encoded:
        """:meth:`encode_pair` keeping each layer's attention map of both towers (same tokens)."""
        ids = batch["caption_ids"]
        image_out = self.image_tower(batch["images"], return_attention=True)
        text_out = self.text_tower.encode(ids, self.tokenizer.attention_mask(ids), return_attention=True)
        return Encoded(
            image_tokens=image_out.tokens,
            text_tokens=text_out.tokens,
            image_feats=self.image_global(image_out.tokens),
            text_feats=self.text_global(text_out.tokens, ids),
            image_attentions=image_out.attentions,
            text_attentions=text_out.attentions,
        )

    # ----------------------------------------------------------------- training
    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        enc = self.encode_pair(batch)
        out: dict[str, Tensor] = {}
        if self.uses_sdm:
            out["sdm"] = sdm_loss(enc.image_feats, enc.text_feats, batch["pids"], self.logit_scale)
        for head in self.heads.values():
            out.update(head(self, enc, batch))
        out["loss"] = sum(self.loss_weights[name] * out[name] for name in self.loss_names())
        return out

    @property
    def uses_sdm(self) -> bool:
        """SDM is the global matching loss unless a head replaces it (KPDM's TAL)."""
        return not any(getattr(head, "replaces_sdm", False) for head in self.heads.values())

    def loss_names(self) -> list[str]:
        """The losses that make up ``loss``, in order."""
        heads = [name for head in self.heads.values() for name in head.losses]
        return ["sdm", *heads] if self.uses_sdm else heads

    def prepare(self, data) -> None:
        """Per-dataset set-up of the heads that need the training data (KPDM: key phrases, token
        counts); the Trainer calls it before it hands ``caption_hook`` to the training set."""
        for head in self.heads.values():
            if hasattr(head, "prepare"):
                head.prepare(self, data)

    def on_epoch_start(self, epoch: int, trainer=None) -> None:
        """Hook for mechanisms that act between epochs (noise partitioners): runs each head's
        ``on_epoch_start(model, epoch, trainer)``. What they report for the epoch lands in
        ``epoch_stats``, which the Trainer adds to the epoch's history record."""
        self.epoch_stats = {}
        for head in self.heads.values():
            if hasattr(head, "on_epoch_start"):
                head.on_epoch_start(self, epoch, trainer)

    def parameter_groups(
        self, lr: float, weight_decay: float, new_module_lr_factor: float = 5.0, pretrained_lr_factor: float = 1.0
    ) -> list[dict]:
        """IRRA's optimiser groups: new modules (heads) learn ``new_module_lr_factor`` times
        faster than the towers; pretrained towers use ``lr * pretrained_lr_factor``.
        Biases, norms, embeddings and tokens get no weight decay."""
        tower_lr = lr * (pretrained_lr_factor if self.pretrained else 1.0)
        groups: dict[tuple[float, float], list[nn.Parameter]] = {}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            in_tower = name.startswith(("image_tower.", "text_tower."))
            group_lr = tower_lr if in_tower else lr * new_module_lr_factor
            no_decay = param.ndim < 2 or "embed" in name or "token" in name
            groups.setdefault((group_lr, 0.0 if no_decay else weight_decay), []).append(param)
        return [{"params": params, "lr": glr, "weight_decay": wd} for (glr, wd), params in groups.items()]


def build_model(cfg: Config, tokenizer: Tokenizer, num_classes: int) -> TIReIDModel:
    """The model for ``cfg.model.method``."""
    return TIReIDModel(cfg, tokenizer, num_classes)
