"""Diagrams of chapters 13 and 14's blocks, in the style of :mod:`normcourse.diagrams`.

- :func:`draw_qk_norm_attention`: one attention head with QK-norm, the norms
  on q and k *before* the dot product.
- :func:`draw_frontier_blocks`: the reordered (OLMo 2) block between Pre-LN
  and Peri-LN, or nGPT's block, as columns from input to output.
- :func:`draw_streams`: n residual streams with hyper-connections: the
  mixing matrix H_res, the read map H_pre into the sub-layer and the write
  map H_post back into every stream.

:func:`column_layout` returns a column's structure as data, so it can be tested.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from normcourse.diagrams import _STYLE, draw_block

__all__ = ["column_layout", "draw_column", "draw_frontier_blocks",
           "draw_qk_norm_attention", "draw_streams", "COLUMNS"]

_NORMS = ("LN", "RMSNorm", "Norm")   # labels drawn as norm boxes
_BLEND = "lerp α"                    # nGPT's step towards the branch output

# Each column: its nodes from input to output, and its skips (from, to, label).
COLUMNS = {
    "reordered": (["x", "Attention", "LN", "+", "MLP", "LN", "+", "y"],
                  [(0, 3, ""), (3, 6, "")]),
    "ngpt": (["x", "Attention", "Norm", _BLEND, "Norm", "MLP", "Norm", _BLEND, "Norm",
              "y"],
             [(0, 3, "h"), (4, 7, "h")]),
}
TITLES = {"reordered": "Reordered (OLMo 2)", "ngpt": "nGPT"}


def _kind(label: str) -> str:
    if label in ("x", "y"):
        return "io"
    if label in ("+", _BLEND):
        return "add"
    return "norm" if label in _NORMS else "op"


def column_layout(name: str):
    """The nodes ``[(kind, label), ...]`` and skips ``[(src, dst, label)]`` of a column."""
    if name not in COLUMNS:
        raise ValueError(f"unknown column {name!r}; choose one of {', '.join(COLUMNS)}")
    labels, skips = COLUMNS[name]
    return [(_kind(lbl), lbl) for lbl in labels], list(skips)


def _box(ax, x, y, kind, label, width=None):
    w = width or {"add": 0.34, "io": 0.5, "norm": 0.9}.get(kind, 1.25)
    if kind == "add" and label == "+":
        patch = FancyBboxPatch((x - 0.17, y - 0.17), 0.34, 0.34,
                               boxstyle="round,pad=0.02,rounding_size=0.17", lw=1.2,
                               **_STYLE[kind])
    else:
        w = max(w, 0.9) if label == _BLEND else w
        patch = FancyBboxPatch((x - w / 2, y - 0.25), w, 0.5, boxstyle="round,pad=0.05",
                               lw=1.2, **_STYLE[kind])
    ax.add_patch(patch)
    ax.text(x, y, label, ha="center", va="center", fontsize=8.5,
            fontweight="bold" if kind == "norm" else "normal")


def _arrow(ax, a, b, color="black"):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=9, lw=1,
                                 color=color))


def draw_column(name: str, ax=None, title: str | None = None):
    """Draw one of :data:`COLUMNS`, input at the bottom; returns the Axes."""
    nodes, skips = column_layout(name)
    if ax is None:
        _, ax = plt.subplots(figsize=(2.2, 5))
    for i, (kind, label) in enumerate(nodes):
        _box(ax, 0, i, kind, label)
        if i + 1 < len(nodes):
            _arrow(ax, (0, i + 0.27), (0, i + 1 - 0.27))
    for k, (src, dst, label) in enumerate(skips):
        xo = 0.85 + 0.35 * k
        ax.plot([0.27, xo, xo], [src, src, dst], color="#38761d", lw=1.2)
        _arrow(ax, (xo, dst), (0.45 if nodes[dst][1] == _BLEND else 0.19, dst),
               color="#38761d")
        if label:
            ax.text(xo + 0.05, (src + dst) / 2, label, color="#38761d", fontsize=9,
                    ha="left", va="center")
    ax.set_xlim(-1.6, 1.9)
    ax.set_ylim(-0.6, max(len(nodes), 10) - 0.4)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title or TITLES[name], fontsize=10)
    return ax


def draw_frontier_blocks(names=("pre", "reordered", "peri"), figsize=None):
    """Columns side by side: the names of :data:`COLUMNS` and chapter 8's placements."""
    names = list(names)
    fig, axes = plt.subplots(1, len(names), figsize=figsize or (2.3 * len(names), 5.2))
    axes = [axes] if len(names) == 1 else list(axes)
    for name, ax in zip(names, axes):
        if name in COLUMNS:
            draw_column(name, ax)
        else:
            draw_block(name, ax)
    handles = [FancyBboxPatch((0, 0), 1, 1, **_STYLE["op"]),
               FancyBboxPatch((0, 0), 1, 1, **_STYLE["norm"]),
               plt.Line2D([], [], color="#38761d")]
    fig.legend(handles, ["sub-layer", "norm", "residual skip"], loc="lower center",
               ncol=3, fontsize=8, frameon=False)
    fig.suptitle("Blocks from input x (bottom) to output y (top)", fontsize=11)
    return fig


def draw_qk_norm_attention(ax=None):
    """One attention head with QK-norm: RMSNorm on q and on k, then q k^T / sqrt(d)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.2, 4.6))
    cols = {"q": -1.6, "k": 0.0, "v": 1.6}
    for name, x in cols.items():
        _box(ax, x, 0, "op", f"W_{name} x", width=0.9)
        if name == "v":
            _arrow(ax, (x, 0.27), (1.0, 3.83))
            continue
        _box(ax, x, 1.2, "norm", f"RMSNorm_{name}", width=1.3)
        _arrow(ax, (x, 0.27), (x, 0.93))
        _arrow(ax, (x, 1.47), (-0.8 + 0.5 * (x > -1), 2.15))
    _box(ax, -0.8, 2.4, "op", "q̂ k̂ᵀ / √d", width=1.5)
    _box(ax, -0.8, 3.2, "op", "softmax", width=1.2)
    _arrow(ax, (-0.8, 2.67), (-0.8, 2.93))
    _arrow(ax, (-0.8, 3.47), (0.3, 3.9))
    _box(ax, 0.4, 4.1, "op", "weights · v", width=1.4)
    ax.text(-3.0, 1.2, "per head,\nover head_dim", fontsize=8, ha="center", va="center",
            color="#b45f06")
    ax.text(-3.0, 2.4, "|logit| ≤ √d ·\nmax|γ_q| max|γ_k|", fontsize=8,
            ha="center", va="center")
    ax.set_xlim(-3.8, 2.4)
    ax.set_ylim(-0.5, 4.6)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title("Attention with QK-norm: the norms sit before the dot product",
                 fontsize=10)
    return ax


def draw_streams(n: int = 4, ax=None, constrained: bool = True):
    """One layer of hyper-connections over ``n`` streams (mHC when ``constrained``)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.2))
    xs = [i * 0.9 for i in range(n)]
    mid = sum(xs) / n
    for x in xs:
        ax.plot([x, x], [0, 0.75], color="#38761d", lw=1.4)
        ax.plot([x, x], [1.45, 3.6], color="#38761d", lw=1.4)
        _arrow(ax, (x, 3.35), (x, 3.75), color="#38761d")
        ax.text(x, -0.25, f"x{xs.index(x) + 1}", ha="center", fontsize=8.5)
    label = "H_res (doubly stochastic,\nSinkhorn-Knopp)" if constrained else "H_res (free)"
    ax.add_patch(FancyBboxPatch((-0.3, 0.75), xs[-1] + 0.6, 0.7, boxstyle="round,pad=0.05",
                                lw=1.2, **_STYLE["norm" if constrained else "op"]))
    ax.text(mid, 1.1, label, ha="center", va="center", fontsize=8.5)
    branch_x = xs[-1] + 1.9
    _box(ax, branch_x, 1.1, "op", "H_pre: read", width=1.3)
    _box(ax, branch_x, 2.2, "op", "Norm, F (attn/MLP)", width=1.7)
    _box(ax, branch_x, 3.2, "op", "H_post: write", width=1.3)
    _arrow(ax, (branch_x, 1.37), (branch_x, 1.93))
    _arrow(ax, (branch_x, 2.47), (branch_x, 2.93))
    for x in xs:
        ax.plot([x, branch_x - 0.65], [0.4, 0.9], color="#999999", lw=0.7)
        _arrow(ax, (branch_x - 0.65, 3.2), (x + 0.05, 3.05), color="#999999")
    ax.set_xlim(-0.8, branch_x + 1.2)
    ax.set_ylim(-0.5, 4.0)
    ax.set_aspect("equal")
    ax.axis("off")
    kind = "mHC" if constrained else "hyper-connections"
    ax.set_title(f"One layer of {kind}: {n} streams, mixed, read and written", fontsize=10)
    return ax
