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
# # 02 · Solutions to the exercises (for instructors)
#
# The exercises that close `02_baseline_irra`, solved. Each training exercise is answered with the short runs
# of notebooks 03-08 (`ablation_overrides`: one pass over the first 500 training identities, 62 steps) and
# compared with the baseline trained with the very same settings, so that one notebook can afford seven
# trainings; the full-profile answer is the same call without `short`. One seed, so every comparison comes
# with a bootstrap interval over the test queries, not over seeds.
#
# **Run time on cpu**: seven short trainings (about half a minute each) and, for exercise 4, the 1,200-step
# attribute pretraining of towers with IRRA's pooling: about 10 minutes the first time on a shared 2-core
# machine at load 5-8, 3 minutes once the models are cached (the two arms of exercise 5 train every time).
# `quick=True` trains each on 32 identities for a few steps (and pretrains the pooled towers for 20): the code
# runs, the numbers mean nothing.

# %%
import json
import shutil

import numpy as np
import pandas as pd
import torch

from tireid_lite.checkpoint import seed_everything
from tireid_lite.data.build import build_data
from tireid_lite.eval.metrics import per_query_metrics, retrieval_metrics
from tireid_lite.eval.probes import (
    TELLING_WORDS,  # the words that name what tells partners apart
)
from tireid_lite.eval.retrieval import score_split
from tireid_lite.eval.statistics import paired_difference
from tireid_lite.losses.matching import infonce_loss
from tireid_lite.models import build_model
from tireid_lite.models.irra import SDMHead
from tireid_lite.models.trained import load_trained
from tireid_lite.notebook import (
    ablation_overrides,
    resolve_output_dir,
    resolve_profile,
    save_metrics,
)
from tireid_lite.train.build import build_training_data
from tireid_lite.train.trainer import Trainer
from tireid_lite.train.warm_start import apply_warm_start, ensure_warm_start
from tireid_lite.zoo import get_or_train, zoo_config

# %%
NOTEBOOK = "02_baseline_irra_solutions"
QUICK = ["data.train_identities=32", "train.num_epochs=1", "train.epoch_fraction=1.0"]  # a few steps: runs, proves nothing

# %% tags=["parameters"]
profile = ""
output_dir = ""
seed = 0
quick = False

# %%
profile = resolve_profile(profile)
output_dir = resolve_output_dir(output_dir, NOTEBOOK)
short = QUICK if quick else ablation_overrides(profile)
torch.manual_seed(seed)
print(f"profile: {profile}; seed {seed}; every run: {short}")

# %% tags=["nbval-ignore-output"]
reference = get_or_train("baseline", profile, seed, overrides=short)  # the same-budget baseline of 03-08
data = build_data(reference.cfg, reference.tokenizer, train=False)
attributes = json.loads((data.dataset.root / "attributes.json").read_text(encoding="utf-8"))
hard_pairs = [pair for pair in attributes["hard_negative_pairs"] if pair["split"] == "test"]
partners = {a: (b, p["attribute"]) for p in hard_pairs for a, b in (p["ids"], p["ids"][::-1])}


def per_query(model) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """Per-query metrics on test, the similarity matrix and the identities."""
    sim, q_pids, g_pids = score_split(model, data, "test")
    sim = sim.numpy()
    return per_query_metrics(sim, q_pids, g_pids), sim, np.asarray(q_pids), np.asarray(g_pids)


def block_means(sim: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray) -> dict[str, float]:
    """What the heat-map of 02 shows, as three numbers: mean similarity of a caption to its own person's
    images, to its hard-negative partner's, and to everyone else's."""
    same = q_pids[:, None] == g_pids[None, :]
    partner = np.array([[partners.get(int(q), (None,))[0] == int(g) for g in g_pids] for q in q_pids])
    return {"own": float(sim[same].mean()), "partner": float(sim[partner].mean()),
            "others": float(sim[~same & ~partner].mean())}


ref_pq, ref_sim, q_pids, g_pids = per_query(reference.model)
rows = {"baseline (same budget)": {**reference.test_metrics, **block_means(ref_sim, q_pids, g_pids)}}


def compare(name: str, model) -> None:
    """Add ``model`` to the table and print its paired R@1 difference against the reference."""
    pq, sim, _, _ = per_query(model)
    rows[name] = {**retrieval_metrics(sim, q_pids, g_pids), **block_means(sim, q_pids, g_pids)}
    print(f"{name}: {paired_difference(ref_pq['R1'], pq['R1'], 'R1').verdict} (B = {name}, A = baseline)")


def table(names) -> pd.DataFrame:
    return pd.DataFrame({n: rows[n] for n in names}).T[["R1", "mAP", "own", "partner", "others"]].round(3)


# %% [markdown]
# ## Exercise 1: train longer
#
# Four passes over the same 500 identities instead of one.

# %% tags=["nbval-ignore-output"]
longer = get_or_train("baseline", profile, seed, overrides=[*short, "train.num_epochs=4"])

# %%
compare("4 epochs", longer.model)
print(table(["baseline (same budget)", "4 epochs"]).to_string())
gap = {n: rows[n]["own"] - rows[n]["partner"] for n in ("baseline (same budget)", "4 epochs")}
print(f"own minus partner similarity: {gap['baseline (same budget)']:.3f} -> {gap['4 epochs']:.3f}")

# %% [markdown]
# **Answer.** Four passes instead of one raise R@1 by about 3 points (27.6 -> 30.8), an interval that
# excludes 0, and mAP by about 4. On the heat-map, a caption's own person gets brighter (mean similarity
# 0.42 -> 0.51) while everyone else stays near 0, but the hard-negative partner block brightens just as much
# (0.40 -> 0.49): the gap between own and partner barely moves (0.023 -> 0.025). Longer training sharpens the
# diagonal against strangers, not against partners; a partner differs in one small attribute that most
# captions do not name (01, section 3.1).

# %% [markdown]
# ## Exercise 2: from random weights, and SDM alone

# %% tags=["nbval-ignore-output"]
scratch = get_or_train("baseline", profile, seed, overrides=[*short, "model.warm_start=none", "train.num_epochs=2"])
scratch_sdm = get_or_train("baseline", profile, seed,
                           overrides=[*short, "model.warm_start=none", "train.num_epochs=2", "model.id_loss_weight=0"])

# %%
compare("from scratch, 2 epochs", scratch.model)
compare("from scratch, 2 epochs, SDM only", scratch_sdm.model)
print(table(["baseline (same budget)", "from scratch, 2 epochs", "from scratch, 2 epochs, SDM only"]).to_string())
chance_r1 = 100 * float(np.mean([(g_pids == q).sum() for q in q_pids])) / len(g_pids)
print(f"chance R@1: {chance_r1:.2f}%")

# %% [markdown]
# **Answer.** Without the warm start the baseline barely leaves chance: 1.4% R@1 after twice the steps (0.5% by
# chance) against 27.6% warm-started, and every similarity is about 0 (own, partner and others alike): in 124
# steps the towers from random weights have not learned an embedding at all. SDM alone does no better (0.6%):
# with towers that start from nothing, the matching loss over a batch gives too weak a signal in this budget,
# and the identity classifier does not rescue it either. The attribute warm start is what makes the short
# cpu runs learn anything.

# %% [markdown]
# ## Exercise 3: IRRA's temperature, 0.02

# %% tags=["nbval-ignore-output"]
cold = get_or_train("baseline", profile, seed, overrides=[*short, "model.temperature=0.02"])

# %%
compare("temperature 0.02", cold.model)
print(table(["baseline (same budget)", "temperature 0.02"]).to_string())
log = cold.log()
print(f"SDM loss at temperature 0.02: first logged {log['sdm'].iloc[0]:.3f}, last {log['sdm'].iloc[-1]:.3f}; "
      f"at 0.1: first {reference.log()['sdm'].iloc[0]:.3f}, last {reference.log()['sdm'].iloc[-1]:.3f}")

# %% [markdown]
# **Answer.** Nothing dramatic in 62 steps: R@1 28.4 against 27.6, an interval that includes 0, and mAP a
# little lower (26.8 against 28.3). What changes is the geometry: at $\tau = 0.02$ the logits are five times
# sharper, so small cosine gaps already make a confident softmax; the model stops pulling pairs together
# early, and a caption's similarity to its own person stays at 0.28 instead of 0.42 while strangers drift up
# to 0.02. With CLIP's towers, whose similarities are already spread out, the sharper softmax pays; here it
# only compresses the similarities.

# %% [markdown]
# ## Exercise 4: IRRA's pooling (class token, end-of-text token)

# %% tags=["nbval-ignore-output"]
# The pooling is part of the warm start's key: these towers get their own attribute pretraining (minutes, once;
# a few steps in quick mode).
pooling = ["model.image_pool=cls", "model.text_pool=eot", *(["model.warm_start_steps=20"] if quick else [])]
pooled = get_or_train("baseline", profile, seed, overrides=[*short, *pooling])

# %%
compare("cls / eot pooling", pooled.model)
print(table(["baseline (same budget)", "cls / eot pooling"]).to_string())
print(f"training time: mean pooling {reference.train_seconds():.1f} s, cls/eot {pooled.train_seconds():.1f} s "
      f"for the same {len(pooled.log())} logged rows of steps (times taken on a shared machine)")

# %% [markdown]
# **Answer.** Not measurably slower here: in the same 62 steps IRRA's pooling reaches 27.0% R@1 against 27.6%,
# an interval that includes 0. The towers with IRRA's pooling got their own attribute pretraining (the warm
# start's key includes the pooling), which trained the class token and the end token to summarise; so the
# "slower learning" of a class token that starts untrained does not show in this setting. The printed times
# are wall-clock on a shared machine, not a property of the pooling.

# %% [markdown]
# ## Exercise 5: InfoNCE instead of SDM, with identity batches
#
# A copy of the SDM head whose loss is CLIP's InfoNCE (the diagonal as the only positive); the rest of the
# model is untouched. Both arms are trained the same way (same seed, same identity sampler: 16 identities x
# 4 pairs per batch), only the head differs.

# %%
class InfoNCEHead(SDMHead):
    """The SDM head with InfoNCE as its loss: pair i is the only positive of caption i, even when the batch
    holds other pairs of the same person."""

    def forward(self, model, enc, batch):
        return {"sdm": infonce_loss(enc.image_feats, enc.text_feats, self.logit_scale)}


def train_matching_arm(loss: str, overrides: list[str]):
    """Train the baseline with the SDM head (``loss="sdm"``) or its InfoNCE copy, into this run's output folder."""
    cfg = zoo_config("baseline", profile, seed, overrides)
    seed_everything(cfg.train.seed)
    train_data = build_training_data(cfg)
    model = build_model(cfg, train_data.tokenizer, train_data.num_classes)
    if cfg.model.warm_start == "attributes":
        apply_warm_start(model, ensure_warm_start(cfg, train_data.tokenizer))
    if loss == "infonce":
        model.heads["sdm"] = InfoNCEHead(cfg.model.temperature, cfg.model.sdm_loss_weight)
    out = output_dir / f"matching_{loss}"
    shutil.rmtree(out, ignore_errors=True)  # this run's own folder
    Trainer(cfg, out, data=train_data, model=model).fit()
    return load_trained(out / "best.pt")


# %% tags=["nbval-ignore-output"]
identity_batches = [*short, "data.sampler=identity"]
sdm_arm = train_matching_arm("sdm", identity_batches)
infonce_arm = train_matching_arm("infonce", identity_batches)

# %%
sdm_pq, sdm_sim, _, _ = per_query(sdm_arm.model)
info_pq, info_sim, _, _ = per_query(infonce_arm.model)
rows["SDM, identity batches"] = {**retrieval_metrics(sdm_sim, q_pids, g_pids), **block_means(sdm_sim, q_pids, g_pids)}
rows["InfoNCE, identity batches"] = {**retrieval_metrics(info_sim, q_pids, g_pids),
                                     **block_means(info_sim, q_pids, g_pids)}
print(table(["SDM, identity batches", "InfoNCE, identity batches"]).to_string())
infonce_vs_sdm = paired_difference(sdm_pq["R1"], info_pq["R1"], "R1")
print(f"InfoNCE - SDM: {infonce_vs_sdm.verdict}")

# %% [markdown]
# **Answer.** With four pairs of each person in every batch, InfoNCE treats three of them as negatives: it
# pushes a caption away from other images of its own person, and the "own" column shows it (0.35 against
# SDM's 0.43). In R@1 the difference is small, -0.9 points with an interval that includes 0: one seed of 62
# steps does not show SDM beating InfoNCE, though the similarities show InfoNCE working against the identity
# structure that SDM's target respects.

# %% [markdown]
# ## Exercise 6: a query whose top image is the hard-negative partner
#
# The baseline of 02 (full cpu-profile training); in quick mode the short reference stands in for it.

# %% tags=["nbval-ignore-output"]
full = reference if quick else get_or_train("baseline", profile, seed)

# %%
full_pq, full_sim, _, _ = per_query(full.model)
top1 = g_pids[full_sim.argmax(1)]
captions = data.queries("test").captions
hits = [q for q in range(len(q_pids)) if partners.get(int(q_pids[q]), (None,))[0] == int(top1[q])]
named = {q: bool(TELLING_WORDS[partners[int(q_pids[q])][1]] & set(captions[q].lower().replace(".", " ").split()))
         for q in hits}
print(f"{len(hits)} of {len(q_pids)} test queries rank their hard-negative partner first")
if hits:
    q = hits[0]
    partner, attribute = partners[int(q_pids[q])]
    print(f"query {q} (identity {q_pids[q]}): {captions[q]}")
    print(f"top image: identity {partner}, which differs only in {attribute}; "
          f"the caption {'names' if named[q] else 'does not name'} it")
    by_attribute = pd.DataFrame({"attribute": [partners[int(q_pids[q])][1] for q in hits],
                                 "caption names it": [named[q] for q in hits]})
    print(by_attribute.groupby("attribute")["caption names it"].agg(["size", "mean"]).round(2).to_string())
    share_named = float(np.mean(list(named.values())))
    print(f"of these queries, {share_named:.0%} name the telling feature")
else:
    share_named = float("nan")

# %% [markdown]
# **Answer.** 130 of the 1,600 test queries rank the hard-negative partner first. Query 17 is one: its
# partner differs only in the bag's colour, and the caption does name it ("a black backpack"), so the model
# had the word and did not use it. Over all 130, the caption names the telling feature in 40% of the cases:
# shoes and bag colours most often (about half), hair colour and the hat least (19% and 25%). Where the
# caption does not name the feature, no model can tell the two apart; where it does, the baseline has not
# learned to read that word.

# %%
_ = save_metrics(output_dir, {
    "quick": quick,
    **{f"{name}_R1": float(row["R1"]) for name, row in rows.items()},
    "ex5_infonce_minus_sdm_R1": infonce_vs_sdm.diff,
    "ex6_partner_first": len(hits),
})
