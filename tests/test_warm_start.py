"""The cpu profile's attribute-pretrained towers: made once, cached, loaded, and kept apart from the course's data."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tireid_lite.config import apply_overrides, get_profile
from tireid_lite.data.build import build_data, dataset_root
from tireid_lite.errors import ConfigError, TIReIDError
from tireid_lite.train import warm_start as ws_mod
from tireid_lite.train.trainer import Trainer
from tireid_lite.train.warm_start import (
    FIELDS,
    SEED_OFFSET,
    AttributeTargets,
    apply_warm_start,
    attribute_loss,
    ensure_warm_start,
    load_warm_start,
    pretrain_config,
    warm_start_key,
    warm_start_path,
)

TINY = [
    "data.dataset=synth", "data.synth_ids_train=8", "data.synth_ids_val=3", "data.synth_ids_test=3",
    "data.synth_images_per_id=2", "data.image_size=[48,16]", "data.max_length=48",
    "model.method=baseline", "model.image_width=32", "model.image_depth=1", "model.image_heads=2",
    "model.text_width=32", "model.text_depth=1", "model.text_heads=2", "model.embed_dim=32",
    "model.warm_start_steps=6", "train.batch_size=8", "train.num_epochs=1", "train.threads=1", "train.epoch_fraction=1",
]


@pytest.fixture()
def cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("TIREID_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TIREID_PROGRESS", "0")
    threads = torch.get_num_threads()
    yield apply_overrides(get_profile("cpu"), TINY)
    torch.set_num_threads(threads)


def test_the_pretraining_draw_is_another_synthpedes(cfg):
    pre = pretrain_config(cfg)
    assert pre.data.synth_seed == cfg.data.synth_seed + SEED_OFFSET
    assert pre.data.flip_p == 0.0 and pre.data.noise_rate == 0.0 and pre.model.warm_start == "none"
    course, other = dataset_root(cfg), dataset_root(pre)
    assert course != other
    captions = lambda root: {c for e in json.loads((root / "reid_raw.json").read_text()) for c in e["captions"]}
    assert not captions(course) & captions(other)  # no caption of the course's splits is seen


def test_attribute_targets_follow_attributes_json(cfg):
    root = dataset_root(cfg)
    record = json.loads((root / "attributes.json").read_text())
    targets = AttributeTargets(root)
    image = record["images"][5]
    person = next(d for d in record["identities"] if d["id"] == image["id"])
    row = targets([image["file_path"]])[0]
    assert [targets.fields[f][int(k)] for f, k in zip(FIELDS, row)] == [str(person[f]) for f in FIELDS]


def test_attribute_loss_is_the_mean_cross_entropy_over_attributes():
    logits = [torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([[0.0, 0.0, 0.0]])]
    targets = torch.tensor([[1, 2]])
    # CE_1 = -log(3/4); CE_2 = log 3
    assert attribute_loss(logits, targets).item() == pytest.approx((-math.log(0.75) + math.log(3.0)) / 2)


def test_made_once_then_loaded_and_global_random_state_untouched(cfg, monkeypatch):
    data = build_data(cfg)
    torch.manual_seed(123)
    ws = ensure_warm_start(cfg, data.tokenizer)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after)  # the pretraining ran on a forked generator
    assert warm_start_path(cfg, data.tokenizer).is_file()
    assert [row["step"] for row in ws.log] == [6]
    assert set(ws.val_accuracy) == {"image", "text"} and set(ws.val_accuracy["image"]) == set(FIELDS)

    monkeypatch.setattr(ws_mod, "pretrain_towers", lambda *a: pytest.fail("pretrained again instead of loading"))
    again = ensure_warm_start(cfg, data.tokenizer)
    for name in ws.image_tower:
        assert torch.equal(ws.image_tower[name], again.image_tower[name])


def test_the_key_follows_what_the_towers_depend_on_only(cfg):
    tokenizer = build_data(cfg, train=False).tokenizer
    key = warm_start_key(cfg, tokenizer)
    same = ["model.method=irra", "train.seed=3", "data.noise_rate=0.2", "train.num_epochs=4"]
    assert all(warm_start_key(apply_overrides(get_profile("cpu"), [*TINY, s]), tokenizer) == key for s in same)
    other = ["model.warm_start_steps=7", "model.image_width=16", "train.lr=0.0005", "data.synth_seed=1",
             "data.synth_preset=detail", "data.synth_dark_fraction=0.2"]
    assert all(warm_start_key(apply_overrides(get_profile("cpu"), [*TINY, s]), tokenizer) != key for s in other)


def test_a_run_starts_from_the_cached_towers_and_resume_does_not_reload_them(cfg, tmp_path):
    trainer = Trainer(cfg, tmp_path / "run")
    ws = trainer.warm_start
    assert ws is not None
    for name, value in trainer.raw_model.image_tower.state_dict().items():
        assert torch.equal(value, ws.image_tower[name]), name
    for name, value in trainer.raw_model.text_tower.state_dict().items():
        assert torch.equal(value, ws.text_tower[name]), name
    trainer.fit()
    resumed = Trainer(cfg, tmp_path / "run", resume=True)
    assert resumed.warm_start is None  # the checkpoint's weights, not the pretrained ones


def test_without_warm_start_the_towers_are_not_the_pretrained_ones(cfg, tmp_path):
    ws = ensure_warm_start(cfg, build_data(cfg, train=False).tokenizer)
    trainer = Trainer(apply_overrides(cfg, ["model.warm_start=none"]), tmp_path / "run")
    assert trainer.warm_start is None
    name, value = next(iter(trainer.raw_model.image_tower.state_dict().items()))
    assert not torch.equal(value, ws.image_tower[name])


def test_towers_of_another_shape_are_refused_with_the_reason(cfg):
    data = build_data(cfg, train=False)
    ws = ensure_warm_start(cfg, data.tokenizer)
    from tireid_lite.models import build_model

    wider = build_model(apply_overrides(cfg, ["model.image_width=64"]), data.tokenizer, data.num_classes)
    with pytest.raises(TIReIDError, match="pretrained image tower .* does not fit this model"):
        apply_warm_start(wider, ws)


def test_a_damaged_file_is_one_error_naming_it(tmp_path):
    bad = tmp_path / "towers-x.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(TIReIDError, match=r"towers-x\.pt.*delete it"):
        load_warm_start(bad)


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["data.dataset=cuhk-pedes", "data.root=/x"], "model.warm_start.*none unless data.dataset is synth"),
        (["model.pretrained_dir=/clip"], "model.warm_start.*none when model.pretrained_dir"),
        (["model.warm_start=clip"], "model.warm_start.*attributes or none"),
        (["model.warm_start_steps=0"], "model.warm_start_steps.*at least 1"),
    ],
)
def test_bad_settings_name_the_key(items, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(get_profile("cpu"), items)


def test_warm_start_works_for_a_synthpedes_folder_of_ones_own(tmp_path, monkeypatch, capsys):
    """``tireid synth --out D`` then ``tireid train --profile cpu --data-root D``: the towers pretrain on the
    kit's own draw, made with the folder's recorded parameters and seed + SEED_OFFSET."""
    from tireid_lite.cli import main

    monkeypatch.setenv("TIREID_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TIREID_PROGRESS", "0")
    threads = torch.get_num_threads()
    own = tmp_path / "mine"
    assert main(["synth", "--out", str(own), "--ids-train", "8", "--ids-val", "3", "--ids-test", "3",
                 "--images-per-id", "2", "--size", "48x16", "--seed", "5", "--clutter", "0.2"]) == 0
    sets = [item for key in TINY if not key.startswith(("data.synth_", "data.dataset"))
            for item in ("--set", key)]
    code = main(["train", "--profile", "cpu", "--data-root", str(own), "--out", str(tmp_path / "run"), *sets])
    torch.set_num_threads(threads)
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "pretraining the towers" in out.out
    draws = [json.loads(p.read_text())["params"] for p in (tmp_path / "cache" / "synth").glob("*/attributes.json")]
    assert [(d["seed"], d["ids_train"], d["knobs"]["clutter"]) for d in draws] == [(5 + SEED_OFFSET, 8, 0.2)]


def test_warm_start_on_real_data_names_the_keys_to_set():
    cfg = apply_overrides(get_profile("cpu"), ["model.warm_start=none", "data.dataset=cuhk-pedes"])
    cfg.model.warm_start = "attributes"  # as a hand-built config could hold
    with pytest.raises(ConfigError, match=r"set model.warm_start=none .*model.pretrained_dir"):
        pretrain_config(cfg)


def test_warm_start_mlm_pretrains_the_mlm_head_and_runs_start_from_it(cfg, tmp_path):
    from tireid_lite.config import NEUTRAL_KEYS, identity_dict

    tokenizer = build_data(cfg, train=False).tokenizer
    assert NEUTRAL_KEYS["model.warm_start_mlm"] is False  # off: cache keys of earlier runs stay valid
    assert "warm_start_mlm" not in identity_dict(cfg)["model"]
    made = lambda *items: apply_overrides(get_profile("cpu"), [*TINY, "model.method=irra", "model.cross_heads=2", *items])
    with_mlm = made("model.warm_start_mlm=true")
    assert warm_start_key(with_mlm, tokenizer) != warm_start_key(made(), tokenizer) == warm_start_key(cfg, tokenizer)
    ws = ensure_warm_start(with_mlm, tokenizer)
    assert ws.mlm_head is not None and any(k.startswith("cross.") for k in ws.mlm_head)
    assert "mlm_acc" in ws.log[-1]
    trainer = Trainer(with_mlm, tmp_path / "run")
    for name, value in trainer.raw_model.heads["mlm"].state_dict().items():
        assert torch.equal(value, ws.mlm_head[name]), name
    baseline = Trainer(made("model.warm_start_mlm=true", "model.method=baseline"), tmp_path / "base")
    assert "mlm" not in baseline.raw_model.heads  # a method without the head takes the towers alone
    assert ensure_warm_start(made(), tokenizer).mlm_head is None
    with pytest.raises(ConfigError, match="model.warm_start_mlm.*attributes"):
        made("model.warm_start_mlm=true", "model.warm_start=none")
