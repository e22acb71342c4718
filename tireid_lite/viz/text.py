"""Figures of captions: a dependency parse with its key phrases, and masked captions side by side.

Taught in ``03_kpdm_key_phrase_masking``.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

PHRASE_COLOUR = "#fdd49e"  # tokens inside a key phrase
MASKED_COLOUR = "#d62728"  # masked tokens
KEPT_COLOUR = "#f0f0f0"  # tokens left as they are


def plot_parse(
    words: Sequence[str],
    tags: Sequence[str],
    deps: Sequence[str],
    heads: Sequence[int],
    *,
    highlight: Sequence[int] = (),
    title: str = "",
) -> Figure:
    """A dependency parse: one box per word with its part of speech below, arcs head -> dependent above.

    ``heads[i]`` is the index of word i's head (the root points to itself);
    each arc is labelled with ``deps[i]``. Words whose index is in
    ``highlight`` (a key phrase, say) are shaded. One axis; the word boxes are
    its patches in word order.
    """
    n = len(words)
    if not (len(tags) == len(deps) == len(heads) == n) or n == 0:
        raise ValueError(
            f"words, tags, deps and heads must have one entry per word; got {n}, {len(tags)}, {len(deps)}, {len(heads)}"
        )
    bad = [h for h in heads if not 0 <= int(h) < n]
    if bad:
        raise ValueError(f"heads {bad} are not word indices 0..{n - 1}")
    marked = {int(i) for i in highlight}
    fig, ax = plt.subplots(figsize=(max(6.0, 0.95 * n), 3.4))
    for i, (word, tag) in enumerate(zip(words, tags)):
        colour = PHRASE_COLOUR if i in marked else KEPT_COLOUR
        ax.add_patch(FancyBboxPatch((i - 0.42, -0.25), 0.84, 0.5, boxstyle="round,pad=0.02", fc=colour, ec="grey"))
        ax.text(i, 0.0, word, ha="center", va="center", fontsize=9)
        ax.text(i, -0.45, tag, ha="center", va="top", fontsize=7, color="tab:blue")
    for i, (dep, head) in enumerate(zip(deps, heads)):
        head = int(head)
        if head == i:
            ax.text(i, 0.32, "ROOT", ha="center", va="bottom", fontsize=7, color="tab:red")
            continue
        height = 0.45 + 0.28 * abs(head - i)
        xs = np.linspace(head, i, 40)
        ys = 0.28 + height * np.sin(np.linspace(0, np.pi, 40))  # an arch from the head to the dependent
        ax.plot(xs, ys, color="grey", lw=0.8)
        ax.annotate("", xy=(i, 0.28), xytext=(xs[-2], ys[-2]), arrowprops={"arrowstyle": "->", "color": "grey"})
        ax.text((head + i) / 2, 0.28 + height, dep, ha="center", va="bottom", fontsize=7)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylim(-0.8, 0.6 + 0.28 * max(abs(int(h) - i) for i, h in enumerate(heads)) + 0.5)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9, loc="left")
    fig.tight_layout()
    return fig


def show_masks(
    tokens: Sequence[str],
    rows: Sequence[Sequence[bool]],
    labels: Sequence[str],
    *,
    phrase: Sequence[bool] | None = None,
    title: str = "",
) -> Figure:
    """Which tokens of one caption each masking draw chose: one row per draw, masked tokens in red.

    ``tokens`` are the caption's tokens, ``rows[r][t]`` whether draw r masked
    token t, ``labels[r]`` the row's name ("random, draw 1"...). With
    ``phrase`` (one flag per token) the key-phrase tokens are underlined in
    every row. One axis; its image holds 1 for masked, 0 for kept tokens.
    """
    grid = np.asarray(rows, dtype=bool)  # (R, T)
    if grid.ndim != 2 or grid.shape[1] != len(tokens) or grid.shape[0] != len(labels):
        raise ValueError(
            f"rows must be (draws, tokens) = ({len(labels)}, {len(tokens)}) flags, got shape {grid.shape}"
        )
    if phrase is not None and len(phrase) != len(tokens):
        raise ValueError(f"phrase has {len(phrase)} flags for {len(tokens)} tokens")
    fig, ax = plt.subplots(figsize=(max(6.0, 0.62 * len(tokens) + 1.8), 0.42 * len(labels) + 0.9))
    ax.imshow(grid.astype(float), cmap=plt.matplotlib.colors.ListedColormap([KEPT_COLOUR, MASKED_COLOUR]),
              vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    for r in range(grid.shape[0]):
        for t, token in enumerate(tokens):
            ax.text(t, r, token, ha="center", va="center", fontsize=7, color="white" if grid[r, t] else "black")
            if phrase is not None and phrase[t]:
                ax.plot([t - 0.45, t + 0.45], [r + 0.38, r + 0.38], color="tab:orange", lw=1.6)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xticks([])
    if title:
        ax.set_title(title, fontsize=9, loc="left")
    fig.tight_layout()
    return fig


def plot_budget(expected: Sequence[float], measured: Sequence[float], *, labels: Sequence[str] = ("random", "phrase"),
                title: str = "") -> Figure:
    """Measured masked tokens per caption against the budget: one point per caption and strategy.

    ``expected`` (C,) is each caption's budget; ``measured`` (S, C) the mean
    over draws for each strategy. Points on the diagonal meet the budget. One axis.
    """
    expected = np.asarray(expected, dtype=float)
    measured = np.asarray(measured, dtype=float)
    if measured.ndim != 2 or measured.shape != (len(labels), len(expected)):
        raise ValueError(f"measured must be (strategies, captions) = ({len(labels)}, {len(expected)}), "
                         f"got shape {measured.shape}")
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    for values, label, marker in zip(measured, labels, "ox^sd"):
        ax.scatter(expected, values, s=14, marker=marker, alpha=0.6, label=label)
    low, high = float(min(expected.min(), measured.min())), float(max(expected.max(), measured.max()))
    ax.plot([low, high], [low, high], color="black", lw=0.8, label="budget")
    ax.set_xlabel("budget: expected masked tokens")
    ax.set_ylabel("measured mean over draws")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_fmlm_weights(
    counts: Sequence[float],
    weights: Sequence[float],
    *,
    annotate: dict[str, tuple[float, float]] | None = None,
    ylabel: str = "weight",
    title: str = "",
    words: Sequence[str] | None = None,
    show: int = 10,
) -> Figure:
    """FMLM's weight of every vocabulary word against its corpus count (log-log), with named words marked;
    with ``words``, a second axis of labelled bars: the commonest and the rarest words and their weights.

    ``counts`` and ``weights`` (V,) per word; ``annotate`` maps a word to its
    (count, weight) point to label; ``words`` (V,) the words, to name ``show`` of each end.
    """
    counts = np.asarray(counts, dtype=float)
    weights = np.asarray(weights, dtype=float)
    if counts.shape != weights.shape or counts.ndim != 1:
        raise ValueError(f"counts and weights must be two (V,) vectors, got {counts.shape} and {weights.shape}")
    if words is not None and len(words) != len(counts):
        raise ValueError(f"words has {len(words)} entries for {len(counts)} counts; give one word per count")
    if words is None:
        fig, ax = plt.subplots(figsize=(6.0, 3.6))
    else:
        fig, (ax, bars) = plt.subplots(1, 2, figsize=(12.0, 4.2), gridspec_kw={"width_ratios": [1, 1.1]})
        order = np.argsort(counts, kind="stable")
        ends = np.concatenate([order[-show:][::-1], order[:show][::-1]])  # commonest first, then the rarest
        labels = [f"{words[i]} ({int(counts[i])})" for i in ends]
        colours = ["tab:grey"] * show + ["tab:red"] * show
        bars.barh(range(len(ends))[::-1], weights[ends], color=colours)
        bars.set_yticks(range(len(ends))[::-1], labels, fontsize=7)
        bars.axvline(1.0, color="grey", lw=0.6, ls="--")
        bars.set_xscale("log")
        bars.set_xlabel("weight (log scale)")
        bars.set_title(f"the {show} commonest (grey) and {show} rarest (red) words, with their counts", fontsize=9)
    ax.scatter(counts, weights, s=8, alpha=0.5, color="tab:blue")
    for word, (x, y) in (annotate or {}).items():
        ax.annotate(word, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8)
        ax.scatter([x], [y], s=18, color="tab:red")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.axhline(1.0, color="grey", lw=0.6, ls="--")
    ax.set_xlabel("corpus count of the word")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
