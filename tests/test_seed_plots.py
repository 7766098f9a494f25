"""seed_plots draws every seed and the mean with its 95% t interval."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from normcourse.seed_plots import interval_plot, seed_curves  # noqa: E402
from normcourse.verdicts import mean_interval  # noqa: E402


def test_interval_plot_draws_the_mean_and_its_t_interval():
    fig, ax = plt.subplots()
    values = [[1.0, 2.0, 3.0, 2.5, 1.5], [4.0, 4.2, 3.9, 4.1, 4.3]]
    interval_plot(ax, [1, 2], values, "arm")
    bars = ax.containers[0]
    means = list(bars.lines[0].get_ydata())
    assert means == pytest.approx([mean_interval(v)[0] for v in values])
    # the error bar spans the t interval
    segments = bars.lines[2][0].get_segments()
    for seg, v in zip(segments, values):
        _, lo, hi = mean_interval(v)
        assert seg[0][1] == pytest.approx(lo) and seg[1][1] == pytest.approx(hi)
    # every seed is drawn as a point
    assert sum(len(line.get_xdata()) for line in ax.lines) >= 10
    plt.close(fig)


def test_interval_plot_skips_non_finite_values_and_empty_points():
    fig, ax = plt.subplots()
    interval_plot(ax, [1, 2, 3], [[1.0, math.nan, 2.0], [math.inf], [3.0]], "arm")
    assert list(ax.containers[0].lines[0].get_xdata()) == [1, 3]
    plt.close(fig)


def test_seed_curves_average_the_runs_still_going():
    fig, ax = plt.subplots()
    seed_curves(ax, [[1.0, 2.0, 3.0], [3.0, 4.0]], "arm")
    mean_line = ax.lines[-1]
    assert list(mean_line.get_ydata()) == [2.0, 3.0, 3.0]
    assert "2 seeds" in mean_line.get_label()
    plt.close(fig)
