"""Figures of part maps and patch labels: how SemMIM's targets are made and what the MIM head predicts.

Taught in ``06_bilma_semantic_mim``.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch, Rectangle

from tireid_lite.data.synth.materials import PART_CLASSES

# One colour per part class, background first (white).
PART_COLOURS = (
    "#ffffff", "#8c564b", "#bcbd22", "#f7b6d2", "#1f77b4", "#2ca02c", "#ff9896", "#98df8a", "#7f7f7f", "#d62728",
)
PART_CMAP = ListedColormap(PART_COLOURS[: len(PART_CLASSES)])


def _check_grid(labels: np.ndarray, image: np.ndarray, patch_size: int) -> None:
    rows, cols = image.shape[0] // patch_size, image.shape[1] // patch_size
    if labels.shape != (rows, cols):
        raise ValueError(
            f"labels have shape {labels.shape} but a {image.shape[0]}x{image.shape[1]} image has a "
            f"{rows}x{cols} grid of {patch_size}-pixel patches"
        )


def _grid(ax, rows: int, cols: int, patch_size: int) -> None:
    for r in range(1, rows):
        ax.axhline(r * patch_size - 0.5, color="black", lw=0.4)
    for c in range(1, cols):
        ax.axvline(c * patch_size - 0.5, color="black", lw=0.4)


def _labels_image(labels: np.ndarray, patch_size: int) -> np.ndarray:
    return np.kron(labels, np.ones((patch_size, patch_size), dtype=labels.dtype))  # (H, W)


def part_legend(ax, classes: Sequence[int] | None = None) -> None:
    """A legend of the part colours (all classes, or only ``classes``) beside ``ax``."""
    shown = range(len(PART_CLASSES)) if classes is None else sorted(set(int(c) for c in classes))
    handles = [Patch(facecolor=PART_COLOURS[k], edgecolor="black", lw=0.4, label=PART_CLASSES[k]) for k in shown]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False, fontsize=8)


def show_patch_labels(image: np.ndarray, part_map: np.ndarray, labels: np.ndarray, patch_size: int, *, title: str = ""):
    """Image, its pixel part map, and the patch labels drawn on the patch grid (three panels)."""
    image, part_map, labels = np.asarray(image), np.asarray(part_map), np.asarray(labels)
    if part_map.shape != image.shape[:2]:
        raise ValueError(f"part map {part_map.shape} and image {image.shape[:2]} differ in size; resize the map")
    _check_grid(labels, image, patch_size)
    fig, axes = plt.subplots(1, 3, figsize=(6.2, 4.6))
    panels = (
        (image, None, "image"),
        (part_map, PART_CMAP, "part map (pixels)"),
        (_labels_image(labels, patch_size), PART_CMAP, f"patch labels ({patch_size}x{patch_size})"),
    )
    for ax, (picture, cmap, name) in zip(axes, panels):
        if cmap is None:
            ax.imshow(picture)
        else:
            ax.imshow(picture, cmap=cmap, vmin=0, vmax=len(PART_CLASSES) - 1, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    _grid(axes[2], *labels.shape, patch_size)
    part_legend(axes[2], np.unique(np.concatenate([part_map.ravel(), labels.ravel()])))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_mim_prediction(
    image: np.ndarray,
    patch_mask: np.ndarray,
    true_labels: np.ndarray,
    pred_labels: np.ndarray,
    patch_size: int,
    *,
    title: str = "",
):
    """The masked image the model saw, the true patch labels and its predictions on the masked patches.

    ``patch_mask``, ``true_labels`` and ``pred_labels`` are (rows, cols); masked
    patches are greyed in the first panel and outlined (green when the
    prediction is right, red when wrong) in the other two.
    """
    image = np.asarray(image, dtype=float)
    patch_mask, true_labels, pred_labels = (np.asarray(a) for a in (patch_mask, true_labels, pred_labels))
    for name, grid in (("patch_mask", patch_mask), ("true_labels", true_labels), ("pred_labels", pred_labels)):
        if grid.shape != true_labels.shape:
            raise ValueError(f"{name} has shape {grid.shape}, expected {true_labels.shape} like true_labels")
    _check_grid(true_labels, image, patch_size)
    masked = image.copy()
    masked[_labels_image(patch_mask.astype(int), patch_size).astype(bool)] = 0.5
    shown_pred = np.where(patch_mask, pred_labels, true_labels)
    fig, axes = plt.subplots(1, 3, figsize=(6.2, 4.6))
    axes[0].imshow(masked)
    axes[0].set_title("masked input", fontsize=9)
    for ax, labels, name in ((axes[1], true_labels, "true labels"), (axes[2], shown_pred, "predicted (masked)")):
        ax.imshow(_labels_image(labels, patch_size), cmap=PART_CMAP, vmin=0, vmax=len(PART_CLASSES) - 1,
                  interpolation="nearest")
        ax.set_title(name, fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for r, c in zip(*np.nonzero(patch_mask)):
        colour = "limegreen" if pred_labels[r, c] == true_labels[r, c] else "red"
        for ax in axes[1:]:
            ax.add_patch(Rectangle((c * patch_size - 0.5, r * patch_size - 0.5), patch_size, patch_size,
                                   fill=False, edgecolor=colour, lw=1.6))
    part_legend(axes[2], np.unique(np.concatenate([true_labels.ravel(), shown_pred.ravel()])))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
