"""The Trainer: one readable training loop with evaluation, checkpoints and exact resume.

Each epoch::

    reseed the global generators from (seed, epoch); point the loader at the epoch
    procedures between epochs             # the noise partitioner: per-pair weights, figures for the record
    for batch in loader:                  # global batch, split across processes under DDP
        batch["pair_weights"] = ...       # when a partition is in force
        out = model(batch)                # {"loss": total, "sdm": ..., "id": ..., ...}
        out["loss"].backward(); clip the gradient norm; Adam step; lr schedule step
    evaluate on val (every eval_every epochs); keep best.pt by val R1; write last.pt

and at the end the best checkpoint is evaluated once on test. Before the first
epoch a model with ``prepare(data)`` sets itself up for the dataset (KPDM
parses its key phrases), then its ``caption_hook`` goes to the training set.
What the data must carry is asked of the method
(:func:`~tireid_lite.models.methods.method_needs`: part maps for BiLMa's
semantic target). The procedures between epochs belong to the Trainer, never
to a head: the noise partitioner (:mod:`tireid_lite.train.noise`) computes
per-pair weights that reach the losses as ``batch["pair_weights"]``.
The optimiser is Adam over the model's parameter groups (IRRA's: new modules
learn faster), the learning rate follows a linear warm-up then a cosine (per
step), and on CUDA the forward pass runs under bf16 autocast. With ``train.compile`` the step
calls the model's forward through ``torch.compile`` (:mod:`tireid_lite.train.compiled`);
evaluation and checkpoints use the eager module.

Files in ``out_dir`` (written by rank 0 only): ``config.yaml``; ``log.csv``
(every ``log_every`` steps: epoch, step, lr, every loss and logged value,
gradient norm; each the mean over the steps since the previous row, averaged over processes); ``metrics.json`` (each evaluation);
``best.pt`` and ``last.pt`` (atomic; see :mod:`tireid_lite.checkpoint`);
``test_metrics.json`` (the best checkpoint on test); ``epoch<e>.pt`` for the
epochs listed in ``keep_epochs``; ``tensorboard/`` (the log's scalars as ``train/*`` by step,
``val/*`` and ``test/*`` at the step they were measured) when the optional ``tensorboard`` package is installed.

Branching (``branch_from``): runs that differ only in their noise partitioner
are the same run until the partitioner first acts, after
``train.partition_warmup_epochs``. A new run may therefore start from another
run's checkpoint of an epoch within the warm-up (its ``epoch<e>.pt``) when the
two configs differ in :data:`BRANCH_FREE_KEYS` alone; it continues exactly as
it would have from scratch, because the warm-up epochs are bitwise the same
(tested). The zoo uses this to train a shared warm-up once.

Why a resumed run ends exactly where an uninterrupted one does: ``last.pt``
holds the model, Adam's moments, the scheduler's step and the selection state
at an epoch boundary, and everything random in an epoch (batch order, each
item's augmentation and masks, the global generators) is drawn from
``(seed, epoch)`` and the item index alone. Taught in ``02_baseline_irra``;
notebook ``09`` (full GPU training) runs it under ``torchrun``.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tireid_lite import distributed
from tireid_lite.checkpoint import (
    STREAM_EPOCH,
    derive_seed,
    load_checkpoint,
    require_keys,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from tireid_lite.config import Config, config_differences, module_lrs, no_decay_rules, save_config, validate
from tireid_lite.data.build import Data
from tireid_lite.distributed import resolve_amp
from tireid_lite.errors import ConfigError, TIReIDError
from tireid_lite.heap import release_freed_memory
from tireid_lite.eval.retrieval import evaluate as evaluate_retrieval
from tireid_lite.models import build_model
from tireid_lite.progress import progress
from tireid_lite.text.tokenizers import tokenizer_files, tokenizer_from_files
from tireid_lite.train.build import build_train_loader, build_training_data, set_loader_epoch
from tireid_lite.train.compiled import compiled_forward
from tireid_lite.train.noise import NoisePartitioner
from tireid_lite.train.run_files import TENSORBOARD_DIR, TensorBoardScalars, append_log, copy_file, trim_log, write_json
from tireid_lite.train.schedule import WarmupCosine
from tireid_lite.train.warm_start import WarmStart, apply_warm_start, ensure_warm_start

CRASH_ENV = "TIREID_CRASH_AT_STEP"  # test hook: hard exit right after this global step
CRASH_EXIT_CODE = 17
CHECKPOINT_FORMAT = 1
CHECKPOINT_KEYS = ("format", "model", "optimizer", "scheduler", "epoch", "step", "best_metric", "best_epoch",
                   "history", "config", "tokenizer", "num_classes", "rng")
# Keys that may change between an interrupted run and its resumption: they move
# files or set parallelism, and do not change what is computed.
RESUME_FREE_KEYS = ("data.root", "data.num_workers", "train.threads")
# Keys in which a branch may differ from the run it starts from (within the partition warm-up).
BRANCH_FREE_KEYS = RESUME_FREE_KEYS + ("train.partitioner",)
SELECTION_METRIC = "R1"
# What a run leaves before its first checkpoint; a folder holding nothing else may be started over.
STARTUP_FILES = frozenset({"config.yaml", "log.csv", TENSORBOARD_DIR})


def _check_train_keys(cfg: Config) -> None:
    """Values the Trainer cannot use that the config's own checks let through."""
    checks = [
        ("train.seed", cfg.train.seed >= 0, "a non-negative integer"),
        ("train.eval_every", cfg.train.eval_every >= 1, "at least 1 (epochs)"),
        ("train.log_every", cfg.train.log_every >= 1, "at least 1 (steps)"),
        ("train.threads", cfg.train.threads >= 0, "0 (torch's default) or a positive thread count"),
        ("train.grad_clip", cfg.train.grad_clip >= 0, "0 (no clipping) or a positive norm"),
    ]
    for key, ok, expected in checks:
        if not ok:
            value = getattr(cfg.train, key.split(".")[1])
            raise ConfigError(f"config key {key!r} is {value!r}; it must be {expected}")


def _warm_start(cfg: Config, data: Data) -> WarmStart:
    """The cached pretrained towers (see :mod:`tireid_lite.train.warm_start`); under DDP rank 0 makes
    them while the other ranks wait, then they read the same file."""
    if distributed.is_main():
        ws = ensure_warm_start(cfg, data.tokenizer)
        distributed.barrier()
        return ws
    distributed.barrier()
    return ensure_warm_start(cfg, data.tokenizer)


def _prepare_model(model: nn.Module, data: Data) -> None:
    """Let a model that has ``prepare(data)`` set itself up for the dataset (KPDM parses the captions'
    key phrases into a cache); under DDP rank 0 goes first while the other ranks wait, then they read
    what it cached."""
    prepare = getattr(model, "prepare", None)
    if not callable(prepare):
        return
    if distributed.is_main():
        prepare(data)
        distributed.barrier()
        return
    distributed.barrier()
    prepare(data)


def _crash_step() -> int | None:
    raw = os.environ.get(CRASH_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ConfigError(f"environment variable {CRASH_ENV}={raw!r} must be a step number; unset it to train normally")
    return int(raw)


class Trainer:
    """Train ``cfg``'s model, writing everything to ``out_dir`` (see the module docstring).

    ``data`` and ``model`` default to ``build_data(cfg)`` and
    ``build_model(cfg, data.tokenizer, data.num_classes)``; pass your own to
    train a variant. ``out_dir`` must be new or empty (or hold only the
    ``config.yaml`` and ``log.csv`` of a run stopped before its first
    checkpoint) unless ``resume=True``, which continues from its ``last.pt``,
    starts afresh (and says so) when the folder holds no run yet, and refuses a
    folder that holds a run without ``last.pt``. ``branch_from`` starts a new run from another run's checkpoint
    within the partition warm-up (see the module docstring); ``keep_epochs``
    lists epochs whose state is also kept as ``epoch<e>.pt``. ``device``
    defaults to CUDA when available.
    """

    def __init__(
        self,
        cfg: Config,
        out_dir: str | os.PathLike[str],
        *,
        data: Data | None = None,
        model: nn.Module | None = None,
        resume: bool = False,
        branch_from: str | os.PathLike[str] | None = None,
        keep_epochs: tuple[int, ...] = (),
        device: str | None = None,
    ) -> None:
        self.cfg = validate(cfg)
        _check_train_keys(cfg)
        self.out_dir = Path(out_dir)
        self.dist = distributed.init_distributed(device)
        self.device = self.dist.device
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        self.amp_dtype = resolve_amp(cfg.train.amp, self.device)
        self.crash_at = _crash_step()
        self.keep_epochs = tuple(int(e) for e in keep_epochs)
        self._branch_best: dict[str, Any] | None = None  # the branch source's best state, when it is not the source

        if branch_from is not None and resume:
            raise ConfigError("resume=True continues a run in its own folder; it cannot also branch_from another run")
        resume_state = self._check_out_dir(resume)
        source = self.out_dir / "last.pt"
        if branch_from is not None:
            source = Path(branch_from)
            resume_state = self._branch_state(source)
        distributed.barrier()  # every rank has looked at out_dir before rank 0 writes to it
        seed_everything(cfg.train.seed)
        if data is None:
            tokenizer = tokenizer_from_files(resume_state["tokenizer"]) if resume_state else None
            data = build_training_data(cfg, tokenizer)
        if data.train_set is None:
            raise ConfigError("the Trainer needs training data; build it with build_data(cfg, train=True)")
        self.data = data
        self.warm_start: WarmStart | None = None  # the pretrained towers this run started from, if any
        if model is None:
            model = build_model(cfg, data.tokenizer, data.num_classes)
            if cfg.model.warm_start == "attributes" and not resume_state:
                self.warm_start = _warm_start(cfg, data)
                apply_warm_start(model, self.warm_start)
        self.raw_model = model.to(self.device)
        _prepare_model(model, data)
        data.train_set.caption_hook = getattr(model, "caption_hook", None)
        self.model: nn.Module = self.raw_model
        if distributed.is_distributed():
            # find_unused_parameters: a method's switches may leave a head's parameters out of a step.
            self.model = DistributedDataParallel(
                self.raw_model,
                device_ids=[self.dist.local_rank] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )

        self.forward = compiled_forward(self.model) if cfg.train.compile else self.model  # the training forward
        self.loader = build_train_loader(
            data.train_set, cfg, rank=self.dist.rank, world_size=self.dist.world_size,
            pin_memory=self.device.type == "cuda",
        )
        self.steps_per_epoch = len(self.loader)
        self.schedule = WarmupCosine(
            total_steps=cfg.train.num_epochs * self.steps_per_epoch,
            warmup_steps=round(cfg.train.warmup_epochs * self.steps_per_epoch),
        )
        groups = self.raw_model.parameter_groups(
            cfg.train.lr, cfg.train.weight_decay, cfg.train.new_module_lr_factor, cfg.train.pretrained_lr_factor,
            bias_lr_factor=cfg.train.bias_lr_factor, no_decay=no_decay_rules(cfg.train.no_decay),
            module_lr=module_lrs(cfg.train.module_lr),
        )
        self.optimizer = torch.optim.Adam(groups, lr=cfg.train.lr, betas=(0.9, 0.999), eps=cfg.train.adam_eps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule)
        self._tokenizer_files = tokenizer_files(data.tokenizer)
        self.partitioner = NoisePartitioner(cfg)  # the procedure between epochs
        self.pair_weights: torch.Tensor | None = None  # (N,) by pair index while a partition is in force
        self.epoch_stats: dict[str, Any] = {}  # what the procedures report for the current epoch

        self.epoch = 0  # epochs completed
        self.step = 0  # optimiser steps taken
        self.best_metric: float | None = None  # best val R1 so far
        self.best_epoch: int | None = None
        self.history: list[dict[str, Any]] = []  # one record per finished epoch (with its val metrics)
        self._log_columns: list[str] | None = None
        self._window: tuple[list[str], torch.Tensor, int] | None = None  # scalar sums since the last log row
        if resume_state:
            self._restore(resume_state)
            verb = "branching from" if branch_from is not None else "resuming"
            self.say(f"{verb} {source.parent.name}/{source.name}: epoch {self.epoch} done, step {self.step}")
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out_dir / "config.yaml")
            if branch_from is not None:
                self._start_branch(source)
            self._trim_log()
        # TensorBoard scalars beside log.csv when tensorboard is installed (rank 0); a resumed run drops
        # the events a crash left past its restored step
        self.board = TensorBoardScalars(self.out_dir, purge_step=self.step + 1 if resume_state else None)

    # ------------------------------------------------------------------ set-up helpers

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    def say(self, message: str) -> None:
        """Print one line from rank 0."""
        if self.is_main:
            print(message, flush=True)

    def _check_out_dir(self, resume: bool) -> dict[str, Any] | None:
        """Refuse to overwrite a run; when resuming, return the state of ``last.pt`` if there is one."""
        out = self.out_dir
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is a file; give a folder for the run")
        entries = {item.name for item in out.iterdir()} if out.is_dir() else set()
        unstarted = entries <= STARTUP_FILES  # a run stopped (e.g. by bad data) before its first checkpoint
        if not resume:
            if entries and not unstarted:
                raise ConfigError(
                    f"output folder {out} is not empty; pass --resume (resume=True) to continue the run in it, "
                    "or choose a new --out (runs are never overwritten)"
                )
            if entries:
                self.say(f"{out} holds only {', '.join(sorted(entries))} of a run that stopped before its first "
                         "checkpoint: starting that run over")
            return None
        last = out / "last.pt"
        if not last.is_file():
            if not unstarted:
                raise ConfigError(
                    f"cannot resume {out}: it holds a run ({', '.join(sorted(entries - STARTUP_FILES)[:4])}) but no "
                    "last.pt to continue from; choose a new --out, or move that run's files away to start over"
                )
            if entries:
                self.say(f"no last.pt in {out}: the run starts from scratch")
            return None
        state = load_checkpoint(last)
        require_keys(state, CHECKPOINT_KEYS, last)
        changed = config_differences(state["config"], self.cfg.to_dict(), free=RESUME_FREE_KEYS)
        if changed:
            raise ConfigError(
                f"cannot resume {last} with a different config ({'; '.join(changed[:3])}); "
                "resume with the run's own settings (its config.yaml) or start a new --out"
            )
        return state

    def _branch_state(self, path: Path) -> dict[str, Any]:
        """The state of ``path`` when this run may branch from it (same config but the partitioner,
        saved within the partition warm-up); one clear error otherwise."""
        if not path.is_file():
            raise ConfigError(f"cannot branch from {path}: no such checkpoint")
        state = load_checkpoint(path)
        require_keys(state, CHECKPOINT_KEYS, path)
        changed = config_differences(state["config"], self.cfg.to_dict(), free=BRANCH_FREE_KEYS)
        if changed:
            raise ConfigError(
                f"cannot branch from {path}: its config differs in more than the partitioner "
                f"({'; '.join(changed[:3])}); branch only between runs that differ in train.partitioner"
            )
        warmup = self.cfg.train.partition_warmup_epochs
        if int(state["epoch"]) > warmup:
            raise ConfigError(
                f"cannot branch from {path}: it was saved after epoch {state['epoch']}, past the partition "
                f"warm-up (train.partition_warmup_epochs={warmup}), so its partitioner had already acted"
            )
        self._branch_best = self._best_of_source(path, state)  # its best epoch so far must be at hand
        return state

    def _best_of_source(self, source: Path, state: dict[str, Any]) -> dict[str, Any] | None:
        """The state of the branch source's best epoch so far: the source itself, or its ``epoch<b>.pt``."""
        best = state["best_epoch"]
        if best is None or best == state["epoch"]:
            return None
        kept = source.parent / f"epoch{best}.pt"
        if not kept.is_file():
            raise ConfigError(
                f"cannot branch from {source}: its best epoch so far ({best}) is not kept beside it as {kept.name}; "
                f"train the source with keep_epochs covering the warm-up epochs"
            )
        return load_checkpoint(kept)

    def _start_branch(self, source: Path) -> None:
        """Give the branch its own ``best.pt`` (as of the branch point, with this run's config) and the
        source's log up to the branch point."""
        best = self._branch_best
        if best is None:
            if self.best_epoch is not None:
                save_checkpoint(self.out_dir / "best.pt", self.state_dict())
        else:
            save_checkpoint(self.out_dir / "best.pt", {**best, "config": self.cfg.to_dict()})
        source_log = source.parent / "log.csv"
        if source_log.is_file():
            copy_file(source_log, self.out_dir / "log.csv")

    def _restore(self, state: dict[str, Any]) -> None:
        self.raw_model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.best_metric, self.best_epoch = state["best_metric"], state["best_epoch"]
        self.history = list(state["history"])
        set_rng_state(state["rng"])

    def state_dict(self) -> dict[str, Any]:
        """Everything :meth:`_restore` needs, in types ``torch.load(weights_only=True)`` accepts."""
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "config": self.cfg.to_dict(),
            "tokenizer": self._tokenizer_files,
            "num_classes": self.data.num_classes,
            "rng": rng_state(),
        }

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    # ------------------------------------------------------------------ the loop

    def fit(self) -> dict[str, float]:
        """Train the remaining epochs, then evaluate the best checkpoint on test; return its metrics."""
        cfg = self.cfg
        has_val = self.data.has_split("val")
        if not has_val:
            self.say(f"{self.data.dataset.name} has no val split: the last epoch's model is kept as best.pt")
        for epoch in range(self.epoch + 1, cfg.train.num_epochs + 1):
            started = time.perf_counter()
            self.train_epoch(epoch)
            release_freed_memory()  # the epoch's activations and batches, freed: back to the system (heap.py)
            self.epoch = epoch
            seconds = round(time.perf_counter() - started, 3)
            record: dict[str, Any] = {"epoch": epoch, "step": self.step, "train_seconds": seconds}
            record.update(self.epoch_stats)  # e.g. a noise partition's figures
            is_best = False
            if has_val and (epoch % cfg.train.eval_every == 0 or epoch == cfg.train.num_epochs):
                metrics = self.evaluate("val")
                record.update(split="val", **metrics)
                is_best = self.best_metric is None or metrics[SELECTION_METRIC] > self.best_metric
                if is_best:
                    self.best_metric, self.best_epoch = metrics[SELECTION_METRIC], epoch
                mark = " (best)" if is_best else ""
                self.say(f"epoch {epoch}/{cfg.train.num_epochs} val {_format_metrics(metrics)}{mark}")
                if self.is_main:
                    self.board.add("val", metrics, self.step)
            elif not has_val and epoch == cfg.train.num_epochs:
                is_best, self.best_epoch = True, epoch
            self.history.append(record)
            if self.is_main:  # best.pt first: a crash between the two writes then only repeats this epoch
                state = self.state_dict()
                if is_best:
                    save_checkpoint(self.out_dir / "best.pt", state)
                if epoch in self.keep_epochs:
                    save_checkpoint(self.out_dir / f"epoch{epoch}.pt", state)
                save_checkpoint(self.out_dir / "last.pt", state)
                self._write_metrics(has_val)
            distributed.barrier()
        return self.test_best()

    def train_epoch(self, epoch: int) -> None:
        """One pass over the training loader (``epoch`` is 1-based)."""
        cfg = self.cfg
        seed_everything(derive_seed(cfg.train.seed, epoch, STREAM_EPOCH))
        set_loader_epoch(self.loader, epoch)
        self.before_epoch(epoch)
        self.model.train()
        last = len(self.loader) - 1
        bar_args = {} if self.is_main else {"disable": True}
        bar = progress(self.loader, desc=f"epoch {epoch}/{cfg.train.num_epochs}", total=len(self.loader), **bar_args)
        for i, batch in enumerate(bar):
            batch = {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}
            if self.pair_weights is not None:
                batch["pair_weights"] = self.pair_weights[batch["index"]]  # (B,)
            lr = cfg.train.lr * self.schedule(self.step)
            with self._autocast():
                out = self.forward(batch)
            self.optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            grad_norm = None
            if cfg.train.grad_clip > 0:
                grad_norm = nn.utils.clip_grad_norm_(self.raw_model.parameters(), cfg.train.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            self._add_to_window(out, grad_norm)
            if self.step % cfg.train.log_every == 0 or i == last:
                logged = self._log_step(epoch, lr)
                bar.set_postfix(loss=f"{logged['loss']:.3f}")
            if self.crash_at == self.step:
                os._exit(CRASH_EXIT_CODE)  # the crash-test hook: no cleanup, no flushing

    def before_epoch(self, epoch: int) -> None:
        """The procedures between epochs: the noise partitioner sets this epoch's pair weights."""
        self.pair_weights, self.epoch_stats = self.partitioner.before_epoch(
            epoch, self.raw_model, self.data, device=self.device, amp_dtype=self.amp_dtype)
        if self.epoch_stats:
            self.say(self.partitioner.describe(epoch, self.epoch_stats))

    def _add_to_window(self, out: dict[str, torch.Tensor], grad_norm: torch.Tensor | None) -> None:
        """Add this step's scalars to the sums of the steps since the last log row (no device sync)."""
        names = sorted(k for k, v in out.items() if k != "loss" and torch.is_tensor(v) and v.ndim == 0)
        values = [out["loss"], *(out[k] for k in names)]
        if grad_norm is not None:
            names.append("grad_norm")
            values.append(grad_norm)
        stacked = torch.stack([v.detach().float() for v in values])  # (K,)
        keys = ["loss", *names]
        if self._window is None or self._window[0] != keys:
            self._window = (keys, torch.zeros_like(stacked), 0)
        _, total, count = self._window
        self._window = (keys, total + stacked, count + 1)

    def _log_step(self, epoch: int, lr: float) -> dict[str, float]:
        """Average the scalars over the steps since the last row and over processes, check the loss,
        append a row to log.csv. A row is a mean over up to ``train.log_every`` steps, not one batch:
        a single batch's loss varies by several percent from batch to batch."""
        keys, total, count = self._window
        self._window = None
        stacked = distributed.all_reduce_mean(total / count)  # (K,)
        logged = dict(zip(keys, stacked.tolist()))
        if not math.isfinite(logged["loss"]):
            raise TIReIDError(
                f"the training loss is {logged['loss']} at step {self.step} (epoch {epoch}); "
                "lower train.lr or train.grad_clip, or check the data with `tireid check-data`"
            )
        if self.is_main:
            self._append_log({"epoch": epoch, "step": self.step, "lr": lr, **logged})
            self.board.add("train", {"lr": lr, **logged}, self.step)
        return logged

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, split: str = "val") -> dict[str, float]:
        """R1, R5, R10, mAP, mINP of the current model on ``split`` (every process must call it)."""
        return evaluate_retrieval(
            self.raw_model, self.data, split, batch_size=2 * self.cfg.train.batch_size, device=self.device,
            amp_dtype=self.amp_dtype, num_workers=self.cfg.data.num_workers,
        )

    def test_best(self) -> dict[str, float]:
        """Load ``best.pt`` into the model, evaluate it on test and write ``test_metrics.json``."""
        best = self.out_dir / "best.pt"
        distributed.barrier()
        state = load_checkpoint(best, map_location=self.device)
        self.raw_model.load_state_dict(state["model"])
        if not self.data.has_split("test"):
            self.say(f"{self.data.dataset.name} has no test split: no test evaluation")
            return {}
        metrics = self.evaluate("test")
        self.say(f"best epoch {state['best_epoch']} test " + _format_metrics(metrics))
        if self.is_main:
            write_json(self.out_dir / "test_metrics.json", {"epoch": state["best_epoch"], "split": "test", **metrics})
            self.board.add("test", metrics, self.step)
            self.board.close()
        return metrics

    # ------------------------------------------------------------------ files

    def _write_metrics(self, has_val: bool) -> None:
        write_json(
            self.out_dir / "metrics.json",
            {
                "selection": f"val {SELECTION_METRIC}" if has_val else "last epoch (no val split)",
                "best_epoch": self.best_epoch,
                "best_val_" + SELECTION_METRIC: self.best_metric,
                "epochs": self.history,
            },
        )

    def _append_log(self, row: dict[str, Any]) -> None:
        self._log_columns = append_log(self.out_dir / "log.csv", row, self._log_columns)

    def _trim_log(self) -> None:
        """Drop log rows past the restored step (written before a crash), so the log matches the state."""
        columns = trim_log(self.out_dir / "log.csv", self.step)
        if columns is not None:
            self._log_columns = columns


def _format_metrics(metrics: dict[str, float]) -> str:
    return " ".join(f"{name} {value:.2f}" for name, value in metrics.items())
