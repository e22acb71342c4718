"""Batched loading of in-memory training images gives the batches of the per-item path.

The per-item path (each item through torchvision's v2 pipeline after seeding torch's
generator, then torch's default collate) is the reference; the batched path
(:mod:`tireid_lite.data.batched`) must give the same tensors for the same seeds, for every
setting a method uses: flips with mirrored captions, pad and crop, random erasing, caption
noise, masked-language hooks (with and without a batch method) and part maps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from tireid_lite.config import apply_overrides, get_profile
from tireid_lite.data.batched import InMemoryBatches, read_recipe
from tireid_lite.data.build import build_data
from tireid_lite.data.fixtures import write_fixture
from tireid_lite.data.synth import generate_synth
from tireid_lite.data.transforms import build_transforms
from tireid_lite.text.masking import KeyPhraseMasking, RandomTokenMasking
from tireid_lite.train.build import (
    SeededItems,
    build_train_loader,
    collate_items,
    set_loader_epoch,
)

TINY = ["data.max_length=32", "train.batch_size=8", "model.warm_start=none"]


@pytest.fixture(scope="module")
def cuhk_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "cuhk"
    return write_fixture("cuhk-pedes", root, ids_per_split={"train": 6, "val": 2, "test": 2}, images_per_id=3,
                         size=(32, 16))


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    return generate_synth(tmp_path_factory.mktemp("synth") / "out", ids_train=6, ids_val=2, ids_test=2,
                          images_per_id=3, size=(48, 16))


def _config(dataset: str, root: Path, size: tuple[int, int], *extra: str):
    return apply_overrides(get_profile("cpu"), [f"data.dataset={dataset}", f"data.root={root}",
                                                f"data.image_size=[{size[0]},{size[1]}]", *TINY, *extra])


def _both_paths(train_set, cfg, epochs=(1, 2)) -> list[tuple[dict, dict]]:
    """(per-item batch, batched batch) for every batch of ``epochs``."""
    items = SeededItems(train_set, cfg.train.seed)
    loader = build_train_loader(train_set, cfg)
    pairs = []
    for epoch in epochs:
        set_loader_epoch(loader, epoch)
        for keys in loader.batch_sampler:
            per_item = default_collate([items[key] for key in keys])
            batched = items.__getitems__(keys)
            assert isinstance(batched, dict), "the batched path was not taken"
            pairs.append((per_item, batched))
    return pairs


def _assert_same(pairs: list[tuple[dict, dict]]) -> None:
    for per_item, batched in pairs:
        assert sorted(per_item) == sorted(batched)
        for key, expected in per_item.items():
            got = batched[key]
            assert got.dtype == expected.dtype and got.shape == expected.shape, key
            if expected.dtype.is_floating_point:
                torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
            else:
                assert torch.equal(got, expected), key


@pytest.mark.parametrize("extra", [
    ("data.flip_p=0.5", "data.pad=3", "data.erasing_p=0"),
    ("data.flip_p=1.0", "data.pad=0", "data.erasing_p=1.0"),
    ("data.flip_p=0.5", "data.pad=2", "data.erasing_p=0.5", "data.noise_rate=0.3"),
])
def test_batches_equal_the_per_item_path(cuhk_root, extra):
    cfg = _config("cuhk-pedes", cuhk_root, (32, 16), *extra)
    train_set = build_data(cfg).train_set
    pairs = _both_paths(train_set, cfg)
    assert len(pairs) >= 4
    _assert_same(pairs)


def test_erasing_happens_in_the_batches(cuhk_root):
    cfg = _config("cuhk-pedes", cuhk_root, (32, 16), "data.flip_p=0.5", "data.erasing_p=1.0")
    data = build_data(cfg)
    pairs = _both_paths(data.train_set, cfg, epochs=(1,))
    mean = torch.tensor(build_transforms((32, 16)).transforms[-2].value).view(1, 3, 1, 1)
    erased = torch.cat([(b["images"] == mean).all(dim=1).any(dim=(1, 2)) for _, b in pairs])  # (items,)
    assert erased.float().mean() > 0.5  # p 1: nearly every item carries a rectangle of the fill value


def test_masking_hooks_match_per_item(cuhk_root):
    cfg = _config("cuhk-pedes", cuhk_root, (32, 16), "data.flip_p=0.5")
    data = build_data(cfg)
    tok = data.tokenizer
    data.train_set.caption_hook = RandomTokenMasking(tok.mask_token_id, tok.vocab_size, tok.special_ids, 0.3)
    _assert_same(_both_paths(data.train_set, cfg))

    def phrases(caption):  # every word a phrase: a hook without a batch method
        from types import SimpleNamespace

        out, start = [], 0
        for word in caption.split(" "):
            out.append(SimpleNamespace(start=start, end=start + len(word)))
            start += len(word) + 1
        return out

    data.train_set.caption_hook = KeyPhraseMasking(tok, phrases, 0.3)
    _assert_same(_both_paths(data.train_set, cfg))


def test_mask_batch_rows_equal_single_calls():
    masking = RandomTokenMasking(mask_token_id=3, vocab_size=50, special_ids=[0, 1, 2, 4], prob=0.2)
    gen = np.random.default_rng(0)
    ids = torch.from_numpy(gen.integers(5, 50, size=(6, 12)))
    ids[:, 0], ids[:, -3:] = 1, 0
    ids[2, 1:] = 0  # a caption with no ordinary token
    seeds = [11, 12, 13, 14, 15, 16]
    batch = masking.mask_batch(["x"] * 6, ids, [np.random.default_rng(s) for s in seeds])
    for row, seed in enumerate(seeds):
        single = masking("x", ids[row], np.random.default_rng(seed))
        assert torch.equal(batch["mlm_ids"][row], single["mlm_ids"])
        assert torch.equal(batch["mlm_labels"][row], single["mlm_labels"])
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        masking.mask_batch(["x"], ids[0], [np.random.default_rng(0)])


def test_part_maps_follow_their_images(synth_root):
    cfg = _config("synth", synth_root, (48, 16), "data.flip_p=0.5", "data.pad=3", "data.erasing_p=0.5")
    data = build_data(cfg, part_maps=True)
    pairs = _both_paths(data.train_set, cfg)
    _assert_same(pairs)
    assert all("part_map" in b and b["part_map"].dtype == torch.long for _, b in pairs)
    assert max(int(b["part_map"].max()) for _, b in pairs) > 1  # real part labels, not only background
    tok, train_pairs = data.tokenizer, data.train_set.pairs
    mirrored = [not torch.equal(row, tok([train_pairs[i].caption])[0])
                for _, b in pairs for i, row in zip(b["index"].tolist(), b["caption_ids"])]
    assert any(mirrored)  # some flipped items carry their mirrored caption (left and right swapped)


def test_per_item_path_is_kept_where_the_batched_one_does_not_apply(cuhk_root):
    cfg = _config("cuhk-pedes", cuhk_root, (32, 16), "data.cache_images=false")
    train_set = build_data(cfg).train_set
    assert train_set.load_batch([0, 1], [5, 6]) is None  # images not kept in memory (the real-data path)
    items = SeededItems(train_set, cfg.train.seed)
    got = collate_items(items.__getitems__([(1, 0), (1, 1)]))
    expected = default_collate([items[(1, 0)], items[(1, 1)]])
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    cached = build_data(_config("cuhk-pedes", cuhk_root, (32, 16))).train_set
    test_tf = build_transforms((32, 16), train=False)
    cached.transform = lambda image: test_tf(image)  # a transform of the user's own: applied item by item
    assert cached.load_batch([0, 1], [5, 6]) is None
    cached.transform = build_transforms((32, 16), pad=2)  # the recipe again: batched
    assert isinstance(cached.load_batch([0, 1], [5, 6]), dict)


def test_recipe_is_read_from_the_kit_transform_only():
    recipe = read_recipe(build_transforms((48, 16), pad=4, erase_p=0.25))
    assert recipe.size == (48, 16) and recipe.pad == 4 and recipe.erase_p == 0.25
    assert read_recipe(build_transforms((48, 16), pad=0, erase_p=0)).pad == 0
    assert read_recipe(build_transforms((48, 16), flip=True)) is None
    assert read_recipe(build_transforms((48, 16), train=False)) == read_recipe(build_transforms((48, 16), pad=0,
                                                                                                 erase_p=0))
    assert read_recipe(lambda image: image) is None


def test_images_of_another_size_keep_the_per_item_path(cuhk_root):
    cfg = _config("cuhk-pedes", cuhk_root, (64, 32))  # the fixture's images are 32x16: each is resized
    train_set = build_data(cfg).train_set
    assert InMemoryBatches.for_dataset(train_set) is None
    assert train_set.load_batch([0], [1]) is None


def test_cached_gallery_gives_the_same_items_and_reads_each_file_once(tmp_path):
    root = write_fixture("cuhk-pedes", tmp_path / "cuhk", ids_per_split={"train": 2, "val": 2, "test": 2},
                         size=(32, 16))
    cfg = _config("cuhk-pedes", root, (32, 16))
    cached, plain = build_data(cfg, train=False), build_data(_config("cuhk-pedes", root, (32, 16),
                                                                      "data.cache_images=false"), train=False)
    gallery, reference = cached.gallery("test"), plain.gallery("test")
    first = [gallery[i] for i in range(len(gallery))]
    for i, item in enumerate(first):
        assert all(torch.equal(item[k], reference[i][k]) for k in item)
    for path in gallery.paths:
        cached.dataset.image_path(path).unlink()  # in memory now: the files are no longer read
    assert all(torch.equal(gallery[i]["images"], first[i]["images"]) for i in range(len(gallery)))
