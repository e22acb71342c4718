"""Unit tests for tireid_lite.checkpoint: atomic writes, clear errors, random state, seeds."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from tireid_lite import checkpoint
from tireid_lite.checkpoint import (
    CheckpointError,
    derive_seed,
    derive_seeds,
    load_checkpoint,
    numpy_generators,
    read_folder,
    require_keys,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
    write_folder,
)


def _state(value: float) -> dict:
    return {
        "model": {"weight": torch.full((2, 3), value), "bias": torch.arange(3)},
        "epoch": 4,
        "best_metric": None,
        "history": [{"epoch": 1, "R1": 12.5}],
        "tokenizer": {"tokenizer.json": b'{"a": 1}', "blob.bin": bytes([0, 255, 7])},
        "pair": (1, "x"),
    }


# --------------------------------------------------------------------------- save / load


def test_round_trip_keeps_every_value(tmp_path):
    path = save_checkpoint(tmp_path / "run" / "last.pt", _state(1.5))
    assert path == tmp_path / "run" / "last.pt"
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["weight"], torch.full((2, 3), 1.5))
    assert torch.equal(loaded["model"]["bias"], torch.tensor([0, 1, 2]))
    assert loaded["epoch"] == 4 and loaded["best_metric"] is None
    assert loaded["history"] == [{"epoch": 1, "R1": 12.5}]
    assert loaded["tokenizer"] == {"tokenizer.json": b'{"a": 1}', "blob.bin": bytes([0, 255, 7])}
    assert loaded["pair"] == (1, "x")
    assert os.listdir(tmp_path / "run") == ["last.pt"]  # no temp file left behind


def test_file_loads_with_plain_weights_only_torch_load(tmp_path):
    save_checkpoint(tmp_path / "a.pt", _state(2.0))
    loaded = torch.load(tmp_path / "a.pt", weights_only=True)
    assert loaded["epoch"] == 4


def test_failed_save_leaves_previous_file_intact(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last.pt", _state(1.0))

    def half_written_then_fail(obj, fh):
        fh.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", half_written_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, _state(9.0))
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["weight"], torch.full((2, 3), 1.0))
    assert sorted(os.listdir(tmp_path)) == ["last.pt"]


def test_hard_crash_during_save_leaves_previous_file_intact(tmp_path):
    """A process killed after writing the temp file but before the rename (a real os._exit)."""
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(1.0))
    script = textwrap.dedent(
        f"""
        import os, torch
        from tireid_lite import checkpoint
        def die(fd):
            os._exit(17)          # the temp file is complete, the rename never happens
        checkpoint.os.fsync = die
        checkpoint.save_checkpoint({str(path)!r}, {{"model": {{"weight": torch.full((2, 3), 9.0)}}}})
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 17, result.stderr
    assert torch.equal(load_checkpoint(path)["model"]["weight"], torch.full((2, 3), 1.0))
    leftovers = [name for name in os.listdir(tmp_path) if name != "last.pt"]
    assert len(leftovers) == 1 and leftovers[0].startswith("last.pt.tmp-")


def test_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match=r"missing\.pt does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_truncated_file_is_one_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "best.pt", _state(1.0))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"best\.pt is corrupt"):
        load_checkpoint(path)


def test_random_bytes_are_one_clear_error(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CheckpointError, match=r"noise\.pt is corrupt"):
        load_checkpoint(path)


class _Foreign:
    pass


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"obj": _Foreign()}, path)
    with pytest.raises(CheckpointError, match=r"foreign\.pt"):
        load_checkpoint(path)


def test_non_dict_checkpoint_is_refused(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="holds a list"):
        load_checkpoint(path)


def test_require_keys_names_what_is_missing(tmp_path):
    require_keys({"a": 1, "b": 2}, ("a", "b"), tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="lacks b, c"):
        require_keys({"a": 1}, ("a", "b", "c"), tmp_path / "x.pt")


# --------------------------------------------------------------------------- random state


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), float(np.random.randn()), torch.rand(3).tolist()


def test_rng_state_restores_every_generator(tmp_path):
    seed_everything(123)
    np.random.randn()  # leaves numpy with a cached gaussian, part of its state
    saved = rng_state()
    expected = _draws()
    _draws()
    save_checkpoint(tmp_path / "rng.pt", {"rng": saved})
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert _draws() == expected


def test_seed_everything_matches_each_library_seeded_directly():
    seed_everything(7)
    got = (random.random(), float(np.random.rand()), torch.rand(2).tolist())
    expected = (
        random.Random(7).random(),
        float(np.random.RandomState(7).rand()),
        torch.rand(2, generator=torch.Generator().manual_seed(7)).tolist(),
    )
    assert got == expected


def test_derive_seed_is_stable_distinct_and_in_range():
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2)
    seeds = {derive_seed(s, e, t) for s in range(3) for e in range(3) for t in range(3)}
    assert len(seeds) == 27
    assert derive_seed(0, 1, 2) != derive_seed(0, 2, 1)
    assert derive_seed(5, 1, 1, 0) != derive_seed(5, 1, 1, 1)
    assert all(0 <= s < 2**63 for s in seeds)
    with pytest.raises(ValueError, match="non-negative"):
        derive_seed(0, -1)


def test_derive_seeds_equal_derive_seed_one_by_one():
    gen = np.random.default_rng(3)
    indices = np.concatenate([gen.integers(0, 2**32, 300), [0, 1, 2**32 - 1, 2**32, 2**40]])  # the last two: 2 words
    epochs = np.concatenate([gen.integers(0, 100, 300), [0, 2**33, 7, 1, 2]])
    for seed in (0, 5, 2**32 - 1, 2**35):
        expected = [derive_seed(seed, int(e), 1, int(i)) for e, i in zip(epochs, indices)]
        assert derive_seeds(seed, epochs, 1, indices).tolist() == expected
    with pytest.raises(ValueError, match="non-negative"):
        derive_seeds(0, [1], 1, [-1])


def test_numpy_generators_draw_as_default_rng():
    gen = np.random.default_rng(4)
    seeds = np.concatenate([gen.integers(0, 2**62, 200), gen.integers(0, 2**32, 50), [0, 1, 2**32 - 1, 2**32]])
    for made, seed in zip(numpy_generators(seeds), seeds):
        reference = np.random.default_rng(int(seed))
        assert np.array_equal(made.random(4), reference.random(4))
        assert np.array_equal(made.integers(0, 1000, size=3), reference.integers(0, 1000, size=3))
    assert numpy_generators(np.empty(0, dtype=np.int64)) == []


# --------------------------------------------------------------------------- tokenizer files


def test_folder_round_trip(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "vocab.json").write_text('{"the": 5}', encoding="utf-8")
    (tmp_path / "src" / "raw.bin").write_bytes(bytes([0, 1, 254]))
    (tmp_path / "src" / "nested").mkdir()  # folders are not part of a saved tokenizer
    files = read_folder(tmp_path / "src")
    assert files == {"raw.bin": bytes([0, 1, 254]), "vocab.json": b'{"the": 5}'}
    out = write_folder(files, tmp_path / "dst")
    assert sorted(os.listdir(out)) == ["raw.bin", "vocab.json"]
    assert (out / "raw.bin").read_bytes() == bytes([0, 1, 254])


def test_write_folder_refuses_paths(tmp_path):
    with pytest.raises(CheckpointError, match="not a plain file name"):
        write_folder({"../escape.txt": b"x"}, tmp_path / "dst")
