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
# # 05 · Solutions to the exercises (for instructors)
#
# The exercises that close `05_kpdm_trusted_consensus`, solved, on the warm-up similarities of the notebook's
# short runs (the warm-up models at 0% and 50% noise are 05's own, cached).
#
# **Run time on cpu**: up to four short trainings (05's warm-ups at 0% and 50% when they are not cached, a longer
# warm-up at 50% and a warm-up at 80% noise): 3.5 minutes on a shared 2-core machine at load 8, seconds once
# cached. `quick=True` trains on 64 identities for a few steps: the code runs, the numbers mean nothing.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from tireid_lite.data.build import build_data
from tireid_lite.models.trained import load_trained
from tireid_lite.notebook import ablation_overrides, resolve_output_dir, resolve_profile, save_metrics
from tireid_lite.train.noise import pair_features, view_similarities
from tireid_lite.train.partition import detection_scores
from tireid_lite.train.tcp import tcp_partition
from tireid_lite.viz.noise import plot_similarity_histograms
from tireid_lite.zoo import get_or_train

# %%
NOTEBOOK = "05_kpdm_trusted_consensus_solutions"
EPOCHS = 3  # as in 05: epoch 1 is the warm-up

# %% tags=["parameters"]
profile = ""
output_dir = ""
seed = 0
quick = False

# %%
profile = resolve_profile(profile)
output_dir = resolve_output_dir(output_dir, NOTEBOOK)
light = ["model.mlm_loss_weight=0"] if profile == "cpu" else []


def budget(epochs: int) -> list[str]:
    """05's short runs split into ``epochs`` epochs; in quick mode the same on 64 identities."""
    if quick:
        return ["data.train_identities=64", f"train.num_epochs={epochs}", f"train.epoch_fraction={1.0 / epochs!r}"]
    return ablation_overrides(profile, epochs=epochs)


def warmup(rate: float, epochs: int = EPOCHS, extra: tuple[str, ...] = ()):
    """The run without a partitioner at ``rate`` (trained or cached), whose warm-up states are kept."""
    return get_or_train("kpdm", profile, seed,
                        overrides=[*budget(epochs), *light, f"data.noise_rate={rate}", "train.partitioner=none", *extra])


def warmup_view(run, epoch: int = 1):
    """Pair similarities of both views after warm-up epoch ``epoch``, the identities and the true noise."""
    trained = load_trained(run.folder / f"epoch{epoch}.pt")
    data = build_data(trained.cfg, trained.tokenizer)
    image_feats, text_feats = pair_features(trained.model, data.train_set, data.image_size,
                                            batch_size=2 * trained.cfg.train.batch_size)
    sims = view_similarities(trained.model, image_feats, text_feats)
    return sims, np.asarray(data.train_set.pids), np.asarray(data.train_set.noisy)


torch.manual_seed(seed)
print(f"profile: {profile}; seed {seed}; 05's runs: {budget(EPOCHS) + light}")

# %% tags=["nbval-ignore-output"]
views = {rate: warmup_view(warmup(rate)) for rate in (0.0, 0.5)}

# %% [markdown]
# ## Exercise 1: a bolder TCP, `min_separation=2.0`

# %%
rows = []
for rate, (sims, pids, noisy) in views.items():
    for separation in (3.0, 2.0):
        part = tcp_partition(sims[0], sims[1], pids, min_separation=separation)
        scores = detection_scores(part, noisy)
        rows.append({"noise": f"{rate:.0%}", "min_separation": separation, **part.counts(),
                     "flagged %": 100 * part.counts()["noisy"] / len(pids),
                     "precision": scores["precision"], "recall": scores["recall"]})
bolder = pd.DataFrame(rows).set_index(["noise", "min_separation"])
print(bolder.round(3).to_string())

# %% [markdown]
# **Answer.** At 0% noise nothing changes: both settings flag the same 100 pairs (2.5%), every one a false alarm
# (precision 0), so the mixture rule is not what raises those flags. At 50% noise the bolder setting lets the
# mixture decide for more identities: it flags 110 pairs instead of 32, recall triples (0.016 -> 0.050) at a
# small cost in precision (1.00 -> 0.91), and the pairs the two views disagree on ("uncertain", weighted 1/2)
# grow from 394 to 1,289. Either way TCP catches only a few percent of the 2,000 noisy pairs after this short
# warm-up.

# %% [markdown]
# ## Exercise 2: a longer warm-up (two epochs of five)

# %% tags=["nbval-ignore-output"]
longer = warmup(0.5, epochs=5, extra=("train.partition_warmup_epochs=2",))

# %%
hist, auc = {}, {}
for label, (run, epoch) in {"05: after 1 of 3 epochs": (warmup(0.5), 1),
                            "after 1 of 5 epochs": (longer, 1),
                            "after 2 of 5 epochs": (longer, 2)}.items():
    sims, _, noisy = warmup_view(run, epoch)
    auc[label] = float(roc_auc_score(~noisy, sims[0]))
    gap = sims[0][~noisy].mean() - sims[0][noisy].mean()
    hist[f"{label} (AUC {auc[label]:.2f})"] = sims[0]
    print(f"{label}: clean - noisy mean similarity {gap:.3f}, AUC {auc[label]:.3f}")
fig = plot_similarity_histograms({k: v for k, v in list(hist.items())[-1:]}, noisy,
                                 title="50% noise, global view, after 2 of 5 epochs")
plt.show()

# %% [markdown]
# **Answer.** Slightly. After two warm-up epochs of five (40% of the pass) the clean and noisy similarities
# are a little further apart than after 05's one epoch of three (33%): AUC 0.824 against 0.816, mean gap 0.072
# against 0.059. The middle row (one epoch of five, 20% of the pass: AUC 0.746) shows that what matters is how
# many steps the warm-up trains, not how the pass is cut into epochs: separation grows with the warm-up's
# length, and the partition that follows starts from slightly better similarities.

# %% [markdown]
# ## Exercise 3: one view only
#
# With `model.kpdm.tse=false` the model has one view, and the partitioner is given it twice
# (`tireid_lite.train.noise.two_views`). The partition on 05's warm-up similarities, with its two views and
# with the global view twice:

# %%
sims, pids, noisy = views[0.5]
rows = {}
for label, (a, b) in {"two views (global, TSE)": (sims[0], sims[1]), "one view (global twice)": (sims[0], sims[0])}.items():
    part = tcp_partition(a, b, pids)
    rows[label] = {**part.counts(), **{k: detection_scores(part, noisy)[k] for k in ("precision", "recall")}}
views_table = pd.DataFrame(rows).T
print(views_table.round(3).to_string())
uncertain_one_view = int(views_table.loc["one view (global twice)", "uncertain"])
print(f"uncertain pairs with one view: {uncertain_one_view}")

# %% [markdown]
# **Answer.** Never: with the global view given twice the two verdicts always agree, so the partition has 0
# uncertain pairs (394 with two views). The pairs that used to be uncertain now fall on one side: 227 are
# dropped as noisy instead of 32 (precision 0.92, recall 0.105), the rest are kept as clean. One view makes
# the partition bolder and a little less precise; the second view's consensus is what gave the middle ground
# of half-weighted pairs.

# %% [markdown]
# ## Exercise 4: identities whose pairs are mostly noisy (80% noise)

# %% tags=["nbval-ignore-output"]
sims80, pids80, noisy80 = warmup_view(warmup(0.8))

# %%
part80 = tcp_partition(sims80[0], sims80[1], pids80)
flagged = part80.noisy  # both views distrust the pair
share = pd.Series(noisy80).groupby(pids80).transform("mean").to_numpy()  # each pair's identity's noisy share
groups = pd.cut(share, [-0.01, 0.5, 0.75, 1.0], labels=["at most half noisy", "half to 3/4", "over 3/4"])
by_group = pd.DataFrame({"group": groups, "noisy": noisy80, "flagged": flagged}).groupby("group", observed=True)
summary = pd.DataFrame({
    "pairs": by_group.size(),
    "recall (noisy flagged)": by_group.apply(lambda g: g["flagged"][g["noisy"]].mean()),
    "clean flagged": by_group.apply(lambda g: g["flagged"][~g["noisy"]].mean()),
})
print(f"80% noise: {noisy80.mean():.1%} of pairs noisy; TCP flags {flagged.mean():.1%}; "
      f"{detection_scores(part80, noisy80)['recall']:.2f} recall overall")
print(summary.round(3).to_string())

# %% [markdown]
# **Answer.** Almost nothing: at 80% noise TCP flags 0.3% of the pairs, and its recall is below 1% in every
# group of identities, whatever their share of noisy pairs (only 224 pairs belong to identities at most half
# noisy). TCP asks whether a pair is low *for its identity*; when most of an identity's pairs are noisy, the
# noisy similarity is the identity's normal level, the noisy pairs are not outliers, and the few clean ones sit
# above that level, where a low-outlier rule never flags anything. TCP trusts exactly the identities it should
# distrust most; at this rate a global reference (CCD's loss mixture over all pairs) is needed.

# %%
_ = save_metrics(output_dir, {
    "quick": quick,
    "ex1_flagged_at_0_bolder": float(bolder.loc[("0%", 2.0), "flagged %"]),
    "ex2_auc_after_2_of_5": auc["after 2 of 5 epochs"],
    "ex3_uncertain_one_view": uncertain_one_view,
    "ex4_recall_over_3_4": float(summary["recall (noisy flagged)"].iloc[-1]),
})
