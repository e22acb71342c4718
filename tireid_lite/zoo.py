"""A cache of trained models, so notebooks that need a trained baseline do not each train it again.

:func:`get_or_train` returns the model for ``(method, profile, seed)`` (plus any
config overrides), training it with the :class:`~tireid_lite.train.trainer.Trainer`
on first use and loading it from ``$TIREID_CACHE/models/<key>/`` afterwards.
The key names the method, profile and seed and ends with a hash of the whole
config and the kit's version, so changing any setting trains a new model
instead of returning a stale one.

A run trains into a temporary folder beside its final place and is renamed
into place only when it has finished (its ``test_metrics.json`` written), so
an interrupted run leaves nothing that looks complete, and two processes
asking at once both end with a whole model (the first rename wins). A cache
folder without ``test_metrics.json`` is not a finished run; it is trained again
and replaced.

Runs that differ only in ``train.partitioner`` (05_kpdm_trusted_consensus
trains none, CCD and TCP at each noise rate) share their warm-up: the run
with ``partitioner=none`` keeps its state at the end of each warm-up epoch
(``epoch<e>.pt``), and a CCD or TCP run branches from it
(:class:`~tireid_lite.train.trainer.Trainer`'s ``branch_from``), training only
the epochs after the warm-up. The result is the same as training it from
scratch.

Taught in ``02_baseline_irra``; used by every later notebook.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from tireid_lite import __version__
from tireid_lite.cache import cache_dir
from tireid_lite.cache_lock import fill_lock
from tireid_lite.config import Config, apply_overrides, get_profile, identity_dict
from tireid_lite.errors import TIReIDError
from tireid_lite.models.head import NEEDS_PAIR_WEIGHTS
from tireid_lite.models.methods import method_needs
from tireid_lite.models.trained import TrainedModel, load_trained
from tireid_lite.train.trainer import Trainer

DONE_MARKER = "test_metrics.json"  # the Trainer writes it last
METRIC_NAMES = ("R1", "R5", "R10", "mAP", "mINP")


@dataclass
class ZooModel:
    """A trained model from the cache: where it lives, how it was trained, how it scored."""

    key: str
    folder: Path
    cfg: Config
    trained: TrainedModel  # the best checkpoint (chosen on val), in eval mode
    test_metrics: dict[str, float]  # R1, R5, R10, mAP, mINP of the best checkpoint on test
    trained_now: bool  # True when this call trained it, False when it came from the cache

    @property
    def model(self):
        return self.trained.model

    @property
    def tokenizer(self):
        return self.trained.tokenizer

    def log(self) -> pd.DataFrame:
        """The training log (one row per logged step: epoch, step, lr, losses, ...)."""
        return pd.read_csv(self.folder / "log.csv")

    def history(self) -> list[dict]:
        """One record per epoch, with its val metrics (``metrics.json`` of the run)."""
        return json.loads((self.folder / "metrics.json").read_text(encoding="utf-8")).get("epochs", [])

    def train_seconds(self) -> float:
        """Wall-clock seconds the training epochs took (evaluation excluded)."""
        return float(sum(epoch.get("train_seconds", 0.0) for epoch in self.history()))


def zoo_dir() -> Path:
    """``$TIREID_CACHE/models`` (default ``~/.cache/tireid-lite/models``)."""
    return cache_dir() / "models"


def zoo_config(method: str, profile: str = "cpu", seed: int = 0, overrides: Sequence[str] = ()) -> Config:
    """The config :func:`get_or_train` trains: the profile, then method and seed, then ``overrides``."""
    return apply_overrides(get_profile(profile), [f"model.method={method}", f"train.seed={seed}", *overrides])


def model_key(cfg: Config) -> str:
    """``<method>-<profile>-seed<seed>-<hash>``; the hash covers the whole config (but keys added later
    while they keep the earlier behaviour, see :data:`~tireid_lite.config.NEUTRAL_KEYS`) and the kit version."""
    text = json.dumps({"config": identity_dict(cfg), "version": __version__}, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{cfg.model.method}-{cfg.profile}-seed{cfg.train.seed}-{digest}"


def _load(key: str, folder: Path, trained_now: bool, device: str) -> ZooModel:
    trained = load_trained(folder / "best.pt", device=device)
    saved = json.loads((folder / DONE_MARKER).read_text(encoding="utf-8"))
    metrics = {name: float(saved[name]) for name in METRIC_NAMES}
    return ZooModel(key=key, folder=folder, cfg=trained.cfg, trained=trained, test_metrics=metrics,
                    trained_now=trained_now)


def _shares_warmup(cfg: Config) -> bool:
    """Whether runs of ``cfg`` that differ only in the partitioner share a warm-up worth keeping: the
    method's losses read per-pair weights (a partitioner can act on them) and epochs follow the warm-up."""
    warmup = cfg.train.partition_warmup_epochs
    return NEEDS_PAIR_WEIGHTS in method_needs(cfg) and 1 <= warmup < cfg.train.num_epochs


def get_or_train(
    method: str = "baseline",
    profile: str = "cpu",
    seed: int = 0,
    *,
    overrides: Sequence[str] = (),
    retrain: bool = False,
    device: str = "cpu",
) -> ZooModel:
    """The trained model for ``(method, profile, seed, overrides)``: from the cache, or trained now.

    ``overrides`` are ``section.key=value`` strings as for ``tireid train --set``.
    ``retrain=True`` trains again and replaces the cached copy. The model is
    returned on ``device`` in eval mode. Processes asking for the same model at
    once train it once: the others wait on ``<folder>.lock``, then load it.
    Taught in ``02_baseline_irra``.
    """
    key = model_key(zoo_config(method, profile, seed, overrides))
    folder = zoo_dir() / key
    if (folder / DONE_MARKER).exists() and not retrain:
        return _load(key, folder, trained_now=False, device=device)
    with fill_lock(folder, f"training {key}"):
        if retrain or not (folder / DONE_MARKER).exists():
            return _get_or_train(method, profile, seed, overrides=overrides, retrain=retrain, device=device)
    return _load(key, folder, trained_now=False, device=device)  # trained by another process meanwhile


def _get_or_train(
    method: str = "baseline",
    profile: str = "cpu",
    seed: int = 0,
    *,
    overrides: Sequence[str] = (),
    retrain: bool = False,
    device: str = "cpu",
) -> ZooModel:
    """:func:`get_or_train`'s work, with its lock held: load the cached model, or train it now."""
    cfg = zoo_config(method, profile, seed, overrides)
    key = model_key(cfg)
    folder = zoo_dir() / key
    if (folder / DONE_MARKER).exists() and not retrain:
        return _load(key, folder, trained_now=False, device=device)
    branch_from = None
    if _shares_warmup(cfg) and cfg.train.partitioner != "none":
        sibling = get_or_train(method, profile, seed, overrides=[*overrides, "train.partitioner=none"])
        candidate = sibling.folder / f"epoch{cfg.train.partition_warmup_epochs}.pt"
        branch_from = candidate if candidate.is_file() else None  # a sibling trained without it: from scratch
    share = _shares_warmup(cfg) and cfg.train.partitioner == "none"
    keep = tuple(range(1, cfg.train.partition_warmup_epochs + 1)) if share else ()  # a branch needs its best too
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=folder.parent))
    try:
        Trainer(cfg, tmp, branch_from=branch_from, keep_epochs=keep).fit()
        if not (tmp / DONE_MARKER).exists():
            raise TIReIDError(f"training {key} ended without test metrics in {tmp}; the run has no test split")
        if folder.exists() and (retrain or not (folder / DONE_MARKER).exists()):
            shutil.rmtree(folder)  # the copy being replaced, or a folder without a finished run in it
        try:
            os.replace(tmp, folder)
        except OSError as err:
            if not (folder / DONE_MARKER).exists():  # not a finished copy from another process
                raise TIReIDError(
                    f"cannot move the trained model {key} into {folder} ({err}); "
                    f"check that {folder.parent} is writable, or set TIREID_CACHE to another folder"
                ) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _load(key, folder, trained_now=True, device=device)


def prepare_shared(profile: str = "cpu") -> list[str]:
    """Build, once, what every run of ``profile`` starts from: the dataset (the SynthPEDES draw, generated
    when missing) and, with ``model.warm_start=attributes``, the pretrained towers. ``tireid course --jobs N``
    calls it before it runs notebooks side by side, so that none of them waits on another for these.
    Returns what was found or built, one line each."""
    from tireid_lite.data.build import build_data
    from tireid_lite.train.warm_start import ensure_warm_start, warm_start_path

    cfg = zoo_config("baseline", profile, 0)
    data = build_data(cfg, train=False)  # reads the dataset; SynthPEDES is generated here when missing
    done = [f"dataset {cfg.data.dataset}: {len(data.dataset.split('train')):,} training images"]
    if cfg.model.warm_start == "attributes":
        ensure_warm_start(cfg, data.tokenizer)
        done.append(f"warm start: {warm_start_path(cfg, data.tokenizer).name}")
    return done
