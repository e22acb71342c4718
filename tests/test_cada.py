"""CADA (notebook 07): hard-negative mining, the ITM and global losses, the gate, the attribute masking,
the association head's training step and its re-ranking stage, each on hand values."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tireid_lite.config import apply_overrides, get_profile
from tireid_lite.errors import ConfigError
from tireid_lite.losses.itm import cada_global_loss, itm_accuracy, itm_loss, itm_score, mine_hard_negatives
from tireid_lite.losses.matching import sdm_loss
from tireid_lite.models import methods
from tireid_lite.models.cada import AttributeMasking, itm_pair_accuracy, token_groups
from tireid_lite.models.cada_decoder import AssociationDecoder, attention_confidence
from tireid_lite.models.head import NEEDS_KEY_PHRASES, RerankInputs
from tireid_lite.models.scorer import rerank_top_k
from tireid_lite.models.tireid import build_model
from tireid_lite.text.tokenizers import WordTokenizer

CAPTIONS = ["a man in a red shirt and blue jeans", "a woman with long black hair carries a brown bag",
            "the person wears white shoes and a green hat"]


def _cfg(*overrides):
    return apply_overrides(get_profile("cpu"), ["model.method=cada", "model.warm_start=none", *overrides])


@pytest.fixture(scope="module")
def tok():
    return WordTokenizer.train(CAPTIONS, max_length=16)


# --------------------------------------------------------------------------- mining and losses


def test_mining_takes_the_most_similar_pair_of_another_identity():
    # rows: texts, columns: images; pairs 0 and 1 are the same person
    sim = torch.tensor([[0.9, 0.8, 0.3, 0.5],
                        [0.7, 0.9, 0.6, 0.2],
                        [0.1, 0.4, 0.9, 0.8],
                        [0.95, 0.2, 0.7, 0.9]])
    pids = torch.tensor([5, 5, 7, 9])
    neg_image, neg_text = mine_hard_negatives(sim, pids)
    # text 0: images of other identities are 2 (0.3) and 3 (0.5) -> 3; text 1: 2 (0.6); text 2: 3 (0.8)
    # text 3: 0 (0.95) beats 2 (0.7)
    assert neg_image.tolist() == [3, 2, 3, 0]
    # image 0: texts 2 (0.1), 3 (0.95) -> 3; image 1: texts 2 (0.4), 3 (0.2) -> 2; image 2: texts 0 (0.3),
    # 1 (0.6), 3 (0.7) -> 3; image 3: texts 0 (0.5), 1 (0.2), 2 (0.8) -> 2
    assert neg_text.tolist() == [3, 2, 3, 2]
    same = pids[:, None] == pids[None, :]
    assert not same[torch.arange(4), neg_image].any() and not same[neg_text, torch.arange(4)].any()


def test_mining_refuses_a_batch_of_one_identity():
    with pytest.raises(ValueError, match="no other identity"):
        mine_hard_negatives(torch.eye(3), torch.tensor([1, 1, 1]))


def test_itm_loss_accuracy_and_score_on_hand_values():
    pos = torch.tensor([[0.0, math.log(3.0)]])  # p(matched) = 3/4
    neg = torch.tensor([[0.0, 0.0], [1.0, 0.0]])  # p = 1/2; p(not matched) = e/(1+e)
    expected = (-math.log(0.75) + math.log(2.0) - math.log(math.e / (1 + math.e))) / 3
    assert float(itm_loss(pos, neg)) == pytest.approx(expected, rel=1e-6)
    # argmax of [0, 0] is 0 (not matched): right for a negative; [1, 0] right too; pos right
    assert float(itm_accuracy(pos, neg)) == 1.0
    assert itm_score(torch.tensor([[0.5, 2.0], [1.0, -1.0]])).tolist() == pytest.approx([1.5, -2.0])


def _global_by_hand(image, text, pids, scale, eps=1e-8):
    """CADA's global loss with numpy, one row at a time."""
    image = image / np.linalg.norm(image, axis=1, keepdims=True)
    text = text / np.linalg.norm(text, axis=1, keepdims=True)
    s = text @ image.T
    y = (pids[:, None] == pids[None, :]).astype(float)
    q = y / y.sum(1, keepdims=True)
    total = 0.0
    for logits in (scale * s, scale * s.T):
        rows = []
        for i in range(len(logits)):
            p = np.exp(logits[i] - logits[i].max())
            p /= p.sum()
            kl = np.sum(p * (np.log(p) - np.log(q[i] + eps)))
            pos = q[i] > 0
            reverse = np.sum(q[i][pos] * (np.log(q[i][pos]) - np.log(p[pos])))
            ce = -np.sum(q[i][pos] * np.log(p[pos]))
            rows.append(kl + reverse + ce)
        total += np.mean(rows)
    return total


def test_cada_global_loss_matches_a_numpy_computation_and_contains_sdm():
    rng = np.random.default_rng(0)
    image, text = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    pids = np.array([0, 0, 1, 2])
    got = cada_global_loss(torch.tensor(image), torch.tensor(text), torch.tensor(pids), 5.0)
    assert float(got) == pytest.approx(_global_by_hand(image, text, pids, 5.0), rel=1e-6)
    sdm = sdm_loss(torch.tensor(image), torch.tensor(text), torch.tensor(pids), 5.0)
    assert float(got) > float(sdm)  # SDM is its first term; the others are non-negative


def test_cada_global_loss_of_a_perfect_batch_is_the_entropy_of_the_target():
    # text i == image i, distinct identities, a huge scale: p = q = one-hot, so KL = reverse = CE = 0
    feats = torch.eye(3, dtype=torch.float64)
    assert float(cada_global_loss(feats, feats, torch.tensor([0, 1, 2]), 1e4)) == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------- the decoder and its gate


def test_attention_confidence_of_uniform_and_one_hot_rows():
    rows = torch.tensor([[0.25, 0.25, 0.25, 0.25], [0.0, 1.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]])
    focus, peak = attention_confidence(rows)
    assert focus.tolist() == pytest.approx([0.0, 1.0, 0.5], abs=1e-6)  # 1 - log 2 / log 4
    assert peak.tolist() == pytest.approx([0.0, 1.0, (0.5 - 0.25) / 0.75], abs=1e-6)


def test_the_gate_scales_aggregation_and_is_one_when_off():
    torch.manual_seed(0)
    text, image = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    gated = AssociationDecoder(16, 4, 2, gate=True)
    out = gated(text, image)
    assert len(out.gates) == 2 and out.gates[0].shape == (2, 5) and out.attentions[0].shape == (2, 5, 7)
    # the gate's own formula on the returned attention
    focus, peak = attention_confidence(out.attentions[0])
    by_hand = torch.sigmoid(4 * focus + 4 * peak)
    assert torch.allclose(out.gates[0], by_hand, atol=1e-5)
    plain = AssociationDecoder(16, 4, 2, gate=False)
    assert all(bool((g == 1).all()) for g in plain(text, image).gates)


def test_token_groups_split_each_captions_own_tokens():
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0],   # start, 4 body tokens, end
                         [1, 1, 1, 1, 1, 1, 1, 1]])  # start, 6 body tokens, end
    groups = token_groups(mask, 2)  # (2, 8, 2)
    assert groups[0].argmax(-1)[1:5].tolist() == [0, 0, 1, 1] and groups[0].sum().item() == 4
    assert groups[1].argmax(-1)[1:7].tolist() == [0, 0, 0, 1, 1, 1] and groups[1].sum().item() == 6
    assert groups[:, 0].sum() == 0 and groups[0, 5:].sum() == 0 and groups[1, 7].sum() == 0


# --------------------------------------------------------------------------- ARA's masking


class _Phrase(SimpleNamespace):
    pass


def _phrases_of(caption, words):
    return [_Phrase(start=caption.index(w), end=caption.index(w) + len(w)) for w in words]


def test_attribute_masking_masks_only_attribute_words(tok):
    caption = CAPTIONS[0]
    table = {caption: _phrases_of(caption, ["red shirt", "blue jeans"])}
    ids = torch.tensor(tok.encode(caption))
    attribute_pos = {5, 6, 8, 9}  # start token at 0, then "a man in a red shirt and blue jeans"
    words = AttributeMasking(tok, table, "word", 0.4)
    rng = np.random.default_rng(0)
    counts = np.zeros(len(ids))
    for _ in range(400):
        out = words(caption, ids, rng)
        chosen = np.flatnonzero(out["mlm_labels"].numpy() != -100)
        assert set(chosen) <= attribute_pos and len(chosen) >= 1
        assert (out["mlm_ids"][chosen] == tok.mask_token_id).all()
        assert (out["mlm_labels"][chosen] == ids[chosen]).all()
        counts[chosen] += 1
    # each attribute word with 0.4, plus the forced one when none is drawn (0.6^4 = 13% of captions)
    assert counts[sorted(attribute_pos)] / 400 == pytest.approx([0.4 + 0.6**4 / 4] * 4, abs=0.08)
    phrases = AttributeMasking(tok, table, "phrase", 0.8)
    for _ in range(50):
        chosen = set(np.flatnonzero(phrases(caption, ids, rng)["mlm_labels"].numpy() != -100))
        assert chosen in ({5, 6}, {8, 9}, {5, 6, 8, 9})


def test_ara_asks_for_key_phrases_and_is_switchable():
    assert methods.method_needs(_cfg()) == {NEEDS_KEY_PHRASES}
    assert methods.method_needs(_cfg("model.cada.ara_weight=0")) == frozenset()
    with pytest.raises(ConfigError, match="model.cada.ara_mode"):
        _cfg("model.cada.ara_mode=sentence")


# --------------------------------------------------------------------------- training step and re-ranking


def _batch(tok, n=4):
    torch.manual_seed(0)
    ids = torch.stack([torch.tensor(tok.encode(CAPTIONS[i % 3]) + [tok.pad_id] * (16 - len(tok.encode(CAPTIONS[i % 3]))))
                       for i in range(n)])
    return {"images": torch.randn(n, 3, 96, 32), "caption_ids": ids, "pids": torch.tensor([0, 0, 1, 2][:n]),
            "mlm_ids": ids.clone(), "mlm_labels": torch.where(torch.arange(16) == 2, ids, -100)}


def test_a_training_step_gives_every_switched_on_loss(tok):
    model = build_model(_cfg(), tok, 3)
    assert list(model.heads) == ["global", "id", "atp", "ara"] and model.reranker is model.heads["atp"]
    out = model(_batch(tok))
    assert {"global", "id", "itm", "itm_local", "ara"} <= set(out) and torch.isfinite(out["loss"])
    weights = {"global": 1.0, "id": 1.0, "itm": 1.0, "itm_local": 1.0, "ara": 0.1}
    assert float(out["loss"].detach()) == pytest.approx(sum(w * float(out[k].detach()) for k, w in weights.items()), rel=1e-5)
    out["loss"].backward()
    assert model.heads["atp"].decoder.layers[0].gate.proj.weight.grad is not None
    bare = build_model(_cfg("model.cada.itm_weight=0", "model.cada.ara_weight=0", "model.cada.global_loss=sdm"), tok, 3)
    assert list(bare.heads) == ["global", "id"] and bare.reranker is None
    off = build_model(_cfg("model.cada.gate=false", "model.cada.local_itm=false"), tok, 3)
    assert off.heads["atp"].losses == ("itm",) and float(off(_batch(tok))["gate_mean"]) == 1.0


def test_rerank_scores_are_itm_plus_global_and_reorder_only_the_top_k(tok):
    torch.manual_seed(1)
    model = build_model(_cfg(), tok, 3).eval()
    head = model.heads["atp"]
    batch = _batch(tok, 3)
    gallery = torch.randn(6, 3, 96, 32)
    sim = torch.rand(3, 6)
    seen = {}

    def score(candidates, scores):
        inputs = RerankInputs(query_ids=batch["caption_ids"], text_feats=None, image_feats=None, candidates=candidates,
                              scores=scores, load_images=lambda index: gallery[index])
        seen["new"] = head.rerank(model, inputs)
        return seen["new"]

    k = 3
    final = rerank_top_k(sim, k, score)
    first = torch.sort(sim, dim=1, descending=True, stable=True).indices
    final_order = torch.sort(final, dim=1, descending=True, stable=True).indices
    assert torch.equal(final_order[:, k:], first[:, k:])  # below the top k: the first stage's order
    assert torch.equal(final_order[:, :k].sort(1).values, first[:, :k].sort(1).values)  # the same k, reordered
    # each score by an independent path: one pair at a time, full padding, no chunking
    with torch.no_grad():
        for q in range(3):
            ids = batch["caption_ids"][q:q + 1]
            mask = tok.attention_mask(ids)
            for j in range(k):
                g = int(first[q, j])
                assoc = head.associate(model.encode_text_tokens(ids), model.encode_image_tokens(gallery[g:g + 1]), mask)
                want = float(itm_score(head.match_logits(assoc))) + float(sim[q, g])
                assert float(seen["new"][q, j]) == pytest.approx(want, abs=1e-4)


def test_a_broken_itm_head_scores_matched_and_negative_pairs_alike(tok):
    torch.manual_seed(2)
    model = build_model(_cfg(), tok, 3).eval()
    batch = _batch(tok, 3)
    images = batch["images"]
    data = SimpleNamespace(queries=lambda split: SimpleNamespace(caption_ids=batch["caption_ids"],
                                                                 image_ids=np.array([0, 1, 2])),
                           gallery=lambda split: [{"images": images[i]} for i in range(3)])
    sim = torch.tensor([[0.9, 0.8, 0.1], [0.2, 0.9, 0.7], [0.6, 0.1, 0.9]])
    pids = np.array([0, 1, 2])
    working = itm_pair_accuracy(model, data, sim, pids, pids)
    assert working["neg_index"].tolist() == [1, 2, 0]
    assert working["accuracy"] != 50.0
    head = model.heads["atp"]
    torch.nn.init.zeros_(head.itm_head.weight)
    torch.nn.init.zeros_(head.itm_head.bias)
    assert itm_pair_accuracy(model, data, sim, pids, pids)["accuracy"] == 50.0  # every pair tied


# --------------------------------------------------------------------------- figures


def test_association_figures_draw_and_refuse_mismatched_inputs():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tireid_lite.viz.association import show_reranking, show_token_associations

    image = np.zeros((96, 32, 3))
    fig = show_token_associations(image, ["red", "shirt"], np.random.rand(2, 12, 4), [0.4, 0.9], title="t")
    assert [ax.get_title() for ax in fig.axes[1:3]] == ["red\ng=0.40", "shirt\ng=0.90"]
    plt.close(fig)
    with pytest.raises(ValueError, match="one \\(rows, cols\\) map and one gate per word"):
        show_token_associations(image, ["red"], np.random.rand(2, 12, 4), [0.4, 0.9])
    fig = show_reranking(["a man"], [[image, image]], [["partner", "match"]], [[image, image]], [["match", "other"]])
    assert len(fig.axes) == 2 * 3
    plt.close(fig)
