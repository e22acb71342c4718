"""The architecture at a glance: two towers, the global features, the cross-modal module, the heads.

:func:`plot_architecture` draws the model every method of the course shares
and, beside it, which heads each method uses. The method rows are the kit's
own table (:data:`tireid_lite.models.methods.METHODS`, passed in as
``{method: [head names]}``), so the figure cannot drift from the code. Drawn
in ``00_welcome`` and again where a method is introduced, with that method's
heads highlighted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

# What each head computes, in a few words, and the loss it adds (keys: Head.name).
HEAD_NOTES: dict[str, tuple[str, str]] = {
    "sdm": ("global alignment", "SDM (IRRA)"),
    "id": ("identity classifier", "ID"),
    "mlm": ("masked words read from the image", "MLM (IRRA)"),
    "mim": ("masked patches read from the caption", "MIM (BiLMa)"),
    "tal": ("global + token-selection\nembeddings", "TAL (RDE)"),
    "kpdm_mlm": ("masked key phrases from\nthe kept patches", "FMLM (KPDM)"),
    "global": ("SDM + reverse KL + identity CE", "global (CADA)"),
    "atp": ("token-patch association, ITM, re-ranking", "ATP (CADA)"),
    "ara": ("masked attributes read from the image", "ARA (CADA)"),
    "part": ("K part queries, commonality margins", "parts (Park et al.)"),
}


CROSS_HEADS = ("mlm", "mim", "kpdm_mlm", "atp", "ara", "part")  # heads that go through the cross-modal module


def _box(ax, x, y, w, h, text, colour, bold=False):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02", facecolor=colour, edgecolor="0.3"))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=7.5,
            fontweight="bold" if bold else "normal")


def _arrow(ax, start, end):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=10, color="0.35", lw=1))


def plot_architecture(method_heads: Mapping[str, Sequence[str]], highlight: str | None = None) -> Figure:
    """The shared model (left) and which heads each method uses (right); ``highlight`` marks one method."""
    if highlight is not None and highlight not in method_heads:
        raise ValueError(f"highlight={highlight!r} is not one of the methods {list(method_heads)}")
    heads = list(dict.fromkeys(name for names in method_heads.values() for name in names))
    heads.sort(key=lambda name: name in CROSS_HEADS)  # heads on the global features first, then cross-modal ones
    fig, (ax, table) = plt.subplots(1, 2, figsize=(13, max(4.4, 0.55 * len(heads))), gridspec_kw={"width_ratios": [1.8, 1]})
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 6)
    ax.axis("off")
    _box(ax, 0.1, 4.2, 2.2, 1.2, "image tower\n(ViT, patches)", "#cfe2f3", bold=True)
    _box(ax, 0.1, 0.6, 2.2, 1.2, "text tower\n(caption tokens)", "#d9ead3", bold=True)
    _box(ax, 3.0, 4.4, 2.0, 0.8, "global image\nfeature", "#eeeeee")
    _box(ax, 3.0, 0.8, 2.0, 0.8, "global text\nfeature", "#eeeeee")
    _box(ax, 3.0, 2.5, 2.0, 1.0, "cross-modal\nmodule", "#fce5cd")
    for start, end in (((2.3, 4.8), (3.0, 4.8)), ((2.3, 1.2), (3.0, 1.2)), ((2.3, 4.4), (3.0, 3.3)),
                       ((2.3, 1.6), (3.0, 2.7))):
        _arrow(ax, start, end)
    _box(ax, 5.3, 4.0, 0.01, 0.01, "", "0.3")  # where both global features meet
    _arrow(ax, (5.0, 4.8), (5.3, 4.0))
    _arrow(ax, (5.0, 1.2), (5.3, 4.0))
    step = 5.6 / max(len(heads), 1)
    for i, name in enumerate(heads):
        y = 5.6 - (i + 0.5) * step
        what, loss = HEAD_NOTES.get(name, (name, name))
        active = highlight is not None and name in method_heads[highlight]
        _box(ax, 6.0, y - 0.38, 3.9, 0.76, f"{loss}\n{what.replace(chr(10), ' ')}", "#fff2cc" if active else "#f7f7f7",
             bold=active)
        _arrow(ax, (5.0, 3.0) if name in CROSS_HEADS else (5.31, 4.0), (6.0, y))
    ax.set_title("one model: two towers, global features, heads (each head one loss)", fontsize=10)
    table.set_xlim(-0.5, len(heads) - 0.5)
    table.set_ylim(len(method_heads) - 0.5, -0.5)
    for row, (method, names) in enumerate(method_heads.items()):
        for col, name in enumerate(heads):
            used = name in names
            table.scatter(col, row, s=160 if used else 25, color="tab:orange" if used else "0.85",
                          edgecolor="0.3" if method == highlight else "none", linewidth=1.5)
    table.set_xticks(range(len(heads)), [HEAD_NOTES.get(h, (h, h))[1] for h in heads], rotation=35, ha="right",
                     fontsize=8)
    table.set_yticks(range(len(method_heads)),
                     [f"{m}  <" if m == highlight else m for m in method_heads], fontsize=9)
    table.set_title("which heads each method uses (the kit's methods table)", fontsize=10)
    for side in ("top", "right"):
        table.spines[side].set_visible(False)
    fig.tight_layout()
    return fig
