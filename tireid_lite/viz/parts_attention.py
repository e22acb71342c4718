"""Figures of part queries: where each query looks in images and captions, which part it found, how
common each part is over training. Taught in ``08_partlevel_commonality``."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def show_part_attention(images: Sequence[np.ndarray], grids: np.ndarray, *, title: str = ""):
    """One row per image: the image, then each part query's attention (rows, cols) laid over it.

    ``images`` (n of (H, W, 3) in [0, 1]); ``grids`` (n, K, rows, cols), each map scaled to its own maximum.
    """
    grids = np.asarray(grids)
    n, k = grids.shape[:2]
    fig, axes = plt.subplots(n, k + 1, figsize=(1.1 * (k + 1), 2.7 * n), squeeze=False)
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        axes[i, 0].imshow(image)
        axes[i, 0].set_title("image" if i == 0 else "", fontsize=9)
        for q in range(k):
            heat = grids[i, q] / max(float(grids[i, q].max()), 1e-12)
            ax = axes[i, q + 1]
            ax.imshow(image)
            ax.imshow(heat, cmap="inferno", alpha=0.6, extent=(-0.5, w - 0.5, h - 0.5, -0.5), vmin=0, vmax=1)
            if i == 0:
                ax.set_title(f"query {q}", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def show_word_attention(words: Sequence[str], attention: np.ndarray, *, title: str = ""):
    """A caption's words (columns) against the part queries (rows): each query's attention weight."""
    attention = np.asarray(attention)  # (K, W)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.38 * len(words)), 0.45 * attention.shape[0] + 1.6))
    image = ax.imshow(attention, cmap="viridis", aspect="auto", vmin=0)
    ax.set_xticks(range(len(words)), words, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(attention.shape[0]), [f"query {k}" for k in range(attention.shape[0])], fontsize=8)
    fig.colorbar(image, ax=ax, label="attention weight", fraction=0.03)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_iou_matrix(iou: np.ndarray, chance: np.ndarray, classes: Sequence[str], *, title: str = ""):
    """Query-to-part IoU (K, C) beside the same minus its chance level, each cell annotated."""
    panels = ((np.asarray(iou), "IoU", "viridis"), (np.asarray(iou) - np.asarray(chance), "IoU - chance", "RdBu_r"))
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.5 * iou.shape[0] + 2.0))
    for ax, (values, label, cmap) in zip(axes, panels):
        bound = max(float(np.abs(values).max()), 1e-6)
        image = ax.imshow(values, cmap=cmap, aspect="auto", vmin=0 if label == "IoU" else -bound, vmax=bound)
        for (r, c), v in np.ndenumerate(values):
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if label == "IoU" and v < 0.6 * bound else "black")
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(values.shape[0]), [f"query {k}" for k in range(values.shape[0])], fontsize=8)
        ax.set_title(label, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.04)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_commonality(logs: dict[str, pd.DataFrame], num_parts: int, *, column: str = "common",
                     ylabel: str = "commonality c_k", title: str = ""):
    """Each part's logged ``<column>_k`` over training steps, one panel per run (``logs``: name -> log)."""
    fig, axes = plt.subplots(1, len(logs), figsize=(4.6 * len(logs), 3.2), sharey=True, squeeze=False)
    for ax, (name, log) in zip(axes[0], logs.items()):
        for k in range(num_parts):
            ax.plot(log["step"], log[f"{column}_{k}"], marker=".", label=f"query {k}")
        ax.set_xlabel("training step")
        ax.set_title(name, fontsize=9)
    axes[0, 0].set_ylabel(ylabel)
    axes[0, -1].legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
