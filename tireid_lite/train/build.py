"""The training loader: batches whose content depends only on ``(seed, epoch)``.

The data it loads is built by :func:`tireid_lite.data.build.build_data`
(dataset, tokenizer, noise, torch datasets). :func:`build_train_loader` turns
the training set into batches whose content depends only on ``(seed, epoch)``:

* the epoch's *global* batches (shuffled, or P identities x K pairs) are drawn
  from ``(seed, epoch)``; under DDP each rank takes its contiguous slice of every
  global batch, so N processes see exactly the batches one process would;
* each item's augmentation (flip, crop, erasing, masked words) is drawn from a
  generator seeded with ``(seed, epoch, index)``, whichever process or worker
  loads it.

That is what lets a run stopped at any point resume to the same result, and a
DDP run match a single-process one. Taught in ``02_baseline_irra``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from tireid_lite.checkpoint import (
    STREAM_BATCH_ORDER,
    STREAM_ITEM,
    derive_seed,
    derive_seeds,
)
from tireid_lite.config import Config
from tireid_lite.data.build import Data, build_data
from tireid_lite.data.samplers import (
    HardNegativeSampler,
    IdentityBalancedSampler,
    train_partners,
)
from tireid_lite.errors import ConfigError
from tireid_lite.models.head import NEEDS_PART_MAPS
from tireid_lite.models.methods import method_needs
from tireid_lite.text.tokenizers import Tokenizer


def build_training_data(cfg: Config, tokenizer: Tokenizer | None = None) -> Data:
    """The data a run of ``cfg`` trains on: :func:`~tireid_lite.data.build.build_data` with what the
    method's heads need from it (part maps for BiLMa's semantic target), asked of the method."""
    return build_data(cfg, tokenizer, part_maps=NEEDS_PART_MAPS in method_needs(cfg))


# --------------------------------------------------------------------------- the training loader


class SeededItems(Dataset):
    """Training items addressed by ``(epoch, index)``; each is drawn with torch's generator seeded
    from ``(seed, epoch, index)``, so its augmentation does not depend on which process or
    worker loads it, nor on what was loaded before."""

    def __init__(self, base: Dataset, seed: int) -> None:
        self.base = base
        self.seed = seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key
        with torch.random.fork_rng(devices=[]):  # the CPU generator is restored afterwards
            torch.default_generator.manual_seed(derive_seed(self.seed, epoch, STREAM_ITEM, index))
            return self.base[index]

    def __getitems__(self, keys: list[tuple[int, int]]) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        """A whole batch: collated at once by the base's ``load_batch`` where it has one that applies
        (in-memory images, see :mod:`tireid_lite.data.batched`), else the items one by one."""
        load_batch = getattr(self.base, "load_batch", None)
        if load_batch is not None:
            epochs, indices = np.asarray(keys, dtype=np.int64).reshape(-1, 2).T  # (B,) each
            seeds = derive_seeds(self.seed, epochs, STREAM_ITEM, indices)  # (B,): derive_seed of each key, at once
            batch = load_batch(indices.tolist(), seeds.tolist())
            if batch is not None:
                return batch
        return [self[key] for key in keys]


def collate_items(items: dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The training loader's collate: a batch already collated by ``load_batch`` passes, a list of items
    is stacked by torch's default collate."""
    if isinstance(items, dict):
        return items
    return default_collate(items)


class GlobalBatchSampler(Sampler[list[tuple[int, int]]]):
    """This rank's share of every global batch of the epoch, as ``(epoch, index)`` keys.

    Global batches hold ``batch_size`` items: a shuffle of all items cut into
    batches, or (with ``pids``) the identity sampler's P x K batches, or (with
    ``pids`` and ``partners``) the hard-negative sampler's batches; all drawn
    from ``(seed, epoch)``, the last incomplete batch dropped. With
    ``fraction < 1`` an epoch is only the first ``round(fraction * batches)``
    of them (at least one), a different random share of the pairs each epoch.
    Rank ``r`` of
    ``world_size`` takes items ``[r * b, (r + 1) * b)`` of each, ``b = batch_size / world_size``.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        *,
        seed: int,
        pids: np.ndarray | None = None,
        num_instances: int = 4,
        partners: list[tuple[int, int]] | None = None,
        rank: int = 0,
        world_size: int = 1,
        fraction: float = 1.0,
    ) -> None:
        if not 0.0 < fraction <= 1.0:
            raise ConfigError(f"config key 'train.epoch_fraction' is {fraction!r}; it must be a number in (0, 1]")
        if batch_size % world_size:
            raise ConfigError(
                f"config key 'train.batch_size' is {batch_size}, which {world_size} processes cannot share; "
                f"use a multiple of {world_size} (the batch size is global, split across processes)"
            )
        self.per_rank = batch_size // world_size
        if pids is not None and partners is None and self.per_rank % num_instances:
            raise ConfigError(
                f"config key 'train.batch_size' is {batch_size}: each of {world_size} processes gets "
                f"{self.per_rank} items, not a multiple of data.num_instances={num_instances}; "
                f"use a batch size that is a multiple of {world_size * num_instances}"
            )
        if num_items < batch_size:
            raise ConfigError(
                f"config key 'train.batch_size' is {batch_size} but the training set has only {num_items} pairs; "
                "lower train.batch_size"
            )
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.fraction = float(fraction)
        self.identity: IdentityBalancedSampler | HardNegativeSampler | None = None
        if pids is not None and partners is not None:
            self.identity = HardNegativeSampler(pids, partners, batch_size, seed)
        elif pids is not None:
            self.identity = IdentityBalancedSampler(pids, batch_size, num_instances, seed, drop_last=True)
        self.epoch = 1
        self._cached: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Draw the batches of ``epoch`` (1-based) next."""
        self.epoch = int(epoch)

    def global_batches(self, epoch: int) -> list[list[int]]:
        """Every global batch of ``epoch``, before the split across ranks."""
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        if self.identity is not None:
            batches = self.identity.all_batches(epoch)
        else:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch, STREAM_BATCH_ORDER))
            order = torch.randperm(self.num_items, generator=generator).tolist()
            count = self.num_items // self.batch_size
            batches = [order[i * self.batch_size : (i + 1) * self.batch_size] for i in range(count)]
        if self.fraction < 1.0:
            batches = batches[: max(1, round(self.fraction * len(batches)))]
        self._cached = (epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        start = self.rank * self.per_rank
        for batch in self.global_batches(self.epoch):
            yield [(self.epoch, index) for index in batch[start : start + self.per_rank]]

    def __len__(self) -> int:
        return len(self.global_batches(self.epoch))


def build_train_loader(
    train_set: Dataset,
    cfg: Config,
    *,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> DataLoader:
    """The training loader: ``cfg.data.sampler`` batches of ``cfg.train.batch_size`` (global) items.

    Call :func:`set_loader_epoch` before each epoch. ``train_set`` needs a
    ``pids`` array for the identity sampler (as ``TrainPairsDataset`` has).
    """
    pids, partners = None, None
    if cfg.data.sampler in ("identity", "hard_negative"):
        pids = getattr(train_set, "pids", None)
        if pids is None:
            raise ConfigError(
                f"data.sampler {cfg.data.sampler!r} needs a dataset with a pids array; "
                f"{type(train_set).__name__} has none"
            )
    if cfg.data.sampler == "hard_negative":
        root = getattr(getattr(train_set, "dataset", None), "root", None)
        if root is None or not (Path(root) / "attributes.json").is_file():
            raise ConfigError(
                "data.sampler 'hard_negative' reads the partner pairs of SynthPEDES's attributes.json, which this "
                "dataset does not have; use data.dataset=synth with data.synth_preset=detail, or another sampler"
            )
        partners = train_partners(root)
    batches = GlobalBatchSampler(
        len(train_set),
        cfg.train.batch_size,
        seed=cfg.train.seed,
        pids=pids,
        num_instances=cfg.data.num_instances,
        partners=partners,
        rank=rank,
        world_size=world_size,
        fraction=cfg.train.epoch_fraction,
    )
    workers = cfg.data.num_workers
    return DataLoader(
        SeededItems(train_set, cfg.train.seed),
        batch_sampler=batches,
        collate_fn=collate_items,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
    )


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Make ``loader`` (from :func:`build_train_loader`) yield the batches of ``epoch``."""
    loader.batch_sampler.set_epoch(epoch)
