"""Probes that run a model's heads against a control: does the MLM head read the image, does MIM read the caption?

* :func:`mlm_image_probe` (IRRA's masked-language head): every colour word (or
  garment word) of a test caption is masked and predicted twice, once with the
  image the caption was written for and once with another identity's image.
  A head that reads the image names more of them with the true image; the
  difference ``true - shuffled`` is the probe, with a bootstrap interval over
  the masked words (:func:`~tireid_lite.eval.statistics.paired_difference`).
  The class ``any`` masks a seeded random share of every caption's words
  instead (as training draws them), beside a *word prior* that always names
  the commonest of the masked words: a head that beats it has learned the
  captions' language, one that also beats the shuffled image reads the image;
* :func:`mim_caption_probe` (BiLMa's masked-image head, semantic target): the
  part class of masked patches predicted with the image's own caption and with
  an empty one, on the same masks, beside a *position-only prior* that names,
  at each patch position, the commonest class there (counted on another split's
  part maps). A head whose accuracy is the prior's has learned where parts
  usually are, not what the image or the caption shows; the small parts (hat,
  hair, face, arms, shoes, bag) are where the prior is weakest.

Taught in ``10_paper_tables``; used by ``tireid grid`` and the regression floors.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from tireid_lite.data.mim_targets import mim_targets
from tireid_lite.data.patch_labels import ParsingMaps
from tireid_lite.data.synth.attributes import BAGS, BOTTOMS, HATS, TOPS
from tireid_lite.data.synth.materials import PART_CLASSES, PART_INDEX
from tireid_lite.eval.colour_matching import COLOUR_WORDS
from tireid_lite.eval.statistics import PairedDifference, paired_difference
from tireid_lite.losses.mim import random_patch_mask
from tireid_lite.models.irra import MaskedLanguageHead

GARMENT_WORDS = frozenset(w for w in (*TOPS, *BOTTOMS, *HATS, *BAGS, "shoes", "sneakers") if w != "none")
WORD_CLASSES: dict[str, frozenset[str]] = {"colour": COLOUR_WORDS, "garment": GARMENT_WORDS}
SMALL_PARTS = ("hat", "hair", "face", "arms", "shoes", "bag")


def word_ids(tokenizer: Any, words: Iterable[str]) -> dict[int, str]:
    """Token id -> word for each of ``words`` that the tokenizer keeps as one known token."""
    out = {}
    for word in sorted(words):
        ids = tokenizer.encode(word)[1:-1]  # without the start and end tokens
        if len(ids) == 1 and ids[0] != getattr(tokenizer, "unk_id", None):
            out[int(ids[0])] = word
    return out


def has_language_head(model: Any) -> bool:
    """Whether ``model`` has a masked-language head :func:`mlm_image_probe` can read."""
    return any(isinstance(head, MaskedLanguageHead) for head in model.heads.values())


def language_head(model: Any) -> MaskedLanguageHead:
    """The model's masked-language head (IRRA's ``mlm`` or KPDM's ``kpdm_mlm``), or one clear error."""
    heads = [head for head in model.heads.values() if isinstance(head, MaskedLanguageHead)]
    if not heads:
        raise ValueError(
            f"mlm_image_probe needs a masked-language head; model.method {getattr(model, 'method', '?')!r} has heads "
            f"{list(model.heads)} (use irra, kpdm or bilma with model.mlm_loss_weight > 0)"
        )
    return heads[0]


def _other_identity(pids: np.ndarray) -> np.ndarray:
    """For each item, the index of the nearest later item (cyclically) of another identity."""
    n = len(pids)
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        for step in range(1, n):
            j = (i + step) % n
            if pids[j] != pids[i]:
                out[i] = j
                break
        else:
            raise ValueError("every probed caption belongs to one identity; the shuffled-image control needs two")
    return out


@torch.no_grad()
def mlm_image_probe(
    model: Any,
    data: Any,
    split: str = "test",
    *,
    max_captions: int | None = 400,
    batch_size: int = 64,
    classes: Iterable[str] = ("colour", "garment"),
    rate: float = 0.15,
    seed: int = 0,
    keep_hits: bool = False,
) -> dict[str, dict[str, Any]]:
    """Top-1 accuracy (percent) of the MLM head on masked colour and garment words, true vs shuffled image.

    For each word class, the first ``max_captions`` queries of ``split`` that
    contain a word of the class have every such word replaced by the mask
    token; the head predicts them from the true image and from the image of
    the next probed caption of another identity. Returns per class ``true``,
    ``shuffled``, ``gap`` (true - shuffled) with its 95% bootstrap interval
    over the masked words (``low``, ``high``, ``excludes_zero``) and ``words``.
    The class ``any`` masks each ordinary word of the first ``max_captions``
    queries with probability ``rate`` (drawn from ``seed``) and adds ``prior``:
    the accuracy of always naming the commonest masked word.
    ``max_captions=None`` probes every caption of the split. With
    ``keep_hits=True`` each class also holds ``word_ids`` (the masked words'
    token ids) and ``true_hits`` / ``shuffled_hits`` (100 where the head named
    the word, else 0), for :func:`pooled_gap` over several seeds' models.
    Needs a model with a masked-language head: IRRA's (``irra``, ``bilma``) or KPDM's, which reads the
    class token and the patches its selector keeps (``kpdm``), each given the image as in training.
    """
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate={rate} must be in (0, 1), e.g. 0.15 as IRRA's masking")
    head, tok = language_head(model), model.tokenizer
    was_training = model.training
    model.eval()
    queries, gallery = data.queries(split), data.gallery(split)
    out = {}
    try:
        for name in classes:
            if name not in WORD_CLASSES and name != "any":
                raise ValueError(f"unknown word class {name!r}; use one of {sorted([*WORD_CLASSES, 'any'])}")
            if name == "any":
                special = torch.tensor(sorted(tok.special_ids), dtype=torch.long)
                generator = torch.Generator().manual_seed(seed)
                draw = torch.rand(queries.caption_ids.shape, generator=generator) < rate  # (Q, L)
                pick = draw & ~torch.isin(queries.caption_ids, special)
                has_word = pick.any(dim=1).numpy()
            else:
                targets = torch.tensor(sorted(word_ids(tok, WORD_CLASSES[name])), dtype=torch.long)
                has_word = torch.isin(queries.caption_ids, targets).any(dim=1).numpy()
            chosen = np.flatnonzero(has_word)[:max_captions]  # a slice's stop of None keeps them all
            if len(chosen) < 2:
                out[name] = {"words": 0, "note": f"fewer than two {split} captions name a {name} word"}
                continue
            other = chosen[_other_identity(queries.pids[chosen])]
            hits = {"true": [], "shuffled": []}
            masked_words = []
            for start in range(0, len(chosen), batch_size):
                rows = chosen[start:start + batch_size]
                ids = queries.caption_ids[rows]  # (B, L)
                where = pick[rows] if name == "any" else torch.isin(ids, targets)  # (B, L) the words to predict
                masked_words.append(ids[where].numpy())
                masked = ids.masked_fill(where, tok.mask_token_id)
                for key, source in (("true", rows), ("shuffled", other[start:start + batch_size])):
                    images = torch.stack([gallery[int(queries.image_ids[q])]["images"] for q in source])
                    logits = head.logits(model, masked, head.image_context(model, images))  # (B, L, V)
                    hits[key].append((logits.argmax(-1) == ids)[where].float().numpy())
            true, shuffled = (100 * np.concatenate(hits[k]) for k in ("true", "shuffled"))
            diff = paired_difference(shuffled, true, f"MLM {name} accuracy (true - shuffled image)")
            out[name] = {"true": float(true.mean()), "shuffled": float(shuffled.mean()), "gap": diff.diff,
                         "low": diff.low, "high": diff.high, "excludes_zero": diff.excludes_zero,
                         "words": int(true.size), "captions": len(chosen)}
            words = np.concatenate(masked_words)
            if name == "any":
                out[name]["prior"] = float(100.0 * np.bincount(words).max() / words.size)
            if keep_hits:
                out[name].update(word_ids=words, true_hits=true, shuffled_hits=shuffled)
    finally:
        model.train(was_training)
    return out


def pooled_gap(probes: Iterable[dict[str, Any]], name: str = "colour") -> PairedDifference:
    """``true - shuffled`` of word class ``name`` over several models (one per seed) probed on the same words.

    ``probes`` are :func:`mlm_image_probe` results with ``keep_hits=True``,
    each probed with the same split, ``max_captions`` and probe ``seed`` so
    that every model names the same masked words. The difference is averaged
    over the models word by word and its interval resamples the words
    (:func:`~tireid_lite.eval.statistics.paired_difference` with one row per
    model); ``seed_diffs`` holds each model's own gap.
    """
    rows = [probe.get(name, {}) for probe in probes]
    if not rows:
        raise ValueError("pooled_gap needs at least one probe result")
    missing = [i for i, row in enumerate(rows) if "true_hits" not in row]
    if missing:
        raise ValueError(f"probe result(s) {missing} have no {name!r} hits; run mlm_image_probe with "
                         f"classes including {name!r} and keep_hits=True")
    if any(not np.array_equal(row["word_ids"], rows[0]["word_ids"]) for row in rows[1:]):
        raise ValueError(f"the probes masked different {name!r} words; probe every model with the same split, "
                         "max_captions and seed")
    return paired_difference(np.stack([row["shuffled_hits"] for row in rows]),
                             np.stack([row["true_hits"] for row in rows]),
                             f"MLM {name} accuracy (true - shuffled image)")


def _targets(data: Any, split: str, indices: Iterable[int], patch_size: int) -> torch.Tensor:
    """Semantic MIM targets (B, N) of gallery images ``indices`` of ``split``."""
    gallery = data.gallery(split)
    maps = ParsingMaps.for_dataset(data.dataset)
    index = list(indices)
    images = torch.stack([gallery[i]["images"] for i in index])
    part_maps = torch.from_numpy(np.stack([maps.load(gallery.paths[i], size=data.image_size) for i in index]))
    return mim_targets(images, part_maps.long(), patch_size, "semantic")


def position_prior(data: Any, split: str, patch_size: int, *, max_images: int = 400) -> torch.Tensor:
    """(N,) the commonest part class at each patch position over ``split``'s first ``max_images`` images."""
    count = min(max_images, len(data.gallery(split)))
    targets = torch.cat([_targets(data, split, range(s, min(s + 128, count)), patch_size)
                         for s in range(0, count, 128)])  # (M, N)
    num_classes = len(PART_CLASSES)
    votes = torch.nn.functional.one_hot(targets, num_classes).sum(0)  # (N, C)
    return votes.argmax(-1)


@torch.no_grad()
def mim_caption_probe(
    model: Any,
    data: Any,
    split: str = "test",
    *,
    prior_split: str = "val",
    seed: int = 0,
    max_images: int = 400,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Accuracy (percent) of the semantic MIM head with the caption, with an empty caption, and of the
    position prior, on the same masked patches of ``split``'s first ``max_images`` images.

    Returns ``with_caption``, ``without_caption``, ``prior`` (all masked
    patches), the same three over the small parts (``small_*``),
    ``small_over_prior`` and ``caption_gain`` (with - without, all patches)
    each with a bootstrap interval over patches (``*_low``, ``*_high``),
    ``per_class`` (a dict of class -> the three accuracies and the count) and
    ``patches``.
    """
    if "mim" not in model.heads or model.heads["mim"].target != "semantic":
        raise ValueError("mim_caption_probe needs the semantic MIM head (method=bilma, model.bilma.mim_target=semantic)")
    head = model.heads["mim"]
    was_training = model.training
    model.eval()
    try:
        prior = position_prior(data, prior_split, head.patch_size)  # (N,)
        gallery, queries = data.gallery(split), data.queries(split)
        first_caption: dict[int, int] = {}
        for q, image_id in enumerate(queries.image_ids.tolist()):
            first_caption.setdefault(image_id, q)
        empty = model.tokenizer("")  # (1, L): start and end tokens only
        generator = torch.Generator().manual_seed(seed)
        rows = {"target": [], "with": [], "without": [], "prior": []}
        count = min(max_images, len(gallery))
        for start in range(0, count, batch_size):
            index = list(range(start, min(start + batch_size, count)))
            images = torch.stack([gallery[i]["images"] for i in index])
            target = _targets(data, split, index, head.patch_size)  # (B, N)
            captions = torch.stack([queries.caption_ids[first_caption[i]] for i in index])  # (B, L)
            patch_mask = random_patch_mask(len(index), model.image_tower.num_patches, head.ratio, generator)
            with_caption = head.predictions(model, images, patch_mask, captions).argmax(-1)
            without = head.predictions(model, images, patch_mask, empty.expand(len(index), -1)).argmax(-1)
            rows["target"].append(target[patch_mask])
            rows["with"].append(with_caption[patch_mask])
            rows["without"].append(without[patch_mask])
            rows["prior"].append(prior.expand_as(target)[patch_mask])
    finally:
        model.train(was_training)
    target = torch.cat(rows["target"]).numpy()
    hit = {k: 100.0 * (torch.cat(rows[k]).numpy() == target) for k in ("with", "without", "prior")}
    small = np.isin(target, [PART_INDEX[p] for p in SMALL_PARTS])
    out: dict[str, Any] = {"with_caption": float(hit["with"].mean()), "without_caption": float(hit["without"].mean()),
                           "prior": float(hit["prior"].mean()), "patches": int(target.size),
                           "small_patches": int(small.sum())}
    for key, part in (("with_caption", "with"), ("without_caption", "without"), ("prior", "prior")):
        out[f"small_{key}"] = float(hit[part][small].mean()) if small.any() else float("nan")
    if small.sum() >= 2:
        d = paired_difference(hit["prior"][small], hit["with"][small], "MIM small-part accuracy over the prior")
        out.update(small_over_prior=d.diff, small_over_prior_low=d.low, small_over_prior_high=d.high)
    gain = paired_difference(hit["without"], hit["with"], "MIM accuracy, caption - no caption")
    out.update(caption_gain=gain.diff, caption_gain_low=gain.low, caption_gain_high=gain.high)
    out["per_class"] = {
        name: {"count": int((target == c).sum()),
               **{k: float(hit[p][target == c].mean()) if (target == c).any() else None
                  for k, p in (("with_caption", "with"), ("without_caption", "without"), ("prior", "prior"))}}
        for c, name in enumerate(PART_CLASSES)
    }
    return out
