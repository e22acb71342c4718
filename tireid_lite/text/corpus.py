"""Corpus statistics of the training captions: how often each token occurs.

FMLM (:func:`~tireid_lite.losses.mlm.frequency_weights`) weights a masked
word by its inverse corpus frequency; the counts come from here, computed once
per run from the training captions. Taught in ``03_kpdm_key_phrase_masking``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from tireid_lite.errors import ConfigError
from tireid_lite.progress import progress


def corpus_token_counts(tokenizer: Any, captions: Iterable[str] | None = None, chunk: int = 4096) -> np.ndarray:
    """``(V,)`` int64: how often each token id occurs in ``captions`` (start/end tokens not counted).

    Without ``captions`` the tokenizer's own ``word_counts`` are returned (the
    word tokenizer keeps the counts of the captions it was trained on); a
    tokenizer without them, such as CLIP's BPE, needs the training captions.
    Counting the training captions with the word tokenizer gives exactly its
    ``word_counts``. Taught in ``03_kpdm_key_phrase_masking``.
    """
    if captions is None:
        counts = getattr(tokenizer, "word_counts", None)
        if counts is None:
            raise ConfigError(
                f"{type(tokenizer).__name__} keeps no word counts; pass the training captions: "
                "corpus_token_counts(tokenizer, captions)"
            )
        return np.asarray(counts, dtype=np.int64).copy()
    captions = list(captions)
    counts = np.zeros(tokenizer.vocab_size, dtype=np.int64)
    for start in progress(range(0, len(captions), chunk), desc="counting tokens", unit="chunk"):
        for ids in tokenizer.encode_batch(captions[start : start + chunk]):
            np.add.at(counts, np.asarray(ids[1:-1], dtype=np.int64), 1)
    return counts
