"""Figures of patch importance: the class token's attention per layer, and the patches KPDM keeps.

Taught in ``04_kpdm_patch_importance_fmlm``.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from tireid_lite.viz.parts import PART_CMAP, PART_COLOURS, part_legend


def _check_maps(image: np.ndarray, grids: Sequence[np.ndarray], patch_size: int) -> tuple[int, int]:
    rows, cols = image.shape[0] // patch_size, image.shape[1] // patch_size
    for grid in grids:
        if np.asarray(grid).shape != (rows, cols):
            raise ValueError(
                f"a map has shape {np.asarray(grid).shape} but a {image.shape[0]}x{image.shape[1]} image has a "
                f"{rows}x{cols} grid of {patch_size}-pixel patches"
            )
    return rows, cols


def _finish(fig: Figure, axes, title: str) -> Figure:
    """Bare axes, the figure's title, a tight layout."""
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def show_attention_layers(
    image: np.ndarray, maps: Sequence[np.ndarray], titles: Sequence[str], patch_size: int, *, title: str = ""
) -> Figure:
    """The image, then one heat-map per (rows, cols) map laid over it (each scaled to its own maximum).

    One axis for the image and one per map; each map's axis holds the image
    and the upsampled map as its two images.
    """
    if len(maps) != len(titles):
        raise ValueError(f"{len(maps)} maps but {len(titles)} titles")
    _check_maps(image, maps, patch_size)
    fig, axes = plt.subplots(1, len(maps) + 1, figsize=(1.45 * (len(maps) + 1), 3.6))
    axes[0].imshow(image, interpolation="nearest")
    axes[0].set_title("image", fontsize=8)
    for ax, grid, name in zip(axes[1:], maps, titles):
        grid = np.asarray(grid, dtype=float)
        up = np.kron(grid / max(grid.max(), 1e-12), np.ones((patch_size, patch_size)))  # (H, W)
        ax.imshow(image, interpolation="nearest")
        ax.imshow(up, cmap="inferno", alpha=0.65, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=8)
    return _finish(fig, axes, title)


def show_kept_patches(
    image: np.ndarray, kept: np.ndarray, labels: np.ndarray, patch_size: int, *, title: str = ""
) -> Figure:
    """Kept patches over the image (dropped ones greyed) and over the part labels (kept ones framed).

    ``kept`` (rows, cols) bool; ``labels`` (rows, cols) part classes. Two axes
    (the second with a legend); kept patches are the second axis's rectangles.
    """
    kept = np.asarray(kept, dtype=bool)
    rows, cols = _check_maps(image, [kept, labels], patch_size)
    shade = np.kron(~kept, np.ones((patch_size, patch_size), dtype=bool))  # (H, W) dropped pixels
    dimmed = np.where(shade[..., None], 0.25 * image + 0.75 * 0.5, image)
    fig, axes = plt.subplots(1, 2, figsize=(4.8, 3.8))
    axes[0].imshow(dimmed, interpolation="nearest")
    axes[0].set_title("kept patches", fontsize=8)
    axes[1].imshow(np.kron(labels, np.ones((patch_size, patch_size), dtype=labels.dtype)), cmap=PART_CMAP,
                   vmin=0, vmax=len(PART_COLOURS) - 1, interpolation="nearest")
    axes[1].set_title("kept, over the part labels", fontsize=8)
    for r, c in zip(*np.nonzero(kept)):
        axes[1].add_patch(Rectangle((c * patch_size - 0.5, r * patch_size - 0.5), patch_size, patch_size,
                                    fill=False, ec="black", lw=1.2))
    part_legend(axes[1], sorted(set(np.unique(labels).tolist())))
    axes[0].legend(handles=[Patch(facecolor="white", edgecolor="0.4", label="kept (as drawn)"),
                            Patch(facecolor="0.55", edgecolor="0.4", label="dropped (greyed)")],
                   loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=7, frameon=False)
    return _finish(fig, axes, title)
