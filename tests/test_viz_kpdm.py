"""KPDM's figures: parse arcs, masked tokens, FMLM weights, attention maps, kept patches, noisy pairs."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from tireid_lite.viz.attention import show_attention_layers, show_kept_patches  # noqa: E402
from tireid_lite.viz.noise import plot_detection, plot_identity_similarities, plot_similarity_histograms  # noqa: E402
from tireid_lite.viz.text import plot_budget, plot_fmlm_weights, plot_parse, show_masks  # noqa: E402


def test_parse_draws_one_box_per_word_and_one_arc_label_per_dependent():
    fig = plot_parse(["a", "red", "coat"], ["DET", "ADJ", "NOUN"], ["det", "amod", "ROOT"], [2, 2, 2], highlight=[1, 2])
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts[:6] == ["a", "DET", "red", "ADJ", "coat", "NOUN"]
    assert {"det", "amod", "ROOT"} <= set(texts)
    shaded = [p.get_facecolor() for p in ax.patches]
    assert shaded[0] != shaded[1] and shaded[1] == shaded[2]
    plt.close(fig)
    with pytest.raises(ValueError, match="heads \\[5\\] are not word indices"):
        plot_parse(["a"], ["DET"], ["ROOT"], [5])


def test_masks_grid_holds_the_draws():
    rows = [[True, False, False], [False, True, True]]
    fig = show_masks(["a", "red", "coat"], rows, ["random", "phrase"], phrase=[False, True, True])
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), np.array(rows, dtype=float))
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["random", "phrase"]
    plt.close(fig)
    with pytest.raises(ValueError, match="rows must be"):
        show_masks(["a"], rows, ["x", "y"])


def test_budget_and_fmlm_figures_plot_the_given_points():
    fig = plot_budget([1.0, 2.0], [[1.0, 2.1], [0.9, 2.0]])
    offsets = [c.get_offsets() for c in fig.axes[0].collections]
    np.testing.assert_allclose(offsets[1], [[1.0, 0.9], [2.0, 2.0]])
    plt.close(fig)
    fig = plot_fmlm_weights([1, 10, 100], [3.0, 1.0, 0.3], annotate={"the": (100, 0.3)})
    assert fig.axes[0].texts[0].get_text() == "the" and fig.axes[0].get_xscale() == "log"
    plt.close(fig)


def test_attention_layers_and_kept_patches():
    image = np.zeros((16, 8, 3))
    maps = [np.array([[0.0], [2.0]]), np.array([[1.0], [1.0]])]
    fig = show_attention_layers(image, maps, ["layer 1", "layer 2"], 8)
    assert len(fig.axes) == 3
    np.testing.assert_allclose(fig.axes[1].images[1].get_array()[:, 0], [0] * 8 + [1] * 8)
    plt.close(fig)
    fig = show_kept_patches(image, np.array([[True], [False]]), np.array([[0], [4]]), 8)
    frames = [p for p in fig.axes[1].patches]
    assert len(frames) == 1 and frames[0].get_xy() == (-0.5, -0.5)
    plt.close(fig)
    with pytest.raises(ValueError, match="2x1 grid"):
        show_kept_patches(image, np.ones((3, 1), dtype=bool), np.zeros((3, 1), dtype=int), 8)


def test_noise_figures_split_clean_and_noisy_pairs():
    sims = np.array([0.9, 0.8, 0.1, 0.7])
    noisy = np.array([False, False, True, False])
    fig = plot_similarity_histograms({"global": sims}, noisy, bins=4)
    heights = [sum(p.get_height() for p in container) for container in fig.axes[0].containers]
    assert heights == [3, 1]
    plt.close(fig)
    fig = plot_identity_similarities(sims, [0, 0, 1, 1], noisy, [0, 1])
    colours = [c.get_facecolors() for c in fig.axes[0].collections]
    assert len(colours) == 2 and len(colours[1]) == 2
    plt.close(fig)
    records = pd.DataFrame({"partitioner": ["ccd", "ccd", "tcp", "tcp"], "epoch": [2, 3, 2, 3],
                            "precision": [0.5, 0.6, 0.9, 0.9], "recall": [0.8, 0.8, 0.2, 0.3], "f1": [0.6, 0.7, 0.3, 0.45]})
    fig = plot_detection(records)
    lines = fig.axes[2].get_lines()
    np.testing.assert_allclose(lines[1].get_ydata(), [0.3, 0.45])
    plt.close(fig)
    with pytest.raises(ValueError, match="noisy has 2 flags for 4 pairs"):
        plot_similarity_histograms({"global": sims}, noisy[:2])
