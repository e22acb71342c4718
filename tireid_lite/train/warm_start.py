"""The cpu profile's stand-in for CLIP: tiny towers pretrained to name SynthPEDES attributes.

IRRA and the four papers never train their towers from nothing: they start
from CLIP, which already knows what "red" and "backpack" look like. Trained
from random weights, the tiny cpu-profile towers spend minutes learning
colours before retrieval can start (test R@1 of a two-minute run: about 3%).
So with ``model.warm_start=attributes`` (the cpu profile's default) both
towers start from a short supervised pretraining, made once and cached:

* data: a *separate* SynthPEDES draw (same parameters, ``synth_seed +``
  :data:`SEED_OFFSET`), training split only, so no image, caption or identity of
  the course's own train/val/test splits is seen; for a SynthPEDES folder of
  one's own (``data.root``) the parameters are the ones it records (see
  :func:`draw_params`), and the draw is still the kit's own, in the cache;
* task: from the global image feature and, separately, from the global caption
  feature, predict every described attribute of the person (gender, hair, hat,
  top type/colour/pattern, sleeves, bottom, shoes, bag...); one linear head
  per attribute, *shared* by the two towers, so both learn to write the same
  attribute into the same directions of the embedding::

      L = (1/F) sum_f [ CE(W_f v_img, a_f) + CE(W_f v_txt, a_f) ]

  (a caption need not mention every attribute, so its loss is a noisy target
  for the unmentioned ones; that is part of why this is a weak CLIP);
* ``model.warm_start_steps`` Adam steps at ``train.lr`` and ``train.batch_size``,
  no flips (a flip would move the bag to the other side), fixed seed, so every
  run of the course (any method, any ``train.seed``) starts from the same
  towers, as every IRRA run starts from the same CLIP.

With ``model.warm_start_mlm=true`` (off by default) the same pretraining also
trains IRRA's cross-modal module and masked-language head on the draw's
masked captions (IRRA's masking, ``model.mlm_prob``), so a run whose method
has that head (irra, kpdm, bilma) starts with a head that already fills
blanks from the image; the loss gains IRRA's ``L_mlm`` term.

The towers are kept under ``$TIREID_CACHE/towers/<key>.pt``, where the key
hashes everything the pretraining depends on; the file is written atomically.
Taught in ``02_baseline_irra``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from tireid_lite import __version__
from tireid_lite.cache import cache_dir
from tireid_lite.cache_lock import fill_lock
from tireid_lite.config import Config, apply_overrides, config_from_dict
from tireid_lite.data.readers import read_dataset
from tireid_lite.data.synth.knobs import SynthKnobs, knobs_from_config
from tireid_lite.data.torch_data import GalleryDataset, QueryDataset, TrainPairsDataset
from tireid_lite.data.transforms import build_transforms
from tireid_lite.errors import ConfigError, TIReIDError
from tireid_lite.losses.mlm import masked_accuracy, mlm_loss
from tireid_lite.models import build_model
from tireid_lite.progress import progress
from tireid_lite.text.tokenizers import Tokenizer, tokenizer_files

FORMAT = 1
SEED_OFFSET = 1000  # the pretraining draw is SynthPEDES seed ``data.synth_seed + SEED_OFFSET``
PRETRAIN_SEED = 0  # towers' initial weights and batch order: the same for every run
LOG_EVERY = 50
# The attributes a caption can describe (the undescribed body traits are left out).
FIELDS = (
    "gender", "hair_style", "hair_colour", "hat", "hat_colour", "top", "top_colour", "top_pattern",
    "pattern_colour", "sleeves", "bottom", "bottom_colour", "shoe_colour", "bag", "bag_colour", "bag_side",
)


@dataclass
class WarmStart:
    """Pretrained tower weights and how they were made (``log``: loss and accuracy every few steps;
    ``val_accuracy``: per attribute, on the pretraining draw's val split, for images and for captions)."""

    key: str
    image_tower: dict[str, torch.Tensor]
    text_tower: dict[str, torch.Tensor]
    fields: dict[str, list[str]]
    log: list[dict[str, float]]
    val_accuracy: dict[str, dict[str, float]]
    seconds: float
    mlm_head: dict[str, torch.Tensor] | None = None  # IRRA's cross-modal module and MLM head (model.warm_start_mlm)


def draw_params(cfg: Config) -> dict[str, Any]:
    """The SynthPEDES parameters the pretraining draw copies (its seed is then moved by :data:`SEED_OFFSET`).

    With an empty ``data.root`` (the kit's cached draw) they are the config's
    ``data.synth_*`` keys. With ``data.root`` a SynthPEDES folder (``tireid synth
    --out DIR``), they are the ones that folder records in its
    ``attributes.json`` (identity counts, images per identity, seed, difficulty
    knobs), so the towers learn from data drawn like the data they will train on;
    a folder without a readable record falls back to the config's ``data.synth_*``
    keys. The image size is always ``data.image_size``, the towers' input.
    """
    d = cfg.data
    params: dict[str, Any] = {"ids_train": d.synth_ids_train, "ids_val": d.synth_ids_val, "ids_test": d.synth_ids_test,
                              "images_per_id": d.synth_images_per_id, "seed": d.synth_seed,
                              "knobs": knobs_from_config(d)}
    if d.root:
        recorded = _recorded_params(Path(d.root).expanduser() / "attributes.json")
        if recorded is not None:
            params.update(recorded)
    params["knobs"] = SynthKnobs.from_kwargs(**params["knobs"]).as_dict()  # one spelling: 4 and 4.0 alike
    return params


def _recorded_params(path: Path) -> dict[str, Any] | None:
    """The generation parameters in a SynthPEDES ``attributes.json``, or None when it has no usable record."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))["params"]
        params = {name: int(record[name]) for name in ("ids_train", "ids_val", "ids_test", "images_per_id", "seed")}
        params["knobs"] = {str(k): v if isinstance(v, str) else float(v)
                           for k, v in dict(record.get("knobs", {})).items()}
        SynthKnobs.from_kwargs(**params["knobs"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ConfigError):
        return None
    return params


def pretrain_config(cfg: Config) -> Config:
    """The config of the pretraining data: the kit's own SynthPEDES draw (``data.root`` empty) with the
    parameters of :func:`draw_params` and seed ``+ SEED_OFFSET``, clean pairs, no flips.

    Whatever ``data.root`` holds (the cached draw or a folder of ``tireid synth``), the
    pretraining reads its own separate draw, never the training data.
    """
    if cfg.data.dataset != "synth":
        raise ConfigError(
            f"model.warm_start=attributes pretrains the towers on SynthPEDES attributes, which data.dataset="
            f"{cfg.data.dataset} does not have; set model.warm_start=none (tiny towers from random weights), "
            "or use --profile gpu with model.pretrained_dir=DIR (CLIP)"
        )
    params = draw_params(cfg)
    pre = _copy(cfg)
    pre.data.root = ""
    pre.data.synth_ids_train, pre.data.synth_ids_val = params["ids_train"], params["ids_val"]
    pre.data.synth_ids_test, pre.data.synth_images_per_id = params["ids_test"], params["images_per_id"]
    return apply_overrides(pre, [
        f"data.synth_seed={params['seed'] + SEED_OFFSET}", "data.noise_rate=0.0", "data.flip_p=0.0",
        "model.warm_start_mlm=false", "model.warm_start=none",
    ])


def _pretrain_root(cfg: Config) -> Path:
    """The pretraining draw of ``cfg`` (made and cached on first use), with the knobs of :func:`draw_params`."""
    from tireid_lite.data.synth import ensure_synth

    pre = pretrain_config(cfg)
    d = pre.data
    return Path(ensure_synth(ids_train=d.synth_ids_train, ids_val=d.synth_ids_val, ids_test=d.synth_ids_test,
                             images_per_id=d.synth_images_per_id, size=tuple(d.image_size), seed=d.synth_seed,
                             **draw_params(cfg)["knobs"]))


def _copy(cfg: Config) -> Config:
    return config_from_dict(cfg.to_dict())


def warm_start_key(cfg: Config, tokenizer: Tokenizer) -> str:
    """``towers-<hash>``: the hash covers the towers' shape, the data, the pretraining settings,
    the tokenizer's vocabulary and the kit version."""
    d, m, t = cfg.data, cfg.model, cfg.train
    draw = draw_params(cfg)
    settings = {
        "data": [list(d.image_size), d.max_length, d.pad, draw["ids_train"], draw["ids_val"], draw["ids_test"],
                 draw["images_per_id"], draw["seed"]],
        "model": [m.patch_size, m.image_width, m.image_depth, m.image_heads, m.text_kind, m.text_width,
                  m.text_depth, m.text_heads, m.embed_dim, m.image_pool, m.text_pool, m.warm_start_steps],
        "train": [t.lr, t.batch_size],
        "tokenizer": {name: hashlib.sha256(blob).hexdigest() for name, blob in tokenizer_files(tokenizer).items()},
        "format": FORMAT,
        "version": __version__,
    }
    knobs = {k: v for k, v in draw["knobs"].items() if v != getattr(SynthKnobs(), k, None)}
    if knobs:  # only knobs away from their defaults join the key, so the kit's own draw keeps its key
        settings["knobs"] = knobs
    if m.warm_start_mlm:  # likewise: towers made without the MLM head keep their key
        settings["mlm"] = [m.cross_depth, m.cross_heads, m.mlm_prob]
    return "towers-" + hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def warm_start_path(cfg: Config, tokenizer: Tokenizer) -> Path:
    """Where the pretrained towers for ``cfg`` are cached."""
    return cache_dir() / "towers" / f"{warm_start_key(cfg, tokenizer)}.pt"


class AttributeTargets:
    """Each image's attribute classes, read from SynthPEDES's ``attributes.json``."""

    def __init__(self, root: Path) -> None:
        path = Path(root) / "attributes.json"
        if not path.is_file():
            raise TIReIDError(f"{path} is missing: attribute pretraining needs SynthPEDES's attribute record")
        record = json.loads(path.read_text(encoding="utf-8"))
        identities = {d["id"]: d for d in record["identities"]}
        self.fields = {f: sorted({str(d[f]) for d in identities.values()}) for f in FIELDS}
        index = {f: {v: i for i, v in enumerate(values)} for f, values in self.fields.items()}
        self._by_path = {
            image["file_path"]: [index[f][str(identities[image["id"]][f])] for f in FIELDS]
            for image in record["images"]
        }

    def __call__(self, paths: list[str]) -> torch.Tensor:
        """``(B, F)`` class indices for the images at ``paths`` (relative to ``imgs/``)."""
        return torch.tensor([self._by_path[p] for p in paths], dtype=torch.long)


def majority_rates(cfg: Config, split: str = "val") -> dict[str, float]:
    """Per attribute, the share of ``split``'s images of the pretraining draw whose person has the
    commonest value: the accuracy of always guessing that value (what the held-out accuracies of
    :attr:`WarmStart.val_accuracy` must beat to have learned anything). Taught in ``02_baseline_irra``."""
    root = _pretrain_root(cfg)
    record = json.loads((Path(root) / "attributes.json").read_text(encoding="utf-8"))
    people = {entry["id"]: entry for entry in record["identities"]}
    shown = [people[image["id"]] for image in record["images"] if people[image["id"]]["split"] == split]
    if not shown:
        raise TIReIDError(f"the pretraining draw at {root} has no {split!r} images")
    rates = {}
    for field in FIELDS:
        values = [str(person[field]) for person in shown]
        rates[field] = max(values.count(v) for v in set(values)) / len(values)
    return rates


class AttributeHeads(nn.Module):
    """One linear classifier per attribute over the joint embedding, shared by both towers."""

    def __init__(self, dim: int, fields: dict[str, list[str]]) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(dim, len(values)) for values in fields.values())

    def forward(self, feats: torch.Tensor) -> list[torch.Tensor]:
        return [head(feats) for head in self.heads]  # F x (B, classes_f)


def attribute_loss(logits: list[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the F attributes: ``(1/F) sum_f CE(logits_f, targets[:, f])``."""
    return sum(F.cross_entropy(lg, targets[:, f]) for f, lg in enumerate(logits)) / len(logits)


def _accuracy(logits: list[torch.Tensor], targets: torch.Tensor) -> np.ndarray:
    return np.array([(lg.argmax(1) == targets[:, f]).float().mean().item() for f, lg in enumerate(logits)])


def pretrain_towers(cfg: Config, tokenizer: Tokenizer) -> WarmStart:
    """Run the attribute pretraining for ``cfg`` (see the module docstring) and return the towers.

    Touches no global random state: everything runs inside ``torch.random.fork_rng``.
    """
    pre = pretrain_config(cfg)
    root = _pretrain_root(cfg)
    dataset = read_dataset("synth", root)
    targets = AttributeTargets(root)
    size = tuple(int(s) for s in pre.data.image_size)
    transform = build_transforms(size, train=True, flip=False, pad=pre.data.pad, erase_p=pre.data.erasing_p)
    train_set = TrainPairsDataset(dataset, tokenizer, transform, flip_p=0.0, cache_images=True)
    with_mlm = cfg.model.warm_start_mlm
    start = time.perf_counter()
    with torch.random.fork_rng():
        torch.manual_seed(PRETRAIN_SEED)
        method = ["model.method=irra", "model.mlm_loss_weight=1"] if with_mlm else ["model.method=baseline"]
        model = build_model(apply_overrides(_copy(pre), [*method, "train.partitioner=none"]), tokenizer, 1)
        heads = AttributeHeads(model.image_tower.out_dim, targets.fields)
        model.train()
        params = [*model.image_tower.parameters(), *model.text_tower.parameters(), *heads.parameters()]
        mlm_head = model.heads["mlm"] if with_mlm else None
        if mlm_head is not None:
            params += list(mlm_head.parameters())
            train_set.caption_hook = model.caption_hook  # masked captions (mlm_ids, mlm_labels) with each item
        optimizer = torch.optim.Adam(params, lr=pre.train.lr)
        generator = torch.Generator().manual_seed(PRETRAIN_SEED)
        loader = DataLoader(train_set, batch_size=pre.train.batch_size, shuffle=True, drop_last=True,
                            generator=generator)
        log: list[dict[str, float]] = []
        steps = cfg.model.warm_start_steps
        bar = progress(total=steps, desc="attribute pretraining", unit="step")
        step = 0
        while step < steps:
            for batch in loader:
                paths = [train_set.pairs[int(i)].path for i in batch["index"]]
                y = targets(paths)  # (B, F)
                text_logits = heads(model.encode_texts(batch["caption_ids"]))
                if mlm_head is None:
                    image_logits = heads(model.encode_images(batch["images"]))
                    loss = attribute_loss(image_logits, y) + attribute_loss(text_logits, y)
                else:
                    image_tokens = model.encode_image_tokens(batch["images"])  # (B, 1+N, D)
                    image_logits = heads(model.image_global(image_tokens))
                    word_logits = mlm_head.logits(model, batch["mlm_ids"], image_tokens)  # (B, L, V)
                    loss = (attribute_loss(image_logits, y) + attribute_loss(text_logits, y)
                            + mlm_loss(word_logits, batch["mlm_labels"]))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                bar.update(1)
                if step % LOG_EVERY == 0 or step == steps:
                    log.append({"step": step, "loss": round(loss.item(), 4),
                                "image_acc": round(float(_accuracy(image_logits, y).mean()), 4),
                                "text_acc": round(float(_accuracy(text_logits, y).mean()), 4)})
                    if mlm_head is not None:
                        log[-1]["mlm_acc"] = round(float(masked_accuracy(word_logits, batch["mlm_labels"])), 4)
                if step >= steps:
                    break
        bar.close()
        model.eval()
        val_accuracy = _val_accuracy(model, heads, dataset, targets, tokenizer, size)
    return WarmStart(
        key=warm_start_key(cfg, tokenizer),
        image_tower={k: v.detach().clone() for k, v in model.image_tower.state_dict().items()},
        text_tower={k: v.detach().clone() for k, v in model.text_tower.state_dict().items()},
        fields=targets.fields,
        log=log,
        val_accuracy=val_accuracy,
        seconds=round(time.perf_counter() - start, 1),
        mlm_head=None if mlm_head is None else {k: v.detach().clone() for k, v in mlm_head.state_dict().items()},
    )


@torch.no_grad()
def _val_accuracy(model, heads, dataset, targets, tokenizer, size) -> dict[str, dict[str, float]]:
    """Per-attribute accuracy on the pretraining draw's val split, images and captions apart."""
    transform = build_transforms(size, train=False)
    images = GalleryDataset(dataset, "val", transform)
    queries = QueryDataset(dataset, "val", tokenizer)
    image_paths = list(images.paths)
    caption_paths = [images.paths[i] for i in queries.image_ids]
    result = {}
    for name, ds, paths, encode, key in (
        ("image", images, image_paths, model.encode_images, "images"),
        ("text", queries, caption_paths, model.encode_texts, "caption_ids"),
    ):
        loader = DataLoader(ds, batch_size=256)
        feats = torch.cat([encode(batch[key]) for batch in loader])
        acc = _accuracy(heads(feats), targets(paths))
        result[name] = {field: round(float(a), 4) for field, a in zip(FIELDS, acc)}
    return result


def save_warm_start(ws: WarmStart, path: Path) -> Path:
    """Write ``ws`` to ``path`` atomically (temporary file, then rename)."""
    tmp = ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
        os.close(fd)
        torch.save({"format": FORMAT, **ws.__dict__}, tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise TIReIDError(
            f"cannot write the pretrained towers {path}: {err.strerror or err}; free some space there or set "
            "TIREID_CACHE to a writable folder"
        ) from None
    finally:
        if tmp and os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_warm_start(path: Path) -> WarmStart:
    """Read a file written by :func:`save_warm_start`."""
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file
        raise TIReIDError(
            f"cannot read the pretrained towers {path} ({type(err).__name__}: the file is damaged or not "
            "one of the kit's); delete it and it will be made again"
        ) from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise TIReIDError(f"{path} is not a tower file of format {FORMAT}; delete it and it will be made again")
    state.pop("format")
    return WarmStart(**state)


def ensure_warm_start(cfg: Config, tokenizer: Tokenizer) -> WarmStart:
    """The cached pretrained towers for ``cfg``, made now when missing. Taught in ``02_baseline_irra``.

    Several processes asking at once make them once: the first pretrains while the others wait
    on ``<file>.lock`` (:func:`tireid_lite.cache_lock.fill_lock`), then load its file."""
    path = warm_start_path(cfg, tokenizer)
    if path.is_file():
        return load_warm_start(path)
    with fill_lock(path, "pretraining the towers"):
        if path.is_file():  # made by another process while this one waited
            return load_warm_start(path)
        print(f"pretraining the towers on SynthPEDES attributes ({cfg.model.warm_start_steps} steps, once; "
              f"kept in {path})", flush=True)
        ws = pretrain_towers(cfg, tokenizer)
        save_warm_start(ws, path)
    image, text = (sum(a.values()) / len(a) for a in (ws.val_accuracy["image"], ws.val_accuracy["text"]))
    print(f"pretrained in {ws.seconds:.0f} s: held-out attribute accuracy {100 * image:.1f}% from images, "
          f"{100 * text:.1f}% from captions", flush=True)
    return ws


def apply_warm_start(model: nn.Module, ws: WarmStart) -> None:
    """Load the pretrained towers of ``ws`` into ``model.image_tower`` and ``model.text_tower``, and its
    cross-modal module and MLM head (``model.warm_start_mlm``) into the model's MLM head when it has one."""
    for name, state in (("image_tower", ws.image_tower), ("text_tower", ws.text_tower)):
        try:
            result = getattr(model, name).load_state_dict(state, strict=False)
            stray = [k for k in result.missing_keys if k != "mask_token"] + list(result.unexpected_keys)
            if stray:  # the mask token (masked image modelling) is new and stays as initialised
                raise RuntimeError(f"keys that do not match: {', '.join(stray[:5])}")
        except RuntimeError as err:
            raise TIReIDError(
                f"the pretrained {name.replace('_', ' ')} ({ws.key}) does not fit this model ({err}); "
                "its shape settings differ from the ones it was made for"
            ) from err
    heads = getattr(model, "heads", {})
    if ws.mlm_head is not None and "mlm" in heads:
        try:
            heads["mlm"].load_state_dict(ws.mlm_head)
        except RuntimeError as err:
            raise TIReIDError(
                f"the pretrained MLM head ({ws.key}) does not fit this model ({err}); its cross-modal or "
                "vocabulary settings differ from the ones it was made for"
            ) from err
