"""Helpers shared by the chapter modules of near misses (chapters 8-14).

:func:`answers` turns right-answer functions into :class:`~near_misses.Attempt`
rows, each labelled by the first line of its docstring, so that a chapter lists
its right answers in one line instead of a table of ``Attempt(label, fn)``.
(If ``near_misses`` gains a compact constructor of its own, this one goes.)
"""

from __future__ import annotations

from near_misses import Attempt


def _label(f) -> str:
    if not f.__name__.startswith("_"):   # the package's own function
        return f"{f.__module__}.{f.__name__}"
    return (f.__doc__ or f.__name__).strip().splitlines()[0]


def answers(*fns) -> tuple[Attempt, ...]:
    """One right-answer Attempt per function, labelled by its docstring's first line
    (the package's functions by their dotted name)."""
    return tuple(Attempt(_label(f), f) for f in fns)
