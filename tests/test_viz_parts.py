"""Part-map figures: the patch labels and the MIM predictions are drawn where they belong."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tireid_lite.viz.parts import show_mim_prediction, show_patch_labels  # noqa: E402


def _image():
    return np.zeros((16, 8, 3))


def test_patch_labels_are_drawn_one_block_per_patch():
    part_map = np.zeros((16, 8), dtype=np.uint8)
    part_map[8:] = 4
    labels = np.array([[0], [4]])
    fig = show_patch_labels(_image(), part_map, labels, 8)
    drawn = fig.axes[2].images[0].get_array()
    np.testing.assert_array_equal(np.asarray(drawn), np.repeat(labels, 8, axis=0).repeat(8, axis=1))
    legend = [t.get_text() for t in fig.axes[2].get_legend().get_texts()]
    assert legend == ["background", "upper_clothes"]
    plt.close(fig)


def test_mim_prediction_outlines_right_green_and_wrong_red():
    mask = np.array([[True], [True]])
    fig = show_mim_prediction(_image(), mask, np.array([[2], [4]]), np.array([[2], [5]]), 8)
    edges = [tuple(p.get_edgecolor()[:3]) for p in fig.axes[1].patches]
    assert edges == [matplotlib.colors.to_rgb("limegreen"), matplotlib.colors.to_rgb("red")]
    masked_input = fig.axes[0].images[0].get_array()
    assert np.allclose(masked_input, 0.5)  # both patches greyed
    plt.close(fig)


def test_a_label_grid_of_the_wrong_size_names_both_sizes():
    with pytest.raises(ValueError, match=r"labels have shape \(1, 1\) but a 16x8 image has a 2x1 grid"):
        show_patch_labels(_image(), np.zeros((16, 8)), np.zeros((1, 1)), 8)
