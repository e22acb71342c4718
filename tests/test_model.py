"""TIReIDModel: heads per method, loss composition, features, optimiser groups."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tireid_lite.config import apply_overrides, get_profile
from tireid_lite.losses.matching import sdm_loss
from tireid_lite.models.tireid import build_model
from tireid_lite.text.tokenizers import WordTokenizer

CAPTIONS = [
    "a man in a red shirt and black trousers with a blue backpack",
    "the woman wears a white dress and brown shoes",
    "a person with a yellow jacket, grey shorts and a black bag on the left shoulder",
    "a lady in a green coat carrying a red handbag",
]


def _setup(method: str, **overrides):
    cfg = apply_overrides(get_profile("cpu"), [
        f"model.method={method}", "data.image_size=[48, 16]", "model.image_width=32", "model.image_depth=1",
        "model.text_width=32", "model.text_depth=1", "model.embed_dim=32", "model.cross_depth=1",
        "data.max_length=24", *[f"{k}={v}" for k, v in overrides.items()],
    ])
    tok = WordTokenizer.train(CAPTIONS, max_length=cfg.data.max_length)
    torch.manual_seed(0)
    model = build_model(cfg, tok, num_classes=3)
    ids = tok(CAPTIONS)
    batch = {"images": torch.randn(4, 3, 48, 16), "caption_ids": ids, "pids": torch.tensor([0, 1, 2, 0])}
    if model.caption_hook is not None:
        rng = np.random.default_rng(0)
        drawn = [model.caption_hook(c, row, rng) for c, row in zip(CAPTIONS, ids)]
        batch["mlm_ids"] = torch.stack([d["mlm_ids"] for d in drawn])
        batch["mlm_labels"] = torch.stack([d["mlm_labels"] for d in drawn])
    return cfg, tok, model, batch


def test_baseline_has_sdm_and_id_only():
    _, _, model, batch = _setup("baseline")
    assert model.loss_names() == ["sdm", "id"] and model.caption_hook is None
    out = model(batch)
    assert set(out) >= {"loss", "sdm", "id", "id_acc"} and "mlm" not in out
    assert torch.isclose(out["loss"], out["sdm"] + out["id"])


def test_irra_adds_masked_language_modelling_and_weights_apply():
    _, _, model, batch = _setup("irra", **{"model.mlm_loss_weight": 0.5})
    assert model.loss_names() == ["sdm", "id", "mlm"]
    out = model(batch)
    assert torch.isclose(out["loss"], out["sdm"] + out["id"] + 0.5 * out["mlm"])
    # an untrained head is near uniform over the vocabulary
    assert abs(out["mlm"].item() - np.log(model.tokenizer.vocab_size)) < 1.0
    out["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)


def test_sdm_in_forward_uses_global_features():
    _, _, model, batch = _setup("baseline")
    with torch.no_grad():
        out = model(batch)
        img = model.encode_images(batch["images"])
        txt = model.encode_texts(batch["caption_ids"])
    expected = sdm_loss(img, txt, batch["pids"], 1.0 / 0.1)
    assert torch.allclose(out["sdm"], expected, atol=1e-6)


def test_similarity_is_cosine_text_by_image():
    _, _, model, _ = _setup("baseline")
    text, image = torch.tensor([[3.0, 4.0], [1.0, 0.0]]), torch.tensor([[0.0, 2.0], [1.0, 1.0], [2.0, 0.0]])
    sim = model.similarity(text, image)
    expected = torch.tensor([[0.8, 1.4 / 2**0.5, 0.6], [0.0, 1 / 2**0.5, 1.0]])
    assert sim.shape == (2, 3) and torch.allclose(sim, expected, atol=1e-6)


def test_parameter_groups_speed_up_new_modules_and_skip_decay_on_biases():
    _, _, model, _ = _setup("irra")
    groups = model.parameter_groups(lr=1e-3, weight_decay=0.01, new_module_lr_factor=5.0)
    by_id = {id(p): g for g in groups for p in g["params"]}
    assert by_id[id(model.heads["mlm"].predict.net[0].weight)]["lr"] == pytest.approx(5e-3)
    assert by_id[id(model.image_tower.proj.weight)]["lr"] == pytest.approx(1e-3)
    assert by_id[id(model.heads["id"].classifier.bias)]["weight_decay"] == 0.0
    assert by_id[id(model.heads["id"].classifier.weight)]["weight_decay"] == 0.01
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in model.parameters() if p.requires_grad)


def test_unknown_method_is_a_clear_error():
    from tireid_lite.errors import ConfigError

    with pytest.raises(ConfigError, match=r"config key 'model.method' is 'parts'; it must be one of baseline, irra"):
        _setup("parts")


@pytest.mark.parametrize("image_pool,text_pool", [("cls", "eot"), ("mean", "mean")])
def test_global_features_follow_the_pooling_settings(image_pool, text_pool):
    _, tok, model, batch = _setup("baseline", **{"model.image_pool": image_pool, "model.text_pool": text_pool})
    model.eval()
    with torch.no_grad():
        image_tokens = model.encode_image_tokens(batch["images"])  # (B, 1+N, D)
        text_tokens = model.encode_text_tokens(batch["caption_ids"])  # (B, L, D)
        images, texts = model.encode_images(batch["images"]), model.encode_texts(batch["caption_ids"])
    ids = batch["caption_ids"]
    for i in range(len(ids)):
        end = int((ids[i] == tok.eot_id).nonzero()[0])  # first end token
        if image_pool == "cls":
            want_image, want_text = image_tokens[i, 0], text_tokens[i, end]
        else:  # patches only; the caption from its start token to its end token
            want_image, want_text = image_tokens[i, 1:].mean(0), text_tokens[i, : end + 1].mean(0)
        assert torch.allclose(images[i], want_image, atol=1e-6)
        assert torch.allclose(texts[i], want_text, atol=1e-6)


def test_mlm_loss_equals_every_position_scored_through_the_full_cross_modal_module():
    """The training forward scores only the masked positions and runs the cross-modal module over
    the captions' used columns plus one zero column standing for the rest; the reference here
    runs the module over every column and scores every position. Same loss and gradients up to
    float rounding."""
    from tireid_lite.losses.mlm import masked_accuracy, mlm_loss
    from tireid_lite.models.text_tower import used_length

    _, tok, model, batch = _setup("irra", **{"data.max_length": 40})
    batch["mlm_labels"][:, 1] = batch["mlm_ids"][:, 1]  # every caption gets a label where it is not masked too
    head = model.heads["mlm"]
    mask = tok.attention_mask(batch["mlm_ids"])
    assert used_length(mask) < batch["mlm_ids"].shape[1] - 1  # the compact path is taken

    def reference():
        enc = model.encode_pair(batch)
        text_tokens = model.text_tower(batch["mlm_ids"], mask)  # (B, L, D)
        logits = head.predict(head.cross(text_tokens, enc.image_tokens)).float()  # (B, L, V), every column
        return mlm_loss(logits, batch["mlm_labels"]), masked_accuracy(logits, batch["mlm_labels"])

    def gradients(loss):
        model.zero_grad(set_to_none=True)
        loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    out = model(batch)
    expected, expected_acc = reference()
    torch.testing.assert_close(out["mlm"], expected, rtol=1e-5, atol=0)
    assert out["mlm_acc"] == expected_acc
    got_grads, expected_grads = gradients(out["mlm"]), gradients(reference()[0])
    assert got_grads.keys() == expected_grads.keys() and any("cross" in name for name in got_grads)
    for name, grad in expected_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
