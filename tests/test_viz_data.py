"""Figures of the data notebook: the part overlay's pixels by hand, each figure's layout on tiny inputs."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tireid_lite.viz.data import (  # noqa: E402
    MATCH_EDGE,
    overlay_parts,
    part_palette,
    plot_attribute_counts,
    plot_caption_lengths,
    plot_counts,
    plot_rank_frequency,
    plot_similarity,
    show_noisy_pair,
    show_pairs,
    show_samples,
)

IMAGE = np.zeros((6, 2, 3), dtype=np.uint8)
PARTS = np.array([[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [0, 0]], dtype=np.uint8)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_palette_has_one_colour_per_part_class():
    palette = part_palette()
    assert palette.shape == (10, 3) and palette.dtype == np.uint8
    assert palette[0].tolist() == [0, 0, 0]  # background
    assert palette[1].tolist() == [0xE6, 0x19, 0x4B]  # hat, "#e6194b"
    assert len({tuple(c) for c in palette}) == 10


def test_overlay_blends_parts_and_leaves_background_alone():
    image = np.array([[[100, 15, 51], [100, 15, 51]]], dtype=np.uint8)  # (1, 2, 3)
    parts = np.array([[0, 1]])  # background, hat (230, 25, 75)
    out = overlay_parts(image, parts, alpha=0.5)
    assert out.dtype == np.uint8
    assert out[0, 0].tolist() == [100, 15, 51]
    assert out[0, 1].tolist() == [165, 20, 63]  # (100 + 230) / 2, (15 + 25) / 2, (51 + 75) / 2
    assert overlay_parts(image, parts, alpha=1.0)[0, 1].tolist() == [230, 25, 75]
    assert np.array_equal(overlay_parts(image, parts, alpha=0.0), image)


@pytest.mark.parametrize(
    ("image", "parts", "alpha", "message"),
    [
        (np.zeros((4, 2), np.uint8), np.zeros((4, 2), np.uint8), 0.5, "RGB"),
        (np.zeros((4, 2, 3), np.uint8), np.zeros((4, 3), np.uint8), 0.5, "same height and width"),
        (np.zeros((4, 2, 3), np.uint8), np.full((4, 2), 10, np.uint8), 0.5, "0 to 9"),
        (np.zeros((4, 2, 3), np.uint8), np.zeros((4, 2), np.uint8), 1.5, "outside"),
    ],
)
def test_overlay_refuses_bad_input(image, parts, alpha, message):
    with pytest.raises(ValueError, match=message):
        overlay_parts(image, parts, alpha=alpha)


def test_samples_have_three_axes_per_image_and_a_part_legend():
    fig = show_samples([IMAGE, IMAGE], [PARTS, PARTS], [["a man.", "a guy."], ["a woman."]], ["id 1", "id 2"])
    assert len(fig.axes) == 6
    texts = [t.get_text() for t in fig.axes[5].texts]
    assert texts == ["id 2\n1. a woman."]
    assert len(fig.legends[0].get_texts()) == 9  # every class but background
    with pytest.raises(ValueError, match="one of each per image"):
        show_samples([IMAGE], [PARTS, PARTS], [["x"]])


def test_counts_are_bars_largest_first_with_expected_dots():
    fig = plot_counts({"b": 3, "a": 5, "c": 1}, expected={"a": 4.0, "b": 3.0, "c": 2.0})
    (ax,) = fig.axes
    assert [p.get_width() for p in ax.patches] == [5.0, 3.0, 1.0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert ax.collections[-1].get_offsets()[:, 0].tolist() == [4.0, 3.0, 2.0]
    fig = plot_counts({"b": 3, "a": 5, "c": 1}, top=2)
    assert [p.get_width() for p in fig.axes[0].patches] == [5.0, 3.0]
    fig = plot_counts({"b": 3, "a": 5}, keep_order=True)
    assert [p.get_width() for p in fig.axes[0].patches] == [3.0, 5.0]
    with pytest.raises(ValueError, match="one per label"):
        plot_counts({"a": 1}, expected={"b": 1.0})


def test_attribute_panels_count_values_with_none_as_missing():
    records = [
        {"hat": "cap", "bag": None, "top": "coat", "shoes": "red"},
        {"hat": "cap", "bag": "backpack", "top": "coat", "shoes": "red"},
        {"hat": None, "bag": None, "top": "shirt", "shoes": "blue"},
    ]
    fig = plot_attribute_counts(records, ["hat", "bag", "top", "shoes"], ncols=3)
    assert len(fig.axes) == 4  # the empty fifth and sixth cells are removed
    bag = fig.axes[1]
    assert [t.get_text() for t in bag.get_yticklabels()] == ["none", "backpack"]
    assert [p.get_width() for p in bag.patches] == [2.0, 1.0]
    with pytest.raises(ValueError, match="no attribute 'colour'"):
        plot_attribute_counts(records, ["colour"])


def test_rank_frequency_is_one_log_log_axis():
    fig = plot_rank_frequency({"the": 10, "a": 20, "red": 1}, label=2)
    (ax,) = fig.axes
    assert ax.get_xscale() == ax.get_yscale() == "log"
    line = ax.get_lines()[0]
    assert line.get_xdata().tolist() == [1, 2, 3]
    assert line.get_ydata().tolist() == [20.0, 10.0, 1.0]
    assert [t.get_text() for t in ax.texts] == ["a", "the"]


def test_caption_lengths_mark_each_mean_and_the_reference():
    fig = plot_caption_lengths({"train": [10, 20, 30], "test": [16, 18]}, reference=23.5, reference_label="CUHK")
    (ax,) = fig.axes
    vertical = sorted(line.get_xdata()[0] for line in ax.get_lines())
    assert vertical == [17.0, 20.0, 23.5]  # means (16 + 18) / 2, (10 + 20 + 30) / 3, the reference
    with pytest.raises(ValueError, match="no caption lengths"):
        plot_caption_lengths({"train": []})


def test_pairs_have_two_axes_each():
    fig = show_pairs([IMAGE] * 3, [IMAGE] * 3, ["cap", "left", "red"], ["none", "right", "blue"],
                     ["hat", "bag_side", "shoe_colour"], ncols=2)
    assert len(fig.axes) == 6
    assert [ax.get_xlabel() for ax in fig.axes[:2]] == ["cap", "none"]
    assert fig.axes[0].get_title(loc="left") == "hat"
    with pytest.raises(ValueError, match="one of each per pair"):
        show_pairs([IMAGE], [IMAGE], ["a"], ["b"], [])


def test_noisy_pair_has_two_or_three_panels():
    assert len(show_noisy_pair(IMAGE, "own caption", "other caption").axes) == 2
    fig = show_noisy_pair(IMAGE, "own caption", "other caption", source_image=IMAGE)
    assert len(fig.axes) == 3
    assert [ax.get_xlabel() for ax in fig.axes] == ["own caption", "other caption", "other caption"]


def test_similarity_heatmap_frames_every_match():
    sim = np.array([[0.9, 0.1, 0.3], [0.2, 0.8, 0.4]])
    fig = plot_similarity(sim, [1, 2], [1, 2, 1])
    (ax,) = fig.axes
    framed = [p for p in ax.patches if matplotlib.colors.to_hex(p.get_edgecolor()) == MATCH_EDGE]
    assert sorted((p.get_x(), p.get_y()) for p in framed) == [(0, 0), (1, 1), (2, 0)]  # (column, row) of id matches
    assert [t.get_text() for t in ax.texts] == ["0.90", "0.10", "0.30", "0.20", "0.80", "0.40"]
    with pytest.raises(ValueError, match="one identity per row"):
        plot_similarity(sim, [1], [1, 2, 1])
