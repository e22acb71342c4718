"""Figures of the data notebook: samples with part maps, frequencies, caption lengths, pairs, a toy ``sim``.

Taught in ``01_data``. Every function draws with matplotlib/seaborn and
returns the :class:`~matplotlib.figure.Figure`; those that draw a single panel
take an optional ``ax`` so a notebook can put several panels in one figure.
Images are ``(H, W, 3)`` uint8 arrays and part maps ``(H, W)`` arrays of
indices into :data:`~tireid_lite.data.synth.PART_CLASSES`, as SynthPEDES
stores them.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from tireid_lite.data.synth.materials import PART_CLASSES

# One colour per part class; background (index 0) is never painted over.
PART_COLOURS: dict[str, str] = {
    "background": "#000000",
    "hat": "#e6194b",
    "hair": "#9a6324",
    "face": "#ffe119",
    "upper_clothes": "#4363d8",
    "lower_clothes": "#3cb44b",
    "arms": "#f58231",
    "legs": "#911eb4",
    "shoes": "#42d4f4",
    "bag": "#f032e6",
}
BAR_COLOUR = "#4c72b0"
MATCH_EDGE = "#2ca02c"


def part_palette() -> np.ndarray:
    """The RGB colour of every part class, ``(len(PART_CLASSES), 3)`` uint8, in :data:`PART_CLASSES` order."""
    rgb = [tuple(int(PART_COLOURS[name][i : i + 2], 16) for i in (1, 3, 5)) for name in PART_CLASSES]
    return np.array(rgb, dtype=np.uint8)


def overlay_parts(image: np.ndarray, part_map: np.ndarray, *, alpha: float = 0.55) -> np.ndarray:
    """``image`` with every non-background pixel blended towards its part colour.

    ``out = (1 - alpha) * image + alpha * colour[part]`` on pixels whose part is
    not ``background``, rounded to uint8; background pixels are unchanged.
    Taught in ``01_data``.
    """
    image = np.asarray(image)
    part_map = np.asarray(part_map)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image has shape {image.shape}; pass an (H, W, 3) RGB array")
    if part_map.shape != image.shape[:2]:
        raise ValueError(
            f"part map has shape {part_map.shape} but the image is {image.shape[:2]}; "
            "pass the part map drawn with this image (same height and width)"
        )
    if part_map.size and (part_map.min() < 0 or part_map.max() >= len(PART_CLASSES)):
        raise ValueError(
            f"part map holds values from {part_map.min()} to {part_map.max()}; "
            f"part labels index PART_CLASSES, 0 to {len(PART_CLASSES) - 1}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha!r} is outside [0, 1]; 0 shows the image, 1 the part colours only")
    colours = part_palette()[part_map].astype(np.float64)  # (H, W, 3)
    blended = (1.0 - alpha) * image.astype(np.float64) + alpha * colours
    painted = (part_map > 0)[..., None]  # (H, W, 1)
    return np.where(painted, np.rint(blended), image).astype(np.uint8)


def _wrapped(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width))


def _bare(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def show_samples(
    images: Sequence[np.ndarray],
    part_maps: Sequence[np.ndarray],
    captions: Sequence[Sequence[str]],
    titles: Sequence[str] | None = None,
    *,
    alpha: float = 0.55,
    wrap: int = 64,
) -> Figure:
    """One row per sample: the image, the image with its part map overlaid, and its captions.

    ``captions[i]`` holds the captions of image ``i`` (SynthPEDES writes two);
    ``titles[i]`` names the sample (e.g. its identity and view). A legend maps
    the overlay colours to part classes. Three axes per sample.
    Taught in ``01_data``.
    """
    n = len(images)
    if n == 0:
        raise ValueError("no images given; pass at least one image with its part map and captions")
    if not len(part_maps) == len(captions) == n or (titles is not None and len(titles) != n):
        raise ValueError(
            f"{n} images, {len(part_maps)} part maps, {len(captions)} caption lists"
            + ("" if titles is None else f" and {len(titles)} titles")
            + "; give one of each per image"
        )
    fig, axes = plt.subplots(
        n, 3, figsize=(8.0, 2.3 * n), squeeze=False, gridspec_kw={"width_ratios": [1.0, 1.0, 5.5]}
    )
    for i in range(n):
        image_ax, overlay_ax, text_ax = axes[i]
        image_ax.imshow(images[i], interpolation="nearest")
        overlay_ax.imshow(overlay_parts(images[i], part_maps[i], alpha=alpha), interpolation="nearest")
        for ax in (image_ax, overlay_ax):
            _bare(ax)
        if i == 0:
            image_ax.set_title("image", fontsize=9)
            overlay_ax.set_title("part map", fontsize=9)
        text_ax.axis("off")
        lines = [_wrapped(f"{k + 1}. {caption}", wrap) for k, caption in enumerate(captions[i])]
        heading = f"{titles[i]}\n" if titles is not None else ""
        text_ax.text(0.0, 0.5, heading + "\n".join(lines), va="center", ha="left", fontsize=8)
    handles = [Patch(facecolor=PART_COLOURS[name], label=name) for name in PART_CLASSES[1:]]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles) // 2 + len(handles) % 2, fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0.0, 0.07, 1.0, 1.0))
    return fig


def _figure_and_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def plot_counts(
    counts: Mapping[str, float],
    *,
    title: str = "",
    xlabel: str = "count",
    expected: Mapping[str, float] | None = None,
    top: int | None = None,
    keep_order: bool = False,
    ax: Axes | None = None,
) -> Figure:
    """Horizontal bars of ``counts`` (label -> count), largest first unless ``keep_order``.

    ``top`` keeps the ``top`` largest; ``expected`` (label -> count) marks the
    count a model predicts on each bar with a black dot. One axis.
    Taught in ``01_data``.
    """
    if not counts:
        raise ValueError("counts is empty; pass a mapping of labels to counts")
    labels = list(counts) if keep_order else sorted(counts, key=lambda k: (-counts[k], str(k)))
    if top is not None:
        labels = labels[:top]
    frame = pd.DataFrame({"label": [str(k) for k in labels], "count": [float(counts[k]) for k in labels]})
    fig, ax = _figure_and_axes(ax, (5.0, 0.25 * len(labels) + 1.2))
    sns.barplot(data=frame, x="count", y="label", color=BAR_COLOUR, ax=ax)
    if expected is not None:
        missing = [k for k in labels if k not in expected]
        if missing:
            raise ValueError(f"expected has no value for {missing[0]!r}; give one per label of counts")
        ax.scatter([expected[k] for k in labels], range(len(labels)), color="black", s=14, zorder=3,
                   label="expected")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("")
    return fig


def plot_attribute_counts(
    records: Sequence[Mapping[str, Any]],
    attributes: Sequence[str],
    *,
    ncols: int = 3,
    missing: str = "none",
) -> Figure:
    """One bar panel per attribute: how many ``records`` take each value (``None`` counts as ``missing``).

    ``records`` are attribute mappings such as the identities of SynthPEDES's
    ``attributes.json``. One axis per attribute. Taught in ``01_data``.
    """
    if not records or not attributes:
        raise ValueError("pass at least one record and one attribute name")
    absent = [a for a in attributes if a not in records[0]]
    if absent:
        raise ValueError(f"records have no attribute {absent[0]!r}; they have {', '.join(records[0])}")
    nrows = -(-len(attributes) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.0 * ncols, 2.6 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, attributes):
        values = pd.Series([missing if r[name] is None else str(r[name]) for r in records])
        plot_counts(values.value_counts().to_dict(), title=name, ax=ax)
    for ax in axes.flat[len(attributes) :]:
        fig.delaxes(ax)
    fig.tight_layout()
    return fig


def plot_rank_frequency(
    counts: Mapping[str, float],
    *,
    title: str = "",
    label: int = 5,
    ax: Axes | None = None,
) -> Figure:
    """Frequency against frequency rank on log-log axes (a straight line is Zipf's law).

    The ``label`` most frequent items are written beside their points. One axis.
    Taught in ``01_data``.
    """
    if not counts:
        raise ValueError("counts is empty; pass a mapping of words to counts")
    items = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    ranks = np.arange(1, len(items) + 1)
    freqs = np.array([float(v) for _, v in items])
    fig, ax = _figure_and_axes(ax, (4.5, 3.5))
    ax.loglog(ranks, freqs, marker=".", linestyle="none", color=BAR_COLOUR)
    for rank, (word, freq) in zip(ranks[:label], items[:label]):
        ax.annotate(str(word), (rank, freq), textcoords="offset points", xytext=(4, 2), fontsize=7)
    ax.set_xlabel("frequency rank")
    ax.set_ylabel("count")
    ax.set_title(title, fontsize=10)
    return fig


def plot_caption_lengths(
    lengths: Mapping[str, Sequence[int]],
    *,
    reference: float | None = None,
    reference_label: str = "reference",
    ax: Axes | None = None,
) -> Figure:
    """Histograms of caption lengths in words, one per named group, each with its mean marked.

    ``reference`` draws a dashed line at a published mean (e.g. CUHK-PEDES's
    23.5 words). One axis. Taught in ``01_data``.
    """
    groups = {name: list(values) for name, values in lengths.items() if len(values)}
    if not groups:
        raise ValueError("no caption lengths given; pass a mapping of group names to lists of lengths")
    frame = pd.DataFrame(
        [(name, int(n)) for name, values in groups.items() for n in values], columns=["group", "words"]
    )
    fig, ax = _figure_and_axes(ax, (6.0, 3.2))
    palette = dict(zip(groups, sns.color_palette(n_colors=len(groups))))
    sns.histplot(data=frame, x="words", hue="group", discrete=True, stat="proportion", common_norm=False,
                 element="step", palette=palette, ax=ax)
    for name, values in groups.items():
        ax.axvline(float(np.mean(values)), color=palette[name], linewidth=1.5)
    if reference is not None:
        ax.axvline(reference, color="black", linestyle="--", linewidth=1.2)
        ax.annotate(f"{reference_label} {reference:g}", (reference, ax.get_ylim()[1]), xytext=(3, -12),
                    textcoords="offset points", fontsize=8)
    ax.set_xlabel("words per caption")
    return fig


def show_pairs(
    left: Sequence[np.ndarray],
    right: Sequence[np.ndarray],
    left_labels: Sequence[str],
    right_labels: Sequence[str],
    titles: Sequence[str],
    *,
    ncols: int = 4,
) -> Figure:
    """Image pairs side by side, each image labelled, each pair titled (hard negatives).

    Pair ``i`` is ``left[i]`` beside ``right[i]``; ``titles[i]`` names what
    tells them apart and the labels give each image's value of it. Two axes per
    pair, ``ncols`` pairs per row. Taught in ``01_data``.
    """
    n = len(left)
    if n == 0:
        raise ValueError("no pairs given; pass at least one pair of images")
    if not len(right) == len(left_labels) == len(right_labels) == len(titles) == n:
        raise ValueError(
            f"{n} left images, {len(right)} right images, {len(left_labels)} and {len(right_labels)} labels, "
            f"{len(titles)} titles; give one of each per pair"
        )
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig = plt.figure(figsize=(2.9 * ncols, 3.3 * nrows))
    grid = fig.add_gridspec(nrows, ncols, wspace=0.35, hspace=0.5)
    for i in range(n):
        pair = grid[i // ncols, i % ncols].subgridspec(1, 2, wspace=0.45)  # room for each label under its image
        for j, (image, label) in enumerate(((left[i], left_labels[i]), (right[i], right_labels[i]))):
            ax = fig.add_subplot(pair[0, j])
            ax.imshow(image, interpolation="nearest")
            _bare(ax)
            ax.set_xlabel(_wrapped(label, 11), fontsize=7)
            if j == 0:
                ax.set_title(_wrapped(titles[i], 26), fontsize=8, loc="left")
    return fig


def show_noisy_pair(
    image: np.ndarray,
    caption_before: str,
    caption_after: str,
    source_image: np.ndarray | None = None,
    *,
    wrap: int = 26,
) -> Figure:
    """A training pair before and after noise injection: the same image with its own and the new caption.

    With ``source_image`` a third panel shows the image the new caption was
    written for. Two axes, or three with ``source_image``. Taught in ``01_data``.
    """
    panels = [("before: clean", image, caption_before), ("after: noisy", image, caption_after)]
    if source_image is not None:
        panels.append(("the caption's own image", source_image, caption_after))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 4.4))
    for ax, (title, picture, caption) in zip(axes, panels):
        ax.imshow(picture, interpolation="nearest")
        _bare(ax)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(_wrapped(caption, wrap), fontsize=7)
    fig.tight_layout()
    return fig


def plot_similarity(
    sim: np.ndarray,
    q_pids: Sequence[int],
    g_pids: Sequence[int],
    *,
    ax: Axes | None = None,
) -> Figure:
    """A queries x gallery similarity matrix as an annotated heatmap, matching cells framed green.

    Rows are labelled ``q<i> (id <pid>)``, columns ``g<j> (id <pid>)``. One axis
    (no colour bar). Taught in ``01_data``.
    """
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2 or sim.shape != (len(q_pids), len(g_pids)):
        raise ValueError(
            f"sim has shape {sim.shape} but there are {len(q_pids)} query and {len(g_pids)} gallery identities; "
            "pass a (queries, gallery) matrix with one identity per row and per column"
        )
    fig, ax = _figure_and_axes(ax, (1.1 * sim.shape[1] + 1.8, 0.8 * sim.shape[0] + 1.2))
    frame = pd.DataFrame(
        sim,
        index=[f"q{i} (id {p})" for i, p in enumerate(q_pids)],
        columns=[f"g{j} (id {p})" for j, p in enumerate(g_pids)],
    )
    sns.heatmap(frame, annot=True, fmt=".2f", cmap="Blues", cbar=False, linewidths=0.5, ax=ax)
    for i, q in enumerate(q_pids):
        for j, g in enumerate(g_pids):
            if q == g:
                ax.add_patch(Rectangle((j, i), 1, 1, fill=False, edgecolor=MATCH_EDGE, linewidth=2.5))
    ax.set_xlabel("gallery images")
    ax.set_ylabel("queries (captions)")
    ax.tick_params(axis="x", rotation=0)
    ax.tick_params(axis="y", rotation=0)
    return fig
