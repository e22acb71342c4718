# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 10 · The papers' tables in miniature: paired differences, probes, and what reproduces
#
# **What you will learn**
# - how a paper's ablation becomes a *grid spec* (arms x seeds x noise rates, an arm = a method and
#   config overrides) and how `tireid grid` runs it through the model cache, resumably, into one tidy
#   table;
# - how to read an ablation the way the kit does: mean ± std over seeds, and the paired difference
#   of each arm to its reference over the same seeds and test queries, with a bootstrap interval;
# - the mechanism probes beside their controls: hard-negative partners against chance, the MLM head
#   with the true vs a shuffled image, the MIM head against a position-only prior, a noise
#   partitioner against a random flagger;
# - which of the papers' effects reproduce in miniature and which do not, stated from the computed
#   intervals, never from prose written beforehand.
#
# **Prerequisites**: `02_baseline_irra` to `08_partlevel_commonality` (each paper's mechanism).
#
# **Run time on cpu**: about 3 minutes when notebooks 02-08 have filled the model cache (28 cells
# evaluated and probed); about 20 minutes on a cold cache (the cells are trained first). With the
# results of a full `make tables` in `results/tables/`, it reads them instead.

# %%
import json
from pathlib import Path

import numpy as np
import pandas as pd

from tireid_lite.course import notebooks_dir
from tireid_lite.envinfo import environment_report
from tireid_lite.eval.probes import wilson_interval
from tireid_lite.grid import (
    course_budget,
    kit_commit,
    load_spec,
    pending_cells,
    run_grid,
    select,
    write_tables,
)
from tireid_lite.notebook import resolve_output_dir, resolve_profile, save_metrics

# %%
NOTEBOOK = "10_paper_tables"
GRIDS = notebooks_dir().parent / "grids"
# The miniature: each paper's reference and its full method (and, for noise, both partitioners at
# 50%), over the notebook's seeds, at the course's budget (course_budget): the models of notebooks 02-08.
MINIATURE = {
    "irra": {"arms": "irra"},
    "kpdm": {"arms": "phrase_masking"},
    "bilma": {"arms": "both,both_balanced"},
    "noise": {"arms": "ccd,tcp", "noise": "0.5"},
    "cada": {"arms": "atp_ara"},
    "partlevel": {"arms": "parts_commonality"},
}
# The arm whose difference to the reference is each paper's headline claim (the paper: "above").
HEADLINE = {"irra": "irra", "kpdm": "phrase_masking", "bilma": "both", "noise": "ccd", "cada": "atp_ara",
            "partlevel": "parts_commonality"}
# Arms whose probes are shown beside the headline's: BiLMa with the MIM loss balanced over part classes
# (model.bilma.mim_class_balance, notebook 06), where the MIM head can act on the small parts at all.
PROBE_ARMS = {"bilma": ("both_balanced",)}

# %% tags=["parameters"]
profile = ""
output_dir = ""
seed = 0
num_seeds = 2
tables_dir = ""

# %%
profile = resolve_profile(profile)
output_dir = resolve_output_dir(output_dir, NOTEBOOK)
seeds = ",".join(str(s) for s in range(seed, seed + num_seeds))
full_dir = Path(tables_dir) if tables_dir else notebooks_dir().parent / "results" / "tables"
print(f"profile: {profile}; a grid not finished by make tables runs in miniature over seeds {seeds}")

# %% [markdown]
# ## 1. A paper's ablation as a grid spec
#
# The kit ships one spec per paper in `grids/`. IRRA's is the smallest: the baseline (SDM + ID) and
# IRRA (+ masked language modelling through the cross-modal module), three seeds, and the probes to
# compute for every cell. Its cells run the cpu profile's own budget, so seeds 0 and 1 are notebook
# 02's models (125 steps over 2,000 identities). KPDM's, BiLMa's, CADA's and the part-level grid's arms
# make three passes over 500 identities (186 steps), three times the one pass of notebooks 03-08 (their
# `course_overrides`); the noise grid runs notebook 05's runs.

# %%
print((GRIDS / "irra.yaml").read_text())

# %%
specs = {name: load_spec(GRIDS / f"{name}.yaml") for name in MINIATURE}
for name, spec in specs.items():
    print(f"{name:>9}: {len(spec.arms)} arms x {len(spec.seeds)} seeds"
          + (f" x {len(spec.noise)} noise rates" if spec.noise else "") + f" = {len(spec.cells())} cells; "
          f"reference {spec.reference!r}")

# %% [markdown]
# ## 2. Run the grids, or read a full `make tables`
#
# A grid whose every cell is finished in `results/tables/<name>/` (a full `make tables` of this
# spec) is read as it is. Otherwise the notebook runs the miniature: the reference and the full
# method of each paper, over the notebook's seeds, at the course's budget (one pass over 500
# identities where the grid makes three), into its output folder. Each cell comes from the model cache (notebooks 02-08 have trained
# them with the same configs) and is probed on the test split.

# %% tags=["nbval-ignore-output"]
results, sources = {}, {}
for name, spec in specs.items():
    if not pending_cells(spec, full_dir / name, profile):  # every cell written for this spec and probe set
        shown_dir = full_dir / name
        if shown_dir.is_relative_to(notebooks_dir().parent):
            shown_dir = shown_dir.relative_to(notebooks_dir().parent)
        results[name], sources[name] = write_tables(spec, full_dir / name), f"make tables ({shown_dir})"
        continue
    mini = course_budget(select(spec, arms=MINIATURE[name]["arms"], seeds=seeds,
                                noise=MINIATURE[name].get("noise", "")))
    specs[name] = mini
    results[name] = run_grid(mini, output_dir / "tables" / name, profile=profile)
    sources[name] = f"miniature ({len(mini.cells())} cells)"

# %% tags=["nbval-ignore-output"]
environment = environment_report()
print(f"commit {kit_commit()}, {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M} UTC, {environment['platform']}, "
      f"{environment['cpu_count']} CPUs, device {environment['device']}, torch {environment.get('torch', '?')}")
for name, source in sources.items():
    commits = sorted(set(results[name]["tidy"]["commit"].astype(str)))
    print(f"{name:>9}: {source}, cells run at commit {', '.join(commits)}")

# %% [markdown]
# ## 3. One table per paper
#
# For every arm: R@1 and mAP as mean ± std over seeds; beside them the paper's own number where it
# publishes one (CUHK-PEDES, full training from CLIP: a different scale, shown for the direction, not
# to be matched), and the paired difference to the reference arm with its 95% bootstrap interval over
# test queries. The verdict column is computed from the interval.


# %%
def paper_table(name: str) -> pd.DataFrame:
    """Arms x (R1, mAP mean ± std, the paper's R1, paired R1 difference, interval, verdict)."""
    spec, tables = specs[name], results[name]
    summary, paired = tables["summary"], tables["paired"]
    rate = spec.noise[-1] if spec.noise else None
    rows = []
    def cell(arm: str, metric: str) -> str:
        match = summary[(summary["arm"] == arm) & (summary["metric"] == metric)
                        & (summary["noise"].isna() if rate is None else summary["noise"] == rate)]
        return match["mean ± std"].iloc[0] if len(match) else "-"

    for arm in spec.arms:
        diff = paired[(paired["arm"] == arm) & (paired["metric"] == "R1")
                      & (paired["noise"].isna() if rate is None else paired["noise"] == rate)]
        row = {"arm": arm, "R1": cell(arm, "R1"), "mAP": cell(arm, "mAP"),
               "paper R1": spec.paper_numbers.get(arm, {}).get("R1", "-")}
        if len(diff) and arm != spec.reference:
            d = diff.iloc[0]
            row.update({"R1 - ref": f"{d['diff']:+.2f}", "95% interval": f"[{d['low']:+.2f}, {d['high']:+.2f}]",
                        "verdict": d["verdict"]})
        rows.append(row)
    return pd.DataFrame(rows).set_index("arm").fillna("")


# %% tags=["nbval-ignore-output"]
for name, spec in specs.items():
    noise = f"; shown at {spec.noise[-1]:.0%} noise" if spec.noise else ""
    print(f"\n{spec.paper}{noise}; source: {sources[name]}")
    print(paper_table(name).to_string())

# %% [markdown]
# ## 4. The probes beside their controls
#
# R@1 mixes every mechanism together; a probe looks at one. For each grid's headline arm (and its
# reference; for BiLMa also the arm with the class-balanced MIM loss of notebook 06), the cell values
# averaged over seeds:
# - **partners**: the share of test captions naming the attribute that separates a hard-negative pair for
#   which the true person outscores the partner (chance 50%, Wilson 95% interval on the pooled count);
# - **MLM**: masked colour words named with the caption's own image minus with another person's image,
#   every test caption's colour words, pooled over the seeds word by word with a 95% bootstrap interval
#   over the words;
# - **MIM**: small-part accuracy (hat, hair, face, arms, shoes, bag) minus the position-only prior;
# - **detection**: the partitioner's F1 minus a random flagger's with the same flag rate.


# %%
def arm_values(name: str, arm: str) -> dict[str, float]:
    """Every probe metric of ``arm`` in grid ``name``, averaged over its seeds (at the last noise rate)."""
    tidy = results[name]["tidy"]
    rate = specs[name].noise[-1] if specs[name].noise else None
    rows = tidy[(tidy["arm"] == arm) & (tidy["noise"].isna() if rate is None else tidy["noise"] == rate)]
    return rows.groupby("metric")["value"].mean().to_dict()


def mlm_row(name: str, arm: str) -> pd.Series | None:
    """The pooled MLM colour probe of ``arm`` in grid ``name`` (``mlm_pooled.csv``), or None."""
    pooled = results[name]["mlm_pooled"]
    rate = specs[name].noise[-1] if specs[name].noise else None
    rows = pooled[(pooled["arm"] == arm) & (pooled["words"] == "colour")
                  & (pooled["noise"].isna() if rate is None else pooled["noise"] == rate)]
    return rows.iloc[0] if len(rows) else None


def partner_line(values: dict[str, float], num_seeds: int) -> str:
    if "partner_share" not in values:
        return "not measured"
    trials = int(values["partner_trials"]) * num_seeds
    wins = round(values["partner_share"] / 100 * trials)
    low, high = wilson_interval(wins, trials)
    side = "above chance" if low > 0.5 else "below chance" if high < 0.5 else "not distinguishable from chance"
    return f"{values['partner_share']:.1f}% [{100 * low:.1f}, {100 * high:.1f}] of {trials}: {side}"


probe_rows = []
for name, spec in specs.items():
    for arm in dict.fromkeys([spec.reference, HEADLINE[name], *PROBE_ARMS.get(name, ())]):
        v = arm_values(name, arm)
        row = {"grid": name, "arm": arm, "partners": partner_line(v, len(spec.seeds))}
        mlm = mlm_row(name, arm)
        if mlm is not None:
            row["MLM colour: true - shuffled"] = (f"{mlm['true']:.1f} - {mlm['shuffled']:.1f} = {mlm['gap']:+.2f} "
                                                  f"[{mlm['low']:+.2f}, {mlm['high']:+.2f}], "
                                                  f"{int(mlm['masked']):,} words x {int(mlm['seeds'])} seeds")
        elif "mlm_colour_true" in v:
            row["MLM colour: true - shuffled"] = "seeds probed without their hits: rerun the grid"
        if "mim_small_with_caption" in v:
            row["MIM small parts - prior"] = (f"{v['mim_small_with_caption']:.1f} - {v['mim_small_prior']:.1f}"
                                              f" = {v.get('mim_small_over_prior', float('nan')):+.1f}")
        if "detection_f1" in v:
            row["detection F1 - random"] = (f"{v['detection_f1']:.3f} - {v['detection_random_f1']:.3f}"
                                            f" = {v['detection_f1_over_random']:+.3f}")
        probe_rows.append(row)
probes = pd.DataFrame(probe_rows).set_index(["grid", "arm"]).fillna("-")

# %% tags=["nbval-ignore-output"]
print(probes.to_string())

# %% [markdown]
# Markings the dataset lacks are said, not filled in: a probe whose pairs or rare colours are not
# marked in `attributes.json` is skipped or falls back, and the grid records why.

# %% tags=["nbval-ignore-output"]
for name, source in sources.items():
    notes = json.loads(((full_dir if source.startswith("make") else output_dir / "tables") / name
                        / "notes.json").read_text())["notes"]
    print(f"{name}: " + ("; ".join(notes) if notes else "every probe had what it needs"))

# %% [markdown]
# ## 5. What reproduces in miniature
#
# Each paper claims its mechanism lifts retrieval over its reference. Below, for each headline
# comparison, the verdict the paired interval supports, and the probe verdicts where the mechanism
# has one (for BiLMa also the R@1 and probes of its class-balanced arm, marked by its name). "Reproduces"
# means the interval excludes 0 on the paper's side; "opposite" that it excludes 0 on the other
# side; otherwise the miniature does not show an effect at this budget. The probes read the same
# way from their own intervals (MLM: true - shuffled image pooled over the seeds, the interval over
# the masked words; MIM: small parts - prior over the masked patches); detection has no interval
# here, and counts as shown when the partitioner's F1 is more than 0.05 above the random flagger's.


# %%
def direction(low: float, high: float) -> str:
    return "reproduces" if low > 0 else "opposite" if high < 0 else "not shown"


def paired_r1(name: str, arm: str) -> pd.Series:
    """``arm``'s paired R@1 difference to the reference in grid ``name`` (at the last noise rate)."""
    paired = results[name]["paired"]
    rate = specs[name].noise[-1] if specs[name].noise else None
    return paired[(paired["arm"] == arm) & (paired["metric"] == "R1")
                  & (paired["noise"].isna() if rate is None else paired["noise"] == rate)].iloc[0]


verdicts = {}
for name, spec in specs.items():
    row = paired_r1(name, HEADLINE[name])
    verdicts[name] = {"R1_diff": float(row["diff"]), "R1_low": float(row["low"]), "R1_high": float(row["high"]),
                      "R1": direction(row["low"], row["high"])}
    for arm in (HEADLINE[name], *PROBE_ARMS.get(name, ())):
        v, label = arm_values(name, arm), "" if arm == HEADLINE[name] else f" ({arm})"
        if label:
            d = paired_r1(name, arm)
            verdicts[name][f"R1 - {spec.reference} = {d['diff']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]{label}"] = (
                direction(d["low"], d["high"]))
        mlm = mlm_row(name, arm)
        if mlm is not None:
            verdicts[name][f"MLM reads the image{label}"] = direction(mlm["low"], mlm["high"])
        if "mim_small_over_prior_low" in v:
            verdicts[name][f"MIM beats the prior{label}"] = direction(v["mim_small_over_prior_low"],
                                                                     v["mim_small_over_prior_high"])
        if "detection_f1_over_random" in v:
            verdicts[name][f"detection beats chance{label}"] = ("reproduces" if v["detection_f1_over_random"] > 0.05
                                                                else "not shown")

# %% tags=["nbval-ignore-output"]
for name, v in verdicts.items():
    others = "; ".join(f"{k}: {x}" for k, x in v.items() if k not in ("R1", "R1_diff", "R1_low", "R1_high"))
    print(f"- {specs[name].paper}\n    R1 {HEADLINE[name]} - {specs[name].reference} = {v['R1_diff']:+.2f} "
          f"[{v['R1_low']:+.2f}, {v['R1_high']:+.2f}]: {v['R1']}" + (f"; {others}" if others else ""))
shown = [n for n, v in verdicts.items() if v["R1"] == "reproduces"]
seed_counts = sorted({len(spec.seeds) for spec in specs.values()})
print(f"\nR@1 effects shown in miniature: {', '.join(shown) if shown else 'none'} "
      f"({len(shown)} of {len(verdicts)} papers, {'-'.join(map(str, seed_counts))} seeds each)")

# %% [markdown]
# ## 6. Check
#
# The paired R@1 difference of each headline arm equals the difference of the arms' mean R@1 over the
# same seeds (the tidy table), as it must: the mean of the per-query differences is the difference
# of the means.

# %%
for name, spec in specs.items():
    tidy = results[name]["tidy"]
    rate = spec.noise[-1] if spec.noise else None
    r1 = tidy[(tidy["metric"] == "R1") & (tidy["noise"].isna() if rate is None else tidy["noise"] == rate)]
    means = r1.groupby("arm")["value"].mean()
    assert np.isclose(means[HEADLINE[name]] - means[spec.reference], verdicts[name]["R1_diff"], atol=1e-6), name
print("paired differences agree with the tidy table")

# %%
metrics = {"num_seeds": num_seeds, "num_cells": int(sum(len(s.cells()) for s in specs.values()))}
for name, v in verdicts.items():
    metrics[f"{name}_R1_diff"] = v["R1_diff"]
    ref, head = arm_values(name, specs[name].reference), arm_values(name, HEADLINE[name])
    metrics[f"{name}_R1_reference"] = ref["R1"]
    metrics[f"{name}_partner_share"] = head["partner_share"]
    for key in ("mlm_colour_true", "mlm_colour_shuffled", "mim_small_with_caption", "mim_small_prior",
                "detection_f1", "detection_random_f1"):
        if key in head:
            metrics[f"{name}_{key}"] = head[key]
    for arm in PROBE_ARMS.get(name, ()):
        extra = arm_values(name, arm)
        for key in ("mim_small_with_caption", "mim_small_prior"):
            if key in extra:
                metrics[f"{name}_{arm}_{key}"] = extra[key]
save_metrics(output_dir, metrics)
print(f"metrics written to metrics.json in the output folder {output_dir.name!r}")

# %% [markdown]
# ## Summary
#
# - A grid spec turns a paper's ablation into arms x seeds x noise rates; `tireid grid` trains each cell
#   once through the model cache, resumes where it stopped, and writes one tidy table with the config hash
#   and commit of every value.
# - Every comparison is paired: the same seeds and the same test queries, a bootstrap interval over the
#   queries, the number of seeds stated. The verdicts above are computed from those intervals.
# - Probes look at one mechanism each, beside the control that tells whether it works at all: chance
#   for partners, a shuffled image for the MLM head, a position prior for the MIM head, a random flagger
#   for a partitioner. Read section 5 for which effects this run shows and which it does not.
#
# ## Exercises
#
# 1. Run a whole grid: `tireid grid --spec grids/bilma.yaml` (three seeds, seven arms). Does a third seed
#    narrow the intervals of section 3, and does any verdict change?
# 2. Interrupt `tireid grid` during a cell and start it again. Which cells run again, and why is the
#    table the same?
# 3. Write a spec of your own: IRRA with `model.mlm_prob` at 0.15, 0.3 and 0.5 as three arms. Does the
#    MLM probe (true - shuffled image) grow with the masking rate?
# 4. Train longer: add `--set train.num_epochs=3` to the IRRA grid. Which probe moves first, the MLM
#    gap or R@1?
