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
   (:func:`~tireid_lite.losses.mlm.fmlm_loss`);
4. trusted consensus partitioning (TCP): noisy pairs found from each
   identity's image-text similarities (:func:`~tireid_lite.train.partition.tcp_partition`).

What is known and what is the kit's reading. Known (K): RDE's BGE + TSE, TAL
(m = 0.1, tau = 0.015), its inference score and its CCD partitioner; KPDM's
four parts by name, its released select ratio 0.5 and its results. Only
KPDM's abstract and inference code are public, so how each part is trained
here is **our reading**, not the paper's exact method:

* SDM or TAL: RDE replaces IRRA's SDM by TAL, and KPDM's release is RDE's
  model, so ``kpdm`` trains TAL on the global embeddings (``tal_bge``) and on
  the TSE (``tal_tse``), each with weight 1, and drops SDM
  (``model.sdm_loss_weight`` is ignored; the logs show ``tal_bge`` and
  ``tal_tse`` and no ``sdm``). The baseline's ID loss stays (``id``), as does
  the masked-language loss (``mlm``).
* Token selection: image patches by ``patch_importance(attentions,
  model.importance_layers, model.importance_method)``, the top
  ``model.select_ratio`` kept; caption tokens by the end token's row of the
  text tower's last attention map (heads averaged), the same ratio,
  never padding, start or end tokens
  (:func:`~tireid_lite.models.token_selection.select_text_tokens`).
* What the masked-language module sees: the masked caption's tokens query the
  class token and the *kept* patch tokens only (1 + K tokens); the dropped
  patches never reach the cross-modal module. Its loss is FMLM with
  ``model.fmlm_alpha`` and the tokenizer's corpus counts (alpha 0 is plain MLM).
* Key phrases are parsed once per dataset, for the training captions and
  their mirrored versions (the dataset mirrors left/right when it flips an
  image), by :meth:`KPDMLanguageHead.prepare`, which the Trainer calls
  through ``model.prepare(data)`` before it hands ``model.caption_hook`` to
  the dataset. They are kept in ``$TIREID_CACHE/key_phrases/`` (default
  ``~/.cache/tireid-lite``) rather than beside the dataset, whose folder may be
  read-only or shared; the file name holds the captions' digest and the file
  records the spaCy model and the rules' version
  (:func:`~tireid_lite.text.key_phrases.key_phrases_for_captions`). Without
  ``prepare`` a caption is parsed the first time it is drawn (slow, correct).
* Noise partitioning (``train.partitioner`` ccd or tcp): at the start of every
  epoch after ``train.partition_warmup_epochs``, every training pair is
  encoded as for evaluation (test transform, no flip, no mask, eval mode);
  CCD reads the per-pair TAL of each view computed over consecutive batches
  of ``train.batch_size`` pairs in index order (as RDE does over its training
  set), TCP the cosine similarity of each pair's own image and caption in each
  view. The partition's weights (1 clean, 0 noisy, 1/2 uncertain) scale both
  TAL losses and the masked-language loss of the pair: a noisy caption
  describes another person, so predicting its masked words from this image
  would teach wrong relations. The ID loss is the baseline's and stays
  unweighted. With ``model.tse=false`` there is one view, used twice.
* Resume: the weights are not stored in checkpoints. The partition of epoch
  e is a deterministic function of the model at the end of epoch e - 1, which
  ``last.pt`` holds, so a resumed run recomputes exactly the weights the
  uninterrupted run used. Detection precision, recall, F1 against the
  injected ground truth and the clean / noisy / uncertain counts go to the
  epoch's record in ``metrics.json`` (``model.epoch_stats``).

Every part is a switch of ``method=kpdm`` (ablations are config overrides):
``model.mask_strategy`` random | phrase, ``model.fmlm_alpha`` (0 = plain
MLM), ``model.select_ratio`` (1.0 = no selection), ``model.tse`` (false =
global embedding only), ``train.partitioner`` none | ccd | tcp.

Taught in 03-05: ``03_kpdm_key_phrase_masking``,
``04_kpdm_patch_importance_fmlm`` and ``05_kpdm_trusted_consensus``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from tireid_lite.config import Config
from tireid_lite.data.torch_data import read_image
from tireid_lite.data.transforms import build_transforms, mirror_caption
from tireid_lite.errors import ConfigError
from tireid_lite.losses.mlm import corpus_token_counts, frequency_weights, masked_accuracy, mlm_loss
from tireid_lite.losses.tal import tal_loss
from tireid_lite.models.patch_importance import gather_tokens, patch_importance, select_patches
from tireid_lite.models.tireid import Encoded, MaskedLanguageHead, TIReIDModel
from tireid_lite.models.token_selection import TokenSelectionEmbedding, select_text_tokens
from tireid_lite.text.key_phrases import captions_digest, extract_key_phrases_batch, key_phrases_for_captions
from tireid_lite.text.masking import KeyPhraseMasking, RandomTokenMasking
from tireid_lite.text.tokenizers import Tokenizer

SELECTION_KEY = "kpdm_selection"  # where a batch's token selection is kept in Encoded.extras


# --------------------------------------------------------------------------- token selection


@dataclass
class Selection:
    """The tokens kept for one batch."""

    image_idx: Tensor  # (B, K) kept patch indices 0..N-1 (class token excluded), spatial order
    text_idx: Tensor | None  # (B, Kt) kept caption positions, valid ones first; None without TSE
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
    """Which image patches and caption tokens KPDM keeps (shared by its two heads).

    ``ratio`` is ``model.select_ratio`` (1.0 keeps every patch and skips the
    scoring), ``layers`` and ``method`` the patch-importance settings.
    """

    def __init__(self, tokenizer: Tokenizer, ratio: float, layers: int, method: str, text: bool) -> None:
        self.tokenizer = tokenizer
        self.ratio = float(ratio)
        self.layers = int(layers)
        self.method = method
        self.text = text  # select caption tokens too (needed by the caption's TSE only)

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

    def for_batch(self, enc: Encoded, caption_ids: Tensor) -> Selection:
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


def pair_weights_for(model: TIReIDModel, batch: dict[str, Tensor]) -> Tensor | None:
    """The partition's weight (B,) of each pair of ``batch`` (by ``batch["index"]``); None when every pair weighs 1."""
    weights = getattr(model, "pair_weights", None)
    if weights is None:
        return None
    index = batch["index"].to(weights.device)
    return weights[index].to(batch["pids"].device)  # (B,)


# --------------------------------------------------------------------------- matching: TAL on BGE and TSE


class AlignmentHead(nn.Module):
    """RDE's matching: TAL on the global embeddings (``tal_bge``) and on the TSE (``tal_tse``).

    It replaces SDM (``replaces_sdm``). With ``tse`` it also owns retrieval:
    :meth:`encode_images` / :meth:`encode_texts` return the global embedding
    and the TSE side by side, (B, 2D), and :meth:`similarity` averages their
    two cosines. It runs the noise partitioner between epochs (:meth:`on_epoch_start`).
    """

    replaces_sdm = True

    def __init__(
        self,
        dim: int,
        selector: TokenSelector,
        *,
        tse: bool = True,
        margin: float = 0.1,
        tau: float = 0.015,
        partitioner: str = "none",
        partition_warmup_epochs: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.losses = ("tal_bge", "tal_tse") if tse else ("tal_bge",)
        self.selector = selector
        self.dim = int(dim)
        self.tse = bool(tse)
        self.image_tse = TokenSelectionEmbedding(dim, dim) if tse else None
        self.text_tse = TokenSelectionEmbedding(dim, dim) if tse else None
        self.margin, self.tau = float(margin), float(tau)
        self.partitioner = partitioner
        self.partition_warmup_epochs = int(partition_warmup_epochs)
        self.seed = int(seed)

    # ------------------------------------------------------------- embeddings
    def image_local(self, tokens: Tensor, keep_idx: Tensor) -> Tensor:
        """The image TSE (B, D) of the kept patches of ``tokens`` (B, 1+N, D)."""
        return self.image_tse(gather_tokens(tokens, keep_idx, with_cls=False))  # (B, K, D) -> (B, D)

    def text_local(self, tokens: Tensor, keep_idx: Tensor, keep_valid: Tensor) -> Tensor:
        """The caption TSE (B, D) of the kept positions of ``tokens`` (B, L, D); filler entries are skipped."""
        index = keep_idx.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])  # (B, Kt, D)
        return self.text_tse(tokens.gather(1, index), padding_mask=~keep_valid)  # (B, D)

    def encode_images(self, model: TIReIDModel, images: Tensor) -> Tensor:
        """Global and token-selection image embeddings side by side: (B, 2D)."""
        out = model.image_tower(images, return_attention=True)
        keep_idx = self.selector.image(out.tokens, out.attentions)
        return torch.cat([model.image_global(out.tokens), self.image_local(out.tokens, keep_idx)], dim=-1)

    def encode_texts(self, model: TIReIDModel, caption_ids: Tensor) -> Tensor:
        """Global and token-selection caption embeddings side by side: (B, 2D)."""
        mask = model.tokenizer.attention_mask(caption_ids)
        out = model.text_tower.encode(caption_ids, mask, return_attention=True)
        keep_idx, keep_valid = self.selector.caption(caption_ids, out.attentions)
        local = self.text_local(out.tokens, keep_idx, keep_valid)
        return torch.cat([model.text_global(out.tokens, caption_ids), local], dim=-1)

    def split_views(self, feats: Tensor) -> tuple[Tensor, Tensor]:
        """(global, TSE) halves of features from :meth:`encode_images` / :meth:`encode_texts`;
        without TSE the global features twice."""
        if not self.tse:
            return feats, feats
        return feats[:, : self.dim], feats[:, self.dim :]

    def similarity(self, text_feats: Tensor, image_feats: Tensor) -> Tensor:
        """RDE's score (Q, G): the mean of the global and the token-selection cosine similarities."""
        text_global, text_local = self.split_views(text_feats.float())
        image_global, image_local = self.split_views(image_feats.float())
        s_bge = F.normalize(text_global, dim=-1) @ F.normalize(image_global, dim=-1).t()  # (Q, G)
        s_tse = F.normalize(text_local, dim=-1) @ F.normalize(image_local, dim=-1).t()  # (Q, G)
        return (s_bge + s_tse) / 2

    # ------------------------------------------------------------- training
    def forward(self, model: TIReIDModel, enc: Encoded, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        pids = batch["pids"]
        weights = pair_weights_for(model, batch)  # (B,) or None
        tal = dict(margin=self.margin, tau=self.tau, weights=weights)
        out = {"tal_bge": tal_loss(enc.image_feats, enc.text_feats, pids, **tal)}
        if self.tse:
            selection = self.selector.for_batch(enc, batch["caption_ids"])
            image_local = self.image_local(enc.image_tokens, selection.image_idx)  # (B, D)
            text_local = self.text_local(enc.text_tokens, selection.text_idx, selection.text_valid)  # (B, D)
            out["tal_tse"] = tal_loss(image_local, text_local, pids, **tal)
        return out

    def on_epoch_start(self, model: TIReIDModel, epoch: int, trainer: Any = None) -> None:
        """Partition the training pairs (after the warm-up epochs) and set ``model.pair_weights``."""
        model.pair_weights = None
        if self.partitioner == "none" or epoch <= self.partition_warmup_epochs or trainer is None:
            return
        stats = partition_training_pairs(model, self, trainer)
        model.epoch_stats.update(stats)
        trainer.say(
            f"epoch {epoch} partition ({self.partitioner}): clean {stats['partition_clean']}, "
            f"noisy {stats['partition_noisy']}, uncertain {stats['partition_uncertain']}; detection "
            f"P {stats['partition_precision']:.3f} R {stats['partition_recall']:.3f} F1 {stats['partition_f1']:.3f}"
        )


# --------------------------------------------------------------------------- masked words over the kept patches


class PhraseTable:
    """Caption -> its key phrases, each caption parsed once.

    :meth:`add` parses a list of captions in one batch through the JSON cache
    of :func:`~tireid_lite.text.key_phrases.key_phrases_for_captions`; a
    caption not added is parsed the first time it is asked for.
    """

    def __init__(self) -> None:
        self.phrases: dict[str, list] = {}

    def __len__(self) -> int:
        return len(self.phrases)

    def __call__(self, caption: str) -> list:
        found = self.phrases.get(caption)
        if found is None:
            found = self.phrases[caption] = extract_key_phrases_batch([caption])[0]
        return found

    def add(self, captions: Sequence[str], cache_path: str | Path | None = None) -> None:
        """Parse ``captions`` (or read them from ``cache_path``) and keep their phrases."""
        captions = list(captions)
        self.phrases.update(zip(captions, key_phrases_for_captions(captions, cache_path)))


def phrase_cache_path(dataset_name: str, captions: Sequence[str]) -> Path:
    """``$TIREID_CACHE/key_phrases/<dataset>-<digest>.json`` for this list of captions."""
    from tireid_lite.data.synth.generate import cache_dir

    slug = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in dataset_name.lower()) or "dataset"
    return cache_dir() / "key_phrases" / f"{slug}-{captions_digest(captions)[:16]}.json"


def training_captions(train_set: Any) -> list[str]:
    """Every caption the training set can yield: its captions and their mirrored versions, sorted, unique."""
    captions = {pair.caption for pair in train_set.pairs}
    return sorted(captions | {mirror_caption(caption) for caption in captions})


class KPDMLanguageHead(MaskedLanguageHead):
    """Masked words predicted from the class token and the kept patches only, with FMLM's weights.

    The masked caption (drawn by ``model.caption_hook``: random or key-phrase
    masking) goes through the text tower and queries 1 + K image tokens in
    the cross-modal module. Loss: :func:`~tireid_lite.losses.mlm.mlm_loss`
    with each masked token weighted by FMLM's
    :func:`~tireid_lite.losses.mlm.frequency_weights` (``alpha`` 0: all ones)
    times its pair's partition weight.
    """

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
    ) -> None:
        super().__init__(dim, heads, depth, vocab_size)
        self.selector = selector
        self.alpha = float(alpha)
        self.token_counts = token_counts  # (V,) corpus counts, needed when alpha > 0
        self.phrase_table = phrase_table  # filled by prepare() under key-phrase masking

    def token_weights(self, labels: Tensor, pair_weights: Tensor | None) -> Tensor | None:
        """Per-position weights (B, L) for ``mlm_loss``; None when every masked token weighs 1."""
        weights = None
        if self.alpha > 0:
            if self.token_counts is None:
                raise ConfigError(
                    "model.fmlm_alpha > 0 needs the corpus counts of the tokenizer's tokens; this tokenizer keeps "
                    "none, so call model.prepare(data) with the training data first (the Trainer does)"
                )
            weights = frequency_weights(labels, self.token_counts, self.alpha)  # (B, L)
        if pair_weights is not None:
            scale = pair_weights.to(torch.float32).unsqueeze(1)  # (B, 1)
            weights = scale.expand(labels.shape) if weights is None else weights * scale
        return weights

    def forward(self, model: TIReIDModel, enc: Encoded, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        selection = self.selector.for_batch(enc, batch["caption_ids"])
        context = gather_tokens(enc.image_tokens, selection.image_idx, with_cls=True)  # (B, 1+K, D)
        logits = self.logits(model, batch["mlm_ids"], context)  # (B, L, V)
        labels = batch["mlm_labels"]
        weights = self.token_weights(labels, pair_weights_for(model, batch))
        return {"mlm": mlm_loss(logits, labels, weights=weights), "mlm_acc": masked_accuracy(logits, labels)}

    def prepare(self, model: TIReIDModel, data: Any) -> None:
        """Parse the training captions' key phrases (cached) and count tokens for FMLM, once per run."""
        train_set = getattr(data, "train_set", None)
        if train_set is None:
            return
        if self.phrase_table is not None:
            captions = training_captions(train_set)
            self.phrase_table.add(captions, phrase_cache_path(data.dataset.name, captions))
        if self.alpha > 0 and self.token_counts is None:
            self.token_counts = corpus_token_counts(model.tokenizer, [pair.caption for pair in train_set.pairs])


# --------------------------------------------------------------------------- the noise partitioner


class _TrainImages(Dataset):
    """The distinct training images, test-time transform (no flip, no crop)."""

    def __init__(self, dataset: Any, paths: list[str], transform: Any) -> None:
        self.dataset, self.paths, self.transform = dataset, paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"images": self.transform(read_image(self.dataset.image_path(self.paths[index])))}


class _CaptionIds(Dataset):
    def __init__(self, ids: Tensor) -> None:
        self.ids = ids  # (N, L)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"caption_ids": self.ids[index]}


def pair_features(
    model: TIReIDModel,
    train_set: Any,
    image_size: tuple[int, int],
    *,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    amp_dtype: torch.dtype | None = None,
    num_workers: int = 0,
) -> tuple[Tensor, Tensor]:
    """Retrieval features of every training pair's own image and caption, in pair order: (N, F) each.

    Encoded as for evaluation (``model.encode_images`` / ``encode_texts``,
    test transform, no flip, no mask, eval mode); each distinct image once.
    The global random generators are left as they were.
    """
    from tireid_lite.eval.retrieval import extract_features

    pairs = train_set.pairs
    rows: dict[str, int] = {}
    image_row = np.array([rows.setdefault(pair.path, len(rows)) for pair in pairs], dtype=np.int64)  # (N,)
    transform = build_transforms(image_size, train=False)
    images = _TrainImages(train_set.dataset, list(rows), transform)
    ids = train_set.tokenizer([pair.caption for pair in pairs])  # (N, L)
    loader_args = dict(batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            image_feats = extract_features(model, DataLoader(images, **loader_args), "images",
                                           device=device, amp_dtype=amp_dtype)  # (U, F)
            text_feats = extract_features(model, DataLoader(_CaptionIds(ids), **loader_args), "texts",
                                          device=device, amp_dtype=amp_dtype)  # (N, F)
    finally:
        model.train(was_training)
    return image_feats[torch.from_numpy(image_row).to(image_feats.device)], text_feats  # (N, F) each


def per_pair_tal(
    image_feats: Tensor, text_feats: Tensor, pids: Tensor, batch_size: int, margin: float, tau: float
) -> Tensor:
    """Each pair's TAL (N,) within consecutive batches of ``batch_size`` pairs (the last may be smaller)."""
    losses = [
        tal_loss(image_feats[start : start + batch_size], text_feats[start : start + batch_size],
                 pids[start : start + batch_size], margin, tau, reduction="none")
        for start in range(0, len(pids), batch_size)
    ]
    return torch.cat(losses)  # (N,)


def view_similarities(head: AlignmentHead, image_feats: Tensor, text_feats: Tensor) -> list[np.ndarray]:
    """Cosine similarity of each pair's own image and caption in each view (global, TSE): two (N,) arrays.

    ``image_feats`` and ``text_feats`` (N, F) as :func:`pair_features` returns them;
    what TCP reads. With ``model.tse=false`` the one view comes twice.
    """
    views = zip(head.split_views(image_feats), head.split_views(text_feats))
    return [(F.normalize(img, dim=-1) * F.normalize(txt, dim=-1)).sum(-1).cpu().numpy() for img, txt in views]


def view_losses(
    head: AlignmentHead, image_feats: Tensor, text_feats: Tensor, pids: np.ndarray, batch_size: int
) -> list[np.ndarray]:
    """Each pair's TAL in each view, over consecutive batches of ``batch_size`` pairs: two (N,) arrays (CCD's input)."""
    pid_tensor = torch.as_tensor(np.asarray(pids)).to(image_feats.device)
    views = zip(head.split_views(image_feats), head.split_views(text_feats))
    return [per_pair_tal(img, txt, pid_tensor, batch_size, head.margin, head.tau).cpu().numpy() for img, txt in views]


def partition_training_pairs(model: TIReIDModel, head: AlignmentHead, trainer: Any) -> dict[str, float | int]:
    """Run ``head.partitioner`` over the training set; set ``model.pair_weights``; return the epoch's stats."""
    from tireid_lite.train.partition import ccd_partition, detection_scores, tcp_partition

    cfg, train_set = trainer.cfg, trainer.data.train_set
    image_feats, text_feats = pair_features(
        model, train_set, trainer.data.image_size, batch_size=2 * cfg.train.batch_size, device=trainer.device,
        amp_dtype=trainer.amp_dtype, num_workers=cfg.data.num_workers,
    )
    pids = np.asarray(train_set.pids)
    if head.partitioner == "tcp":
        sims = view_similarities(head, image_feats, text_feats)
        partition = tcp_partition(sims[0], sims[1], pids)
    elif head.partitioner == "ccd":
        losses = view_losses(head, image_feats, text_feats, pids, cfg.train.batch_size)
        partition = ccd_partition(losses[0], losses[1], seed=head.seed)
    else:
        raise ConfigError(f"config key 'train.partitioner' is {head.partitioner!r}; use none, ccd or tcp")
    weights = torch.ones(len(train_set.pairs), dtype=torch.float32)  # (N,) by pair index
    index = torch.tensor([pair.index for pair in train_set.pairs], dtype=torch.long)
    weights[index] = torch.from_numpy(partition.weights)
    model.pair_weights = weights.to(image_feats.device)
    scores = detection_scores(partition, np.asarray(train_set.noisy, dtype=bool))
    counts = partition.counts()
    return {
        "partition_precision": scores["precision"],
        "partition_recall": scores["recall"],
        "partition_f1": scores["f1"],
        "partition_clean": counts["clean"],
        "partition_noisy": counts["noisy"],
        "partition_uncertain": counts["uncertain"],
    }


# --------------------------------------------------------------------------- assembly


def add_kpdm_heads(model: TIReIDModel, cfg: Config) -> None:
    """Give ``model`` KPDM's heads and switches (called by ``TIReIDModel`` for ``method=kpdm``).

    Adds ``heads["tal"]`` (:class:`AlignmentHead`, replacing SDM) and, when
    ``model.mlm_loss_weight > 0``, ``heads["kpdm_mlm"]`` (:class:`KPDMLanguageHead`)
    with its caption hook (random or key-phrase masking); asks the towers for
    their attention maps when a selection needs them; makes the TAL head the
    retrieval head when ``model.tse`` is on.
    """
    m, tokenizer = cfg.model, model.tokenizer
    dim = model.image_tower.out_dim
    selector = TokenSelector(tokenizer, m.select_ratio, m.importance_layers, m.importance_method, text=m.tse)
    model.heads["tal"] = AlignmentHead(
        dim, selector, tse=m.tse, margin=m.tal_margin, tau=m.tal_tau, partitioner=cfg.train.partitioner,
        partition_warmup_epochs=cfg.train.partition_warmup_epochs, seed=cfg.train.seed,
    )
    model.loss_weights.update(tal_bge=1.0, tal_tse=1.0)
    model.return_attention = m.tse or m.select_ratio < 1.0
    if m.tse:
        model.retrieval_head = "tal"
    if m.mlm_loss_weight <= 0:
        return
    phrase_table = PhraseTable() if m.mask_strategy == "phrase" else None
    counts = getattr(tokenizer, "word_counts", None)
    model.heads["kpdm_mlm"] = KPDMLanguageHead(
        dim, m.cross_heads, m.cross_depth, tokenizer.vocab_size, selector, alpha=m.fmlm_alpha,
        token_counts=None if counts is None else np.asarray(counts, dtype=np.int64), phrase_table=phrase_table,
    )
    if phrase_table is not None:
        model.caption_hook = KeyPhraseMasking(tokenizer, phrase_table, m.mlm_prob)
    else:
        model.caption_hook = RandomTokenMasking(tokenizer.mask_token_id, tokenizer.vocab_size,
                                                tokenizer.special_ids, m.mlm_prob)
