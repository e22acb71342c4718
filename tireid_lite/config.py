"""One configuration system: nested dataclasses, named profiles, YAML round trip.

``cpu`` (the default, used by CI and every notebook) trains tiny towers from
scratch on SynthPEDES in minutes on two cores; ``gpu`` trains on a real dataset
with CLIP ViT-B/16 loaded from a local directory, IRRA's sizes and schedule with
the kit's optimiser defaults. Each paper's exact recipe is a file under
``tireid_lite/recipes/`` (:func:`load_recipe`). Unknown keys and
values of the wrong type are errors that name the key. Taught in ``02_baseline_irra``.

    cfg = get_profile("cpu")
    cfg = apply_overrides(cfg, ["train.num_epochs=3", "model.method=baseline"])
    save_config(cfg, "run/config.yaml"); cfg == load_config("run/config.yaml")
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tempfile
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tireid_lite.errors import ConfigError

PROFILES = ("cpu", "gpu")


@dataclass
class DataConfig:
    dataset: str = "synth"  # cuhk-pedes | icfg-pedes | rstpreid | synth
    root: str = ""  # dataset root; "" with synth: the cached SynthPEDES (see synth_* keys)
    image_size: tuple[int, int] = (96, 32)  # (height, width), 3:1
    max_length: int = 64  # caption tokens, start and end included
    tokenizer: str = "word"  # word (trained on the captions) | clip (from model.pretrained_dir)
    sampler: str = "random"  # random | identity (P identities x K pairs) | hard_negative (partners together)
    num_instances: int = 4  # K for the identity sampler
    num_workers: int = 0
    flip_p: float = 0.5
    pad: int = 3  # pad-and-random-crop margin in pixels (IRRA: 10 at 384x128; scaled to the image here)
    erasing_p: float = 0.0  # random erasing (IRRA: 0.5); off in the cpu profile, where it hid whole garments of 96x32 images
    cache_images: bool = True  # keep decoded training images in memory (small datasets only)
    text_aug: float = 0.0  # RDE's --txt_aug: each caption token masked / replaced / deleted with this probability (RDE: 0.2); 0 = off
    noise_rate: float = 0.0  # share of training pairs whose captions are permuted (RDE protocol)
    noise_seed: int = 0
    train_identities: int = 0  # train on the first N training identities only (0 = all): shorter epochs for ablations
    synth_ids_train: int = 2000  # many identities: from scratch, 500 are memorised rather than generalised
    synth_ids_val: int = 100
    synth_ids_test: int = 200
    synth_images_per_id: int = 4
    synth_seed: int = 0
    # SynthPEDES detail knobs (tireid_lite.data.synth.knobs), off by default; a knob key away from its default
    # wins over the preset. synth_preset=detail switches all of them on (see data_setup/README.md).
    synth_preset: str = "none"  # none | detail
    synth_vocabulary: str = "basic"  # basic (about 110 words) | rich (over 500: shades, kinds, materials, poses...)
    synth_train_hard_negative_fraction: float = 0.0  # train identities in hard-negative pairs (val/test: 0.5)
    synth_colour_swap_fraction: float = 0.0  # identities in colour-swap pairs, per split
    synth_rare_colours: int = 0  # tail colours, rare in train and common in val/test (0-6)
    synth_distractor_people: float = 0.0  # chance of a smaller second person in the background
    synth_person_scale: float = 1.0  # the pedestrian's height scaled by a factor in [this, 1]
    synth_dark_fraction: float = 0.0  # identities whose every image is dark
    synth_occluded_fraction: float = 0.0  # identities whose every image has a large occluder


SYNTH_PRESETS = ("none", "detail")  # the names of tireid_lite.data.synth.knobs.PRESETS
SYNTH_DETAIL_KEYS = (
    "synth_vocabulary", "synth_train_hard_negative_fraction", "synth_colour_swap_fraction", "synth_rare_colours",
    "synth_distractor_people", "synth_person_scale", "synth_dark_fraction", "synth_occluded_fraction",
)


@dataclass
class KPDMConfig:
    """``model.kpdm.*``: KPDM's parts (notebooks 03-05; the kit's reading, see PAPERS.md), each switchable."""

    mask_strategy: str = "phrase"  # masked words: phrase (key-phrase dynamic masking) | random (as irra)
    fmlm_alpha: float = 0.5  # FMLM: weight of a masked word = (f / f_median) ** -alpha; 0 = plain MLM
    select_ratio: float = 0.5  # share of image patches (and caption tokens) kept by importance (KPDM: 0.5)
    importance_layers: int = 2  # last L ViT layers whose CLS->patch attention scores the patches
    importance_method: str = "mean"  # mean (over the L layers) | rollout
    tse: bool = True  # RDE's token-selection embedding beside the global one
    tse_width: int = 0  # width of the TSE embedding; 0 = the joint embedding's (RDE: 1024)
    tse_batchnorm: bool = False  # BatchNorm in the TSE's MLP, as RDE's code (model/CrossEmbeddingLayer_tse.py)
    tal_margin: float = 0.1  # RDE's TAL margin
    tal_tau: float = 0.015  # RDE's TAL temperature


@dataclass
class BiLMaConfig:
    """``model.bilma.*``: BiLMa's masked image modelling through the cross-modal module (notebook 06)."""

    mim_ratio: float = 0.15  # share of image patches masked for MIM
    mim_loss_weight: float = 1.0  # beta in L = L_sdm + L_id + alpha L_mlm + beta L_mim
    mim_target: str = "semantic"  # semantic (part class, SemMIM) | rgb (patch-mean colour) | pixels
    # experimental, not BiLMa's: weigh each masked patch by (its class's count in the batch) ** -b, so
    # small parts count as much as the torso (0 = plain cross-entropy; 1 = every class the same total)
    mim_class_balance: float = 0.0


@dataclass
class CADAConfig:
    """``model.cada.*``: CADA's parts (notebook 07; the gate and the attribute masking are the kit's reading)."""

    global_loss: str = "cada"  # cada (SDM + reverse KL + identity CE) | sdm (IRRA's)
    itm_weight: float = 1.0  # ATP: ITM on the association decoder, with hard negatives; 0 = off (no re-ranking)
    gate: bool = True  # ATP's adaptive gate from each token's attention; false = CADA's public code
    local_itm: bool = True  # local ITM over groups of text tokens beside the global one
    local_groups: int = 2  # groups of caption tokens in the local ITM (CADA: 2)
    depth: int = 1  # layers of the association decoder (CADA: BERT's 12 with cross-attention)
    ara_weight: float = 0.1  # ARA: masked attributes predicted from the image; 0 = off
    ara_mode: str = "word"  # word (each attribute word with ara_word_prob) | phrase (each key phrase with ara_phrase_prob)
    ara_word_prob: float = 0.4  # CADA's word mode
    ara_phrase_prob: float = 0.8  # CADA's phrase mode
    rerank_k: int = 32  # top-k of the global similarity re-scored by ITM (CADA: 32); notebooks pass it to evaluate


@dataclass
class PartConfig:
    """``model.part.*``: part queries and the commonality-based margin ranking loss (notebook 08; the
    kit's reading of Park et al., ACCV 2024, see PAPERS.md), each switchable."""

    num_parts: int = 4  # K learnable part queries of the shared decoder (the paper's range: 4-8)
    heads: int = 1  # attention heads of the decoder's cross-attention (1: one attention map per part)
    loss_weight: float = 1.0  # weight of the part ranking loss; 0 switches the part head off
    margin: float = 0.2  # m of the ranking loss
    margin_mode: str = "commonality"  # commonality (m_k = m (1 - c_k)) | fixed (m_k = m, the ablation)
    commonality: str = "minmax"  # c_k from the negatives' mean part similarity: minmax across parts | absolute
    negatives: str = "semihard"  # semihard (FaceNet) | hardest negative per anchor (collapses from a fresh decoder)
    embedding_weight: float = 1.0  # weight of the mean part similarity in the retrieval score; 0 = global only


@dataclass
class ModelConfig:
    method: str = "irra"  # a row of the methods table (tireid_lite.models.methods.METHODS)
    pretrained_dir: str = ""  # local CLIP checkpoint (gpu profile); "" = tiny towers built here
    grad_checkpointing: bool = False  # recompute the towers' layers in the backward pass: less memory, ~1/3 more compute
    warm_start: str = "attributes"  # tiny towers' start: attributes (pretrained on a separate SynthPEDES draw, cached) | none
    warm_start_steps: int = 1200  # optimiser steps of that attribute pretraining
    warm_start_mlm: bool = False  # that pretraining also trains IRRA's cross-modal module and MLM head (masked captions); experimental, see benchmarks/bench_heads_learn.py
    patch_size: int = 8
    image_width: int = 64
    image_depth: int = 4
    image_heads: int = 4
    text_kind: str = "bert"  # bert (bidirectional, from scratch) | clip
    text_width: int = 64
    text_depth: int = 1
    text_heads: int = 4
    embed_dim: int = 128  # joint embedding width
    temperature: float = 0.1  # SDM's tau (IRRA: 0.02 with pretrained CLIP)
    image_pool: str = "mean"  # global image feature: cls (IRRA) | mean of the patch tokens (learns faster from scratch)
    text_pool: str = "mean"  # global text feature: eot (IRRA) | mean of the caption's tokens
    id_loss_weight: float = 1.0
    sdm_loss_weight: float = 1.0  # methods with SDM (kpdm trains RDE's TAL instead)
    mlm_loss_weight: float = 1.0
    mlm_prob: float = 0.15
    cross_depth: int = 1  # transformer layers after the cross-attention (IRRA: 4)
    cross_heads: int = 4
    kpdm: KPDMConfig = field(default_factory=KPDMConfig)
    bilma: BiLMaConfig = field(default_factory=BiLMaConfig)
    cada: CADAConfig = field(default_factory=CADAConfig)
    part: PartConfig = field(default_factory=PartConfig)


@dataclass
class TrainConfig:
    num_epochs: int = 1
    epoch_fraction: float = 0.5  # share of the shuffled training batches an epoch takes (a new share each epoch)
    batch_size: int = 64
    lr: float = 2e-3
    new_module_lr_factor: float = 5.0  # IRRA: new modules (heads) learn 5x faster than the towers
    pretrained_lr_factor: float = 1.0
    weight_decay: float = 4e-5
    warmup_epochs: float = 0.25  # linear warm-up length; a fraction of an epoch is allowed
    grad_clip: float = 5.0  # max gradient norm; 0 = no clipping (IRRA and RDE do not clip)
    adam_eps: float = 1e-8  # Adam's eps (torch's default); IRRA and RDE use 1e-3 on pretrained CLIP
    bias_lr_factor: float = 0.0  # >0: biases of the towers and cross-modal modules learn at lr x this (IRRA: 2); 0 = their module's lr
    no_decay: str = "1d,embed,token"  # comma list of rules exempt from weight decay: 1d (every parameter of < 2 dims) or a name part (IRRA: bias)
    module_lr: str = ""  # "name_part=lr,...": parameters whose name holds name_part learn at that lr (RDE: _tse.=1e-3); "" = none
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | bf16 | off
    eval_every: int = 1  # epochs
    log_every: int = 20  # steps
    seed: int = 0
    threads: int = 0  # torch threads on CPU; 0 = leave torch's default
    partitioner: str = "none"  # noisy pairs: none | ccd (RDE) | tcp (KPDM, the kit's reading)
    partition_warmup_epochs: int = 1  # epochs trained on every pair before the first partition
    compile: bool = False  # torch.compile the training forward (same losses up to float rounding; see train/compiled.py)


@dataclass
class Config:
    profile: str = "cpu"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))


def _to_plain(value):
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return list(value)
    return value


def get_profile(name: str = "cpu") -> Config:
    """A fresh config for a named profile."""
    if name == "cpu":
        return Config()
    if name == "gpu":
        return Config(
            profile="gpu",
            data=DataConfig(dataset="cuhk-pedes", root="", image_size=(384, 128), max_length=77, tokenizer="clip",
                            num_workers=8, pad=10, erasing_p=0.5, cache_images=False),
            model=ModelConfig(pretrained_dir="", warm_start="none", patch_size=16, image_width=768, image_depth=12, image_heads=12,
                              text_kind="clip", text_width=512, text_depth=12, text_heads=8, embed_dim=512,
                              temperature=0.02, cross_depth=4, cross_heads=8, image_pool="cls", text_pool="eot"),
            # the kit's optimiser defaults; the papers' own (IRRA: Adam eps 1e-3, biases at 2x lr without decay,
            # no clipping) are in the recipes: load_recipe("irra"), `tireid train --recipe irra`
            train=TrainConfig(num_epochs=60, epoch_fraction=1.0, batch_size=64, lr=1e-5, weight_decay=4e-5, warmup_epochs=5.0, amp="auto",
                              log_every=50),
        )
    raise ConfigError(f"unknown profile {name!r}; use 'cpu' or 'gpu'")


RECIPES_DIR = Path(__file__).resolve().parent / "recipes"  # one YAML per paper, each value traced in a comment


def recipe_names() -> list[str]:
    """The recipes shipped with the kit (``tireid train --recipe NAME``)."""
    return sorted(path.stem for path in RECIPES_DIR.glob("*.yaml"))


def recipe_path(name: str) -> Path:
    """The file of recipe ``name``; one clear error listing the recipes when there is none."""
    path = RECIPES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"no recipe {name!r}; the kit ships {', '.join(recipe_names())} (in {RECIPES_DIR})")
    return path


def load_recipe(name: str) -> Config:
    """A paper's recipe (``tireid_lite/recipes/<name>.yaml``): the gpu profile with the paper's values."""
    return load_config(recipe_path(name))


def no_decay_rules(text: str) -> tuple[str, ...]:
    """``train.no_decay`` as its rules: ``"1d,embed"`` -> ``("1d", "embed")``; ``""`` -> no exemption."""
    rules = tuple(part.strip() for part in text.split(",") if part.strip())
    if any(not rule.replace("_", "").replace(".", "").isalnum() for rule in rules):
        raise ConfigError(f"config key 'train.no_decay' is {text!r}; it must be a comma list of 1d and name parts "
                          "such as bias, embed (letters, digits, '_' and '.')")
    return rules


def module_lrs(text: str) -> tuple[tuple[str, float], ...]:
    """``train.module_lr`` as ``((name_part, lr), ...)``: ``"_tse.=1e-3"`` -> ``(("_tse.", 0.001),)``."""
    pairs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, raw = item.partition("=")
        try:
            lr = float(raw) if sep and name.strip() else float("nan")
        except ValueError:
            lr = float("nan")
        if not lr > 0:
            raise ConfigError(f"config key 'train.module_lr' has {item!r}; each item must be name_part=lr with a "
                              "positive lr, e.g. _tse.=1e-3")
        pairs.append((name.strip(), lr))
    return tuple(pairs)


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check (and gently convert) ``value`` to the field's declared type."""
    origin = typing.get_origin(annotation)
    if origin is tuple:
        args = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"config key {key!r} needs {len(args)} values like [96, 32], got {value!r}")
        return tuple(_coerce(key, v, a) for v, a in zip(value, args))
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"config key {key!r} needs true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and not value.strip().lstrip("-").isdigit()):
            raise ConfigError(f"config key {key!r} needs an integer, got {value!r}")
        return int(value)
    if annotation is float:
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key {key!r} needs a number, got {value!r}") from None
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"config key {key!r} needs a string, got {value!r}")
        return str(value)
    return value


# Keys that moved into a mechanism's section: the old flat name -> the new one.
MOVED_KEYS = {
    **{f"model.{name}": f"model.kpdm.{name}" for name in (
        "mask_strategy", "fmlm_alpha", "select_ratio", "importance_layers", "importance_method", "tse",
        "tal_margin", "tal_tau")},
    **{f"model.{name}": f"model.bilma.{name}" for name in ("mim_ratio", "mim_loss_weight", "mim_target")},
}


def _unknown(key: str, known: list[str]) -> ConfigError:
    if key in MOVED_KEYS:
        return ConfigError(f"config key {key!r} is now {MOVED_KEYS[key]!r}; rename it (e.g. --set {MOVED_KEYS[key]}=...)")
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
    return ConfigError(f"unknown config key {key!r}{hint}")


def _update(obj, values: dict[str, Any], prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in names:
            raise _unknown(key, [f"{prefix}{n}" for n in names])
        current = getattr(obj, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {key!r} is a section; give it a mapping of keys, not {value!r}")
            _update(current, value, prefix=f"{key}.")
        else:
            setattr(obj, name, _coerce(key, value, hints[name]))


def validate(cfg: Config) -> Config:
    """Check values that types alone do not catch; raise one clear error naming the key."""
    kpdm, bilma, cada, part = cfg.model.kpdm, cfg.model.bilma, cfg.model.cada, cfg.model.part
    _raise_first_failed(cfg, [  # sizes first: the checks below divide by some of them
        ("model.patch_size", cfg.model.patch_size >= 1, "a positive number of pixels, e.g. 8"),
        ("model.image_width", cfg.model.image_width >= 1, "a positive width, e.g. 64"),
        ("model.image_depth", cfg.model.image_depth >= 1, "at least 1 (layers)"),
        ("model.image_heads", cfg.model.image_heads >= 1, "at least 1"),
        ("model.text_width", cfg.model.text_width >= 1, "a positive width, e.g. 64"),
        ("model.text_depth", cfg.model.text_depth >= 1, "at least 1 (layers)"),
        ("model.text_heads", cfg.model.text_heads >= 1, "at least 1"),
        ("model.embed_dim", cfg.model.embed_dim >= 1, "a positive width, e.g. 128"),
        ("model.cross_heads", cfg.model.cross_heads >= 1, "at least 1"),
        ("model.cross_depth", cfg.model.cross_depth >= 0, "0 or more (layers)"),
        ("data.num_workers", cfg.data.num_workers >= 0, "0 (load in the training process) or a number of worker processes"),
        ("data.max_length", cfg.data.max_length >= 3, "at least 3 (start, one word, end)"),
    ])
    checks = [
        ("profile", cfg.profile in PROFILES, f"one of {', '.join(PROFILES)}"),
        ("model.method", bool(cfg.model.method), "a method name such as irra (see `tireid train --help`)"),
        ("data.dataset", cfg.data.dataset in ("cuhk-pedes", "icfg-pedes", "rstpreid", "synth"),
         "one of cuhk-pedes, icfg-pedes, rstpreid, synth"),
        ("data.tokenizer", cfg.data.tokenizer in ("word", "clip"), "word or clip"),
        ("data.sampler", cfg.data.sampler in ("random", "identity", "hard_negative"),
         ("random, identity or hard_negative (partners in the same batch; needs SynthPEDES with "
          "data.synth_train_hard_negative_fraction > 0 or data.synth_preset=detail)")),
        ("data.synth_preset", cfg.data.synth_preset in SYNTH_PRESETS, f"one of {', '.join(SYNTH_PRESETS)}"),
        ("data.synth_vocabulary", cfg.data.synth_vocabulary in ("basic", "rich"), "basic or rich"),
        ("model.text_kind", cfg.model.text_kind in ("bert", "clip"), "bert or clip"),
        ("model.image_pool", cfg.model.image_pool in ("cls", "mean"), "cls or mean"),
        ("model.text_pool", cfg.model.text_pool in ("eot", "mean"), "eot or mean"),
        ("model.warm_start", cfg.model.warm_start in ("attributes", "none"), "attributes or none"),
        ("model.warm_start", cfg.model.warm_start == "none" or not cfg.model.pretrained_dir,
         "none when model.pretrained_dir loads pretrained towers"),
        ("model.warm_start", cfg.model.warm_start == "none" or cfg.data.dataset == "synth",
         "none unless data.dataset is synth (the attribute pretraining reads SynthPEDES's attributes.json): "
         "set model.warm_start=none, or use --profile gpu with model.pretrained_dir=DIR (CLIP)"),
        ("model.warm_start_steps", cfg.model.warm_start_steps >= 1, "at least 1"),
        ("model.warm_start_mlm", not cfg.model.warm_start_mlm or cfg.model.warm_start == "attributes",
         "false unless model.warm_start is attributes (it pretrains the MLM head beside the towers)"),
        ("model.kpdm.mask_strategy", kpdm.mask_strategy in ("random", "phrase"), "random or phrase"),
        ("model.kpdm.fmlm_alpha", kpdm.fmlm_alpha >= 0, "0 (plain MLM) or more"),
        ("model.kpdm.select_ratio", 0.0 < kpdm.select_ratio <= 1.0, "a number in (0, 1]"),
        ("model.kpdm.importance_layers", kpdm.importance_layers >= 1, "at least 1 (the last layers of the image tower)"),
        ("model.kpdm.importance_method", kpdm.importance_method in ("mean", "rollout"), "mean or rollout"),
        ("model.kpdm.tal_tau", kpdm.tal_tau > 0, "a positive number"),
        ("model.kpdm.tse_width", kpdm.tse_width >= 0, "0 (the joint embedding's width) or a positive width"),
        ("model.bilma.mim_ratio", 0.0 < bilma.mim_ratio <= 1.0, "a number in (0, 1]"),
        ("model.bilma.mim_loss_weight", bilma.mim_loss_weight >= 0, "0 or more"),
        ("model.bilma.mim_target", bilma.mim_target in ("semantic", "rgb", "pixels"), "semantic, rgb or pixels"),
        ("model.bilma.mim_class_balance", 0.0 <= bilma.mim_class_balance <= 1.0
         and (bilma.mim_class_balance == 0 or bilma.mim_target == "semantic"),
         "0, or a number in (0, 1] with model.bilma.mim_target=semantic"),
        ("model.cada.global_loss", cada.global_loss in ("cada", "sdm"), "cada or sdm"),
        ("model.cada.itm_weight", cada.itm_weight >= 0, "0 (ATP off) or more"),
        ("model.cada.local_groups", cada.local_groups >= 1, "at least 1"),
        ("model.cada.depth", cada.depth >= 1, "at least 1"),
        ("model.cada.ara_weight", cada.ara_weight >= 0, "0 (ARA off) or more"),
        ("model.cada.ara_mode", cada.ara_mode in ("word", "phrase"), "word or phrase"),
        ("model.cada.ara_word_prob", 0.0 < cada.ara_word_prob <= 1.0, "a number in (0, 1]"),
        ("model.cada.ara_phrase_prob", 0.0 < cada.ara_phrase_prob <= 1.0, "a number in (0, 1]"),
        ("model.cada.rerank_k", cada.rerank_k >= 1, "a positive number of gallery items (CADA: 32)"),
        ("model.part.num_parts", part.num_parts >= 1, "at least 1 (the paper uses 4-8)"),
        ("model.part.heads", part.heads >= 1 and cfg.model.embed_dim % part.heads == 0,
         f"at least 1 and a divisor of model.embed_dim ({cfg.model.embed_dim})"),
        ("model.part.loss_weight", part.loss_weight >= 0, "0 (part head off) or more"),
        ("model.part.margin", part.margin >= 0, "0 or more"),
        ("model.part.margin_mode", part.margin_mode in ("commonality", "fixed"), "commonality or fixed"),
        ("model.part.negatives", part.negatives in ("hardest", "semihard"), "hardest or semihard"),
        ("model.part.commonality", part.commonality in ("minmax", "absolute"), "minmax or absolute"),
        ("model.part.embedding_weight", part.embedding_weight >= 0, "0 (global score only) or more"),
        ("train.partitioner", cfg.train.partitioner in ("none", "ccd", "tcp"), "none, ccd or tcp"),
        ("train.partition_warmup_epochs", cfg.train.partition_warmup_epochs >= 0, "0 or more"),
        ("train.amp", cfg.train.amp in ("auto", "bf16", "off"), "auto, bf16 or off"),
        ("data.noise_rate", 0.0 <= cfg.data.noise_rate < 1.0, "a number in [0, 1)"),
        ("data.pad", cfg.data.pad >= 0, "0 (no pad-and-crop) or more"),
        ("data.text_aug", 0.0 <= cfg.data.text_aug <= 1.0, "a probability in [0, 1] (RDE: 0.2; 0 = off)"),
        ("data.train_identities", cfg.data.train_identities >= 0, "0 (all) or a positive number"),
        ("model.mlm_prob", 0.0 < cfg.model.mlm_prob < 1.0, "a number in (0, 1)"),
        ("model.temperature", cfg.model.temperature > 0, "a positive number"),
        ("train.num_epochs", cfg.train.num_epochs >= 1, "at least 1"),
        ("train.epoch_fraction", 0.0 < cfg.train.epoch_fraction <= 1.0, "a number in (0, 1]"),
        ("train.batch_size", cfg.train.batch_size >= 2, "at least 2"),
        ("train.lr", cfg.train.lr > 0, "a positive number"),
        ("train.adam_eps", cfg.train.adam_eps > 0, "a positive number (torch's default 1e-8; IRRA and RDE: 1e-3)"),
        ("train.bias_lr_factor", cfg.train.bias_lr_factor >= 0, "0 (biases follow their module) or a positive factor"),
        ("train.warmup_epochs", 0 <= cfg.train.warmup_epochs <= cfg.train.num_epochs, "between 0 and train.num_epochs"),
        ("model.image_width", cfg.model.image_width % cfg.model.image_heads == 0,
         f"a multiple of model.image_heads ({cfg.model.image_heads})"),
        ("model.text_width", cfg.model.text_width % cfg.model.text_heads == 0,
         f"a multiple of model.text_heads ({cfg.model.text_heads})"),
        ("data.image_size", all(s > 0 for s in cfg.data.image_size)
         and all(s % cfg.model.patch_size == 0 for s in cfg.data.image_size),
         f"positive and divisible by model.patch_size ({cfg.model.patch_size})"),
        ("data.num_instances", cfg.data.sampler != "identity"
         or (cfg.data.num_instances >= 1 and cfg.train.batch_size % cfg.data.num_instances == 0),
         "a divisor of train.batch_size when data.sampler is identity"),
    ]
    _raise_first_failed(cfg, checks)
    no_decay_rules(cfg.train.no_decay)
    module_lrs(cfg.train.module_lr)
    return cfg


# Keys added after models were trained and cached: a saved config without one means its default, and a
# key at its default stays out of a config's hash (hashed_dict), so adding one kept every cached model's key.
DEFAULT_WHEN_ABSENT: dict[str, Any] = {
    f"data.{f.name}": f.default for f in dataclasses.fields(DataConfig)
    if f.name in ("synth_preset", *SYNTH_DETAIL_KEYS)
}


def _raise_first_failed(cfg: Config, checks: list[tuple[str, bool, str]]) -> None:
    for key, ok, expected in checks:
        if not ok:
            raise ConfigError(f"config key {key!r} is {get_key(cfg, key)!r}; it must be {expected}")


def get_key(cfg: Config, key: str) -> Any:
    """The value of a dotted key such as ``model.kpdm.select_ratio``."""
    value: Any = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict as one level of dotted keys: ``{"model": {"method": "irra"}}`` -> ``{"model.method": "irra"}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# Keys added after runs and models were saved, with the value that keeps the earlier behaviour. A
# saved config without one of them reads as holding that value, and a model cache key leaves them out
# while they hold it, so runs and cached models made before the key existed stay valid.
NEUTRAL_KEYS: dict[str, Any] = {
    "train.adam_eps": 1e-8,
    "train.bias_lr_factor": 0.0,
    "train.no_decay": "1d,embed,token",
    "train.module_lr": "",
    "model.kpdm.tse_width": 0,
    "model.kpdm.tse_batchnorm": False,
    "model.grad_checkpointing": False,
    "data.text_aug": 0.0,
    "train.compile": False,
    "model.warm_start_mlm": False,
    "model.bilma.mim_class_balance": 0.0,
    **DEFAULT_WHEN_ABSENT,  # SynthPEDES's detail knobs
}


def identity_dict(cfg: Config) -> dict[str, Any]:
    """``cfg`` as a nested dict without the :data:`NEUTRAL_KEYS` that hold their neutral value: what a
    cache key should cover."""
    values = cfg.to_dict()
    for key, neutral in NEUTRAL_KEYS.items():
        *sections, name = key.split(".")
        node = values
        for section in sections:
            node = node[section]
        if node.get(name) == neutral:
            del node[name]
    return values


def config_differences(saved: dict[str, Any], given: dict[str, Any], free: tuple[str, ...] = ()) -> list[str]:
    """``key: saved -> given`` for every dotted key (outside ``free``) whose value differs; a
    :data:`NEUTRAL_KEYS` key absent from either side counts as holding its neutral value."""
    old, new = ({**NEUTRAL_KEYS, **flatten(values)} for values in (saved, given))
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if key not in free and old.get(key) != new.get(key)
    ]


def config_from_dict(values: dict[str, Any]) -> Config:
    """A config from a (possibly partial) nested dict, starting from its profile's defaults."""
    if not isinstance(values, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(values).__name__}")
    cfg = get_profile(str(values.get("profile", "cpu")))
    _update(cfg, values)
    return validate(cfg)


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(cfg: Config, items: list[str]) -> Config:
    """Apply ``section.key=value`` strings (the CLI's ``--set``); values are parsed as YAML scalars."""
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. train.num_epochs=3")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        nested: dict[str, Any] = {}
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = _parse_scalar(raw)
        if len(parts) == 1 and parts[0] != "profile":
            section = getattr(cfg, parts[0], None)
            if dataclasses.is_dataclass(section):
                example = dataclasses.fields(section)[0]
                raise ConfigError(
                    f"--set {item!r}: {parts[0]!r} is a section, not a key; set one of its keys, e.g. "
                    f"--set {parts[0]}.{example.name}={getattr(section, example.name)}"
                )
            raise _unknown(key, [f.name for f in dataclasses.fields(cfg)])
        _update(cfg, nested)
    return validate(cfg)


def save_config(cfg: Config, path: str | os.PathLike) -> Path:
    """Write the config as YAML (atomically)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".yaml")
        try:
            with os.fdopen(fd, "w") as fh:
                yaml.safe_dump(cfg.to_dict(), fh, sort_keys=False)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    except OSError as err:
        raise ConfigError(
            f"cannot write {path}: {err.strerror or err}; choose a writable folder with free space (--out)"
        ) from None
    return path


def load_config(path: str | os.PathLike) -> Config:
    """Read a YAML config; unknown keys and bad values are errors naming the key and the file."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise ConfigError(f"config file {path} is a symbolic link that leads nowhere (a loop or a missing target); "
                          "point it at a YAML file")
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder; give a YAML file, such as a run's {path / 'config.yaml'}")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {err.start}); give a YAML file, "
                          "such as a run's config.yaml") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    try:
        return config_from_dict(values or {})
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
