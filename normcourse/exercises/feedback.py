"""The mechanism every exercise checker shares: run the learner's code, never crash.

A checker is a function decorated with :func:`checker`.  Inside it, call the
learner's function through :func:`call_learner` and raise :class:`Mistake`
for the first thing that is wrong, with a hint.  The decorator turns that into
a printed, friendly message and a ``False`` return value; when every check
passes it prints the summary the checker returned and gives ``True``.

Nothing a learner writes can make a checker raise: exceptions from their code
become messages, and a bug in the checker itself is reported as such (with a
request to report it) rather than as a traceback.
"""

from __future__ import annotations

import functools
import traceback
from typing import Any, Callable

import torch

PASS = "\u2714"  # heavy check mark (a Dingbat, present in common fonts)
FAIL = "\u2718"  # heavy ballot X


class Mistake(Exception):
    """Something specific is wrong with the learner's code.

    ``what`` says what is wrong (one sentence); ``hint`` how to find the fix.
    """

    def __init__(self, what: str, hint: str | None = None):
        super().__init__(what)
        self.what = what
        self.hint = hint


def checker(func: Callable[..., str]) -> Callable[..., bool]:
    """Decorate a checker: ``func(fn, ...)`` returns a success summary or raises Mistake."""

    @functools.wraps(func)
    def run(fn: Any = None, *args, **kwargs) -> bool:
        if not callable(fn):
            print(f"{FAIL} {func.__name__} needs your function as its argument, "
                  f"got {type(fn).__name__}.")
            print(f"   Hint: call it as {func.__name__}(my_function), without parentheses "
                  "after my_function.")
            return False
        try:
            summary = func(fn, *args, **kwargs)
        except Mistake as mistake:
            print(f"{FAIL} {mistake.what}")
            if mistake.hint:
                print(f"   Hint: {mistake.hint}")
            return False
        except Exception:  # a bug in the checker, not in the learner's code
            last = traceback.format_exc(limit=1).strip().splitlines()[-1]
            print(f"{FAIL} The checker itself failed ({last}). This is a bug in normcourse, "
                  "not in your code: please report it.")
            return False
        print(f"{PASS} {summary}")
        return True

    return run


def _snapshot(args):
    return [a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args]


def call_learner(fn: Callable, *args, name: str = "your function"):
    """Call ``fn(*args)``; turn its exceptions and in-place edits into Mistakes."""
    before = _snapshot(args)
    try:
        out = fn(*args)
    except NotImplementedError:
        raise Mistake(f"{name} is not implemented yet.",
                      "replace `raise NotImplementedError` with your code.") from None
    except Exception as err:
        where = traceback.extract_tb(err.__traceback__)[-1]
        raise Mistake(
            f"{name} raised {type(err).__name__}: {err} (line {where.lineno}: "
            f"`{(where.line or '').strip()}`)",
            "run it on a small input yourself and print the shapes of the intermediate tensors.",
        ) from None
    for i, (a, b) in enumerate(zip(args, before)):
        if isinstance(a, torch.Tensor) and not torch.equal(a, b) and not (a.isnan() & b.isnan()).all():
            raise Mistake(
                f"{name} modified its argument number {i + 1} in place.",
                "operations ending in _ (like x.sub_()) and `x -= ...` change the caller's "
                "tensor; use out-of-place versions such as x = x - mean.",
            )
    return out


def expect_tensor(out, like: torch.Tensor, name: str = "the result",
                  shape_hint: str = "the output has the shape of the input; keepdim=True keeps "
                                    "the statistics broadcastable.") -> torch.Tensor:
    """Check that ``out`` is a tensor with the shape and dtype of ``like``."""
    if not isinstance(out, torch.Tensor):
        raise Mistake(f"{name} should be a torch.Tensor, got {type(out).__name__}.",
                      "did you forget a `return` statement?")
    if out.shape != like.shape:
        raise Mistake(f"{name} has shape {tuple(out.shape)}, expected {tuple(like.shape)}.",
                      shape_hint)
    if out.dtype != like.dtype:
        raise Mistake(f"{name} has dtype {out.dtype} but the input was {like.dtype}.",
                      "compute in float32 if you like, but convert back with .to(x.dtype).")
    return out


def max_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest absolute difference, computed in float64 (NaN if either has NaN)."""
    diff = (out.detach().double() - ref.detach().double()).abs()
    return float("nan") if diff.isnan().any() else float(diff.max()) if diff.numel() else 0.0


def close(out: torch.Tensor, ref: torch.Tensor, atol: float, rtol: float = 0.0) -> bool:
    """``|out - ref| <= atol + rtol * |ref|`` everywhere, with NaN never close."""
    out64, ref64 = out.detach().double(), ref.detach().double()
    if out64.isnan().any() or out64.isinf().any():
        return False
    return bool(((out64 - ref64).abs() <= atol + rtol * ref64.abs()).all())
