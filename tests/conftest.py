"""Fixtures shared by several test files: float64 features for the losses, a tiny untrained BiLMa model."""

from __future__ import annotations

import pytest
import torch

from tireid_lite.config import apply_overrides, get_profile
from tireid_lite.data.build import build_data
from tireid_lite.models import build_model

# A BiLMa model (both masked heads and the cross-modal module) small enough to build in a second.
TINY_BILMA = [
    "data.dataset=synth", "data.synth_ids_train=8", "data.synth_ids_val=3", "data.synth_ids_test=4",
    "data.synth_images_per_id=2", "data.image_size=[48,16]", "data.max_length=48", "data.pad=3",
    "model.method=bilma", "model.image_width=32", "model.image_depth=1", "model.image_heads=2",
    "model.text_width=32", "model.text_depth=1", "model.text_heads=2", "model.embed_dim=32",
    "model.cross_depth=1", "model.cross_heads=2", "model.bilma.mim_ratio=0.25", "model.warm_start=none",
]


@pytest.fixture
def batch64():
    """Random float64 features for 8 pairs with repeated identities."""
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(8, 5, generator=gen, dtype=torch.float64)
    text = torch.randn(8, 5, generator=gen, dtype=torch.float64)
    pids = torch.tensor([3, 1, 3, 7, 1, 3, 9, 7])
    return image, text, pids


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """An untrained :data:`TINY_BILMA` model in eval mode and its data (a SynthPEDES draw in a temporary cache)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TIREID_CACHE", str(tmp_path_factory.mktemp("cache")))
    mp.setenv("TIREID_PROGRESS", "0")
    cfg = apply_overrides(get_profile("cpu"), TINY_BILMA)
    data = build_data(cfg, train=False)
    torch.manual_seed(0)
    model = build_model(cfg, data.tokenizer, data.num_classes).eval()
    yield model, data
    mp.undo()


@pytest.fixture
def tiny_kpdm(tmp_path, monkeypatch):
    """An untrained KPDM model (random masking, no FMLM, half the patches kept) in eval mode and its data,
    built like :data:`TINY_BILMA` in a temporary cache."""
    monkeypatch.setenv("TIREID_CACHE", str(tmp_path))
    monkeypatch.setenv("TIREID_PROGRESS", "0")
    overrides = [o for o in TINY_BILMA if not o.startswith(("model.method", "model.bilma"))]
    cfg = apply_overrides(get_profile("cpu"), [*overrides, "model.method=kpdm", "model.kpdm.mask_strategy=random",
                                               "model.kpdm.fmlm_alpha=0", "model.kpdm.select_ratio=0.5",
                                               "model.kpdm.importance_layers=1"])
    data = build_data(cfg, train=False)
    torch.manual_seed(0)
    model = build_model(cfg, data.tokenizer, data.num_classes).eval()
    return model, data
