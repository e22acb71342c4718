"""Batch samplers and the training ``DataLoader``: random batches or P identities x K pairs.

Taught in the baseline notebook (``02``), where the sampler is one of the settings.

:class:`IdentityBalancedSampler` fills every batch with ``P = batch_size // K`` distinct
identities and ``K = num_instances`` training pairs of each, the batch layout that
identity-aware losses (SDM, triplet-style ranking) need to see several positives per
text. Each epoch: every identity's pairs are shuffled and cut into groups of K (an
identity with fewer than K pairs is sampled with replacement up to K; a remainder shorter
than K waits for another epoch), then batches take one group from each of P identities
drawn at random among those with groups left, until fewer than P remain. The order
depends only on ``(seed, epoch)``, so training resumed at epoch e sees the same batches.

Under DDP (``torchrun``) every rank builds the same list of batches and takes every
``num_replicas``-th one starting at its ``rank``; ``batch_size`` is per process.
"""

from __future__ import annotations

from typing import Callable, Iterator, Literal, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from tireid_lite.errors import ConfigError


def _check_replicas(num_replicas: int, rank: int) -> None:
    if num_replicas < 1 or not 0 <= rank < num_replicas:
        raise ConfigError(
            f"rank={rank} with num_replicas={num_replicas} is invalid; need 0 <= rank < num_replicas"
        )


class IdentityBalancedSampler(Sampler[list[int]]):
    """A batch sampler: each batch holds P identities x K pairs (see the module docstring)."""

    def __init__(
        self,
        pids: Sequence[int] | np.ndarray,
        batch_size: int,
        num_instances: int = 4,
        seed: int = 0,
        drop_last: bool = True,
        *,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if num_instances < 1 or batch_size < num_instances or batch_size % num_instances:
            raise ConfigError(
                f"batch_size={batch_size} is not a multiple of num_instances={num_instances}; "
                "choose batch_size = P * num_instances (e.g. 64 = 16 x 4)"
            )
        _check_replicas(num_replicas, rank)
        pid_array = np.asarray(pids, dtype=np.int64)
        if pid_array.ndim != 1 or len(pid_array) == 0:
            raise ConfigError("the identity sampler needs one pid per training pair; got none")
        self.batch_size = batch_size
        self.num_instances = num_instances
        self.identities_per_batch = batch_size // num_instances
        self.seed, self.drop_last = seed, drop_last
        self.num_replicas, self.rank = num_replicas, rank
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

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's batches from ``(seed, epoch)``; call it before each epoch."""
        self.epoch = int(epoch)

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

    def _rank_batches(self) -> list[list[int]]:
        if self._cached is None or self._cached[0] != self.epoch:
            batches = self.all_batches(self.epoch)
            r = self.num_replicas
            if self.drop_last:
                batches = batches[: len(batches) // r * r]
            elif batches and len(batches) % r:
                extra = r - len(batches) % r  # pad by repeating from the start so every rank steps alike
                batches = batches + [batches[i % len(batches)] for i in range(extra)]
            self._cached = (self.epoch, batches[self.rank :: r])
        return self._cached[1]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._rank_batches())

    def __len__(self) -> int:
        """Batches this rank yields in the current epoch (it can differ by one or two between epochs)."""
        return len(self._rank_batches())


def build_train_loader(
    dataset: Dataset,
    batch_size: int,
    sampler: Literal["random", "identity"] = "random",
    *,
    num_instances: int = 4,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = True,
    num_replicas: int = 1,
    rank: int = 0,
    pin_memory: bool = False,
    collate_fn: Callable | None = None,
) -> DataLoader:
    """The training ``DataLoader``: shuffled batches (``"random"``) or P x K batches (``"identity"``).

    Both orders depend only on ``(seed, epoch)``: call :func:`set_loader_epoch` before each
    epoch. ``"identity"`` reads ``dataset.pids`` (as :class:`TrainPairsDataset` provides).
    Workers persist across epochs when ``num_workers > 0``.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be at least 1")
    if num_workers < 0:
        raise ConfigError(f"num_workers={num_workers} must be 0 (load in the main process) or more")
    _check_replicas(num_replicas, rank)
    common = dict(
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
        collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(seed),
    )
    if sampler == "random":
        order = DistributedSampler(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=drop_last
        )
        return DataLoader(dataset, batch_size=batch_size, sampler=order, drop_last=drop_last, **common)
    if sampler == "identity":
        pids = getattr(dataset, "pids", None)
        if pids is None:
            raise ConfigError(
                f"sampler='identity' needs a dataset with a .pids array (one per item); "
                f"{type(dataset).__name__} has none"
            )
        batches = IdentityBalancedSampler(
            pids, batch_size, num_instances, seed, drop_last, num_replicas=num_replicas, rank=rank
        )
        return DataLoader(dataset, batch_sampler=batches, **common)
    raise ConfigError(f"sampler={sampler!r} is unknown; use 'random' or 'identity'")


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell the loader's sampler which epoch starts (reshuffles; needed under DDP and for resuming)."""
    for part in (loader.batch_sampler, loader.sampler):
        if hasattr(part, "set_epoch"):
            part.set_epoch(epoch)
            return
