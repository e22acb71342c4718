"""Part queries and the commonality-based margin ranking loss (tireid_lite.losses.ranking, models.partlevel)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tireid_lite.config import apply_overrides, get_profile
from tireid_lite.errors import ConfigError
from tireid_lite.losses.ranking import (
    commonality,
    negative_mean,
    part_margins,
    part_ranking_loss,
    part_similarities,
)
from tireid_lite.models.methods import method_heads
from tireid_lite.models.partlevel import attention_masks, flatten_parts, query_part_iou, word_attention
from tireid_lite.models.scorer import Scorer, View


def hand_sims() -> tuple[torch.Tensor, torch.Tensor]:
    """Two parts, three pairs; pairs 0 and 1 are the same identity, pair 2 another.

    Part 0 is "common" (negatives alike), part 1 distinctive (negatives unlike)."""
    pids = torch.tensor([7, 7, 9])
    s0 = torch.tensor([[0.9, 0.8, 0.7],
                       [0.8, 0.9, 0.5],
                       [0.6, 0.4, 0.8]])
    s1 = torch.tensor([[0.9, 0.5, 0.1],
                       [0.5, 0.8, -0.3],
                       [0.2, 0.0, 0.6]])
    return torch.stack([s0, s1]), pids


def test_part_similarities_are_cosines_per_part():
    text = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # (B=1, K=2, D=2)
    image = torch.tensor([[[1.0, 1.0], [0.0, -1.0]], [[3.0, 0.0], [1.0, 0.0]]])  # (B=2, K=2, D=2)
    sims = part_similarities(text, image)
    expected = torch.tensor([[[1 / math.sqrt(2), 1.0]], [[-1.0, 0.0]]])  # (K, Bt, Bi)
    torch.testing.assert_close(sims, expected)


def test_commonality_absolute_is_mean_negative_similarity_clipped():
    sims, pids = hand_sims()
    common = commonality(sims, pids, "absolute")
    # negatives: (0,2), (1,2), (2,0), (2,1)
    part0 = (0.7 + 0.5 + 0.6 + 0.4) / 4  # 0.55
    part1 = max((0.1 - 0.3 + 0.2 + 0.0) / 4, 0.0)  # 0.0: a negative mean clips to 0
    torch.testing.assert_close(common, torch.tensor([part0, part1]))
    torch.testing.assert_close(negative_mean(sims, pids), torch.tensor([0.55, 0.0]))


def test_commonality_minmax_across_parts():
    sims, pids = hand_sims()
    third = sims[0].clone()
    third[pids.view(-1, 1) != pids.view(1, -1)] /= 2  # negatives' mean 0.275
    sims3 = torch.cat([sims, third[None]])
    # mu = (0.55, 0.0, 0.275): (mu - 0) / 0.55
    torch.testing.assert_close(commonality(sims3, pids), torch.tensor([1.0, 0.0, 0.5]))
    torch.testing.assert_close(commonality(sims3, pids, "minmax"), commonality(sims3, pids))
    # equally common parts: all 0, full margins (the fixed-margin loss)
    torch.testing.assert_close(commonality(torch.stack([sims[0], sims[0]]), pids), torch.zeros(2))
    with pytest.raises(ValueError, match="commonality mode"):
        commonality(sims3, pids, "softmax")


def test_commonality_is_detached_and_zero_without_negatives():
    sims = torch.rand(3, 2, 2, requires_grad=True)
    for mode in ("minmax", "absolute"):
        assert not commonality(sims, torch.tensor([1, 2]), mode).requires_grad
        torch.testing.assert_close(commonality(sims, torch.tensor([4, 4]), mode), torch.zeros(3))


def test_common_part_gets_a_smaller_margin():
    sims, pids = hand_sims()
    margins = part_margins(commonality(sims, pids, "absolute"), 0.4, "commonality")
    torch.testing.assert_close(margins, torch.tensor([0.4 * 0.45, 0.4]))
    assert margins[0] < margins[1]
    torch.testing.assert_close(part_margins(commonality(sims, pids), 0.4), torch.tensor([0.0, 0.4]))
    torch.testing.assert_close(part_margins(torch.tensor([0.9, 0.1]), 0.4, "fixed"), torch.tensor([0.4, 0.4]))
    with pytest.raises(ValueError, match="margin mode"):
        part_margins(torch.tensor([0.5]), 0.4, "adaptive")


def test_ranking_loss_hardest_on_hand_values():
    sims, pids = hand_sims()
    m = torch.tensor([0.3, 0.3])
    loss = part_ranking_loss(sims, pids, m, "hardest")
    # part 0, text anchors (rows): i=0 pos .9 hardest neg .7 -> .1; i=1 pos .9 neg .5 -> 0; i=2 pos .8 neg .6 -> .1
    # image anchors (columns): j=0 pos .9 neg .6 -> 0; j=1 pos .9 neg .4 -> 0; j=2 pos .8 neg .7 -> .2
    part0 = ((0.1 + 0.0 + 0.1) / 3 + (0.0 + 0.0 + 0.2) / 3) / 2
    # part 1, rows: .9 vs .1 -> 0; .8 vs -.3 -> 0; .6 vs .2 -> 0; columns: .9 vs .2 -> 0; .8 vs 0 -> 0; .6 vs .1 -> 0
    torch.testing.assert_close(loss, torch.tensor([part0, 0.0]))


def test_commonality_margin_shrinks_the_loss_of_a_common_part():
    sims, pids = hand_sims()
    fixed = part_ranking_loss(sims, pids, part_margins(commonality(sims, pids), 0.3, "fixed"))
    absolute = part_ranking_loss(sims, pids, part_margins(commonality(sims, pids, "absolute"), 0.3))
    # part 0's margin is 0.3 * 0.45 = 0.135: rows .9-.7 -> 0, .9-.5 -> 0, .8-.6 -> 0; columns .8 vs .7 -> .035
    torch.testing.assert_close(absolute[0], torch.tensor((0.035 / 3) / 2))
    assert absolute[0] < fixed[0]
    torch.testing.assert_close(absolute[1], fixed[1])  # the distinctive part keeps its full margin
    minmax = part_ranking_loss(sims, pids, part_margins(commonality(sims, pids), 0.3))
    torch.testing.assert_close(minmax, torch.tensor([0.0, float(fixed[1])]))  # the most common part: margin 0


def test_semihard_picks_the_closest_negative_below_the_positive():
    pids = torch.tensor([0, 1, 2])
    s = torch.tensor([[0.5, 0.6, 0.45],
                      [0.0, 1.0, 0.0],
                      [0.0, 0.0, 1.0]])[None]  # (1, 3, 3)
    m = torch.tensor([0.2])
    hardest = part_ranking_loss(s, pids, m, "hardest")
    semi = part_ranking_loss(s, pids, m, "semihard")
    # row 0: hardest .6 -> .3, semi-hard .45 (highest below .5) -> .15; other rows and all columns give 0
    # except column 0: pos .5, negatives 0, 0 -> 0; column 1: pos 1, negs .6, 0 -> 0; column 2: pos 1, negs .45, 0 -> 0
    torch.testing.assert_close(hardest, torch.tensor([0.3 / 3 / 2]))
    torch.testing.assert_close(semi, torch.tensor([0.15 / 3 / 2]))
    # no negative below the positive: semi-hard falls back to the hardest
    s2 = torch.tensor([[0.1, 0.6], [0.7, 0.9]])[None]
    torch.testing.assert_close(part_ranking_loss(s2, torch.tensor([0, 1]), m, "semihard"),
                               part_ranking_loss(s2, torch.tensor([0, 1]), m, "hardest"))
    with pytest.raises(ValueError, match="negative mode"):
        part_ranking_loss(s, pids, m, "easy")


def test_flattened_parts_score_the_mean_part_cosine():
    torch.manual_seed(0)
    a, b = torch.randn(5, 3, 8), torch.randn(6, 3, 8)
    mean_cos = part_similarities(a, b).mean(0)  # (5, 6)
    scorer = Scorer([View("parts", 3 * 8)])
    torch.testing.assert_close(scorer.similarity(flatten_parts(a), flatten_parts(b)), mean_cos)


def test_attention_masks_keep_the_fewest_patches_holding_the_mass():
    att = np.array([[0.1, 0.4, 0.3, 0.2]])
    np.testing.assert_array_equal(attention_masks(att, 0.5), [[False, True, True, False]])
    np.testing.assert_array_equal(attention_masks(att, 0.4), [[False, True, False, False]])


def test_query_part_iou_and_chance_on_hand_values():
    labels = np.array([[0, 1, 1, 2]])  # one image, 4 patches, classes 0..2
    att = np.array([[[0.0, 0.5, 0.5, 0.0],  # query 0 on part 1 exactly
                     [0.0, 0.0, 0.0, 1.0]]])  # query 1 on part 2 exactly
    iou, chance = query_part_iou(att, labels, 3, mass=0.5)
    # query 0 keeps patch 1 only (0.5 reaches the mass): IoU with part 1 = 1/2; query 1 keeps patch 3
    np.testing.assert_allclose(iou, [[0.0, 0.5, 0.0], [0.0, 0.0, 1.0]])
    # chance: 1 random patch vs a part of p patches out of 4: E|inter| = p/4, union = 1 + p - p/4
    np.testing.assert_allclose(chance[0], [0.25 / 1.75, 0.5 / 2.5, 0.25 / 1.75])


def test_word_attention_lift():
    ids = np.array([[1, 5, 6, 0], [1, 5, 7, 0]])
    att = np.array([[[0, 0.75, 0.25, 0]], [[0, 0.5, 0.5, 0]]])  # (B, K=1, L); 0 at special and padding
    lift = word_attention(att, ids, min_count=1)
    np.testing.assert_allclose(lift[5], [(1.5 + 1.0) / 2])
    np.testing.assert_allclose(lift[6], [0.5])
    assert set(word_attention(att, ids, min_count=2)) == {5}


def test_partlevel_row_and_config_switches():
    assert [head.name for head in method_heads("partlevel")] == ["sdm", "id", "part"]
    cfg = apply_overrides(get_profile("cpu"), ["model.method=partlevel", "model.part.margin_mode=fixed"])
    assert cfg.model.part.margin_mode == "fixed"
    for bad in ("model.part.margin_mode=adaptive", "model.part.negatives=easy", "model.part.num_parts=0",
                "model.part.heads=3", "model.part.commonality=softmax"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            apply_overrides(get_profile("cpu"), ["model.method=partlevel", bad])


def tiny_model(*overrides: str):
    from tireid_lite.models.tireid import build_model
    from tireid_lite.text.tokenizers import WordTokenizer

    cfg = apply_overrides(get_profile("cpu"), [
        "model.method=partlevel", "data.image_size=[32, 16]", "model.image_depth=1", "model.embed_dim=16",
        "model.image_width=16", "model.text_width=16", "data.max_length=10", *overrides])
    tokenizer = WordTokenizer.train(CAPTIONS, max_length=cfg.data.max_length)
    torch.manual_seed(0)
    return build_model(cfg, tokenizer, num_classes=3), tokenizer


CAPTIONS = ["a man in a red coat", "a woman with a blue bag", "a man with a red bag", "a woman in a coat"]


def tiny_batch(tokenizer):
    torch.manual_seed(1)
    ids = tokenizer(CAPTIONS)
    return {"images": torch.randn(4, 3, 32, 16), "caption_ids": ids, "pids": torch.tensor([0, 0, 1, 2])}


def test_part_head_trains_logs_commonality_and_scores_parts():
    model, tokenizer = tiny_model("model.part.num_parts=3")
    batch = tiny_batch(tokenizer)
    out = model(batch)
    assert {"sdm", "id", "part", "common_0", "common_1", "common_2", "negsim_2"} <= set(out)
    assert all(0.0 <= float(out[f"common_{k}"]) <= 1.0 for k in range(3))
    out["loss"].backward()
    assert model.heads["part"].decoder.queries.grad is not None
    feats = model.encode_images(batch["images"])
    assert feats.shape == (4, 16 + 3 * 16)
    assert [v.name for v in model.scorer.views] == ["global", "parts"]
    texts = model.encode_texts(batch["caption_ids"])
    sim = model.similarity(texts, feats)
    # by hand: (global cosine + mean part cosine) / 2
    g = torch.nn.functional.normalize(texts[:, :16], dim=-1) @ torch.nn.functional.normalize(feats[:, :16], dim=-1).t()
    p = texts[:, 16:] @ feats[:, 16:].t()
    torch.testing.assert_close(sim, (g + p) / 2)


def test_part_attention_masks_special_tokens_and_sums_to_one():
    model, tokenizer = tiny_model()
    batch = tiny_batch(tokenizer)
    head = model.heads["part"]
    model.eval()
    image_att = head.part_attention(model, images=batch["images"])  # (B, K, N)
    assert image_att.shape == (4, 4, model.image_tower.num_patches)
    torch.testing.assert_close(image_att.sum(-1), torch.ones(4, 4))
    text_att = head.part_attention(model, caption_ids=batch["caption_ids"])  # (B, K, L)
    blocked = head.word_padding(model, batch["caption_ids"])
    assert float(text_att[blocked.unsqueeze(1).expand_as(text_att)].abs().sum()) == 0.0
    with pytest.raises(ValueError, match="one of them"):
        head.part_attention(model)


def test_switches_turn_the_head_and_its_view_off():
    model, _ = tiny_model("model.part.loss_weight=0")
    assert "part" not in model.heads and [v.name for v in model.scorer.views] == ["global"]
    model, _ = tiny_model("model.part.embedding_weight=0")
    assert "part" in model.heads and [v.name for v in model.scorer.views] == ["global"]


def test_a_disconnected_decoder_loses_the_query_part_structure():
    """Parts that ignore the input (all attention uniform) give IoU at chance: the golden mechanism value."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.array([[0, 1, 1, 2, 2, 3]]), 20, axis=0)  # (B, N)
    found = np.zeros((20, 3, 6))
    found[:, 0, [1, 2]] = 0.5
    found[:, 1, [3, 4]] = 0.5
    found[:, 2, 5] = 1.0
    iou, chance = query_part_iou(found, labels, 4, mass=0.9)
    assert (iou - chance).max() > 0.5
    uniform = np.full((20, 3, 6), 1 / 6) + rng.uniform(0, 1e-3, (20, 3, 6))
    iou_u, chance_u = query_part_iou(uniform, labels, 4, mass=0.9)
    assert (iou_u - chance_u).max() < 0.05


def test_a_query_that_reads_every_word_alike_has_lift_one():
    """The golden's word-lift value: a decoder that ignores the words (uniform attention) gives exactly 1."""
    ids = np.array([[1, 5, 6, 7, 0], [1, 6, 5, 0, 0]])
    att = np.array([[[0, 1 / 3, 1 / 3, 1 / 3, 0]] * 2, [[0, 0.5, 0.5, 0, 0]] * 2])  # (B, K=2, L)
    for values in word_attention(att, ids, min_count=1).values():
        np.testing.assert_allclose(values, [1.0, 1.0])
