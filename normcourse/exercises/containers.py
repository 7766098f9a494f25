"""Catch a learner's function that changes the lists and dicts it was given.

:func:`normcourse.exercises.feedback.call_learner` already reports a tensor
changed in place.  A list or a dict can be changed without touching any
tensor: ``del blocks[skip]``, ``losses.pop(0)``, ``losses[t] = median``,
``run["val_loss"] = inf``, ``activations.pop(name)``.  The chapter's caller
keeps using its list or dict after the call (chapter 9 plots the same losses,
chapter 10 reuses its hidden states), so such an edit is a mistake even when
the returned value is right.

:func:`call_keeping_inputs` calls the learner through ``call_learner`` and then
compares every list and dict argument, item by item and by identity, with a
shallow record taken before the call.
"""

from __future__ import annotations

import math
from typing import Callable

from normcourse.exercises.feedback import Mistake, call_learner

__all__ = ["call_keeping_inputs", "first_change"]

_DEPTH = 3


def _record(value, depth: int = 0):
    """The containers inside ``value`` (lists and dicts), holding the very same leaf objects."""
    if depth < _DEPTH and isinstance(value, list):
        return ("list", [_record(v, depth + 1) for v in value])
    if depth < _DEPTH and isinstance(value, dict):
        return ("dict", [(k, _record(v, depth + 1)) for k, v in value.items()])
    return ("leaf", value)


def _same_leaf(now, before) -> bool:
    if now is before:
        return True
    # A number written back unchanged (losses[t] = float(losses[t])) is no edit.
    if isinstance(now, (int, float)) and isinstance(before, (int, float)) \
            and not isinstance(now, bool) and not isinstance(before, bool):
        return now == before or (isinstance(now, float) and isinstance(before, float)
                                 and math.isnan(now) and math.isnan(before))
    return False


def first_change(record, value, at: str = "the argument") -> str | None:
    """What changed in ``value`` since ``record = _record(value)`` was taken, or None."""
    kind, content = record
    if kind == "leaf":
        return None if _same_leaf(value, content) else f"{at} was replaced"
    if kind == "list":
        if not isinstance(value, list):
            return f"{at} was replaced"
        if len(value) != len(content):
            return (f"{at} now has {len(value)} items instead of "
                    f"{len(content)}")
        for i, (item, rec) in enumerate(zip(value, content)):
            change = first_change(rec, item, f"{at}[{i}]")
            if change:
                return change
        return None
    if not isinstance(value, dict):
        return f"{at} was replaced"
    keys = [k for k, _ in content]
    if list(value) != keys:
        gone = [k for k in keys if k not in value]
        new = [k for k in value if k not in keys]
        if gone:
            return f"key {gone[0]!r} was removed from {at}"
        if new:
            return f"key {new[0]!r} was added to {at}"
        return f"the keys of {at} were reordered"
    for k, rec in content:
        change = first_change(rec, value[k], f"{at}[{k!r}]")
        if change:
            return change
    return None


def call_keeping_inputs(fn: Callable, *args, name: str = "your function",
                        labels: tuple[str, ...] = (), hint: str | None = None,
                        explain: Callable[[Exception], str | None] | None = None):
    """``call_learner(fn, *args)``, then a Mistake if a list or dict argument was changed.

    ``labels[i]`` names argument ``i`` as the exercise does (``"blocks"``); ``hint``
    says how to get the same result without the edit.
    """
    records = [_record(a) if isinstance(a, (list, dict)) else None for a in args]
    out = call_learner(fn, *args, name=name, explain=explain)
    for i, (arg, rec) in enumerate(zip(args, records)):
        if rec is None:
            continue
        label = labels[i] if i < len(labels) else f"argument number {i + 1}"
        change = first_change(rec, arg, label)
        if change:
            kind = "list" if isinstance(arg, list) else "dict"
            raise Mistake(
                f"{name} changed the {kind} `{label}` it was given: {change}. The caller "
                "keeps using it after your function returns.",
                hint or "work on a copy (list(...), dict(...)) or build a new list or dict; "
                        "del, .pop(), .remove(), .append() and item assignment change the "
                        "caller's own object.")
    return out
