"""Noisy-correspondence injection: counts, permutation property, ground truth, files."""

from __future__ import annotations

import numpy as np
import pytest

from tireid_lite.data.noise import NoiseInjection, check_rate, inject_noise
from tireid_lite.data.records import TrainPair
from tireid_lite.errors import ConfigError, DatasetError


def make_pairs(pids: list[int]) -> list[TrainPair]:
    return [TrainPair(i, pid, i, f"img/{i}.jpg", f"caption {i}") for i, pid in enumerate(pids)]


def test_only_chosen_pairs_move_and_they_permute_among_themselves():
    pairs = make_pairs(list(range(1000)))
    noise = inject_noise(pairs, 0.3, seed=0)
    src = noise.caption_source
    moved = np.flatnonzero(src != np.arange(1000))
    # 300 chosen; a random permutation of 300 leaves about one in place
    assert 290 <= len(moved) <= 300
    assert sorted(src[moved].tolist()) == moved.tolist()  # captions only travel within the moved set
    assert sorted(src.tolist()) == list(range(1000))  # a permutation overall


def test_rate_zero_changes_nothing():
    pairs = make_pairs([0, 0, 1, 1])
    noise = inject_noise(pairs, 0.0, seed=5)
    assert noise.caption_source.tolist() == [0, 1, 2, 3]
    assert not noise.noisy.any() and noise.noise_rate == 0.0
    assert noise.apply(pairs) == pairs


def test_same_seed_same_permutation_other_seed_other():
    pairs = make_pairs(list(range(200)))
    a, b, c = inject_noise(pairs, 0.5, 7), inject_noise(pairs, 0.5, 7), inject_noise(pairs, 0.5, 8)
    np.testing.assert_array_equal(a.caption_source, b.caption_source)
    assert not np.array_equal(a.caption_source, c.caption_source)


def test_apply_moves_captions_and_keeps_images_and_identities():
    pairs = make_pairs([3, 3, 4, 4, 5, 5, 6, 6])
    noise = inject_noise(pairs, 0.5, seed=1)
    noisy_pairs = noise.apply(pairs)
    for i, (before, after) in enumerate(zip(pairs, noisy_pairs)):
        assert after.index == before.index and after.pid == before.pid
        assert after.image_id == before.image_id and after.path == before.path
        assert after.caption == f"caption {noise.caption_source[i]}"


def test_noisy_means_a_caption_of_another_identity():
    pids = [i // 4 for i in range(400)]  # 100 identities x 4 pairs: some moves stay within an identity
    pairs = make_pairs(pids)
    noise = inject_noise(pairs, 0.8, seed=2)
    expected = [pids[int(s)] != pids[i] for i, s in enumerate(noise.caption_source)]
    assert noise.noisy.tolist() == expected
    assert noise.noisy.sum() < noise.moved.sum()  # same-identity moves are clean
    assert noise.noise_rate == pytest.approx(sum(expected) / 400)


def test_one_identity_means_no_noise_even_when_captions_move():
    pairs = make_pairs([7] * 50)
    noise = inject_noise(pairs, 0.5, seed=0)
    assert noise.moved.any() and not noise.noisy.any()


@pytest.mark.parametrize("rate", [1.0, -0.1, 20, float("nan"), "0.2", True, None])
def test_bad_rate_is_one_clear_error(rate):
    with pytest.raises(ConfigError, match="noise rate"):
        inject_noise(make_pairs([0, 1]), rate, seed=0)


def test_check_rate_accepts_fractions():
    assert check_rate(0) == 0.0 and check_rate(np.float32(0.5)) == 0.5 and check_rate(0.999) == 0.999


def test_apply_refuses_other_pairs():
    noise = inject_noise(make_pairs([0, 1, 2]), 0.5, seed=0)
    with pytest.raises(DatasetError, match="made for 3 training pairs but got 2"):
        noise.apply(make_pairs([0, 1]))


def test_save_load_round_trip(tmp_path):
    pids = [i // 2 for i in range(40)]
    noise = inject_noise(make_pairs(pids), 0.5, seed=4)
    path = noise.save(tmp_path / "noise" / "cuhk_0.5.npy")
    assert [p.name for p in path.parent.iterdir()] == ["cuhk_0.5.npy"]  # no temp file left behind
    loaded = NoiseInjection.load(path, 40, pids=pids)
    np.testing.assert_array_equal(loaded.caption_source, noise.caption_source)
    np.testing.assert_array_equal(loaded.noisy, noise.noisy)
    without_pids = NoiseInjection.load(path, 40)
    np.testing.assert_array_equal(without_pids.noisy, noise.caption_source != np.arange(40))


def test_load_reads_a_plain_index_array(tmp_path):
    path = tmp_path / "rde.npy"
    np.save(path, np.array([0, 2, 1, 3], dtype=np.int32))  # RDE's format: an index array
    loaded = NoiseInjection.load(path, 4, pids=[0, 0, 1, 1])
    assert loaded.caption_source.tolist() == [0, 2, 1, 3]
    assert loaded.noisy.tolist() == [False, True, True, False]


def test_save_wants_npy(tmp_path):
    with pytest.raises(ConfigError, match=r"must end in \.npy"):
        inject_noise(make_pairs([0, 1]), 0.5, 0).save(tmp_path / "noise.txt")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (np.array([0, 1, 2]), "covers 3 pairs but the training split has 4"),
        (np.array([0, 1, 1, 3]), "not a permutation"),
        (np.array([0, 1, 2, 4]), "not a permutation"),
        (np.array([0, -1, 2, 3]), "not a permutation"),
        (np.array([0.0, 1.0, 2.0, 3.0]), "expected a 1-D integer array"),
        (np.arange(4).reshape(2, 2), "expected a 1-D integer array"),
    ],
)
def test_load_rejects_bad_files(tmp_path, content, match):
    path = tmp_path / "noise.npy"
    np.save(path, content)
    with pytest.raises(DatasetError, match=match):
        NoiseInjection.load(path, 4)


def test_load_rejects_missing_and_garbage_files(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        NoiseInjection.load(tmp_path / "absent.npy", 4)
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"this is not numpy")
    with pytest.raises(DatasetError, match="not a readable .npy"):
        NoiseInjection.load(garbage, 4)
    with pytest.raises(DatasetError, match="got 2 identities for 4"):
        np.save(tmp_path / "ok.npy", np.arange(4))
        NoiseInjection.load(tmp_path / "ok.npy", 4, pids=[0, 1])
