"""Benchmark: the cpu-profile training step at batch 64, a whole cpu-profile run, and peak memory.

Three figures, each against its budget in ``DESIGN.md``:

* the median wall time of one optimiser step (forward, backward, gradient
  clipping, Adam) of the cpu-profile model at batch 64, for ``baseline``
  (SDM + ID), ``irra`` (+ masked-language head), ``bilma`` (+ masked image
  modelling) and ``kpdm`` (token selection, TAL, phrase masking, FMLM), on
  batches prepared in advance; loading a batch (PNG decoding and augmentation) is timed apart;
* the attribute pretraining of the towers (``model.warm_start``), made once per
  cache, timed on its own;
* a whole ``tireid train --profile cpu`` run of ``baseline`` from those towers
  (epochs, per-epoch validation and the final test evaluation), with the test
  R@1 it reaches: the run must fit in two minutes and land in the calibrated
  band (R@1 30-70%); the pretraining plus the run is reported too;
* the process's peak resident memory over all of the above.

``--quick`` skips the whole run and times fewer steps.
Run alone: ``python benchmarks/bench_train_step.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time

import torch

from run_all import budget_met
from tireid_lite.config import apply_overrides, get_profile
from tireid_lite.data.build import build_data
from tireid_lite.train.build import build_train_loader, build_training_data, set_loader_epoch
from tireid_lite.train.trainer import Trainer

BATCH = 64
BUDGET_TEXT = (
    "cpu-profile training step (batch 64): <= 0.3 s on 2 cores; one cpu-profile training run: at most "
    "2 minutes, baseline test R@1 between 30% and 70%; peak memory of the course: <= 4 GiB."
)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_steps(method: str, steps: int) -> dict[str, float]:
    """Median seconds of a training step and of loading a batch, for the cpu profile's ``method``."""
    from tireid_lite.models import build_model

    cfg = apply_overrides(get_profile("cpu"), [f"model.method={method}", f"train.batch_size={BATCH}"])
    torch.manual_seed(0)
    data = build_training_data(cfg)  # with the part maps bilma's semantic target reads
    model = build_model(cfg, data.tokenizer, data.num_classes)
    if hasattr(model, "prepare"):
        model.prepare(data)  # kpdm parses the captions' key phrases (cached) before its hook is used
    data.train_set.caption_hook = getattr(model, "caption_hook", None)
    model.train()
    groups = model.parameter_groups(cfg.train.lr, cfg.train.weight_decay, cfg.train.new_module_lr_factor)
    optimizer = torch.optim.Adam(groups, lr=cfg.train.lr)
    loader = build_train_loader(data.train_set, cfg)
    set_loader_epoch(loader, 1)
    batches, load_times = [], []
    iterator = iter(loader)
    for _ in range(steps + 1):
        start = time.perf_counter()
        batches.append(next(iterator))
        load_times.append(time.perf_counter() - start)
    step_times = []
    for batch in batches:  # the first step warms up
        start = time.perf_counter()
        out = model(batch)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        optimizer.step()
        step_times.append(time.perf_counter() - start)
    return {
        f"{method}_step_median_s": round(statistics.median(step_times[1:]), 4),
        f"{method}_load_batch_median_s": round(statistics.median(load_times[1:]), 4),
    }


def time_warm_start() -> dict[str, float]:
    """The cpu profile's attribute pretraining of the towers, timed from cached data (made once per cache)."""
    from tireid_lite.data.build import dataset_root
    from tireid_lite.train.warm_start import pretrain_config, pretrain_towers

    cfg = get_profile("cpu")
    tokenizer = build_data(cfg, train=False).tokenizer
    dataset_root(pretrain_config(cfg))  # the pretraining draw generated (or found) before the clock starts
    start = time.perf_counter()
    ws = pretrain_towers(cfg, tokenizer)
    seconds = time.perf_counter() - start
    mean_pct = {side: round(100 * statistics.mean(acc.values()), 1) for side, acc in ws.val_accuracy.items()}
    return {
        "warm_start_s": round(seconds, 1),
        "warm_start_steps": cfg.model.warm_start_steps,
        "warm_start_val_image_acc_pct": mean_pct["image"],
        "warm_start_val_text_acc_pct": mean_pct["text"],
    }


def time_run() -> dict[str, float]:
    """One whole cpu-profile ``baseline`` run from the cached towers: wall seconds and test metrics."""
    from tireid_lite.train.warm_start import ensure_warm_start

    cfg = apply_overrides(get_profile("cpu"), ["model.method=baseline"])
    data = build_data(cfg)  # SynthPEDES generated (or found in the cache) before the clock starts
    ensure_warm_start(cfg, data.tokenizer)  # so are the pretrained towers (timed apart above)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        start = time.perf_counter()
        metrics = Trainer(cfg, f"{tmp}/run").fit()
        seconds = time.perf_counter() - start
    return {
        "baseline_run_s": round(seconds, 1),
        "baseline_epochs": cfg.train.num_epochs,
        "baseline_test_R1_pct": round(metrics["R1"], 2),
        "baseline_test_mAP_pct": round(metrics["mAP"], 2),
    }


def main(quick: bool = False) -> dict:
    steps = 6 if quick else 20
    figures: dict[str, float] = {"batch_size": BATCH, "torch_threads": torch.get_num_threads()}
    for method in ("baseline", "irra", "bilma", "kpdm"):
        figures.update(time_steps(method, steps))
    limits = {"baseline_step_median_s": {"max": 0.3}}
    if not quick:
        figures.update(time_warm_start())
        figures.update(time_run())
        figures["baseline_run_with_warm_start_s"] = round(figures["warm_start_s"] + figures["baseline_run_s"], 1)
        limits.update({"baseline_run_s": {"max": 120.0}, "baseline_test_R1_pct": {"min": 30.0, "max": 70.0}})
    figures["peak_rss_mib"] = round(peak_rss_mib(), 1)
    limits["peak_rss_mib"] = {"max": 4096.0}
    return {
        "name": "train_step",
        "description": "cpu-profile training step at batch 64 (baseline, irra, bilma, kpdm), one whole baseline run, peak memory",
        "figures": figures,
        "budget": {"text": BUDGET_TEXT, "limits": limits},
        "met": budget_met(figures, limits),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, no whole run")
    args = parser.parse_args()
    print(json.dumps(main(quick=args.quick), indent=2))
