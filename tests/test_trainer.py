"""Tests of the Trainer, `tireid train` / `tireid eval` and the retrieval evaluation loop.

A tiny CUHK-PEDES-format fixture (8 training identities x 3 images x 2
captions = 48 pairs; 5 identities in val and in test) and a tiny model (width
32, one layer per tower) keep each run to a few seconds on two cores. Every
run uses one thread, so two runs of the same config compute bit-identical
numbers and results can be compared exactly.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tireid_lite import cli
from tireid_lite.checkpoint import load_checkpoint
from tireid_lite.config import Config, apply_overrides, config_differences, get_profile, save_config
from tireid_lite.data.build import build_data
from tireid_lite.data.fixtures import write_fixture
from tireid_lite.distributed import resolve_amp
from tireid_lite.errors import ConfigError, TIReIDError
from tireid_lite.eval.retrieval import evaluate, extract_features
from tireid_lite.models.trained import load_trained
from tireid_lite.train.trainer import CRASH_ENV, CRASH_EXIT_CODE, RESUME_FREE_KEYS, Trainer

METRICS = ("R1", "R5", "R10", "mAP", "mINP")
STEPS_PER_EPOCH = 6  # 48 training pairs / batch 8
TINY = [
    "data.image_size=[32,16]", "data.max_length=32", "data.erasing_p=0.5", "data.flip_p=0.5",
    "model.image_width=32", "model.image_depth=1", "model.image_heads=2",
    "model.text_width=32", "model.text_depth=1", "model.text_heads=2", "model.embed_dim=32",
    "model.cross_depth=1", "model.cross_heads=2",
    "train.batch_size=8", "train.num_epochs=3", "train.warmup_epochs=1", "train.log_every=4",
    "train.lr=0.001", "train.threads=1", "train.epoch_fraction=1", "model.warm_start=none",
]


def tiny_config(root: Path, dataset: str = "cuhk-pedes", *extra: str) -> Config:
    return apply_overrides(get_profile("cpu"), [f"data.dataset={dataset}", f"data.root={root}", *TINY, *extra])


@pytest.fixture(scope="module", autouse=True)
def _restore_torch_threads():
    """Runs here set train.threads=1, which is process-wide; give later tests torch's setting back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cuhk_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "cuhk"
    counts = {"train": 8, "val": 5, "test": 5}
    return write_fixture("cuhk-pedes", root, ids_per_split=counts, images_per_id=3, size=(32, 16))


@pytest.fixture(scope="module")
def reference(cuhk_root, tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """One uninterrupted 3-epoch run that other tests compare against (read-only for them)."""
    out = tmp_path_factory.mktemp("runs") / "reference"
    metrics = Trainer(tiny_config(cuhk_root), out).fit()
    return out, metrics


def _read_log(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _epochs_without_times(path: Path) -> list[dict]:
    records = json.loads(path.read_text())["epochs"]
    return [{k: v for k, v in r.items() if k != "train_seconds"} for r in records]


# --------------------------------------------------------------------------- one run


def test_run_writes_config_logs_metrics_and_checkpoints(reference):
    out, metrics = reference
    assert sorted(p.name for p in out.iterdir()) == [
        "best.pt", "config.yaml", "last.pt", "log.csv", "metrics.json", "test_metrics.json",
    ]
    rows = _read_log(out / "log.csv")
    # every 4th step plus each epoch's last step (6, 12, 18)
    assert [int(r["step"]) for r in rows] == [4, 6, 8, 12, 16, 18]
    assert [int(r["epoch"]) for r in rows] == [1, 1, 2, 2, 3, 3]
    assert list(rows[0])[:4] == ["epoch", "step", "lr", "loss"] and "grad_norm" in rows[0]
    # lr of the step taken: warm-up over 6 steps from 0.1, then cosine over 12 (by hand)
    assert float(rows[0]["lr"]) == pytest.approx(1e-3 * (0.1 + 0.9 * 3 / 6))
    assert float(rows[1]["lr"]) == pytest.approx(1e-3 * (0.1 + 0.9 * 5 / 6))
    assert float(rows[2]["lr"]) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi / 12)))
    assert all(math.isfinite(float(r["loss"])) for r in rows)

    summary = json.loads((out / "metrics.json").read_text())
    epochs = summary["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3] and [e["step"] for e in epochs] == [6, 12, 18]
    val_r1 = [e["R1"] for e in epochs]
    assert summary["best_epoch"] == 1 + int(np.argmax(val_r1))  # the first epoch with the highest val R1
    assert summary["best_val_R1"] == max(val_r1)

    assert load_checkpoint(out / "last.pt")["epoch"] == 3
    assert load_checkpoint(out / "best.pt")["epoch"] == summary["best_epoch"]
    test = json.loads((out / "test_metrics.json").read_text())
    assert test["epoch"] == summary["best_epoch"] and test["split"] == "test"
    assert {k: test[k] for k in METRICS} == metrics


def _ranks_by_hand(sim: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray) -> dict[str, float]:
    """R1/R5/R10/mAP/mINP with explicit loops (stable order among ties)."""
    r1 = r5 = r10 = ap_sum = inp_sum = 0.0
    for i in range(len(q_pids)):
        order = np.argsort(-sim[i], kind="stable")
        hits = [rank + 1 for rank, g in enumerate(order) if g_pids[g] == q_pids[i]]
        r1 += hits[0] <= 1
        r5 += hits[0] <= 5
        r10 += hits[0] <= 10
        ap_sum += sum((j + 1) / r for j, r in enumerate(hits)) / len(hits)
        inp_sum += len(hits) / hits[-1]
    n = len(q_pids) / 100.0
    return {"R1": r1 / n, "R5": r5 / n, "R10": r10 / n, "mAP": ap_sum / n, "mINP": inp_sum / n}


def test_test_metrics_match_features_scored_by_hand(reference, cuhk_root):
    out, metrics = reference
    trained = load_trained(out / "best.pt")
    data = build_data(trained.cfg, trained.tokenizer, train=False)
    gallery, queries = data.gallery("test"), data.queries("test")
    with torch.no_grad():
        images = torch.stack([gallery[i]["images"] for i in range(len(gallery))])
        image_feats = trained.model.encode_images(images).numpy()
        text_feats = trained.model.encode_texts(queries.caption_ids).numpy()
    image_feats /= np.linalg.norm(image_feats, axis=1, keepdims=True)
    text_feats /= np.linalg.norm(text_feats, axis=1, keepdims=True)
    by_hand = _ranks_by_hand(text_feats @ image_feats.T, queries.pids, gallery.pids)
    assert metrics == pytest.approx(by_hand, abs=1e-6)


def test_same_seed_gives_the_same_run(reference, cuhk_root, tmp_path):
    out, metrics = reference
    again = Trainer(tiny_config(cuhk_root), tmp_path / "again").fit()
    assert again == metrics
    assert _read_log(tmp_path / "again" / "log.csv") == _read_log(out / "log.csv")


def test_another_seed_gives_another_run(reference, cuhk_root, tmp_path):
    out, _ = reference
    Trainer(tiny_config(cuhk_root, "cuhk-pedes", "train.seed=1", "train.num_epochs=1"), tmp_path / "other").fit()
    assert _read_log(tmp_path / "other" / "log.csv")[0]["loss"] != _read_log(out / "log.csv")[0]["loss"]


# --------------------------------------------------------------------------- crash and resume


def test_resume_after_hard_crash_ends_with_the_same_metrics(reference, cuhk_root, tmp_path, capsys):
    ref_out, ref_metrics = reference
    config_file = save_config(tiny_config(cuhk_root), tmp_path / "cfg.yaml")
    out = tmp_path / "crashed"
    crash_step = STEPS_PER_EPOCH + 3  # the middle of epoch 2
    env = {**os.environ, CRASH_ENV: str(crash_step), "TIREID_PROGRESS": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "tireid_lite.cli", "train", "--config", str(config_file), "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == CRASH_EXIT_CODE, result.stderr
    assert load_checkpoint(out / "last.pt")["epoch"] == 1  # the state of the last finished epoch
    assert not (out / "test_metrics.json").exists()
    assert int(_read_log(out / "log.csv")[-1]["step"]) == 8  # logged before the crash, dropped on resume

    assert cli.main(["train", "--out", str(out), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{"):]) == ref_metrics
    test_file = "test_metrics.json"
    assert json.loads((out / test_file).read_text()) == json.loads((ref_out / test_file).read_text())
    assert _read_log(out / "log.csv") == _read_log(ref_out / "log.csv")
    assert _epochs_without_times(out / "metrics.json") == _epochs_without_times(ref_out / "metrics.json")
    resumed, uninterrupted = load_checkpoint(out / "last.pt"), load_checkpoint(ref_out / "last.pt")
    for name, tensor in uninterrupted["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name
    assert resumed["step"] == 3 * STEPS_PER_EPOCH


def test_resuming_a_finished_run_repeats_its_test_metrics(reference, cuhk_root, tmp_path):
    out, metrics = reference
    copy = Path(shutil.copytree(out, tmp_path / "copy"))
    assert Trainer(tiny_config(cuhk_root), copy, resume=True).fit() == metrics


def test_resume_with_a_changed_config_is_refused(reference, cuhk_root, tmp_path):
    out, _ = reference
    copy = Path(shutil.copytree(out, tmp_path / "copy"))
    before = (copy / "last.pt").read_bytes()
    with pytest.raises(ConfigError, match=r"train\.lr: 0\.001 -> 0\.002"):
        Trainer(tiny_config(cuhk_root, "cuhk-pedes", "train.lr=0.002"), copy, resume=True)
    assert (copy / "last.pt").read_bytes() == before


def test_resume_may_change_threads_and_root():
    saved = {"data": {"root": "/a", "num_workers": 0}, "train": {"threads": 1, "lr": 0.1}}
    given = {"data": {"root": "/b", "num_workers": 4}, "train": {"threads": 2, "lr": 0.1}}
    assert config_differences(saved, given, free=RESUME_FREE_KEYS) == []
    given["train"]["lr"] = 0.2
    assert config_differences(saved, given, free=RESUME_FREE_KEYS) == ["train.lr: 0.1 -> 0.2"]


# --------------------------------------------------------------------------- refusals and errors


def test_non_empty_out_is_refused(cuhk_root, tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty; pass --resume"):
        Trainer(tiny_config(cuhk_root), out)
    config_file = save_config(tiny_config(cuhk_root), tmp_path / "cfg.yaml")
    assert cli.main(["train", "--config", str(config_file), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out) in err and "--resume" in err
    assert sorted(os.listdir(out)) == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"


def test_cli_unknown_key_names_it(tmp_path, capsys):
    assert cli.main(["train", "--out", str(tmp_path / "x"), "--set", "train.epochs=3"]) == 1
    assert "'train.epochs'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_crash_hook_value_must_be_a_step(cuhk_root, tmp_path, monkeypatch):
    monkeypatch.setenv(CRASH_ENV, "soon")
    with pytest.raises(ConfigError, match=CRASH_ENV):
        Trainer(tiny_config(cuhk_root), tmp_path / "x")


def test_amp_setting():
    cpu = torch.device("cpu")
    assert resolve_amp("auto", cpu) is None
    assert resolve_amp("off", cpu) is None
    assert resolve_amp("bf16", cpu) is torch.bfloat16


# --------------------------------------------------------------------------- no val split


def test_without_val_split_the_last_epoch_is_kept(tmp_path_factory, tmp_path, capsys):
    root = write_fixture("icfg-pedes", tmp_path_factory.mktemp("data") / "icfg",
                         ids_per_split={"train": 8, "test": 5}, images_per_id=3, size=(32, 16))
    cfg = tiny_config(root, "icfg-pedes", "train.num_epochs=2", "train.batch_size=4")
    Trainer(cfg, tmp_path / "run").fit()
    assert "has no val split" in capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["selection"] == "last epoch (no val split)" and summary["best_epoch"] == 2
    assert "R1" not in summary["epochs"][0]  # no evaluation without val
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == 2
    assert json.loads((tmp_path / "run" / "test_metrics.json").read_text())["epoch"] == 2


# --------------------------------------------------------------------------- tireid eval


def test_eval_cli_prints_the_five_metrics(reference, capsys):
    out, metrics = reference
    assert cli.main(["eval", "--checkpoint", str(out / "best.pt")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert tuple(printed) == METRICS
    assert printed == pytest.approx(metrics, abs=1e-9)


def test_eval_cli_on_val_repeats_the_selection_metrics(reference, capsys):
    out, _ = reference
    summary = json.loads((out / "metrics.json").read_text())
    best = next(e for e in summary["epochs"] if e["epoch"] == summary["best_epoch"])
    assert cli.main(["eval", "--checkpoint", str(out / "best.pt"), "--split", "val"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == pytest.approx({k: best[k] for k in METRICS}, abs=1e-9)


def test_eval_cli_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert cli.main(["eval", "--checkpoint", str(tmp_path / "nope.pt")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.pt does not exist" in err


# --------------------------------------------------------------------------- a model of your own


class ToyModel(nn.Module):
    """The Trainer's model interface in a few lines: linear image encoder, bag-of-words text encoder."""

    caption_hook = None

    def __init__(self, image_size: tuple[int, int], vocab_size: int, num_classes: int, poison: bool = False):
        super().__init__()
        self.image = nn.Linear(3 * image_size[0] * image_size[1], 16)
        self.text = nn.EmbeddingBag(vocab_size, 16)
        self.classifier = nn.Linear(16, num_classes)
        self.poison = poison

    def encode_images(self, images):
        return self.image(images.flatten(1))  # (B, 16)

    def encode_texts(self, caption_ids):
        return self.text(caption_ids)  # (B, 16)

    def similarity(self, text_feats, image_feats):
        return F.normalize(text_feats, dim=-1) @ F.normalize(image_feats, dim=-1).t()

    def forward(self, batch):
        img = self.classifier(self.encode_images(batch["images"]))
        txt = self.classifier(self.encode_texts(batch["caption_ids"]))
        loss = (F.cross_entropy(img, batch["pids"]) + F.cross_entropy(txt, batch["pids"])) / 2
        if self.poison:
            loss = loss * float("nan")
        return {"loss": loss, "toy": loss.detach() * 2}

    def parameter_groups(self, lr, weight_decay, new_module_lr_factor, pretrained_lr_factor, **rules):
        return [{"params": list(self.parameters()), "lr": lr, "weight_decay": weight_decay}]


def _toy(cuhk_root: Path, poison: bool = False):
    cfg = tiny_config(cuhk_root, "cuhk-pedes", "train.num_epochs=2", "train.log_every=1")
    data = build_data(cfg)
    return cfg, data, ToyModel(data.image_size, data.tokenizer.vocab_size, data.num_classes, poison)


def test_trainer_runs_a_model_of_your_own(cuhk_root, tmp_path):
    cfg, data, model = _toy(cuhk_root)
    trainer = Trainer(cfg, tmp_path / "toy", data=data, model=model)
    metrics = trainer.fit()
    assert tuple(metrics) == METRICS
    assert len(json.loads((tmp_path / "toy" / "metrics.json").read_text())["epochs"]) == 2
    rows = _read_log(tmp_path / "toy" / "log.csv")
    assert len(rows) == 2 * STEPS_PER_EPOCH  # log_every=1
    assert all(float(r["toy"]) == pytest.approx(2 * float(r["loss"]), rel=1e-6) for r in rows)


class CountingModel(ToyModel):
    """Also reports how many forward passes it has run, so log rows can be checked by hand."""

    calls = 0

    def forward(self, batch):
        out = super().forward(batch)
        self.calls += 1
        return {**out, "calls": torch.tensor(float(self.calls))}


def test_a_log_row_is_the_mean_of_the_steps_since_the_last_row(cuhk_root, tmp_path):
    cfg = tiny_config(cuhk_root, "cuhk-pedes", "train.num_epochs=1", "train.log_every=4")
    data = build_data(cfg)
    model = CountingModel(data.image_size, data.tokenizer.vocab_size, data.num_classes)
    Trainer(cfg, tmp_path / "counting", data=data, model=model).fit()
    rows = _read_log(tmp_path / "counting" / "log.csv")
    # 6 steps, rows after steps 4 and 6: the means of calls 1-4 and 5-6
    assert [int(r["step"]) for r in rows] == [4, 6]
    assert [float(r["calls"]) for r in rows] == [2.5, 5.5]


def test_non_finite_loss_stops_with_a_clear_error(cuhk_root, tmp_path):
    cfg, data, model = _toy(cuhk_root, poison=True)
    with pytest.raises(TIReIDError, match=r"training loss is nan at step 1 \(epoch 1\)"):
        Trainer(cfg, tmp_path / "toy", data=data, model=model).fit()


# --------------------------------------------------------------------------- retrieval evaluation


class _Rows(torch.utils.data.Dataset):
    def __init__(self, key: str, rows: list[list[float]], pids: list[int]):
        self.key, self.rows, self.pids = key, torch.tensor(rows), np.asarray(pids)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return {self.key: self.rows[i], "pids": torch.tensor(int(self.pids[i]))}


class _FeaturesAsInputs(nn.Module):
    """Inputs already are the features; similarity is the plain dot product."""

    def encode_images(self, images):
        return images

    def encode_texts(self, caption_ids):
        return caption_ids

    def similarity(self, text_feats, image_feats):
        return text_feats @ image_feats.t()


class _EvalData:
    def __init__(self, gallery, queries):
        self._gallery, self._queries = gallery, queries

    def gallery(self, split):
        return self._gallery

    def queries(self, split):
        return self._queries


def test_evaluate_on_a_hand_made_ranking():
    # gallery: image 0 (pid 0) at [1, 0], image 1 (pid 1) at [0, 1]
    # query 0 (pid 0) scores [0.2, 0.9]: its match is ranked 2nd -> R1 0, AP 1/2, INP 1/2
    # query 1 (pid 1) scores [0.1, 0.8]: its match is ranked 1st -> R1 1, AP 1, INP 1
    gallery = _Rows("images", [[1.0, 0.0], [0.0, 1.0]], [0, 1])
    queries = _Rows("caption_ids", [[0.2, 0.9], [0.1, 0.8]], [0, 1])
    model = _FeaturesAsInputs().train()
    metrics = evaluate(model, _EvalData(gallery, queries), "test", batch_size=1)
    assert metrics == pytest.approx({"R1": 50.0, "R5": 100.0, "R10": 100.0, "mAP": 75.0, "mINP": 75.0})
    assert model.training  # given back in the mode it came in


def test_extract_features_keeps_order_across_batches():
    rows = [[float(i), float(-i)] for i in range(7)]
    loader = torch.utils.data.DataLoader(_Rows("images", rows, [0] * 7), batch_size=3)
    feats = extract_features(_FeaturesAsInputs(), loader, "images")
    assert torch.equal(feats, torch.tensor(rows))
    with pytest.raises(ValueError, match="'images' or 'texts'"):
        extract_features(_FeaturesAsInputs(), loader, "captions")


# --------------------------------------------------------------------------- building the data


def test_build_data_for_evaluation_only(cuhk_root):
    data = build_data(tiny_config(cuhk_root), train=False)
    assert data.train_set is None and data.noise is None
    assert data.num_classes == 8
    assert len(data.gallery("val")) == 15 and len(data.queries("val")) == 30  # 5 ids x 3 images x 2 captions
    assert data.gallery("val") is data.gallery("val")
    assert data.has_split("val") and data.has_split("train")


def test_build_data_injects_noise_when_asked(cuhk_root):
    clean = build_data(tiny_config(cuhk_root)).train_set.pairs
    data = build_data(tiny_config(cuhk_root, "cuhk-pedes", "data.noise_rate=0.5", "data.noise_seed=3"))
    source = data.noise.caption_source
    moved = source != np.arange(len(clean))
    assert 0 < moved.sum() <= 24  # round(0.5 x 48) pairs chosen; a permutation may leave a few in place
    assert [p.caption for p in data.train_set.pairs] == [clean[s].caption for s in source]
    assert [p.path for p in data.train_set.pairs] == [p.path for p in clean]  # images stay put
    assert np.array_equal(data.train_set.noisy, data.noise.noisy)


def test_build_data_needs_a_root_for_real_datasets():
    cfg = apply_overrides(get_profile("cpu"), ["data.dataset=rstpreid", "model.warm_start=none"])
    with pytest.raises(ConfigError, match="'data.root' is empty.*--data-root"):
        build_data(cfg)


def test_clip_tokenizer_needs_the_pretrained_dir(cuhk_root):
    with pytest.raises(ConfigError, match="model.pretrained_dir"):
        build_data(tiny_config(cuhk_root, "cuhk-pedes", "data.tokenizer=clip"))


def test_loader_batches_do_not_depend_on_workers(cuhk_root):
    from tireid_lite.train.build import build_train_loader, set_loader_epoch

    def epoch_two(workers: int) -> list[dict[str, torch.Tensor]]:
        cfg = tiny_config(cuhk_root, "cuhk-pedes", f"data.num_workers={workers}")
        loader = build_train_loader(build_data(cfg).train_set, cfg)
        set_loader_epoch(loader, 2)
        return list(loader)

    in_process, with_workers = epoch_two(0), epoch_two(2)
    assert len(in_process) == len(with_workers) == STEPS_PER_EPOCH
    for a, b in zip(in_process, with_workers):
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("item", ["train.eval_every=0", "train.log_every=0", "train.seed=-1", "train.grad_clip=-1"])
def test_values_the_trainer_cannot_use_name_their_key(cuhk_root, tmp_path, item):
    key = item.split("=")[0]
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        Trainer(tiny_config(cuhk_root, "cuhk-pedes", item), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_identity_sampler_batches_hold_p_identities_of_k_pairs(cuhk_root):
    from tireid_lite.train.build import build_train_loader, set_loader_epoch

    cfg = tiny_config(cuhk_root, "cuhk-pedes", "data.sampler=identity", "data.num_instances=4")
    loader = build_train_loader(build_data(cfg).train_set, cfg)
    set_loader_epoch(loader, 1)
    batches = [batch["pids"].tolist() for batch in loader]
    # 8 identities x 6 pairs: one group of K=4 each (the other 2 pairs wait), so 4 batches of 2 identities
    assert len(batches) == 4
    for pids in batches:
        assert sorted(pids.count(p) for p in set(pids)) == [4, 4]
    assert sorted(p for pids in batches for p in set(pids)) == list(range(8))


def test_a_fractional_warm_up_counts_in_steps(cuhk_root, tmp_path):
    trainer = Trainer(tiny_config(cuhk_root, "cuhk-pedes", "train.warmup_epochs=0.5"), tmp_path / "run")
    assert trainer.steps_per_epoch == STEPS_PER_EPOCH
    assert trainer.schedule.warmup_steps == 3  # half of 6 steps
    assert trainer.schedule.total_steps == 3 * STEPS_PER_EPOCH
