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
# # 06 · Solutions to the exercises (for instructors)
#
# The exercises that close `06_bilma_semantic_mim`, solved, with the notebook's short runs (one pass over the
# first 500 training identities; the BiLMa model is 06's own, cached).
#
# **Run time on cpu**: two short trainings (06's BiLMa arm when it is not cached, and the larger mask ratio): 6
# minutes on a shared 2-core machine at load 8-10, under a minute once cached. `quick=True` trains on 32
# identities for a few steps: the code runs, the numbers mean nothing.

# %%
from types import MethodType

import numpy as np
import pandas as pd
import torch

from tireid_lite.data.build import build_data
from tireid_lite.data.patch_labels import ParsingMaps, layout_prior, patch_labels
from tireid_lite.data.synth.materials import PART_CLASSES
from tireid_lite.eval.statistics import paired_difference
from tireid_lite.models.bilma import MaskedImageHead, evaluate_mim
from tireid_lite.notebook import ablation_overrides, per_query_results, resolve_output_dir, resolve_profile, save_metrics
from tireid_lite.zoo import get_or_train

# %%
NOTEBOOK = "06_bilma_semantic_mim_solutions"
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
bilma = get_or_train("bilma", profile, seed, overrides=short)  # 06's model
data = build_data(bilma.cfg, bilma.tokenizer, train=False)
gallery = data.gallery("test")
patch = bilma.cfg.model.patch_size
maps = ParsingMaps.for_dataset(data.dataset)
part_maps = [maps.load(path, size=data.image_size) for path in gallery.paths]

# %% [markdown]
# ## Exercise 1: the coverage threshold

# %%
coverage_rows = {}
for coverage in (0.25, 0.5, 0.75):
    labels = np.stack([patch_labels(m, patch, coverage=coverage).reshape(-1) for m in part_maps])  # (G, N)
    coverage_rows[coverage] = np.bincount(labels.reshape(-1), minlength=len(PART_CLASSES))
by_coverage = pd.DataFrame(coverage_rows, index=list(PART_CLASSES))
total = by_coverage[0.5].sum()
print("background share of the patches: " + ", ".join(f"coverage {c}: {by_coverage[c]['background'] / total:.1%}"
                                                         for c in by_coverage))
parts = by_coverage.drop("background")
parts["kept at 0.75 / at 0.25"] = (parts[0.75] / parts[0.25].where(parts[0.25] > 0)).round(2)
print(parts.to_string())
loses_most = parts["kept at 0.75 / at 0.25"].idxmin()
print(f"the part that loses the largest share of its patches from 0.25 to 0.75: {loses_most}")

# %% [markdown]
# **Answer.** Background grows from 48% of the patches at coverage 0.25 to 62% at 0.5 and 75% at 0.75. Small and
# thin parts lose most: from 0.25 to 0.75, shoes keep 4% of their patches, hat and face 8%, arms and hair about
# 20%, while upper and lower clothes, legs and bag keep more than half. At 0.75 the MIM head would hardly ever
# be asked for a shoe, a hat or a face.

# %% [markdown]
# ## Exercise 2: mask more, `mim_ratio=0.5`

# %% tags=["nbval-ignore-output"]
more = get_or_train("bilma", profile, seed, overrides=[*short, "model.bilma.mim_ratio=0.5"])

# %%
def mim_accuracy(model, ratio: float) -> float:
    """The MIM head's test accuracy with ``ratio`` of the patches masked."""
    head = model.heads["mim"]
    own = head.ratio
    head.ratio = ratio
    try:
        return 100 * evaluate_mim(model, data, "test", seed=seed)["accuracy"]
    finally:
        head.ratio = own


accuracy = pd.DataFrame({f"masked {r:.0%} at test": {"trained at 15%": mim_accuracy(bilma.model, r),
                                                    "trained at 50%": mim_accuracy(more.model, r)}
                         for r in (0.15, 0.5)})
print(accuracy.round(1).to_string())
ratio_diff = paired_difference(per_query_results(bilma, data)["R1"], per_query_results(more, data)["R1"])
print(f"R@1: {bilma.test_metrics['R1']:.2f} (15%) vs {more.test_metrics['R1']:.2f} (50%); "
      f"A = 15%, B = 50%: {ratio_diff.verdict}")

# %% [markdown]
# **Answer.** The accuracy does not move: 81.3-81.6% whichever ratio the head was trained with and whichever it
# is tested with. That is the level of a head that names the frequent classes (background, upper and lower
# clothes, which are most of the masked patches; exercise 3's table shows it scores 0 on the small parts), and
# such a head loses nothing when more neighbours are hidden. Retrieval does not change either: 27.6% against
# 27.2% R@1, an interval from -0.1 to +0.9 that includes 0.

# %% [markdown]
# ## Exercise 3: hide the caption from the MIM head
#
# A copy of `MaskedImageHead.predictions` that replaces the caption by an empty one (start and end tokens
# only), bound to the trained head for the evaluation and removed afterwards.

# %%
def blind_predictions(self, model, images, patch_mask, caption_ids, text_tokens=None):
    """MaskedImageHead.predictions with a caption that says nothing."""
    empty = model.tokenizer([""] * caption_ids.shape[0])  # (B, L): start, end, padding
    return MaskedImageHead.predictions(self, model, images, patch_mask, empty)


head = bilma.model.heads["mim"]
with_caption = evaluate_mim(bilma.model, data, "test", seed=seed)
head.predictions = MethodType(blind_predictions, head)
try:
    without_caption = evaluate_mim(bilma.model, data, "test", seed=seed)
finally:
    del head.predictions  # back to the class's method
blind = pd.DataFrame({"masked patches": with_caption["count"].numpy().astype(int),
                      "with caption %": (100 * with_caption["per_class"]).numpy().round(1),
                      "without %": (100 * without_caption["per_class"]).numpy().round(1)}, index=list(PART_CLASSES))
print(blind.to_string())
from_text = 100 * (with_caption["accuracy"] - without_caption["accuracy"])
print(f"all masked patches: {100 * with_caption['accuracy']:.1f}% with the caption, "
      f"{100 * without_caption['accuracy']:.1f}% without: {from_text:+.1f} points from the text")

# %% [markdown]
# **Answer.** 1.5 points of the head's 81.6% come from the caption (80.1% with an empty one, the same masks). They
# come from two classes: upper clothes (73% with the caption, 63% without) and legs (20% against 0); the large
# classes the head names from position alone (background, lower clothes) do not need the text, and the small
# parts (hat, face, arms, shoes, bag) are never named right, caption or not. So the caption helps where it
# names the garment most captions describe first, the top; it does not (yet) help on the small parts.

# %% [markdown]
# ## Exercise 4: the body-layout prior against the true part maps

# %%
prior = patch_labels(layout_prior(data.image_size), patch).reshape(-1)  # (N,) the same for every image
truth = np.stack([patch_labels(m, patch).reshape(-1) for m in part_maps])  # (G, N)
rows = []
for c, name in enumerate(PART_CLASSES):
    on = truth == c
    if on.sum():
        predicted = np.broadcast_to(prior, truth.shape)[on]
        rows.append({"part": name, "true patches": int(on.sum()), "prior right %": 100 * float((predicted == c).mean()),
                     "prior says instead": PART_CLASSES[np.bincount(predicted[predicted != c], minlength=len(PART_CLASSES)).argmax()]
                     if (predicted != c).any() else "-"})
prior_table = pd.DataFrame(rows).set_index("part").sort_values("prior right %")
print(prior_table.round(1).to_string())
print(f"patches the prior labels right: {100 * float((truth == prior).mean()):.1f}%")

# %% [markdown]
# **Answer.** The prior never gets hat, arms or bag right (0%): it has no such classes, and calls them face,
# background and upper clothes. Next come hair (5%, called face: the band is too thin for a real head), shoes
# (25%, called legs) and legs (27%, called lower clothes): the band boundaries sit where an average person's are,
# and a person standing a little higher, lower or with longer trousers moves them. Overall it labels 71% of the
# patches right, mostly background and the two garments; a model trained on the prior would learn a position
# code for those, not parts.

# %%
_ = save_metrics(output_dir, {
    "quick": quick,
    "ex1_background_share_075": float(by_coverage[0.75]["background"] / total),
    "ex2_R1_ratio_05_minus_015": ratio_diff.diff,
    "ex3_points_from_caption": float(from_text),
    "ex4_prior_right": 100 * float((truth == prior).mean()),
})
