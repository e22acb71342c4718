"""Batch samplers: identity-balanced (P identities x K pairs) and hard-negative partners together.

Taught in the baseline notebook (``02``), where the sampler is one of the settings.
The training loader built on it (random or identity batches, split across DDP
processes, per-item seeded augmentation) is :func:`tireid_lite.train.build.build_train_loader`.

:class:`IdentityBalancedSampler` fills every batch with ``P = batch_size // K`` distinct
identities and ``K = num_instances`` training pairs of each, the batch layout that
identity-aware losses (SDM, triplet-style ranking) need to see several positives per
text. Each epoch: every identity's pairs are shuffled and cut into groups of K (an
identity with fewer than K pairs is sampled with replacement up to K; a remainder shorter
than K waits for another epoch), then batches take one group from each of P identities
drawn at random among those with groups left, until fewer than P remain. The order
depends only on ``(seed, epoch)``, so training resumed at epoch e sees the same batches.

:class:`HardNegativeSampler` (``data.sampler=hard_negative``) puts hard-negative
partners into the same batch: identities that differ in one attribute (and
colour-swap pairs), listed in SynthPEDES's ``attributes.json``
(:func:`train_partners`). Each epoch, every partner pair's training pairs are
shuffled and zipped into two-item units (one of each identity); all other
training pairs are one-item units; the units are shuffled and packed into
batches of ``batch_size`` items (a unit that would overflow a batch starts the
next one), so a batch holds each unit's two partners together, and each pair
at most once per epoch. The order depends only on ``(seed, epoch)``.

Under DDP the training loader splits each of these (global) batches across processes.
"""

from __future__ import annotations

import os
from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from tireid_lite.data.synth.markings import read_markings
from tireid_lite.errors import ConfigError


class _EpochBatches(Sampler[list[int]]):
    """A batch sampler whose batches are a function of ``(seed, epoch)``: :meth:`all_batches` draws them,
    the set for the current epoch is kept until :meth:`set_epoch` moves on."""

    epoch: int = 0
    _cached: tuple[int, list[list[int]]] | None = None

    def all_batches(self, epoch: int) -> list[list[int]]:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's batches from ``(seed, epoch)``; call it before each epoch."""
        self.epoch = int(epoch)

    def _epoch_batches(self) -> list[list[int]]:
        if self._cached is None or self._cached[0] != self.epoch:
            self._cached = (self.epoch, self.all_batches(self.epoch))
        return self._cached[1]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._epoch_batches())

    def __len__(self) -> int:
        """Batches in the current epoch (it can differ by one or two between epochs)."""
        return len(self._epoch_batches())


class IdentityBalancedSampler(_EpochBatches):
    """A batch sampler: each batch holds P identities x K pairs (see the module docstring)."""

    def __init__(
        self,
        pids: Sequence[int] | np.ndarray,
        batch_size: int,
        num_instances: int = 4,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        if num_instances < 1 or batch_size < num_instances or batch_size % num_instances:
            raise ConfigError(
                f"batch_size={batch_size} is not a multiple of num_instances={num_instances}; "
                "choose batch_size = P * num_instances (e.g. 64 = 16 x 4)"
            )
        pid_array = np.asarray(pids, dtype=np.int64)
        if pid_array.ndim != 1 or len(pid_array) == 0:
            raise ConfigError("the identity sampler needs one pid per training pair; got none")
        self.batch_size = batch_size
        self.num_instances = num_instances
        self.identities_per_batch = batch_size // num_instances
        self.seed, self.drop_last = seed, drop_last
        self.epoch = 0
        order = np.argsort(pid_array, kind="stable")
        unique, starts = np.unique(pid_array[order], return_index=True)
        self._members = np.split(order, starts[1:])  # one array of pair indices per identity
        if drop_last and len(unique) < self.identities_per_batch:
            raise ConfigError(
                f"only {len(unique)} identities but each batch needs {self.identities_per_batch} "
                f"(batch_size {batch_size} / num_instances {num_instances}); lower batch_size"
            )
        self._cached: tuple[int, list[list[int]]] | None = None

    def _groups(self, rng: np.random.Generator) -> list[list[np.ndarray]]:
        """Each identity's pairs, shuffled and cut into groups of K."""
        k = self.num_instances
        groups = []
        for members in self._members:
            if len(members) < k:
                members = rng.choice(members, size=k, replace=True)
            else:
                members = rng.permutation(members)
            groups.append([members[j * k : (j + 1) * k] for j in range(len(members) // k)])
        return groups

    def all_batches(self, epoch: int) -> list[list[int]]:
        """Every batch of ``epoch`` before the split across ranks."""
        rng = np.random.default_rng([self.seed, epoch])
        groups = self._groups(rng)
        left = np.array([len(g) for g in groups])  # (num_identities,) groups not yet used
        p = self.identities_per_batch
        batches: list[list[int]] = []
        while True:
            available = np.flatnonzero(left)
            if len(available) == 0 or (len(available) < p and self.drop_last):
                break
            chosen = rng.choice(available, size=min(p, len(available)), replace=False)
            batch = []
            for ident in chosen:
                left[ident] -= 1
                batch.extend(int(i) for i in groups[ident][left[ident]])
            batches.append(batch)
        return batches




class HardNegativeSampler(_EpochBatches):
    """A batch sampler that draws hard-negative partners into the same batch (see the module docstring)."""

    def __init__(
        self,
        pids: Sequence[int] | np.ndarray,
        partners: Sequence[tuple[int, int]],
        batch_size: int,
        seed: int = 0,
    ) -> None:
        if batch_size < 2:
            raise ConfigError(f"batch_size={batch_size} cannot hold a pair of partners; use at least 2")
        pid_array = np.asarray(pids, dtype=np.int64)
        if pid_array.ndim != 1 or len(pid_array) < batch_size:
            raise ConfigError(
                f"the hard-negative sampler needs at least batch_size={batch_size} training pairs; "
                f"got {len(pid_array)}"
            )
        self.batch_size, self.seed = batch_size, seed
        self.epoch = 0
        order = np.argsort(pid_array, kind="stable")
        unique, starts = np.unique(pid_array[order], return_index=True)
        members = dict(zip(unique.tolist(), np.split(order, starts[1:])))
        self.pairs: list[tuple[int, int]] = []  # partner pairs whose both identities are in training
        paired: set[int] = set()
        for a, b in partners:
            a, b = int(a), int(b)
            if a in members and b in members and a not in paired and b not in paired:
                self.pairs.append((a, b))
                paired.update((a, b))
        if not self.pairs:
            raise ConfigError(
                "data.sampler=hard_negative found no hard-negative partners among the training identities; "
                "draw SynthPEDES with partners in train (data.synth_train_hard_negative_fraction > 0, or "
                "data.synth_preset=detail) or use data.sampler=random"
            )
        self._members = members
        self._singles = np.sort(np.concatenate(
            [m for pid, m in members.items() if pid not in paired] or [np.zeros(0, dtype=np.int64)]
        ))
        self._cached: tuple[int, list[list[int]]] | None = None

    def all_batches(self, epoch: int) -> list[list[int]]:
        """Every batch of ``epoch`` (full batches only)."""
        rng = np.random.default_rng([self.seed, epoch, 0x484E])  # a stream of its own
        units: list[list[int]] = [[int(i)] for i in self._singles]
        for a, b in self.pairs:
            left, right = rng.permutation(self._members[a]), rng.permutation(self._members[b])
            n = min(len(left), len(right))
            units += [[int(x), int(y)] for x, y in zip(left[:n], right[:n])]
            units += [[int(x)] for x in left[n:]] + [[int(y)] for y in right[n:]]
        batches: list[list[int]] = []
        batch: list[int] = []
        waiting: list[list[int]] = []  # units that did not fit the batch being filled
        for k in rng.permutation(len(units)):
            unit = units[k]
            if len(batch) + len(unit) > self.batch_size:
                waiting.append(unit)
                continue
            batch += unit
            if len(batch) == self.batch_size:
                batches.append(batch)
                batch = []
                while waiting and len(batch) + len(waiting[0]) <= self.batch_size:
                    batch += waiting.pop(0)
        return batches




def train_partners(root: str | os.PathLike[str]) -> list[tuple[int, int]]:
    """The training identities' partner pairs of the SynthPEDES at ``root`` (hard negatives, colour swaps)."""
    return read_markings(root).partners("train")
