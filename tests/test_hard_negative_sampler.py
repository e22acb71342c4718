"""data.sampler=hard_negative: hard-negative partners drawn into the same batch, deterministic and resumable."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from tireid_lite.config import apply_overrides, get_profile
from tireid_lite.data.samplers import HardNegativeSampler, train_partners
from tireid_lite.data.synth import generate_synth
from tireid_lite.data.synth.markings import read_markings
from tireid_lite.errors import ConfigError
from tireid_lite.train.build import build_train_loader, set_loader_epoch

PIDS = np.repeat(np.arange(10), 4)  # 10 identities x 4 training pairs
PARTNERS = [(0, 1), (2, 3), (7, 8)]


def test_partners_share_every_batch():
    sampler = HardNegativeSampler(PIDS, PARTNERS, batch_size=6, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == len(PIDS) // 6 and all(len(b) == 6 for b in batches)
    used = [i for b in batches for i in b]
    assert len(used) == len(set(used))  # each pair at most once per epoch
    for batch in batches:
        count = Counter(int(PIDS[i]) for i in batch)
        for a, b in PARTNERS:  # equal numbers of pairs: every partner unit is whole
            assert count[a] == count[b]
    together = sum(min(Counter(int(PIDS[i]) for i in b)[x] for x in pair) for b in batches for pair in PARTNERS)
    assert together >= 8  # most of the 12 partner units fit in the 6 full batches


def test_same_seed_and_epoch_same_batches_and_a_resumed_sampler_agrees():
    first = HardNegativeSampler(PIDS, PARTNERS, batch_size=6, seed=3)
    epochs = {}
    for epoch in (1, 2, 3):
        first.set_epoch(epoch)
        epochs[epoch] = list(first)
    assert epochs[1] != epochs[2]
    resumed = HardNegativeSampler(PIDS, PARTNERS, batch_size=6, seed=3)
    resumed.set_epoch(3)
    assert list(resumed) == epochs[3]
    assert list(HardNegativeSampler(PIDS, PARTNERS, batch_size=6, seed=4)) != list(
        HardNegativeSampler(PIDS, PARTNERS, batch_size=6, seed=3))


def test_partners_outside_training_are_ignored_and_none_is_an_error():
    sampler = HardNegativeSampler(PIDS, [(0, 1), (5, 99)], batch_size=4)
    assert sampler.pairs == [(0, 1)]
    with pytest.raises(ConfigError, match=r"no hard-negative partners among the training identities.*synth_preset"):
        HardNegativeSampler(PIDS, [(50, 51)], batch_size=4)
    with pytest.raises(ConfigError, match=r"at least batch_size=64"):
        HardNegativeSampler(PIDS, PARTNERS, batch_size=64)


def test_the_training_loader_reads_the_partners_of_synthpedes(tmp_path):
    root = generate_synth(tmp_path / "d", ids_train=40, ids_val=2, ids_test=4, images_per_id=2, seed=5,
                          size=(48, 16), train_hard_negative_fraction=0.5, colour_swap_fraction=0.1)
    partners = train_partners(root)
    marks = read_markings(root)
    assert len(partners) == 10 + 2 and partners == marks.partners("train")
    pids = np.repeat(np.arange(1, 41), 4)  # 2 images x 2 captions per identity
    cfg = apply_overrides(get_profile("cpu"), ["data.sampler=hard_negative", "train.batch_size=16",
                                               "train.epoch_fraction=1.0"])
    loader = build_train_loader(_Sized(SimpleNamespace(pids=pids, dataset=SimpleNamespace(root=root))), cfg)
    set_loader_epoch(loader, 1)
    batches = loader.batch_sampler.global_batches(1)
    assert len(batches) == len(pids) // 16
    for batch in batches:
        count = Counter(int(pids[i]) for i in batch)
        for a, b in partners:
            assert count[a] == count[b]
    with pytest.raises(ConfigError, match=r"attributes.json"):
        build_train_loader(_Sized(SimpleNamespace(pids=pids, dataset=SimpleNamespace(root=tmp_path))), cfg)


class _Sized:
    """A stand-in training set: pids and a dataset root, no items (the batch order alone is under test)."""

    def __init__(self, inner: SimpleNamespace) -> None:
        self.pids, self.dataset = inner.pids, inner.dataset

    def __len__(self) -> int:
        return len(self.pids)

    def __getitem__(self, index: int) -> int:
        return index
