"""Benchmark: the shortest cpu-profile training in which IRRA's MLM head and BiLMa's MIM head learn.

A head "learns" here when its probe beats its control on the test split
(:mod:`tireid_lite.eval.head_probes`):

* IRRA's masked-language head (``mlm_image_probe``): masked colour words named
  with the caption's own image more often than with another identity's image;
  learnt when the 95% bootstrap interval of ``true - shuffled`` (over the masked
  words) lies above 0;
* BiLMa's semantic MIM head (``mim_caption_probe``): masked patches of the small
  parts (hat, hair, face, arms, shoes, bag) named more often than the
  position-only prior names them; learnt when the interval of ``with caption -
  prior`` over those patches lies above 0.

Each candidate run is a method and config overrides on the cpu profile (the
profile's defaults are not changed), trained through the model cache
(:func:`~tireid_lite.zoo.get_or_train`, so a second call reuses it) and probed
on every test caption and gallery image. The candidates go from the course's
arm (500 identities, one pass: 62 steps) through the cpu profile's epoch (125
steps) to longer runs, a faster cross-modal module (``train.module_lr``) and
the cross-modal module and MLM head pretrained with the towers in the warm
start (``model.warm_start_mlm``; that pretraining's own time is not counted in
the run's training seconds; its masked-word steps are the warm start's 1,200),
and BiLMa's MIM loss balanced over the part classes (``model.bilma.mim_class_balance``).
Figures per run: optimiser steps, training seconds (the epochs only, from the
run's ``metrics.json``; evaluation and the cached warm start excluded), the
MLM colour accuracy with the true and a shuffled image and the gap's interval,
the MIM small-part accuracy beside the prior's and the difference's interval;
then, per head, the fewest steps of a run in which it learnt.

Beside the runs, one diagnostic of how much masked-word training the MLM head
needs: the head (cross-modal module and predictor) of the four-epoch IRRA run
trained on alone, towers frozen, at a constant lr, with the colour probe on
val every few hundred steps (:func:`head_only`).

``--quick`` trains two runs on 100 identities (6 steps each), probes a part of
the test split and trains the head alone for 6 steps: a smoke run of the
script, not a measurement.
Run alone: ``python benchmarks/bench_heads_learn.py [--quick]``; ``--only LABEL[,LABEL]`` trains and
probes just those candidates and prints their records (for one new candidate without the whole run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import NamedTuple

from run_all import budget_met

BUDGET_TEXT = (
    "No budget in DESIGN.md; issue 14 asks for runs in which the heads learn: at least one candidate "
    "where IRRA's MLM colour accuracy with the true image is above the shuffled-image control and one "
    "where BiLMa's MIM small-part accuracy is above the position prior (each 95% interval above 0)."
)
COURSE_ARM = ["data.train_identities=500", "train.num_epochs=1", "train.epoch_fraction=1.0"]  # grids/irra.yaml


class Candidate(NamedTuple):
    """One run: a method and overrides of the cpu profile, what it tries, and the probes that apply."""

    label: str
    method: str
    overrides: tuple[str, ...] = ()
    tries: str = ""
    probes: tuple[str, ...] = ("mlm",)


FAST_HEADS = "heads.mlm.=3e-2,heads.mim.=3e-2"  # the cross-modal module (owned by heads.mlm) and both heads: 3x

CANDIDATES = (
    Candidate("irra_course", "irra", tuple(COURSE_ARM), "the course's arm (grids/irra.yaml)"),
    Candidate("irra_e1", "irra", (), "one cpu-profile epoch"),
    Candidate("irra_e4", "irra", ("train.num_epochs=4",), "four cpu-profile epochs"),
    Candidate("irra_e8", "irra", ("train.num_epochs=8",), "eight cpu-profile epochs"),
    Candidate("irra_e1_wsmlm", "irra", ("model.warm_start_mlm=true",),
              "one epoch from towers, cross-modal module and MLM head pretrained together"),
    Candidate("bilma_course", "bilma", tuple(COURSE_ARM), "the course's arm (grids/bilma.yaml)", ("mlm", "mim")),
    Candidate("bilma_e1", "bilma", (), "one cpu-profile epoch", ("mlm", "mim")),
    Candidate("bilma_e4", "bilma", ("train.num_epochs=4",), "four cpu-profile epochs", ("mlm", "mim")),
    Candidate("bilma_e4_fast", "bilma", ("train.num_epochs=4", f"train.module_lr={FAST_HEADS}"),
              "four epochs, cross-modal module and heads at 3x their lr", ("mlm", "mim")),
    Candidate("bilma_e4_balanced", "bilma", ("train.num_epochs=4", "model.bilma.mim_class_balance=1.0"),
              "four epochs, the MIM loss balanced over part classes (model.bilma.mim_class_balance=1)",
              ("mlm", "mim")),
)
# The MLM head alone trained on from a run's end, towers frozen, at a constant lr: how many more masked-word
# steps the head needs before it reads the image (probed on val every `every` steps).
HEAD_ONLY = {"base": "irra_e4", "lr": 1e-2, "steps": 500, "every": 250}
QUICK_HEAD_ONLY = {"base": "irra_quick", "lr": 1e-2, "steps": 6, "every": 3}
QUICK_CANDIDATES = (
    Candidate("irra_quick", "irra", ("data.train_identities=100",), "smoke run"),
    Candidate("bilma_quick", "bilma", ("data.train_identities=100",), "smoke run", ("mlm", "mim")),
)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def probe_run(candidate: Candidate, quick: bool) -> dict:
    """Train (or load) one candidate and probe its heads; one flat record."""
    from tireid_lite.data.build import build_data
    from tireid_lite.eval.head_probes import mim_caption_probe, mlm_image_probe
    from tireid_lite.zoo import get_or_train

    started = time.perf_counter()
    trained = get_or_train(candidate.method, "cpu", 0, overrides=list(candidate.overrides))
    wall = time.perf_counter() - started
    history = trained.history()
    record = {
        "label": candidate.label, "method": candidate.method, "overrides": list(candidate.overrides),
        "tries": candidate.tries, "key": trained.key, "steps": int(history[-1]["step"]) if history else 0,
        "epochs": len(history), "train_s": round(trained.train_seconds(), 1),
        "trained_now": trained.trained_now, "wall_s": round(wall, 1) if trained.trained_now else None,
        "test_R1": round(trained.test_metrics["R1"], 2),
    }
    if trained.cfg.model.warm_start_mlm:  # the pretraining's own time, kept with the cached towers
        from tireid_lite.train.warm_start import load_warm_start, warm_start_path

        warm = load_warm_start(warm_start_path(trained.cfg, trained.tokenizer))
        record.update(warm_start_s=warm.seconds, warm_start_steps=int(warm.log[-1]["step"]),
                      warm_start_mlm_acc=warm.log[-1].get("mlm_acc"))
    data = build_data(trained.cfg, trained.tokenizer, train=False)
    model = trained.model
    if "mlm" in candidate.probes and "mlm" in model.heads:
        mlm = mlm_image_probe(model, data, "test", max_captions=100 if quick else 100_000)
        for name in ("colour", "garment"):
            r = mlm[name]
            record.update({f"mlm_{name}_{k}": round(float(r[k]), 2) for k in ("true", "shuffled", "gap", "low", "high")})
            record[f"mlm_{name}_words"] = int(r["words"])
        record["mlm_learns"] = bool(mlm["colour"]["low"] > 0)
    if "mim" in candidate.probes and "mim" in model.heads:
        mim = mim_caption_probe(model, data, "test", seed=0, max_images=64 if quick else 100_000)
        for k in ("with_caption", "without_caption", "prior", "small_with_caption", "small_without_caption",
                  "small_prior", "small_over_prior", "small_over_prior_low", "small_over_prior_high",
                  "caption_gain", "caption_gain_low", "caption_gain_high"):
            if k in mim:
                record[f"mim_{k}"] = round(float(mim[k]), 2)
        record["mim_small_patches"] = int(mim["small_patches"])
        record["mim_small_per_class"] = {
            name: round(mim["per_class"][name]["with_caption"], 1) for name in
            ("hat", "hair", "face", "arms", "shoes", "bag") if mim["per_class"][name]["with_caption"] is not None
        }
        record["mim_learns"] = bool(record.get("mim_small_over_prior_low", 0.0) > 0)
    return record


def head_only(candidate: Candidate, lr: float, steps: int, every: int, quick: bool) -> list[dict]:
    """Train only the MLM head (cross-modal module and predictor) of ``candidate``'s run on, towers frozen,
    with Adam at a constant ``lr``; the colour probe on val before and every ``every`` steps."""
    import torch

    from tireid_lite.data.build import build_data
    from tireid_lite.eval.head_probes import mlm_image_probe
    from tireid_lite.losses.mlm import mlm_loss
    from tireid_lite.train.build import build_train_loader, set_loader_epoch
    from tireid_lite.zoo import get_or_train

    trained = get_or_train(candidate.method, "cpu", 0, overrides=list(candidate.overrides))
    model, head = trained.model, trained.model.heads["mlm"]
    data = build_data(trained.cfg, trained.tokenizer, train=True)
    data.train_set.caption_hook = model.caption_hook  # the masked captions, as the Trainer hands them over
    loader = build_train_loader(data.train_set, trained.cfg)
    for param in model.parameters():
        param.requires_grad_(False)
    for param in head.parameters():
        param.requires_grad_(True)

    def probe(step: int, seconds: float) -> dict:
        r = mlm_image_probe(model, data, "val", classes=("colour",), max_captions=100 if quick else 100_000)["colour"]
        return {"step": step, "seconds": round(seconds, 1), "learns": bool(r["low"] > 0),
                **{k: round(float(r[k]), 2) for k in ("true", "shuffled", "gap", "low", "high")}}

    trajectory = [probe(0, 0.0)]
    started, step, epoch = time.perf_counter(), 0, 0
    with torch.random.fork_rng():
        torch.manual_seed(0)
        optimizer = torch.optim.Adam(head.parameters(), lr=lr)
        while step < steps:
            set_loader_epoch(loader, epoch)
            epoch += 1
            for batch in loader:
                head.train()
                with torch.no_grad():
                    image_tokens = model.encode_image_tokens(batch["images"])
                loss = mlm_loss(head.logits(model, batch["mlm_ids"], image_tokens), batch["mlm_labels"])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                if step % every == 0 or step == steps:
                    model.eval()
                    trajectory.append(probe(step, time.perf_counter() - started))
                if step >= steps:
                    break
    return trajectory


def _line(r: dict) -> str:
    """One readable line of a run's figures for the results table."""
    parts = [f"{r['steps']} steps, {r['train_s']:.0f} s"]
    if "warm_start_s" in r:
        parts[0] += f" (after a {r['warm_start_steps']}-step warm start with MLM of {r['warm_start_s']:.0f} s)"
    if "mlm_colour_true" in r:
        parts.append(f"MLM colour {r['mlm_colour_true']:.1f} vs shuffled {r['mlm_colour_shuffled']:.1f} "
                     f"({r['mlm_colour_gap']:+.2f} [{r['mlm_colour_low']:+.2f}, {r['mlm_colour_high']:+.2f}])")
    if "mim_small_with_caption" in r:
        parts.append(f"MIM small parts {r['mim_small_with_caption']:.1f} vs prior {r['mim_small_prior']:.1f} "
                     f"({r.get('mim_small_over_prior', 0.0):+.2f} [{r.get('mim_small_over_prior_low', 0.0):+.2f}, "
                     f"{r.get('mim_small_over_prior_high', 0.0):+.2f}])")
    return "; ".join(parts)


def _shortest(runs: list[dict], flag: str) -> int | None:
    steps = [r["steps"] for r in runs if r.get(flag)]
    return min(steps) if steps else None


def main(quick: bool = False) -> dict:
    os.environ.setdefault("TIREID_PROGRESS", "0")
    load_start = _load()
    runs = []
    for candidate in QUICK_CANDIDATES if quick else CANDIDATES:
        record = probe_run(candidate, quick)
        print(f"{candidate.label}: {_line(record)}", file=sys.stderr, flush=True)
        runs.append(record)
    spec = QUICK_HEAD_ONLY if quick else HEAD_ONLY
    base = next(c for c in (QUICK_CANDIDATES if quick else CANDIDATES) if c.label == spec["base"])
    trajectory = head_only(base, spec["lr"], spec["steps"], spec["every"], quick)
    print(f"head only: {trajectory}", file=sys.stderr, flush=True)
    first = next((t["step"] for t in trajectory if t["learns"]), None)
    irra_runs = [r for r in runs if r["method"] == "irra"]
    mlm_shortest, mim_shortest = _shortest(irra_runs, "mlm_learns"), _shortest(runs, "mim_learns")
    figures = {
        "runs": len(runs),
        "mlm_learning_runs": sum(bool(r.get("mlm_learns")) for r in irra_runs),
        "mim_learning_runs": sum(bool(r.get("mim_learns")) for r in runs),
        "mlm_shortest_steps": mlm_shortest if mlm_shortest is not None else "none learnt",
        "mim_shortest_steps": mim_shortest if mim_shortest is not None else "none learnt",
        **{r["label"]: _line(r) for r in runs},
        "head_only": f"MLM head of {base.label} trained on alone (towers frozen, lr {spec['lr']:g}), val colour "
                     "gap: " + "; ".join(f"+{t['step']} steps {t['gap']:+.2f} [{t['low']:+.2f}, {t['high']:+.2f}]"
                                         for t in trajectory),
        "head_only_first_learning_step": first if first is not None else "none within the steps run",
        "load_avg_1min_start": load_start,
        "load_avg_1min_end": _load(),
    }
    limits = {} if quick else {"mlm_learning_runs": {"min": 1}, "mim_learning_runs": {"min": 1}}
    notes = [
        "MLM (IRRA runs): " + (f"the shortest run whose colour gap interval lies above 0 has {mlm_shortest} steps"
                                if mlm_shortest is not None else "no run's colour gap interval lies above 0"),
        "MIM (BiLMa runs): " + (f"the shortest run whose small-part interval over the prior lies above 0 has "
                                 f"{mim_shortest} steps" if mim_shortest is not None
                                 else "no run's small-part interval over the prior lies above 0"),
        ("training seconds are the epochs alone, measured when each run was trained (cached runs keep theirs), "
         "on the shared 2-core machine: compare them only roughly"),
    ]
    return {
        "name": "heads_learn",
        "description": "the shortest cpu-profile training in which IRRA's MLM head and BiLMa's MIM head beat their controls",
        "figures": figures,
        "budget": {"text": BUDGET_TEXT, "limits": limits},
        "met": budget_met(figures, limits),
        "notes": notes,
        "runs_detail": runs,
        "head_only_detail": {**spec, "trajectory": trajectory},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two 6-step runs on 100 identities, a smaller probe")
    parser.add_argument("--only", default="", metavar="LABELS",
                        help="comma-separated candidate labels: train and probe only these (no head-only run, no "
                             "record for RESULTS.md), e.g. --only bilma_e4_balanced")
    args = parser.parse_args()
    if args.only:
        known = {c.label: c for c in CANDIDATES}
        wanted = [label.strip() for label in args.only.split(",") if label.strip()]
        unknown = [label for label in wanted if label not in known]
        if unknown:
            parser.error(f"--only: unknown candidate(s) {', '.join(unknown)}; use some of {', '.join(known)}")
        os.environ.setdefault("TIREID_PROGRESS", "0")
        for label in wanted:
            record = probe_run(known[label], quick=False)
            print(f"{label}: {_line(record)}", file=sys.stderr, flush=True)
            print(json.dumps(record, indent=2))
    else:
        print(json.dumps(main(quick=args.quick), indent=2))
