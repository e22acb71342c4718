"""CADA (Cross-Modal Adaptive Dual Association, IEEE TMM 2024) as heads of ``TIReIDModel``: ``model.method=cada``.

CADA associates local parts in both directions (PAPERS.md):

* **ATP** (text tokens -> image patches): the caption's tokens query the
  image's tokens in a decoder (:mod:`tireid_lite.models.cada_decoder`);
  an image-text matching (ITM) classifier on the decoder's first token says
  whether the pair matches, trained on each pair and on hard negatives mined
  in the batch (for each text the most similar image of another identity,
  for each image the most similar text: :func:`~tireid_lite.losses.itm.mine_hard_negatives`),
  plus a *local* ITM on groups of text tokens (:class:`AssociationHead`);
* **ARA** (image regions -> text attributes): attribute words of the caption
  are masked and predicted by a second decoder that cross-attends to the
  image (:class:`AttributeHead`);
* a **global loss** on the pooled features: SDM plus reverse KL plus the
  cross-entropy to the identity distribution
  (:func:`~tireid_lite.losses.itm.cada_global_loss`), or IRRA's SDM
  (:class:`CADAGlobalHead`); the baseline's ID loss stays.

At inference each query's top k (CADA: 32) by the global similarity are
re-scored by ``ITM score + global similarity`` (:meth:`AssociationHead.rerank`,
the scorer's second stage: ``evaluate(..., rerank_k=k)``, ``tireid eval --rerank-k k``).

Known (K), from the authors' code: the ITM with one hard negative image per
text and one hard negative text per image (argmax of the masked
similarity), the local ITM over two groups of text tokens, attribute words
masked with p = 0.4 (a phrase mode with p = 0.8 exists in the code), the
loss weights global 1, ATP 1, ARA 0.1, top-32 re-ranking. **The kit's
reading** where the code is silent or differs from the abstract:

* the adaptive gate of ATP (absent from the public code; switch
  ``model.cada.gate``), see :mod:`tireid_lite.models.cada_decoder`;
* attribute words are the words of the kit's key phrases
  (:mod:`tireid_lite.text.key_phrases`, shared with KPDM) rather than every
  NLTK adjective and noun; word mode masks each such token with
  ``ara_word_prob``, phrase mode each key phrase whole with
  ``ara_phrase_prob``; chosen tokens all become the mask token (CADA's code);
  a caption with no key phrase gets IRRA's random masking (p = 0.15);
* the local ITM groups split each caption's own tokens (start and end tokens
  left out) into ``local_groups`` contiguous groups and mean-pool each; CADA
  splits fixed positions of the padded sequence;
* the ITM score is the log-odds logit_1 - logit_0; ARA's decoder has no gate
  and its own weights (CADA's text decoder is a second BERT).

Each part is a switch: ``model.cada.itm_weight`` (0 = no ATP, no re-ranking),
``gate``, ``local_itm``, ``ara_weight`` (0 = no ARA), ``ara_mode`` word |
phrase, ``global_loss`` cada | sdm. Taught in ``07_cada_dual_association``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tireid_lite.config import Config
from tireid_lite.data.torch_data import training_captions
from tireid_lite.losses.itm import cada_global_loss, itm_accuracy, itm_loss, itm_score, mine_hard_negatives
from tireid_lite.losses.matching import sdm_loss
from tireid_lite.losses.mlm import masked_accuracy, mlm_loss
from tireid_lite.models.cada_decoder import Association, AssociationDecoder
from tireid_lite.models.cross_modal import TokenPredictionHead
from tireid_lite.models.head import NEEDS_KEY_PHRASES, Encoded, Head, HeadContext, RerankInputs
from tireid_lite.models.irra import SDMHead
from tireid_lite.text.masking import IGNORE_INDEX, KeyPhraseMasking
from tireid_lite.text.phrase_table import PhraseTable, phrase_cache_path


class CADAGlobalHead(SDMHead):
    """The global loss on the pooled features: CADA's (``global_loss=cada``) or IRRA's SDM (``sdm``)."""

    name = "global"
    losses = ("global",)

    def __init__(self, temperature: float, weight: float, form: str = "cada") -> None:
        super().__init__(temperature, weight)
        self.form = form
        self.loss_weights = {"global": float(weight)}

    @classmethod
    def build(cls, cfg: Config, ctx: HeadContext) -> CADAGlobalHead:
        return cls(cfg.model.temperature, cfg.model.sdm_loss_weight, cfg.model.cada.global_loss)

    def forward(self, model: Any, enc: Encoded, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        loss = cada_global_loss if self.form == "cada" else sdm_loss
        return {"global": loss(enc.image_feats, enc.text_feats, batch["pids"], self.logit_scale)}


def token_groups(mask: Tensor, groups: int) -> Tensor:
    """One-hot group membership (B, L, G) of each caption's own tokens, split into ``groups`` contiguous runs.

    ``mask`` (B, L) is 1 up to and including the end token. The start token
    (position 0) and the end token belong to no group; the n body tokens at
    positions 1..n go to group floor((p - 1) G / n).
    """
    length = mask.long().sum(dim=1)  # (B,) tokens including start and end
    body = (length - 2).clamp_min(1)  # (B,)
    pos = torch.arange(mask.shape[1], device=mask.device)  # (L,)
    group = (((pos[None] - 1).clamp_min(0) * groups) // body[:, None]).clamp(max=groups - 1)  # (B, L)
    inside = (pos[None] >= 1) & (pos[None] <= length[:, None] - 2)  # (B, L)
    return F.one_hot(group, groups).to(torch.float32) * inside[..., None]  # (B, L, G)


class AssociationHead(Head):
    """ATP: the association decoder, the ITM and local ITM classifiers, and the re-ranking stage."""

    name = "atp"

    def __init__(self, dim: int, heads: int, depth: int, *, gate: bool = True, local_groups: int = 0,
                 weight: float = 1.0) -> None:
        super().__init__()
        self.decoder = AssociationDecoder(dim, heads, depth, gate=gate)
        self.itm_head = nn.Linear(dim, 2)
        self.local_groups = int(local_groups)
        self.local_head = nn.Linear(dim, 2) if local_groups else None
        self.losses = ("itm", "itm_local") if local_groups else ("itm",)
        self.loss_weights = {name: float(weight) for name in self.losses}
        self.rerank_chunk = 256  # pairs through the decoder at once (2048 held 0.8 GB more, and ran slower)

    @classmethod
    def build(cls, cfg: Config, ctx: HeadContext) -> AssociationHead | None:
        m, c = cfg.model, cfg.model.cada
        if c.itm_weight <= 0:
            return None
        return cls(ctx.dim, m.cross_heads, c.depth, gate=c.gate, local_groups=c.local_groups if c.local_itm else 0,
                   weight=c.itm_weight)

    def associate(self, text_tokens: Tensor, image_tokens: Tensor, mask: Tensor) -> Association:
        """The decoder on pairs: text tokens (P, L, D) with ``mask`` (P, L) query image tokens (P, 1+N, D).

        Positions after the longest caption are dropped first (the output has that width, W <= L):
        padding is masked anyway, and the decoder's cost grows with W.
        """
        width = int(mask.sum(dim=1).max())
        return self.decoder(text_tokens[:, :width], image_tokens, padding=~mask[:, :width].bool())

    def match_logits(self, assoc: Association) -> Tensor:
        """ITM logits (P, 2) from the decoder's first token (the start token, which saw the whole caption)."""
        return self.itm_head(assoc.tokens[:, 0]).float()

    def local_logits(self, assoc: Association, mask: Tensor) -> Tensor:
        """Local ITM logits (P, G, 2) of each group of text tokens, mean-pooled."""
        member = token_groups(mask, self.local_groups)  # (P, L, G)
        pooled = torch.einsum("plg,pld->pgd", member, assoc.tokens.float())  # (P, G, D)
        pooled = pooled / member.sum(dim=1).clamp_min(1.0)[..., None]
        return self.local_head(pooled.to(assoc.tokens.dtype)).float()

    def forward(self, model: Any, enc: Encoded, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        ids, pids = batch["caption_ids"], batch["pids"]
        mask = model.tokenizer.attention_mask(ids)  # (B, L)
        with torch.no_grad():
            sim = F.normalize(enc.text_feats.float(), dim=-1) @ F.normalize(enc.image_feats.float(), dim=-1).t()
        neg_image, neg_text = mine_hard_negatives(sim, pids)  # (B,), (B,)
        texts = torch.cat([enc.text_tokens, enc.text_tokens, enc.text_tokens[neg_text]])  # (3B, L, D)
        masks = torch.cat([mask, mask, mask[neg_text]])  # (3B, L)
        images = torch.cat([enc.image_tokens, enc.image_tokens[neg_image], enc.image_tokens])  # (3B, 1+N, D)
        assoc = self.associate(texts, images, masks)
        logits = self.match_logits(assoc)  # (3B, 2): matched, text + negative image, negative text + image
        batch_size = ids.shape[0]
        out = {"itm": itm_loss(logits[:batch_size], logits[batch_size:]),
               "itm_acc": itm_accuracy(logits[:batch_size], logits[batch_size:]).detach(),
               "gate_mean": torch.stack([g[masks[:, :g.shape[1]].bool()].mean() for g in assoc.gates]).mean().detach()}
        if self.local_head is not None:
            local = self.local_logits(assoc, masks[:, :assoc.tokens.shape[1]])  # (3B, G, 2)
            out["itm_local"] = itm_loss(local[:batch_size].reshape(-1, 2), local[batch_size:].reshape(-1, 2))
        return out

    # ------------------------------------------------------------------ the second retrieval stage
    @torch.no_grad()
    def pair_scores(self, model: Any, text_tokens: Tensor, mask: Tensor, image_tokens: Tensor) -> Tensor:
        """ITM scores (P,) of P pairs, in chunks of ``rerank_chunk`` pairs, padding trimmed per chunk."""
        scores = []
        for start in range(0, text_tokens.shape[0], self.rerank_chunk):
            part = slice(start, start + self.rerank_chunk)
            assoc = self.associate(text_tokens[part], image_tokens[part], mask[part])
            scores.append(itm_score(self.match_logits(assoc)))
        return torch.cat(scores)

    @torch.no_grad()
    def rerank(self, model: Any, inputs: RerankInputs) -> Tensor:
        """CADA's second stage: ITM score + global similarity (Q, k) for each query's top-k candidates.

        The candidate images are encoded once each (the union over queries),
        the queries' captions once each; the decoder then runs on the Q k
        pairs in chunks, each chunk's tokens gathered when it runs and its
        padding trimmed to its longest caption.
        """
        candidates = inputs.candidates  # (Q, k)
        unique, where = torch.unique(candidates, return_inverse=True)  # (U,), (Q, k)
        image_tokens = torch.cat([model.encode_image_tokens(inputs.load_images(unique[i:i + 256]))
                                  for i in range(0, len(unique), 256)])  # (U, 1+N, D)
        ids = inputs.query_ids
        mask = model.tokenizer.attention_mask(ids)  # (Q, L)
        order = torch.argsort(mask.sum(dim=1), stable=True)  # similar lengths share a chunk
        text_tokens = model.encode_text_tokens(ids)  # (Q, L, D)
        k = candidates.shape[1]
        pair_query = order.repeat_interleave(k)  # (Q k,)
        pair_image = where[order].reshape(-1)  # (Q k,)
        chunk = self.rerank_chunk  # each chunk's pairs gathered on their own: Q k copies of the tokens never exist
        flat = torch.cat([
            self.pair_scores(model, text_tokens[pair_query[start:start + chunk]], mask[pair_query[start:start + chunk]],
                             image_tokens[pair_image[start:start + chunk]])
            for start in range(0, len(pair_query), chunk)
        ])  # (Q k,)
        scores = torch.empty_like(inputs.scores, dtype=torch.float32)
        scores[order] = flat.reshape(-1, k)
        return scores + inputs.scores.float()


# --------------------------------------------------------------------------- ARA


class AttributeMasking:
    """ARA's masking of attribute words: a ``caption_hook`` returning ``mlm_ids`` and ``mlm_labels``.

    The attribute words are the tokens of the caption's key phrases
    (``phrases_for``: a :class:`~tireid_lite.text.phrase_table.PhraseTable`).
    ``mode="word"`` chooses each of those tokens with ``prob`` (CADA: 0.4);
    ``mode="phrase"`` each phrase whole with ``prob`` (CADA: 0.8). When none
    is chosen one token (word) or one phrase is, drawn uniformly. Chosen
    tokens become the mask token. A caption without key phrases falls back to
    random masking (p = 0.15).
    """

    def __init__(self, tokenizer: Any, phrases_for: Any, mode: str = "word", prob: float = 0.4) -> None:
        if mode not in ("word", "phrase"):
            raise ValueError(f"mode={mode!r}: use word or phrase")
        self.phrases = KeyPhraseMasking(tokenizer, phrases_for, 0.15)
        self.mode, self.prob = mode, float(prob)
        self.mask_token_id = tokenizer.mask_token_id

    def __call__(self, caption: str, ids: Tensor, rng: np.random.Generator) -> dict[str, Tensor]:
        original = ids.detach().cpu().numpy().astype(np.int64)  # (L,)
        groups = self.phrases.phrase_positions(caption, original)
        if not groups:
            return self.phrases.fallback(caption, ids, rng)
        if self.mode == "word":
            words = np.unique(np.concatenate(groups))
            chosen = words[rng.random(words.size) < self.prob]
            if chosen.size == 0:
                chosen = rng.choice(words, size=1)
        else:
            taken = [g for g in groups if rng.random() < self.prob] or [groups[rng.integers(len(groups))]]
            chosen = np.unique(np.concatenate(taken))
        masked, labels = original.copy(), np.full_like(original, IGNORE_INDEX)
        labels[chosen] = original[chosen]
        masked[chosen] = self.mask_token_id
        return {"mlm_ids": torch.from_numpy(masked).to(ids.device), "mlm_labels": torch.from_numpy(labels).to(ids.device)}


class AttributeHead(Head):
    """ARA: masked attribute words predicted by a decoder whose tokens cross-attend to the image."""

    name = "ara"
    losses = ("ara",)

    def __init__(self, dim: int, heads: int, depth: int, vocab_size: int, weight: float = 0.1) -> None:
        super().__init__()
        self.decoder = AssociationDecoder(dim, heads, depth, gate=False)
        self.predict = TokenPredictionHead(dim, vocab_size)
        self.loss_weights = {"ara": float(weight)}
        self.phrase_table = PhraseTable()

    @classmethod
    def build(cls, cfg: Config, ctx: HeadContext) -> AttributeHead | None:
        m, c = cfg.model, cfg.model.cada
        if c.ara_weight <= 0:
            return None
        head = cls(ctx.dim, m.cross_heads, c.depth, ctx.tokenizer.vocab_size, c.ara_weight)
        prob = c.ara_word_prob if c.ara_mode == "word" else c.ara_phrase_prob
        head.caption_hook = AttributeMasking(ctx.tokenizer, head.phrase_table, c.ara_mode, prob)
        return head

    @classmethod
    def needs(cls, cfg: Config) -> frozenset[str]:
        return frozenset({NEEDS_KEY_PHRASES}) if cfg.model.cada.ara_weight > 0 else frozenset()

    def prepare(self, model: Any, data: Any) -> None:
        """Parse the training captions' key phrases once (cached under ``$TIREID_CACHE/key_phrases``)."""
        train_set = getattr(data, "train_set", None)
        if train_set is not None:
            captions = training_captions(train_set)
            self.phrase_table.add(captions, phrase_cache_path(data.dataset.name, captions))

    def logits(self, model: Any, masked_ids: Tensor, image_tokens: Tensor) -> Tensor:
        """Vocabulary scores (B, L, V) of the masked captions ``masked_ids`` (B, L) read against the image."""
        mask = model.tokenizer.attention_mask(masked_ids)
        width = int(mask.sum(dim=1).max())  # positions after the longest caption hold no masked word
        text_tokens = model.text_tower(masked_ids, mask)[:, :width]  # (B, W, D)
        assoc = self.decoder(text_tokens, image_tokens, padding=~mask[:, :width].bool())
        logits = self.predict(assoc.tokens).float()  # (B, W, V)
        return F.pad(logits, (0, 0, 0, masked_ids.shape[1] - width))  # (B, L, V), zeros after the captions

    def forward(self, model: Any, enc: Encoded, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = self.logits(model, batch["mlm_ids"], enc.image_tokens)
        labels = batch["mlm_labels"]
        return {"ara": mlm_loss(logits, labels), "ara_acc": masked_accuracy(logits, labels)}


# --------------------------------------------------------------------------- probes (notebook 07)


@torch.no_grad()
def itm_pair_accuracy(model: Any, data: Any, sim: Tensor, q_pids: Any, g_pids: Any, split: str = "test") -> dict:
    """Does the ITM head tell each query's own image from its hardest negative? (percent, ties count half)

    For query q, the positive is the image its caption was written for and
    the negative the gallery image of another identity that the global
    similarity ``sim`` (Q, G) ranks highest. A head that scores every pair
    alike (disconnected, or zeroed) gets exactly 50. Returns ``accuracy``,
    the per-query ``pos_scores`` and ``neg_scores`` and ``neg_index`` (Q,).
    """
    head = model.heads["atp"]
    queries, gallery = data.queries(split), data.gallery(split)
    q_pids, g_pids = torch.as_tensor(np.asarray(q_pids)), torch.as_tensor(np.asarray(g_pids))
    other = sim.float().masked_fill(q_pids[:, None] == g_pids[None, :], float("-inf"))  # (Q, G)
    neg_index = other.argmax(dim=1)  # (Q,)
    pos_index = torch.as_tensor(np.asarray(queries.image_ids), dtype=torch.long)  # (Q,)
    needed = torch.unique(torch.cat([pos_index, neg_index]))
    tokens = torch.cat([model.encode_image_tokens(torch.stack([gallery[int(i)]["images"] for i in needed[s:s + 256]]))
                        for s in range(0, len(needed), 256)])  # (U, 1+N, D)
    slot = torch.full((int(needed.max()) + 1,), -1, dtype=torch.long)
    slot[needed] = torch.arange(len(needed))
    ids = torch.as_tensor(queries.caption_ids)
    mask = model.tokenizer.attention_mask(ids)
    text = model.encode_text_tokens(ids)  # (Q, L, D)
    pos = head.pair_scores(model, text, mask, tokens[slot[pos_index]])
    neg = head.pair_scores(model, text, mask, tokens[slot[neg_index]])
    accuracy = 100.0 * float(((pos > neg).float() + 0.5 * (pos == neg).float()).mean())
    return {"accuracy": accuracy, "pos_scores": pos, "neg_scores": neg, "neg_index": neg_index}


@torch.no_grad()
def ara_predictions(model: Any, data: Any, other_index: Tensor | None = None, split: str = "test",
                    count: int = 200, seed: int = 0) -> dict:
    """ARA's guesses for the masked attributes of the first ``count`` queries of ``split``, read against
    each caption's own image and, when ``other_index`` (Q,) names one per query, against another image.

    The attributes are masked as in training (the head's ``caption_hook``, draws from ``seed``); the
    key phrases of these captions are parsed once (cached). Returns ``accuracy`` (percent of masked
    tokens named right from the own image), ``accuracy_other`` (from the other image, or None),
    ``masked_ids``, ``labels`` and ``predicted`` (count, L) for figures.
    """
    head = model.heads["ara"]
    queries, gallery = data.queries(split), data.gallery(split)
    captions = list(data.dataset.eval_set(split).query_captions[:count])
    head.phrase_table.add(captions, phrase_cache_path(data.dataset.name, captions))
    rng = np.random.default_rng(seed)
    ids = torch.as_tensor(queries.caption_ids[:count])
    drawn = [head.caption_hook(caption, ids[i], rng) for i, caption in enumerate(captions)]
    masked = torch.stack([d["mlm_ids"] for d in drawn])  # (n, L)
    labels = torch.stack([d["mlm_labels"] for d in drawn])  # (n, L)

    def read_against(index: Any) -> Tensor:
        images = torch.stack([gallery[int(i)]["images"] for i in index])
        return head.logits(model, masked, model.encode_image_tokens(images))  # (n, L, V)

    own = read_against(np.asarray(queries.image_ids)[:count])
    out = {"accuracy": 100.0 * float(masked_accuracy(own, labels)), "accuracy_other": None,
           "masked_ids": masked, "labels": labels, "predicted": own.argmax(-1)}
    if other_index is not None:
        out["accuracy_other"] = 100.0 * float(masked_accuracy(read_against(other_index[:count].tolist()), labels))
    return out
