"""Data-parallel training: process-group helpers, global-batch sharding, and a real 2-process run.

The end-to-end test starts ``torchrun --nproc_per_node=2`` (gloo, CPU, one
thread per process) on a tiny SynthPEDES and compares it with a single process
trained with the same global batch.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from tireid_lite.config import apply_overrides, get_profile, save_config
from tireid_lite.data.synth import ensure_synth
from tireid_lite.errors import ConfigError
from tireid_lite import distributed
from tireid_lite.train.build import GlobalBatchSampler, SeededItems
from tireid_lite.train.trainer import Trainer

METRICS = ("R1", "R5", "R10", "mAP", "mINP")

@pytest.fixture(scope="module", autouse=True)
def _restore_torch_threads():
    """Runs here set train.threads=1, which is process-wide; give later tests torch's setting back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- helpers, one process


def test_shard_range_splits_contiguously():
    # 10 items over 3 ranks: 4 + 3 + 3, in order
    assert [distributed.shard_range(10, r, 3) for r in range(3)] == [range(0, 4), range(4, 7), range(7, 10)]
    assert [distributed.shard_range(2, r, 3) for r in range(3)] == [range(0, 1), range(1, 2), range(2, 2)]
    assert distributed.shard_range(5, 0, 1) == range(0, 5)


def test_single_process_is_a_world_of_one(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = distributed.init_distributed("cpu")
    assert (info.rank, info.world_size, info.local_rank, info.device.type, info.is_main) == (0, 1, 0, "cpu", True)
    assert not distributed.is_distributed() and distributed.world_size() == 1 and distributed.is_main()
    x = torch.arange(6.0).view(3, 2)
    assert distributed.all_gather_cat(x) is x
    assert distributed.all_reduce_mean(x) is x
    distributed.barrier()
    distributed.cleanup()


def test_bad_rank_variable_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE='two'"):
        distributed.init_distributed("cpu")


# --------------------------------------------------------------------------- helpers, two processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gather_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    info = distributed.init_distributed("cpu")
    try:
        rows = torch.full((2 * rank + 1, 2), float(rank))  # rank 0: 1 row, rank 1: 3 rows
        gathered = distributed.all_gather_cat(rows)
        mean = distributed.all_reduce_mean(torch.tensor([float(rank), 10.0 * rank]))
        torch.save(
            {"rank": info.rank, "world": distributed.world_size(), "main": distributed.is_main(),
             "gathered": gathered, "mean": mean},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
        distributed.barrier()
    finally:
        distributed.cleanup()


def test_gather_and_mean_across_two_processes(tmp_path):
    # fork: the workers inherit the imports instead of importing torch and the kit again
    mp.start_processes(_gather_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    expected = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]])  # rank order, padding trimmed
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert (got["rank"], got["world"], got["main"]) == (rank, 2, rank == 0)
        assert torch.equal(got["gathered"], expected)
        assert torch.equal(got["mean"], torch.tensor([0.5, 5.0]))


# --------------------------------------------------------------------------- global batches


def test_ranks_share_each_global_batch_in_order():
    single = GlobalBatchSampler(50, 8, seed=3)
    ranks = [GlobalBatchSampler(50, 8, seed=3, rank=r, world_size=2) for r in range(2)]
    for sampler in (single, *ranks):
        sampler.set_epoch(2)
    whole = list(single)
    halves = [list(s) for s in ranks]
    assert len(whole) == 6 == len(single)  # 50 // 8, the incomplete batch dropped
    for step, batch in enumerate(whole):
        assert len(batch) == 8 and all(epoch == 2 for epoch, _ in batch)
        assert halves[0][step] + halves[1][step] == batch
    indices = [i for batch in whole for _, i in batch]
    assert len(set(indices)) == 48 and set(indices) <= set(range(50))


def test_batch_order_depends_on_seed_and_epoch_only():
    def order(seed, epoch):
        sampler = GlobalBatchSampler(40, 8, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(0, 1) == order(0, 1)
    assert order(0, 1) != order(0, 2)
    assert order(0, 1) != order(1, 1)


def test_identity_batches_split_into_whole_identity_groups():
    pids = np.repeat(np.arange(12), 6)  # 12 identities x 6 pairs
    shares = [GlobalBatchSampler(len(pids), 16, seed=0, pids=pids, num_instances=4, rank=r, world_size=2)
              for r in range(2)]
    for share in zip(*shares):
        for half in share:
            ids = pids[[i for _, i in half]]
            assert len(half) == 8
            assert all(np.sum(ids == p) == 4 for p in np.unique(ids))  # 2 identities x K=4 per rank


def test_an_epoch_fraction_takes_the_first_batches_of_each_epochs_shuffle():
    whole, part = GlobalBatchSampler(80, 8, seed=1), GlobalBatchSampler(80, 8, seed=1, fraction=0.3)
    for epoch in (1, 2):
        whole.set_epoch(epoch)
        part.set_epoch(epoch)
        assert list(part) == list(whole)[:3] and len(part) == 3  # round(0.3 * 10)
    assert list(part) != (part.set_epoch(1) or list(part))  # another share of the pairs each epoch
    tiny = GlobalBatchSampler(16, 8, seed=0, fraction=0.1)
    assert len(tiny) == 1  # at least one batch
    with pytest.raises(ConfigError, match="train.epoch_fraction.*in \\(0, 1\\]"):
        GlobalBatchSampler(80, 8, seed=0, fraction=0.0)


def test_batch_size_must_split_evenly():
    with pytest.raises(ConfigError, match="multiple of 3"):
        GlobalBatchSampler(100, 8, seed=0, world_size=3)
    with pytest.raises(ConfigError, match="multiple of 8"):
        GlobalBatchSampler(100, 12, seed=0, pids=np.repeat(np.arange(25), 4), num_instances=4, world_size=2)
    with pytest.raises(ConfigError, match="only 5 pairs"):
        GlobalBatchSampler(5, 8, seed=0)


class _RandomItems(torch.utils.data.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, index):
        return torch.rand(3)


def test_item_randomness_depends_on_seed_epoch_and_index_only():
    items = SeededItems(_RandomItems(), seed=5)
    first = items[(1, 4)]
    torch.rand(100)  # whatever happened before does not matter
    assert torch.equal(items[(1, 4)], first)
    assert not torch.equal(items[(2, 4)], first)
    assert not torch.equal(items[(1, 5)], first)
    assert not torch.equal(SeededItems(_RandomItems(), seed=6)[(1, 4)], first)
    state = torch.get_rng_state()
    items[(1, 4)]
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left as it was


# --------------------------------------------------------------------------- torchrun end to end

# Tolerance. With the ID loss alone (a mean of per-pair terms), the gradient of
# a global batch of 8 equals the mean of the two ranks' gradients over their 4
# pairs, and every pair gets the same augmentation in both runs; so the two runs
# compute the same numbers up to float32 summation order (about 1e-7 relative
# per step). SDM and MLM are left out on purpose: SDM compares each caption with
# the other images of its batch, so it changes when the batch is split across
# processes (IRRA's behaviour too) and no tight comparison would hold. Losses are
# compared at 1e-5 relative; a metric may move by at most one query out of 30
# (3.34 points), in case two nearly tied scores swap.
LOSS_RTOL = 1e-5
METRIC_ATOL = 100.0 / 30 + 1e-6


def _log(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, monkeypatch):
    # A tiny SynthPEDES, found through data.root="" like the course does: 8 training identities
    # x 3 images x 2 captions = 48 pairs; val and test 15 images (unequal shards) and 30 captions.
    monkeypatch.setenv("TIREID_CACHE", str(tmp_path / "cache"))
    synth = ["data.synth_ids_train=8", "data.synth_ids_val=5", "data.synth_ids_test=5", "data.synth_images_per_id=3"]
    cfg = apply_overrides(get_profile("cpu"), [
        "data.dataset=synth", *synth, "data.image_size=[48,16]", "data.max_length=48",
        "model.method=baseline", "model.sdm_loss_weight=0",
        "model.image_width=32", "model.image_depth=1", "model.image_heads=2",
        "model.text_width=32", "model.text_depth=1", "model.text_heads=2", "model.embed_dim=32",
        "train.batch_size=8", "train.num_epochs=2", "train.warmup_epochs=1", "train.log_every=1",
        "train.lr=0.001", "train.threads=1", "train.epoch_fraction=1",
        "model.warm_start_steps=4",  # rank 0 pretrains the towers while rank 1 waits, then both load them
    ])
    ensure_synth(ids_train=8, ids_val=5, ids_test=5, images_per_id=3, size=(48, 16), seed=cfg.data.synth_seed)
    config_file = save_config(cfg, tmp_path / "cfg.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TIREID_PROGRESS": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "tireid_lite.cli", "train", "--config", str(config_file), "--out", str(tmp_path / "ddp")],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    single = Trainer(cfg, tmp_path / "single").fit()

    ddp_rows, single_rows = _log(tmp_path / "ddp" / "log.csv"), _log(tmp_path / "single" / "log.csv")
    assert [r["step"] for r in ddp_rows] == [r["step"] for r in single_rows] == [str(s) for s in range(1, 13)]
    for ddp_row, single_row in zip(ddp_rows, single_rows):
        for column in ("lr", "loss", "id", "id_acc", "grad_norm"):
            assert float(ddp_row[column]) == pytest.approx(float(single_row[column]), rel=LOSS_RTOL), column

    ddp_test = json.loads((tmp_path / "ddp" / "test_metrics.json").read_text())
    for name in METRICS:
        assert ddp_test[name] == pytest.approx(single[name], abs=METRIC_ATOL), name
    ddp_epochs = json.loads((tmp_path / "ddp" / "metrics.json").read_text())["epochs"]
    single_epochs = json.loads((tmp_path / "single" / "metrics.json").read_text())["epochs"]
    for ddp_epoch, single_epoch in zip(ddp_epochs, single_epochs):
        for name in METRICS:
            assert ddp_epoch[name] == pytest.approx(single_epoch[name], abs=METRIC_ATOL), name
    assert len(list((tmp_path / "cache" / "towers").glob("*.pt"))) == 1  # both runs started from one pretraining
    # rank 0 alone wrote the run's files
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == [
        "best.pt", "config.yaml", "last.pt", "log.csv", "metrics.json", "test_metrics.json",
    ]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is absent")
def test_asking_for_cuda_without_it_is_a_clear_error():
    with pytest.raises(ConfigError, match="no CUDA device is visible; use --device cpu"):
        distributed.init_distributed("cuda")
