"""``TIReIDModel``: the two towers plus the heads of a method, and the scorer of its embeddings.

Every method of the course is this one model with different heads (the rows
of :mod:`tireid_lite.models.methods`): :func:`build_model` builds the towers,
then each head of the method's row (:class:`~tireid_lite.models.head.Head`),
and hands them to the model. The model

* encodes a training batch once (:meth:`TIReIDModel.encode_pair`) and lets
  every head compute its losses from it; the total is the weighted sum of the
  heads' losses, in row order;
* encodes images and captions for retrieval as the global feature followed by
  the embedding of every head that adds one, and scores queries against the
  gallery with its :class:`~tireid_lite.models.scorer.Scorer`;
* offers at most one head's second retrieval stage (``reranker``).

Taught in ``02_baseline_irra``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tireid_lite.config import Config
from tireid_lite.errors import ConfigError
from tireid_lite.models.head import NEEDS_MASK_TOKEN, NEEDS_PAIR_WEIGHTS, Encoded, Head, HeadContext
from tireid_lite.models.methods import method_heads, method_needs
from tireid_lite.models.scorer import Scorer, View
from tireid_lite.models.towers import build_image_tower, build_text_tower, pool_at
from tireid_lite.text.tokenizers import Tokenizer


class TIReIDModel(nn.Module):
    """Image tower + text tower + ``heads`` (see the module docstring).

    ``forward(batch)`` returns ``{"loss": weighted total, <each loss>, <logged values>}``;
    ``encode_images`` / ``encode_texts`` give the retrieval features and
    ``similarity`` scores queries (texts) against the gallery (images).
    """

    def __init__(
        self,
        image_tower: nn.Module,
        text_tower: nn.Module,
        heads: list[Head],
        tokenizer: Tokenizer,
        *,
        method: str = "",
        image_pool: str = "cls",
        text_pool: str = "eot",
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        self.method = method
        self.tokenizer = tokenizer
        self.image_pool, self.text_pool = image_pool, text_pool
        self.image_tower = image_tower
        self.text_tower = text_tower
        self.heads = nn.ModuleDict()
        for head in heads:
            if head.name in self.heads:
                raise ConfigError(f"two heads named {head.name!r} in method {method!r}; give each head its own name")
            self.heads[head.name] = head
        hooks = [head.caption_hook for head in heads if head.caption_hook is not None]
        if len(hooks) > 1:
            raise ConfigError(f"method {method!r} has {len(hooks)} heads that mask captions; at most one may")
        self.caption_hook = hooks[0] if hooks else None  # the training set applies it to every caption drawn
        self.wants_attention = any(head.wants_attention for head in heads)  # towers return attention maps
        self.embedding_heads = [head for head in heads if head.embedding]
        dim = self.image_tower.out_dim
        self.scorer = Scorer([View("global", dim), *(View(h.embedding, h.embedding_dim or dim, h.embedding_weight)
                                                     for h in self.embedding_heads)])
        rerankers = [head for head in heads if head.offers_rerank()]
        if len(rerankers) > 1:
            raise ConfigError(f"method {method!r} has {len(rerankers)} heads that re-rank; at most one may")
        self.reranker: Head | None = rerankers[0] if rerankers else None
        self.pretrained = pretrained

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
        """Retrieval features of images: the global feature (see :meth:`image_global`), then each
        embedding head's (KPDM with TSE: (B, 2D)); the scorer's views in order."""
        if not self.embedding_heads:
            return self.image_global(self.encode_image_tokens(images))
        out = self.image_tower(images, return_attention=self.wants_attention)
        feats = [self.image_global(out.tokens)]
        feats += [head.image_embedding(self, out.tokens, out.attentions) for head in self.embedding_heads]
        return torch.cat(feats, dim=-1)

    def encode_texts(self, caption_ids: Tensor) -> Tensor:
        """Retrieval features of captions: the global feature (see :meth:`text_global`), then each
        embedding head's; the scorer's views in order."""
        if not self.embedding_heads:
            return self.text_global(self.encode_text_tokens(caption_ids), caption_ids)
        mask = self.tokenizer.attention_mask(caption_ids)
        out = self.text_tower.encode(caption_ids, mask, return_attention=self.wants_attention)
        feats = [self.text_global(out.tokens, caption_ids)]
        feats += [head.text_embedding(self, out.tokens, out.attentions, caption_ids) for head in self.embedding_heads]
        return torch.cat(feats, dim=-1)

    def similarity(self, text_feats: Tensor, image_feats: Tensor) -> Tensor:
        """The scorer's similarity (Q, G) between text queries and gallery images: the cosine of
        the global features, or the weighted mean over the views (RDE: (S_bge + S_tse) / 2)."""
        return self.scorer.similarity(text_feats, image_feats)

    def encode_pair(self, batch: dict[str, Tensor]) -> Encoded:
        """The towers' output for a training batch, with their attention maps when a head wants them."""
        if not self.wants_attention:
            image_tokens = self.encode_image_tokens(batch["images"])
            text_tokens = self.encode_text_tokens(batch["caption_ids"])
            return Encoded(
                image_tokens=image_tokens,
                text_tokens=text_tokens,
                image_feats=self.image_global(image_tokens),
                text_feats=self.text_global(text_tokens, batch["caption_ids"]),
            )
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
        for head in self.heads.values():
            out.update(head(self, enc, batch))
        out["loss"] = sum(head.loss_weights[name] * out[name] for head in self.heads.values() for name in head.losses)
        return out

    def loss_names(self) -> list[str]:
        """The losses that make up ``loss``, in order."""
        return [name for head in self.heads.values() for name in head.losses]

    def prepare(self, data) -> None:
        """Per-dataset set-up of the heads that need the training data (KPDM: key phrases, token
        counts); the Trainer calls it before it hands ``caption_hook`` to the training set."""
        for head in self.heads.values():
            head.prepare(self, data)

    def parameter_groups(
        self,
        lr: float,
        weight_decay: float,
        new_module_lr_factor: float = 5.0,
        pretrained_lr_factor: float = 1.0,
        *,
        bias_lr_factor: float = 0.0,
        no_decay: tuple[str, ...] = ("1d", "embed", "token"),
        module_lr: tuple[tuple[str, float], ...] = (),
    ) -> list[dict]:
        """The optimiser's groups, one per (lr, weight decay), built by rules applied in this order:

        1. towers learn at ``lr * pretrained_lr_factor`` (pretrained) or ``lr``; everything else (the
           heads: new modules) at ``lr * new_module_lr_factor`` (IRRA's ``lr_factor``);
        2. with ``bias_lr_factor > 0``, biases of the towers and of cross-modal modules (names holding
           ``.cross.``) learn at ``lr * bias_lr_factor`` (IRRA's ``bias_lr_factor``; IRRA's classifier
           and MLM predictor keep the new-module lr, as here);
        3. a parameter matched by a ``no_decay`` rule gets no weight decay: ``"1d"`` matches every
           parameter of fewer than 2 dims (biases, norms), any other rule a part of the name (IRRA: only
           ``"bias"``; the kit's default ``1d, embed, token``);
        4. ``module_lr`` pairs ``(name_part, lr)`` set an absolute lr for the parameters whose name
           holds ``name_part`` (RDE's token-selection layers at 1e-3), the last match winning.

        Groups keep the order in which their first parameter appears."""
        tower_lr = lr * (pretrained_lr_factor if self.pretrained else 1.0)
        groups: dict[tuple[float, float], list[nn.Parameter]] = {}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            in_tower = name.startswith(("image_tower.", "text_tower."))
            group_lr = tower_lr if in_tower else lr * new_module_lr_factor
            is_bias = name.endswith("bias")
            if bias_lr_factor > 0 and is_bias and (in_tower or ".cross." in name):
                group_lr = lr * bias_lr_factor
            exempt = any(param.ndim < 2 if rule == "1d" else rule in name for rule in no_decay)
            for part, part_lr in module_lr:
                if part in name:
                    group_lr = part_lr
            groups.setdefault((group_lr, 0.0 if exempt else weight_decay), []).append(param)
        return [{"params": params, "lr": glr, "weight_decay": wd} for (glr, wd), params in groups.items()]


def build_model(cfg: Config, tokenizer: Tokenizer, num_classes: int) -> TIReIDModel:
    """The model for ``cfg.model.method``: its towers, then the heads of its row, in row order."""
    m = cfg.model
    row = method_heads(m.method)
    needs = method_needs(cfg)
    if cfg.train.partitioner != "none" and NEEDS_PAIR_WEIGHTS not in needs:
        raise ConfigError(
            f"config key 'train.partitioner' is {cfg.train.partitioner!r} but model.method {m.method!r} has no "
            "loss it can weight; use a method whose heads read pair weights (kpdm) or train.partitioner=none"
        )
    pretrained = m.pretrained_dir or None
    image_tower = build_image_tower(
        img_size=tuple(cfg.data.image_size),
        mask_token=NEEDS_MASK_TOKEN in needs,
        **({} if pretrained else dict(patch_size=m.patch_size, width=m.image_width, depth=m.image_depth,
                                      heads=m.image_heads, out_dim=m.embed_dim)),
        pretrained_dir=pretrained,
    )
    text_tower = build_text_tower(
        kind=m.text_kind,
        vocab_size=tokenizer.vocab_size,
        max_length=cfg.data.max_length,
        **({} if pretrained else dict(width=m.text_width, depth=m.text_depth, heads=m.text_heads,
                                      out_dim=m.embed_dim)),
        pretrained_dir=pretrained,
    )
    ctx = HeadContext(dim=image_tower.out_dim, tokenizer=tokenizer, num_classes=num_classes,
                      patch_size=image_tower.patch_size, num_patches=image_tower.num_patches,
                      image_depth=image_tower.depth)
    heads = [head for cls in row if (head := cls.build(cfg, ctx)) is not None]
    if m.grad_checkpointing:  # less activation memory for one more forward pass of the towers
        image_tower.grad_checkpointing = True
        text_tower.set_grad_checkpointing(True, eager=any(head.wants_attention for head in heads))
    return TIReIDModel(image_tower, text_tower, heads, tokenizer, method=m.method, image_pool=m.image_pool,
                       text_pool=m.text_pool, pretrained=pretrained is not None)
