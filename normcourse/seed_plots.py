"""Figures of results over several seeds: every seed shown, the mean with its interval.

The book's rule (:mod:`normcourse.verdicts`) is that a comparison rests on
at least five seeds with a 95% *t* interval; these helpers draw exactly that:

- :func:`interval_plot`: one point per seed (faint) and the mean with its
  95% *t* interval (error bar) at each x, joined by a line;
- :func:`seed_curves`: one thin line per seed of a per-step record, and
  their mean as a thick line.

Each returns the Axes it drew on; titles and axis labels stay with the caller.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt

from normcourse.verdicts import mean_interval

__all__ = ["interval_plot", "seed_curves"]


def interval_plot(ax, xs, values_per_x, label, *, color=None, offset=1.0, marker="o"):
    """Seeds as faint points and mean +- 95% t interval at each x.

    ``values_per_x[i]`` holds one number per seed at ``xs[i]`` (NaN and inf
    are skipped: a diverged run has no loss).  ``offset`` multiplies x, so
    that several series on a log axis do not hide each other.
    """
    ax = ax or plt.gca()
    means, lows, highs, shown = [], [], [], []
    for x, values in zip(xs, values_per_x):
        finite = [v for v in values if math.isfinite(v)]
        if not finite:
            continue
        m, lo, hi = mean_interval(finite)
        lo, hi = (m, m) if math.isnan(lo) else (lo, hi)
        means.append(m)
        lows.append(m - lo)
        highs.append(hi - m)
        shown.append(x * offset)
        line = ax.plot([x * offset] * len(finite), finite, marker, ms=3, alpha=0.3,
                       color=color, lw=0)
        color = line[0].get_color()
    ax.errorbar(shown, means, yerr=[lows, highs], marker=marker, ms=5, capsize=3,
                color=color, label=label)
    return ax


def seed_curves(ax, curves, label, *, color=None, steps=None):
    """One thin line per seed of ``curves`` (lists of per-step values) and their mean.

    A run that stopped early (diverged) has a shorter curve; the mean at a step
    averages the runs still going there.
    """
    ax = ax or plt.gca()
    n = max(len(c) for c in curves)
    steps = list(steps or range(1, n + 1))[:n]
    for c in curves:
        line = ax.plot(steps[:len(c)], c, lw=0.7, alpha=0.35, color=color)
        color = line[0].get_color()
    mean = [sum(c[i] for c in curves if i < len(c)) / sum(1 for c in curves if i < len(c))
            for i in range(n)]
    ax.plot(steps, mean, lw=2, color=color, label=f"{label} (mean of {len(curves)} seeds)")
    return ax
