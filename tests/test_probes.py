"""Mechanism probes: Wilson intervals, partners, rare colours, noise detection, and the head probes on a tiny model."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from tireid_lite.eval.colour_matching import COLOUR_WORDS
from tireid_lite.eval.floors import FLOORS, check_floors
from tireid_lite.eval.head_probes import (
    language_head,
    mim_caption_probe,
    mlm_image_probe,
    pooled_gap,
    position_prior,
    word_ids,
)
from tireid_lite.eval.probes import (
    caption_tells,
    colour_counts,
    detection_from_counts,
    detection_from_record,
    detection_probe,
    pair_attribute,
    partner_probe,
    random_flagger,
    rare_colour_probe,
    rare_colours_from_counts,
    split_pairs,
    wilson_interval,
)


def test_wilson_interval_matches_the_hand_computed_bounds():
    # 8 of 10, z = 1.959964: centre 0.99208, half 0.31362, scale 1.38415 -> [0.4902, 0.9433]
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(0, 20)
    assert low == pytest.approx(0.0, abs=1e-12) and 0.0 < high < 0.2
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(3, 2)


def test_partner_probe_counts_only_captions_naming_the_difference():
    # identities 1 and 2 are partners (shoe colour); 3 has no partner
    g_pids = [1, 1, 2, 3]
    q_pids = [1, 1, 2, 3]
    captions = ["a man in red shoes", "a man in a coat", "a woman in blue sneakers", "red shoes"]
    sim = np.array([[0.9, 0.1, 0.5, 0.0],  # own 0.9 > partner 0.5: win
                    [0.1, 0.1, 0.9, 0.0],  # does not name shoes: not counted
                    [0.8, 0.2, 0.3, 0.0],  # own 0.3 < partner 0.8: loss
                    [0.0, 0.0, 0.0, 1.0]])  # no partner
    pairs = [{"ids": [1, 2], "split": "test", "attribute": "shoe_colour"}]
    probe = partner_probe(sim, q_pids, g_pids, captions, pairs)
    assert (probe.wins, probe.trials, probe.chance) == (1, 2, 0.5)
    assert (probe.low, probe.high) == wilson_interval(1, 2)
    assert not probe.above_chance and "not distinguishable" in probe.verdict
    assert partner_probe(sim, q_pids, g_pids, captions, []).trials == 0


def test_split_pairs_says_when_a_kind_of_pair_is_not_marked():
    attributes = {"hard_negative_pairs": [{"ids": [1, 2], "split": "test", "attribute": "hat"},
                                          {"ids": [5, 6], "split": "val", "attribute": "hat"}]}
    assert split_pairs(attributes, "hard_negative_pairs", "test") == [attributes["hard_negative_pairs"][0]]
    assert split_pairs(attributes, "colour_swap_pairs", "test") is None
    assert caption_tells("she wears a beanie", "hat") and not caption_tells("she wears a coat", "hat")
    assert caption_tells("a red coat and blue trousers", "some_kind")  # any colour word for other kinds
    swap = {"ids": [3, 4], "split": "test", "garments": ["top", "bottom"], "colours": ["teal", "dark olive"]}
    assert pair_attribute(swap) == "colour_swap:teal,dark olive"
    assert caption_tells("trousers in dark olive", pair_attribute(swap))
    assert not caption_tells("a red coat", pair_attribute(swap)) and not caption_tells("olive", pair_attribute(swap))


def test_rare_colours_come_from_counts_with_synonyms_merged():
    counts = colour_counts(["a black coat, black shoes", "a gray top", "grey trousers", "a purple bag", "black"])
    assert counts["black"] == 3 and counts["grey"] == 2 and counts["purple"] == 1 and counts["red"] == 0
    assert rare_colours_from_counts(counts, share=0.2) == {"purple"}  # 1 of 6 mentions <= 20%
    probe = rare_colour_probe([100, 0, 0, 100], ["a purple coat", "a black coat", "grey", "purple shoes"],
                              train_captions=["a black coat, black shoes", "a gray top", "grey", "a purple bag",
                                              "black"], share=0.2)
    assert (probe.r1_rare, probe.r1_other, probe.rare_queries, probe.source) == (100.0, 0.0, 2, "training counts")
    marked = rare_colour_probe([0, 100], ["a teal coat", "a black coat"], attributes={"rare_colours": ["teal"]})
    assert (marked.r1_rare, marked.source) == (0.0, "attributes.json")
    records = {"rare_colours": [{"colour": "teal", "words": ["sea green"], "rgb": [0, 128, 128]}]}
    marked = rare_colour_probe([0, 100, 50], ["a teal coat", "a sea green bag", "green"], attributes=records)
    assert (marked.r1_rare, marked.rare_queries, marked.r1_other) == (50.0, 2, 50.0)
    with pytest.raises(ValueError, match="rare_colours"):
        rare_colour_probe([0], ["a"], attributes={})


def test_random_flagger_expectations_equal_the_average_over_every_subset():
    noisy = np.array([1, 1, 0, 0, 0, 1, 0], dtype=bool)
    for flagged in (1, 3, 5):
        scores = [detection_probe(np.isin(np.arange(7), subset), noisy)
                  for subset in itertools.combinations(range(7), flagged)]
        expected = random_flagger(flagged, int(noisy.sum()), 7)
        for key in ("precision", "recall", "f1"):
            assert np.mean([s[key] for s in scores]) == pytest.approx(expected[key])


def test_detection_probe_reports_f1_over_the_random_flagger():
    out = detection_from_counts(tp=30, flagged=40, noisy=50, total=200)
    assert out["precision"] == 0.75 and out["recall"] == 0.6 and out["f1"] == pytest.approx(60 / 90)
    assert out["random_f1"] == pytest.approx(2 * 40 * 50 / 200 / 90)
    assert out["f1_over_random"] == pytest.approx(out["f1"] - out["random_f1"])
    with pytest.raises(ValueError, match="tp"):
        detection_from_counts(tp=41, flagged=40, noisy=50, total=200)


def test_detection_from_a_training_record_uses_its_truth_or_recovers_it():
    record = {"partition_precision": 0.75, "partition_recall": 0.6, "partition_clean": 150, "partition_noisy": 40,
              "partition_uncertain": 10, "partition_true_noisy": 50}
    assert detection_from_record(record) == detection_from_counts(tp=30, flagged=40, noisy=50, total=200)
    older = {k: v for k, v in record.items() if k != "partition_true_noisy"}
    assert detection_from_record(older) == detection_from_record(record)  # noisy = tp / recall
    silent = {**older, "partition_precision": 0.0, "partition_recall": 0.0}
    with pytest.raises(ValueError, match="pass noisy="):
        detection_from_record(silent)
    assert detection_from_record(silent, noisy=50)["random_f1"] == pytest.approx(2 * 40 * 50 / 200 / 90)
    with pytest.raises(ValueError, match="not a partition record"):
        detection_from_record({"epoch": 1})


def _oracle_logits(data, vocab):
    """An MLM head that names every masked word, but only when it is shown the caption's own image."""
    queries, gallery = data.queries("test"), data.gallery("test")

    def logits(model, masked, image_tokens):
        out = torch.nn.functional.one_hot(masked, vocab).float()  # wrong: repeats the mask token
        for b in range(len(masked)):
            keep = masked[b] != model.tokenizer.mask_token_id
            for q in range(len(queries)):
                ids = queries.caption_ids[q]
                if torch.equal(ids[keep], masked[b][keep]) and torch.equal(
                        gallery[int(queries.image_ids[q])]["images"], image_tokens[b]):
                    out[b] = torch.nn.functional.one_hot(ids, vocab).float()
        return out

    return logits


def test_mlm_probe_separates_a_head_that_reads_the_image_from_one_that_does_not(tiny, monkeypatch):
    model, data = tiny
    head = model.heads["mlm"]
    vocab = head.predict(torch.zeros(1, 1, 32)).shape[-1]
    assert word_ids(model.tokenizer, ["black", "notaword"]) and len(word_ids(model.tokenizer, ["notaword"])) == 0
    monkeypatch.setattr(model, "encode_image_tokens", lambda images: images)
    monkeypatch.setattr(head, "logits", _oracle_logits(data, vocab))
    reads = mlm_image_probe(model, data, classes=("colour",))["colour"]
    assert reads["true"] == 100.0 and reads["shuffled"] == 0.0 and reads["excludes_zero"]
    monkeypatch.undo()
    # disconnected: the head sees the same (zero) image whatever the caption's image is
    monkeypatch.setattr(model, "encode_image_tokens", lambda images: torch.zeros(len(images), 5, 32))
    blind = mlm_image_probe(model, data, classes=("colour",))["colour"]
    assert blind["true"] == blind["shuffled"] and blind["gap"] == 0.0 and not blind["excludes_zero"]
    assert blind["words"] == reads["words"] > 0
    # the regression floor (true - shuffled >= 5 points) holds for the head that reads the image and fails
    # for the same head cut off from it
    floor = {"mlm": {**{k: FLOORS["mlm_reads_the_image"][k] for k in ("metric", "control")}, "min_gap": 5.0,
                     "why": FLOORS["mlm_reads_the_image"]["broken"]}}
    assert check_floors({"mlm_colour_true": reads["true"], "mlm_colour_shuffled": reads["shuffled"]}, floor) == []
    failed = check_floors({"mlm_colour_true": blind["true"], "mlm_colour_shuffled": blind["shuffled"]}, floor)
    assert len(failed) == 1 and "below the floor +5.00" in failed[0]


def test_pooled_gap_averages_seeds_word_by_word_and_refuses_different_words(tiny, monkeypatch):
    model, data = tiny
    head = model.heads["mlm"]
    vocab = head.predict(torch.zeros(1, 1, 32)).shape[-1]
    monkeypatch.setattr(model, "encode_image_tokens", lambda images: images)
    monkeypatch.setattr(head, "logits", _oracle_logits(data, vocab))
    reads = mlm_image_probe(model, data, classes=("colour",), max_captions=None, keep_hits=True)
    colour_ids = torch.tensor(sorted(word_ids(model.tokenizer, COLOUR_WORDS)))
    assert reads["colour"]["captions"] == int(torch.isin(data.queries("test").caption_ids, colour_ids).any(1).sum())
    monkeypatch.setattr(model, "encode_image_tokens", lambda images: torch.zeros(len(images), 5, 32))
    blind = mlm_image_probe(model, data, classes=("colour",), max_captions=None, keep_hits=True)
    pooled = pooled_gap([reads, blind])  # one seed reads the image (gap 100), the other is cut off (gap 0)
    assert pooled.diff == pytest.approx(50.0) and pooled.seed_diffs == (100.0, 0.0) and pooled.excludes_zero
    assert pooled.queries == reads["colour"]["words"]
    assert not pooled_gap([blind, blind]).excludes_zero
    fewer = mlm_image_probe(model, data, classes=("colour",), max_captions=reads["colour"]["captions"] - 1, keep_hits=True)
    with pytest.raises(ValueError, match="different 'colour' words"):
        pooled_gap([reads, fewer])
    with pytest.raises(ValueError, match="keep_hits=True"):
        pooled_gap([mlm_image_probe(model, data, classes=("colour",))])


def test_mim_probe_prior_and_caption_gain(tiny, monkeypatch):
    from tireid_lite.eval import head_probes

    model, data = tiny
    head = model.heads["mim"]
    targets = head_probes._targets(data, "val", range(len(data.gallery("val"))), head.patch_size)  # (M, N)
    prior = position_prior(data, "val", head.patch_size)
    expected = [int(np.bincount(targets[:, n].numpy(), minlength=10).argmax()) for n in range(targets.shape[1])]
    assert prior.tolist() == expected
    out = mim_caption_probe(model, data, batch_size=3)
    assert out["patches"] == len(data.gallery("test")) * head_probes.random_patch_mask(
        1, model.image_tower.num_patches, head.ratio).sum().item()
    assert 0.0 <= out["prior"] <= 100.0 and set(out["per_class"]) >= {"hat", "shoes"}

    def caption_only(model_, images, patch_mask, captions, text_tokens=None):
        # names class 0 without a caption and the prior's class with one: a head that uses the caption
        has_caption = model.tokenizer.attention_mask(captions).sum(1) > 2  # the empty caption: start, end
        cls = torch.where(has_caption[:, None], prior[None, :], torch.zeros_like(prior)[None, :])
        return torch.nn.functional.one_hot(cls, 10).float()

    monkeypatch.setattr(head, "predictions", caption_only)
    out = mim_caption_probe(model, data, batch_size=3)
    assert out["with_caption"] == out["prior"] and out["caption_gain"] == out["with_caption"] - out["without_caption"]
    # a head that only knows where parts usually are does not clear the MIM floor
    floor = {"mim": {**{k: FLOORS["mim_beats_the_prior"][k] for k in ("metric", "control")}, "min_gap": 1.0,
                     "why": FLOORS["mim_beats_the_prior"]["broken"]}}
    metrics = {f"mim_{k}": v for k, v in out.items() if k.startswith("small_")}
    assert check_floors(metrics, floor) and "below the floor" in check_floors(metrics, floor)[0]


def test_mlm_probe_reads_kpdm_heads_through_the_patches_they_keep(tiny_kpdm, monkeypatch):
    model, data = tiny_kpdm
    head = language_head(model)
    assert head is model.heads["kpdm_mlm"]
    images = torch.stack([data.gallery("test")[i]["images"] for i in range(3)])
    patches = model.encode_image_tokens(images).shape[1] - 1
    context = head.image_context(model, images)
    assert context.shape[1] == 1 + patches // 2  # the class token and the kept half of the patches
    out = mlm_image_probe(model, data, classes=("colour",))["colour"]
    assert out["words"] > 0 and 0.0 <= out["true"] <= 100.0
    # a head cut off from the image: the same context whatever the image, so no gap at all
    monkeypatch.setattr(head, "image_context", lambda model, images: torch.zeros(len(images), 3, context.shape[-1]))
    blind = mlm_image_probe(model, data, classes=("colour",))["colour"]
    assert blind["true"] == blind["shuffled"] and blind["gap"] == 0.0


def test_mlm_probe_names_what_a_model_without_a_language_head_lacks(tiny):
    model, _ = tiny

    class NoLanguage:
        heads = {"sdm": object()}
        method = "baseline"

    with pytest.raises(ValueError, match="needs a masked-language head.*'baseline'"):
        language_head(NoLanguage())
    assert language_head(model) is model.heads["mlm"]
