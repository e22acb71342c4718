"""Inputs a new user tries: each gets one line ``tireid <cmd>: error: ...`` (or a plain warning), never a
traceback, and nothing of theirs is lost."""

from __future__ import annotations

import errno
import json
import os
import zipfile
from pathlib import Path

import pytest
import torch

from tireid_lite import cli
from tireid_lite.config import apply_overrides, get_profile, save_config
from tireid_lite.data import checker
from tireid_lite.data.fixtures import break_fixture, write_fixture
from tireid_lite.data.synth import generate, generate_synth
from tireid_lite import checkpoint
from tireid_lite.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tireid_lite.train.trainer import Trainer

TINY = [
    "data.image_size=[32,16]", "data.max_length=32", "model.image_width=32", "model.image_depth=1",
    "model.image_heads=2", "model.text_width=32", "model.text_depth=1", "model.text_heads=2",
    "model.embed_dim=32", "model.cross_depth=1", "model.cross_heads=2", "model.method=baseline",
    "train.batch_size=8", "train.num_epochs=1", "train.warmup_epochs=0", "train.threads=1",
    "train.epoch_fraction=1", "model.warm_start=none",
]
SYNTH_TINY = ["--ids-train", "4", "--ids-val", "2", "--ids-test", "2", "--images-per-id", "2", "--size", "48x16"]


@pytest.fixture(scope="module", autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _quiet(monkeypatch, tmp_path):
    monkeypatch.setenv("TIREID_PROGRESS", "0")
    monkeypatch.setenv("TIREID_CACHE", str(tmp_path / "cache"))


def tiny_config(root: Path, *extra: str):
    return apply_overrides(get_profile("cpu"), ["data.dataset=cuhk-pedes", f"data.root={root}", *TINY, *extra])


@pytest.fixture(scope="module")
def cuhk_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "cuhk"
    return write_fixture("cuhk-pedes", root, ids_per_split={"train": 4, "val": 2, "test": 2}, images_per_id=3,
                         size=(32, 16))


@pytest.fixture(scope="module")
def finished_run(cuhk_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "done"
    Trainer(tiny_config(cuhk_root), out).fit()
    return out


def one_error(capsys, command: str) -> str:
    """The single stderr line of a refused command, without its ``tireid <cmd>: error: `` prefix."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    prefix = f"tireid {command}: error: "
    assert err.startswith(prefix), err
    return err[len(prefix):].strip()


# ----------------------------------------------------------------------------- 5. one clear error


def test_config_that_is_a_folder(tmp_path, capsys):
    assert cli.main(["train", "--config", str(tmp_path), "--out", str(tmp_path / "run")]) == 1
    assert one_error(capsys, "train") == (
        f"config file {tmp_path} is a folder; give a YAML file, such as a run's {tmp_path / 'config.yaml'}")


def test_config_that_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "photo.yaml"
    path.write_bytes(b"\xff\xd8\xff\xe0 binary")
    assert cli.main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 1
    assert one_error(capsys, "train") == (
        f"config file {path} is not UTF-8 text (byte 0); give a YAML file, such as a run's config.yaml")


@pytest.mark.parametrize(("item", "message"), [
    ("model.patch_size=0", "config key 'model.patch_size' is 0; it must be a positive number of pixels, e.g. 8"),
    ("model.image_width=0", "config key 'model.image_width' is 0; it must be a positive width, e.g. 64"),
    ("model.embed_dim=-1", "config key 'model.embed_dim' is -1; it must be a positive width, e.g. 128"),
    ("data.num_workers=-1", "config key 'data.num_workers' is -1; it must be 0 (load in the training process) "
                            "or a number of worker processes"),
    ("model=3", "--set 'model=3': 'model' is a section, not a key; set one of its keys, e.g. --set model.method=irra"),
])
def test_bad_set_values(item, message, tmp_path, capsys):
    assert cli.main(["train", "--out", str(tmp_path / "run"), "--set", item]) == 1
    assert one_error(capsys, "train") == message


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC, errno.EBUSY])
def test_synth_into_a_folder_that_cannot_take_it(code, tmp_path, capsys, monkeypatch):
    def refuse(root, params):
        raise OSError(code, os.strerror(code), str(root / "reid_raw.json"))

    monkeypatch.setattr(generate, "_write_dataset", refuse)
    out = tmp_path / "synth"
    assert cli.main(["synth", "--out", str(out), *SYNTH_TINY]) == 1
    message = one_error(capsys, "synth")
    assert message.startswith(f"cannot write SynthPEDES to {out}: {os.strerror(code)} (")
    assert message.endswith("; choose a writable folder with free space (the dataset is written beside it "
                            "first, then moved into place)")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no half dataset, no temporary folder


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC, errno.EBUSY])
def test_checkpoint_write_that_fails_keeps_the_previous_one(code, tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last.pt", {"model": {"w": torch.ones(2)}})

    def refuse(state, fh):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(checkpoint.torch, "save", refuse)
    with pytest.raises(CheckpointError) as caught:
        save_checkpoint(path, {"model": {"w": torch.zeros(2)}})
    assert str(caught.value) == (
        f"cannot write checkpoint {path} (the previous one is kept): {os.strerror(code)}; make room on that disk "
        f"or make {tmp_path} writable, then resume the run with --resume")
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]


def test_training_whose_checkpoint_cannot_be_written(cuhk_root, tmp_path, capsys, monkeypatch):
    def refuse(state, fh):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.torch, "save", refuse)
    config = save_config(tiny_config(cuhk_root), tmp_path / "cfg.yaml")
    assert cli.main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 1
    message = one_error(capsys, "train")
    assert message.startswith(f"cannot write checkpoint {tmp_path / 'run' / 'best.pt'}: No space left on device;")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_eval_on_cuda_without_a_gpu(finished_run, capsys):
    assert cli.main(["eval", "--checkpoint", str(finished_run / "best.pt"), "--device", "cuda"]) == 1
    assert one_error(capsys, "eval") == (
        "--device cuda was given but torch sees no CUDA GPU here (torch.cuda.is_available() is False); "
        "use --device cpu, or leave --device out to use a GPU when there is one")


def test_symlink_loops(tmp_path, capsys):
    (tmp_path / "a.pt").symlink_to(tmp_path / "b.pt")
    (tmp_path / "b.pt").symlink_to(tmp_path / "a.pt")
    assert cli.main(["eval", "--checkpoint", str(tmp_path / "a.pt")]) == 1
    assert one_error(capsys, "eval") == (
        f"checkpoint {tmp_path / 'a.pt'} is a symbolic link that leads nowhere (a loop or a missing target); "
        "point it at a best.pt or last.pt file")
    (tmp_path / "root").symlink_to(tmp_path / "root")
    assert cli.main(["check-data", "--dataset", "cuhk-pedes", "--root", str(tmp_path / "root")]) == 1
    assert one_error(capsys, "check-data").startswith(
        f"dataset root {tmp_path / 'root'} is a symbolic link that leads nowhere (a loop or a missing target);")


def test_text_file_given_to_eval(tmp_path, capsys):
    path = tmp_path / "notes.txt"
    path.write_text("hello, these are my notes\n")
    assert cli.main(["eval", "--checkpoint", str(path)]) == 1
    assert one_error(capsys, "eval") == (
        f"checkpoint {path} is corrupt or not a tireid-lite checkpoint (a checkpoint is a zip archive; this file "
        "starts with b'hello, these are'); give the path of a best.pt or last.pt file")


def test_cpu_profile_on_a_real_dataset_root_names_the_keys_to_set(cuhk_root, tmp_path, capsys):
    assert cli.main(["train", "--profile", "cpu", "--data-root", str(cuhk_root), "--out", str(tmp_path / "r")]) == 1
    assert one_error(capsys, "train") == (
        f"--data-root {cuhk_root} holds cuhk-pedes but data.dataset is synth; add --set data.dataset=cuhk-pedes "
        "--set model.warm_start=none (the attribute warm start needs SynthPEDES; model.pretrained_dir=DIR loads "
        "CLIP instead)")


# ----------------------------------------------------------------------------- 4. nothing lost, nothing silently wrong


def test_resume_without_last_pt_in_a_finished_run_is_refused(finished_run, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("config.yaml", "best.pt", "metrics.json", "test_metrics.json", "log.csv"):
        (out / name).write_bytes((finished_run / name).read_bytes())
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert cli.main(["train", "--out", str(out), "--resume"]) == 1
    assert one_error(capsys, "train") == (
        f"cannot resume {out}: it holds a run (best.pt, metrics.json, test_metrics.json) but no last.pt "
        "to continue from; choose a new --out, or move that run's files away to start over")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_resume_in_a_folder_with_only_a_config_starts_over_and_says_so(cuhk_root, tmp_path, capsys):
    out = tmp_path / "run"
    save_config(tiny_config(cuhk_root), out / "config.yaml")
    Trainer(tiny_config(cuhk_root), out, resume=True)
    assert f"no last.pt in {out}: the run starts from scratch" in capsys.readouterr().out


def _damage_a_tensor(path: Path) -> None:
    """Flip bytes in the middle of the largest tensor of the archive, leaving the zip's structure whole."""
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.file_size // 2
    data[start : start + 8] = bytes(255 - b for b in data[start : start + 8])
    path.write_bytes(bytes(data))


def test_damaged_checkpoint_is_refused_by_resume_and_eval(finished_run, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("config.yaml", "last.pt"):
        (out / name).write_bytes((finished_run / name).read_bytes())
    _damage_a_tensor(out / "last.pt")
    assert cli.main(["eval", "--checkpoint", str(out / "last.pt")]) == 1
    message = one_error(capsys, "eval")
    assert message.startswith(f"checkpoint {out / 'last.pt'} is damaged (checksum mismatch in ")
    assert cli.main(["train", "--out", str(out), "--resume"]) == 1
    assert one_error(capsys, "train") == message


def test_checkpoint_with_nan_weights_is_refused(finished_run, tmp_path, capsys):
    state = load_checkpoint(finished_run / "best.pt")
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name] = torch.full_like(state["model"][name], float("nan"))
    path = save_checkpoint(tmp_path / "best.pt", state)
    assert cli.main(["eval", "--checkpoint", str(path)]) == 1
    assert one_error(capsys, "eval") == (
        f"checkpoint {path} holds weights that are not finite ({name}); the run that wrote it had diverged or "
        "the file is damaged: use an earlier checkpoint or train again")


def test_synth_overwrite_keeps_an_unrelated_folder(tmp_path, capsys):
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("my work")
    assert cli.main(["synth", "--out", str(out), "--overwrite", *SYNTH_TINY]) == 1
    assert one_error(capsys, "synth") == (
        f"{out} holds files that are not a SynthPEDES written by the kit (no SynthPEDES attributes.json beside "
        "reid_raw.json); --overwrite replaces only such a folder, so choose an empty or new directory")
    assert (out / "chapter1.tex").read_text() == "my work"
    assert cli.main(["synth", "--out", str(tmp_path / "s"), *SYNTH_TINY]) == 0  # a SynthPEDES: replaced
    assert cli.main(["synth", "--out", str(tmp_path / "s"), "--overwrite", "--seed", "1", *SYNTH_TINY]) == 0


def test_eval_on_other_data_than_trained_for_says_so(finished_run, tmp_path, capsys):
    synth = generate_synth(tmp_path / "synth", ids_train=4, ids_val=2, ids_test=2, images_per_id=2, size=(48, 16))
    assert cli.main(["eval", "--checkpoint", str(finished_run / "best.pt"), "--data-root", str(synth)]) == 0
    out = capsys.readouterr()
    assert set(json.loads(out.out)) == {"R1", "R5", "R10", "mAP", "mINP"}
    assert out.err == (
        f"tireid eval: warning: {finished_run / 'best.pt'} was trained on cuhk-pedes but {synth} holds synth; "
        "the metrics below compare unlike data (give --data-root a cuhk-pedes root to evaluate it on what it "
        "was trained for)\n")


def test_a_run_refused_for_bad_data_can_be_run_again_in_its_folder(tmp_path, capsys):
    root = write_fixture("cuhk-pedes", tmp_path / "cuhk", ids_per_split={"train": 4, "val": 2, "test": 2},
                         images_per_id=3, size=(32, 16))
    original = {p: p.read_bytes() for p in (root / "imgs").rglob("*.png")}
    break_fixture(root, "cuhk-pedes", "corrupt-image", entry=0)
    out = tmp_path / "run"
    config = save_config(tiny_config(root), tmp_path / "cfg.yaml")
    assert cli.main(["train", "--config", str(config), "--out", str(out)]) == 1
    assert "cannot open image" in one_error(capsys, "train")
    for path, data in original.items():  # the user repairs the data and runs the same command again
        path.write_bytes(data)
    assert cli.main(["train", "--config", str(config), "--out", str(out)]) == 0
    assert "of a run that stopped before its first checkpoint: starting that run over" in capsys.readouterr().out
    assert (out / "best.pt").is_file()


# ----------------------------------------------------------------------------- 6. check-data answers "usable" only for a root that can train


def _problems(root: Path) -> list[tuple[str, str]]:
    return [(p.severity, p.message) for p in checker.check_dataset("cuhk-pedes", root).problems]


def test_check_data_without_a_train_split(tmp_path):
    root = write_fixture("cuhk-pedes", tmp_path / "cuhk", ids_per_split={"train": 0, "val": 2, "test": 2})
    report = checker.check_dataset("cuhk-pedes", root)
    assert not report.usable
    assert ("error", f"{root / 'reid_raw.json'} has no 'train' split (only test, val); training needs one: mark "
            "the training entries with split 'train'") in _problems(root)


def test_check_data_finds_empty_and_non_image_files_without_full(tmp_path):
    root = write_fixture("cuhk-pedes", tmp_path / "cuhk")
    paths = sorted(p for p in (root / "imgs").rglob("*") if p.is_file())
    paths[0].write_bytes(b"")
    paths[1].write_text("<html>not found</html>")
    report = checker.check_dataset("cuhk-pedes", root)
    assert not report.usable
    (message,) = [m for s, m in _problems(root) if s == "error"]
    rel = [p.relative_to(root / "imgs").as_posix() for p in paths[:2]]
    assert message.startswith(f"2 of {len(paths)} images in {root / 'imgs'}/ do not look like images: ")
    assert f"{rel[0]} (an empty file)" in message and f"{rel[1]} (not an image: it starts with b'<html>no')" in message
    assert message.endswith("; training would stop at the first one it reads, so replace them with intact copies")


def test_check_data_warns_about_images_linked_from_outside(tmp_path):
    root = write_fixture("cuhk-pedes", tmp_path / "cuhk")
    image = sorted(p for p in (root / "imgs").rglob("*") if p.is_file())[0]
    elsewhere = tmp_path / "elsewhere.png"
    elsewhere.write_bytes(image.read_bytes())
    image.unlink()
    image.symlink_to(elsewhere)
    rel = image.relative_to(root / "imgs").as_posix()
    warnings = [m for s, m in _problems(root) if s == "warning"]
    assert any(m.startswith("1 of ") and f"images are symbolic links to files outside {root}: {rel}; training "
               "reads them through the links" in m for m in warnings), warnings
