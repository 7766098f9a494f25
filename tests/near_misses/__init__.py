"""Near misses and unusual-but-right answers for every exercise checker.

One module per chapter, ``chNN.py`` (``ch01.py`` ... ``ch12.py``, and the new
chapters' numbers), each defining ``CASES``: a list of :class:`Exercise`, one
per exercise of that chapter.  The tests that read them:

- every near miss is rejected by its checker, with feedback that contains each
  of its ``names`` (the words that say what is wrong) and no traceback;
- every right answer is accepted;
- on the checker's own test inputs, every near miss differs from the reference
  by far more than the checker's tolerance (the separation check: it is still
  rejected when every tolerance is ten times wider; chapters in
  ``test_near_misses.SEPARATED``);
- the chapter's cells after the exercise run with every accepted right answer
  in place of the learner's function.

Keeping the attempts as data, apart from the checkers, means the list is not
only what each checker's author thought of: anyone can add an attempt.

A table of right answers can be written ``attempts(fn1, fn2, ...)``: each
function's label is the first line of its docstring (or its name), so a right
answer is one function, not a function and a line of table.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One learner's answer: a short label, the function, and (for a near miss) the
    words its feedback must contain."""

    label: str
    fn: Callable[..., Any]
    names: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Exercise:
    """An exercise: its checker, where it lives in the book, and its attempts.

    ``function`` is the name the chapter gives the learner's function (``my_layer_norm``);
    the cells after the exercise use it (through ``yours_or_reference``).
    """

    checker: Callable[..., Any]
    notebook: str  # e.g. "notebooks/04_layernorm_from_scratch.ipynb"
    function: str
    near_misses: tuple[Attempt, ...]
    right_answers: tuple[Attempt, ...]


def _label(fn) -> str:
    """The package function's dotted name, else the first line of ``fn``'s docstring, else its name with spaces for underscores."""
    inner = getattr(fn, "fn", fn)  # a @triton.jit kernel keeps the Python function as .fn
    if getattr(inner, "__module__", "").startswith("normcourse"):  # the package's own answer
        return f"{inner.__module__}.{inner.__name__}"
    doc = (getattr(inner, "__doc__", None) or "").strip()
    if doc:
        return doc.splitlines()[0].rstrip(".")
    return getattr(inner, "__name__", repr(fn)).strip("_").replace("_", " ")


def attempts(*fns: Callable[..., Any]) -> tuple[Attempt, ...]:
    """Right answers, one per function, each labelled by its docstring (see :func:`_label`)."""
    labels = [_label(fn) for fn in fns]
    assert len(set(labels)) == len(labels), f"two right answers share a label: {labels}"
    return tuple(Attempt(label, fn) for label, fn in zip(labels, fns))
