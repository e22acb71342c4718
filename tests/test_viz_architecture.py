"""The architecture figure reads the methods table it is given."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from tireid_lite.models.methods import METHODS  # noqa: E402
from tireid_lite.viz.architecture import plot_architecture  # noqa: E402


def test_the_figure_has_one_row_per_method_and_one_column_per_head():
    table = {method: [head.name for head in row] for method, row in METHODS.items()}
    fig = plot_architecture(table, highlight="kpdm")
    grid = fig.axes[1]
    assert [t.get_text() for t in grid.get_yticklabels()] == [m + ("  <" if m == "kpdm" else "") for m in table]
    assert len(grid.get_xticklabels()) == len({h for names in table.values() for h in names})
    plt.close(fig)
    with pytest.raises(ValueError, match="not one of the methods"):
        plot_architecture(table, highlight="parts")
