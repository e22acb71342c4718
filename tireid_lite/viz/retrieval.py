"""Retrieval figures: a text query and its ranked gallery (taught in ``00_welcome`` and ``02_baseline_irra``)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

CORRECT = "#2ca02c"
WRONG = "#d62728"


def show_ranking(
    query: str,
    images: Sequence[np.ndarray],
    correct: Sequence[bool],
    scores: Sequence[float] | None = None,
    *,
    title: str | None = None,
    wrap: int = 38,
    fig=None,
    axes_row=None,
):
    """Draw ``query`` beside its ranked gallery ``images`` (best first).

    A correct match (same identity as the query) is framed green, a wrong one
    red; ``scores`` are printed under each image. Returns the figure. Pass
    ``axes_row`` (a list of ``len(images) + 1`` axes) to draw into an
    existing grid, one row per query.
    """
    if len(images) != len(correct):
        raise ValueError(f"{len(images)} images but {len(correct)} correctness flags; give one flag per image")
    if scores is not None and len(scores) != len(images):
        raise ValueError(f"{len(images)} images but {len(scores)} scores; give one score per image")
    k = len(images)
    if axes_row is None:
        fig, axes_row = plt.subplots(1, k + 1, figsize=(1.0 * k + 3.2, 2.6),
                                     gridspec_kw={"width_ratios": [3.0] + [1.0] * k})
    axes_row = list(np.ravel(axes_row))
    text_ax = axes_row[0]
    text_ax.axis("off")
    text_ax.text(0.0, 0.5, "\n".join(textwrap.wrap(query, wrap)), va="center", ha="left", fontsize=8, wrap=True)
    for rank, (ax, image, ok) in enumerate(zip(axes_row[1:], images, correct), start=1):
        ax.imshow(image, interpolation="nearest")
        h, w = image.shape[:2]
        ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, lw=3, edgecolor=CORRECT if ok else WRONG))
        ax.set_xticks([])
        ax.set_yticks([])
        label = f"#{rank}" if scores is None else f"#{rank}\n{scores[rank - 1]:.2f}"
        ax.set_xlabel(label, fontsize=7)
    if title:
        (fig or text_ax.figure).suptitle(title, fontsize=10)
    return fig or text_ax.figure


def show_rankings(
    queries: Sequence[str],
    image_rows: Sequence[Sequence[np.ndarray]],
    correct_rows: Sequence[Sequence[bool]],
    score_rows: Sequence[Sequence[float]] | None = None,
    *,
    title: str | None = None,
):
    """Several queries, one row each, with :func:`show_ranking`'s layout."""
    n, k = len(queries), max(len(r) for r in image_rows)
    fig, axes = plt.subplots(n, k + 1, figsize=(1.0 * k + 3.2, 2.3 * n),
                             gridspec_kw={"width_ratios": [3.0] + [1.0] * k}, squeeze=False)
    for i, query in enumerate(queries):
        show_ranking(query, image_rows[i], correct_rows[i], None if score_rows is None else score_rows[i],
                     axes_row=axes[i], fig=fig)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
