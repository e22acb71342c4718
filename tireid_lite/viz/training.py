"""Figures of training and matching: target distributions, loss curves, similarity blocks.

Taught in ``02_baseline_irra``.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

LOSS_COLUMNS = ("loss", "sdm", "id", "mlm")


def plot_target_distributions(pids: Sequence[int], *, titles: tuple[str, str] = ("InfoNCE target", "SDM target q")):
    """InfoNCE's one-hot targets beside SDM's identity-aware ``q`` for one batch of identities.

    Row i is text i's target over the batch's images: InfoNCE puts all its mass
    on image i; SDM spreads it evenly over every image of the same identity.
    """
    pids = np.asarray(pids)
    same = (pids[:, None] == pids[None, :]).astype(float)  # (B, B)
    targets = (np.eye(len(pids)), same / same.sum(1, keepdims=True))
    labels = [f"{i} (id {p})" for i, p in enumerate(pids)]
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.2))
    for ax, target, title in zip(axes, targets, titles):
        sns.heatmap(pd.DataFrame(target, index=labels, columns=labels), annot=True, fmt=".2g", cmap="Greens",
                    vmin=0, vmax=1, cbar=False, linewidths=0.5, ax=ax)
        ax.set_title(title)
        ax.set_xlabel("image j")
        ax.set_ylabel("text i")
    fig.tight_layout()
    return fig


def plot_training_log(log: pd.DataFrame, epochs: Sequence[dict], *, title: str = ""):
    """Loss terms per logged row (left; each row a mean over the steps since the previous one) and
    validation R1 / mAP per epoch (right, on a fixed 0-100 axis, each point labelled)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
    for column in LOSS_COLUMNS:
        if column in log and log[column].notna().any():
            left.plot(log["step"], log[column], label=column, lw=1.5)
    left.set_xlabel("step")
    left.set_ylabel("loss")
    left.set_yscale("log")
    left.legend(frameon=False)
    left.set_title("training losses")
    if epochs:
        frame = pd.DataFrame(list(epochs))
        for metric, offset in (("R1", (-34, 6)), ("mAP", (8, -12))):
            if metric in frame:
                right.plot(frame["epoch"], frame[metric], marker="o", label=f"val {metric}")
                for epoch, value in zip(frame["epoch"], frame[metric]):
                    right.annotate(f"{metric} {value:.1f}", (epoch, value), textcoords="offset points",
                                   xytext=offset, fontsize=8)
        right.legend(frameon=False)
        right.set_xlim(0.5, max(frame["epoch"].max(), 1) + 0.5)
        right.set_xticks(range(1, int(frame["epoch"].max()) + 1))
    right.set_ylim(0, 100)  # percent on a fixed axis: one epoch is one point, not a zoomed-in line
    right.set_xlabel("epoch")
    right.set_ylabel("%")
    right.set_title("validation")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_similarity_blocks(
    sim: np.ndarray,
    q_pids: Sequence[int],
    g_pids: Sequence[int],
    *,
    partners: dict[int, int] | None = None,
    title: str = "",
):
    """A queries x gallery similarity heat-map, lines between identities, matches outlined.

    Sort queries and gallery by identity first: a model that has learned shows
    bright blocks on the diagonal. ``partners`` maps an identity to its
    hard-negative partner; those off-diagonal blocks are outlined in red, so a
    partner block as bright as the diagonal is easy to spot. Identity numbers
    label the rows and columns.
    """
    sim = np.asarray(sim, dtype=float)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    if sim.shape != (len(q_pids), len(g_pids)):
        raise ValueError(f"sim has shape {sim.shape} but there are {len(q_pids)} queries and {len(g_pids)} images")
    fig, ax = plt.subplots(figsize=(min(0.16 * len(g_pids) + 2.5, 11), min(0.16 * len(q_pids) + 1.8, 9)))
    sns.heatmap(sim, cmap="viridis", ax=ax, xticklabels=False, yticklabels=False, cbar_kws={"label": "cosine"})
    for i, q in enumerate(q_pids):
        for j in np.flatnonzero(g_pids == q):
            ax.add_patch(plt.Rectangle((j, i), 1, 1, fill=False, edgecolor="white", lw=0.8))
    for a, b in (partners or {}).items():
        rows, cols = np.flatnonzero(q_pids == a), np.flatnonzero(g_pids == b)
        if len(rows) and len(cols):
            ax.add_patch(plt.Rectangle((cols.min(), rows.min()), cols.max() - cols.min() + 1,
                                       rows.max() - rows.min() + 1, fill=False, edgecolor="red", lw=1.6))
    q_ids, q_first = np.unique(q_pids, return_index=True)
    g_ids, g_first = np.unique(g_pids, return_index=True)
    q_count, g_count = np.bincount(np.searchsorted(q_ids, q_pids)), np.bincount(np.searchsorted(g_ids, g_pids))
    ax.set_yticks(q_first + q_count / 2, [str(p) for p in q_ids], fontsize=7)
    ax.set_xticks(g_first + g_count / 2, [str(p) for p in g_ids], fontsize=7, rotation=90)
    for k in np.flatnonzero(np.diff(q_pids)) + 1:
        ax.axhline(k, color="black", lw=0.6)
    for k in np.flatnonzero(np.diff(g_pids)) + 1:
        ax.axvline(k, color="black", lw=0.6)
    ax.set_xlabel("gallery images (grouped by identity)" + ("; red: a hard-negative partner's images" if partners else ""))
    ax.set_ylabel("text queries (by identity)")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_warm_start(
    log: Sequence[dict],
    val_accuracy: dict[str, dict[str, float]],
    *,
    majority: dict[str, float] | None = None,
    title: str = "",
):
    """The attribute pretraining of the towers: loss (left) and mean accuracy (middle) per logged step,
    and the accuracy on the pretraining draw's val split per attribute, images beside captions (right).
    ``majority`` (share of the most common value per attribute) is drawn as a black line over each
    attribute's bars: a bar at that line has learned nothing beyond always guessing the commonest value."""
    frame = pd.DataFrame(list(log))
    if frame.empty or not {"step", "loss", "image_acc", "text_acc"} <= set(frame):
        raise ValueError("log must hold records with step, loss, image_acc and text_acc (a WarmStart's log)")
    if set(val_accuracy) != {"image", "text"}:
        raise ValueError(f"val_accuracy must have 'image' and 'text' entries, got {sorted(val_accuracy)}")
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 3.8), gridspec_kw={"width_ratios": [1, 1, 2]})
    left.plot(frame["step"], frame["loss"], color="black", lw=1.5)
    left.set_xlabel("step")
    left.set_ylabel("loss")
    left.set_title("attribute pretraining: loss")
    middle.plot(frame["step"], 100 * frame["image_acc"], color="tab:blue", label="from images")
    middle.plot(frame["step"], 100 * frame["text_acc"], color="tab:orange", label="from captions")
    middle.set_xlabel("step")
    middle.set_ylabel("mean accuracy over attributes (%)")
    middle.legend(frameon=False)
    middle.set_title("training batches")
    fields = list(val_accuracy["image"])
    bars = pd.DataFrame({
        "attribute": fields * 2,
        "accuracy (%)": [100 * val_accuracy[m][f] for m in ("image", "text") for f in fields],
        "from": ["image"] * len(fields) + ["caption"] * len(fields),
    })
    sns.barplot(bars, x="attribute", y="accuracy (%)", hue="from", ax=right, palette=["tab:blue", "tab:orange"])
    if majority is not None:
        for x, field in enumerate(fields):
            right.hlines(100 * majority[field], x - 0.42, x + 0.42, color="black", lw=1.6,
                         label="always the commonest value" if x == 0 else None)
    right.tick_params(axis="x", rotation=60)
    right.set_ylim(0, 118)  # room above the bars for the legend
    right.set_yticks(range(0, 101, 20))
    right.legend(frameon=False, ncols=2, loc="upper center")
    right.set_title("held-out accuracy per attribute")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
