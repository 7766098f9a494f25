"""Small summaries of cached runs that several chapters use.

- :func:`mean`: the arithmetic mean of a non-empty sequence.
- :func:`smooth`: the running mean of a loss curve over the last ``k`` steps,
  what the chapters plot as "training loss, k-step mean".
- :func:`val_losses`: the validation losses of the result rows whose fields
  have the given values (``val_losses(rows, norm="dyt", lr=3e-3)``).

Plain Python on lists, as the rows of :func:`normcourse.experiments.load_results`
hold them; a chapter that wants an interval uses :mod:`normcourse.verdicts`.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["mean", "smooth", "val_losses"]


def mean(xs: Sequence[float]) -> float:
    """``sum(xs) / len(xs)``; a ValueError for an empty sequence."""
    if len(xs) == 0:
        raise ValueError("mean of an empty sequence")
    return sum(xs) / len(xs)


def smooth(values: Sequence[float], k: int = 20) -> list[float]:
    """Running mean: at step ``i`` the mean of ``values[i-k+1 : i+1]``.

    The first ``k - 1`` steps average over the steps there are, so the
    result is as long as ``values``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return [mean(values[max(0, i - k + 1):i + 1]) for i in range(len(values))]


def val_losses(rows, **where) -> list[float]:
    """``r["val_loss"]`` of every row ``r`` with ``r[key] == value`` for each ``key=value``.

    In the rows' order; a key a row lacks does not match.
    """
    return [r["val_loss"] for r in rows
            if all(r.get(k) == v for k, v in where.items())]
