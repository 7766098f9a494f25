"""One call per figure for :class:`normcourse.diagnostics.Diagnostics` records.

- :func:`layer_histograms`: makemore-part-3 style overlaid histograms of each
  layer's outputs (or of each parameter's gradients).
- :func:`update_ratio_plot`: log10 update:data ratio of every weight matrix
  over training steps, with the 1e-3 guide line.
- :func:`depth_lines`: a statistic across depth, one line per step (or run).
- :func:`step_heatmap`: a statistic over (step, layer).

Every function returns the matplotlib Axes it drew on, titled and labelled.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt


def _axes(ax, figsize=(7, 3.5)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def layer_histograms(diag, source: str = "activations", bins: int = 60, ax=None, title=None):
    """Overlaid histograms of each hooked layer's outputs (``source='activations'``)
    or of each weight matrix's gradient (``source='gradients'``)."""
    ax = _axes(ax)
    values = diag.activations if source == "activations" else \
        {n: v for n, v in diag.gradients.items() if "weight" in n}
    for name, v in values.items():
        v = v.float()
        hist = v.histc(bins=bins, min=v.min().item(), max=v.max().item())
        edges = [v.min().item() + (v.max().item() - v.min().item()) * (i + 0.5) / bins for i in range(bins)]
        ax.plot(edges, (hist / hist.sum()).tolist(),
                label=f"{name} (mean {v.mean():+.2f}, std {v.std():.2f})")
    ax.set_title(title or f"{source} distribution per layer (step {diag.step})")
    ax.set_xlabel("value")
    ax.set_ylabel("fraction of entries")
    ax.legend(fontsize="x-small")
    return ax


def update_ratio_plot(diag, ax=None, matrices_only: bool = True, title=None):
    """log10(update:data ratio) per parameter over steps; ~-3 is Karpathy's rule of thumb."""
    ax = _axes(ax)
    rows = diag.rows("update")
    names = list(dict.fromkeys(r["name"] for r in rows if not matrices_only or r["ndim"] == 2))
    for name in names:
        pts = [(r["step"], r["update_data_ratio"]) for r in rows if r["name"] == name]
        ax.plot([s for s, _ in pts], [math.log10(max(v, 1e-20)) for _, v in pts], label=name)
    ax.axhline(-3, color="k", ls="--", lw=1, label="1e-3 guide")
    ax.set_title(title or "update:data ratio per parameter")
    ax.set_xlabel("step")
    ax.set_ylabel("log10(std(update) / std(weight))")
    ax.legend(fontsize="xx-small", ncol=2)
    return ax


def depth_lines(series: dict, ax=None, ylabel="value", title="statistic across depth", logy=False):
    """One line per key of ``series`` (label -> list of per-layer values), layers on x."""
    ax = _axes(ax)
    for label, values in series.items():
        ax.plot(range(1, len(values) + 1), values, marker="o", label=str(label))
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel("layer (1 = closest to the input)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")
    return ax


def step_heatmap(steps, names, values, ax=None, title="statistic over training", label="value", log=False):
    """A (layer x step) heatmap; ``steps, names, values`` as :meth:`Diagnostics.table` returns."""
    import numpy as np

    ax = _axes(ax)
    data = np.array(values, dtype=float).T
    if log:
        data = np.log10(np.clip(data, 1e-20, None))
        label = f"log10 {label}"
    im = ax.imshow(data, aspect="auto", origin="lower", interpolation="nearest",
                   extent=(steps[0] - 0.5, steps[-1] + 0.5, -0.5, len(names) - 0.5) if steps else None)
    ax.set_yticks(range(len(names)), names, fontsize="x-small")
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel("layer")
    ax.figure.colorbar(im, ax=ax, label=label)
    return ax
