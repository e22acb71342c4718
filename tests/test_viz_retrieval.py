"""Ranked-gallery figures: layout, frames and argument checks."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tireid_lite.viz.retrieval import CORRECT, WRONG, show_ranking, show_rankings  # noqa: E402

IMAGES = [np.full((6, 2, 3), v, dtype=np.uint8) for v in (0, 100, 200)]


def frame_colours(ax) -> list[str]:
    return [matplotlib.colors.to_hex(p.get_edgecolor()) for p in ax.patches]


def test_one_query_row_frames_matches_green_and_others_red():
    fig = show_ranking("a man in a red coat", IMAGES, [True, False, True], [0.9, 0.5, 0.25], title="demo")
    axes = fig.axes
    assert len(axes) == 4
    assert [frame_colours(ax) for ax in axes[1:]] == [[CORRECT], [WRONG], [CORRECT]]
    assert axes[2].get_xlabel() == "#2\n0.50"
    assert fig._suptitle.get_text() == "demo"
    plt.close(fig)


def test_several_queries_share_one_grid():
    fig = show_rankings(["q1", "q2"], [IMAGES, IMAGES[:2]], [[True, False, False], [False, True]])
    assert len(fig.axes) == 2 * 4
    plt.close(fig)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="one flag per image"):
        show_ranking("q", IMAGES, [True])
    with pytest.raises(ValueError, match="one score per image"):
        show_ranking("q", IMAGES, [True] * 3, [0.1])
