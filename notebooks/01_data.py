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
# # 01 · Data: SynthPEDES, the real formats, the checker, noise and the metrics
#
# **What you will learn**
# - what SynthPEDES is (the synthetic dataset this course trains on) and why it is written in
#   CUHK-PEDES's own file layout;
# - what is in it: identities, images with part maps, two captions per image, and the attribute
#   record behind every caption; how skewed its colour words are, and why that matters;
# - hard negatives: people who differ in one small attribute only;
# - the three real formats (CUHK-PEDES, ICFG-PEDES, RSTPReid), how each becomes one record type,
#   and IRRA's train/test conventions;
# - what the dataset checker says about a broken root;
# - noisy correspondence: what injecting 20% noise does to the training pairs;
# - R@k, mAP and mINP worked by hand on a toy similarity matrix, and checked against the library.
#
# **Prerequisites**: notebook `00_welcome` (the task, `sim`, R@k and mAP in one paragraph).
#
# **Run time on cpu**: under a minute (the first run of the course also generates
# SynthPEDES, a few seconds more).

# %%
import json
import shutil
import textwrap
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from PIL import Image

from tireid_lite.config import get_profile
from tireid_lite.data.build import build_data
from tireid_lite.data.checker import check_dataset
from tireid_lite.data.fixtures import FIXTURE_DATASETS, break_fixture, write_fixture
from tireid_lite.data.noise import inject_noise
from tireid_lite.data.readers import FORMATS, read_dataset
from tireid_lite.data.records import SPLITS
from tireid_lite.data.synth import (
    CLOTHING_COLOURS,
    VIEWS,
    Identity,
    attribute_differences,
    caption_for,
    ensure_synth,
    render_scene,
    sample_scene,
    tokens_of,
)
from tireid_lite.data.synth.attributes import colour_probs
from tireid_lite.data.synth.captions import word_count
from tireid_lite.data.transforms import denormalize
from tireid_lite.errors import DatasetError
from tireid_lite.eval.metrics import match_ranks, retrieval_metrics
from tireid_lite.notebook import resolve_output_dir, resolve_profile, save_metrics
from tireid_lite.text.tokenizers import WordTokenizer
from tireid_lite.viz.data import (
    plot_attribute_counts,
    plot_caption_lengths,
    plot_counts,
    plot_rank_frequency,
    plot_similarity,
    show_noisy_pair,
    show_pairs,
    show_samples,
)

# %%
NOTEBOOK = "01_data"
NUM_SAMPLES = 4  # SynthPEDES images shown with their part maps
NUM_PAIRS = 6  # hard-negative pairs shown
NOISE_RATE = 0.2  # share of training pairs whose captions are shuffled
CUHK_MEAN_WORDS = 23.5  # mean caption length of CUHK-PEDES (Li et al., CVPR 2017)
COLOUR_SLOTS = ("top_colour", "bottom_colour", "shoe_colour", "hat_colour", "bag_colour")  # plain Zipf draws

# %% tags=["parameters"]
profile = ""
output_dir = ""
seed = 0

# %%
profile = resolve_profile(profile)
output_dir = resolve_output_dir(output_dir, NOTEBOOK)
cfg = get_profile(profile)
rng = np.random.default_rng(seed)
print(f"profile: {profile}, seed: {seed}")

# %% [markdown]
# ## 1. SynthPEDES
#
# The real benchmarks are handed out by their authors on request, their images are of real people,
# and training on them takes a GPU. **SynthPEDES** is the kit's stand-in: pedestrians drawn by a
# program from a record of attributes (hair, hat, top, pattern, bottom, shoes, bag, each with a
# colour), seen from the front, back or side, with clutter, occluders and lighting, and two captions
# per image written from the same record. Because the program knows what it drew, every image also
# comes with a **part map** (which pixel is hat, hair, face, upper or lower clothes, arms, legs,
# shoes or bag) and every caption is true of its image: a backpack is only mentioned when the back
# or side is visible, nothing an occluder hides is described.
#
# It is written to disk in **CUHK-PEDES's own layout** (`reid_raw.json` + `imgs/`), so the code that
# reads it is the code that reads the real dataset. Two extras sit beside it: `parts/` (one part map
# per image) and `attributes.json` (the attribute record of every identity, the view and visible
# features of every image, and the hard-negative pairs).
#
# The sizes come from the profile's `data.synth_*` keys, exactly as `tireid train` builds them, so
# this is the dataset every later notebook trains on. It is generated once into the cache
# (`$TIREID_CACHE/synth/<key>`, the key a hash of the parameters) and read from there afterwards.

# %%
data_cfg = cfg.data
root = ensure_synth(
    ids_train=data_cfg.synth_ids_train,
    ids_val=data_cfg.synth_ids_val,
    ids_test=data_cfg.synth_ids_test,
    images_per_id=data_cfg.synth_images_per_id,
    size=tuple(data_cfg.image_size),
    seed=data_cfg.synth_seed,
)
dataset = read_dataset("synth", root)
attributes = json.loads((root / "attributes.json").read_text(encoding="utf-8"))
height, width = data_cfg.image_size
print(f"SynthPEDES {height}x{width}, seed {data_cfg.synth_seed}, cache key {root.name}")
print(f"{len(dataset.records):,} images; files at the root: {', '.join(sorted(p.name for p in root.iterdir()))}")
print(f"first image: imgs/{dataset.records[0].path}, its part map: parts/{dataset.records[0].path}")

# %% [markdown]
# ### 1.1 Samples with their part maps and captions
#
# A few training images from different identities. Beside each image, its part map painted over it
# (the colours are the part classes of the legend), then its two captions.

# %%
image_info = {entry["file_path"]: entry for entry in attributes["images"]}
identities = {entry["id"]: entry for entry in attributes["identities"]}


def load_image(rel: str) -> np.ndarray:
    """The RGB image ``imgs/<rel>`` as an (H, W, 3) uint8 array."""
    return np.asarray(Image.open(dataset.image_path(rel)).convert("RGB"))


def load_parts(rel: str) -> np.ndarray:
    """The part map ``parts/<rel>`` as an (H, W) array of indices into PART_CLASSES."""
    return np.asarray(Image.open(root / "parts" / rel))


train_records = dataset.split("train")
train_pids = sorted({r.pid for r in train_records})
shown_pids = sorted(rng.choice(train_pids, size=NUM_SAMPLES, replace=False).tolist())
samples = [next(r for r in train_records if r.pid == pid) for pid in shown_pids]
fig = show_samples(
    [load_image(r.path) for r in samples],
    [load_parts(r.path) for r in samples],
    [r.captions for r in samples],
    [f"identity {r.pid}, {image_info[r.path]['view']} view" for r in samples],
)
plt.show()

# %% [markdown]
# ### 1.2 The attribute record behind one identity
#
# Every caption is written from a record like this one. The last three fields (skin tone, build,
# height) vary the drawing but never appear in a caption; a field is `None` when its parent leaves
# nothing to describe (no hat, so no hat colour). The record of the first identity above:

# %%
record = identities[samples[0].pid]
print(pd.Series(record).to_string())

# %% [markdown]
# ### 1.2b What the model sees
#
# Training never sees the drawings above as they are. Each time a pair is drawn, the image is
# resized to the profile's input size (96x32 in `cpu`), padded by `data.pad` pixels and cropped back
# at a random place (a small shift), and flipped left-right with probability `data.flip_p`. A flip
# would make "bag on the left shoulder" false, so the caption is mirrored with it (left and right
# swapped). Four draws of one training pair:

# %%
seen = build_data(cfg).train_set
pair_index = next(i for i, pair in enumerate(seen.pairs) if "left" in pair.caption or "right" in pair.caption)
draws = []
for draw in range(4):
    torch.manual_seed(draw)  # the item's randomness (the Trainer seeds it from seed, epoch and index)
    item = seen[pair_index]
    draws.append((denormalize(item["images"]).permute(1, 2, 0).numpy(), seen.tokenizer.decode(item["caption_ids"])))
fig, axes = plt.subplots(1, 4, figsize=(9, 4.2))
for ax, (image, caption) in zip(axes, draws):
    ax.imshow(image)
    ax.set_title("\n".join(textwrap.wrap(caption, 26)), fontsize=7)
    ax.axis("off")
fig.suptitle(f"one training pair, four draws ({image.shape[0]}x{image.shape[1]} input; flips mirror the caption)")
fig.tight_layout(rect=(0, 0, 1, 0.95))
plt.show()

# %% [markdown]
# ### 1.3 One person from four sides
#
# The same functions that wrote the dataset can draw one identity on demand: `sample_scene` picks a
# scene (pose, crop, clutter, lighting, maybe an occluder), `render_scene` draws it and says which
# features stay visible, and `caption_for` describes only those. Notice what each view can and
# cannot show (a logo from the front, a backpack from the back).

# %%
person = Identity(**{k: v for k, v in record.items() if k not in ("id", "split")})
drawn = [render_scene(sample_scene(person, view, rng), (height, width)) for view in VIEWS]
fig = show_samples(
    [image for image, _, _ in drawn],
    [parts for _, parts, _ in drawn],
    [[caption_for(person, view, rng, visible=visible)] for view, (_, _, visible) in zip(VIEWS, drawn)],
    [f"{view} view; visible: {', '.join(sorted(visible - {'occluded'}))}"
     + ("; partly occluded" if "occluded" in visible else "") for view, (_, _, visible) in zip(VIEWS, drawn)],
)
plt.show()

# %% [markdown]
# ## 2. Statistics
#
# ### 2.1 Identities, images and captions per split
#
# Splits share no identity. Every identity has the same number of images and every image two
# captions, so captions = 2 x images (CUHK-PEDES has about 2 per image too, on 11,003 / 1,000 /
# 1,000 identities).

# %%
split_table = pd.DataFrame(
    [
        {
            "split": split,
            "ids": len({r.pid for r in dataset.split(split)}),
            "images": len(dataset.split(split)),
            "captions": sum(len(r.captions) for r in dataset.split(split)),
        }
        for split in SPLITS
    ]
).set_index("split")
print(split_table.to_string())

# %% [markdown]
# ### 2.2 Attribute frequencies
#
# How often each value occurs among the training identities. Some are balanced by design (gender),
# some are not (most people wear no hat, trousers are far more common than skirts).

# %%
train_identities = [entry for entry in attributes["identities"] if entry["split"] == "train"]
fig = plot_attribute_counts(
    train_identities,
    ["gender", "hair_style", "hat", "top", "top_pattern", "bottom", "bag", "top_colour", "shoe_colour"],
)
plt.show()

# %% [markdown]
# ### 2.3 Colours follow a Zipf-like law
#
# Clothing colours are drawn with a skewed frequency, as in real captions (black and white clothes
# are everywhere, orange ones are rare): the colour of frequency rank $k$ (0-based) has probability
#
# $$p_k = \frac{(k+1)^{-s}}{\sum_{j} (j+1)^{-s}},$$
#
# with $s$ the generator's `colour_zipf` knob. The bars count every garment colour of the training
# identities (top, bottom, shoes, hat, bag); the dots are the counts $p_k$ predicts.

# %%
zipf = attributes["params"]["knobs"]["colour_zipf"]
colour_names = [c.name for c in CLOTHING_COLOURS]
colour_draws = Counter(entry[slot] for entry in train_identities for slot in COLOUR_SLOTS if entry[slot] is not None)
total_draws = sum(colour_draws.values())
expected = dict(zip(colour_names, total_draws * colour_probs(zipf)))
fig = plot_counts(
    {name: colour_draws[name] for name in colour_names},
    expected=expected,
    keep_order=True,
    title=f"garment colours of the training identities (s = {zipf:g})",
)
plt.show()

# %% [markdown]
# **Why rare colour words are discriminative.** A caption saying "black" hardly narrows the search:
# many people wear something black. "Orange" rules out almost everyone. If a share $f_c$ of the
# test identities wears colour $c$ somewhere, the word is worth $-\log_2 f_c$ bits, and the gallery
# shrinks to $f_c$ of its identities:

# %%
test_identities = [entry for entry in attributes["identities"] if entry["split"] == "test"]
wears = {
    name: np.mean([name in {entry[s] for s in (*COLOUR_SLOTS, "pattern_colour")} for entry in test_identities])
    for name in colour_names
}
colour_table = pd.DataFrame(
    {"share of test identities": [wears[c] for c in colour_names], "bits": [-np.log2(wears[c]) for c in colour_names]},
    index=colour_names,
).sort_values("share of test identities", ascending=False)
print(colour_table.to_string(float_format=lambda v: f"{v:.3f}"))

# %% [markdown]
# ### 2.4 Word frequencies
#
# Captions are split into lower-case word tokens as in CUHK-PEDES's `processed_tokens`. The left
# panel shows the most frequent words, the right one every word's count against its frequency rank:
# a roughly straight line on log-log axes is Zipf's law, which natural text follows too. The
# vocabulary is small (a grammar wrote these captions; CUHK-PEDES has 9,408 distinct words).

# %%
train_captions = [caption for r in train_records for caption in r.captions]
word_counts = Counter(token for caption in train_captions for token in tokens_of(caption))
vocabulary_size = len(word_counts)
print(f"{len(train_captions):,} training captions, {sum(word_counts.values()):,} words, vocabulary {vocabulary_size:,}")
fig, (left, right) = plt.subplots(1, 2, figsize=(10, 5.5))
plot_counts(word_counts, top=25, title="the 25 most frequent words", ax=left)
plot_rank_frequency(word_counts, title="rank-frequency (log-log)", ax=right)
fig.tight_layout()
plt.show()

# %% [markdown]
# The from-scratch models of the cpu profile read captions through a word-level tokenizer built
# from these same training captions (`data.tokenizer: word`): five special tokens, then every word
# and punctuation mark, most frequent first. One caption as ids and back:

# %%
tokenizer = WordTokenizer.train(train_captions, max_length=data_cfg.max_length)
ids = tokenizer.encode(train_captions[0])
print(train_captions[0])
print(ids)
print(tokenizer.convert_ids_to_tokens(ids))
print(f"tokenizer vocabulary: {tokenizer.vocab_size:,} entries")

# %% [markdown]
# ### 2.5 Caption lengths
#
# The grammar writes 15 to 40 words per caption, like CUHK-PEDES (at least 15 words, most between
# 20 and 40, mean 23.5). The dashed line is CUHK-PEDES's mean; the solid lines are each split's.

# %%
lengths = {split: [word_count(c) for r in dataset.split(split) for c in r.captions] for split in SPLITS}
all_lengths = np.concatenate([lengths[s] for s in SPLITS])
mean_caption_words = float(all_lengths.mean())
print(f"words per caption: mean {mean_caption_words:.2f}, min {all_lengths.min()}, max {all_lengths.max()}")
fig = plot_caption_lengths(lengths, reference=CUHK_MEAN_WORDS, reference_label="CUHK-PEDES mean")
plt.show()

# %% [markdown]
# ## 3. Hard negatives
#
# In val and test, half of the identities come in pairs that differ in **one small attribute**
# (shoe colour, a hat, which shoulder the bag hangs on, the bag's colour, hair colour). A model
# that only matches the overall look ranks both partners equally high; telling them apart needs
# the one phrase that differs and the few pixels that show it, which is what the part-level
# mechanisms of later notebooks aim at. The test split's pairs, by attribute:

# %%
test_pairs = [pair for pair in attributes["hard_negative_pairs"] if pair["split"] == "test"]
print(pd.Series(Counter(pair["attribute"] for pair in test_pairs)).sort_index().to_string())
print(f"{len(test_pairs)} pairs, {2 * len(test_pairs)} of {len(test_identities)} test identities")

# %% [markdown]
# Each pair side by side, with its value of the attribute that differs. For each pair we pick the
# first view in which both people show that attribute (a shoulder bag is hidden from some sides).

# %%
FEATURE_OF = {"shoe_colour": "shoes", "hat": "hat", "bag_side": "bag", "bag_colour": "bag", "hair_colour": "hair"}


def describe(entry: dict, attribute: str) -> str:
    """An identity's value of ``attribute`` in words (``hat`` reads the hat and its colour)."""
    if attribute == "hat":
        return "no hat" if entry["hat"] == "none" else f"{entry['hat_colour']} {entry['hat']}"
    if attribute == "bag_side":
        return f"{entry['bag']} on the {entry['bag_side']}"
    if attribute == "bag_colour":
        return f"{entry['bag_colour']} {entry['bag']}"
    return f"{entry[attribute]} {FEATURE_OF[attribute]}"


def showing(pid: int, attribute: str) -> list[str]:
    """The identity's image paths, those showing ``attribute`` first (stable otherwise)."""
    paths = sorted(path for path, info in image_info.items() if info["id"] == pid)
    feature = FEATURE_OF[attribute]
    return sorted(paths, key=lambda p: feature not in image_info[p]["visible"])


shown_pairs = []
for kind in sorted({pair["attribute"] for pair in test_pairs}):  # one pair of every kind first
    shown_pairs.append(next(pair for pair in test_pairs if pair["attribute"] == kind))
shown_pairs += [pair for pair in test_pairs if pair not in shown_pairs][: NUM_PAIRS - len(shown_pairs)]
lefts, rights, left_labels, right_labels, titles = [], [], [], [], []
for pair in shown_pairs:
    a, b = (identities[pid] for pid in pair["ids"])
    lefts.append(load_image(showing(a["id"], pair["attribute"])[0]))
    rights.append(load_image(showing(b["id"], pair["attribute"])[0]))
    left_labels.append(describe(a, pair["attribute"]))
    right_labels.append(describe(b, pair["attribute"]))
    titles.append(f"ids {a['id']} / {b['id']}: {pair['attribute']}")
fig = show_pairs(lefts, rights, left_labels, right_labels, titles, ncols=3)
plt.show()

# %% [markdown]
# The records agree: every test pair differs in exactly the one described attribute it is listed
# with (`attribute_differences` compares two records field by field).

# %%
as_identity = {pid: Identity(**{k: v for k, v in e.items() if k not in ("id", "split")}) for pid, e in identities.items()}
one_difference = [
    attribute_differences(as_identity[pair["ids"][0]], as_identity[pair["ids"][1]]) == [pair["attribute"]]
    for pair in test_pairs
]
print(f"{sum(one_difference)} of {len(test_pairs)} test pairs differ in exactly their listed attribute")

# %% [markdown]
# ### 3.1 The ceiling these pairs set
#
# A caption can tell its person from the partner only if it mentions the attribute that differs.
# The grammar mentions each visible attribute with probability 0.7, so not every caption does. We
# count, for every test caption of a paired identity, whether it names the differing feature: the
# words below are the grammar's own for that feature (for `hat`, only the wearer's captions can
# name it; the grammar never writes "no hat"). This is a count over the captions, no model involved.

# %%
TELLING_WORDS = {"shoe_colour": {"shoes", "sneakers"}, "hat": {"cap", "beanie", "knit"},
                 "bag_side": {"left", "right"}, "bag_colour": {"bag", "backpack", "handbag"},
                 "hair_colour": {"hair", "ponytail"}}
test_set = dataset.eval_set("test")
captions_of: dict[int, list[str]] = {}
for caption, pid in zip(test_set.query_captions, test_set.query_pids):
    captions_of.setdefault(int(pid), []).append(caption)
telling_rows = []
for pair in test_pairs:
    for pid in pair["ids"]:
        for caption in captions_of[pid]:
            telling_rows.append({"attribute": pair["attribute"],
                                 "tells": bool(TELLING_WORDS[pair["attribute"]] & set(tokens_of(caption)))})
telling = pd.DataFrame(telling_rows)
print((100 * telling.groupby("attribute")["tells"].mean()).round(1).rename("% of captions naming it").to_string())
telling_share = float(telling["tells"].mean())
print(f"\n{telling['tells'].sum()} of {len(telling)} captions of paired test identities ({telling_share:.1%}) "
      f"name the feature that tells the partners apart; {1 - telling_share:.1%} cannot separate them from "
      "their partner at all, whatever the model.")

# %% [markdown]
# So on about that share of the paired identities' queries the partner is, for any model, as good a
# match as the true person: the best R@1 on those queries is bounded by it, and the probes of later
# notebooks that ask "does the model rank the true person above its partner?" read only the
# captions that name the differing feature.

# %% [markdown]
# ## 4. The real formats
#
# The three benchmarks ship their annotations in three JSON layouts, each with its images under
# `imgs/`:
#
# | dataset | annotation file | image path field | splits | captions per image |
# | --- | --- | --- | --- | --- |
# | CUHK-PEDES | `reid_raw.json` | `file_path` | train / val / test | about 2 |
# | ICFG-PEDES | `ICFG-PEDES.json` | `file_path` | train / test | 1 |
# | RSTPReid | `data_captions.json` | `img_path` | train / val / test | 2 |
#
# `write_fixture` writes a tiny but complete root in each format (a few coloured pedestrians with
# true captions and realistic file names). We write all three into this notebook's output folder
# and read each with `read_dataset`. Paths are printed relative to that folder.

# %%
fixtures = output_dir / "fixtures"
shutil.rmtree(fixtures, ignore_errors=True)  # this notebook's own scratch folder, rewritten on every run
fixture_roots = {name: write_fixture(name, fixtures / name, seed=seed) for name in FIXTURE_DATASETS}
fixture_sets = {name: read_dataset(name, path) for name, path in fixture_roots.items()}
for name, path in fixture_roots.items():
    images = sorted(p.relative_to(path).as_posix() for p in (path / "imgs").rglob("*") if p.is_file())
    print(f"{name}/: {FORMATS[name].annotation} and {len(images)} images, e.g. {images[0]}")

# %% [markdown]
# One raw entry of each annotation file, and the `ImageRecord` it becomes. Every reader produces
# the same record type: the image path relative to `imgs/`, the identity as written in the file,
# the captions and the split. (`processed_tokens` is read past: the kit tokenizes captions itself.)

# %%
for name, path in fixture_roots.items():
    fmt = FORMATS[name]
    raw = json.loads((path / fmt.annotation).read_text(encoding="utf-8"))[0]
    print(f"--- {fmt.title}: {fmt.annotation}, entry 0")
    for key, value in raw.items():
        text = json.dumps(value)
        print(f'  "{key}": {text if len(text) <= 90 else text[:87] + "..."}')
    print("becomes")
    print(fixture_sets[name].records[0])
    print()

# %% [markdown]
# **IRRA's conventions** (the protocol every paper of this course reports with):
# - **train**: one item per *caption* (a `TrainPair`), so an image with two captions is seen twice
#   per epoch; identities are remapped to `0..N-1` in increasing order, the class indices of the
#   ID loss;
# - **val / test**: the *gallery* is every image of the split, the *queries* are every caption of
#   the split, and a query matches every gallery image of its identity (original ids are kept).
#
# On the CUHK-PEDES fixture (its ids start at 1, as in the real file):

# %%
cuhk = fixture_sets["cuhk-pedes"]
pairs_cuhk = cuhk.train_pairs()
remap = {}
for pair in pairs_cuhk:
    remap.setdefault(cuhk.split("train")[pair.image_id].pid, pair.pid)
print(f"train: {len(cuhk.split('train'))} images -> {len(pairs_cuhk)} pairs; ids remapped {remap}")
for pair in pairs_cuhk[:3]:
    print(f"  pair {pair.index}: pid {pair.pid}, image {pair.image_id} ({pair.path}), {pair.caption[:48]}...")
test_cuhk = cuhk.eval_set("test")
print(f"test: gallery {len(test_cuhk.gallery_paths)} images, ids {test_cuhk.gallery_pids}")
print(f"      queries {len(test_cuhk.query_captions)} captions, ids {test_cuhk.query_pids}")
print(f"      each query's own image: {test_cuhk.query_image_ids}")

# %% [markdown]
# The split sizes of the three fixtures (ICFG-PEDES publishes no val split; the kit then selects
# the checkpoint on the last epoch instead):

# %%
fixture_table = pd.DataFrame(
    [
        {
            "dataset": name,
            "split": split,
            "ids": len({r.pid for r in ds.split(split)}),
            "images": len(ds.split(split)),
            "captions": sum(len(r.captions) for r in ds.split(split)),
        }
        for name, ds in fixture_sets.items()
        for split in SPLITS
        if ds.has_split(split)
    ]
).set_index(["dataset", "split"])
print(fixture_table.to_string())

# %% [markdown]
# ## 5. The checker
#
# Real datasets arrive damaged in ordinary ways: a file renamed, a field missing, an image lost. The
# reader stops at the first fatal problem with one sentence naming the file, the entry and the fix;
# `check_dataset` (the command `tireid check-data`) looks at everything and lists every problem,
# most severe first: `error` makes the root unusable, `warning` and `note` do not.
#
# We damage a copy of the CUHK-PEDES fixture in six named ways, one entry each:

# %%
def shown(text: str, path) -> str:
    """``text`` with the absolute root folder written as ``<root>``."""
    return text.replace(str(path), "<root>")


broken = write_fixture("cuhk-pedes", fixtures / "broken-cuhk", seed=seed)
damage = [("missing-field", 1), ("empty-caption", 2), ("missing-image", 3), ("non-ascii-caption", 4),
          ("duplicate-path", 5), ("corrupt-image", 6)]
for kind, entry in damage:
    print(f"{kind:<18} {break_fixture(broken, 'cuhk-pedes', kind, entry=entry)}")

# %% [markdown]
# What the checker says (`full=True` also decodes every image, which finds the corrupt one):

# %%
report = check_dataset("cuhk-pedes", broken, full=True)
print(shown(report.format(), broken))

# %% [markdown]
# The reader, on the same root, stops at the first error:

# %%
try:
    read_dataset("cuhk-pedes", broken)
except DatasetError as err:
    print(f"DatasetError: {shown(str(err), broken)}")

# %% [markdown]
# Three layout mistakes, each answered by one error that says what to do: ICFG-PEDES's file saved
# with an underscore, CUHK-PEDES's `caption_all.json` (no split field) instead of `reid_raw.json`,
# and an RSTPReid annotation file with a comma missing.

# %%
mistakes = [("icfg-pedes", "icfg-name-mixup", 1), ("cuhk-pedes", "caption-all-only", 1), ("rstpreid", "malformed-json", 3)]
layout_errors = 0
for name, kind, entry in mistakes:
    path = write_fixture(name, fixtures / f"{kind}-{name}", seed=seed)
    print(f"{kind}: {break_fixture(path, name, kind, entry=entry)}")
    for problem in check_dataset(name, path).problems:
        if problem.severity == "error":
            layout_errors += 1
            print(f"  {problem.severity}: {shown(problem.message, path)}")

# %% [markdown]
# ## 6. Noisy correspondence
#
# Real captions are sometimes attached to the wrong image. RDE's protocol simulates that: choose a
# share $r$ of the $N$ training pairs at random and permute their captions among themselves (images
# and identities stay). A chosen pair whose caption comes from another image *of the same identity*
# still describes that person, so the kit counts it as clean; the realised noise rate is therefore
# a little below $r$. Here $r$ = 20% on the SynthPEDES training pairs:

# %%
train_pairs = dataset.train_pairs()
noise = inject_noise(train_pairs, NOISE_RATE, seed)
noisy_pairs = noise.apply(train_pairs)
noise_rate = noise.noise_rate
print(f"{len(train_pairs):,} training pairs, {round(NOISE_RATE * len(train_pairs)):,} chosen, "
      f"{int(noise.moved.sum()):,} captions moved, {int(noise.noisy.sum()):,} now describe another identity")
print(f"realised noise rate: {noise_rate:.4f} (asked for {NOISE_RATE:.2f})")

# %% [markdown]
# One noisy pair before and after injection, and the image its new caption was written for:

# %%
i = int(rng.choice(np.flatnonzero(noise.noisy)))
source = int(noise.caption_source[i])
print(f"pair {i} (identity {train_pairs[i].pid}) now carries the caption of pair {source} (identity {train_pairs[source].pid})")
fig = show_noisy_pair(
    load_image(train_pairs[i].path),
    train_pairs[i].caption,
    noisy_pairs[i].caption,
    source_image=load_image(train_pairs[source].path),
)
plt.show()

# %% [markdown]
# ## 7. The metrics by hand
#
# A toy problem: 3 queries (captions of identities 1, 2, 3) against a gallery of 5 images. Each
# row of `sim` holds one query's scores; a green frame marks a gallery image of the query's identity
# (a *match*).

# %%
sim = np.array([
    [0.9, 0.2, 0.4, 0.3, 0.1],
    [0.7, 0.5, 0.6, 0.2, 0.3],
    [0.1, 0.3, 0.2, 0.6, 0.5],
])
q_pids = np.array([1, 2, 3])
g_pids = np.array([1, 2, 3, 1, 2])
fig = plot_similarity(sim, q_pids, g_pids)
plt.show()

# %% [markdown]
# **Step 1**: rank each query's gallery, highest score first. `order[i]` lists gallery indices from
# rank 1 to rank 5.

# %%
order = np.argsort(-sim, axis=1, kind="stable")
order

# %% [markdown]
# **Step 2**: the 1-based ranks $r_1 < \dots < r_m$ at which each query's matches appear.

# %%
ranks = [sorted(int(np.flatnonzero(order[i] == j)[0]) + 1 for j in np.flatnonzero(g_pids == q_pids[i])) for i in range(3)]
ranks

# %% [markdown]
# **Step 3**: R@k is the share of queries whose first match is within the top $k$:
# $\mathrm{R@}k = \frac{1}{Q}\sum_i [\,r_{i,1} \le k\,]$. Only query 0 has a match at rank 1.

# %%
r_at_1 = 100 * np.mean([r[0] <= 1 for r in ranks])
print(f"R@1 = {r_at_1:.2f}")

# %% [markdown]
# **Step 4**: R@5. With five gallery images every match is in the top 5, so this is 100% by
# construction; on a real gallery of thousands it is not.

# %%
r_at_5 = 100 * np.mean([r[0] <= 5 for r in ranks])
print(f"R@5 = {r_at_5:.2f}")

# %% [markdown]
# **Step 5**: average precision of one query: the precision at the rank of each match, averaged
# over its $m$ matches, $\mathrm{AP} = \frac{1}{m}\sum_{j=1}^{m} \frac{j}{r_j}$.
# Query 0: $(1/1 + 2/3)/2 = 0.8333$; query 1: $(1/3 + 2/4)/2 = 0.4167$; query 2: $1/4$.

# %%
ap = [np.mean([(j + 1) / r for j, r in enumerate(rs)]) for rs in ranks]
print(", ".join(f"AP{i} = {v:.4f}" for i, v in enumerate(ap)))

# %% [markdown]
# **Step 6**: mAP is the mean AP over queries.

# %%
m_ap = 100 * np.mean(ap)
print(f"mAP = {m_ap:.2f}")

# %% [markdown]
# **Step 7**: inverse negative penalty: how far down the *last* match sits,
# $\mathrm{INP} = m / r_m$. Query 0: $2/3$; query 1: $2/4$; query 2: $1/4$.

# %%
inp = [len(rs) / rs[-1] for rs in ranks]
print(", ".join(f"INP{i} = {v:.4f}" for i, v in enumerate(inp)))

# %% [markdown]
# **Step 8**: mINP is the mean INP over queries.

# %%
m_inp = 100 * np.mean(inp)
print(f"mINP = {m_inp:.2f}")

# %% [markdown]
# ### Check
#
# The library's `match_ranks` and `retrieval_metrics` (vectorised, used on every real evaluation)
# give the same ranks and numbers as the steps above; the dataset has the sizes its configuration
# asks for.

# %%
library = retrieval_metrics(sim, q_pids, g_pids)
padded = np.array([rs + [0] * (2 - len(rs)) for rs in ranks])
assert np.array_equal(match_ranks(sim, q_pids, g_pids), padded), match_ranks(sim, q_pids, g_pids)
for key, by_hand in (("R1", r_at_1), ("R5", r_at_5), ("mAP", m_ap), ("mINP", m_inp)):
    assert np.isclose(library[key], by_hand, atol=1e-9), (key, library[key], by_hand)
expected_ids = {"train": data_cfg.synth_ids_train, "val": data_cfg.synth_ids_val, "test": data_cfg.synth_ids_test}
for split in SPLITS:
    assert split_table.loc[split, "ids"] == expected_ids[split], split_table
    assert split_table.loc[split, "images"] == expected_ids[split] * data_cfg.synth_images_per_id, split_table
    assert split_table.loc[split, "captions"] == 2 * split_table.loc[split, "images"], split_table
assert all(one_difference) and len(train_pairs) == split_table.loc["train", "captions"]
print({key: round(value, 4) for key, value in library.items()})
print("check passed")

# %%
save_metrics(output_dir, {
    **{f"{split}_{kind}": int(split_table.loc[split, kind]) for split in SPLITS for kind in ("ids", "images", "captions")},
    "vocabulary_size": vocabulary_size,
    "tokenizer_vocab_size": tokenizer.vocab_size,
    "mean_caption_words": mean_caption_words,
    "test_hard_negative_pairs": len(test_pairs),
    "hard_negative_captions_telling": telling_share,
    "noise_rate": noise_rate,
    "broken_root_errors": sum(p.severity == "error" for p in report.problems),
    "layout_errors": layout_errors,
    "toy_R1": r_at_1,
    "toy_R5": r_at_5,
    "toy_mAP": m_ap,
    "toy_mINP": m_inp,
})
print(f"metrics written to {NOTEBOOK}/metrics.json in the output folder")

# %% [markdown]
# ## Summary
#
# - SynthPEDES is drawn from attribute records and written in CUHK-PEDES's layout, with a part map
#   per image and the record behind every caption; it is generated once into the cache from the
#   profile's `data.synth_*` keys, so every notebook trains on the same data.
# - Colour words follow a Zipf-like law: the rare ones carry the most information about who is
#   meant. Captions run 15 to 40 words, close to CUHK-PEDES's mean of 23.5.
# - Half of the val/test identities have a partner that differs in one small attribute: global
#   matching alone cannot separate them, and only the captions that name that attribute can
#   (section 3.1 counts them), which bounds what any model reaches on those queries.
# - Training sees each image resized, shifted and flipped, the caption mirrored with the flip.
# - CUHK-PEDES, ICFG-PEDES and RSTPReid are read into one record type; training sees one pair per
#   caption with identities remapped to `0..N-1`, evaluation ranks every image for every caption.
# - `check_dataset` lists every problem of a root with its fix; the reader stops at the first.
# - Noise injection permutes the captions of a share of the training pairs; the realised rate is
#   a little lower, because some captions land on another image of the same person.
# - R@k, mAP and mINP all follow from the ranks of each query's matches.
#
# ## Exercises
#
# 1. Section 3.1 counted, per attribute, how many captions name the feature that separates a
#    pair. Which attribute is named least often, and why (think of which views show it)?
# 2. Generate SynthPEDES with `colour_zipf=0` (uniform colours) into a folder of your own with
#    `generate_synth` and redo the colour table of section 2.3. How many bits is each colour word
#    worth now?
# 3. Break the RSTPReid fixture with `missing-field` and `non-integer-id` on different entries and
#    predict the checker's report before you run it.
# 4. Inject noise at 50% and 80%. How does the gap between the asked and the realised rate change,
#    and why?
# 5. In section 7, raise the score of gallery image 1 for query 1 to 0.8. Which metrics change, and
#    by how much? Work it out by hand first, then run the steps.
