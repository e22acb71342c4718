"""Config: profiles, YAML round trip, overrides, and errors that name the key."""

from __future__ import annotations

import pytest

from tireid_lite.config import apply_overrides, config_from_dict, get_profile, load_config, save_config
from tireid_lite.errors import ConfigError


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_yaml_round_trip(profile, tmp_path):
    cfg = get_profile(profile)
    path = save_config(cfg, tmp_path / "config.yaml")
    assert load_config(path) == cfg


def test_profiles_differ_where_the_papers_say():
    cpu, gpu = get_profile("cpu"), get_profile("gpu")
    assert gpu.data.image_size == (384, 128) and gpu.model.patch_size == 16
    assert gpu.model.temperature == 0.02 and gpu.train.num_epochs == 60 and gpu.train.batch_size == 64
    assert gpu.model.text_kind == "clip" and cpu.model.text_kind == "bert"
    assert cpu.data.dataset == "synth" and cpu.data.image_size[0] == 3 * cpu.data.image_size[1]


def test_overrides_are_typed():
    cfg = apply_overrides(get_profile("cpu"), ["train.num_epochs=3", "data.image_size=[48, 16]", "train.lr=2e-4"])
    assert cfg.train.num_epochs == 3 and cfg.data.image_size == (48, 16) and cfg.train.lr == 2e-4


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrr=1", "unknown config key 'train.lrr'; did you mean 'train.lr'?"),
        ("trian.lr=1", "unknown config key 'trian'; did you mean 'train'?"),
        ("train.lr=fast", "config key 'train.lr' needs a number, got 'fast'"),
        ("train.num_epochs=2.5", "config key 'train.num_epochs' needs an integer, got 2.5"),
        ('model.method=""', "config key 'model.method' is ''; it must be a method name"),
        ("model.select_ratio=0.3", "config key 'model.select_ratio' is now 'model.kpdm.select_ratio'; rename it"),
        ("model.mim_target=rgb", "config key 'model.mim_target' is now 'model.bilma.mim_target'; rename it"),
        ("model.kpdm.select_ratio=0", "config key 'model.kpdm.select_ratio' is 0.0; it must be a number in (0, 1]"),
        ("model.bilma.mim_target=features", "config key 'model.bilma.mim_target' is 'features'; it must be semantic"),
        ("data.image_size=[95, 32]", "config key 'data.image_size' is (95, 32); it must be positive and divisible"),
        ("data.noise_rate=1.0", "config key 'data.noise_rate' is 1.0; it must be a number in [0, 1)"),
        ("train.num_epochs", "expected section.key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        apply_overrides(get_profile("cpu"), [override])
    assert message in str(err.value)


def test_yaml_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  num_epochs: 2\n  warmpu_epochs: 1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key 'train.warmpu_epochs'"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_partial_dict_starts_from_its_profile():
    cfg = config_from_dict({"profile": "gpu", "train": {"num_epochs": 5}})
    assert cfg.train.num_epochs == 5 and cfg.data.image_size == (384, 128)
    with pytest.raises(ConfigError, match="is a section"):
        config_from_dict({"train": 3})
