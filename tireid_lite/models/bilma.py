"""BiLMa's masked image modelling: masked patches predicted from the caption (text -> image matching).

IRRA's masked language modelling asks the caption to read the image. BiLMa
(Fujii & Tarashima, ICCV 2023 Workshops) adds the other direction: a share
``model.bilma.mim_ratio`` of the image's patch tokens is replaced by the image tower's
learned mask token, the masked image goes through the image tower, and its
tokens query the caption's tokens in IRRA's cross-modal module (the same
module the masked words use, when both heads are on). A head predicts, for the
masked patches only, the target chosen by ``model.bilma.mim_target``:

* ``semantic`` (SemMIM, BiLMa's choice): the patch's part class from a human
  parsing map, cross-entropy;
* ``rgb``: the patch's mean colour, squared error;
* ``pixels``: the patch's pixels normalised per patch, squared error.

The total loss is BiLMa's ``L = L_sdm + L_id + alpha L_mlm + beta L_mim`` with
``alpha = model.mlm_loss_weight`` and ``beta = model.bilma.mim_loss_weight``; see
:mod:`tireid_lite.data.mim_targets` for the targets and :mod:`tireid_lite.losses.mim` for the loss.

(K) from the paper: masked patches, IRRA's module with the caption visible,
the part-label target and its comparison with pixels, mean colours and
features. (C) the kit's reading: which parser and classes (SynthPEDES's part
maps; a body-layout prior for real images without a parsing map), how a patch
gets its label (the majority part of its pixels, background below half
coverage), and a fixed random mask per step drawn uniformly over the patches.
Taught in ``06_bilma_semantic_mim``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from tireid_lite.config import Config
from tireid_lite.data.mim_targets import mim_targets
from tireid_lite.data.patch_labels import ParsingMaps
from tireid_lite.data.synth.materials import PART_CLASSES
from tireid_lite.losses.mim import mim_loss, per_class_accuracy, random_patch_mask
from tireid_lite.models.cross_modal import CrossModalEncoder, TokenPredictionHead
from tireid_lite.models.head import NEEDS_MASK_TOKEN, NEEDS_PART_MAPS, Encoded, Head, HeadContext
from tireid_lite.models.irra import SHARED_CROSS


def mim_output_size(target: str, patch_size: int) -> int:
    """How many numbers the MIM head predicts per patch: part classes, 3 (RGB) or 3 p^2 (pixels)."""
    return {"semantic": len(PART_CLASSES), "rgb": 3, "pixels": 3 * patch_size * patch_size}[target]


class MaskedImageHead(Head):
    """Predict masked image patches from the caption through the cross-modal module (see module docstring).

    ``cross`` is the cross-modal module to share (IRRA's, owned by the masked
    language head); ``None`` builds one for this head alone.
    """

    name = "mim"
    losses = ("mim",)

    def __init__(
        self,
        dim: int,
        heads: int,
        depth: int,
        *,
        target: str,
        ratio: float,
        patch_size: int,
        cross: CrossModalEncoder | None = None,
        weight: float = 1.0,
        class_balance: float = 0.0,
    ) -> None:
        super().__init__()
        self.loss_weights = {"mim": float(weight)}
        self.target = target
        self.ratio = float(ratio)
        self.class_balance = float(class_balance)  # see mim_loss (the kit's experiment; 0 = BiLMa's loss)
        self.patch_size = int(patch_size)
        self._shared = cross is not None
        self.own_cross = None if self._shared else CrossModalEncoder(dim, heads, depth)
        self._cross_ref = [cross]  # a plain list: the shared module stays registered under its owner only
        self.predict = TokenPredictionHead(dim, mim_output_size(target, patch_size))

    @classmethod
    def build(cls, cfg: Config, ctx: HeadContext) -> MaskedImageHead | None:
        m, b = cfg.model, cfg.model.bilma
        if b.mim_loss_weight <= 0:
            return None
        return cls(ctx.dim, m.cross_heads, m.cross_depth, target=b.mim_target, ratio=b.mim_ratio,
                   patch_size=ctx.patch_size, cross=ctx.shared.get(SHARED_CROSS), weight=b.mim_loss_weight,
                   class_balance=b.mim_class_balance)

    @classmethod
    def needs(cls, cfg: Config) -> frozenset[str]:
        b = cfg.model.bilma
        if b.mim_loss_weight <= 0:
            return frozenset()
        return frozenset({NEEDS_MASK_TOKEN, NEEDS_PART_MAPS} if b.mim_target == "semantic" else {NEEDS_MASK_TOKEN})

    @property
    def cross(self) -> CrossModalEncoder:
        return self._cross_ref[0] if self._shared else self.own_cross

    def predictions(
        self,
        model: Any,
        images: Tensor,
        patch_mask: Tensor,
        caption_ids: Tensor,
        text_tokens: Tensor | None = None,
    ) -> Tensor:
        """Per-patch predictions (B, N, out) for ``images`` with ``patch_mask`` (B, N) masked, caption visible.

        ``text_tokens`` (B, L, D): the caption's tokens when already encoded (training reuses them).
        """
        masked_tokens = model.image_tower(images, patch_mask=patch_mask).tokens  # (B, 1+N, D)
        if text_tokens is None:
            text_tokens = model.encode_text_tokens(caption_ids)  # (B, L, D)
        padding = ~model.tokenizer.attention_mask(caption_ids).bool()  # (B, L) True at padding
        fused = self.cross(masked_tokens, text_tokens, context_padding_mask=padding)  # (B, 1+N, D)
        return self.predict(fused[:, 1:]).float()  # (B, N, out), the class token dropped

    def forward(self, model: Any, enc: Encoded, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        images = batch["images"]
        num_patches = model.image_tower.num_patches
        patch_mask = random_patch_mask(images.shape[0], num_patches, self.ratio, device=images.device)  # (B, N)
        target = mim_targets(images, batch.get("part_map"), self.patch_size, self.target)
        pred = self.predictions(model, images, patch_mask, batch["caption_ids"], enc.text_tokens)
        out = {"mim": mim_loss(pred, target, patch_mask, self.target, class_balance=self.class_balance)}
        if self.target == "semantic":
            with torch.no_grad():
                out["mim_acc"] = (pred.argmax(-1) == target)[patch_mask].float().mean()
        return out


@torch.no_grad()
def evaluate_mim(
    model: Any, data, split: str = "test", *, seed: int = 0, batch_size: int = 128
) -> dict[str, object]:
    """How well the MIM head names masked patches of ``split``'s images, each with its first caption.

    Every gallery image gets a random mask of the model's ``mim_ratio`` (drawn
    from ``seed``) and its own first caption; the head's predictions on the
    masked patches are compared with the semantic targets. Returns
    ``{"accuracy": float, "per_class": (C,) tensor (NaN for a class never
    masked), "count": (C,) masked patches per class}``. Needs the semantic
    target. Taught in ``06_bilma_semantic_mim``.
    """
    head = model.heads["mim"] if "mim" in model.heads else None
    if head is None or head.target != "semantic":
        raise ValueError("evaluate_mim needs a model with the semantic MIM head (method=bilma, model.bilma.mim_target=semantic)")
    model.eval()
    gallery, queries = data.gallery(split), data.queries(split)
    first_caption = {}
    for q, image_id in enumerate(queries.image_ids.tolist()):
        first_caption.setdefault(image_id, q)
    maps = ParsingMaps.for_dataset(data.dataset)
    generator = torch.Generator().manual_seed(seed)
    num_classes = len(PART_CLASSES)
    hits = torch.zeros(num_classes)
    count = torch.zeros(num_classes)
    for start in range(0, len(gallery), batch_size):
        index = list(range(start, min(start + batch_size, len(gallery))))
        images = torch.stack([gallery[i]["images"] for i in index])  # (B, 3, H, W)
        part_maps = torch.from_numpy(np.stack([maps.load(gallery.paths[i], size=data.image_size) for i in index]))
        captions = torch.stack([queries.caption_ids[first_caption[i]] for i in index])  # (B, L)
        patch_mask = random_patch_mask(len(index), model.image_tower.num_patches, head.ratio, generator)
        target = mim_targets(images, part_maps.long(), head.patch_size, "semantic")  # (B, N)
        pred = head.predictions(model, images, patch_mask, captions)  # (B, N, C)
        acc = per_class_accuracy(pred, target, patch_mask, num_classes)  # (C,)
        n = torch.bincount(target[patch_mask], minlength=num_classes).float()
        hits += torch.nan_to_num(acc) * n
        count += n
    per_class = torch.where(count > 0, hits / count.clamp_min(1), torch.full_like(hits, float("nan")))
    return {"accuracy": float(hits.sum() / count.sum()), "per_class": per_class, "count": count}
