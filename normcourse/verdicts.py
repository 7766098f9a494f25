"""The one rule by which the book may call a comparison a difference.

Every verdict in the chapters and the claims audit ("A is better", "agrees
with the paper", "no difference we can measure") comes from :func:`compare`,
so that one rule, explained once in the book, stands behind every such word:

- each configuration needs at least :data:`MIN_SEEDS` independent seeds, or the
  result is only *one observation* and no verdict is drawn;
- the difference of the means gets a 95% Welch *t* interval (unequal variances,
  Welch-Satterthwaite degrees of freedom): with 5 seeds a bootstrap interval
  is too narrow to trust, a *t* interval is honest about how little 5 draws say;
- the difference is called real only when that interval excludes zero;
  otherwise the verdict is "no difference we can measure" at this many seeds.

:func:`agreement` then compares a verdict with the direction a paper reports.
Pure Python (``math`` only), so it runs anywhere the book does.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

MIN_SEEDS = 5
LEVEL = 0.95

BETTER, WORSE, SAME, ONE_OBSERVATION = ("better", "worse", "no difference we can measure",
                                        "one observation")


class Comparison(NamedTuple):
    """``mean(a) - mean(b)`` with its interval, and what it lets us say about ``a``."""

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    difference: float  # mean(a) - mean(b)
    low: float  # interval of the difference (nan with too few seeds)
    high: float
    verdict: str  # BETTER / WORSE / SAME (for a, against b) or ONE_OBSERVATION

    def __str__(self) -> str:
        if self.verdict == ONE_OBSERVATION:
            return (f"{self.mean_a:.3f} vs {self.mean_b:.3f} ({self.n_a} and {self.n_b} seeds): "
                    f"one observation, no verdict (needs {MIN_SEEDS} seeds each)")
        return (f"{self.mean_a:.3f} vs {self.mean_b:.3f}, difference {self.difference:+.3f} "
                f"[{self.low:+.3f}, {self.high:+.3f}] (95% t interval, {self.n_a} and "
                f"{self.n_b} seeds): {self.verdict}")


def mean_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of ``values`` with its *t* interval (nan below 2 values)."""
    xs = _finite(values, "values")
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, math.nan, math.nan
    half = t_quantile(0.5 + level / 2, len(xs) - 1) * math.sqrt(_var(xs) / len(xs))
    return m, m - half, m + half


def compare(a: Sequence[float], b: Sequence[float], *, lower_is_better: bool = True,
            level: float = LEVEL, min_seeds: int = MIN_SEEDS) -> Comparison:
    """Compare configuration ``a`` with ``b`` from one final number per seed (e.g. loss)."""
    xa, xb = _finite(a, "a"), _finite(b, "b")
    ma, mb = sum(xa) / len(xa), sum(xb) / len(xb)
    diff = ma - mb
    if min(len(xa), len(xb)) < min_seeds:
        return Comparison(len(xa), len(xb), ma, mb, diff, math.nan, math.nan, ONE_OBSERVATION)
    va, vb = _var(xa) / len(xa), _var(xb) / len(xb)
    se = math.sqrt(va + vb)
    if se == 0.0:
        low = high = diff
    else:
        dof = (va + vb) ** 2 / (va ** 2 / (len(xa) - 1) + vb ** 2 / (len(xb) - 1))
        half = t_quantile(0.5 + level / 2, dof) * se
        low, high = diff - half, diff + half
    if low <= 0.0 <= high:
        verdict = SAME
    else:
        a_lower = high < 0.0
        verdict = BETTER if a_lower == lower_is_better else WORSE
    return Comparison(len(xa), len(xb), ma, mb, diff, low, high, verdict)


def agreement(comparison: Comparison, paper_says: str) -> str:
    """"agrees", "disagrees" or "inconclusive": our verdict for ``a`` against what a paper says.

    ``paper_says`` is the paper's verdict for ``a`` against ``b``: ``"better"``,
    ``"worse"`` or ``"same"``.
    """
    if paper_says not in ("better", "worse", "same"):
        raise ValueError(f"paper_says must be 'better', 'worse' or 'same', got {paper_says!r}")
    if comparison.verdict == ONE_OBSERVATION:
        return "inconclusive"
    ours = {BETTER: "better", WORSE: "worse", SAME: "same"}[comparison.verdict]
    if ours == paper_says:
        return "agrees"
    # an interval that includes zero cannot contradict a reported difference; it fails to confirm it
    return "inconclusive" if ours == "same" else "disagrees"


def t_quantile(p: float, dof: float) -> float:
    """The ``p`` quantile of Student's *t* with ``dof`` degrees of freedom (bisection on the CDF)."""
    if not 0.5 <= p < 1.0:
        raise ValueError(f"p must be in [0.5, 1), got {p}")
    if dof <= 0:
        raise ValueError(f"dof must be positive, got {dof}")
    lo, hi = 0.0, 1.0
    while _t_cdf(hi, dof) < p:
        hi *= 2.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_cdf(mid, dof) < p else (lo, mid)
    return (lo + hi) / 2


def _t_cdf(t: float, dof: float) -> float:
    """P(T <= t) for t >= 0: 1/2 plus Simpson's rule on the density over [0, t]."""
    log_c = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)
    n = 256  # even; the density is smooth, so this is exact to ~1e-7 for the t we need
    h = t / n
    total = 0.0
    for i in range(n + 1):
        x = i * h
        w = 1 if i in (0, n) else (4 if i % 2 else 2)
        total += w * math.exp(log_c - (dof + 1) / 2 * math.log1p(x * x / dof))
    return 0.5 + total * h / 3


def _finite(values, name) -> list[float]:
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError(f"{name} must hold at least one value, got none")
    if not all(math.isfinite(v) for v in xs):
        raise ValueError(f"{name} holds a non-finite value ({xs}); a diverged run has no loss to "
                         f"average: count divergences separately")
    return xs


def _var(xs: list[float]) -> float:
    m = sum(xs) / len(xs)
    return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)
