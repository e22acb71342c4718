"""Checkpoints that survive crashes, and the random state that makes a resumed run exact.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so
it loads with ``torch.load(..., weights_only=True)``: no pickled classes, no
code runs when a file is opened. The Trainer stores in it the model, optimiser
and scheduler states, the epoch and global step, the best validation metric,
the config as a dict, the tokenizer as the contents of its saved files, and the
random states of Python, numpy and torch (CPU and CUDA).

Writes are atomic: the state goes to ``<name>.tmp-<pid>`` in the same folder,
is flushed to disk, and only then renamed over ``<name>``; a crash mid-write
leaves the previous checkpoint untouched. Taught in ``02_baseline_irra``.
"""

from __future__ import annotations

import os
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tireid_lite.errors import TIReIDError


class CheckpointError(TIReIDError, ValueError):
    """A checkpoint file that is missing, unreadable or lacks what it should hold."""


class CheckpointWriteError(CheckpointError, OSError):
    """A checkpoint that could not be written (read-only, full or busy folder)."""


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        kept = " (the previous one is kept)" if path.is_file() else ""
        raise CheckpointWriteError(
            f"cannot write checkpoint {path}{kept}: {err.strerror or err}; make room on that disk or "
            f"make {path.parent} writable, then resume the run with --resume"
        ) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``), checking it first:
    every entry of the archive against its checksum, then the model's weights for NaN and infinity;
    a damaged file is a :class:`CheckpointError` that names it."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise CheckpointError(
            f"checkpoint {path} is a symbolic link that leads nowhere (a loop or a missing target); "
            "point it at a best.pt or last.pt file"
        )
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; give the path of a best.pt or last.pt file in it")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; give the path of a best.pt or last.pt file")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            head = fh.read(16)
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a tireid-lite checkpoint (a checkpoint is a zip archive; this "
            f"file starts with {head!r}); give the path of a best.pt or last.pt file"
        )
    damaged = _damaged_member(path)
    if damaged is not None:
        raise CheckpointError(
            f"checkpoint {path} is damaged (checksum mismatch in {damaged}); its bytes changed after it was "
            "written: use another checkpoint (last.pt or best.pt) or train again"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for truncated or foreign files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a tireid-lite checkpoint ({reason}); "
            "delete it or point to another file"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(state).__name__}, not a dict; it was not written by tireid-lite"
        )
    bad = _first_non_finite(state.get("model"))
    if bad is not None:
        raise CheckpointError(
            f"checkpoint {path} holds weights that are not finite ({bad}); the run that wrote it had diverged "
            "or the file is damaged: use an earlier checkpoint or train again"
        )
    return state


def _damaged_member(path: Path) -> str | None:
    """The first entry of the checkpoint's zip archive whose CRC does not match, or None when all match.

    ``torch.load`` reads the archive without checking the CRCs, so flipped bytes inside a tensor load
    silently; this reads the whole file once and checks every entry.
    """
    if not zipfile.is_zipfile(path):
        return None  # not an archive: torch.load judges it
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        return f"the archive cannot be read: {err}"


def _first_non_finite(weights: Any) -> str | None:
    """The name of the first floating tensor in ``weights`` (a state dict) holding NaN or infinity."""
    if not isinstance(weights, dict):
        return None
    for name, value in weights.items():
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return name
    return None


def require_keys(state: dict[str, Any], keys: tuple[str, ...], path: str | os.PathLike[str]) -> None:
    """Raise one clear error when a loaded checkpoint lacks any of ``keys``."""
    missing = [k for k in keys if k not in state]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} lacks {', '.join(missing)}; it was not written by the tireid-lite Trainer"
        )


# --------------------------------------------------------------------------- random state


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


# Stream tags: the third key of derive_seed, so the kit's random streams never share a seed.
STREAM_BATCH_ORDER = 0  # derive_seed(seed, epoch, STREAM_BATCH_ORDER): the epoch's batches
STREAM_ITEM = 1  # derive_seed(seed, epoch, STREAM_ITEM, index): one training item's augmentation
STREAM_EPOCH = 2  # derive_seed(seed, epoch, STREAM_EPOCH): the global generators at the epoch's start


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from a tuple of non-negative integers, e.g. ``(seed, epoch, tag, index)``.

    Nearby tuples give unrelated seeds (numpy's ``SeedSequence`` hashing), so
    every (run seed, epoch, item) gets its own independent random stream; the
    ``STREAM_*`` tags keep the kit's streams apart.
    """
    if any(k < 0 for k in keys):
        raise ValueError(f"seed keys must be non-negative integers, got {keys}")
    high, low = np.random.SeedSequence([int(k) for k in keys]).generate_state(2)
    return (int(high) << 32 | int(low)) & (2**63 - 1)


# numpy's SeedSequence (pool of 4 words), written out so that many short entropies hash at once.
_POOL = 4
_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
_WORD = 2**32


def seed_sequence_words(entropy: np.ndarray, n_words: int) -> np.ndarray:
    """``SeedSequence(row).generate_state(n_words)`` for every row of ``entropy`` (R, E) uint32, E <= 4, at once.

    A row stands for the entropy ``[w0, ..., wE-1]`` and every shorter one it extends with zero
    words (numpy hashes a missing pool word as a zero word), so an int below 2**64 is its two
    32-bit words, low first. Equal to numpy's per-row result (tested); returns (R, n_words) uint32.
    """
    if entropy.ndim != 2 or entropy.shape[1] > _POOL:
        raise ValueError(f"entropy must be (R, E) with E <= {_POOL} words, got shape {entropy.shape}")
    words = np.asarray(entropy, dtype=np.uint32)  # (R, E); uint32 arrays wrap modulo 2**32, as numpy's C code
    shift = np.uint32(16)
    hash_const = _INIT_A

    def hashmix(value: np.ndarray) -> np.ndarray:
        nonlocal hash_const
        value = value ^ np.uint32(hash_const)
        hash_const = hash_const * _MULT_A % _WORD
        value = value * np.uint32(hash_const)
        return value ^ (value >> shift)

    def mix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        result = x * np.uint32(_MIX_L) - y * np.uint32(_MIX_R)
        return result ^ (result >> shift)

    zero = np.zeros(len(words), dtype=np.uint32)
    pool = [hashmix(words[:, i] if i < words.shape[1] else zero) for i in range(_POOL)]
    for src in range(_POOL):
        for dst in range(_POOL):
            if src != dst:
                pool[dst] = mix(pool[dst], hashmix(pool[src]))
    out = np.empty((len(words), n_words), dtype=np.uint32)
    hash_const = _INIT_B
    for i in range(n_words):
        value = pool[i % _POOL] ^ np.uint32(hash_const)
        hash_const = hash_const * _MULT_B % _WORD
        value = value * np.uint32(hash_const)
        out[:, i] = value ^ (value >> shift)
    return out


def as_words(values: np.ndarray) -> np.ndarray:
    """Non-negative integers below 2**64 (R,) as their two 32-bit words, low first: (R, 2) uint32."""
    values = np.asarray(values, dtype=np.uint64)
    return np.stack([values & np.uint64(_WORD - 1), values >> np.uint64(32)], axis=1).astype(np.uint32)


class _Words(np.random.bit_generator.ISeedSequence):
    """A seed sequence whose state words are already computed (numpy takes any ``ISeedSequence``)."""

    def __init__(self, words: np.ndarray) -> None:
        self.words = words  # (4,) uint64

    def generate_state(self, n_words: int, dtype=np.uint32) -> np.ndarray:
        if n_words != len(self.words) or np.dtype(dtype) != np.uint64:
            raise ValueError(f"these words seed a PCG64 (4 uint64), not {n_words} {np.dtype(dtype)}")
        return self.words


def numpy_generators(seeds: np.ndarray) -> list[np.random.Generator]:
    """``[np.random.default_rng(s) for s in seeds]`` for integers ``0 <= s < 2**64``, with the seed hashing
    of all of them done at once (:func:`seed_sequence_words`): the same generators, in under half the time."""
    seeds = np.asarray(seeds)
    if seeds.size and (seeds.min() < 0 or seeds.dtype.kind not in "iu"):
        raise ValueError(f"numpy generator seeds must be non-negative integers, got {seeds.dtype} from {seeds.min()}")
    words = seed_sequence_words(as_words(seeds.reshape(-1)), 8)  # (R, 8) uint32, what PCG64 asks of SeedSequence
    states = words.astype("<u4").view("<u8").astype(np.uint64)  # (R, 4): numpy's little-endian pairing
    return [np.random.Generator(np.random.PCG64(_Words(state))) for state in states]


def derive_seeds(seed: int, epochs: np.ndarray, tag: int, indices: np.ndarray) -> np.ndarray:
    """``derive_seed(seed, epochs[k], tag, indices[k])`` for every ``k`` at once, as (R,) int64.

    Vectorised over the rows where every key is below 2**32 (one word each); any other row goes
    through :func:`derive_seed`. Used by the training loader to seed a whole batch's items.
    """
    epochs = np.asarray(epochs, dtype=np.int64).reshape(-1)
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    keys = np.stack([np.full_like(indices, seed), epochs, np.full_like(indices, tag), indices], axis=1)  # (R, 4)
    if seed < 0 or tag < 0 or (keys < 0).any():
        raise ValueError(f"seed keys must be non-negative integers, got seed {seed}, tag {tag} and "
                         f"epochs/indices down to {int(keys.min())}")
    short = (keys < _WORD).all(axis=1)  # (R,)
    out = np.empty(len(keys), dtype=np.int64)
    if short.any():
        high_low = seed_sequence_words(keys[short].astype(np.uint32), 2).astype(np.uint64)  # (r, 2): high, low
        out[short] = ((high_low[:, 0] << np.uint64(32) | high_low[:, 1]) & np.uint64(2**63 - 1)).astype(np.int64)
    for k in np.flatnonzero(~short):
        out[k] = derive_seed(*(int(v) for v in keys[k]))
    return out


def rng_state() -> dict[str, Any]:
    """The random states of Python, numpy and torch, as values ``weights_only`` loading accepts."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (CUDA states only where the devices exist)."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda", [])
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# --------------------------------------------------------------------------- tokenizer files


def read_folder(folder: str | os.PathLike[str]) -> dict[str, bytes]:
    """Every file directly in ``folder`` as ``{name: contents}`` (a saved tokenizer, for a checkpoint)."""
    folder = Path(folder)
    return {item.name: item.read_bytes() for item in sorted(folder.iterdir()) if item.is_file()}


def write_folder(files: dict[str, bytes], folder: str | os.PathLike[str]) -> Path:
    """Write ``{name: contents}`` back as files in ``folder`` (the inverse of :func:`read_folder`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, contents in files.items():
        if Path(name).name != name:
            raise CheckpointError(f"tokenizer file name {name!r} in a checkpoint is not a plain file name")
        (folder / name).write_bytes(contents)
    return folder
