"""JPEG training images read from disk (the real datasets) decode with torchvision.io into tensors; the
items equal PIL's (exactly at the training size, within resize rounding otherwise), and a file that
cannot be decoded is one clear error."""

from __future__ import annotations

import warnings

import pytest
import torch
from torchvision import tv_tensors

from tireid_lite.config import apply_overrides, get_profile
from tireid_lite.data.build import build_data
from tireid_lite.data.fixtures import write_fixture
from tireid_lite.errors import DatasetError


def _train_set(root, size, *extra):
    cfg = apply_overrides(get_profile("cpu"), [
        "data.dataset=rstpreid", f"data.root={root}", f"data.image_size=[{size[0]},{size[1]}]",
        "data.cache_images=false", "data.pad=10", "data.erasing_p=0.5", "model.warm_start=none",
        "model.patch_size=16", *extra])
    return build_data(cfg).train_set


def _items(train_set, decoder):
    train_set.jpeg_decoder = decoder
    items = []
    for index in range(len(train_set)):
        torch.manual_seed(index)
        items.append(train_set[index])
    return items


@pytest.mark.parametrize("written,tolerance", [((384, 128), 0.0), ((192, 64), 0.1)])
def test_tensor_decoding_matches_pil(tmp_path, written, tolerance):
    root = write_fixture("rstpreid", tmp_path / "rstp", ids_per_split={"train": 3, "val": 1, "test": 1},
                         images_per_id=2, size=written)
    train_set = _train_set(root, (384, 128))
    assert isinstance(train_set._image(train_set.pairs[0].path), tv_tensors.Image)
    fast, plain = _items(train_set, "torchvision"), _items(train_set, "pil")
    for a, b in zip(fast, plain):
        assert a.keys() == b.keys()
        assert torch.equal(a["caption_ids"], b["caption_ids"])  # the same flips, so the same mirrored captions
        assert a["images"].shape == (3, 384, 128) and a["images"].dtype == torch.float32
        difference = (a["images"] - b["images"]).abs()
        assert float(difference.max()) <= tolerance + 1e-6
        assert float(difference.mean()) <= tolerance / 10 + 1e-6


def test_part_maps_follow_tensor_images(tmp_path):
    root = write_fixture("rstpreid", tmp_path / "rstp", ids_per_split={"train": 2, "val": 1, "test": 1},
                         images_per_id=2, size=(384, 128))
    cfg = apply_overrides(get_profile("cpu"), [
        "data.dataset=rstpreid", f"data.root={root}", "data.image_size=[384,128]", "data.cache_images=false",
        "model.warm_start=none", "model.patch_size=16"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no parsing maps: the prior, and a warning tested elsewhere
        train_set = build_data(cfg, part_maps=True).train_set
    fast, plain = _items(train_set, "torchvision"), _items(train_set, "pil")
    for a, b in zip(fast, plain):
        assert a["part_map"].shape == (384, 128) and torch.equal(a["part_map"], b["part_map"])


def test_an_undecodable_jpeg_is_one_clear_error(tmp_path):
    root = write_fixture("rstpreid", tmp_path / "rstp", ids_per_split={"train": 2, "val": 1, "test": 1},
                         images_per_id=2, size=(64, 32))
    train_set = _train_set(root, (64, 32), "model.patch_size=8")
    broken = train_set.dataset.image_path(train_set.pairs[0].path)
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DatasetError, match=rf"cannot open image {broken}.*tireid check-data --full"):
        train_set[0]
