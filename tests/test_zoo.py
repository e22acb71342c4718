"""The model cache: train once, then load; keys follow the config; nothing half-written is used."""

from __future__ import annotations

import json

import pytest
import torch

from tireid_lite import zoo
from tireid_lite.data.fixtures import write_fixture

TINY = [
    "data.dataset=cuhk-pedes", "data.image_size=[32,16]", "data.max_length=32",
    "model.image_width=32", "model.image_depth=1", "model.image_heads=2",
    "model.text_width=32", "model.text_depth=1", "model.text_heads=2", "model.embed_dim=32",
    "model.cross_depth=1", "model.cross_heads=2",
    "train.batch_size=8", "train.num_epochs=2", "train.warmup_epochs=1", "train.threads=1", "train.epoch_fraction=1",
    "model.warm_start=none",
]


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def overrides(tmp_path_factory, monkeypatch) -> list[str]:
    monkeypatch.setenv("TIREID_CACHE", str(tmp_path_factory.mktemp("cache")))
    root = write_fixture("cuhk-pedes", tmp_path_factory.mktemp("data") / "cuhk",
                         ids_per_split={"train": 6, "val": 4, "test": 4}, images_per_id=2, size=(32, 16))
    return [*TINY, f"data.root={root}"]


def test_first_call_trains_second_loads_the_same_model(overrides):
    first = zoo.get_or_train("baseline", "cpu", 0, overrides=overrides)
    assert first.trained_now and first.folder.parent == zoo.zoo_dir()
    assert first.key.startswith("baseline-cpu-seed0-")
    saved = json.loads((first.folder / "test_metrics.json").read_text())
    assert first.test_metrics == {name: saved[name] for name in zoo.METRIC_NAMES}
    second = zoo.get_or_train("baseline", "cpu", 0, overrides=overrides)
    assert not second.trained_now and second.folder == first.folder
    for (name, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert not second.model.training
    assert list(second.log().columns[:3]) == ["epoch", "step", "lr"]
    assert [record["epoch"] for record in second.history()] == [1, 2]
    assert second.train_seconds() > 0
    # no temporary folder left behind; the fill's lock file stays (see tireid_lite.cache_lock)
    assert sorted(p.name for p in zoo.zoo_dir().iterdir()) == [first.key, first.key + ".lock"]


def test_keys_follow_method_seed_and_any_setting(overrides):
    base = zoo.model_key(zoo.zoo_config("baseline", "cpu", 0, overrides))
    assert zoo.model_key(zoo.zoo_config("baseline", "cpu", 0, overrides)) == base
    others = {
        zoo.model_key(zoo.zoo_config("irra", "cpu", 0, overrides)),
        zoo.model_key(zoo.zoo_config("baseline", "cpu", 1, overrides)),
        zoo.model_key(zoo.zoo_config("baseline", "cpu", 0, [*overrides, "train.lr=0.0031"])),
    }
    assert base not in others and len(others) == 3


def test_an_unfinished_folder_is_trained_again(overrides):
    cfg = zoo.zoo_config("baseline", "cpu", 0, overrides)
    leftover = zoo.zoo_dir() / zoo.model_key(cfg)
    leftover.mkdir(parents=True)
    (leftover / "last.pt").write_bytes(b"not a finished run")
    got = zoo.get_or_train("baseline", "cpu", 0, overrides=overrides)
    assert got.trained_now and got.folder == leftover
    assert (leftover / "best.pt").exists() and (leftover / "last.pt").read_bytes() != b"not a finished run"
    again = zoo.get_or_train("baseline", "cpu", 0, overrides=overrides, retrain=True)
    assert again.trained_now and again.test_metrics == got.test_metrics  # same seed, same run


def test_partitioners_share_the_warmup_of_the_run_without_one(overrides):
    from tireid_lite.train.trainer import Trainer

    noisy = [*overrides, "data.noise_rate=0.5", "model.kpdm.mask_strategy=random", "model.kpdm.importance_layers=1"]
    tcp = zoo.get_or_train("kpdm", "cpu", 0, overrides=[*noisy, "train.partitioner=tcp"])
    none = zoo.zoo_dir() / zoo.model_key(zoo.zoo_config("kpdm", "cpu", 0, [*noisy, "train.partitioner=none"]))
    assert (none / "test_metrics.json").is_file() and (none / "epoch1.pt").is_file()
    assert not (tcp.folder / "epoch1.pt").exists()
    assert [record["epoch"] for record in tcp.history()] == [1, 2] and "partition_f1" in tcp.history()[1]
    scratch = Trainer(zoo.zoo_config("kpdm", "cpu", 0, [*noisy, "train.partitioner=tcp"]), zoo.zoo_dir().parent / "x")
    assert scratch.fit() == pytest.approx(tcp.test_metrics, abs=1e-12)
    for name, tensor in scratch.raw_model.state_dict().items():
        assert torch.equal(tcp.model.state_dict()[name], tensor), name
