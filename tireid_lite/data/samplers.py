"""The identity-balanced batch sampler: P identities x K pairs per batch.

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

Under DDP the training loader splits each of these (global) batches across processes.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from tireid_lite.errors import ConfigError


class IdentityBalancedSampler(Sampler[list[int]]):
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

    def _epoch_batches(self) -> list[list[int]]:
        if self._cached is None or self._cached[0] != self.epoch:
            self._cached = (self.epoch, self.all_batches(self.epoch))
        return self._cached[1]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._epoch_batches())

    def __len__(self) -> int:
        """Batches in the current epoch (it can differ by one or two between epochs)."""
        return len(self._epoch_batches())
