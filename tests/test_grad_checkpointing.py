"""model.grad_checkpointing: the towers recompute their layers in the backward pass, and the gradients
are those of the plain run."""

from __future__ import annotations

import pytest
import torch

from tireid_lite.config import apply_overrides, get_profile
from tireid_lite.data.build import build_data
from tireid_lite.data.fixtures import write_fixture
from tireid_lite.models import build_model
from tireid_lite.train.build import build_train_loader

TINY = ["data.dataset=cuhk-pedes", "data.image_size=[32,16]", "data.max_length=32", "model.image_width=32",
        "model.image_depth=2", "model.image_heads=2", "model.text_width=32", "model.text_depth=2",
        "model.text_heads=2", "model.embed_dim=32", "model.cross_depth=1", "model.cross_heads=2",
        "model.warm_start=none", "train.batch_size=8", "model.kpdm.mask_strategy=random"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_fixture("cuhk-pedes", tmp_path_factory.mktemp("gc") / "cuhk", ids_per_split={"train": 4, "val": 1, "test": 1},
                         images_per_id=2, size=(32, 16))


def _grads(root, method: str, checkpointing: bool):
    cfg = apply_overrides(get_profile("cpu"), [*TINY, f"data.root={root}", f"model.method={method}",
                                               f"model.grad_checkpointing={checkpointing}"])
    data = build_data(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, data.tokenizer, data.num_classes).train()
    calls = []
    mlp = model.image_tower.vit.blocks[0].mlp
    plain_forward = mlp.forward

    def counted(*args, **kwargs):  # a call inside the first block, counted (forward hooks skip recomputation)
        calls.append(1)
        return plain_forward(*args, **kwargs)

    mlp.forward = counted
    data.train_set.caption_hook = getattr(model, "caption_hook", None)
    batch = next(iter(build_train_loader(data.train_set, cfg)))
    torch.manual_seed(1)
    out = model(batch)
    forward_calls = len(calls)
    out["loss"].backward()
    model.recomputed = len(calls) > forward_calls  # the backward pass ran the block again
    return model, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("method", ["irra", "kpdm"])  # kpdm's towers also return attention maps
def test_gradients_equal_with_and_without_checkpointing(root, method):
    plain_model, plain = _grads(root, method, False)
    model, checked = _grads(root, method, True)
    assert model.image_tower.grad_checkpointing and not plain_model.image_tower.grad_checkpointing
    assert model.recomputed and not plain_model.recomputed
    assert any(getattr(module, "gradient_checkpointing", False) for module in model.text_tower.encoder.modules())
    assert plain.keys() == checked.keys()
    for name, grad in plain.items():
        torch.testing.assert_close(checked[name], grad, rtol=1e-5, atol=1e-7, msg=name)
