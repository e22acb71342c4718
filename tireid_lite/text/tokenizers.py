"""Tokenizers behind one interface: a word-level one for from-scratch text towers, CLIP's BPE for pretrained ones.

Taught in ``01_data`` (captions to ids) and used by every training notebook.

Both kinds share the :class:`Tokenizer` interface:

* ``encode(text)`` gives ``[start] + tokens + [end]`` with no padding and no truncation;
* ``tokenizer(texts)`` gives a ``(B, max_length)`` ``LongTensor``: sequences longer than
  ``max_length`` lose their tail words and keep the end token in the last slot (IRRA's
  rule), shorter ones are padded with ``pad_id``;
* ``attention_mask(ids)`` marks every position up to and including the first end token,
  so it is right even when ``pad_id == eot_id`` (as for CLIP);
* ``decode`` skips every id in ``special_ids``; ``save(directory)`` writes the files plus
  a small ``tireid_tokenizer.json`` (kind and settings) that :func:`load_tokenizer` reads.

:class:`WordTokenizer` is built with HF ``tokenizers`` (``models.WordLevel``): the
normaliser decomposes (NFKD), strips accents and lowercases, so "Café", "café" and "cafe"
are one word and full-width punctuation becomes ASCII; the pre-tokenizer splits on white
space and isolates every punctuation mark. Special tokens come first
(``[PAD]=0, [SOS]=1, [EOS]=2, [MASK]=3, [UNK]=4``), then words sorted by corpus frequency
(descending) and alphabetically within a frequency, so the ids depend only on the captions.

:class:`CLIPBPETokenizer` loads CLIP's byte-level BPE from a local checkpoint directory.
CLIP has no mask token; the kit follows IRRA's convention: ``<|mask|>`` takes the id of
the last BPE merge (the rarely used token at id 49405 in CLIP's 49,408-entry vocabulary)
and that merge is dropped, so the vocabulary size, the start (49406) and end (49407) ids
and the pretrained embedding table all stay as they are, and checkpoints trained with
IRRA's tokenizer keep their meaning. Padding uses the checkpoint's pad token (CLIP's is
``<|endoftext|>``); a causal text tower pooling at the first end token never reads it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar, Iterable, Sequence

import numpy as np
import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, normalizers, pre_tokenizers

from tireid_lite.checkpoint import read_folder, write_folder
from tireid_lite.errors import ConfigError
from tireid_lite.progress import progress

META_FILE = "tireid_tokenizer.json"
FORMAT_VERSION = 1
GET_CLIP_HINT = "run `python data_setup/get_clip.py --out {directory}`"

IdsLike = Sequence[int] | torch.Tensor | np.ndarray


def _id_list(ids: IdsLike) -> list[int]:
    """One sequence of ids as a plain list; a batch (2-D) is refused."""
    if isinstance(ids, (torch.Tensor, np.ndarray)):
        if ids.ndim != 1:
            raise ValueError(
                f"expected one sequence of ids (1-D), got shape {tuple(ids.shape)}; decode rows one at a time"
            )
        return [int(i) for i in ids.tolist()]
    return [int(i) for i in ids]


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder, then rename."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_meta(directory: Path) -> dict[str, Any]:
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise ConfigError(
            f"{meta_path} not found: {directory} holds no saved tokenizer; "
            f"save one with tokenizer.save({str(directory)!r})"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{meta_path} is not valid JSON ({err}); save the tokenizer again") from err
    if not isinstance(meta, dict) or "kind" not in meta:
        raise ConfigError(f"{meta_path} has no 'kind' entry; save the tokenizer again")
    return meta


class Tokenizer(ABC):
    """The interface shared by the kit's tokenizers (see the module docstring)."""

    kind: ClassVar[str]

    vocab_size: int
    max_length: int
    pad_id: int
    sot_id: int
    eot_id: int
    mask_token_id: int
    unk_id: int
    special_ids: frozenset[int]

    def _set_specials(self, *, pad: int, sot: int, eot: int, mask: int, unk: int) -> None:
        self.pad_id, self.sot_id, self.eot_id = pad, sot, eot
        self.mask_token_id, self.unk_id = mask, unk
        self.special_ids = frozenset({pad, sot, eot, mask, unk})

    @staticmethod
    def _check_max_length(max_length: int) -> int:
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ConfigError(
                f"max_length={max_length!r} is too small; it needs room for the start and end tokens (use >= 2)"
            )
        return max_length

    @abstractmethod
    def _encode_bodies(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, without start/end tokens."""

    def encode(self, text: str) -> list[int]:
        """``[sot] + tokens + [eot]``: no padding, no truncation."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        """:meth:`encode` for many texts at once (faster than a loop)."""
        texts = list(texts)
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"captions must be str, got {type(text).__name__}: {text!r}")
        return [[self.sot_id, *body, self.eot_id] for body in self._encode_bodies(texts)]

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Encode, truncate (the end token stays last) and pad: ``(B, max_length)`` long."""
        if isinstance(texts, str):
            texts = [texts]
        encoded = self.encode_batch(texts)
        out = torch.full((len(encoded), self.max_length), self.pad_id, dtype=torch.long)  # (B, L)
        for row, ids in enumerate(encoded):
            if len(ids) > self.max_length:
                ids = ids[: self.max_length - 1] + [self.eot_id]
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def attention_mask(self, ids: torch.Tensor) -> torch.Tensor:
        """1 at every position up to and including the first end token, 0 after.

        Works on ``(L,)`` or ``(B, L)``; a row without an end token (not made by this
        tokenizer) falls back to ``ids != pad_id``.
        """
        is_end = ids == self.eot_id  # (..., L)
        has_end = is_end.any(dim=-1, keepdim=True)  # (..., 1)
        first_end = is_end.long().argmax(dim=-1, keepdim=True)  # (..., 1)
        positions = torch.arange(ids.shape[-1], device=ids.device)  # (L,)
        upto_end = positions <= first_end  # (..., L)
        return torch.where(has_end, upto_end, ids != self.pad_id).long()

    def _check_ids(self, ids: list[int]) -> None:
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(
                f"token ids {bad[:5]} are outside this tokenizer's vocabulary (0..{self.vocab_size - 1})"
            )

    @abstractmethod
    def _decode_ordinary(self, ids: list[int]) -> str:
        """Text of ids that contain no special id."""

    def decode(self, ids: IdsLike) -> str:
        """Text of one id sequence, skipping every id in ``special_ids``."""
        id_list = _id_list(ids)
        self._check_ids(id_list)
        return self._decode_ordinary([i for i in id_list if i not in self.special_ids])

    @abstractmethod
    def convert_ids_to_tokens(self, ids: IdsLike) -> list[str]:
        """The vocabulary entry of each id, specials included."""

    @abstractmethod
    def _save_files(self, directory: Path) -> dict[str, Any]:
        """Write the kind's own files; return the settings for ``tireid_tokenizer.json``."""

    def save(self, directory: str | Path) -> Path:
        """Write this tokenizer to ``directory`` (created if needed); :func:`load_tokenizer` reads it back."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        settings = self._save_files(directory)
        meta = {"kind": self.kind, "format_version": FORMAT_VERSION, "max_length": self.max_length, **settings}
        # written last: its presence marks a complete save
        _write_atomic(directory / META_FILE, json.dumps(meta, indent=1) + "\n")
        return directory

    @classmethod
    @abstractmethod
    def _from_saved(cls, directory: Path, meta: dict[str, Any]) -> "Tokenizer":
        """Rebuild from a directory written by :meth:`save`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, max_length={self.max_length})"


class WordTokenizer(Tokenizer):
    """Word-level tokenizer trained on the training captions (from-scratch text towers).

    ``word_counts[i]`` is how often token ``i`` occurs in the training captions (0 for
    the specials except ``[UNK]``, which counts the words dropped by ``min_freq``); the
    frequency-weighted MLM loss reads it.
    """

    kind = "word"
    SPECIAL_TOKENS = ("[PAD]", "[SOS]", "[EOS]", "[MASK]", "[UNK]")

    def __init__(self, backend: HFTokenizer, *, max_length: int, word_counts: np.ndarray, lowercase: bool) -> None:
        self._backend = backend
        self.max_length = self._check_max_length(max_length)
        self.lowercase = lowercase
        self.vocab_size = backend.get_vocab_size()
        counts = np.array(word_counts, dtype=np.int64)  # a copy: runs may share one tokenizer
        if counts.shape != (self.vocab_size,):
            raise ConfigError(
                f"word_counts has shape {counts.shape}, expected ({self.vocab_size},); save the tokenizer again"
            )
        self.word_counts = counts
        pad, sot, eot, mask, unk = (backend.token_to_id(t) for t in self.SPECIAL_TOKENS)
        self._set_specials(pad=pad, sot=sot, eot=eot, mask=mask, unk=unk)

    @staticmethod
    def _normalizer(lowercase: bool) -> normalizers.Normalizer:
        steps = [normalizers.NFKD(), normalizers.StripAccents()]
        if lowercase:
            steps.append(normalizers.Lowercase())
        return normalizers.Sequence(steps)

    @staticmethod
    def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
        return pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")])

    @classmethod
    def train(
        cls,
        captions: Iterable[str],
        *,
        max_length: int = 64,
        min_freq: int = 1,
        lowercase: bool = True,
    ) -> "WordTokenizer":
        """Build the vocabulary from ``captions``: words seen at least ``min_freq`` times.

        Ids: the five specials, then words by decreasing frequency, ties alphabetical.
        """
        cls._check_max_length(max_length)
        if isinstance(min_freq, bool) or not isinstance(min_freq, int) or min_freq < 1:
            raise ConfigError(f"min_freq={min_freq!r} is invalid; use an integer >= 1")
        normalizer, pre_tokenizer = cls._normalizer(lowercase), cls._pre_tokenizer()
        captions = list(captions)
        if not captions:
            raise ConfigError(
                "no captions given: the word tokenizer needs the training captions to build its vocabulary"
            )
        for caption in captions:
            if not isinstance(caption, str):
                raise TypeError(f"captions must be str, got {type(caption).__name__}: {caption!r}")
        counts: Counter[str] = Counter()
        chunk = 4096
        for start in progress(range(0, len(captions), chunk), desc="counting words", unit="chunk"):
            # one normaliser pass per chunk; the newline keeps words of different captions apart
            text = normalizer.normalize_str("\n".join(captions[start : start + chunk]))
            counts.update(word for word, _span in pre_tokenizer.pre_tokenize_str(text))

        kept = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        vocab = {tok: i for i, tok in enumerate(cls.SPECIAL_TOKENS)}
        vocab.update({word: len(cls.SPECIAL_TOKENS) + i for i, word in enumerate(kept)})
        word_counts = np.zeros(len(vocab), dtype=np.int64)
        word_counts[len(cls.SPECIAL_TOKENS) :] = [counts[w] for w in kept]
        word_counts[vocab["[UNK]"]] = sum(c for c in counts.values() if c < min_freq)

        backend = HFTokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
        backend.normalizer = normalizer
        backend.pre_tokenizer = pre_tokenizer
        backend.add_special_tokens(list(cls.SPECIAL_TOKENS))
        return cls(backend, max_length=max_length, word_counts=word_counts, lowercase=lowercase)

    def _encode_bodies(self, texts: list[str]) -> list[list[int]]:
        return [enc.ids for enc in self._backend.encode_batch(texts, add_special_tokens=False)]

    def _decode_ordinary(self, ids: list[int]) -> str:
        return self._backend.decode(ids, skip_special_tokens=False)

    def convert_ids_to_tokens(self, ids: IdsLike) -> list[str]:
        id_list = _id_list(ids)
        self._check_ids(id_list)
        return [self._backend.id_to_token(i) for i in id_list]

    def _save_files(self, directory: Path) -> dict[str, Any]:
        _write_atomic(directory / "tokenizer.json", self._backend.to_str())
        return {"lowercase": self.lowercase, "word_counts": self.word_counts.tolist()}

    @classmethod
    def _from_saved(cls, directory: Path, meta: dict[str, Any]) -> "WordTokenizer":
        path = directory / "tokenizer.json"
        try:
            backend = HFTokenizer.from_file(str(path))
        except Exception as err:  # tokenizers raises a bare Exception for unreadable files
            raise ConfigError(f"cannot read {path} ({err}); save the word tokenizer again") from err
        try:
            counts, lowercase = np.asarray(meta["word_counts"]), meta["lowercase"]
        except KeyError as err:
            raise ConfigError(f"{directory / META_FILE} lacks the key {err}; save the word tokenizer again") from err
        return cls(backend, max_length=meta["max_length"], word_counts=counts, lowercase=lowercase)


class CLIPBPETokenizer(Tokenizer):
    """CLIP's byte-level BPE tokenizer read from a local checkpoint directory (pretrained text towers).

    ``<|mask|>`` follows IRRA's convention (see the module docstring): it replaces the
    token of the last BPE merge, so ``vocab_size`` equals the checkpoint's (49,408 for CLIP).
    """

    kind = "clip_bpe"
    SOT, EOT, MASK = "<|startoftext|>", "<|endoftext|>", "<|mask|>"

    def __init__(self, hf_tokenizer: Any, *, max_length: int = 77) -> None:
        self._hf = hf_tokenizer
        self._backend: HFTokenizer = hf_tokenizer.backend_tokenizer
        self.max_length = self._check_max_length(max_length)
        self.vocab_size = len(hf_tokenizer)
        ids = {tok: hf_tokenizer.convert_tokens_to_ids(tok) for tok in (self.SOT, self.EOT, self.MASK)}
        pad = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else ids[self.EOT]
        unk = hf_tokenizer.unk_token_id if hf_tokenizer.unk_token_id is not None else ids[self.EOT]
        self._set_specials(pad=pad, sot=ids[self.SOT], eot=ids[self.EOT], mask=ids[self.MASK], unk=unk)

    @staticmethod
    def _check_directory(directory: Path) -> None:
        hint = GET_CLIP_HINT.format(directory=directory)
        if not directory.is_dir():
            raise ConfigError(f"CLIP tokenizer directory {directory} does not exist; {hint}")
        if (directory / "tokenizer.json").is_file():
            return
        missing = [name for name in ("vocab.json", "merges.txt") if not (directory / name).is_file()]
        if missing:
            raise ConfigError(
                f"CLIP tokenizer directory {directory} is incomplete: missing {', '.join(missing)} "
                f"(or a tokenizer.json); {hint}"
            )

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, max_length: int = 77) -> "CLIPBPETokenizer":
        """Load the tokenizer of a local CLIP checkpoint (as written by HF ``save_pretrained``)."""
        from transformers import CLIPTokenizer

        directory = Path(directory)
        cls._check_directory(directory)
        try:
            hf = CLIPTokenizer.from_pretrained(str(directory), local_files_only=True)
        except Exception as err:  # transformers raises many types for broken folders
            hint = GET_CLIP_HINT.format(directory=directory)
            raise ConfigError(f"cannot load a CLIP tokenizer from {directory} ({err}); {hint}") from err
        model = json.loads(hf.backend_tokenizer.to_str())["model"]  # the BPE vocabulary and merges
        missing = [tok for tok in (cls.SOT, cls.EOT) if tok not in model["vocab"]]
        if missing:
            raise ConfigError(
                f"{directory} is not a CLIP tokenizer: its vocabulary lacks {', '.join(missing)}; "
                + GET_CLIP_HINT.format(directory=directory)
            )
        if cls.MASK not in model["vocab"]:
            hf = cls._with_irra_mask(hf, model, directory)
        hf.add_special_tokens({"mask_token": cls.MASK})  # registers the existing entry; adds no id
        return cls(hf, max_length=max_length)

    @classmethod
    def _with_irra_mask(cls, hf: Any, model: dict[str, Any], directory: Path) -> Any:
        """A copy of ``hf`` whose last merge token is renamed ``<|mask|>`` and whose last merge is dropped."""
        from transformers import CLIPTokenizer

        vocab: dict[str, int] = dict(model["vocab"])
        merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
        if not merges or "".join(merges[-1]) not in vocab:
            raise ConfigError(
                f"{directory} has no BPE merges to take the mask id from; {GET_CLIP_HINT.format(directory=directory)}"
            )
        vocab[cls.MASK] = vocab.pop("".join(merges[-1]))
        return CLIPTokenizer(
            vocab=vocab,
            merges=merges[:-1],
            bos_token=hf.bos_token,
            eos_token=hf.eos_token,
            pad_token=hf.pad_token,
            unk_token=hf.unk_token,
        )

    def _encode_bodies(self, texts: list[str]) -> list[list[int]]:
        return [enc.ids for enc in self._backend.encode_batch(texts, add_special_tokens=False)]

    def _decode_ordinary(self, ids: list[int]) -> str:
        text = self._backend.decode(ids, skip_special_tokens=False)
        return " ".join(text.replace("</w>", " ").split())

    def convert_ids_to_tokens(self, ids: IdsLike) -> list[str]:
        id_list = _id_list(ids)
        self._check_ids(id_list)
        return list(self._hf.convert_ids_to_tokens(id_list))

    def _save_files(self, directory: Path) -> dict[str, Any]:
        staging = Path(tempfile.mkdtemp(dir=directory, prefix=".tokenizer-"))
        try:
            self._hf.save_pretrained(str(staging))
            for path in staging.iterdir():
                os.replace(path, directory / path.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return {}

    @classmethod
    def _from_saved(cls, directory: Path, meta: dict[str, Any]) -> "CLIPBPETokenizer":
        return cls.from_pretrained(directory, max_length=meta["max_length"])


TOKENIZER_KINDS: dict[str, type[Tokenizer]] = {cls.kind: cls for cls in (WordTokenizer, CLIPBPETokenizer)}


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Restore a tokenizer written by :meth:`Tokenizer.save`, of whichever kind it was."""
    directory = Path(directory)
    meta = _read_meta(directory)
    kind = meta["kind"]
    if "max_length" not in meta:
        raise ConfigError(f"{directory / META_FILE} lacks the key 'max_length'; save the tokenizer again")
    if kind not in TOKENIZER_KINDS:
        raise ConfigError(
            f"{directory / META_FILE} names an unknown tokenizer kind {kind!r}; "
            f"expected one of {', '.join(TOKENIZER_KINDS)}"
        )
    if meta.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise ConfigError(
            f"{directory / META_FILE} was written by a newer tireid-lite (format {meta['format_version']}); "
            "upgrade the kit"
        )
    return TOKENIZER_KINDS[kind]._from_saved(directory, meta)


def tokenizer_files(tokenizer: Tokenizer) -> dict[str, bytes]:
    """The files of a saved tokenizer as ``{name: contents}``, to store in a checkpoint."""
    with tempfile.TemporaryDirectory(prefix="tireid-tokenizer-") as folder:
        return read_folder(tokenizer.save(folder))


def tokenizer_from_files(files: dict[str, bytes]) -> Tokenizer:
    """Rebuild a tokenizer from the file contents stored in a checkpoint (see :func:`tokenizer_files`)."""
    with tempfile.TemporaryDirectory(prefix="tireid-tokenizer-") as folder:
        return load_tokenizer(write_folder(files, folder))
