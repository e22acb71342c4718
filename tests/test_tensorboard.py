"""TensorBoard scalars beside log.csv (tireid_lite.train.run_files.TensorBoardScalars): written when the
optional tensorboard package is installed, silently absent otherwise; a resumed run drops what a crash
wrote past its restored step."""

from __future__ import annotations

import builtins
import csv

import pytest

from tireid_lite.train.run_files import TENSORBOARD_DIR, TensorBoardScalars


def _scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, round(e.value, 6)) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_without_tensorboard_nothing_is_written(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith(("torch.utils.tensorboard", "tensorboard")):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    board = TensorBoardScalars(tmp_path)
    board.add("train", {"loss": 1.0}, 1)
    board.close()
    assert not board.available and not (tmp_path / TENSORBOARD_DIR).exists()


def test_trainer_writes_the_logs_scalars(tmp_path):
    pytest.importorskip("tensorboard", reason="the optional tensorboard package is not installed")
    from tireid_lite.config import apply_overrides, get_profile
    from tireid_lite.data.fixtures import write_fixture
    from tireid_lite.train.trainer import Trainer

    root = write_fixture("cuhk-pedes", tmp_path / "cuhk", ids_per_split={"train": 4, "val": 2, "test": 2},
                         images_per_id=2, size=(32, 16))
    cfg = apply_overrides(get_profile("cpu"), [
        "data.dataset=cuhk-pedes", f"data.root={root}", "data.image_size=[32,16]", "data.max_length=32",
        "model.image_width=32", "model.image_depth=1", "model.image_heads=2", "model.text_width=32",
        "model.text_depth=1", "model.text_heads=2", "model.embed_dim=32", "model.method=baseline",
        "model.warm_start=none", "train.batch_size=8", "train.num_epochs=2", "train.warmup_epochs=0",
        "train.epoch_fraction=1", "train.log_every=1", "train.threads=1"])
    out = tmp_path / "run"
    Trainer(cfg, out, device="cpu").fit()
    scalars = _scalars(out / TENSORBOARD_DIR)
    with open(out / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert scalars["train/loss"] == [(int(r["step"]), round(float(r["loss"]), 6)) for r in rows]
    assert [step for step, _ in scalars["val/R1"]] == [2, 4] and len(scalars["test/mAP"]) == 1
    metrics = __import__("json").loads((out / "test_metrics.json").read_text())
    assert scalars["test/R1"][0][1] == round(metrics["R1"], 6)


def test_a_resumed_board_drops_steps_past_the_restored_one(tmp_path):
    pytest.importorskip("tensorboard", reason="the optional tensorboard package is not installed")
    board = TensorBoardScalars(tmp_path)
    for step in (1, 2, 3):
        board.add("train", {"loss": float(step)}, step)
    board.close()
    resumed = TensorBoardScalars(tmp_path, purge_step=3)  # restored at step 2: step 3 is redone
    resumed.add("train", {"loss": 30.0}, 3)
    resumed.close()
    assert _scalars(tmp_path / TENSORBOARD_DIR)["train/loss"] == [(1, 1.0), (2, 2.0), (3, 30.0)]
