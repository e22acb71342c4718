"""``train.compile``: the training forward in one graph, with the eager losses up to float rounding.

Compiling with inductor takes minutes on two cores, so these tests trace with dynamo
(``explain``: how many graphs) and run with the ``aot_eager`` backend, which takes
the same compile-time branches of the model without generating code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch._dynamo

from tireid_lite.config import apply_overrides, get_profile
from tireid_lite.data.fixtures import write_fixture
from tireid_lite.losses.mlm import _mlm_loss_dense, mlm_loss
from tireid_lite.models import build_model
from tireid_lite.train.build import (
    build_train_loader,
    build_training_data,
    set_loader_epoch,
)
from tireid_lite.train.trainer import Trainer

TINY = [
    "data.image_size=[32,16]", "data.max_length=32",
    "model.image_width=32", "model.image_depth=1", "model.image_heads=2",
    "model.text_width=32", "model.text_depth=1", "model.text_heads=2", "model.embed_dim=32",
    "model.cross_depth=1", "model.cross_heads=2", "train.batch_size=8", "model.warm_start=none",
]


@pytest.fixture(scope="module")
def cuhk_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "cuhk"
    return write_fixture("cuhk-pedes", root, ids_per_split={"train": 6, "val": 2, "test": 2}, images_per_id=3,
                         size=(32, 16))


def _model_and_batch(root: Path, method: str, *extra: str):
    cfg = apply_overrides(get_profile("cpu"), ["data.dataset=cuhk-pedes", f"data.root={root}", *TINY,
                                               f"model.method={method}", *extra])
    torch.manual_seed(0)
    data = build_training_data(cfg)
    model = build_model(cfg, data.tokenizer, data.num_classes)
    data.train_set.caption_hook = getattr(model, "caption_hook", None)
    loader = build_train_loader(data.train_set, cfg)
    set_loader_epoch(loader, 1)
    return cfg, model.train(), next(iter(loader))


@pytest.mark.parametrize("method", ["baseline", "irra"])
def test_training_forward_is_one_graph(cuhk_root, method):
    _, model, batch = _model_and_batch(cuhk_root, method)
    explained = torch._dynamo.explain(model)(batch)
    assert explained.graph_break_count == 0, [str(r.reason)[:120] for r in explained.break_reasons]
    assert explained.graph_count == 1


def test_compiled_losses_equal_the_eager_ones(cuhk_root):
    _, model, batch = _model_and_batch(cuhk_root, "irra")
    torch._dynamo.reset()
    eager = model(batch)
    compiled = torch.compile(model, backend="aot_eager", dynamic=False)(batch)
    for key in ("loss", "sdm", "id", "mlm"):
        torch.testing.assert_close(compiled[key], eager[key], rtol=1e-4, atol=1e-5)  # float rounding
    compiled["loss"].backward()  # the graph trains
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_dense_mlm_loss_equals_the_selected_one():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 7, generator=gen)
    labels = torch.full((3, 5), -100)
    labels[0, 1], labels[1, 3], labels[2, 0], labels[2, 4] = 2, 6, 0, 5
    weights = torch.rand(3, 5, generator=gen)
    for w in (None, weights):
        torch.testing.assert_close(_mlm_loss_dense(logits, labels, -100, w), mlm_loss(logits, labels, weights=w))
    nothing = torch.full((3, 5), -100)
    assert float(_mlm_loss_dense(logits, nothing, -100, None)) == 0.0 == float(mlm_loss(logits, nothing))


def test_trainer_steps_through_the_compiled_forward_only_when_asked(cuhk_root, tmp_path):
    cfg = apply_overrides(get_profile("cpu"), ["data.dataset=cuhk-pedes", f"data.root={cuhk_root}", *TINY])
    assert cfg.train.compile is False
    eager = Trainer(cfg, tmp_path / "eager")
    assert eager.forward is eager.model
    compiled = Trainer(apply_overrides(cfg, ["train.compile=true"]), tmp_path / "compiled")
    assert compiled.forward is not compiled.model and compiled.forward._orig_mod is compiled.model
