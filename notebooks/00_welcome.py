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
# # 00 · Welcome: text-to-image person re-identification
#
# **What you will learn**
# - what text-to-image person re-identification (TIReID) is: a sentence in, a ranked gallery of pedestrians out;
# - how retrieval is scored (R@k, mAP), on a first ranking made by a hand-written colour matcher;
# - the four papers this course reproduces, and which notebook teaches which mechanism;
# - the two profiles (`cpu` for laptops and CI, `gpu` for real training) and what your machine offers;
# - how to open the notebooks in JupyterLab and how every notebook is checked.
#
# **Prerequisites**: Python and a little NumPy. No deep learning yet.
#
# **Run time on cpu**: under a minute (the first run also generates SynthPEDES, a few seconds more).

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image

from tireid_lite.config import flatten, get_profile
from tireid_lite.data.build import dataset_root
from tireid_lite.data.readers import read_dataset
from tireid_lite.envinfo import environment_report
from tireid_lite.eval.colour_matching import (
    COLOUR_NAMES,
    caption_colour_vector,
    colour_match_scores,
    image_colour_histogram,
)
from tireid_lite.eval.metrics import retrieval_metrics
from tireid_lite.models.methods import METHODS
from tireid_lite.notebook import resolve_output_dir, resolve_profile, save_metrics
from tireid_lite.viz.architecture import plot_architecture
from tireid_lite.viz.retrieval import show_rankings

# %%
NOTEBOOK = "00_welcome"
TOP_K = 6  # gallery images shown per query
NUM_SHOWN = 3  # queries shown

# %% tags=["parameters"]
profile = ""
output_dir = ""
seed = 0

# %%
profile = resolve_profile(profile)
output_dir = resolve_output_dir(output_dir, NOTEBOOK)
cfg = get_profile(profile)
print(f"profile: {profile}")

# %% [markdown]
# ## 1. The task
#
# A witness describes a person: *"a woman in a red coat with a black backpack"*. A camera network
# has recorded thousands of pedestrians. **Text-to-image person re-identification** ranks those
# images so that the person described comes first. A *query* is a sentence, the *gallery* is a set
# of cropped pedestrian images (tall, about 3:1), and the answer is the gallery sorted by a score.
#
# The real benchmarks (CUHK-PEDES, ICFG-PEDES, RSTPReid) come from their authors on request. This
# course teaches on **SynthPEDES**, a synthetic stand-in the kit draws on your machine in the
# same file layout as CUHK-PEDES, so the code you learn is the code that reads the real data
# (notebook `01_data` shows how it is made). Here we only load its test split: every image is a
# gallery image, every caption a query.

# %%
root = dataset_root(get_profile("cpu"))  # this notebook always shows the cpu profile's SynthPEDES
dataset = read_dataset("synth", root)
test = dataset.eval_set("test")
q_pids = np.array(test.query_pids)
g_pids = np.array(test.gallery_pids)
print(f"gallery: {len(test.gallery_paths):,} images of {len(set(g_pids)):,} people")
print(f"queries: {len(test.query_captions):,} captions")
print(f"first query: {test.query_captions[0]!r}")

# %% [markdown]
# ## 2. A first ranking, with no learning at all
#
# Before any neural network, a score anyone could write: count the **colour words** in the
# caption, measure which named colours the person **wears** in each image (SynthPEDES stores a
# part map per image saying which pixels are clothes, hair, shoes or bag), and take the cosine of
# the two vectors. It lives in `tireid_lite.eval.colour_matching`.
#
# $$\text{score}(q, g) = \frac{t_q \cdot h_g}{\lVert t_q\rVert\,\lVert h_g\rVert},\qquad
# t_q[c] = \#\{\text{words of } q \text{ naming colour } c\},\quad
# h_g[c] = \text{share of worn pixels of } g \text{ nearest to colour } c$$
#
# Step 1: one caption becomes a vector of colour counts.

# %%
caption = test.query_captions[0]
t = caption_colour_vector(caption)
print(caption)
print({name: int(n) for name, n in zip(COLOUR_NAMES, t) if n})

# %% [markdown]
# Step 2: one image becomes the share of its worn pixels nearest to each colour.

# %%
def load_gallery(paths: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The RGB images and their part maps (SynthPEDES keeps the maps under ``parts/``)."""
    images = [np.asarray(Image.open(dataset.image_path(p)).convert("RGB")) for p in paths]
    parts = [np.asarray(Image.open(root / "parts" / p)) for p in paths]
    return images, parts


images, part_maps = load_gallery(test.gallery_paths)
h = image_colour_histogram(images[0], part_maps[0])
print({name: round(float(v), 3) for name, v in zip(COLOUR_NAMES, h) if v >= 0.005})

# %% [markdown]
# Step 3: the score of that pair is the cosine of the two vectors.

# %%
by_hand = float(t @ h / (np.linalg.norm(t) * np.linalg.norm(h)))
print(f"score(query 0, image 0) = {by_hand:.4f}")

# %% [markdown]
# Step 4: every caption against every image gives the similarity matrix `sim`
# (queries x gallery), the object every model in this course produces.

# %%
sim = colour_match_scores(test.query_captions, images, part_maps)
print(f"sim: {sim.shape[0]:,} queries x {sim.shape[1]:,} gallery images")

# %% [markdown]
# Here are a few queries with their top-ranked images, best first. A **green** frame is the person
# described (same identity), a **red** one is someone else; the score is under each image.

# %%
rng = np.random.default_rng(seed)
shown = sorted(rng.choice(len(test.query_captions), size=NUM_SHOWN, replace=False).tolist())
rows, correct, scores = [], [], []
for q in shown:
    order = np.argsort(-sim[q], kind="stable")[:TOP_K]  # ties: lower gallery index first
    rows.append([images[g] for g in order])
    correct.append([bool(g_pids[g] == q_pids[q]) for g in order])
    scores.append([float(sim[q, g]) for g in order])
show_rankings([test.query_captions[q] for q in shown], rows, correct, scores,
              title="Hand-made colour score (not a model): caption -> top-ranked gallery")
plt.show()

# %% [markdown]
# ## 3. How a ranking is scored
#
# For each query, find the rank $r_1$ of the first correct image and the ranks of all $m$ correct
# images $r_1 < \dots < r_m$. Then **R@k** is the share of queries with $r_1 \le k$, and
# **mAP** averages $\frac{1}{m}\sum_j j / r_j$ over queries (it rewards putting *every* match
# high). These are the IRRA protocol's definitions; notebook `01_data` works them by hand.
# A random ranking sets the floor: with $m$ matches among $G$ images, the first is in the top
# $k$ with probability $1 - \binom{G-m}{k} / \binom{G}{k}$.

# %%
colour = retrieval_metrics(sim, q_pids, g_pids)
matches = (q_pids[:, None] == g_pids[None, :]).sum(1)  # (Q,) correct images per query
G = len(g_pids)


def chance_recall(k: int) -> float:
    """Mean over queries of P(a match in the top k) for a uniformly random ranking, in percent."""
    miss = np.ones(len(matches))
    for i in range(k):  # P(first k draws without replacement all miss)
        miss *= (G - matches - i) / (G - i)
    return float(100 * (1 - miss).mean())


chance = {"R1": chance_recall(1), "R5": chance_recall(5), "R10": chance_recall(10)}
table = pd.DataFrame({"colour score": colour, "random ranking": chance}).T[["R1", "R5", "R10", "mAP"]]
print(table.round(2).to_string(na_rep="-"))

# %% [markdown]
# The colour matcher beats chance many times over, yet most of its top images are wrong. It
# cannot tell *which* garment is red, sees no patterns, bags or hats, and is fooled by two people
# wearing the same colours on different parts. Learning to look at the right part for the right
# words is what the rest of the course is about.
#
# ## 4. The course: four papers and the two they build on
#
# **IRRA** (CVPR 2023) is the course's baseline: a CLIP image tower and text tower trained so that
# matching pairs get similar features (the SDM loss), plus a masked-language task that forces the
# text to read the image (implicit relation reasoning). BiLMa extends IRRA directly. KPDM builds on
# **RDE** (CVPR 2024), itself a CLIP model in IRRA's setting that replaces SDM by a triplet
# alignment loss (TAL) on two embeddings and finds noisy pairs (CCD); notebooks 03-05 use RDE's
# parts throughout. CADA's public code starts from BLIP (a ViT-B image encoder and a BERT text
# encoder), not CLIP; the kit runs every method on the same towers so that their heads can be
# compared.
#
# | paper | its idea in one line | notebooks |
# | --- | --- | --- |
# | IRRA (CVPR 2023), the shared baseline | global alignment (SDM) + masked words predicted from the image | `02_baseline_irra` |
# | RDE (CVPR 2024), KPDM's base | TAL on a global and a token-selection embedding; noisy pairs found by consensus (CCD) | `03`, `04`, `05` |
# | **KPDM** (AAAI 2026) | mask "adjective + noun" phrases as units, keep only important patches, weight rare words (FMLM), find noisy pairs by trusted consensus | `03`, `04`, `05` |
# | **BiLMa** (ICCV 2023 Workshops) | mask image patches too, and predict their *part labels* from the text (semantic MIM) | `06_bilma_semantic_mim` |
# | **CADA** (IEEE TMM 2024) | associate text tokens with patches and image regions with attribute phrases, in both directions | `07_cada_dual_association` |
# | **Part-level correspondence** (ACCV 2024) | coarse-to-fine part embeddings and a margin ranking loss scaled by how common each part is | `08_partlevel_commonality` |
#
# Then `09_gpu_training` trains on a real dataset with CLIP ViT-B/16, and `10_paper_tables`
# rebuilds the papers' tables in miniature. Where a paper leaves a detail unpublished, the
# notebook says what the kit chose and that it is our reading, not the paper's exact method.
#
# Every method is the same model: two towers, their global features, and a few *heads*, one per
# mechanism, each adding one loss. The figure is drawn from the kit's own table of methods
# (`tireid_lite.models.methods.METHODS`), so it shows exactly what the code builds; notebooks 07
# and 08 add their rows as they are built.

# %%
method_table = {method: [head.name for head in row] for method, row in METHODS.items()}
plot_architecture(method_table)
plt.show()

# %% [markdown]
#
# ## 5. Two profiles
#
# Every notebook and `tireid train` run from one configuration with a named **profile**. `cpu`
# (the default; CI runs it) uses SynthPEDES and tiny towers that start from a small stand-in for CLIP
# (pretrained once to name SynthPEDES attributes, `model.warm_start`), so each notebook runs in
# minutes on two cores. `gpu` uses a real dataset and pretrained CLIP ViT-B/16 from a
# local folder with the papers' settings. The keys where they differ:

# %%
cpu, gpu = (flatten(get_profile(name).to_dict()) for name in ("cpu", "gpu"))
differ = [key for key in cpu if cpu[key] != gpu[key]]
profiles = pd.DataFrame({"cpu": [str(cpu[k]) for k in differ], "gpu": [str(gpu[k]) for k in differ]}, index=differ)
print(profiles.to_string())

# %% [markdown]
# A notebook takes its profile from the `profile` parameter (papermill:
# `tireid course --only 02 --set profile=gpu`), which otherwise comes from the environment
# variable `TIREID_PROFILE`, else `cpu`. Any key can be overridden on the command line, e.g.
# `tireid train --profile cpu --set train.num_epochs=3`.
#
# ## 6. Your machine
#
# What the kit runs on here (paste this into a bug report). The output differs from machine to
# machine, so the tests do not compare it.

# %% tags=["nbval-ignore-output"]
for key, value in environment_report().items():
    print(f"{key:<14} {value}")

# %% [markdown]
# ## 7. Working with the notebooks
#
# - `make lab` opens JupyterLab on `notebooks/`. Each notebook `NN_slug.ipynb` has a twin
#   `NN_slug.py` (jupytext's py:percent format, paired in `pyproject.toml`): open either one,
#   saving updates both, and review changes in the `.py` file.
# - The first code cells are always the same: imports, constants, the `parameters` cell
#   (papermill replaces it), then a cell that resolves the parameters.
# - `make course` runs every notebook in order with papermill and writes
#   `runs/<timestamp>/index.html` with each notebook's status, run time, metrics and figures.
# - `make test` runs the unit tests, re-runs every notebook and compares its `metrics.json` with
#   `tests/golden/<notebook>.json`, compares stored outputs with `pytest --nbval`, and checks that
#   each notebook and its twin agree.
# - Trained models are cached under `$TIREID_CACHE` (default `.cache/tireid-lite` in the kit), so
#   later notebooks reuse the baseline instead of training it again.
#
# ## Check
#
# The step-by-step score equals the library's, the metrics agree with a direct count of R@1, and
# the colour matcher beats a random ranking.

# %%
assert np.isclose(by_hand, sim[0, 0], atol=1e-6), (by_hand, sim[0, 0])
first_hit = (q_pids == g_pids[np.argmax(sim, axis=1)])  # argmax takes the lowest index among ties, as the metric does
assert np.isclose(100 * first_hit.mean(), colour["R1"]), (100 * first_hit.mean(), colour["R1"])
assert colour["R1"] > 3 * chance["R1"], colour
print("check passed")

# %%
save_metrics(output_dir, {
    "gallery_images": len(test.gallery_paths),
    "queries": len(test.query_captions),
    "test_identities": int(len(set(g_pids))),
    "colour_R1": colour["R1"],
    "colour_R5": colour["R5"],
    "colour_mAP": colour["mAP"],
    "chance_R1": chance["R1"],
})
print(f"metrics written to {NOTEBOOK}/metrics.json in the output folder")

# %% [markdown]
# ## Summary
#
# - TIReID ranks a gallery of pedestrian images for a sentence; the model's job is a similarity
#   matrix `sim` (queries x gallery), and R@k / mAP / mINP score the ranking it implies.
# - A hand-written colour matcher already beats chance but confuses who wears what where; learned
#   models align words with image parts.
# - The course reproduces IRRA and four later papers (KPDM, BiLMa, CADA, part-level
#   correspondence) in one library, on SynthPEDES on a laptop and on real data on a GPU.
#
# ## Exercises
#
# 1. Change `seed` in the parameters cell and re-run section 2: which kinds of caption does the
#    colour matcher rank well, and which badly?
# 2. Score the images without part maps (`colour_match_scores(test.query_captions, images)`).
#    Does R@1 go up or down? Why might background colours matter?
# 3. Give the colour matcher a little structure: split each caption at "and"/"with" and match
#    the colours of the top half of the image against the first colour word only. Does R@1 improve?
# 4. With $G$ = 800 gallery images and 4 correct ones per query, compute the chance R@10 by hand
#    and compare with the table.
