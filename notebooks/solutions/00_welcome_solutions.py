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
# # 00 · Solutions to the exercises (for instructors)
#
# The exercises that close `00_welcome`, solved: each answer is computed below and the text beside it
# reads the printed numbers. Nothing here trains a model; it runs in under a minute.

# %%
import numpy as np
import pandas as pd
from PIL import Image

from tireid_lite.config import get_profile
from tireid_lite.data.build import dataset_root
from tireid_lite.data.readers import read_dataset
from tireid_lite.eval.colour_matching import caption_colour_vector, colour_match_scores
from tireid_lite.eval.metrics import per_query_metrics, retrieval_metrics
from tireid_lite.notebook import resolve_output_dir, resolve_profile, save_metrics

# %%
NOTEBOOK = "00_welcome_solutions"

# %% tags=["parameters"]
profile = ""
output_dir = ""
seed = 0
quick = False

# %%
profile = resolve_profile(profile)
output_dir = resolve_output_dir(output_dir, NOTEBOOK)
root = dataset_root(get_profile("cpu"))  # 00 always shows the cpu profile's SynthPEDES
dataset = read_dataset("synth", root)
test = dataset.eval_set("test")
q_pids, g_pids = np.array(test.query_pids), np.array(test.gallery_pids)
images = [np.asarray(Image.open(dataset.image_path(p)).convert("RGB")) for p in test.gallery_paths]
part_maps = [np.asarray(Image.open(root / "parts" / p)) for p in test.gallery_paths]
sim = colour_match_scores(test.query_captions, images, part_maps)
plain = retrieval_metrics(sim, q_pids, g_pids)
print(f"colour matcher of 00: R@1 {plain['R1']:.2f}, R@10 {plain['R10']:.2f} over {len(q_pids):,} queries")

# %% [markdown]
# ## Exercise 1: which captions does the colour matcher rank well?
#
# The `seed` of 00 only picks which three queries are drawn; rather than re-running with seeds one at a
# time, we look at every query at once and group the per-query R@1 by how many colour words the caption
# names (and how many *distinct* colours, since a caption can repeat one).

# %%
per_query = per_query_metrics(sim, q_pids, g_pids)
colour_words = np.array([int(caption_colour_vector(c).sum()) for c in test.query_captions])
distinct = np.array([int((caption_colour_vector(c) > 0).sum()) for c in test.query_captions])
by_count = pd.DataFrame({"distinct colours": distinct, "R1": per_query["R1"]}).groupby("distinct colours")["R1"]
table1 = pd.DataFrame({"queries": by_count.size(), "R@1 (%)": by_count.mean().round(1)})
print(table1.to_string())
best_count = int(table1["R@1 (%)"].idxmax())
print(f"best: captions naming {best_count} distinct colour(s), R@1 {table1['R@1 (%)'].max():.1f}%; "
      f"worst: {int(table1['R@1 (%)'].idxmin())} distinct colour(s), R@1 {table1['R@1 (%)'].min():.1f}%; "
      f"captions without any colour word: {int((distinct == 0).sum())}")
rng = np.random.default_rng(seed)
for q in sorted(rng.choice(len(q_pids), size=3, replace=False).tolist()):
    print(f"query {q} (R@1 {per_query['R1'][q]:.0f}, {distinct[q]} colours): {test.query_captions[q]}")

# %% [markdown]
# **Answer.** The table answers for every seed at once. R@1 climbs with the number of distinct colours a
# caption names: from about 5% for one colour to about 47% for five and 57% for the seven captions with six
# (every test caption names at least one colour). A caption naming one or two colours, shared by many people
# in a skewed palette, cannot single anyone out; the three queries drawn by `seed` show that even three or
# four colours fail when the matcher cannot tell *which* garment a colour belongs to (blue shirt and black
# pants score the same as black shirt and blue pants).

# %% [markdown]
# ## Exercise 2: without part maps

# %%
sim_no_maps = colour_match_scores(test.query_captions, images)
no_maps = retrieval_metrics(sim_no_maps, q_pids, g_pids)
change = no_maps["R1"] - plain["R1"]
print(f"R@1 with part maps {plain['R1']:.2f}, without {no_maps['R1']:.2f}: "
      f"{'up' if change > 0 else 'down'} by {abs(change):.2f} points")
background_share = np.mean([np.isin(pm, [0]).mean() for pm in part_maps])
print(f"share of background pixels in a gallery image: {background_share:.2f}")

# %% [markdown]
# **Answer.** R@1 collapses, from about 18% to about 1% (near chance, 0.5%). Without part maps every pixel
# votes, and about two thirds of a gallery image is background, which no caption describes: the histogram
# is dominated by the background's colours, so the score mostly ranks backgrounds. Background colours matter
# because they are the larger share of the pixels.

# %% [markdown]
# ## Exercise 3: a little structure
#
# Split each caption at the first "and" or "with": the first part usually describes the top, the rest the
# bottom and the shoes. Score the top half of each image against the first part's colours and the bottom
# half against the rest, and add the two cosines. A part without colour words scores 0 and leaves the other
# to decide.

# %%
def split_caption(caption: str) -> tuple[str, str]:
    """The caption before its first " and " / " with ", and the rest ("" when there is neither)."""
    text = caption.lower()
    cuts = [i for i in (text.find(" and "), text.find(" with ")) if i >= 0]
    return (caption[:min(cuts)], caption[min(cuts):]) if cuts else (caption, "")


heads, tails = zip(*(split_caption(c) for c in test.query_captions))
half = images[0].shape[0] // 2
top = colour_match_scores(heads, [im[:half] for im in images], [pm[:half] for pm in part_maps])
bottom = colour_match_scores(tails, [im[half:] for im in images], [pm[half:] for pm in part_maps])
structured = retrieval_metrics(top + bottom, q_pids, g_pids)
mixed = retrieval_metrics(sim + top, q_pids, g_pids)  # the plain score plus the first part against the top
table3 = pd.DataFrame({"plain (00)": plain, "top/bottom halves": structured, "plain + first part on top": mixed}).T
print(table3[["R1", "R5", "R10", "mAP"]].round(2).to_string())
print(f"the best of the three by R@1: {table3['R1'].idxmax()}")

# %% [markdown]
# **Answer.** No: both structured scores are *below* the plain matcher (top/bottom halves about 9% R@1,
# plain plus the first part about 15%, against 18%). The split is too crude for these captions: the first
# part is often "The man with short black hair" (hair, not the top), "and" joins shoes or bags as often as
# tops and bottoms, and a half of a 96-pixel image cuts through the top of the trousers. Binding colours to
# garments needs to know which words describe which part, which is what the learned models of 02-08 must
# find from data.

# %% [markdown]
# ## Exercise 4: chance R@10 by hand
#
# With $G$ gallery images of which $m$ match the query, a random ranking misses all $m$ in its top 10 with
# probability $\binom{G-m}{10} / \binom{G}{10} = \prod_{i=0}^{9} \frac{G-m-i}{G-i}$.

# %%
G = len(g_pids)
m = int(np.bincount(g_pids)[q_pids].min()), int(np.bincount(g_pids)[q_pids].max())
print(f"G = {G}, matches per query between {m[0]} and {m[1]}")
miss = np.prod([(G - 4 - i) / (G - i) for i in range(10)])
by_hand = 100 * (1 - miss)
matches = (q_pids[:, None] == g_pids[None, :]).sum(1)
table_value = float(100 * np.mean([1 - np.prod([(G - k - i) / (G - i) for i in range(10)]) for k in matches]))
print(f"chance R@10 by hand (m = 4): {by_hand:.3f}%; the table of 00 (per-query m): {table_value:.3f}%; "
      f"about 10 m / G = {100 * 10 * 4 / G:.2f}%")

# %% [markdown]
# **Answer.** The hand value and the "random ranking" row of 00's table agree as printed (every test
# identity has 4 images); both are close to $10m/G$ because ten draws from 800 barely deplete the gallery.

# %%
_ = save_metrics(output_dir, {
    "quick": quick,
    "ex1_best_distinct_colours": best_count,
    "ex2_R1_without_part_maps": no_maps["R1"],
    "ex3_R1_top_bottom": structured["R1"],
    "ex4_chance_R10": by_hand,
})
