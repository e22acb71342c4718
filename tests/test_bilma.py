"""BiLMa: part maps that follow the image's augmentation, the MIM head on the shared cross-modal module."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tireid_lite.config import apply_overrides, get_profile
from tireid_lite.data.torch_data import read_image
from tireid_lite.data.transforms import denormalize
from tireid_lite.models import build_model
from tireid_lite.models.bilma import MaskedImageHead, mim_output_size
from tireid_lite.data.build import build_data
from tireid_lite.train.build import build_training_data
from tireid_lite.train.trainer import Trainer
from tireid_lite.train.warm_start import apply_warm_start, ensure_warm_start

TINY = [
    "data.dataset=synth", "data.synth_ids_train=8", "data.synth_ids_val=3", "data.synth_ids_test=3",
    "data.synth_images_per_id=2", "data.image_size=[48,16]", "data.max_length=48", "data.pad=3",
    "model.method=bilma", "model.image_width=32", "model.image_depth=1", "model.image_heads=2",
    "model.text_width=32", "model.text_depth=1", "model.text_heads=2", "model.embed_dim=32",
    "model.cross_depth=1", "model.cross_heads=2", "model.bilma.mim_ratio=0.25", "model.warm_start_steps=3",
    "train.batch_size=8", "train.num_epochs=1", "train.threads=1", "train.epoch_fraction=1",
]


@pytest.fixture()
def cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("TIREID_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TIREID_PROGRESS", "0")
    threads = torch.get_num_threads()
    yield apply_overrides(get_profile("cpu"), TINY)
    torch.set_num_threads(threads)


class BrightnessMaps:
    """Stand-in part maps: class 1 where the image's red channel is bright, else 0 (as padding is)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def load(self, path: str, size=None) -> np.ndarray:
        red = np.asarray(read_image(self.dataset.image_path(path)))[..., 0]
        return (red > 127).astype(np.uint8)


def test_the_part_map_goes_through_the_same_flip_pad_and_crop_as_the_image(cfg):
    data = build_training_data(apply_overrides(cfg, ["data.flip_p=0.5"]))
    assert data.train_set.part_maps is not None  # semantic MIM reads SynthPEDES's own maps
    data.train_set.part_maps = BrightnessMaps(data.dataset)
    data.train_set._part_cache = {}
    torch.manual_seed(0)
    for index in range(12):
        item = data.train_set[index]
        red = denormalize(item["images"])[0].numpy() * 255  # (H, W), padding back at 0
        assert item["part_map"].shape == item["images"].shape[1:]
        np.testing.assert_array_equal(item["part_map"].numpy(), (red > 127.5).astype(np.int64))


def test_synthpedes_part_maps_reach_the_batch_only_when_needed(cfg):
    item = build_training_data(cfg).train_set[0]
    assert item["part_map"].dtype == torch.long and int(item["part_map"].max()) > 0
    for other in (["model.bilma.mim_target=rgb"], ["model.method=irra"], ["model.bilma.mim_loss_weight=0"]):
        assert "part_map" not in build_training_data(apply_overrides(cfg, other)).train_set[0]


def test_mim_shares_irra_cross_modal_module_and_has_a_mask_token(cfg):
    data = build_data(cfg, train=False)
    model = build_model(cfg, data.tokenizer, data.num_classes)
    head = model.heads["mim"]
    assert isinstance(head, MaskedImageHead) and head.cross is model.heads["mlm"].cross
    assert model.image_tower.mask_token is not None
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in model.state_dict().values()
                                                             if p.dtype.is_floating_point)
    alone = build_model(apply_overrides(cfg, ["model.mlm_loss_weight=0"]), data.tokenizer, data.num_classes)
    assert "mlm" not in alone.heads and alone.heads["mim"].cross is alone.heads["mim"].own_cross
    assert build_model(apply_overrides(cfg, ["model.method=irra"]), data.tokenizer, 5).image_tower.mask_token is None


@pytest.mark.parametrize("target", ["semantic", "rgb", "pixels"])
def test_forward_gives_every_loss_and_mim_reaches_the_towers(cfg, target):
    cfg = apply_overrides(cfg, [f"model.bilma.mim_target={target}"])
    data = build_training_data(cfg)
    model = build_model(cfg, data.tokenizer, data.num_classes)
    data.train_set.caption_hook = model.caption_hook
    batch = next(iter(torch.utils.data.DataLoader(data.train_set, batch_size=4)))
    out = model(batch)
    assert set(model.loss_names()) == {"sdm", "id", "mlm", "mim"}
    assert all(torch.isfinite(out[name]) for name in model.loss_names())
    out["mim"].backward()
    assert model.image_tower.mask_token.grad is not None and model.image_tower.mask_token.grad.abs().sum() > 0
    assert next(model.text_tower.parameters()).grad is not None  # the caption is visible to the masked image
    assert model.heads["mim"].predict.net[-1].out_features == mim_output_size(target, 8)


def test_mim_predictions_read_the_caption(cfg):
    data = build_training_data(cfg)
    model = build_model(cfg, data.tokenizer, data.num_classes).eval()
    batch = next(iter(torch.utils.data.DataLoader(data.train_set, batch_size=2)))
    mask = torch.zeros(2, model.image_tower.num_patches, dtype=torch.bool)
    mask[:, :3] = True
    head = model.heads["mim"]
    with torch.no_grad():
        own = head.predictions(model, batch["images"], mask, batch["caption_ids"])
        swapped = head.predictions(model, batch["images"], mask, batch["caption_ids"].flip(0))
    assert not torch.allclose(own, swapped)


def test_warm_start_loads_into_a_tower_with_a_mask_token(cfg):
    data = build_data(cfg, train=False)
    model = build_model(cfg, data.tokenizer, data.num_classes)
    token = model.image_tower.mask_token.detach().clone()
    ws = ensure_warm_start(cfg, data.tokenizer)
    apply_warm_start(model, ws)
    assert torch.equal(model.image_tower.mask_token, token)  # new, not pretrained
    name = next(iter(ws.image_tower))
    assert torch.equal(model.image_tower.state_dict()[name], ws.image_tower[name])


def test_bilma_trains_and_logs_the_mim_loss(cfg, tmp_path):
    metrics = Trainer(cfg, tmp_path / "run").fit()
    assert 0.0 <= metrics["R1"] <= 100.0
    header = (tmp_path / "run" / "log.csv").read_text().splitlines()[0].split(",")
    assert {"mim", "mim_acc", "mlm"} <= set(header)


def test_evaluate_mim_counts_every_masked_patch_and_scores_a_perfect_head_at_one(cfg, monkeypatch):
    from tireid_lite.data.mim_targets import mim_targets
    from tireid_lite.losses.mim import num_masked
    from tireid_lite.models.bilma import evaluate_mim

    data = build_data(cfg, train=False)
    model = build_model(cfg, data.tokenizer, data.num_classes)
    head = model.heads["mim"]
    result = evaluate_mim(model, data, "test", batch_size=4)
    gallery = data.gallery("test")
    assert int(result["count"].sum()) == len(gallery) * num_masked(model.image_tower.num_patches, head.ratio)
    assert 0.0 <= result["accuracy"] <= 1.0

    def perfect(model_, images, patch_mask, captions):
        from tireid_lite.data.patch_labels import ParsingMaps

        maps = ParsingMaps.for_dataset(data.dataset)
        # the images of this call are gallery images in order; find them by value
        index = [next(i for i in range(len(gallery)) if torch.equal(gallery[i]["images"], im)) for im in images]
        part = torch.from_numpy(np.stack([maps.load(gallery.paths[i], size=data.image_size) for i in index]))
        labels = mim_targets(images, part.long(), head.patch_size, "semantic")
        return torch.nn.functional.one_hot(labels, 10).float()

    monkeypatch.setattr(head, "predictions", perfect)
    assert evaluate_mim(model, data, "test", batch_size=4)["accuracy"] == 1.0
