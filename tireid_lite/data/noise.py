"""Noisy correspondence: shuffle the captions of a random subset of training pairs (RDE's protocol).

Taught in the KPDM notebooks (``03``-``05``), which inject noise and score its detection.

RDE makes a noisy training set by choosing a fraction ``rate`` of the N training pairs at
random and permuting their captions among themselves; images and identities stay where
they are, so a chosen pair now carries a caption written for some other image. The
result is stored as ``caption_source``: pair ``i`` carries the caption of pair
``caption_source[i]`` (``caption_source[i] == i`` for untouched pairs). The ``.npy`` file
written by :meth:`NoiseInjection.save` holds exactly this array, the format of RDE's own
noise-index files.

Ground truth (our reading, for identity-level matching): a pair is *noisy* when its
caption was written for a different identity. A caption moved onto another image of the
same identity still describes that person, so it counts as clean; so does a chosen pair
that the permutation happens to leave in place. RDE's code instead marks every moved
caption as noisy; on real datasets the two differ by a handful of pairs. The chosen
subset has ``round(rate * N)`` pairs (RDE's code truncates with ``int``).
"""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from tireid_lite.data.records import TrainPair
from tireid_lite.errors import ConfigError, DatasetError


def _noisy_from_source(caption_source: np.ndarray, pids: np.ndarray | None) -> np.ndarray:
    """Noisy iff the caption came from another identity; without identities, iff it moved."""
    if pids is None:
        return caption_source != np.arange(len(caption_source))
    return pids[caption_source] != pids


@dataclass(frozen=True, eq=False)
class NoiseInjection:
    """Which caption each training pair carries after injection, and which pairs are noisy."""

    caption_source: np.ndarray  # (N,) int64: pair i carries the caption of pair caption_source[i]
    noisy: np.ndarray  # (N,) bool: the caption was written for a different identity

    def __len__(self) -> int:
        return len(self.caption_source)

    @property
    def moved(self) -> np.ndarray:
        """(N,) bool: the pair's caption was replaced (RDE's own definition of noisy)."""
        return self.caption_source != np.arange(len(self.caption_source))

    @property
    def noise_rate(self) -> float:
        """Fraction of pairs that are noisy (a little below ``rate``: see the module docstring)."""
        return float(self.noisy.mean()) if len(self.noisy) else 0.0

    def apply(self, pairs: Sequence[TrainPair]) -> list[TrainPair]:
        """The training pairs with their captions replaced; images, identities and indices stay."""
        if len(pairs) != len(self.caption_source):
            raise DatasetError(
                f"the noise injection was made for {len(self.caption_source)} training pairs "
                f"but got {len(pairs)}; "
                "inject noise again for this dataset"
            )
        return [
            TrainPair(p.index, p.pid, p.image_id, p.path, pairs[int(src)].caption)
            for p, src in zip(pairs, self.caption_source)
        ]

    def save(self, path: str | Path) -> Path:
        """Write ``caption_source`` as an ``.npy`` file (atomically: temp file, then rename)."""
        path = Path(path)
        if path.suffix != ".npy":
            raise ConfigError(f"noise file {path} must end in .npy; for example {path.with_suffix('.npy')}")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as handle:
                np.save(handle, self.caption_source.astype(np.int64), allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(
        cls, path: str | Path, num_pairs: int, pids: Sequence[int] | np.ndarray | None = None
    ) -> "NoiseInjection":
        """Read a file written by :meth:`save` (or RDE's noise-index files) for ``num_pairs`` pairs.

        Pass the training pairs' ``pids`` to get the identity-level ground truth; without
        them every moved caption counts as noisy (RDE's definition).
        """
        path = Path(path)
        fix = "write it again with inject_noise(pairs, rate, seed).save(path)"
        if not path.is_file():
            raise DatasetError(f"noise file {path} not found; {fix}")
        try:
            source = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise DatasetError(f"noise file {path} is not a readable .npy array ({err}); {fix}") from err
        if source.ndim != 1 or not np.issubdtype(source.dtype, np.integer):
            raise DatasetError(
                f"noise file {path} holds a {source.dtype} array of shape {source.shape}, "
                f"expected a 1-D integer array; {fix}"
            )
        if len(source) != num_pairs:
            raise DatasetError(
                f"noise file {path} covers {len(source)} pairs but the training split has {num_pairs}; "
                f"it was made for another dataset or split; {fix}"
            )
        source = source.astype(np.int64)
        in_range = bool(((source >= 0) & (source < num_pairs)).all())
        if not in_range or len(np.unique(source)) != num_pairs:
            raise DatasetError(
                f"noise file {path} is not a permutation of the pairs it moves "
                f"(an index is out of range or repeated); {fix}"
            )
        pid_array = None if pids is None else cls._pid_array(pids, num_pairs)
        return cls(caption_source=source, noisy=_noisy_from_source(source, pid_array))

    @staticmethod
    def _pid_array(pids: Sequence[int] | np.ndarray, num_pairs: int) -> np.ndarray:
        pid_array = np.asarray(pids, dtype=np.int64)
        if pid_array.shape != (num_pairs,):
            raise DatasetError(
                f"got {len(pid_array)} identities for {num_pairs} training pairs; pass one pid per pair"
            )
        return pid_array


def check_rate(rate: float) -> float:
    """``rate`` as a float in [0, 1), or one clear error."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating, np.integer)):
        raise ConfigError(f"noise rate {rate!r} is not a number; use a fraction in [0, 1), e.g. 0.2 for 20%")
    rate = float(rate)
    if not math.isfinite(rate) or not 0.0 <= rate < 1.0:
        raise ConfigError(
            f"noise rate {rate!r} is outside [0, 1); use a fraction such as 0.2, 0.5 or 0.8 (not a percentage)"
        )
    return rate


def inject_noise(pairs: Sequence[TrainPair], rate: float, seed: int) -> NoiseInjection:
    """Choose ``round(rate * N)`` pairs at random and permute their captions among themselves.

    The same ``seed`` (and the same pairs) gives the same permutation. Apply the result with
    :meth:`NoiseInjection.apply`.
    """
    rate = check_rate(rate)
    num_pairs = len(pairs)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(num_pairs, size=round(rate * num_pairs), replace=False))  # (n,)
    caption_source = np.arange(num_pairs, dtype=np.int64)
    caption_source[chosen] = rng.permutation(chosen)
    pids = np.array([p.pid for p in pairs], dtype=np.int64)
    return NoiseInjection(caption_source=caption_source, noisy=_noisy_from_source(caption_source, pids))
