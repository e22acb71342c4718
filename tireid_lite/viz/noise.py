"""Figures of noisy correspondence: similarities of clean and noisy pairs, per view and per identity,
and how well a partitioner finds the noisy pairs epoch after epoch.

Taught in ``05_kpdm_trusted_consensus``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

CLEAN_COLOUR = "tab:blue"
NOISY_COLOUR = "tab:red"


def _flags(noisy, n: int) -> np.ndarray:
    flags = np.asarray(noisy, dtype=bool).reshape(-1)
    if flags.shape != (n,):
        raise ValueError(f"noisy has {flags.size} flags for {n} pairs; give one flag per training pair")
    return flags


def plot_similarity_histograms(sims: Mapping[str, np.ndarray], noisy, *, bins: int = 40, title: str = "") -> Figure:
    """One panel per view: histograms of the pairs' own image-text similarity, clean and noisy apart.

    ``sims`` maps a view's name to its (N,) similarities; ``noisy`` (N,) the
    injected ground truth. One axis per view; each holds two histograms
    (clean first).
    """
    if not sims:
        raise ValueError("sims is empty; give at least one view")
    fig, axes = plt.subplots(1, len(sims), figsize=(4.2 * len(sims), 3.0), squeeze=False)
    for ax, (name, values) in zip(axes[0], sims.items()):
        values = np.asarray(values, dtype=float).reshape(-1)
        flags = _flags(noisy, len(values))
        edges = np.histogram_bin_edges(values, bins=bins)
        ax.hist(values[~flags], bins=edges, color=CLEAN_COLOUR, alpha=0.6, label=f"clean ({(~flags).sum()})")
        ax.hist(values[flags], bins=edges, color=NOISY_COLOUR, alpha=0.6, label=f"noisy ({flags.sum()})")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("cosine similarity of the pair's image and caption")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("pairs")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_identity_similarities(
    sims: np.ndarray, pids, noisy, identities: Sequence[int], *, title: str = ""
) -> Figure:
    """The similarities of a few identities' pairs, one column per identity, noisy pairs in red.

    Each identity's median is drawn as a short black line: TCP judges a pair
    against its own identity's distribution. One axis; ``identities`` are
    pids as in ``pids``.
    """
    sims = np.asarray(sims, dtype=float).reshape(-1)
    pids = np.asarray(pids).reshape(-1)
    if pids.shape != sims.shape:
        raise ValueError(f"pids has {pids.size} entries for {sims.size} similarities")
    flags = _flags(noisy, len(sims))
    missing = [int(g) for g in identities if not (pids == g).any()]
    if missing:
        raise ValueError(f"identities {missing} have no pairs")
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(identities) + 1.5), 3.2))
    jitter = np.random.default_rng(0)
    for x, g in enumerate(identities):
        own = pids == g
        xs = x + jitter.uniform(-0.15, 0.15, own.sum())
        colours = np.where(flags[own], NOISY_COLOUR, CLEAN_COLOUR)
        ax.scatter(xs, sims[own], c=colours, s=22, edgecolors="black", linewidths=0.3)
        ax.plot([x - 0.3, x + 0.3], [np.median(sims[own])] * 2, color="black", lw=1.2)
    ax.set_xticks(range(len(identities)), [str(int(g)) for g in identities], fontsize=8)
    ax.set_xlabel("identity (red: noisy pair, line: the identity's median)")
    ax.set_ylabel("similarity")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


PARTITIONER_COLOURS = {"none": "tab:blue", "ccd": "tab:purple", "tcp": "tab:green"}  # one colour per partitioner


def plot_detection(records: pd.DataFrame, *, title: str = "") -> Figure:
    """Detection precision, recall and F1 per epoch, one line per partitioner (and noise rate).

    ``records`` has columns ``partitioner``, ``epoch`` and ``precision``,
    ``recall``, ``f1`` (means over seeds, one row per partitioner and epoch),
    and optionally ``noise`` (one line style per rate) and ``chance_precision``,
    ``chance_recall``, ``chance_f1``: a random flagger's scores at the same flag
    rate, drawn as thin lines in the partitioner's colour. Three axes.
    """
    needed = {"partitioner", "epoch", "precision", "recall", "f1"}
    missing = needed - set(records.columns)
    if missing:
        raise ValueError(f"records lacks the columns {sorted(missing)}")
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.0), sharey=True)
    noise_levels = sorted(records["noise"].unique()) if "noise" in records else [None]
    styles = dict(zip(noise_levels, ("-", "--", ":", "-.")))
    for ax, metric in zip(axes, ("precision", "recall", "f1")):
        chance = f"chance_{metric}"
        for partitioner in sorted(records["partitioner"].unique()):
            colour = PARTITIONER_COLOURS.get(partitioner, "tab:orange")
            for level in noise_levels:
                rows = records[records["partitioner"] == partitioner]
                if level is not None:
                    rows = rows[rows["noise"] == level]
                if rows.empty:
                    continue
                rows = rows.sort_values("epoch")
                label = partitioner if level is None else f"{partitioner}, {level:.0%} noise"
                ax.plot(rows["epoch"], rows[metric], marker="o", color=colour, ls=styles[level], label=label)
                if chance in rows:  # a random flagger that flags as many pairs: thin, no markers
                    ax.plot(rows["epoch"], rows[chance], color=colour, ls=styles[level], lw=0.9, alpha=0.55,
                            label=f"random flagger, as many flags as {label}")
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylim(-0.02, 1.02)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
