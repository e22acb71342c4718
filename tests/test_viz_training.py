"""Training figures: targets, loss curves, similarity blocks."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from tireid_lite.viz.training import (  # noqa: E402
    plot_similarity_blocks,
    plot_target_distributions,
    plot_training_log,
    plot_warm_start,
)


def test_targets_spread_over_same_identity():
    fig = plot_target_distributions([3, 3, 5])
    infonce, sdm = fig.axes[:2]
    values = [float(t.get_text()) for t in sdm.texts]  # row-major annotations
    assert values == pytest.approx([0.5, 0.5, 0, 0.5, 0.5, 0, 0, 0, 1])
    assert [float(t.get_text()) for t in infonce.texts] == [1, 0, 0, 0, 1, 0, 0, 0, 1]
    plt.close(fig)


def test_training_log_draws_each_present_loss():
    log = pd.DataFrame({"epoch": [1, 1, 2], "step": [10, 20, 30], "loss": [3, 2, 1], "sdm": [2, 1.5, 0.8],
                        "id": [1, 0.5, 0.2]})
    fig = plot_training_log(log, [{"epoch": 1, "R1": 5.0, "mAP": 6.0}, {"epoch": 2, "R1": 9.0, "mAP": 8.0}])
    left, right = fig.axes
    assert [line.get_label() for line in left.lines] == ["loss", "sdm", "id"]
    assert [line.get_label() for line in right.lines] == ["val R1", "val mAP"]
    plt.close(fig)


def test_similarity_blocks_outline_matches_and_check_shape():
    q, g = [0, 1], [0, 0, 1]
    fig = plot_similarity_blocks(np.arange(6).reshape(2, 3) / 6, q, g)
    ax = fig.axes[0]
    assert len(ax.patches) == 3  # (q0, g0), (q0, g1), (q1, g2)
    plt.close(fig)
    with pytest.raises(ValueError, match="2 queries and 2 images"):
        plot_similarity_blocks(np.zeros((2, 3)), q, [0, 1])


def test_warm_start_figure_shows_curves_and_one_bar_per_attribute_and_modality():
    log = [{"step": 50, "loss": 3.0, "image_acc": 0.4, "text_acc": 0.5},
           {"step": 100, "loss": 2.0, "image_acc": 0.6, "text_acc": 0.7}]
    val = {"image": {"gender": 0.9, "top_colour": 0.5}, "text": {"gender": 0.8, "top_colour": 0.75}}
    fig = plot_warm_start(log, val)
    left, middle, right = fig.axes
    assert list(left.lines[0].get_ydata()) == [3.0, 2.0]
    assert [list(line.get_ydata()) for line in middle.lines] == [[40.0, 60.0], [50.0, 70.0]]
    heights = sorted(round(p.get_height(), 6) for p in right.patches if p.get_height() > 0)
    assert heights == [50.0, 75.0, 80.0, 90.0]
    plt.close(fig)


def test_warm_start_figure_refuses_a_log_without_accuracies():
    with pytest.raises(ValueError, match="step, loss, image_acc and text_acc"):
        plot_warm_start([{"step": 1, "loss": 2.0}], {"image": {}, "text": {}})
