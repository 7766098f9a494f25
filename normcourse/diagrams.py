"""Block diagrams of the norm placements, drawn with matplotlib.

Each placement of :mod:`normcourse.blocks` is a column of operations from the
block input (bottom) to its output (top), plus skip connections that jump
over part of the column and land on an addition.  :func:`block_layout`
returns that structure as plain data (so it can be tested); :func:`draw_block`
draws one column; :func:`draw_blocks` draws several side by side.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from normcourse.blocks import PLACEMENTS
from normcourse.plots import COLUMN_WIDTH

__all__ = ["block_layout", "draw_block", "draw_blocks", "TITLES"]

TITLES = {
    "post": "Post-LN",
    "pre": "Pre-LN",
    "peri": "Peri-LN",
    "b2t": "B2T",
    "deepnorm": "DeepNorm",
    "none": "no norm",
}

# (kind, label): kind is "io" (block input/output), "op" (attention, MLP), "norm" or "add".
_NODES = {
    "post": ["x", "Attention", "+", "LN", "MLP", "+", "LN", "y"],
    "pre": ["x", "LN", "Attention", "+", "LN", "MLP", "+", "y"],
    "peri": ["x", "LN", "Attention", "LN", "+", "LN", "MLP", "LN", "+", "y"],
    "b2t": ["x", "Attention", "+", "LN", "MLP", "+", "LN", "y"],
    "deepnorm": ["x", "Attention", "+", "LN", "MLP", "+", "LN", "y"],
    "none": ["x", "Attention", "+", "MLP", "+", "y"],
}
# (from node, to node, label): the skip connections, each landing on a "+".
_SKIPS = {
    "post": [(0, 2, ""), (3, 5, "")],
    "pre": [(0, 3, ""), (3, 6, "")],
    "peri": [(0, 4, ""), (4, 8, "")],
    "b2t": [(0, 2, ""), (3, 5, ""), (0, 5, "B2T")],
    "deepnorm": [(0, 2, "×α"), (3, 5, "×α")],
    "none": [(0, 2, ""), (2, 4, "")],
}


def _kind(label: str) -> str:
    return {"x": "io", "y": "io", "+": "add", "LN": "norm"}.get(label, "op")


def block_layout(placement: str) -> tuple[list[tuple[str, str]], list[tuple[int, int, str]]]:
    """The nodes ``[(kind, label), ...]`` (input first) and skips ``[(src, dst, label)]``."""
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown placement {placement!r}; choose one of {', '.join(PLACEMENTS)}")
    nodes = [(_kind(lbl), lbl) for lbl in _NODES[placement]]
    return nodes, list(_SKIPS[placement])


_STYLE = {
    "io": dict(fc="white", ec="black"),
    "op": dict(fc="#cfe2f3", ec="#1f4e79"),
    "norm": dict(fc="#f9cb9c", ec="#b45f06"),
    "add": dict(fc="white", ec="black"),
}


def draw_block(placement: str, ax=None, title: str | None = None, fontsize: float = 9):
    """Draw one block, input at the bottom; returns the Axes."""
    nodes, skips = block_layout(placement)
    if ax is None:
        _, ax = plt.subplots(figsize=(2.2, 5))
    n = len(nodes)
    ys = [i * 1.0 for i in range(n)]
    for i, ((kind, label), y) in enumerate(zip(nodes, ys)):
        w = 0.35 if kind == "add" else (0.5 if kind in ("io", "norm") else 1.5)
        box = FancyBboxPatch((-w / 2, y - 0.25), w, 0.5,
                             boxstyle="circle,pad=0" if kind == "add" else "round,pad=0.05",
                             lw=1.2, **_STYLE[kind])
        if kind == "add":
            box = FancyBboxPatch((-0.17, y - 0.17), 0.34, 0.34, boxstyle="round,pad=0.02,rounding_size=0.17",
                                 lw=1.2, **_STYLE[kind])
        ax.add_patch(box)
        ax.text(0, y, label, ha="center", va="center", fontsize=fontsize,
                fontweight="bold" if kind == "norm" else "normal")
        if i + 1 < n:
            ax.add_patch(FancyArrowPatch((0, y + 0.27), (0, ys[i + 1] - 0.27),
                                         arrowstyle="-|>", mutation_scale=9, lw=1, color="black"))
    for k, (src, dst, label) in enumerate(skips):
        xo = 0.85 + 0.35 * k if label != "B2T" else -0.95
        y0, y1 = ys[src], ys[dst]
        side = 0.27 if xo > 0 else -0.27
        color = "#990000" if label == "B2T" else "#38761d"
        ax.plot([side, xo, xo], [y0, y0, y1], color=color, lw=1.2)
        ax.add_patch(FancyArrowPatch((xo, y1), (0.19 if xo > 0 else -0.19, y1), arrowstyle="-|>",
                                     mutation_scale=9, lw=1.2, color=color))
        if label:
            ax.text(xo + (0.05 if xo > 0 else -0.05), (y0 + y1) / 2, label, color=color,
                    fontsize=fontsize, ha="left" if xo > 0 else "right", va="center")
    ax.set_xlim(-1.6, 1.9)
    ax.set_ylim(-0.6, max(n, 10) - 0.4)  # one scale for every placement
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title or TITLES[placement], fontsize=fontsize + 1)
    return ax


def draw_blocks(placements=PLACEMENTS, figsize=None):
    """All ``placements`` side by side, with a legend of the box colours; returns the Figure."""
    placements = list(placements)
    # six blocks share the book's text column (1.25 inches each), so the
    # labels are set smaller than in a figure of one block
    fig, axes = plt.subplots(1, len(placements), layout="none",
                             figsize=figsize or (COLUMN_WIDTH, 4.6))
    axes = [axes] if len(placements) == 1 else list(axes)
    fig.subplots_adjust(left=0, right=1, bottom=0.09, top=0.9, wspace=0)
    for p, ax in zip(placements, axes):
        draw_block(p, ax, fontsize=7)
    handles = [FancyBboxPatch((0, 0), 1, 1, **_STYLE["op"]), FancyBboxPatch((0, 0), 1, 1, **_STYLE["norm"]),
               plt.Line2D([], [], color="#38761d"), plt.Line2D([], [], color="#990000")]
    fig.legend(handles, ["sub-layer (attention, MLP)", "LayerNorm", "residual skip", "B2T skip"],
               loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.suptitle("One transformer block per placement (input x at the bottom, output y at the top)",
                 fontsize=9)
    return fig
