"""The peak-memory estimate (tireid_lite.train.memory): its parameter count equals the kit's real model
built from a CLIP checkpoint of the same sizes, and its activation count follows the formula."""

from __future__ import annotations

import pytest

from tireid_lite.config import apply_overrides, load_recipe
from tireid_lite.data.patch_labels import PART_CLASSES
from tireid_lite.models import build_model
from tireid_lite.models.tiny_clip import (
    TINY_CLIP_SIZES,
    tiny_clip_vocab,
    write_tiny_clip,
)
from tireid_lite.text.tokenizers import CLIPBPETokenizer
from tireid_lite.train.memory import (
    GIB,
    Arch,
    estimate_memory,
    layer_activation_bytes,
    memory_table,
    param_count,
)

S = TINY_CLIP_SIZES
TINY = Arch(image_size=(384, 128), patch=S["patch_size"], image_width=S["vision_width"], image_layers=S["vision_layers"],
            image_heads=S["vision_heads"], text_length=77, text_width=S["text_width"], text_layers=S["text_layers"],
            text_heads=S["text_heads"], vocab=len(tiny_clip_vocab()), embed=S["projection_dim"], cross_layers=4,
            cross_heads=8, classes=9, tse_width=1024, parts=len(PART_CLASSES))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_tiny_clip(tmp_path_factory.mktemp("mem") / "clip")


@pytest.mark.parametrize("method", ["irra", "rde", "kpdm", "bilma"])
def test_parameter_count_equals_the_kits_model(method, clip):
    cfg = apply_overrides(load_recipe(method), [f"model.pretrained_dir={clip}"])
    model = build_model(cfg, CLIPBPETokenizer.from_pretrained(clip), TINY.classes)
    assert param_count(method, TINY) == sum(p.numel() for p in model.parameters())


def test_layer_activations_follow_korthikanti():
    # T=10 tokens, B=2, W=8, 2 heads: 10 * 2 * (34 * 8) without scores, + 10 * 2 * 5 * 2 * 10 with them
    assert layer_activation_bytes(10, 2, 8, 2, scores=False) == 5440
    assert layer_activation_bytes(10, 2, 8, 2, scores=True) == 5440 + 2000


def test_estimate_grows_with_the_batch_and_shrinks_with_checkpointing():
    a, b = estimate_memory("irra", 32), estimate_memory("irra", 64)
    assert a.state_bytes == b.state_bytes and b.activation_bytes == 2 * a.activation_bytes
    assert estimate_memory("irra", 64, grad_checkpointing=True).activation_bytes < b.activation_bytes
    assert 149e6 < param_count("rde") - 2.6e6 < 150e6  # CLIP ViT-B/16 holds 149.6 M parameters
    rows = memory_table((64,))
    assert [r["method"] for r in rows] == ["irra", "rde", "kpdm", "bilma"]
    assert rows[0]["peak_GiB"] == round(b.total_gib, 1) and b.total_gib * GIB == b.state_bytes + b.activation_bytes
    with pytest.raises(ValueError, match="no memory estimate for method 'cada'"):
        estimate_memory("cada", 64)
