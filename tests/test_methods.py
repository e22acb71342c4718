"""Heads as the one way to add a mechanism: the methods table, what a method needs, the scorer, re-ranking.

The toy method below lives in this module alone: one head (a matching loss and
a second retrieval stage that reverses each query's top k) and one row added
to the table. It trains through the Trainer, is scored through the scorer and
re-ranked through ``evaluate(rerank_k=...)`` and ``tireid eval --rerank-k``,
without any other file of the kit knowing about it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tireid_lite import cli
from tireid_lite.config import apply_overrides, get_profile
from tireid_lite.data.build import build_data
from tireid_lite.data.fixtures import write_fixture
from tireid_lite.errors import ConfigError
from tireid_lite.eval.metrics import rank_gallery, retrieval_metrics
from tireid_lite.eval.retrieval import evaluate, extract_features
from tireid_lite.losses.matching import sdm_loss
from tireid_lite.models import methods
from tireid_lite.models.head import (
    NEEDS_KEY_PHRASES,
    NEEDS_MASK_TOKEN,
    NEEDS_PAIR_WEIGHTS,
    NEEDS_PART_MAPS,
    Head,
    RerankInputs,
)
from tireid_lite.models.scorer import Scorer, View, order_scores, rerank_top_k
from tireid_lite.models.tireid import build_model
from tireid_lite.models.trained import load_trained
from tireid_lite.text.tokenizers import WordTokenizer
from tireid_lite.train.trainer import Trainer

TINY = [
    "data.image_size=[32,16]", "data.max_length=32", "model.image_width=32", "model.image_depth=1",
    "model.image_heads=2", "model.text_width=32", "model.text_depth=1", "model.text_heads=2",
    "model.embed_dim=32", "train.batch_size=8", "train.num_epochs=1", "train.warmup_epochs=0",
    "train.lr=0.001", "train.threads=1", "train.epoch_fraction=1", "model.warm_start=none",
]


# --------------------------------------------------------------------------- a toy method, defined here only


class ReverseTopK(Head):
    """SDM on the global features, and a second stage that puts each query's top k in reverse order."""

    name = "reverse"
    losses = ("toy_sdm",)

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.loss_weights = {"toy_sdm": 1.0}
        self.register_buffer("logit_scale", torch.tensor(1.0 / temperature), persistent=False)

    @classmethod
    def build(cls, cfg, ctx):
        return cls(cfg.model.temperature)

    def forward(self, model, enc, batch):
        return {"toy_sdm": sdm_loss(enc.image_feats, enc.text_feats, batch["pids"], self.logit_scale)}

    def rerank(self, model, inputs: RerankInputs):
        assert inputs.query_ids.shape[0] == inputs.candidates.shape[0]
        assert inputs.load_images(inputs.candidates[0, :2]).shape[0] == 2  # what a matching head would read
        return -inputs.scores  # (Q, k): the k-th best first


@pytest.fixture
def toy_method(monkeypatch):
    monkeypatch.setitem(methods.METHODS, "toy", (ReverseTopK,))
    return "toy"


@pytest.fixture(scope="module")
def cuhk_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "cuhk"
    return write_fixture("cuhk-pedes", root, ids_per_split={"train": 8, "val": 5, "test": 5}, images_per_id=3,
                         size=(32, 16))


@pytest.fixture(scope="module", autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _config(root: Path, method: str, *extra: str):
    return apply_overrides(get_profile("cpu"), ["data.dataset=cuhk-pedes", f"data.root={root}", *TINY,
                                                f"model.method={method}", *extra])


def _first_stage_ranks(model, data, split="test"):
    gallery, queries = data.gallery(split), data.queries(split)
    with torch.no_grad():
        g = extract_features(model, torch.utils.data.DataLoader(gallery, batch_size=16), "images")
        q = extract_features(model, torch.utils.data.DataLoader(queries, batch_size=16), "texts")
        sim = model.similarity(q, g).numpy()
    return sim, np.asarray(queries.pids), np.asarray(gallery.pids)


def test_a_toy_method_trains_scores_and_reranks_without_touching_the_kit(toy_method, cuhk_root, tmp_path, capsys):
    cfg = _config(cuhk_root, toy_method)
    metrics = Trainer(cfg, tmp_path / "run").fit()
    trained = load_trained(tmp_path / "run" / "best.pt")
    model = trained.model
    assert list(model.heads) == ["reverse"] and model.reranker is model.heads["reverse"]
    data = build_data(trained.cfg, trained.tokenizer, train=False)
    sim, q_pids, g_pids = _first_stage_ranks(model, data)
    assert evaluate(model, data, "test") == pytest.approx(metrics)
    # by hand: after reversing the top k, the first image of each query is its k-th best of the first stage
    k = 4
    order = np.argsort(-sim, axis=1, kind="stable")
    expected_r1 = 100.0 * np.mean(g_pids[order[:, k - 1]] == q_pids)
    reranked = evaluate(model, data, "test", rerank_k=k)
    assert reranked["R1"] == pytest.approx(expected_r1)
    final = np.concatenate([order[:, :k][:, ::-1], order[:, k:]], axis=1)  # the whole final order
    scores = order_scores(torch.from_numpy(final.copy()))
    assert reranked == pytest.approx(retrieval_metrics(scores, q_pids, g_pids))
    # the command line gives the same numbers
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--rerank-k", str(k)]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(reranked, abs=1e-9)


def test_reranking_a_method_without_a_second_stage_is_one_clear_error(cuhk_root, tmp_path, capsys):
    cfg = _config(cuhk_root, "baseline")
    Trainer(cfg, tmp_path / "run").fit()
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--rerank-k", "3"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("tireid eval: error: --rerank-k 3: model.method 'baseline'") and "\n" not in err
    trained = load_trained(tmp_path / "run" / "best.pt")
    data = build_data(trained.cfg, trained.tokenizer, train=False)
    with pytest.raises(ConfigError, match="has no second retrieval stage"):
        evaluate(trained.model, data, "test", rerank_k=3)


# --------------------------------------------------------------------------- the second stage on hand values


def test_rerank_top_k_reorders_only_the_top_k():
    sim = torch.tensor([[0.9, 0.1, 0.5, 0.7, 0.3],
                        [0.2, 0.8, 0.6, 0.4, 0.0]])
    # first stage: row 0 -> 0, 3, 2, 4, 1; row 1 -> 1, 2, 3, 0, 4
    seen = {}

    def by_index(candidates, scores):
        seen["candidates"], seen["scores"] = candidates.clone(), scores.clone()
        return -candidates.float()  # the lowest gallery index first

    out = rerank_top_k(sim, 3, by_index)
    assert seen["candidates"].tolist() == [[0, 3, 2], [1, 2, 3]]
    assert torch.allclose(seen["scores"], torch.tensor([[0.9, 0.7, 0.5], [0.8, 0.6, 0.4]]))
    final = rank_gallery(out, 5).tolist()
    assert final == [[0, 2, 3, 4, 1], [1, 2, 3, 0, 4]]  # positions 4 and 5 keep their first-stage order
    assert out.shape == sim.shape
    assert rerank_top_k(sim, 9, lambda c, s: s).equal(rerank_top_k(sim, 5, lambda c, s: s))  # k beyond G: all
    with pytest.raises(ConfigError, match="rerank k=0"):
        rerank_top_k(sim, 0, by_index)
    with pytest.raises(ValueError, match="scores of shape"):
        rerank_top_k(sim, 2, lambda c, s: s[:, :1])


def test_rerank_ties_keep_the_first_stage_order():
    sim = torch.tensor([[0.1, 0.9, 0.8, 0.7]])
    out = rerank_top_k(sim, 3, lambda c, s: torch.zeros_like(s))
    assert rank_gallery(out, 4).tolist() == [[1, 2, 3, 0]]


# --------------------------------------------------------------------------- the scorer


def test_scorer_averages_the_views_cosines_with_their_weights():
    text = torch.tensor([[3.0, 4.0, 1.0, 0.0]])  # views (3, 4) and (1, 0)
    images = torch.tensor([[0.0, 2.0, 0.0, 5.0], [2.0, 0.0, 1.0, 1.0]])
    global_cos = torch.tensor([[0.8, 0.6]])
    local_cos = torch.tensor([[0.0, 2 ** -0.5]])
    scorer = Scorer([View("global", 2), View("tse", 2)])
    assert torch.allclose(scorer.similarity(text, images), (global_cos + local_cos) / 2)
    weighted = Scorer([View("global", 2, 1.0), View("tse", 2, 3.0)])
    assert torch.allclose(weighted.similarity(text, images), (global_cos + 3 * local_cos) / 4)
    assert list(scorer.split(text)) == ["global", "tse"]
    with pytest.raises(ValueError, match="do not match the scorer's views"):
        scorer.split(torch.zeros(1, 5))
    one = Scorer([View("global", 2)])
    assert torch.allclose(one.similarity(text[:, :2], images[:, :2]), global_cos)


# --------------------------------------------------------------------------- the table and what methods need


def _cfg(*extra):
    return apply_overrides(get_profile("cpu"), list(extra))


def test_what_a_method_needs_is_asked_of_its_heads():
    assert methods.method_needs(_cfg("model.method=baseline")) == frozenset()
    assert methods.method_needs(_cfg("model.method=irra")) == frozenset()
    assert methods.method_needs(_cfg("model.method=bilma")) == {NEEDS_MASK_TOKEN, NEEDS_PART_MAPS}
    assert methods.method_needs(_cfg("model.method=bilma", "model.bilma.mim_target=rgb")) == {NEEDS_MASK_TOKEN}
    assert methods.method_needs(_cfg("model.method=bilma", "model.bilma.mim_loss_weight=0")) == frozenset()
    assert methods.method_needs(_cfg("model.method=kpdm")) == {NEEDS_PAIR_WEIGHTS, NEEDS_KEY_PHRASES}
    assert methods.method_needs(_cfg("model.method=kpdm", "model.kpdm.mask_strategy=random")) == {NEEDS_PAIR_WEIGHTS}


def test_only_methods_that_exist_are_offered():
    assert list(methods.METHODS) == ["baseline", "irra", "bilma", "kpdm", "cada", "partlevel"]
    with pytest.raises(ConfigError, match="'model.method' is 'parts'; it must be one of baseline, irra, bilma, kpdm, cada, partlevel"):
        methods.method_heads("parts")
    with pytest.raises(SystemExit):
        cli.main(["train", "--method", "parts", "--out", "unused"])


def test_a_partitioner_needs_a_method_whose_losses_read_pair_weights():
    tok = WordTokenizer.train(["a man in a red shirt"], max_length=16)
    with pytest.raises(ConfigError, match="'train.partitioner' is 'tcp' but model.method 'irra'"):
        build_model(_cfg("model.method=irra", "train.partitioner=tcp"), tok, 2)


def test_importance_layers_beyond_the_tower_are_refused_when_patches_are_selected():
    tok = WordTokenizer.train(["a man in a red shirt"], max_length=16)
    with pytest.raises(ConfigError, match="'model.kpdm.importance_layers' is 9; it must be between 1 and the image"):
        build_model(_cfg("model.method=kpdm", "model.kpdm.importance_layers=9"), tok, 2)
    build_model(_cfg("model.method=kpdm", "model.kpdm.importance_layers=9", "model.kpdm.select_ratio=1.0"), tok, 2)
