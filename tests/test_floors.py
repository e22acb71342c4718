"""Mechanism floors: a probe minus its control must reach a margin; a head cut off from its input fails,
against the floors the notebooks' goldens hold (tests/golden/*.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from tireid_lite.data.synth.materials import PART_CLASSES
from tireid_lite.eval import head_probes
from tireid_lite.eval.floors import FLOORS, check_floors
from tireid_lite.eval.head_probes import mim_caption_probe, mlm_image_probe
from tireid_lite.eval.probes import detection_probe, partner_probe


def _floor(name: str, min_gap: float) -> dict:
    return {**{k: FLOORS[name][k] for k in ("metric", "control")}, "min_gap": min_gap, "why": FLOORS[name]["broken"]}


def test_check_floors_by_hand():
    floors = {"mlm": _floor("mlm_reads_the_image", 5.0)}
    assert check_floors({"mlm_colour_true": 30.0, "mlm_colour_shuffled": 20.0}, floors) == []
    assert check_floors({"mlm_colour_true": 22.0, "mlm_colour_shuffled": 20.0}, floors) == [
        ("floor mlm: mlm_colour_true 22.00 - mlm_colour_shuffled 20.00 = +2.00, below the floor +5.00 "
         "(the MLM head guesses colours as well with another person's image)")]
    assert check_floors({"mlm_colour_true": 22.0}, floors) == [
        "floor mlm: mlm_colour_shuffled not written (or not a finite number)"]
    assert check_floors({"mlm_colour_true": float("nan"), "mlm_colour_shuffled": 1.0}, floors)[0].endswith(
        "not written (or not a finite number)")
    assert check_floors({}, {"x": {"metric": "a", "control": "b", "min_gap": 0}}) == [
        "floor x: needs 'metric', 'control', 'min_gap' and a non-empty 'why'"]


def test_a_partitioner_cut_off_from_its_input_fails_the_detection_floor():
    rng = np.random.default_rng(0)
    noisy = rng.random(2000) < 0.2
    loss = rng.normal(0, 1, 2000) + 2.5 * noisy  # what a partitioner reads: noisy pairs have higher loss
    floors = {"detection": _floor("detection_beats_chance", 0.2)}
    reads = detection_probe(loss > 1.5, noisy)
    assert check_floors({f"detection_{k}": v for k, v in reads.items()}, floors) == []
    cut_off = rng.normal(0, 1, 2000)  # the same rule on a signal that no longer depends on the pair
    blind = detection_probe(cut_off > 1.5, noisy)
    assert abs(blind["f1"] - blind["random_f1"]) < 0.05  # a disconnected partitioner is the random flagger
    assert check_floors({f"detection_{k}": v for k, v in blind.items()}, floors)[0].startswith("floor detection:")


# --- the notebooks' golden floors: each holds at its golden values and fails when its mechanism is cut off ---

GOLDEN = Path(__file__).resolve().parent / "golden"


def _golden(notebook: str) -> dict:
    return json.loads((GOLDEN / f"{notebook}.json").read_text(encoding="utf-8"))


def _floors(notebook: str, *names: str) -> dict:
    floors = _golden(notebook)["floors"]
    assert set(names) <= set(floors), f"{notebook} golden lacks the floors {set(names) - set(floors)}"
    return {name: floors[name] for name in names}


def test_every_golden_floor_is_well_formed_and_holds_at_the_golden_values():
    seen = 0
    for path in sorted(GOLDEN.glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        floors = record.get("floors", {})
        values = {key: spec["value"] for key, spec in record["metrics"].items()}
        for name, floor in floors.items():
            assert floor["metric"] in values and floor["control"] in values, (path.name, name)
            assert float(floor["min_gap"]) > 0, (path.name, name)
        assert check_floors(values, floors) == [], path.name
        seen += len(floors)
    assert seen >= 5


def test_a_mim_head_cut_off_from_the_caption_fails_the_notebook_06_floor(tiny, monkeypatch):
    model, data = tiny
    head = model.heads["mim"]
    floors = _floors("06_bilma_semantic_mim", "mim_reads_the_caption")
    gallery = data.gallery("test")
    targets = head_probes._targets(data, "test", range(len(gallery)), head.patch_size)  # (G, N)
    by_image = {gallery[i]["images"].numpy().tobytes(): targets[i] for i in range(len(gallery))}

    def reads_caption(model_, images, patch_mask, captions, text_tokens=None):
        # names the true part with the caption, background without it
        has_caption = model.tokenizer.attention_mask(captions).sum(1) > 2  # the empty caption: start, end
        true = torch.stack([by_image[image.numpy().tobytes()] for image in images])  # (B, N)
        cls = torch.where(has_caption[:, None], true, torch.zeros_like(true))
        return torch.nn.functional.one_hot(cls, len(PART_CLASSES)).float()

    def metrics(out):
        return {"mim_with_caption": out["with_caption"], "mim_without_caption": out["without_caption"]}

    monkeypatch.setattr(head, "predictions", reads_caption)
    assert check_floors(metrics(mim_caption_probe(model, data)), floors) == []
    monkeypatch.undo()
    # the model's own head with its caption input cut: every caption replaced by the empty one
    real, empty = head.predictions, model.tokenizer("")

    def cut_off(model_, images, patch_mask, captions, text_tokens=None):
        return real(model_, images, patch_mask, empty.expand(len(images), -1))

    monkeypatch.setattr(head, "predictions", cut_off)
    out = mim_caption_probe(model, data)
    assert out["with_caption"] == out["without_caption"]
    failed = check_floors(metrics(out), floors)
    assert len(failed) == 1 and failed[0].startswith("floor mim_reads_the_caption:")


def test_an_mlm_head_cut_off_from_its_input_fails_the_notebook_02_floor(tiny, monkeypatch):
    model, data = tiny
    head, queries = model.heads["mlm"], data.queries("test")
    floors = _floors("02_baseline_irra", "mlm_beats_the_word_prior")
    vocab = head.predict(torch.zeros(1, 1, 32)).shape[-1]

    def reads_caption(model_, masked, image_tokens):
        # names each masked word from the caption it belongs to (found by its unmasked words)
        keep = masked != model.tokenizer.mask_token_id
        rows = [next(q for q in range(len(queries)) if torch.equal(queries.caption_ids[q][keep[b]], masked[b][keep[b]]))
                for b in range(len(masked))]
        return torch.nn.functional.one_hot(queries.caption_ids[rows], vocab).float()

    def metrics(out):
        return {"mlm_any_true": out["any"]["true"], "mlm_any_prior": out["any"]["prior"]}

    monkeypatch.setattr(head, "logits", reads_caption)
    assert check_floors(metrics(mlm_image_probe(model, data, classes=("any",))), floors) == []
    # cut off from caption and image: the same scores at every position, whatever it is shown
    bias = torch.randn(vocab, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(head, "logits", lambda model_, masked, image_tokens: bias.expand(*masked.shape, vocab))
    out = mlm_image_probe(model, data, classes=("any",))
    assert out["any"]["true"] <= out["any"]["prior"]
    failed = check_floors(metrics(out), floors)
    assert len(failed) == 1 and failed[0].startswith("floor mlm_beats_the_word_prior:")


def test_a_random_partitioner_fails_the_notebook_05_floors():
    floors = _floors("05_kpdm_trusted_consensus", "ccd_beats_chance_20", "ccd_beats_chance_50")
    rng = np.random.default_rng(1)
    values = {}
    for rate in (20, 50):
        noisy = rng.random(4000) < rate / 100
        loss = rng.normal(0, 1, 4000) + 3.0 * noisy  # what CCD reads: noisy pairs have a higher loss
        for name, signal in (("ccd", loss), ("blind", rng.normal(0, 1, 4000))):
            scores = detection_probe(signal > 1.0, noisy)
            values[f"F1_{name}_{rate}"], values[f"F1_random_{name}_{rate}"] = scores["f1"], scores["random_f1"]
    assert check_floors(values, floors) == []
    blind = {k.replace("blind", "ccd"): v for k, v in values.items() if "blind" in k}
    assert len(check_floors(blind, floors)) == 2


def test_a_similarity_that_ignores_the_caption_fails_the_notebook_02_partner_floor():
    floors = _floors("02_baseline_irra", "partners_beat_chance")
    rng = np.random.default_rng(0)
    pairs = [{"ids": [2 * i, 2 * i + 1], "attribute": "shoe_colour"} for i in range(100)]
    g_pids = np.repeat(np.arange(200), 2)  # two images each
    q_pids = np.repeat(np.arange(200), 2)  # two captions each
    captions = ["a person in red shoes"] * len(q_pids)
    own = (q_pids[:, None] == g_pids[None, :]).astype(float)
    for sim, passes in ((own + rng.normal(0, 0.3, own.shape), True), (rng.normal(0, 1, own.shape), False)):
        probe = partner_probe(sim, q_pids, g_pids, captions, pairs)
        values = {"partner_share_hard_negative": 100 * probe.share, "partner_chance": 100 * probe.chance}
        assert (check_floors(values, floors) == []) == passes, values


def test_a_mim_head_that_names_only_where_parts_usually_are_fails_the_notebook_06_and_10_prior_floors(tiny, monkeypatch):
    model, data = tiny
    head = model.heads["mim"]
    floors = {**_floors("06_bilma_semantic_mim", "mim_beats_the_prior"),
              **_floors("10_paper_tables", "bilma_balanced_mim_beats_the_prior")}
    gallery = data.gallery("test")
    targets = head_probes._targets(data, "test", range(len(gallery)), head.patch_size)  # (G, N)
    by_image = {gallery[i]["images"].numpy().tobytes(): targets[i] for i in range(len(gallery))}
    prior = head_probes.position_prior(data, "val", head.patch_size)  # (N,)

    def metrics(out):
        # as notebook 06 writes them for its balanced run, and notebook 10 for the bilma grid's balanced arm
        return {"mim_balanced_small_with_caption": out["small_with_caption"],
                "mim_balanced_small_prior": out["small_prior"],
                "bilma_both_balanced_mim_small_with_caption": out["small_with_caption"],
                "bilma_both_balanced_mim_small_prior": out["small_prior"]}

    def names_the_parts(model_, images, patch_mask, captions, text_tokens=None):
        true = torch.stack([by_image[image.numpy().tobytes()] for image in images])  # (B, N)
        return torch.nn.functional.one_hot(true, len(PART_CLASSES)).float()

    monkeypatch.setattr(head, "predictions", names_the_parts)
    reads = mim_caption_probe(model, data)
    assert reads["small_patches"] > 0 and check_floors(metrics(reads), floors) == []

    def names_the_prior(model_, images, patch_mask, captions, text_tokens=None):
        return torch.nn.functional.one_hot(prior.expand(len(images), -1), len(PART_CLASSES)).float()

    monkeypatch.setattr(head, "predictions", names_the_prior)
    blind = mim_caption_probe(model, data)
    assert blind["small_with_caption"] == blind["small_prior"]
    failed = check_floors(metrics(blind), floors)
    assert len(failed) == 2 and failed[0].startswith("floor bilma_balanced_mim_beats_the_prior:")
    assert failed[1].startswith("floor mim_beats_the_prior:")


def _oracle_head(model, data, name: str):
    """The model's masked-language head ``name`` and logits that name every masked word, but only with the
    caption's own image (``tests.test_probes._oracle_logits``)."""
    from tests.test_probes import _oracle_logits

    head = model.heads[name]
    return head, _oracle_logits(data, head.predict(torch.zeros(1, 1, 32)).shape[-1])


def test_a_kpdm_head_cut_off_from_the_image_fails_the_notebook_03_floor(tiny_kpdm, monkeypatch):
    model, data = tiny_kpdm
    head, oracle = _oracle_head(model, data, "kpdm_mlm")
    floors = _floors("03_kpdm_key_phrase_masking", "kpdm_mlm_reads_the_image")

    def metrics(out):
        return {"mlm_colour_true_phrase": out["colour"]["true"], "mlm_colour_shuffled_phrase": out["colour"]["shuffled"]}

    monkeypatch.setattr(head, "image_context", lambda model_, images: images)  # the oracle reads the image itself
    monkeypatch.setattr(head, "logits", oracle)
    assert check_floors(metrics(mlm_image_probe(model, data, classes=("colour",))), floors) == []
    monkeypatch.setattr(head, "image_context", lambda model_, images: torch.zeros_like(images))  # the image cut off
    blind = mlm_image_probe(model, data, classes=("colour",))
    assert blind["colour"]["gap"] == 0.0
    failed = check_floors(metrics(blind), floors)
    assert len(failed) == 1 and failed[0].startswith("floor kpdm_mlm_reads_the_image:")


def test_irra_heads_cut_off_from_the_image_fail_the_notebook_02_and_10_seeds_floors(tiny, monkeypatch):
    model, data = tiny
    head, oracle = _oracle_head(model, data, "mlm")
    floors = {**_floors("02_baseline_irra", "mlm_reads_colours_over_seeds"),
              **_floors("10_paper_tables", "irra_mlm_reads_the_image")}

    def seeds_metrics(probes):
        # as notebook 02 writes them (and notebook 10 for the irra grid's cells, the same models): each seed's
        # accuracy on every test colour word, averaged over the seeds
        means = {k: float(np.mean([p["colour"][k] for p in probes])) for k in ("true", "shuffled")}
        return {**{f"mlm_colour_{k}_seeds": v for k, v in means.items()},
                **{f"irra_mlm_colour_{k}": v for k, v in means.items()}}

    def probe():
        return mlm_image_probe(model, data, classes=("colour",), max_captions=None, keep_hits=True)

    monkeypatch.setattr(head, "logits", oracle)
    monkeypatch.setattr(model, "encode_image_tokens", lambda images: images)  # the oracle reads the image itself
    reads = probe()
    monkeypatch.setattr(model, "encode_image_tokens", lambda images: torch.zeros_like(images))  # the image cut off
    blind = probe()
    assert check_floors(seeds_metrics([reads, blind]), floors) == []  # one seed reading is enough for the mean
    failed = check_floors(seeds_metrics([blind, blind]), floors)
    assert len(failed) == 2 and failed[0].startswith("floor irra_mlm_reads_the_image:")
    assert failed[1].startswith("floor mlm_reads_colours_over_seeds:")
