"""CADA's figures: where each caption token looks and how much its gate lets in; the gallery before and
after re-ranking, with hard-negative partners marked. Taught in ``07_cada_dual_association``."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

FRAME = {"match": "#2ca02c", "partner": "#ff7f0e", "other": "#d62728"}  # same identity / its hard negative / else


def show_token_associations(
    image: np.ndarray,
    words: Sequence[str],
    maps: np.ndarray,
    gates: Sequence[float],
    *,
    title: str = "",
    columns: int = 8,
):
    """The image, then one panel per caption token: its attention over the patches (``maps`` (T, rows,
    cols), each row summing to at most 1) drawn over the image, titled with the token and its gate value."""
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3 or len(maps) != len(words) or len(gates) != len(words):
        raise ValueError(f"give one (rows, cols) map and one gate per word: {len(words)} words, maps {maps.shape}, "
                         f"{len(gates)} gates")
    h, w = image.shape[:2]
    panels = len(words) + 1
    cols = min(columns, panels)
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.15 * cols, 2.75 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].imshow(image, interpolation="nearest")
    axes[0, 0].set_title("image", fontsize=8)
    top = maps.max() if maps.size else 1.0
    for t, (word, grid, gate) in enumerate(zip(words, maps, gates), start=1):
        ax = axes[t // cols, t % cols]
        ax.imshow(image, interpolation="nearest")
        ax.imshow(grid, cmap="magma", alpha=0.6, extent=(-0.5, w - 0.5, h - 0.5, -0.5), vmin=0, vmax=top,
                  interpolation="nearest")
        ax.set_title(f"{word}\ng={gate:.2f}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _framed(ax, image: np.ndarray, kind: str, label: str) -> None:
    ax.imshow(image, interpolation="nearest")
    h, w = image.shape[:2]
    ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, lw=3, edgecolor=FRAME[kind]))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(label, fontsize=7)


def show_reranking(
    queries: Sequence[str],
    before: Sequence[Sequence[np.ndarray]],
    before_kinds: Sequence[Sequence[str]],
    after: Sequence[Sequence[np.ndarray]],
    after_kinds: Sequence[Sequence[str]],
    *,
    title: str = "",
    wrap: int = 34,
):
    """For each query two rows, the top of the gallery by the global similarity and after re-ranking.

    ``*_kinds`` name each image: ``match`` (the query's identity, green),
    ``partner`` (its hard-negative partner, orange) or ``other`` (red).
    """
    n, k = len(queries), max(len(r) for r in before)
    fig, axes = plt.subplots(2 * n, k + 1, figsize=(0.9 * k + 3.0, 2.05 * 2 * n),
                             gridspec_kw={"width_ratios": [3.0] + [1.0] * k}, squeeze=False)
    for i, query in enumerate(queries):
        for r, (images, kinds, stage) in enumerate(((before[i], before_kinds[i], "global"),
                                                    (after[i], after_kinds[i], "re-ranked"))):
            row = axes[2 * i + r]
            row[0].axis("off")
            text = "\n".join(textwrap.wrap(query, wrap)) if r == 0 else ""
            row[0].text(0.0, 0.5, f"{text}\n[{stage}]" if text else f"[{stage}]", va="center", ha="left", fontsize=7)
            for j, ax in enumerate(row[1:]):
                if j < len(images):
                    _framed(ax, images[j], kinds[j], f"#{j + 1}")
                else:
                    ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
