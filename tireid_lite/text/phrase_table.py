"""Caption -> its key phrases, each caption parsed once and the result cached per dataset.

KPDM's key-phrase masking draws whole phrases every time a caption is drawn,
so the phrases of every training caption are parsed once before training
(:meth:`PhraseTable.add`, through the JSON cache of
:func:`~tireid_lite.text.key_phrases.key_phrases_for_captions`) and looked up
afterwards. Taught in ``03_kpdm_key_phrase_masking``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tireid_lite.cache import cache_dir
from tireid_lite.text.key_phrases import captions_digest, extract_key_phrases_batch, key_phrases_for_captions


class PhraseTable:
    """Caption -> its key phrases; a caption not added is parsed the first time it is asked for."""

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
    """``$TIREID_CACHE/key_phrases/<dataset>-<digest>.json`` for this list of captions.

    Kept in the cache rather than beside the dataset, whose folder may be
    read-only or shared; the file name holds the captions' digest and the file
    records the spaCy model and the rules' version.
    """
    slug = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in dataset_name.lower()) or "dataset"
    return cache_dir() / "key_phrases" / f"{slug}-{captions_digest(captions)[:16]}.json"
