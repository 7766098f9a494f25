"""Small summaries of cached runs that several chapters use.

- :func:`mean`: the arithmetic mean of a non-empty sequence.
- :func:`smooth`: the running mean of a loss curve over the last ``k`` steps,
  what the chapters plot as "training loss, k-step mean".
- :func:`scored_loss`: one run's validation loss, a diverged run scoring its
  initial loss;
- :func:`val_losses`: the validation losses of the result rows whose fields
  have the given values (``val_losses(rows, norm="dyt", lr=3e-3)``); a run
  that diverged scores its initial loss, no better than not training.

Plain Python on lists, as the rows of :func:`normcourse.experiments.load_results`
hold them; a chapter that wants an interval uses :mod:`normcourse.verdicts`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["mean", "scored_loss", "smooth", "val_losses"]


def mean(xs: Iterable[float]) -> float:
    """``sum(xs) / len(xs)`` of a sequence or any iterable; a ValueError when empty."""
    xs = list(xs)
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


def scored_loss(row) -> float:
    """A run's validation loss; a run that diverged has none and scores its initial
    training loss ``row["loss"][0]`` (about ln V), no better than not training."""
    return row["loss"][0] if row.get("diverged") else row["val_loss"]


def val_losses(rows, **where) -> list[float]:
    """``r["val_loss"]`` of every row ``r`` with ``r[key] == value`` for each ``key=value``.

    In the rows' order; a key a row lacks does not match.  A row that diverged
    (``r["diverged"]``) has no validation loss: it scores its initial training
    loss ``r["loss"][0]`` (about ln V), as chapter 13 scores its diverged runs,
    so that a comparison counts divergence against the setting that caused it.
    """
    return [scored_loss(r) for r in rows
            if all(r.get(k) == v for k, v in where.items())]
