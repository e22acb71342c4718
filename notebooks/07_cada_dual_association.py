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
# # 07 · CADA: adaptive text-to-patch association, attribute-to-region association, ITM re-ranking
#
# **What you will learn**
# - CADA's global loss: SDM with a reverse KL and a cross-entropy to the identity distribution;
# - ATP: caption tokens query the image's patches in a decoder, and an *adaptive gate* lets a token
#   take in less of the image when its attention found no clear region (the kit's reading);
# - image-text matching (ITM) with hard negatives mined in the batch, and its local version over
#   groups of caption tokens;
# - ARA: masked attribute words predicted from the image regions;
# - re-ranking: the top k of the gallery re-scored by ITM + global similarity, what it changes and what
#   it costs;
# - the ablation global / +ATP / +ARA / +re-ranking, gate on and off, with paired differences.
#
# **Prerequisites**: `02_baseline_irra` (towers, SDM, the scorer), `03_kpdm_key_phrase_masking` (key
# phrases, paired differences).
#
# **Run time on cpu**: eight short trainings (cached in `$TIREID_CACHE` afterwards), then about two
# minutes of CPU time for the probes, the evaluations and the re-ranking. The stored outputs come from
# a shared 2-core machine (load about 10): 239 s with every model cached; each short training took
# 70-800 s there, far more than on an idle machine (an ATP step costs about 3 times a global-only step).

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from tireid_lite.config import get_profile
from tireid_lite.data.build import build_data, dataset_root
from tireid_lite.data.transforms import denormalize
from tireid_lite.eval.metrics import per_query_metrics, retrieval_metrics
from tireid_lite.eval.retrieval import score_split
from tireid_lite.eval.statistics import paired_difference, paired_table
from tireid_lite.losses.itm import cada_global_loss, mine_hard_negatives
from tireid_lite.losses.matching import sdm_loss
from tireid_lite.models.cada import ara_predictions, itm_pair_accuracy
from tireid_lite.models.cada_decoder import attention_confidence
from tireid_lite.models.head import RerankInputs
from tireid_lite.models.scorer import rerank_top_k
from tireid_lite.notebook import (
    ablation_overrides,
    resolve_output_dir,
    resolve_profile,
    save_metrics,
    train_arms,
)
from tireid_lite.viz.association import show_reranking, show_token_associations
from tireid_lite.zoo import get_or_train

# %%
NOTEBOOK = "07_cada_dual_association"
# The ablation: every arm is method=cada with parts switched off. Re-ranking is not an arm: it is an
# evaluation of the "+ATP+ARA" models.
ARMS = {
    "global": ("cada", ("model.cada.itm_weight=0", "model.cada.ara_weight=0")),
    "+ATP": ("cada", ("model.cada.ara_weight=0",)),
    "+ATP, no gate": ("cada", ("model.cada.ara_weight=0", "model.cada.gate=false")),
    "+ATP+ARA": ("cada", ()),
}
COST_KS = (4, 8, 16, 32)
CUHK_QUERIES, CUHK_GALLERY = 6156, 3074
SHOWN = 3  # queries shown before and after re-ranking
TOP = 6  # gallery images shown per query

# %% tags=["parameters"]
profile = ""
output_dir = ""
seed = 0
num_seeds = 2
rerank_k = 16
probe_queries = 200

# %%
profile = resolve_profile(profile)
output_dir = resolve_output_dir(output_dir, NOTEBOOK)
seeds = list(range(seed, seed + num_seeds))
cfg = get_profile(profile)
short = ablation_overrides(profile)  # cpu: one pass over the first 500 training identities, for every arm
torch.manual_seed(seed)
print(f"profile: {profile}; seeds {seeds}; re-ranking the top {rerank_k} (CADA: {cfg.model.cada.rerank_k})")

# %% [markdown]
# ## 1. The global loss
#
# CADA trains the pooled image and text features with IRRA's SDM plus two more terms. With
# $p_i = \mathrm{softmax}_j(s_{ij}/\tau)$ (text $i$ over the batch's images, and the other way round)
# and SDM's target $q_{ij} = y_{ij} / \sum_k y_{ik}$ ($y_{ij} = 1$ for the same identity):
#
# $$\mathcal{L}_{global} = \sum_{\text{both directions}} \frac{1}{B}\sum_i \Big[\underbrace{\mathrm{KL}(p_i \,\|\, q_i)}_{\text{SDM}}
#   + \underbrace{\mathrm{KL}(q_i \,\|\, p_i)}_{\text{reverse}} + \underbrace{\mathrm{CE}(q_i, p_i)}_{\text{identity}}\Big].$$
#
# SDM alone is zero-forcing: it punishes probability on the wrong identity but not a positive left
# out; the reverse KL and the cross-entropy punish exactly that. (They differ by the entropy of $q$,
# a constant, so together they give the cross-entropy's gradient twice.) Step by step on a toy batch
# of four pairs, two of them the same person:

# %%
toy_rng = np.random.default_rng(0)
toy_image, toy_text = toy_rng.normal(size=(4, 8)), toy_rng.normal(size=(4, 8))
toy_pids = np.array([0, 0, 1, 2])
scale = 1.0 / cfg.model.temperature

unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
s = unit(toy_text) @ unit(toy_image).T  # (B_text, B_image) cosine similarities
y = (toy_pids[:, None] == toy_pids[None, :]).astype(float)
q = y / y.sum(1, keepdims=True)
terms = np.zeros(3)
for logits in (scale * s, scale * s.T):
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    log_q = np.log(np.where(q > 0, q, 1.0))
    terms += [np.mean((p * (np.log(p) - np.log(q + 1e-8))).sum(1)),
              np.mean((q * (log_q - np.log(p))).sum(1)),
              np.mean(-(q * np.log(p)).sum(1))]
args = [torch.tensor(toy_image), torch.tensor(toy_text), torch.tensor(toy_pids), scale]
library = float(cada_global_loss(*args))
print(f"SDM {terms[0]:.4f} (library sdm_loss {float(sdm_loss(*args)):.4f}), reverse KL {terms[1]:.4f}, "
      f"identity CE {terms[2]:.4f}; sum {terms.sum():.4f}, library cada_global_loss {library:.4f}")

# %% [markdown]
# ## 2. ATP: caption tokens look for their patches, and a gate says how much to trust what they found
#
# CADA's association decoder runs the caption's tokens through layers of self-attention,
# cross-attention to the image tokens and an MLP (BLIP's text encoder in matching mode). The
# abstract calls the association *adaptive*: "aggregating cross-modal features based on mistaken
# associations will lead to feature distortion". The public code shows no gate, so what follows is
# **the kit's reading**. Token $t$'s attention $A_t$ over the $N'$ image tokens gives
#
# $$\mathrm{focus}_t = 1 - \frac{H(A_t)}{\log N'}, \qquad \mathrm{peak}_t = \frac{\max_j A_{tj} - 1/N'}{1 - 1/N'}, \qquad
#   g_t = \sigma(w_f\,\mathrm{focus}_t + w_p\,\mathrm{peak}_t + b),$$
#
# and the token adds $g_t \cdot \mathrm{CrossAttn}(x_t)$ to itself instead of the whole aggregate. A
# token whose attention is spread over the whole image (no region found) takes in less.
# `model.cada.gate=false` is the public code (g = 1).
#
# The full model (global loss, ID, ATP with the gate and the local ITM, ARA) from the model cache:

# %% tags=["nbval-ignore-output"]
started = time.perf_counter()
cada = get_or_train("cada", profile, seed, overrides=short)
model = cada.model
atp = model.heads["atp"]
print(cada.log().tail(1)[["itm", "itm_acc", "gate_mean", "ara", "ara_acc"]].round(3).to_string(index=False))

# %%
data = build_data(cfg)
queries, gallery = data.queries("test"), data.gallery("test")
query_captions = data.dataset.eval_set("test").query_captions
tok = model.tokenizer
patch = cfg.model.patch_size
rows, cols = (size // patch for size in cfg.data.image_size)
q0 = 2 * (seed % (len(queries) // 2))  # a caption and the image it was written for
g0 = int(queries.image_ids[q0])
ids = queries.caption_ids[q0][None]  # (1, L)
mask = tok.attention_mask(ids)
length = int(mask.sum())
with torch.no_grad():
    assoc = atp.associate(model.encode_text_tokens(ids), model.encode_image_tokens(gallery[g0]["images"][None]), mask)
attention = assoc.attentions[-1][0, 1:length - 1]  # (T, 1+N) the caption's own tokens, last layer
gates = assoc.gates[-1][0, 1:length - 1]  # (T,)
words = tok.convert_ids_to_tokens(ids[0, 1:length - 1])
print(query_captions[q0])

# %%
shown = min(len(words), 23)
maps = attention[:shown, 1:].reshape(shown, rows, cols).numpy()  # attention on the patches
image = denormalize(gallery[g0]["images"]).permute(1, 2, 0).numpy()
show_token_associations(image, words[:shown], maps, gates[:shown].tolist(),
                        title="ATP: where each caption token looks (last layer) and its gate g")
plt.show()

# %% [markdown]
# Is the gate lower when the image is the wrong person? Over the first test queries, the mean gate of
# the caption's tokens read against its own image and against its hardest negative (the most similar
# gallery image of another identity by the global similarity):

# %% tags=["nbval-ignore-output"]
sim, q_pids, g_pids = score_split(model, data, "test")  # (Q, G) the first stage
itm_probe = itm_pair_accuracy(model, data, sim, q_pids, g_pids)
neg_index = itm_probe["neg_index"]  # (Q,)


def mean_gates(image_index):
    index = torch.arange(probe_queries)
    ids_n = queries.caption_ids[index]
    mask_n = tok.attention_mask(ids_n)
    images = torch.stack([gallery[int(i)]["images"] for i in image_index])
    with torch.no_grad():
        out = atp.associate(model.encode_text_tokens(ids_n), model.encode_image_tokens(images), mask_n)
    body = mask_n.bool()[:, : out.gates[0].shape[1]].clone()  # the decoder drops the padding after the longest
    body[:, 0] = False  # the start token is the ITM's summary, not a word
    return torch.stack(out.gates)[:, body].numpy()  # (layers, tokens)


gates_matched = mean_gates(queries.image_ids[:probe_queries])
gates_negative = mean_gates(neg_index[:probe_queries].tolist())
gate_stats = pd.DataFrame({"mean": [gates_matched.mean(), gates_negative.mean()],
                           "std": [gates_matched.std(), gates_negative.std()],
                           "min": [gates_matched.min(), gates_negative.min()],
                           "max": [gates_matched.max(), gates_negative.max()]},
                          index=["own image", "hard negative"]).round(3)
print(f"gate values over {probe_queries} test captions' tokens:")
print(gate_stats.to_string())

# %%
fig, ax = plt.subplots(figsize=(6, 2.8))
bins = np.linspace(0, 1, 41)
ax.hist(gates_matched.ravel(), bins=bins, alpha=0.6, label="own image", color="tab:green")
ax.hist(gates_negative.ravel(), bins=bins, alpha=0.6, label="hard negative", color="tab:red")
ax.set_xlabel("gate g of a caption token")
ax.set_ylabel("tokens")
ax.legend()
ax.set_title("ATP's gate values, test captions")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Image-text matching with hard negatives
#
# An ITM classifier on the decoder's first token says *matched* or *not*. Random negatives are too
# easy, so CADA mines them in the batch: for each text the most similar image of **another
# identity**, for each image the most similar text. With $s$ the batch's similarities (text rows,
# image columns):
#
# $$j^-(i) = \arg\max_{j:\ \mathrm{pid}_j \ne \mathrm{pid}_i} s_{ij}, \qquad i^-(j) = \arg\max_{i:\ \mathrm{pid}_i \ne \mathrm{pid}_j} s_{ij},
# \qquad \mathcal{L}_{itm} = \mathrm{CE}\big(\text{matched}, \{(i, i)\}\big) + \mathrm{CE}\big(\text{not}, \{(i, j^-(i)), (i^-(j), j)\}\big).$$
#
# Step by step on a hand-made batch where pairs 0 and 1 are the same person (so image 1 is *not* a
# negative of text 0, however similar):

# %%
toy_sim = torch.tensor([[0.9, 0.8, 0.3, 0.5],
                        [0.7, 0.9, 0.6, 0.2],
                        [0.1, 0.4, 0.9, 0.8],
                        [0.95, 0.2, 0.7, 0.9]])
toy_ids = torch.tensor([5, 5, 7, 9])
same = toy_ids[:, None] == toy_ids[None, :]
by_hand_images = [int(np.argmax(np.where(same[i], -np.inf, toy_sim[i]))) for i in range(4)]
by_hand_texts = [int(np.argmax(np.where(same[:, j], -np.inf, toy_sim[:, j]))) for j in range(4)]
neg_image, neg_text = mine_hard_negatives(toy_sim, toy_ids)
print("each text's hard negative image:", by_hand_images, "library:", neg_image.tolist())
print("each image's hard negative text:", by_hand_texts, "library:", neg_text.tolist())

# %% [markdown]
# CADA's **local ITM** scores groups of caption tokens as well: the decoder's output tokens are split
# into `model.cada.local_groups` (2) contiguous groups, each mean-pooled and classified, so each half
# of the caption must match on its own.
#
# Does the trained head tell a caption's own image from its hardest negative on the test split? A
# head that scores every pair alike would get 50%:

# %% tags=["nbval-ignore-output"]
print(f"ITM score own image > hardest negative: {itm_probe['accuracy']:.1f}% of {len(queries)} test queries")
print(f"mean ITM score: own image {float(itm_probe['pos_scores'].mean()):+.2f}, "
      f"hard negative {float(itm_probe['neg_scores'].mean()):+.2f}")

# %% [markdown]
# ## 4. ARA: attributes named from the image
#
# ARA masks attribute words and predicts them with a second decoder whose tokens cross-attend to the
# image. CADA masks adjectives and nouns (word mode, p = 0.4; a phrase mode with p = 0.8 is in its
# code); the kit takes the words of its key phrases (the extractor KPDM uses) as the attributes:
# `model.cada.ara_mode` word | phrase. The loss is the cross-entropy on the masked words, weight 0.1.
# Here the test captions masked as in training, read against their own image and against the
# hardest negative: if ARA reads the image, the wrong person should make it guess worse.

# %% tags=["nbval-ignore-output"]
ara = ara_predictions(model, data, neg_index, "test", count=probe_queries, seed=seed)
print(f"masked attribute words named right: own image {ara['accuracy']:.1f}%, "
      f"hard negative's image {ara['accuracy_other']:.1f}% ({probe_queries} test captions)")

# %% tags=["nbval-ignore-output"]
examples = []
for i in range(4):
    positions = (ara["labels"][i] != -100).nonzero().flatten()
    shown_ids = ara["masked_ids"][i][: int(tok.attention_mask(ara["masked_ids"][i]).sum())]
    examples.append({"masked caption": " ".join(tok.convert_ids_to_tokens(shown_ids[1:-1])),
                     "truth": " ".join(tok.convert_ids_to_tokens(ara["labels"][i][positions])),
                     "ARA's guess": " ".join(tok.convert_ids_to_tokens(ara["predicted"][i][positions]))})
with pd.option_context("display.max_colwidth", 90, "display.width", 200):
    print(pd.DataFrame(examples).to_string(index=False))

# %% [markdown]
# ## 5. Re-ranking the top of the gallery
#
# At inference CADA ranks the gallery by the global similarity, takes each query's top $k$ (32 in the
# paper) and re-scores them with the decoder:
#
# $$\mathrm{score}(q, g) = \mathrm{ITM}(q, g) + s(q, g) \quad \text{for } g \in \mathrm{top}_k(q),$$
#
# with ITM the log-odds of *matched*. The rest of the gallery keeps its order below them
# (`rerank_top_k`, `evaluate(..., rerank_k=k)`, `tireid eval --rerank-k k`).

# %% tags=["nbval-ignore-output"]
sim_rr, _, _ = score_split(model, data, "test", rerank_k=rerank_k)
first = retrieval_metrics(sim, q_pids, g_pids)
second = retrieval_metrics(sim_rr, q_pids, g_pids)
print(pd.DataFrame({"global": first, f"re-ranked top {rerank_k}": second}).T.round(2).to_string())
rerank_diff = paired_difference(per_query_metrics(sim, q_pids, g_pids)["R1"],
                                per_query_metrics(sim_rr, q_pids, g_pids)["R1"], "R1")
print("re-ranked - global, seed", seed, ":", rerank_diff.verdict)

# %% [markdown]
# A few queries whose first answer changed, before and after: green the query's identity, orange
# its **hard-negative partner** (SynthPEDES records the pairs that differ in one small attribute in
# `attributes.json`), red anyone else.

# %% tags=["nbval-ignore-output"]
attributes = pd.read_json(dataset_root(cfg) / "attributes.json", typ="series")
partner = {}
for pair in attributes["hard_negative_pairs"]:
    a, b = pair["ids"]
    partner[a], partner[b] = b, a
order_before = torch.sort(sim, dim=1, descending=True, stable=True).indices
order_after = torch.sort(sim_rr, dim=1, descending=True, stable=True).indices
changed = (order_before[:, 0] != order_after[:, 0]).nonzero().flatten().tolist()
picked = [int(i) for i in changed if int(q_pids[i]) in partner][:SHOWN]


def gallery_row(order, i):
    index = order[i, :TOP].tolist()
    kinds = ["match" if g_pids[g] == q_pids[i] else "partner" if partner.get(int(q_pids[i])) == g_pids[g] else "other"
             for g in index]
    return [denormalize(gallery[g]["images"]).permute(1, 2, 0).numpy() for g in index], kinds


if picked:
    before = [gallery_row(order_before, i) for i in picked]
    after = [gallery_row(order_after, i) for i in picked]
    show_reranking([query_captions[i] for i in picked], [b[0] for b in before], [b[1] for b in before],
                   [a[0] for a in after], [a[1] for a in after],
                   title=f"top {TOP} by the global similarity and after re-ranking the top {rerank_k}")
    plt.show()
print(f"{len(changed)} of {len(queries)} queries have a new first answer after re-ranking")

# %% [markdown]
# ## 6. The ablation: global / +ATP / +ARA / +re-ranking, gate on and off
#
# Four arms of `method=cada`, each over the notebook's seeds, short runs in the `cpu` profile (one pass
# over the first 500 training identities, 62 steps) from the same attribute-pretrained towers;
# "+re-ranking" is the "+ATP+ARA" models evaluated with the second stage. Every comparison is a paired
# difference over the same test queries and seeds, with a 95% bootstrap interval over queries.

# %% tags=["nbval-ignore-output"]
runs, arm_models = train_arms(ARMS, profile, seeds, shared=short)
per_query, rows_out = {}, []
for (arm, s_), trained in arm_models.items():
    sim_a, qp, gp = (sim, q_pids, g_pids) if (arm, s_) == ("+ATP+ARA", seed) else score_split(trained.model, data, "test")
    per_query[arm, s_] = per_query_metrics(sim_a, qp, gp)
    rows_out.append({"arm": arm, "seed": s_, **retrieval_metrics(sim_a, qp, gp)})
    if arm == "+ATP+ARA":
        sim_b = sim_rr if s_ == seed else score_split(trained.model, data, "test", rerank_k=rerank_k)[0]
        per_query["+re-ranking", s_] = per_query_metrics(sim_b, qp, gp)
        rows_out.append({"arm": "+re-ranking", "seed": s_, **retrieval_metrics(sim_b, qp, gp)})
table = pd.DataFrame(rows_out)
order = [*ARMS, "+re-ranking"]
print(f"here ({profile} profile, SynthPEDES test, {len(seeds)} seeds, re-ranking the top {rerank_k}): mean ± std over "
      "seeds; each arm - global, paired over the same seeds and queries, 95% bootstrap interval:")
for metric in ("R1", "mAP"):
    arm_table = paired_table({arm: {s_: per_query[arm, s_][metric] for s_ in seeds} for arm in order}, "global", metric)
    print(f"test {metric}:")
    print(arm_table.set_index("arm").drop(columns="excludes_zero").to_string(float_format=lambda v: f"{v:+.2f}"))
print(table.pivot(index="arm", columns="seed", values="R1").reindex(order).round(2).to_string())

# %% tags=["nbval-ignore-output"]
COMPARISONS = [("global", "+ATP"), ("+ATP", "+ATP+ARA"), ("+ATP+ARA", "+re-ranking"), ("global", "+re-ranking"),
               ("+ATP, no gate", "+ATP")]
differences = {}
for a, b in COMPARISONS:
    for metric in ("R1", "mAP"):
        d = paired_difference(np.stack([per_query[a, s_][metric] for s_ in seeds]),
                              np.stack([per_query[b, s_][metric] for s_ in seeds]), metric)
        differences[a, b, metric] = d
        print(f"A = {a!r}, B = {b!r}: {d.verdict}")

# %% [markdown]
# CADA's own figure (CUHK-PEDES, BLIP ViT-B + BERT, pretrained, full training): **R@1 78.37 with
# re-ranking**. Its per-component table is not among the kit's sources (PAPERS.md records the final
# number only), so the comparison here is with the direction the paper claims: each part adds, and
# re-ranking adds on top. Read the verdicts above against that: a short run of tiny towers on a CPU
# is not CADA's setting, and where an interval includes 0 the budget could not show a difference.

# %%
stats = table.groupby("arm")["R1"].agg(["mean", "std"]).reindex(order)
fig, ax = plt.subplots(figsize=(7, 3.2))
ax.bar(order, stats["mean"], yerr=stats["std"].fillna(0), capsize=4, color="tab:blue")
ax.set_ylabel("test R@1 (%)")
ax.set_title(f"CADA's parts, {len(seeds)} seeds (re-ranking the top {rerank_k})")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 7. What re-ranking costs
#
# The first stage is one matrix product; the second runs the decoder on $Q \cdot k$ caption-image
# pairs. Timed here on the first test queries for several $k$ (the candidate images encoded once each,
# the pairs in chunks), with R@1 over the same queries. The cost grows with $k$ and with the number of
# queries, not with the gallery.

# %% tags=["nbval-ignore-output"]
n = probe_queries
order_n = order_before[:n]
cost = []
for k in COST_KS:
    def score_fn(candidates, scores):
        inputs = RerankInputs(query_ids=queries.caption_ids[:n], text_feats=None, image_feats=None,
                              candidates=candidates, scores=scores,
                              load_images=lambda index: torch.stack([gallery[int(i)]["images"] for i in index]))
        return atp.rerank(model, inputs)

    start = time.perf_counter()
    with torch.no_grad():
        sim_k = rerank_top_k(sim[:n], k, score_fn)
    seconds = time.perf_counter() - start
    cost.append({"k": k, "queries/s": n / seconds, "R1": retrieval_metrics(sim_k, q_pids[:n], g_pids)["R1"],
                 "test split s": len(queries) / (n / seconds), "CUHK test s": CUHK_QUERIES / (n / seconds)})
cost = pd.DataFrame(cost).set_index("k")
print(f"R@1 without re-ranking on these {n} queries: {retrieval_metrics(sim[:n], q_pids[:n], g_pids)['R1']:.2f}")
print(cost.round(2).to_string())
print(f"at CUHK-PEDES test size ({CUHK_QUERIES:,} queries x {CUHK_GALLERY:,} images) and k = 32, this decoder would "
      f"take about {cost.loc[32, 'CUHK test s']:.0f} s on this machine")

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3))
axes[0].plot(cost.index, cost["queries/s"], "o-")
axes[0].set_xscale("log", base=2)
axes[0].set_xlabel("k (re-ranked per query)")
axes[0].set_ylabel("queries / s")
axes[0].set_title("cost of the second stage")
axes[1].plot(cost.index, cost["R1"], "o-", color="tab:green")
axes[1].set_xscale("log", base=2)
axes[1].set_xlabel("k")
axes[1].set_ylabel(f"R@1 (%), first {n} queries")
axes[1].set_title("what it buys")
fig.tight_layout()
plt.show()

# %% tags=["nbval-ignore-output"]
print(f"notebook run time so far: {time.perf_counter() - started:.0f} s (training included when not cached)")
print(runs.pivot(index="arm", columns="seed", values="train_s").round(1).to_string())

# %% [markdown]
# ## Check
#
# The hand computations equal the library's (global loss, mining, the gate's formula on the figure's
# attention); re-ranking changed nothing below the top $k$; a disconnected ITM head would score 50%.

# %%
assert abs(terms.sum() - library) < 1e-6, (terms.sum(), library)
assert by_hand_images == neg_image.tolist() and by_hand_texts == neg_text.tolist()
focus, peak = attention_confidence(assoc.attentions[-1])
layer = atp.decoder.layers[-1].gate.proj
by_hand_gate = torch.sigmoid(layer.weight[0, 0] * focus + layer.weight[0, 1] * peak + layer.bias[0])
assert torch.allclose(by_hand_gate, assoc.gates[-1], atol=1e-5)
assert torch.equal(order_after[:, rerank_k:], order_before[:, rerank_k:])  # below the top k: untouched
assert torch.equal(order_after[:, :rerank_k].sort(1).values, order_before[:, :rerank_k].sort(1).values)
print("check passed")

# %%
means = table.groupby("arm")[["R1", "mAP"]].mean()
save_metrics(output_dir, {
    "toy_global_loss": float(library),
    "itm_pair_accuracy": float(itm_probe["accuracy"]),
    "ara_accuracy": float(ara["accuracy"]),
    "ara_accuracy_other_image": float(ara["accuracy_other"]),
    "gate_mean_matched": float(gates_matched.mean()),
    "gate_mean_negative": float(gates_negative.mean()),
    "rerank_R1_change_seed0": float(rerank_diff.diff),
    "R1_global": float(means.loc["global", "R1"]),
    "R1_atp": float(means.loc["+ATP", "R1"]),
    "R1_atp_no_gate": float(means.loc["+ATP, no gate", "R1"]),
    "R1_atp_ara": float(means.loc["+ATP+ARA", "R1"]),
    "R1_rerank": float(means.loc["+re-ranking", "R1"]),
    "rerank_k": rerank_k,
    "num_seeds": len(seeds),
})
print(f"metrics written to {output_dir.name}/metrics.json")

# %% [markdown]
# ## Summary
#
# - CADA's global loss adds a reverse KL and an identity cross-entropy to SDM, so a positive left out
#   costs as much as a negative let in.
# - ATP: caption tokens query the patches in a decoder; the kit's adaptive gate (not in the public
#   code) scales what each token takes from the image by how focused its attention is.
# - ITM learns from the hardest pairs of another identity in the batch; its local version scores
#   halves of the caption on their own. Its scores re-rank the top k of the gallery at a cost that
#   grows with queries x k.
# - ARA names masked attribute words from the image; reading the wrong person's image shows how much
#   it relies on the image.
# - The ablation is measured with paired differences; at this budget several intervals include 0,
#   and the verdicts above, not the paper's direction, are what this run shows.
#
# ## Exercises
#
# 1. Switch the global loss to IRRA's SDM (`model.cada.global_loss=sdm`) for the "+ATP+ARA" arm.
#    Does R@1 move beyond the interval?
# 2. Train ARA in phrase mode (`model.cada.ara_mode=phrase`, p = 0.8). Are whole phrases easier or
#    harder to name than single words, and is the image used more?
# 3. Re-rank with the ITM score alone (drop `+ inputs.scores` in a copy of `AssociationHead.rerank`).
#    What happens to R@1, and why does the global similarity help?
# 4. The gate sees the attention's entropy and peak only. Add the token's own norm as a third input;
#    does the gap between own image and hard negative in section 2 grow?
# 5. At what k does re-ranking the CUHK-PEDES test split take longer than extracting its features?
