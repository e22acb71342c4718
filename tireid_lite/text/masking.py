"""Random token masking for masked language modelling (BERT's 80/10/10 rule, as in IRRA).

Taught in ``02_baseline_irra``. A masking strategy is a ``caption_hook`` of
the training dataset: called as ``hook(caption, ids, rng)`` each time an item
is drawn, so every epoch sees a freshly drawn mask. It returns ``mlm_ids`` (the
masked caption fed to the text tower) and ``mlm_labels`` (the original id at
the chosen positions, -100 elsewhere, as :func:`tireid_lite.losses.mlm.mlm_loss`
expects). Other strategies (key-phrase, attribute) must mask the same expected
number of tokens, :func:`expected_masked_tokens`, so ablations compare like
with like. :class:`KeyPhraseMasking` (KPDM's, taught in
``03_kpdm_key_phrase_masking``) masks whole key phrases under that budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer as HFTokenizer
from torch import Tensor

from tireid_lite.errors import ConfigError
from tireid_lite.text.tokenizers import Tokenizer

IGNORE_INDEX = -100
MASK_SHARE = 0.8  # chosen tokens replaced by the mask token
RANDOM_SHARE = 0.1  # chosen tokens replaced by a random ordinary token; the rest stay unchanged


def _check_prob(prob: float) -> None:
    if not 0.0 <= prob <= 1.0:
        raise ConfigError(f"masking prob={prob} is not a probability; use a value in [0, 1] (IRRA uses 0.15)")


def expected_masked_tokens(num_ordinary_tokens: int, prob: float) -> float:
    """Expected number of tokens :class:`RandomTokenMasking` chooses in a caption.

    Each of the n ordinary tokens is chosen with probability p, and when none
    is (probability (1-p)^n) exactly one is chosen instead::

        E[chosen] = p * n + (1 - p)^n     (0 when n = 0)

    This is the budget other masking strategies match. Taught in ``02_baseline_irra``.
    """
    if num_ordinary_tokens < 0:
        raise ValueError(f"num_ordinary_tokens must be >= 0, got {num_ordinary_tokens}")
    _check_prob(prob)
    if num_ordinary_tokens == 0:
        return 0.0
    return prob * num_ordinary_tokens + (1.0 - prob) ** num_ordinary_tokens


class RandomTokenMasking:
    """IRRA's random masking: each ordinary token chosen with ``prob``; 80% mask, 10% random, 10% kept.

    ``mask_token_id`` is the tokenizer's mask token; ``vocab_size`` the size
    of its vocabulary; ``special_ids`` every id that is not an ordinary word
    piece: start/end-of-text, padding, the mask token itself (it is added if
    missing), class/separator tokens. Special positions are never chosen, and
    random replacements are drawn uniformly from the ordinary ids only.

    If no token of a caption is chosen and it has at least one ordinary token,
    one ordinary position, drawn uniformly, is chosen and replaced by the mask
    token (IRRA's "mask at least one" rule). Where the kit differs from IRRA's
    code: IRRA always forces the first token after start-of-text, and draws
    random replacements from a fixed id range rather than from the non-special
    ids. Taught in ``02_baseline_irra``.
    """

    def __init__(
        self,
        mask_token_id: int,
        vocab_size: int,
        special_ids: Iterable[int],
        prob: float = 0.15,
    ) -> None:
        _check_prob(prob)
        if not 0 <= mask_token_id < vocab_size:
            raise ConfigError(
                f"mask_token_id={mask_token_id} is outside the vocabulary 0..{vocab_size - 1}; "
                "pass the tokenizer's mask token id and its full vocabulary size"
            )
        special = sorted({int(i) for i in special_ids} | {int(mask_token_id)})
        outside = [i for i in special if not 0 <= i < vocab_size]
        if outside:
            raise ConfigError(
                f"special_ids {outside} are outside the vocabulary 0..{vocab_size - 1}; "
                "pass the tokenizer's own special token ids"
            )
        ordinary = np.setdiff1d(np.arange(vocab_size, dtype=np.int64), np.asarray(special, dtype=np.int64))
        if ordinary.size == 0:
            raise ConfigError(
                f"every id of the vocabulary of {vocab_size} is listed in special_ids; "
                "list only the special tokens"
            )
        self.mask_token_id = int(mask_token_id)
        self.vocab_size = int(vocab_size)
        self.special_ids = np.asarray(special, dtype=np.int64)
        self.ordinary_ids = ordinary
        self.prob = float(prob)

    def __repr__(self) -> str:
        return (
            f"RandomTokenMasking(mask_token_id={self.mask_token_id}, vocab_size={self.vocab_size}, "
            f"special_ids={self.special_ids.tolist()}, prob={self.prob})"
        )

    def __call__(self, caption: str, ids: Tensor, rng: np.random.Generator) -> dict[str, Tensor]:
        """Mask one tokenised caption ``ids`` (L,); ``caption`` is unused by this strategy."""
        original = _checked_ids(ids, self.vocab_size)  # (L,)
        ordinary_pos = np.flatnonzero(~np.isin(original, self.special_ids))  # (N,)
        masked_ids, labels = self._mask(original, ordinary_pos, rng)
        return _as_tensors(masked_ids, labels, ids)

    def mask_batch(self, captions: Sequence[str], ids: Tensor, rngs: Sequence[np.random.Generator]) -> dict[str, Tensor]:
        """Mask a batch ``ids`` (B, L), row ``b`` with its own generator ``rngs[b]``: row ``b`` of the
        result equals ``self(captions[b], ids[b], rngs[b])`` (the same draws in the same order).

        Only the draws are made row by row (each row's generator is its own, so rows may take turns
        between draws); choosing, the 80/10/10 split and the writes are done for the whole batch.
        ``rng.choice(a, size=k)`` of the per-row path is ``a[rng.integers(0, len(a), size=k)]``
        (numpy's definition of ``choice`` with replacement), which is what is drawn here."""
        if ids.dim() != 2 or len(rngs) != ids.shape[0]:
            raise ValueError(f"ids must be (B, L) with one generator per row; got {tuple(ids.shape)} and {len(rngs)}")
        original = _checked_ids(ids, self.vocab_size, ndim=2)  # (B, L)
        masked_ids = original.copy()  # (B, L)
        labels = np.full_like(original, IGNORE_INDEX)  # (B, L)
        rows, cols = np.nonzero(~np.isin(original, self.special_ids))  # (T,) each: ordinary tokens, row by row
        counts = np.bincount(rows, minlength=len(rngs))  # (B,) ordinary tokens per row
        if rows.size == 0:
            return _as_tensors(masked_ids, labels, ids)
        draws = np.concatenate([rng.random(n) for rng, n in zip(rngs, counts.tolist())])  # (T,)
        chosen = draws < self.prob  # (T,)
        chosen_counts = np.bincount(rows[chosen], minlength=len(rngs))  # (B,)
        starts = np.cumsum(counts) - counts  # (B,) each row's first token in rows/cols
        for b in np.flatnonzero((chosen_counts == 0) & (counts > 0)).tolist():  # none chosen: one forced
            forced = cols[starts[b] + int(rngs[b].integers(0, counts[b], size=1)[0])]
            masked_ids[b, forced] = self.mask_token_id
            labels[b, forced] = original[b, forced]
        chosen_rows, chosen_cols = rows[chosen], cols[chosen]  # (K,) row by row, positions ascending
        if chosen_rows.size == 0:
            return _as_tensors(masked_ids, labels, ids)
        action = np.concatenate([rngs[b].random(k) for b, k in enumerate(chosen_counts.tolist()) if k > 0])  # (K,)
        to_mask = action < MASK_SHARE
        to_random = (action >= MASK_SHARE) & (action < MASK_SHARE + RANDOM_SHARE)
        masked_ids[chosen_rows[to_mask], chosen_cols[to_mask]] = self.mask_token_id
        random_counts = np.bincount(chosen_rows[to_random], minlength=len(rngs))  # (B,)
        if random_counts.any():
            picks = [rngs[b].integers(0, self.ordinary_ids.size, size=r)
                     for b, r in enumerate(random_counts.tolist()) if r > 0]
            masked_ids[chosen_rows[to_random], chosen_cols[to_random]] = self.ordinary_ids[np.concatenate(picks)]
        labels[chosen_rows, chosen_cols] = original[chosen_rows, chosen_cols]
        return _as_tensors(masked_ids, labels, ids)

    def _mask(self, original: np.ndarray, ordinary_pos: np.ndarray, rng: np.random.Generator):
        """Choose among ``ordinary_pos`` (N,) of ``original`` (L,) and replace: (masked ids, labels)."""
        chosen = ordinary_pos[rng.random(ordinary_pos.size) < self.prob]  # (K,)
        if chosen.size == 0 and ordinary_pos.size > 0:
            forced = rng.choice(ordinary_pos, size=1)  # (1,)
            masked_ids = original.copy()  # (L,)
            labels = np.full_like(original, IGNORE_INDEX)  # (L,)
            masked_ids[forced] = self.mask_token_id
            labels[forced] = original[forced]
            return masked_ids, labels
        return self._replace(original, chosen, rng)

    def _replace(self, original: np.ndarray, chosen: np.ndarray, rng: np.random.Generator):
        """BERT's 80/10/10 rule at the ``chosen`` positions of ``original`` (L,): (masked ids, labels)."""
        masked_ids = original.copy()  # (L,)
        labels = np.full_like(original, IGNORE_INDEX)  # (L,)
        action = rng.random(chosen.size)  # (K,) uniform: which of the three replacements
        to_mask = chosen[action < MASK_SHARE]
        to_random = chosen[(action >= MASK_SHARE) & (action < MASK_SHARE + RANDOM_SHARE)]
        masked_ids[to_mask] = self.mask_token_id
        masked_ids[to_random] = rng.choice(self.ordinary_ids, size=to_random.size)
        labels[chosen] = original[chosen]
        return masked_ids, labels


def _checked_ids(ids: Tensor, vocab_size: int, ndim: int = 1) -> np.ndarray:
    """``ids`` (L,) (or (B, L) with ``ndim=2``) as an int64 numpy array, after checking its shape, dtype and range."""
    if ids.dim() != ndim or ids.dtype.is_floating_point or ids.dtype == torch.bool:
        shape = "(L,)" if ndim == 1 else "(B, L)"
        raise ValueError(
            f"ids must be a {shape} integer tensor of token ids, got shape {tuple(ids.shape)} "
            f"and dtype {ids.dtype}"
        )
    original = ids.detach().cpu().numpy().astype(np.int64)  # (L,)
    if original.size and (original.min() < 0 or original.max() >= vocab_size):
        raise ValueError(
            f"ids range from {original.min()} to {original.max()}, outside the vocabulary "
            f"0..{vocab_size - 1}; tokenise with the tokenizer this masking was built for"
        )
    return original


def _as_tensors(masked_ids: np.ndarray, labels: np.ndarray, like: Tensor) -> dict[str, Tensor]:
    return {
        "mlm_ids": torch.from_numpy(masked_ids).to(like.device),
        "mlm_labels": torch.from_numpy(labels).to(like.device),
    }


# --------------------------------------------------------------------------- key-phrase masking

_PIECES = re.compile(r"\w+|[^\w\s]")  # words and single punctuation marks
_WORDS = re.compile(r"\S+")


def _encode_pieces(tokenizer: Tokenizer, caption: str, pattern: re.Pattern[str]):
    """Body ids and spans from re-tokenising each piece of ``caption`` alone (each token gets its piece's span)."""
    matches = list(pattern.finditer(caption))
    bodies = tokenizer.encode_batch([m.group() for m in matches]) if matches else []
    ids: list[int] = []
    spans: list[tuple[int, int]] = []
    for match, encoded in zip(matches, bodies):
        body = encoded[1:-1]
        ids += body
        spans += [match.span()] * len(body)
    return ids, spans


def token_offsets(tokenizer: Tokenizer, caption: str) -> tuple[list[int], list[tuple[int, int]]]:
    """The ids of ``tokenizer.encode(caption)`` without start/end tokens, and each one's character span.

    A token's span ``(start, end)`` indexes ``caption`` itself (before
    lowercasing or accent stripping). The kit's tokenizers are built on HF
    ``tokenizers``, whose encodings carry these offsets; for another tokenizer
    each word and punctuation mark is re-tokenised alone (every sub-word gets
    its word's span), or, when that does not reproduce the full encoding, each
    white-space separated word. Taught in ``03_kpdm_key_phrase_masking``.
    """
    backend = getattr(tokenizer, "_backend", None)
    if isinstance(backend, HFTokenizer):
        encoding = backend.encode(caption, add_special_tokens=False)
        return list(encoding.ids), [tuple(span) for span in encoding.offsets]
    body = tokenizer.encode(caption)[1:-1]
    for pattern in (_PIECES, _WORDS):
        ids, spans = _encode_pieces(tokenizer, caption, pattern)
        if ids == body:
            return ids, spans
    raise ConfigError(
        f"{type(tokenizer).__name__} gives no character offsets and does not tokenise words independently, "
        "so key phrases cannot be located in its ids; use one of the kit's tokenizers"
    )


def span_token_positions(
    tokenizer: Tokenizer,
    caption: str,
    spans: Sequence[tuple[int, int]],
    offsets: Sequence[tuple[int, int]] | None = None,
) -> list[np.ndarray]:
    """For each character span ``(start, end)`` of ``caption``, the positions in ``tokenizer.encode(caption)``
    of the tokens that overlap it (every sub-word of every word it touches); position 0 is the start token.

    A token overlaps a span when ``token_start < end and token_end > start``. ``offsets`` are the
    caption's token offsets when already computed (:func:`token_offsets`). This is how
    :class:`KeyPhraseMasking` finds a phrase's tokens. Taught in ``03_kpdm_key_phrase_masking``.
    """
    if offsets is None:
        _, offsets = token_offsets(tokenizer, caption)
    return [_overlapping(offsets, start, end) + 1 for start, end in spans]


def _overlapping(offsets: Sequence[tuple[int, int]], start: int, end: int) -> np.ndarray:
    """Indices of the tokens whose character span overlaps ``start:end``."""
    spans = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)  # (T, 2)
    return np.flatnonzero((spans[:, 0] < end) & (spans[:, 1] > start))


PhraseSource = Mapping[str, Sequence[Any]] | Callable[[str], Sequence[Any]]


class KeyPhraseMasking:
    """KPDM's key-phrase masking: whole key phrases masked as units, re-drawn at every call.

    Called like :class:`RandomTokenMasking` (``hook(caption, ids, rng)``,
    returning ``mlm_ids`` and ``mlm_labels``). ``phrases_for`` gives the key
    phrases of a caption (objects with character offsets ``.start`` and
    ``.end``, such as :class:`~tireid_lite.text.key_phrases.KeyPhrase`):
    either a mapping caption -> phrases, for example
    ``dict(zip(captions, key_phrases_for_captions(captions, cache_path)))``,
    or a callable such as :func:`~tireid_lite.text.key_phrases.extract_key_phrases`
    (slow: it parses at every call). A caption missing from a mapping is an
    error; when the dataset mirrors captions on a horizontal flip, include the
    mirrored captions in the mapping too.

    Each call, with N the ordinary tokens of ``ids`` and the budget
    B = :func:`expected_masked_tokens` (N, prob) = p N + (1 - p)^N:

    1. Each phrase becomes the positions of all the tokens (sub-words
       included) that overlap its characters, special tokens left out; a
       phrase cut by truncation is dropped. No phrase left: the caption is
       masked by :class:`RandomTokenMasking` (the fallback).
    2. The phrases are shuffled (a fresh order every call: "dynamic").
       Walking that order with c the tokens taken so far, a phrase of s tokens
       is taken whole while c + s <= B; the first phrase that would overshoot
       is taken with probability (B - c) / s and the walk stops.
    3. If every phrase fits (c = P, all phrase tokens, with P < B), the rest
       is topped up with floor(B - P) non-phrase ordinary tokens, plus one more
       with probability frac(B - P), drawn uniformly.
    4. Each chosen token follows the 80/10/10 rule of :class:`RandomTokenMasking`.

    Why the budget holds exactly: for any order, when the walk stops at an
    overshooting phrase the count is c + s * Bernoulli((B - c) / s), whose
    mean is B; when no phrase overshoots it is P + (B - P) on average. So
    every caption gets B masked tokens in expectation, as under random
    masking, and ablations compare like with like. (N - P >= B - P, so the
    top-up always finds enough tokens.) Unlike random masking, a caption may
    get no masked token, when the first phrase drawn is larger than B and
    loses its draw. Taught in ``03_kpdm_key_phrase_masking``.
    """

    def __init__(self, tokenizer: Tokenizer, phrases_for: PhraseSource, prob: float = 0.15) -> None:
        if not (isinstance(phrases_for, Mapping) or callable(phrases_for)):
            raise ConfigError(
                f"phrases_for is a {type(phrases_for).__name__}; pass a dict caption -> key phrases "
                "or a function such as extract_key_phrases"
            )
        self.tokenizer = tokenizer
        self.phrases_for = phrases_for
        self.fallback = RandomTokenMasking(tokenizer.mask_token_id, tokenizer.vocab_size, tokenizer.special_ids, prob)
        self.prob = float(prob)
        self._is_special_id = np.zeros(tokenizer.vocab_size, dtype=bool)  # (V,)
        self._is_special_id[self.fallback.special_ids] = True

    def __repr__(self) -> str:
        return f"KeyPhraseMasking(tokenizer={self.tokenizer!r}, prob={self.prob})"

    def _phrases(self, caption: str) -> Sequence[Any]:
        if isinstance(self.phrases_for, Mapping):
            try:
                return self.phrases_for[caption]
            except KeyError:
                raise ConfigError(
                    f"no key phrases for the caption {caption!r}; build the mapping from every caption the "
                    "dataset yields (mirrored ones included when images are flipped)"
                ) from None
        return self.phrases_for(caption)

    def phrase_positions(self, caption: str, original: np.ndarray) -> list[np.ndarray]:
        """Token positions of each key phrase of ``caption`` in its ids ``original`` (L,), as maskable units.

        Special tokens are left out, phrases cut by truncation or made of
        special tokens only are dropped, and phrases that share a token are merged.
        """
        phrases = self._phrases(caption)
        if not phrases:
            return []
        body, offsets = token_offsets(self.tokenizer, caption)
        kept = min(len(body), original.size - 2)  # body tokens left after truncation (the end token stays)
        starts_right = kept >= 0 and original[0] == self.tokenizer.sot_id
        if not (starts_right and np.array_equal(original[1 : 1 + kept], body[:kept])):
            raise ValueError(
                f"ids do not start with the tokenisation of the caption {caption!r}; pass the ids the "
                "masking's tokenizer made from this very caption"
            )
        is_special = self._is_special_id[original]  # (L,)
        owner = np.full(original.size, -1)  # (L,) which group holds each position
        groups: list[np.ndarray] = []
        spans = [(phrase.start, phrase.end) for phrase in phrases]
        for positions in span_token_positions(self.tokenizer, caption, spans, offsets):  # (S,) each, start token at 0
            if positions.size == 0 or positions[-1] > kept:
                continue  # no token, or cut by truncation
            positions = positions[~is_special[positions]]
            if positions.size == 0:
                continue
            shared = owner[positions]
            shared = shared[shared >= 0]
            if shared.size:
                merged = int(shared[0])
                groups[merged] = np.union1d(groups[merged], positions)
                owner[positions] = merged
            else:
                owner[positions] = len(groups)
                groups.append(positions)
        return groups

    def __call__(self, caption: str, ids: Tensor, rng: np.random.Generator) -> dict[str, Tensor]:
        """Mask one tokenised caption ``ids`` (L,) made from ``caption`` by the masking's tokenizer."""
        original = _checked_ids(ids, self.fallback.vocab_size)  # (L,)
        groups = self.phrase_positions(caption, original)
        if not groups:
            return self.fallback(caption, ids, rng)
        ordinary_pos = np.flatnonzero(~self._is_special_id[original])  # (N,)
        budget = expected_masked_tokens(ordinary_pos.size, self.prob)
        taken: list[np.ndarray] = []
        count = 0
        overshot = False
        for g in rng.permutation(len(groups)):
            size = groups[g].size
            if count + size <= budget:
                taken.append(groups[g])
                count += size
                continue
            if rng.random() < (budget - count) / size:
                taken.append(groups[g])
            overshot = True
            break
        if not overshot and count < budget:
            rest = np.setdiff1d(ordinary_pos, np.concatenate(groups))  # (N - P,)
            extra = budget - count
            num_extra = min(int(np.floor(extra)) + int(rng.random() < extra - np.floor(extra)), rest.size)
            taken.append(rng.choice(rest, size=num_extra, replace=False))
        chosen = np.sort(np.concatenate(taken)) if taken else np.empty(0, dtype=np.int64)  # (K,)
        masked_ids, labels = self.fallback._replace(original, chosen.astype(np.int64), rng)
        return _as_tensors(masked_ids, labels, ids)


# --------------------------------------------------------------------------- RDE's text augmentation

TEXT_AUG_SPLIT = (0.6, 0.2, 0.2)  # of the chosen tokens: masked, replaced by a random token, deleted (RDE's code)


def augment_caption_ids(ids: Tensor, tokenizer: Tokenizer, prob: float, rng: np.random.Generator) -> Tensor:
    """RDE's ``--txt_aug`` on one caption's ids (L,): each ordinary token is chosen with ``prob`` (RDE: 0.2);
    a chosen token becomes the mask token (60%), a random ordinary token (20%) or is deleted (20%), the
    tokens after a deletion moving left and the end padded (``datasets/bases.py``, ``txt_data_aug``).
    Special tokens (start, end, padding, mask) are kept. Returns a new (L,) tensor."""
    if not 0.0 <= prob <= 1.0:
        raise ConfigError(f"text augmentation probability {prob!r} is not in [0, 1]; RDE uses 0.2")
    values = ids.tolist()
    special = tokenizer.special_ids
    ordinary = np.setdiff1d(np.arange(tokenizer.vocab_size), np.fromiter(special, dtype=np.int64))
    out: list[int] = []
    for token in values:
        if token in special or rng.random() >= prob:
            out.append(token)
            continue
        draw = rng.random()
        if draw < TEXT_AUG_SPLIT[0]:
            out.append(tokenizer.mask_token_id)
        elif draw < TEXT_AUG_SPLIT[0] + TEXT_AUG_SPLIT[1]:
            out.append(int(rng.choice(ordinary)))
        # else: deleted
    out += [tokenizer.pad_id] * (len(values) - len(out))
    return torch.tensor(out, dtype=ids.dtype)
