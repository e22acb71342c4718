"""Masked image modelling pieces (tireid_lite.losses.mim): targets, loss, patch masks, per-class accuracy.

Expected values come from numpy loops, hand-worked cases (math module) or
timm's own patch embedding, never from the functions under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from timm.layers import PatchEmbed

from tireid_lite.data.mim_targets import MIM_TARGETS, mim_targets
from tireid_lite.data.synth.materials import PART_INDEX
from tireid_lite.losses.mim import mim_loss, num_masked, per_class_accuracy, random_patch_mask
from tireid_lite.models.image_tower import build_image_tower

HAIR, FACE, UPPER, LOWER, SHOES = (PART_INDEX[n] for n in ("hair", "face", "upper_clothes", "lower_clothes", "shoes"))


def random_images(batch: int = 2, height: int = 16, width: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


# --- targets ----------------------------------------------------------------------------------


def test_rgb_targets_match_a_numpy_loop():
    images = random_images()  # 16 x 12, patch 4: 4 x 3 patches
    rgb = mim_targets(images, None, 4, "rgb")
    assert rgb.shape == (2, 12, 3) and rgb.dtype == torch.float32
    x = images.numpy()
    expected = np.zeros((2, 12, 3))
    for b in range(2):
        for r in range(4):
            for c in range(3):
                for ch in range(3):
                    expected[b, r * 3 + c, ch] = x[b, ch, 4 * r:4 * r + 4, 4 * c:4 * c + 4].mean()
    np.testing.assert_allclose(rgb.numpy(), expected, rtol=1e-5, atol=1e-6)


def identity_patch_embed(img_size: tuple[int, int], patch: int) -> PatchEmbed:
    """timm's patch embedding whose output channel k copies input value k of the patch (channel, row, col)."""
    dim = 3 * patch * patch
    embed = PatchEmbed(img_size=img_size, patch_size=patch, in_chans=3, embed_dim=dim, bias=False)
    with torch.no_grad():
        embed.proj.weight.copy_(torch.eye(dim).reshape(dim, 3, patch, patch))
    return embed


def test_pixel_targets_follow_timms_patch_embedding_order():
    images = random_images(height=16, width=12)
    embed = identity_patch_embed((16, 12), 4)
    with torch.no_grad():
        tokens = embed(images)  # (B, N, 3 p^2), timm's token order and its weight's (3, p, p) order
    pixels = mim_targets(images, None, 4, "pixels", pixel_norm=False)
    assert pixels.shape == (2, 12, 48)
    torch.testing.assert_close(pixels, tokens)
    # By hand too: token 4 is patch (row 1, col 1); value 16 + 2*4 + 3 is channel 1, pixel row 2, column 3.
    assert pixels[1, 4, 16 + 2 * 4 + 3] == images[1, 1, 4 + 2, 4 + 3]


def test_pixel_targets_follow_the_image_towers_token_order():
    tower = build_image_tower(img_size=(16, 8), patch_size=4, width=48, depth=1, heads=1, out_dim=8)
    with torch.no_grad():
        tower.vit.patch_embed.proj.weight.copy_(torch.eye(48).reshape(48, 3, 4, 4))
        images = random_images(height=16, width=8)
        tokens = tower.vit.patch_embed(images)  # the first step of ImageTower.forward
    torch.testing.assert_close(mim_targets(images, None, 4, "pixels", pixel_norm=False), tokens)
    assert tower.grid_size == (4, 2)


def test_pixel_targets_normalised_per_patch():
    images = random_images(batch=1, height=8, width=8)
    pixels = mim_targets(images, None, 4, "pixels")  # pixel_norm=True by default
    raw = images.numpy()[0]
    for r in range(2):
        for c in range(2):
            patch = raw[:, 4 * r:4 * r + 4, 4 * c:4 * c + 4].reshape(-1)  # channel, row, col
            expected = (patch - patch.mean()) / math.sqrt(patch.var() + 1e-6)
            np.testing.assert_allclose(pixels[0, r * 2 + c].numpy(), expected, rtol=1e-4, atol=1e-5)
    flat = torch.full((1, 3, 4, 4), 0.5)
    assert torch.equal(mim_targets(flat, None, 4, "pixels"), torch.zeros(1, 1, 48))  # constant patch -> zeros


def test_semantic_targets_in_token_order():
    part_maps = np.zeros((1, 16, 16), dtype=np.uint8)  # 2 x 2 patches of 8
    part_maps[0, :8, :8] = HAIR  # patch (0, 0) -> token 0
    part_maps[0, :8, 8:] = FACE  # patch (0, 1) -> token 1
    part_maps[0, 8:, :8] = UPPER  # patch (1, 0) -> token 2
    part_maps[0, 8:, 12:] = SHOES  # patch (1, 1): half covered (32 of 64) -> shoes at coverage 0.5
    images = torch.zeros(1, 3, 16, 16)
    labels = mim_targets(images, torch.from_numpy(part_maps), 8, "semantic")
    assert labels.dtype == torch.int64 and labels.tolist() == [[HAIR, FACE, UPPER, SHOES]]
    assert mim_targets(images, part_maps, 8, "semantic", coverage=0.6).tolist() == [[HAIR, FACE, UPPER, 0]]


def test_targets_refuse_bad_arguments():
    images = random_images()
    with pytest.raises(ValueError, match="unknown MIM target 'features'; use one of semantic, rgb, pixels"):
        mim_targets(images, None, 4, "features")
    with pytest.raises(ValueError, match="needs part_maps"):
        mim_targets(images, None, 4, "semantic")
    with pytest.raises(ValueError, match=r"part_maps must be \(B, H, W\) = \(2, 16, 12\) like the images"):
        mim_targets(images, np.zeros((2, 32, 24), dtype=np.uint8), 4, "semantic")
    with pytest.raises(ValueError, match="not a whole number of 5x5 patches"):
        mim_targets(images, None, 5, "rgb")


# --- loss -------------------------------------------------------------------------------------


def test_semantic_loss_by_hand_ignores_unmasked_patches():
    pred = torch.tensor([[[2.0, 0.0, 0.0], [50.0, -50.0, 0.0], [0.0, 1.0, 0.0]]], requires_grad=True)
    target = torch.tensor([[0, 2, 1]])
    mask = torch.tensor([[True, False, True]])
    # patch 0: -log(e^2 / (e^2 + 2)); patch 2: -log(e / (e + 2)); patch 1 is unmasked (and badly wrong).
    expected = (-math.log(math.exp(2) / (math.exp(2) + 2)) - math.log(math.e / (math.e + 2))) / 2
    loss = mim_loss(pred, target, mask, "semantic")
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert torch.equal(pred.grad[0, 1], torch.zeros(3))
    changed = pred.detach().clone()
    changed[0, 1] = torch.tensor([-9.0, 9.0, 3.0])
    assert mim_loss(changed, target, mask, "semantic").item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("kind", ["rgb", "pixels"])
def test_regression_loss_by_hand(kind):
    pred = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], [[1.0, 1.0, 1.0], [5.0, 5.0, 5.0]]], requires_grad=True)
    target = torch.tensor([[[0.0, 2.0, 5.0], [9.0, 9.0, 9.0]], [[1.0, 1.0, 1.0], [2.0, 5.0, 6.0]]])
    mask = torch.tensor([[True, False], [False, True]])
    # masked: (1 + 0 + 4) / 3 and (9 + 0 + 1) / 3, averaged over the 2 masked patches.
    expected = (5 / 3 + 10 / 3) / 2
    loss = mim_loss(pred, target, mask, kind)
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    assert torch.equal(pred.grad[0, 1], torch.zeros(3)) and torch.equal(pred.grad[1, 0], torch.zeros(3))


def test_loss_without_masked_patches_is_a_connected_zero():
    pred = torch.randn(2, 4, 10, requires_grad=True)
    loss = mim_loss(pred, torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 4, dtype=torch.bool), "semantic")
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_loss_refuses_bad_arguments():
    pred = torch.zeros(1, 2, 3)
    mask = torch.tensor([[True, False]])
    with pytest.raises(ValueError, match="unknown MIM target"):
        mim_loss(pred, torch.zeros(1, 2, dtype=torch.long), mask, "feature")
    with pytest.raises(ValueError, match="patch_mask a bool"):
        mim_loss(pred, torch.zeros(1, 2, dtype=torch.long), mask.long(), "semantic")
    with pytest.raises(ValueError, match="range from 3 to 3 but pred has 3 classes"):
        mim_loss(pred, torch.tensor([[3, 0]]), mask, "semantic")
    with pytest.raises(ValueError, match="must be int64 labels"):
        mim_loss(pred, torch.zeros(1, 2), mask, "semantic")
    with pytest.raises(ValueError, match=r"must have the shape of pred \(1, 2, 3\)"):
        mim_loss(pred, torch.zeros(1, 2, 4), mask, "rgb")


def test_loss_on_targets_from_images_end_to_end():
    images = random_images(batch=2, height=8, width=8)
    target = mim_targets(images, None, 4, "rgb")  # (2, 4, 3)
    mask = torch.tensor([[True, False, False, True], [False, False, True, False]])
    pred = torch.zeros(2, 4, 3)
    expected = float(np.mean([(target[b, n].numpy() ** 2).mean() for b, n in [(0, 0), (0, 3), (1, 2)]]))
    assert mim_loss(pred, target, mask, "rgb").item() == pytest.approx(expected, rel=1e-6)
    assert set(MIM_TARGETS) == {"semantic", "rgb", "pixels"}


# --- masks ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("num_patches", "ratio", "expected"),
    [(48, 0.15, 7), (192, 0.15, 29), (10, 0.25, 3), (10, 0.24, 2), (12, 0.01, 1), (12, 1.0, 12), (4, 0.5, 2)],
)
def test_mask_ratio_is_exact(num_patches, ratio, expected):
    # 48 * 0.15 = 7.2 -> 7; 192 * 0.15 = 28.8 -> 29; 10 * 0.25 = 2.5 -> 3 (half up); 0.12 -> at least 1.
    assert num_masked(num_patches, ratio) == expected
    mask = random_patch_mask(5, num_patches, ratio, torch.Generator().manual_seed(3))
    assert mask.dtype == torch.bool and mask.shape == (5, num_patches)
    assert mask.sum(dim=1).tolist() == [expected] * 5


def test_mask_is_reproducible_and_varies_between_images():
    first = random_patch_mask(8, 48, 0.25, torch.Generator().manual_seed(0))
    again = random_patch_mask(8, 48, 0.25, torch.Generator().manual_seed(0))
    other = random_patch_mask(8, 48, 0.25, torch.Generator().manual_seed(1))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert len({tuple(row.tolist()) for row in first}) == 8


def test_mask_covers_every_patch_evenly():
    mask = random_patch_mask(4000, 8, 0.25, torch.Generator().manual_seed(0))  # 2 of 8 per image
    share = mask.float().mean(dim=0)
    assert torch.allclose(share, torch.full((8,), 0.25), atol=0.03)


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5])
def test_mask_refuses_ratios_outside_0_1(ratio):
    with pytest.raises(ValueError, match=f"mask ratio {ratio!r} must be in \\(0, 1\\]"):
        random_patch_mask(2, 10, ratio)


def test_mask_feeds_the_image_tower():
    tower = build_image_tower(img_size=(16, 8), patch_size=4, width=16, depth=1, heads=2, out_dim=8, mask_token=True)
    mask = random_patch_mask(3, tower.num_patches, 0.5, torch.Generator().manual_seed(0))
    out = tower(random_images(batch=3, height=16, width=8), patch_mask=mask)
    assert out.tokens.shape == (3, 1 + tower.num_patches, 8)


# --- per-class accuracy -----------------------------------------------------------------------


def test_per_class_accuracy_by_hand():
    logits = torch.full((1, 6, 4), -1.0)
    predicted = [0, 1, 1, 2, 3, 0]
    for n, c in enumerate(predicted):
        logits[0, n, c] = 1.0
    labels = torch.tensor([[0, 1, 2, 2, 3, 0]])
    mask = torch.tensor([[True, True, True, True, False, True]])
    # class 0: patches 0, 5 both right -> 1; class 1: patch 1 right -> 1; class 2: patch 2 wrong, 3 right -> 0.5;
    # class 3: its only patch is unmasked -> NaN.
    accuracy = per_class_accuracy(logits, labels, mask, 4)
    assert accuracy.shape == (4,)
    assert accuracy[:3].tolist() == [1.0, 1.0, 0.5] and math.isnan(accuracy[3].item())
    with pytest.raises(ValueError, match="outside the 2 classes"):
        per_class_accuracy(logits, labels, mask, 2)


def test_class_balanced_loss_is_the_mean_over_classes_of_each_class_mean():
    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 6, 5, generator=gen, dtype=torch.float64)
    target = torch.tensor([[0, 0, 0, 1, 2, 2], [0, 0, 1, 4, 4, 4]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 1], [1, 0, 1, 1, 1, 0]], dtype=torch.bool)
    ce = torch.nn.functional.cross_entropy(pred[mask], target[mask], reduction="none")  # (M,)
    labels = target[mask]
    per_class = [ce[labels == c].mean() for c in labels.unique()]
    balanced = mim_loss(pred, target, mask, "semantic", class_balance=1.0)
    assert balanced.item() == pytest.approx(torch.stack(per_class).mean().item(), rel=1e-12)
    assert mim_loss(pred, target, mask, "semantic", class_balance=0.0).item() == pytest.approx(ce.mean().item())
    half = mim_loss(pred, target, mask, "semantic", class_balance=0.5).item()
    weights = torch.bincount(labels)[labels].double() ** -0.5
    assert half == pytest.approx((weights * ce).sum().item() / weights.sum().item(), rel=1e-12)
    # one class only: every weight is 1, whatever the balance
    same = torch.zeros_like(target)
    assert mim_loss(pred, same, mask, "semantic", class_balance=1.0).item() == pytest.approx(
        mim_loss(pred, same, mask, "semantic").item(), rel=1e-12)


@pytest.mark.parametrize(("balance", "kind"), [(-0.1, "semantic"), (1.5, "semantic"), (0.5, "rgb")])
def test_class_balance_outside_its_range_or_target_is_refused(balance, kind):
    pred = torch.zeros(1, 4, 3 if kind == "rgb" else len(PART_INDEX))
    target = torch.zeros(1, 4, 3) if kind == "rgb" else torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="class_balance.*model.bilma.mim_class_balance"):
        mim_loss(pred, target, torch.ones(1, 4, dtype=torch.bool), kind, class_balance=balance)


def test_class_balance_is_a_validated_config_key_that_keeps_cache_keys():
    from tireid_lite.config import apply_overrides, get_profile, identity_dict, validate
    from tireid_lite.errors import ConfigError

    cfg = apply_overrides(get_profile("cpu"), ["model.method=bilma"])
    assert "mim_class_balance" not in identity_dict(cfg)["model"]["bilma"]  # earlier runs keep their cache keys
    on = apply_overrides(get_profile("cpu"), ["model.method=bilma", "model.bilma.mim_class_balance=1.0"])
    assert identity_dict(on)["model"]["bilma"]["mim_class_balance"] == 1.0
    for bad in (["model.bilma.mim_class_balance=2"], ["model.bilma.mim_class_balance=0.5", "model.bilma.mim_target=rgb"]):
        with pytest.raises(ConfigError, match="model.bilma.mim_class_balance"):
            validate(apply_overrides(get_profile("cpu"), ["model.method=bilma", *bad]))
