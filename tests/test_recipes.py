"""The papers' recipes (tireid_lite/recipes/*.yaml), the optimiser keys they set, and the SemMIM warning.

Each recipe is read the way `tireid train --recipe NAME` reads it and its values
are compared with the values traced to the authors' code (IRRA:
github.com/anosorae/IRRA; RDE: github.com/QinYang79/RDE) or paper (PAPERS.md).
The cpu profile's optimiser keys must keep the kit's earlier behaviour exactly.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import torch

from tireid_lite.config import (
    RECIPES_DIR,
    apply_overrides,
    get_key,
    get_profile,
    load_recipe,
    module_lrs,
    no_decay_rules,
    recipe_names,
)
from tireid_lite.errors import ConfigError

# Values traced to the authors' code, shared by IRRA and RDE (RDE is IRRA's code base).
IRRA_CODE = {
    "data.image_size": (384, 128),  # options.py --img_size
    "data.max_length": 77,  # --text_length
    "data.tokenizer": "clip",
    "data.flip_p": 0.5,  # datasets/build.py
    "data.pad": 10,
    "data.erasing_p": 0.5,
    "model.patch_size": 16,  # --stride_size
    "model.text_kind": "clip",
    "model.image_pool": "cls",
    "model.text_pool": "eot",
    "model.embed_dim": 512,
    "train.num_epochs": 60,  # --num_epoch
    "train.batch_size": 64,  # run_*.sh --batch_size 64
    "train.lr": 1e-5,  # --lr
    "train.weight_decay": 4e-5,  # --weight_decay
    "train.bias_lr_factor": 2.0,  # --bias_lr_factor
    "train.no_decay": "bias",  # --weight_decay_bias 0, nothing else exempt
    "train.adam_eps": 1e-3,  # solver/build.py
    "train.grad_clip": 0.0,  # no clipping in processor.py
    "train.warmup_epochs": 5.0,  # --warmup_epochs
    "train.new_module_lr_factor": 5.0,  # --lr_factor
}
EXPECTED = {
    "irra": {**IRRA_CODE, "model.method": "irra", "model.temperature": 0.02, "model.cross_depth": 4,
             "model.cross_heads": 8, "model.mlm_prob": 0.15, "model.id_loss_weight": 1.0,
             "model.mlm_loss_weight": 1.0},
    "rde": {**IRRA_CODE, "model.method": "kpdm", "model.id_loss_weight": 0.0, "model.mlm_loss_weight": 0.0,
            "model.kpdm.select_ratio": 0.3, "model.kpdm.tal_margin": 0.1, "model.kpdm.tal_tau": 0.015,
            "model.kpdm.importance_layers": 1, "model.kpdm.tse": True, "train.module_lr": "_tse.=0.001",
            "model.kpdm.tse_width": 1024, "model.kpdm.tse_batchnorm": True, "data.text_aug": 0.2,
            "train.partitioner": "ccd", "train.partition_warmup_epochs": 0},
    "kpdm": {**IRRA_CODE, "model.method": "kpdm", "model.kpdm.select_ratio": 0.5, "model.kpdm.tal_margin": 0.1,
             "model.kpdm.tal_tau": 0.015, "model.kpdm.mask_strategy": "phrase", "train.module_lr": "_tse.=0.001",
             "train.partitioner": "tcp"},
    "bilma": {**IRRA_CODE, "model.method": "bilma", "model.bilma.mim_ratio": 0.15, "model.bilma.mim_loss_weight": 1.0,
              "model.bilma.mim_target": "semantic", "model.mlm_prob": 0.15, "model.cross_depth": 4},
    "cada": {**IRRA_CODE, "model.method": "cada", "model.temperature": 0.02, "model.cada.itm_weight": 1.0,
             "model.cada.ara_weight": 0.1, "model.cada.ara_word_prob": 0.4, "model.cada.ara_phrase_prob": 0.8,
             "model.cada.rerank_k": 32, "model.cada.local_groups": 2, "model.cada.gate": False},
}
REPORTED_R1 = {  # the papers' CUHK-PEDES R@1, which each recipe's header must quote
    "irra": "73.38", "rde": "75.94", "kpdm": "75.97", "bilma": "74.03", "cada": "78.37",
}


def test_the_kit_ships_one_recipe_per_paper():
    assert recipe_names() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recipe_values_match_the_traced_ones(name):
    cfg = load_recipe(name)
    assert cfg.profile == "gpu"
    for key, expected in EXPECTED[name].items():
        value = get_key(cfg, key)
        if isinstance(expected, float):
            assert value == pytest.approx(expected), (name, key, value)
        else:
            assert value == expected, (name, key, value)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_recipe_value_carries_its_source(name):
    """Every key line of a recipe has a comment (its source, or "kit:" where the kit chooses), except
    the CLIP widths, which the checkpoint itself fixes; the header quotes the paper's R@1."""
    text = (RECIPES_DIR / f"{name}.yaml").read_text()
    assert f"R@1: CUHK-PEDES {REPORTED_R1[name]}" in text or f"R@1 (no added noise): CUHK-PEDES {REPORTED_R1[name]}" in text
    widths = {"image_width", "image_depth", "image_heads", "text_width", "text_depth", "text_heads"}
    for line in text.splitlines():
        match = re.match(r"\s+(\w+): (.+)$", line)
        if not match or match.group(1) in widths or match.group(2).strip() == "":
            continue
        assert "#" in match.group(2), f"{name}.yaml: {line.strip()!r} has no source comment"


def test_cpu_profile_keeps_the_earlier_optimiser():
    train = get_profile("cpu").train
    assert (train.adam_eps, train.grad_clip, train.bias_lr_factor, train.module_lr) == (1e-8, 5.0, 0.0, "")
    assert no_decay_rules(train.no_decay) == ("1d", "embed", "token")


def test_gpu_profile_keeps_the_kits_optimiser_and_the_irra_recipe_has_irras():
    train = get_profile("gpu").train  # notebook 00 prints the profile; its committed output stays as it was
    assert (train.adam_eps, train.grad_clip, train.bias_lr_factor, train.no_decay) == (1e-8, 5.0, 0.0, "1d,embed,token")
    irra = load_recipe("irra").train
    assert (irra.adam_eps, irra.grad_clip, irra.bias_lr_factor, irra.no_decay) == (1e-3, 0.0, 2.0, "bias")


def test_optimiser_keys_are_checked():
    with pytest.raises(ConfigError, match="train.adam_eps"):
        apply_overrides(get_profile("cpu"), ["train.adam_eps=0"])
    with pytest.raises(ConfigError, match="train.module_lr.*name_part=lr"):
        apply_overrides(get_profile("cpu"), ["train.module_lr=_tse."])
    with pytest.raises(ConfigError, match="train.no_decay"):
        apply_overrides(get_profile("cpu"), ["train.no_decay=bias,em bed"])
    assert module_lrs("_tse.=1e-3, cross=2e-5") == (("_tse.", 1e-3), ("cross", 2e-5))


def test_unknown_recipe_lists_the_shipped_ones():
    from tireid_lite.config import recipe_path

    with pytest.raises(ConfigError, match="no recipe 'irr'; the kit ships bilma, cada, irra, kpdm, rde"):
        recipe_path("irr")


def test_train_cli_reads_a_recipe(tmp_path):
    from tireid_lite.train.cli import build_config

    args = argparse.Namespace(out=tmp_path / "run", resume=False, config=None, recipe="rde", profile=None,
                              method=None, data_root=None, seed=None, overrides=["train.num_epochs=6"])
    cfg = build_config(args)
    assert (cfg.model.method, cfg.train.module_lr, cfg.train.num_epochs) == ("kpdm", "_tse.=0.001", 6)
    with pytest.raises(ConfigError, match="keep one of them"):
        build_config(argparse.Namespace(**{**vars(args), "config": tmp_path / "x.yaml"}))


# --------------------------------------------------------------------------- the optimiser's groups


class _Toy(torch.nn.Module):
    """Names as the kit's model has them: towers, a cross-modal module, a classifier, a TSE."""

    def __init__(self):
        super().__init__()
        self.image_tower = torch.nn.Module()
        self.image_tower.vit = torch.nn.Linear(4, 4)  # vit.weight, vit.bias
        self.image_tower.pos_embed = torch.nn.Parameter(torch.zeros(1, 3, 4))
        self.image_tower.norm = torch.nn.LayerNorm(4)
        self.heads = torch.nn.Module()
        self.heads.mlm = torch.nn.Module()
        self.heads.mlm.cross = torch.nn.Linear(4, 4)
        self.heads.mlm.cross.inner = torch.nn.Linear(4, 4)
        self.heads.id = torch.nn.Module()
        self.heads.id.classifier = torch.nn.Linear(4, 3)
        self.heads.tal = torch.nn.Module()
        self.heads.tal.image_tse = torch.nn.Linear(4, 4)
        self.pretrained = True


def _groups(**rules):
    from tireid_lite.models.tireid import TIReIDModel

    toy = _Toy()
    groups = TIReIDModel.parameter_groups(toy, 1e-5, 4e-5, 5.0, 1.0, **rules)
    by_name = {}
    for name, param in toy.named_parameters():
        group = next(g for g in groups if any(p is param for p in g["params"]))
        by_name[name] = (group["lr"], group["weight_decay"])
    return by_name


def test_default_groups_are_the_kits_earlier_ones():
    g = _groups()
    assert g["image_tower.vit.weight"] == (1e-5, 4e-5)
    assert g["image_tower.vit.bias"] == (1e-5, 0.0)
    assert g["image_tower.pos_embed"] == (1e-5, 0.0)  # "embed" in the name
    assert g["image_tower.norm.weight"] == (1e-5, 0.0)  # 1-D
    assert g["heads.mlm.cross.inner.weight"] == (pytest.approx(5e-5), 4e-5)
    assert g["heads.tal.image_tse.bias"] == (pytest.approx(5e-5), 0.0)


def test_irra_groups_follow_its_solver():
    g = _groups(bias_lr_factor=2.0, no_decay=("bias",))
    assert g["image_tower.vit.weight"] == (1e-5, 4e-5)
    assert g["image_tower.vit.bias"] == (pytest.approx(2e-5), 0.0)  # bias: lr x 2, no decay
    assert g["image_tower.pos_embed"] == (1e-5, 4e-5)  # IRRA decays embeddings
    assert g["image_tower.norm.weight"] == (1e-5, 4e-5)  # and norm weights
    assert g["heads.mlm.cross.inner.bias"] == (pytest.approx(2e-5), 0.0)  # "cross" then "bias": lr x 2
    assert g["heads.mlm.cross.inner.weight"] == (pytest.approx(5e-5), 4e-5)
    assert g["heads.id.classifier.bias"] == (pytest.approx(5e-5), 0.0)  # classifier: lr x 5 again


def test_rde_module_lr_sets_the_tse_layers():
    g = _groups(bias_lr_factor=2.0, no_decay=("bias",), module_lr=(("_tse.", 1e-3),))
    assert g["heads.tal.image_tse.weight"] == (1e-3, 4e-5)
    assert g["heads.tal.image_tse.bias"] == (1e-3, 0.0)
    assert g["image_tower.vit.weight"] == (1e-5, 4e-5)


# --------------------------------------------------------------------------- SemMIM without parsing maps


def test_semantic_mim_on_real_data_without_maps_warns(tmp_path):
    from tireid_lite.data.build import PartMapFallbackWarning, build_data
    from tireid_lite.data.fixtures import write_fixture
    from tireid_lite.data.patch_labels import PARSING_DIR

    root = write_fixture("cuhk-pedes", tmp_path / "cuhk", ids_per_split={"train": 2, "val": 1, "test": 1},
                         images_per_id=2, size=(32, 16))
    cfg = apply_overrides(get_profile("cpu"), ["data.dataset=cuhk-pedes", f"data.root={root}", "data.image_size=[32,16]",
                                               "model.warm_start=none"])
    with pytest.warns(PartMapFallbackWarning, match=r"none of the 4 training images has a parsing map.*body-layout prior"):
        build_data(cfg, part_maps=True)
    first = build_data(cfg).dataset.split("train")[0].path
    target = Path(root) / PARSING_DIR / Path(first).with_suffix(".png")
    target.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.new("L", (16, 32)).save(target)
    with pytest.warns(PartMapFallbackWarning, match=r"only 1 of the 4 training images have"):
        build_data(cfg, part_maps=True)


# --------------------------------------------------------------------------- RDE's TSE


def test_rde_tse_is_1024_wide_with_batchnorm():
    from tireid_lite.models.token_selection import TokenSelectionEmbedding

    tse = TokenSelectionEmbedding(8, 16, batchnorm=True)
    assert [type(m).__name__ for m in tse.mlp] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert (tse.mlp[0].out_features, tse.mlp[3].out_features, tse.fc.out_features) == (8, 16, 16)
    tokens = torch.randn(3, 5, 8)
    out = tse(tokens)
    assert out.shape == (3, 16)
    tse.eval()  # with running statistics, the BatchNorm acts on each token alone
    one = tse(tokens[:1])
    assert torch.allclose(one, tse(tokens)[:1], atol=1e-6)


def test_cpu_profile_tse_keeps_its_earlier_shape():
    from tireid_lite.models.token_selection import TokenSelectionEmbedding

    tse = TokenSelectionEmbedding(8, 8)
    assert [type(m).__name__ for m in tse.mlp] == ["Linear", "ReLU", "Linear"]
    assert get_profile("cpu").model.kpdm.tse_width == 0 and not get_profile("cpu").model.kpdm.tse_batchnorm


# --------------------------------------------------------------------------- keys added later keep old runs valid


def test_new_keys_at_their_neutral_value_leave_cache_keys_and_resumes_alone():
    from tireid_lite.config import (
        NEUTRAL_KEYS,
        config_differences,
        flatten,
        identity_dict,
    )

    cfg = get_profile("cpu")
    flat = flatten(identity_dict(cfg))
    assert not set(NEUTRAL_KEYS) & set(flat)  # a model cached before these keys existed keeps its key
    assert flatten(identity_dict(apply_overrides(get_profile("cpu"), ["train.adam_eps=1e-3"])))["train.adam_eps"] == 1e-3
    saved = identity_dict(cfg)  # a run's config.yaml written before the keys existed
    assert config_differences(saved, cfg.to_dict()) == []
    assert config_differences(saved, apply_overrides(get_profile("cpu"), ["train.module_lr=_tse.=1e-3"]).to_dict()) == [
        "train.module_lr: '' -> '_tse.=1e-3'"]


# --------------------------------------------------------------------------- RDE's text augmentation


def _word_tokenizer():
    from tireid_lite.text.tokenizers import WordTokenizer

    return WordTokenizer.train(["a man in a red shirt and blue jeans with a black bag"], max_length=16)


def test_text_augmentation_masks_replaces_and_deletes_in_rdes_shares():
    import numpy as np

    from tireid_lite.text.masking import augment_caption_ids

    tok = _word_tokenizer()
    ids = tok(["a man in a red shirt and blue jeans"])[0]  # start, 9 words, end, padding
    assert torch.equal(augment_caption_ids(ids, tok, 0.0, np.random.default_rng(0)), ids)
    rng = np.random.default_rng(0)
    counts = {"mask": 0, "deleted": 0, "replaced": 0}
    words = [int(t) for t in ids if int(t) not in tok.special_ids]
    for _ in range(2000):
        out = augment_caption_ids(ids, tok, 1.0, rng)  # every word chosen
        assert out.shape == ids.shape and int(out[0]) == tok.sot_id
        body = out[1:].tolist()
        end = body.index(tok.eot_id)
        assert all(t == tok.pad_id for t in body[end + 1:])  # deletions shift left, the end is padded
        counts["mask"] += sum(t == tok.mask_token_id for t in body[:end])
        counts["replaced"] += sum(t != tok.mask_token_id for t in body[:end])
        counts["deleted"] += len(words) - end
    total = 2000 * len(words)
    shares = [counts["mask"] / total, counts["replaced"] / total, counts["deleted"] / total]
    assert shares == pytest.approx([0.6, 0.2, 0.2], abs=0.02)


def test_text_augmentation_in_the_training_set_changes_captions_only(tmp_path):
    from tireid_lite.data.build import build_data
    from tireid_lite.data.fixtures import write_fixture

    root = write_fixture("cuhk-pedes", tmp_path / "cuhk", ids_per_split={"train": 3, "val": 1, "test": 1},
                         images_per_id=2, size=(32, 16))
    base = ["data.dataset=cuhk-pedes", f"data.root={root}", "data.image_size=[32,16]", "model.warm_start=none"]
    plain = build_data(apply_overrides(get_profile("cpu"), base)).train_set
    augmented = build_data(apply_overrides(get_profile("cpu"), [*base, "data.text_aug=0.5"])).train_set
    changed = 0
    for index in range(len(plain)):
        torch.manual_seed(index)
        a = plain[index]
        torch.manual_seed(index)
        b = augmented[index]
        assert torch.equal(a["images"], b["images"])  # the augmentation draws last: every other draw is the same
        changed += not torch.equal(a["caption_ids"], b["caption_ids"])
    assert changed >= len(plain) // 2
    with pytest.raises(ConfigError, match="data.text_aug"):
        apply_overrides(get_profile("cpu"), ["data.text_aug=1.5"])
