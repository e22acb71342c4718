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
