"""Benchmark: the cpu-profile training step against the machine's compute limit, in one run.

What one run measures, on this machine, with torch's default threads:

* the fp32 matmul rate: a square ``n x n`` product (the peak the floor uses) and one
  of the model's own shapes (tokens x width times width x 4 width);
* per method (``baseline irra bilma kpdm cada partlevel``) at batch 64: the FLOPs of a
  training step, forward and backward (``torch.utils.flop_counter``), its floor (FLOPs
  over the peak matmul rate), the step's time (forward, backward, gradient clipping,
  Adam; minimum and median over repeats), the utilisation ``floor / step``, and the time
  to load a batch from the training loader (minimum and median) and its share of the step;
* for ``irra``: loading through the per-item path (what the loader did before batched
  loading) for comparison; a ``torch.profiler`` summary of the step (self time of the
  operators by kind, the rest being Python and framework overhead); the masked-language
  branch's share (the step with ``model.mlm_loss_weight=0`` against the full step); and,
  with ``train.compile``, the first compiled step and the steady compiled step;
* evaluation of the test split: extracting gallery and query features and scoring them.

Load average (``os.getloadavg``) at the start and the end is recorded: on a shared
machine every time here is an upper bound; rerun on a quiet machine for the figures
to keep. ``--quick``: three methods, fewer repeats, no compile.
Run alone: ``python benchmarks/bench_step_utilisation.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import defaultdict

import torch
from torch.utils.data import default_collate
from torch.utils.flop_counter import FlopCounterMode

from run_all import budget_met
from tireid_lite.config import apply_overrides, get_profile
from tireid_lite.train.build import SeededItems, build_train_loader, build_training_data, set_loader_epoch

BATCH = 64
METHODS = ("baseline", "irra", "bilma", "kpdm", "cada", "partlevel")
BUDGET_TEXT = (
    "cpu-profile training step as close to the machine's compute limit as the model allows; loading a batch "
    "not a visible share of a step (issue: under 5% of an irra step; the irra step with loading at most "
    "0.10 s at batch 64 on 2 cores, or the profile shows what remains)."
)
KINDS = {  # operator kinds of the profile summary, by substrings of the aten name (first match wins)
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_addmm_activation"),
    "attention": ("scaled_dot_product", "flash_attention", "_softmax", "aten::softmax"),
    "layernorm": ("layer_norm",),
    "optimizer": ("_foreach_", "aten::lerp", "addcdiv", "addcmul"),
    "copies_and_indexing": ("copy_", "aten::clone", "aten::cat", "aten::stack", "aten::index", "gather",
                            "scatter", "aten::contiguous", "aten::_to_copy", "aten::masked_", "aten::nonzero",
                            "aten::embedding", "aten::where", "aten::fill_", "aten::zero_", "aten::pad",
                            "aten::constant_pad_nd"),
    "elementwise_and_reductions": ("aten::add", "aten::mul", "aten::div", "aten::sub", "aten::gelu", "aten::sum",
                                   "aten::mean", "aten::norm", "aten::linalg_vector_norm", "aten::exp",
                                   "aten::log", "aten::neg", "aten::pow", "aten::sqrt", "aten::rsqrt",
                                   "aten::clamp", "aten::max", "aten::min", "aten::argmax", "aten::eq",
                                   "aten::ne", "aten::lt", "aten::gt", "aten::threshold", "aten::sigmoid",
                                   "aten::tanh", "aten::nll_loss", "aten::cross_entropy", "loss"),
}


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def matmul_rate(n: int, repeats: int) -> float:
    """GFLOP/s of an fp32 ``n x n`` matmul, best of ``repeats`` after a warm-up."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def model_shape_rate(tokens: int, width: int, repeats: int) -> float:
    """GFLOP/s of ``(tokens, width) @ (width, 4 width)``: an MLP layer of the cpu-profile towers."""
    a, b = torch.randn(tokens, width), torch.randn(width, 4 * width)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * tokens * width * 4 * width / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class MethodRun:
    """A cpu-profile model of ``method`` at batch 64, its optimiser and its training loader (epoch 1)."""

    def __init__(self, method: str, *extra: str) -> None:
        from tireid_lite.models import build_model

        cfg = apply_overrides(get_profile("cpu"), [f"model.method={method}", f"train.batch_size={BATCH}", *extra])
        torch.manual_seed(0)
        self.cfg = cfg
        self.data = build_training_data(cfg)
        self.model = build_model(cfg, self.data.tokenizer, self.data.num_classes)
        if hasattr(self.model, "prepare"):
            self.model.prepare(self.data)
        self.data.train_set.caption_hook = getattr(self.model, "caption_hook", None)
        self.model.train()
        groups = self.model.parameter_groups(cfg.train.lr, cfg.train.weight_decay, cfg.train.new_module_lr_factor)
        self.optimizer = torch.optim.Adam(groups, lr=cfg.train.lr)
        self.loader = build_train_loader(self.data.train_set, cfg)
        set_loader_epoch(self.loader, 1)
        self.step_fn = self._step
        if cfg.train.compile:
            from tireid_lite.train.compiled import compiled_forward

            self.forward = compiled_forward(self.model)
        else:
            self.forward = self.model

    def batches(self, count: int) -> tuple[list[dict], list[float]]:
        """``count`` batches of the loader and the seconds each took (the first builds the image store)."""
        iterator = iter(self.loader)
        batches, seconds = [], []
        for _ in range(count):
            start = time.perf_counter()
            batches.append(next(iterator))
            seconds.append(time.perf_counter() - start)
        return batches, seconds

    def per_item_load(self, count: int) -> list[float]:
        """Seconds per batch through the per-item path (each item transformed alone, then collated)."""
        items = SeededItems(self.data.train_set, self.cfg.train.seed)
        seconds = []
        for keys in list(self.loader.batch_sampler)[:count]:
            start = time.perf_counter()
            default_collate([items[key] for key in keys])
            seconds.append(time.perf_counter() - start)
        return seconds

    def _step(self, batch: dict) -> float:
        out = self.forward(batch)
        self.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.optimizer.step()
        return out["loss"].detach()

    def flops(self, batch: dict) -> int:
        """FLOPs of the forward and backward pass on ``batch`` (torch's flop counter)."""
        with FlopCounterMode(display=False) as counter:
            out = self.model(batch)
            out["loss"].backward()
        self.model.zero_grad(set_to_none=True)
        return int(counter.get_total_flops())

    def step_times(self, batches: list[dict]) -> list[float]:
        return [_timed(lambda b=b: self.step_fn(b)) for b in batches]


def profile_summary(run: MethodRun, batches: list[dict]) -> dict[str, float]:
    """Per kind of operator, its share of the step's wall time (self time on the main thread)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for batch in batches:
            run.step_fn(batch)
        wall = (time.perf_counter() - start) / len(batches)  # per step, profiler overhead included
    per_kind: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        kind = next((k for k, keys in KINDS.items() if any(key in event.key for key in keys)), None)
        if kind is None and event.key.startswith("aten::"):
            kind = "other_operators"
        if kind is not None:
            per_kind[kind] += event.self_cpu_time_total / 1e6 / len(batches)  # seconds per step
    total = wall
    shares = {f"irra_profile_{k}_pct": round(100 * v / total, 1) for k, v in sorted(per_kind.items())}
    shares["irra_profile_python_and_framework_pct"] = round(100 * max(0.0, total - sum(per_kind.values())) / total, 1)
    return shares


def method_figures(method: str, steps: int) -> tuple[dict[str, float], MethodRun, list[dict]]:
    run = MethodRun(method)
    batches, load_s = run.batches(steps + 1)  # the first builds the in-memory image store
    flops = run.flops(batches[0])
    step_s = run.step_times(batches)[1:]  # the first step warms up
    return {
        f"{method}_gflop": round(flops / 1e9, 2),
        f"{method}_step_min_s": round(min(step_s), 4),
        f"{method}_step_median_s": round(statistics.median(step_s), 4),
        f"{method}_load_min_s": round(min(load_s[1:]), 4),
        f"{method}_load_median_s": round(statistics.median(load_s[1:]), 4),
        f"{method}_first_load_s": round(load_s[0], 3),
    }, run, batches


def compile_figures(steps: int) -> dict[str, float]:
    """``train.compile=true`` on irra: the first step (compiling), the steady step, and how far the
    compiled loss is from the eager one on the same batch and weights."""
    run = MethodRun("irra", "train.compile=true")
    batches, _ = run.batches(steps + 2)
    with torch.no_grad():
        eager_loss = float(run.model(batches[0])["loss"])
    start = time.perf_counter()
    compiled_loss = float(run.step_fn(batches[0]))  # compiles the training graph (forward and backward)
    first = time.perf_counter() - start
    step_s = run.step_times(batches[1:])
    return {
        "irra_compiled_first_step_s": round(first, 2),
        "irra_compiled_step_min_s": round(min(step_s), 4),
        "irra_compiled_step_median_s": round(statistics.median(step_s), 4),
        "irra_compiled_loss_abs_diff": float(f"{abs(compiled_loss - eager_loss):.3g}"),
    }


def eval_figures(run: MethodRun) -> dict[str, float]:
    """Seconds to extract the test split's features and score them (model as after training set-up)."""
    from tireid_lite.eval.metrics import retrieval_metrics
    from tireid_lite.eval.retrieval import score_split

    data, model = run.data, run.model
    data.gallery("test"), data.queries("test")  # built (queries tokenised) before the clock
    figures = {}
    for name in ("first", "second"):
        start = time.perf_counter()
        sim, q_pids, g_pids = score_split(model, data, "test", batch_size=2 * BATCH)
        retrieval_metrics(sim, q_pids, g_pids)
        figures[f"eval_test_{name}_s"] = round(time.perf_counter() - start, 3)
    figures["eval_test_queries"] = len(data.queries("test"))
    figures["eval_test_gallery"] = len(data.gallery("test"))
    return figures


def main(quick: bool = False) -> dict:
    steps = 4 if quick else 12
    figures: dict[str, float] = {"batch_size": BATCH, "torch_threads": torch.get_num_threads(),
                                 "load_avg_1min_start": load_average()}
    figures["matmul_square_n"] = 512 if quick else 1024
    peak = matmul_rate(figures["matmul_square_n"], 5 if quick else 20)
    figures["matmul_gflop_per_s"] = round(peak, 1)
    cfg = get_profile("cpu")
    figures["matmul_model_shape_gflop_per_s"] = round(
        model_shape_rate(BATCH * cfg.data.max_length, cfg.model.text_width, 5 if quick else 20), 1)
    methods = ("baseline", "irra", "bilma") if quick else METHODS
    irra = None
    for method in methods:
        found, run, batches = method_figures(method, steps)
        figures.update(found)
        floor = found[f"{method}_gflop"] * 1e9 / (peak * 1e9)
        figures[f"{method}_floor_s"] = round(floor, 4)
        figures[f"{method}_utilisation_pct"] = round(100 * floor / found[f"{method}_step_min_s"], 1)
        figures[f"{method}_load_pct_of_step"] = round(
            100 * found[f"{method}_load_median_s"] / found[f"{method}_step_median_s"], 1)
        if method == "irra":
            irra = (run, batches)
    run, batches = irra
    figures["irra_load_per_item_median_s"] = round(statistics.median(run.per_item_load(steps)), 4)
    figures["irra_step_with_load_s"] = round(figures["irra_step_min_s"] + figures["irra_load_min_s"], 4)
    figures.update(profile_summary(run, batches[1:4]))
    no_mlm = MethodRun("irra", "model.mlm_loss_weight=0")
    no_mlm_batches, _ = no_mlm.batches(steps + 1)
    no_mlm_s = min(no_mlm.step_times(no_mlm_batches)[1:])
    figures["irra_without_mlm_step_min_s"] = round(no_mlm_s, 4)
    figures["irra_without_mlm_gflop"] = round(no_mlm.flops(no_mlm_batches[0]) / 1e9, 2)
    figures["irra_mlm_branch_pct_of_step"] = round(100 * (1 - no_mlm_s / figures["irra_step_min_s"]), 1)
    if not quick:
        figures.update(compile_figures(steps))
        figures["irra_compiled_speedup"] = round(figures["irra_step_min_s"] / figures["irra_compiled_step_min_s"], 2)
    figures.update(eval_figures(run))
    figures["load_avg_1min_end"] = load_average()
    limits = {"irra_load_pct_of_step": {"max": 5.0}}
    notes = [  # run_all.py adds what the load average says about the machine
        f"loading an irra batch: {figures['irra_load_median_s']} s batched against "
        f"{figures['irra_load_per_item_median_s']} s item by item (median)",
    ]
    return {
        "name": "step_utilisation",
        "notes": notes,
        "description": "matmul rate, per method FLOPs / step / utilisation / loading, profile of the irra step, "
                       "masked-language share, test evaluation",
        "figures": figures,
        "budget": {"text": BUDGET_TEXT, "limits": limits},
        "met": budget_met(figures, limits),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three methods, fewer repeats, no compile")
    args = parser.parse_args()
    print(json.dumps(main(quick=args.quick), indent=2))
