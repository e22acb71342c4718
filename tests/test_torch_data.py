"""Transforms, torch datasets and samplers on a tiny dataset whose images are written here."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as v1

from tireid_lite.data.noise import inject_noise
from tireid_lite.data.records import ImageRecord, PedesDataset
from tireid_lite.data.samplers import IdentityBalancedSampler
from tireid_lite.data.torch_data import (
    TRAIN_KEYS,
    GalleryDataset,
    QueryDataset,
    TrainPairsDataset,
    image_pixels,
    read_image,
)
from tireid_lite.data.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    build_transforms,
    denormalize,
    has_horizontal_flip,
    mirror_caption,
)
from tireid_lite.errors import ConfigError, DatasetError
from tireid_lite.text.tokenizers import WordTokenizer

H, W, L = 24, 8, 16
MEAN, STD = np.array(CLIP_MEAN), np.array(CLIP_STD)

RECORDS = [
    ImageRecord("train/a1.png", 10, ("a man with a bag on his left shoulder", "a man in a red coat"), "train"),
    ImageRecord("train/a2.png", 10, ("the man holds a phone in his right hand",), "train"),
    ImageRecord("train/b1.png", 20, ("a woman with a Left-hand glove",), "train"),
    ImageRecord("train/b2.png", 20, ("a woman in a red coat",), "train"),
    ImageRecord("train/c1.png", 30, ("a child on the right side",), "train"),
    ImageRecord("train/c2.png", 30, ("a child with a bag",), "train"),
    ImageRecord("test/d1.png", 40, ("a man",), "test"),
    ImageRecord("test/e1.png", 50, ("a woman", "a woman with a bag"), "test"),
]


def normalised(arr: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, H, W) normalised with CLIP's statistics, in numpy."""
    return ((arr / 255.0 - MEAN) / STD).transpose(2, 0, 1)


@pytest.fixture()
def tiny(tmp_path) -> tuple[PedesDataset, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    arrays = {}
    for rec in RECORDS:
        arrays[rec.path] = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        path = tmp_path / "imgs" / rec.path
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arrays[rec.path]).save(path)  # PNG: lossless
    return PedesDataset("tiny", tmp_path, tmp_path / "imgs", list(RECORDS)), arrays


@pytest.fixture()
def tok() -> WordTokenizer:
    captions = [c for rec in RECORDS for c in rec.captions]
    return WordTokenizer.train(captions + [mirror_caption(c) for c in captions], max_length=L)


TEST_TF = build_transforms((H, W), train=False)


# --- transforms -----------------------------------------------------------------------


def test_test_transform_normalises_like_numpy(tiny):
    ds, arrays = tiny
    out = TEST_TF(read_image(ds.image_path("train/a1.png")))
    assert out.dtype == torch.float32 and out.shape == (3, H, W)
    np.testing.assert_allclose(out.numpy(), normalised(arrays["train/a1.png"]), atol=1e-5)


def test_test_transform_resizes():
    out = build_transforms((12, 4), train=False)(Image.new("RGB", (W, H), (255, 0, 0)))
    assert out.shape == (3, 12, 4)
    np.testing.assert_allclose(out[:, 0, 0].numpy(), (np.array([1.0, 0.0, 0.0]) - MEAN) / STD, atol=1e-5)


def test_train_transform_is_a_crop_of_the_padded_image(tiny):
    ds, arrays = tiny
    torch.manual_seed(3)
    out = build_transforms((H, W), train=True, erase_p=0.0)(read_image(ds.image_path("train/b1.png"))).numpy()
    padded = normalised(np.pad(arrays["train/b1.png"], ((10, 10), (10, 10), (0, 0))))  # (3, H+20, W+20)
    offsets = [
        (dy, dx)
        for dy in range(21)
        for dx in range(21)
        if np.allclose(padded[:, dy : dy + H, dx : dx + W], out, atol=1e-5)
    ]
    assert offsets


def test_train_transform_random_erasing_fills_with_the_raw_mean():
    torch.manual_seed(0)
    out = build_transforms((H, W), train=True, erase_p=1.0, pad=0)(Image.new("RGB", (W, H), (0, 0, 0)))
    black = (0.0 - CLIP_MEAN[0]) / CLIP_STD[0]
    erased = torch.isclose(out[0], torch.tensor(CLIP_MEAN[0]))
    assert erased.any() and torch.isclose(out[0][~erased], torch.tensor(black)).all()


def test_flip_is_left_to_the_dataset_unless_asked():
    assert not has_horizontal_flip(build_transforms((H, W), train=True))
    assert has_horizontal_flip(build_transforms((H, W), train=True, flip=True))
    assert has_horizontal_flip(v1.Compose([v1.Resize((H, W)), v1.RandomHorizontalFlip()]))
    assert not has_horizontal_flip(TEST_TF)


@pytest.mark.parametrize("size", [(H,), (0, W), (H, -1), "384x128", (24.5, 8)])
def test_bad_image_size_is_one_clear_error(size):
    with pytest.raises(ConfigError, match="image size"):
        build_transforms(size, train=False)


def test_denormalize_inverts_the_normalisation(tiny):
    ds, arrays = tiny
    out = TEST_TF(read_image(ds.image_path("test/d1.png")))
    back = denormalize(out)
    np.testing.assert_allclose(back.permute(1, 2, 0).numpy(), arrays["test/d1.png"] / 255.0, atol=1e-5)
    assert denormalize(out[None].repeat(2, 1, 1, 1)).shape == (2, 3, H, W)
    assert denormalize(torch.full((3, 2, 2), 100.0)).max() == 1.0
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        denormalize(torch.zeros(H, W))


@pytest.mark.parametrize(
    ("text", "mirrored"),
    [
        ("a bag on his left shoulder", "a bag on his right shoulder"),
        ("Left hand holds a cup; RIGHT hand is empty", "Right hand holds a cup; LEFT hand is empty"),
        ("a lefthand glove and a right-hand pocket", "a righthand glove and a left-hand pocket"),
        ("leftmost strap, rightward gaze, left-sided bag", "rightmost strap, leftward gaze, right-sided bag"),
        ("a bright copyright logo and leftover food", "a bright copyright logo and leftover food"),
        ("no sides here", "no sides here"),
    ],
)
def test_mirror_caption(text, mirrored):
    assert mirror_caption(text) == mirrored
    assert mirror_caption(mirrored) == text


# --- training pairs --------------------------------------------------------------------


def test_train_item_keys_shapes_and_dtypes(tiny, tok):
    ds, _ = tiny
    data = TrainPairsDataset(ds, tok, TEST_TF)
    assert len(data) == 7 and data.num_classes == 3
    assert data.pids.tolist() == [0, 0, 0, 1, 1, 2, 2]
    item = data[4]
    assert set(item) == set(TRAIN_KEYS)
    assert item["images"].shape == (3, H, W) and item["images"].dtype == torch.float32
    assert item["caption_ids"].shape == (L,) and item["caption_ids"].dtype == torch.long
    assert (item["pids"].item(), item["image_ids"].item(), item["index"].item()) == (1, 3, 4)
    assert item["pids"].dtype == torch.long and item["noisy"].dtype == torch.bool and not item["noisy"]


def test_flip_mirrors_image_and_caption_together(tiny, tok):
    ds, arrays = tiny
    flipped = TrainPairsDataset(ds, tok, TEST_TF, flip_p=1.0)[0]
    np.testing.assert_allclose(flipped["images"].numpy(), normalised(arrays["train/a1.png"][:, ::-1]), atol=1e-5)
    assert flipped["caption_ids"].tolist() == tok(["a man with a bag on his right shoulder"])[0].tolist()
    kept = TrainPairsDataset(ds, tok, TEST_TF, flip_p=0.0)[0]
    np.testing.assert_allclose(kept["images"].numpy(), normalised(arrays["train/a1.png"]), atol=1e-5)
    assert kept["caption_ids"].tolist() == tok(["a man with a bag on his left shoulder"])[0].tolist()


def test_random_flips_keep_each_pair_consistent_and_reproduce(tiny, tok):
    ds, arrays = tiny
    data = TrainPairsDataset(ds, tok, TEST_TF, flip_p=0.5)
    mirrored_ids = tok(["a man with a bag on his right shoulder"])[0]
    mirrored_image = torch.from_numpy(normalised(arrays["train/a1.png"][:, ::-1]).copy()).float()
    torch.manual_seed(0)
    flips = []
    for _ in range(30):
        item = data[0]
        image_flipped = torch.allclose(item["images"], mirrored_image, atol=1e-5)
        assert image_flipped == torch.equal(item["caption_ids"], mirrored_ids)
        flips.append(image_flipped)
    assert 0 < sum(flips) < 30
    torch.manual_seed(0)
    again = [torch.allclose(data[0]["images"], mirrored_image, atol=1e-5) for _ in range(30)]
    assert again == flips


def test_noise_moves_captions_and_marks_items(tiny, tok):
    ds, _ = tiny
    pairs = ds.train_pairs()
    noise = inject_noise(pairs, 0.9, seed=3)
    assert noise.noisy.any()
    data = TrainPairsDataset(ds, tok, TEST_TF, flip_p=0.0, noise=noise)
    for i in range(len(data)):
        item = data[i]
        source_caption = pairs[int(noise.caption_source[i])].caption
        assert item["caption_ids"].tolist() == tok([source_caption])[0].tolist()
        assert bool(item["noisy"]) == bool(noise.noisy[i])
        assert item["pids"].item() == pairs[i].pid  # identities stay with the image


def test_caption_hook_adds_entries_and_redraws_each_time(tiny, tok):
    ds, _ = tiny
    seen = []

    def hook(caption, ids, rng):
        seen.append((caption, ids.clone(), rng))
        return {"mlm_ids": ids.flip(0), "draw": torch.tensor(int(rng.integers(1 << 40)))}

    data = TrainPairsDataset(ds, tok, TEST_TF, flip_p=1.0, caption_hook=hook)
    first, second = data[2], data[2]
    caption, ids, rng = seen[0]
    assert caption == "the man holds a phone in his left hand"  # the hook sees the mirrored caption
    assert torch.equal(ids, first["caption_ids"]) and isinstance(rng, np.random.Generator)
    assert torch.equal(first["mlm_ids"], first["caption_ids"].flip(0))
    assert first["draw"] != second["draw"]


def test_caption_hook_may_not_overwrite_items(tiny, tok):
    ds, _ = tiny
    data = TrainPairsDataset(ds, tok, TEST_TF, caption_hook=lambda c, ids, rng: {"pids": ids})
    with pytest.raises(ConfigError, match="caption_hook returned pids"):
        data[0]


def test_transform_that_flips_is_refused(tiny, tok):
    ds, _ = tiny
    flipping = build_transforms((H, W), train=True, flip=True)
    with pytest.raises(ConfigError, match="flip=False"):
        TrainPairsDataset(ds, tok, flipping)
    TrainPairsDataset(ds, tok, flipping, flip_p=0.0)  # image-only flips are the caller's choice
    with pytest.raises(ConfigError, match="flip_p"):
        TrainPairsDataset(ds, tok, TEST_TF, flip_p=1.5)


def test_unreadable_images_name_the_file(tiny, tok):
    ds, _ = tiny
    (ds.image_dir / "train/a2.png").unlink()
    (ds.image_dir / "train/b1.png").write_bytes(b"not a png")
    data = TrainPairsDataset(ds, tok, TEST_TF)
    for index, name in ((2, "a2.png"), (3, "b1.png")):
        with pytest.raises(DatasetError, match=rf"cannot open image .*{name}.*tireid check-data --full"):
            data[index]


# --- evaluation sets --------------------------------------------------------------------


def test_gallery_items(tiny):
    ds, arrays = tiny
    gallery = GalleryDataset(ds, "test", TEST_TF)
    assert len(gallery) == 2
    item = gallery[1]
    assert set(item) == {"images", "pids", "image_ids"}
    assert (item["pids"].item(), item["image_ids"].item()) == (50, 1)
    np.testing.assert_allclose(item["images"].numpy(), normalised(arrays["test/e1.png"]), atol=1e-5)


def test_cached_galleries_share_decoded_images_and_read_a_rewritten_file_again(tiny):
    ds, arrays = tiny
    first = GalleryDataset(ds, "test", TEST_TF, cache_images=True)[1]["images"]
    second = GalleryDataset(ds, "test", TEST_TF, cache_images=True)[1]["images"]
    assert second is first  # one decode per process, whatever the number of runs
    np.testing.assert_allclose(first.numpy(), normalised(arrays["test/e1.png"]), atol=1e-5)
    plain = GalleryDataset(ds, "test", TEST_TF)[1]["images"]
    assert plain is not first and torch.equal(plain, first)
    path = ds.image_dir / "test/e1.png"
    changed = 255 - arrays["test/e1.png"]
    Image.fromarray(changed).save(path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # a later modification time
    again = GalleryDataset(ds, "test", TEST_TF, cache_images=True)[1]["images"]
    np.testing.assert_allclose(again.numpy(), normalised(changed), atol=1e-5)


def test_random_transforms_are_never_shared(tiny):
    ds, _ = tiny
    train_tf = build_transforms((H, W), train=True, flip=False)
    assert getattr(train_tf, "shared_cache_key", None) is None
    path = ds.image_dir / "test/d1.png"
    assert image_pixels(path, train_tf, shared=True) is not image_pixels(path, train_tf, shared=True)
    assert image_pixels(path, TEST_TF, shared=True) is image_pixels(path, TEST_TF, shared=True)
    assert image_pixels(path, TEST_TF) is not image_pixels(path, TEST_TF)


def test_query_items(tiny, tok):
    ds, _ = tiny
    queries = QueryDataset(ds, "test", tok)
    assert len(queries) == 3 and queries.pids.tolist() == [40, 50, 50]
    item = queries[2]
    assert set(item) == {"caption_ids", "pids", "query_ids"}
    assert item["caption_ids"].tolist() == tok(["a woman with a bag"])[0].tolist()
    assert (item["pids"].item(), item["query_ids"].item()) == (50, 2)


def test_missing_split_is_one_clear_error(tiny, tok):
    ds, _ = tiny
    with pytest.raises(DatasetError, match="has no 'val' split; use one of train, test"):
        GalleryDataset(ds, "val", TEST_TF)
    with pytest.raises(DatasetError, match="has no 'dev' split"):
        QueryDataset(ds, "dev", tok)


# --- samplers and loaders ----------------------------------------------------------------

PIDS = [0] * 5 + [1] * 8 + [2] * 2 + [3] * 4 + [4] * 4 + [5] * 1 + [6] * 3


def check_pk(batch: list[int], p: int, k: int) -> None:
    per_identity = Counter(PIDS[i] for i in batch)
    assert len(batch) == p * k and len(per_identity) == p and set(per_identity.values()) == {k}


def test_identity_batches_hold_p_identities_of_k_pairs():
    sampler = IdentityBalancedSampler(PIDS, batch_size=6, num_instances=2, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) > 0
    for batch in batches:
        check_pk(batch, 3, 2)
    for batch in batches:  # identity 5 has one pair (index 23): sampled with replacement
        assert [i for i in batch if PIDS[i] == 5] in ([], [23, 23])
    assert any(23 in batch for batch in batches)


def test_identity_batches_use_each_pair_at_most_once_per_epoch():
    sampler = IdentityBalancedSampler(PIDS, batch_size=4, num_instances=2, seed=1)
    used = [i for batch in sampler for i in batch if PIDS[i] != 5]
    assert len(used) == len(set(used))


def test_identity_batches_reproduce_per_epoch():
    a = IdentityBalancedSampler(PIDS, 6, 2, seed=3)
    b = IdentityBalancedSampler(PIDS, 6, 2, seed=3)
    epoch0 = list(a)
    a.set_epoch(1)
    epoch1 = list(a)
    assert epoch0 != epoch1
    b.set_epoch(1)
    assert list(b) == epoch1
    b.set_epoch(0)
    assert list(b) == epoch0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 5, "num_instances": 2}, "multiple of num_instances"),
        ({"batch_size": 32, "num_instances": 2}, "only 7 identities"),
    ],
)
def test_identity_sampler_rejects_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        IdentityBalancedSampler(PIDS, **kwargs)


def test_cached_images_give_the_same_items_and_are_read_once(tiny, tok):
    ds, _ = tiny
    plain = TrainPairsDataset(ds, tok, TEST_TF, flip_p=0.5)
    cached = TrainPairsDataset(ds, tok, TEST_TF, flip_p=0.5, cache_images=True)
    first = []
    for index in range(len(plain)):
        torch.manual_seed(index)
        a = plain[index]
        torch.manual_seed(index)
        b = cached[index]
        assert all(torch.equal(a[k], b[k]) for k in a)
        first.append(b)
    for record in ds.records:  # every image is in memory now: the files are no longer needed
        ds.image_path(record.path).unlink()
    torch.manual_seed(0)
    assert all(torch.equal(cached[0][k], first[0][k]) for k in first[0])
    with pytest.raises(DatasetError, match="cannot open image"):
        plain[0]


def test_build_data_trains_on_the_first_identities_with_noise_among_them(tmp_path):
    from tireid_lite.config import apply_overrides, get_profile
    from tireid_lite.data.fixtures import write_fixture
    from tireid_lite.data.build import build_data

    root = write_fixture("cuhk-pedes", tmp_path / "cuhk", ids_per_split={"train": 6, "val": 2, "test": 2})
    base = ["data.dataset=cuhk-pedes", f"data.root={root}", "model.warm_start=none", "data.noise_rate=0.5"]
    every = build_data(apply_overrides(get_profile("cpu"), base))
    data = build_data(apply_overrides(get_profile("cpu"), [*base, "data.train_identities=3"]))
    assert data.num_classes == 3 and every.num_classes == 6
    assert sorted(set(data.train_set.pids.tolist())) == [0, 1, 2]
    assert len(data.train_set) == len(data.train_set.noisy) == sum(p.pid < 3 for p in every.dataset.train_pairs())
    assert data.train_set.noisy.any() and data.tokenizer.vocab_size == every.tokenizer.vocab_size
    with pytest.raises(ConfigError, match=r"data.train_identities=7: .* has 6 training identities"):
        build_data(apply_overrides(get_profile("cpu"), [*base, "data.train_identities=7"]))
