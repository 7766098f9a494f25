"""Figures for the book: one style, column-sized panels, one call per plot.

Importing this module applies :data:`BOOK_STYLE` (see :func:`use_book_style`):
figures are rendered at 200 dpi, so they stay sharp on high-resolution
screens, with the book's font sizes.  Every chapter imports from here, so the
style is set in this one place.  (The layout engine is left alone: code that
calls ``tight_layout`` keeps working; :func:`panels` uses constrained layout.)

Layout, sized for the book's text column (:data:`COLUMN_WIDTH` inches):

- :func:`panels`: ``n`` axes, at most two side by side, stacked beyond that.
- :func:`integer_layers`: layer numbers on an axis are whole numbers.
- :func:`distinct_styles`: a (colour, line style) per line, all different,
  for plots with more lines than the colour cycle has colours.

Plots (each returns the Axes it drew on, titled and labelled):

- :func:`layer_histograms`: makemore-part-3 style overlaid histograms of each
  layer's outputs (or of each parameter's gradients).
- :func:`update_ratio_plot`: log10 update:data ratio of every weight matrix
  over training steps, with the 1e-3 guide line.
- :func:`depth_lines`: a statistic across depth, one line per key (a step,
  a run, a placement).
- :func:`step_heatmap`: a statistic over (step, layer).
- :func:`annotated_heatmap`: a small grid of values with a text in each cell.
"""

from __future__ import annotations

import itertools
import math

import matplotlib as mpl
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

# The book's text column is about 770 CSS pixels; at 100 px per inch a
# 7.5-inch figure fills it without being shrunk, so its text keeps the size
# it was set in.  200 dpi gives retina screens two pixels per CSS pixel.
COLUMN_WIDTH = 7.5
BOOK_STYLE = {
    "figure.dpi": 200,
    "savefig.dpi": 200,
    "figure.figsize": (COLUMN_WIDTH, 3.6),
    "font.size": 9,
    "axes.titlesize": 10,
    "legend.fontsize": 8,
}
LINE_STYLES = ("-", "--", ":", "-.")


def use_book_style() -> None:
    """Apply :data:`BOOK_STYLE` to matplotlib (done once, on import)."""
    mpl.rcParams.update(BOOK_STYLE)


use_book_style()


def panels(n: int, height: float = 3.0, ncols: int | None = None, **kwargs):
    """A figure of ``n`` axes that fits the text column: ``(fig, axes)``.

    At most two panels sit side by side (``ncols`` overrides); more are
    stacked in rows.  ``height`` is the height of one row in inches.
    ``axes`` is a flat list of the ``n`` axes; ``kwargs`` go to
    ``plt.subplots`` (``sharey=True``...).
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    ncols = ncols or min(n, 2)
    nrows = math.ceil(n / ncols)
    kwargs.setdefault("layout", "constrained")
    fig, grid = plt.subplots(nrows, ncols, squeeze=False,
                             figsize=(COLUMN_WIDTH, height * nrows), **kwargs)
    axes = list(grid.flat)
    for extra in axes[n:]:
        extra.remove()
    return fig, axes[:n]


def integer_layers(ax, n_layer: int | None = None, axis: str = "x"):
    """Whole-number ticks on a layer axis (no "layer 1.5", no "layer 0").

    With ``n_layer``, the axis spans layers 1 to ``n_layer``, every layer
    ticked up to 12 layers.
    """
    which = getattr(ax, f"{axis}axis")
    if n_layer is not None:
        getattr(ax, f"set_{axis}lim")(0.5, n_layer + 0.5)
    if n_layer is not None and n_layer <= 12:
        getattr(ax, f"set_{axis}ticks")(range(1, n_layer + 1))
    else:
        which.set_major_locator(MaxNLocator(integer=True))
    return ax


def distinct_styles(n: int) -> list[dict]:
    """``n`` line styles, no two alike: the colour cycle, then dashed, ...

    Each is a dict of ``color`` and ``linestyle`` for ``ax.plot``.
    """
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    pairs = itertools.product(LINE_STYLES, colors)
    styles = [{"color": c, "linestyle": s} for s, c in itertools.islice(pairs, n)]
    if len(styles) < n:
        raise ValueError(f"at most {len(LINE_STYLES) * len(colors)} distinct "
                         f"line styles, asked for {n}")
    return styles


def _axes(ax, figsize=(COLUMN_WIDTH, 3.6)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def layer_histograms(diag, source: str = "activations", bins: int = 60,
                     ax=None, title=None):
    """Overlaid histograms of each hooked layer's outputs (``source='activations'``)
    or of each weight matrix's gradient (``source='gradients'``)."""
    ax = _axes(ax)
    values = diag.activations if source == "activations" else \
        {n: v for n, v in diag.gradients.items() if "weight" in n}
    for name, v in values.items():
        v = v.float()
        lo, hi = v.min().item(), v.max().item()
        hist = v.histc(bins=bins, min=lo, max=hi)
        centres = [lo + (hi - lo) * (i + 0.5) / bins for i in range(bins)]
        ax.plot(centres, (hist / hist.sum()).tolist(),
                label=f"{name} (mean {v.mean():+.2g}, std {v.std():.2g})")
    ax.set_title(title or f"{source} distribution per layer (step {diag.step})")
    # gradients are ~1e-3: few ticks, with the power of ten written once
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 4))
    ax.set_xlabel("value")
    ax.set_ylabel("fraction of entries")
    ax.legend(fontsize="x-small")
    return ax


def update_ratio_plot(diag, ax=None, matrices_only: bool = True, title=None,
                      legend: bool = True):
    """log10(update:data ratio) per parameter over steps; ~-3 is Karpathy's rule of thumb.

    Every parameter gets its own (colour, line style), so a legend of more
    entries than the colour cycle has colours still tells them apart.
    """
    ax = _axes(ax)
    rows = diag.rows("update")
    names = list(dict.fromkeys(r["name"] for r in rows
                               if not matrices_only or r["ndim"] == 2))
    for name, style in zip(names, distinct_styles(len(names))):
        pts = [(r["step"], r["update_data_ratio"]) for r in rows if r["name"] == name]
        ax.plot([s for s, _ in pts], [math.log10(max(v, 1e-20)) for _, v in pts],
                label=name, **style)
    ax.axhline(-3, color="k", ls="--", lw=1, label="1e-3 guide")
    ax.set_title(title or "update:data ratio per parameter")
    ax.set_xlabel("step")
    ax.set_ylabel("log10(std(update) / std(weight))")
    if legend:
        ax.legend(fontsize="xx-small", ncol=2)
    return ax


def depth_lines(series: dict, ax=None, ylabel="value", title="statistic across depth",
                logy=False, legend: bool | dict = True, **line_kwargs):
    """One line per key of ``series`` (label -> list of per-layer values), layers on x.

    ``line_kwargs`` go to every ``ax.plot`` (``marker="."``, ``ls="--"``...);
    ``legend`` is True, False or the keyword arguments of ``ax.legend``.
    """
    ax = _axes(ax)
    line_kwargs = {"marker": "o", "ms": 3, **line_kwargs}
    for label, values in series.items():
        ax.plot(range(1, len(values) + 1), values, label=str(label), **line_kwargs)
    if logy:
        ax.set_yscale("log")
    longest = max(len(line.get_xdata()) for line in ax.lines) if ax.lines else None
    integer_layers(ax, longest)
    ax.set_title(title)
    ax.set_xlabel("layer (1 = closest to the input)")
    ax.set_ylabel(ylabel)
    if legend:
        ax.legend(**{"fontsize": "small", **(legend if isinstance(legend, dict) else {})})
    return ax


def step_heatmap(steps, names, values, ax=None, title="statistic over training",
                 label="value", log=False):
    """A (layer x step) heatmap; ``steps, names, values`` as :meth:`Diagnostics.table` returns."""
    import numpy as np

    ax = _axes(ax)
    data = np.array(values, dtype=float).T
    if log:
        data = np.log10(np.clip(data, 1e-20, None))
        label = f"log10 {label}"
    extent = (steps[0] - 0.5, steps[-1] + 0.5, -0.5, len(names) - 0.5) if steps else None
    im = ax.imshow(data, aspect="auto", origin="lower", interpolation="nearest",
                   extent=extent)
    ax.set_yticks(range(len(names)), names, fontsize="x-small")
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel("layer")
    ax.figure.colorbar(im, ax=ax, label=label)
    return ax


def annotated_heatmap(values, texts, xlabels, ylabels, ax=None, title=None,
                      dark_above=None, **imshow_kwargs):
    """A grid of ``values`` (rows x columns, NaN = empty) with ``texts`` in the cells.

    Text is white on cells whose value exceeds ``dark_above`` (for a colour
    map that is dark at the top), black elsewhere.  Returns the image, for a
    colour bar.
    """
    import numpy as np

    ax = _axes(ax)
    values = np.asarray(values, dtype=float)
    image = ax.imshow(values, aspect="auto", **imshow_kwargs)
    for (i, j), value in np.ndenumerate(values):
        if texts[i][j]:
            dark = dark_above is not None and not value <= dark_above
            ax.text(j, i, texts[i][j], ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
    ax.set_xticks(range(len(xlabels)), xlabels)
    ax.set_yticks(range(len(ylabels)), ylabels)
    if title:
        ax.set_title(title)
    return image
