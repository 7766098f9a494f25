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

import contextlib
import dataclasses
import functools
import math
import sys
import traceback
from typing import Any, Callable, Sequence

import numpy as np
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


def _tensors_in(value, at: str = "", depth: int = 0):
    """Every tensor inside ``value`` (nested lists, tuples and dicts), with where it sits."""
    if isinstance(value, torch.Tensor):
        yield at, value
    elif depth < 3 and isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _tensors_in(item, f"{at}[{i}]", depth + 1)
    elif depth < 3 and isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors_in(item, f"{at}[{key!r}]", depth + 1)


def _snapshot(args):
    """(where, the tensor object, a copy of its values) for every tensor the learner receives."""
    return [(f"argument number {i + 1}" + (f" (the tensor at {at})" if at else ""),
             t, t.detach().clone())
            for i, a in enumerate(args) for at, t in _tensors_in(a)]


def _unchanged(now: torch.Tensor, before: torch.Tensor) -> bool:
    """Same values, NaN counting as equal to NaN (an input may hold NaN on purpose)."""
    if now.shape != before.shape or now.dtype != before.dtype:
        return False
    same = now.detach() == before
    if now.is_floating_point() or now.is_complex():
        same |= now.detach().isnan() & before.isnan()
    return bool(same.all())


@dataclasses.dataclass(frozen=True)
class Forbidden:
    """Library functions an exercise asks the learner not to call, and what to tell them.

    ``functions`` are Python functions (matched by their code, however the learner
    imported them: ``F.layer_norm``, ``from torch.nn.functional import layer_norm``,
    or through ``nn.LayerNorm``) or built-ins (``torch.layer_norm``).
    """

    functions: tuple
    what: str
    hint: str


@contextlib.contextmanager
def _watching(forbidden: Sequence[Forbidden]):
    """Yield a list that collects the Forbidden entries whose functions get called."""
    seen: list[Forbidden] = []
    if not forbidden:
        yield seen
        return
    codes, builtins = {}, {}
    for entry in forbidden:
        for f in entry.functions:
            code = getattr(f, "__code__", None)
            if code is not None:
                codes[code] = entry
            else:
                builtins[id(f)] = entry

    def profile(frame, event, arg):
        entry = (codes.get(frame.f_code) if event == "call" else
                 builtins.get(id(arg)) if event == "c_call" else None)
        if entry is not None and entry not in seen:
            seen.append(entry)

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield seen
    finally:
        sys.setprofile(previous)


def call_learner(fn: Callable, *args, name: str = "your function",
                 explain: Callable[[Exception], str | None] | None = None,
                 forbidden: Sequence[Forbidden] = ()):
    """Call ``fn(*args)``; turn its exceptions and in-place edits into Mistakes.

    In-place edits are found in tensor arguments and in tensors inside list, tuple
    and dict arguments (a list of hidden states, a dict of parameters): the caller
    keeps using them.  ``explain(err)`` may return a hint specific to the checker
    for an exception (None keeps the generic one).  A call to one of the
    ``forbidden`` functions (a library call the exercise rules out) is a Mistake
    too, even when the result is right.
    """
    before = _snapshot(args)
    try:
        with _watching(forbidden) as called:
            out = fn(*args)
    except NotImplementedError:
        raise Mistake(f"{name} is not implemented yet.",
                      "replace `raise NotImplementedError` with your code.") from None
    except Exception as err:
        where = traceback.extract_tb(err.__traceback__)[-1]
        hint = explain(err) if explain is not None else None
        raise Mistake(
            f"{name} raised {type(err).__name__}: {err} (line {where.lineno}: "
            f"`{(where.line or '').strip()}`)",
            hint or "run it on a small input yourself and print the shapes of the intermediate "
                    "tensors.",
        ) from None
    if called:
        raise Mistake(called[0].what, called[0].hint)
    for where, tensor, values in before:
        if not _unchanged(tensor, values):
            raise Mistake(
                f"{name} modified its {where} in place.",
                "operations ending in _ (like x.sub_()) and `x -= ...` change the caller's "
                "tensor; use out-of-place versions such as x = x - mean.",
            )
    return out


def as_number(value, what: str = "the result", *, whole: bool = False,
              shape_hint: str = "reduce over the whole tensor (e.g. .mean() with no dim), not "
                                "along one dimension."):
    """The number the learner returned, as a Python ``float`` (``int`` when ``whole``).

    Accepts a Python int or float, a NumPy scalar (np.int64, np.float32, ...), and a
    NumPy array or torch tensor holding one element: all are a number to the learner.
    Anything else, a bool, or (with ``whole``) a fraction, NaN or inf is a Mistake.
    """
    kind = "a whole number" if whole else "a number"
    if isinstance(value, (torch.Tensor, np.ndarray)):
        size = value.numel() if isinstance(value, torch.Tensor) else value.size
        if size != 1:
            array = "tensor" if isinstance(value, torch.Tensor) else "NumPy array"
            raise Mistake(f"{what} should be a single number, got a {array} of shape "
                          f"{tuple(value.shape)}.", shape_hint)
        value = value.item()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        shown = f" {value!r}" if isinstance(value, (bool, str)) else ""
        raise Mistake(f"{what} should be {kind}, got {type(value).__name__}{shown}.",
                      "did you forget a `return` statement?" if value is None else
                      f"return {kind} (an int or a float), not a {type(value).__name__}.")
    if not whole:
        return float(value)
    if not math.isfinite(value):
        raise Mistake(f"{what} should be a whole number, got {value!r}.",
                      "count with an int and return it; NaN or inf usually comes from a "
                      "median or mean of an empty slice, or a division by zero.")
    if value != int(value):
        raise Mistake(f"{what} should be a whole number, got {value!r}.",
                      "count with whole numbers and return an int: a fraction comes from a "
                      "division (/) or a conversion to other units (such as megabytes) that "
                      "the count does not need.")
    return int(value)


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


def is_mistake(out: torch.Tensor, candidate: torch.Tensor, ref: torch.Tensor, atol: float,
               rtol: float = 0.0) -> bool:
    """``out`` matches a known wrong ``candidate`` that really differs from ``ref`` here.

    On some inputs a wrong formula gives the right answer (a sum of squares equals
    their mean over one element): naming that mistake would send the learner
    after a bug they do not have.
    """
    return (candidate.shape == out.shape and close(out, candidate, atol, rtol)
            and not close(candidate, ref, atol, rtol))


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: a checker's test inputs are the same on every run."""
    return torch.Generator().manual_seed(seed)


@dataclasses.dataclass(frozen=True)
class Wrong:
    """A known wrong answer to an exercise: what it is, how to fix it, and its value.

    ``value`` is a function of no arguments, called only when the learner's answer
    is already known to be wrong (so a checker may list many costly candidates);
    it may raise when the mistake does not apply to this input, and is then skipped.
    """

    what: str
    hint: str
    value: Callable[[], Any]


def where_largest(out: torch.Tensor, ref: torch.Tensor) -> str:
    """Where ``out`` is furthest from ``ref``, with both values, for a message."""
    diff = (out.detach().double() - ref.double()).abs()
    diff = torch.nan_to_num(diff, nan=float("inf"))
    idx = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
    return (f"the largest error is at index {idx}: you returned {out[idx].item():.6g}, "
            f"expected {ref[idx].item():.6g}")


def _as_tensor(value) -> torch.Tensor:
    """A tensor as it is; a number as a float64 0-d tensor (for checkers of one number)."""
    return value if isinstance(value, torch.Tensor) else torch.tensor(float(value),
                                                                      dtype=torch.float64)


def _raise(mistake: Mistake | Callable[[], None]) -> None:
    """Raise ``mistake``, or call it when it is a function that raises its own."""
    if isinstance(mistake, Mistake):
        raise mistake
    mistake()
    raise AssertionError("a Mistake-raising function returned")  # a bug in the checker


def explain_when(matches: Callable[[Exception], bool], hint: str):
    """An ``explain`` for :func:`call_learner`: ``hint`` for the exceptions that
    ``matches(err)`` recognises, None (the generic hint) for the others."""
    return lambda err: hint if matches(err) else None


def compare(out: torch.Tensor, ref: torch.Tensor, tol: float, wrongs: Sequence[Wrong] = (), *,
            rtol: float = 0.0, name: str = "your output",
            nan_mistake: Mistake | Callable[[], None] | None = None,
            otherwise: Mistake | Callable[[], None] | None = None,
            hint: str = "test on a tiny input, e.g. torch.tensor([[1., 2., 3.]]), and compare "
                        "each step with a hand calculation.") -> None:
    """Return when ``out`` is within ``tol`` of ``ref``; otherwise raise the Mistake it makes.

    The Mistake names the first of ``wrongs`` that ``out`` matches (and that really
    differs from ``ref`` on this input, see :func:`is_mistake`); NaN and inf get
    their own messages (``nan_mistake`` replaces the generic NaN one); anything
    else is ``otherwise`` or, by default, reported by where the error is largest,
    against the tolerance.  ``nan_mistake`` and ``otherwise`` are a Mistake, or a
    function that raises the checker's own (when the message needs more work).  ``out``, ``ref`` and the wrong values may be plain
    numbers (a checker of one number).
    """
    out, ref = _as_tensor(out), _as_tensor(ref)
    if close(out, ref, atol=tol, rtol=rtol):
        return
    if out.isnan().any() and nan_mistake is not None:
        _raise(nan_mistake)
    if out.isnan().any():
        raise Mistake(
            f"{name} contains NaN.",
            "NaN usually means 0/0 or sqrt of a negative number: is eps inside the square "
            "root, and is the variance computed as a mean of squares of deviations (never "
            "negative)?")
    if out.isinf().any():
        raise Mistake(f"{name} contains inf.", "is eps added before dividing?")
    for wrong in wrongs:
        try:
            candidate = _as_tensor(wrong.value())
        except Exception:  # a mistake that does not apply to this input
            continue
        if is_mistake(out, candidate, ref, atol=tol, rtol=rtol):
            raise Mistake(wrong.what, wrong.hint)
    if otherwise is not None:
        _raise(otherwise)
    raise Mistake(f"{name} is wrong: {where_largest(out, ref)} (max error "
                  f"{max_error(out, ref):.3g}, allowed {tol:.2g}).", hint)


# The second eps a wrong answer is run with: an eps of 1 changes every output a test row
# of unit scale gives, so an answer whose output stays the same ignores its eps.
SECOND_EPS = 1.0


def ignores_eps(rerun: Callable[[float], Any], out: torch.Tensor, ref: torch.Tensor,
                ref_other: torch.Tensor, eps: float, tol: float, other: float = SECOND_EPS,
                name: str = "your function",
                hint: str = "use the eps argument itself, not a number of your own.") -> Wrong:
    """The known mistake of an eps written into the code: the eps argument changes nothing.

    ``rerun(e)`` is the learner's output on the same input with eps ``e``, and
    ``ref_other`` the reference for eps ``other``.  The mistake applies (its value is
    ``out`` itself) when the reference changes with eps here but the learner's output
    does not; with a single eps, a constant of the learner's own looks like some
    other wrong eps (eps ** 2, say), so it takes a second eps to tell them apart.
    """
    def value():
        if close(ref_other, ref, atol=10 * tol):
            raise ValueError("eps does not matter on this input")
        again = _as_tensor(rerun(other))
        if again.shape != out.shape or not close(again, out, atol=tol):
            raise ValueError("the output follows eps")
        return out

    return Wrong(f"{name} ignores its eps argument: it gives the same output for eps={eps:g} "
                 f"and for eps={other:g}, as if eps were missing or a constant written into "
                 "the code.",
                 hint, value)


def float32_error(fn: Callable, *args):
    """How far ``fn`` computed in float32 lands from ``fn`` computed in float64, on ``args``.

    Float64 test inputs give exact references, but a learner may compute in
    float32 inside and cast back; a tolerance a few times this error accepts
    that while still rejecting wrong formulas.  Returns one error per output
    when ``fn`` returns a tuple.
    """
    def cast(a, dtype):
        return a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a

    lo = fn(*(cast(a, torch.float32) for a in args))
    hi = fn(*(cast(a, torch.float64) for a in args))
    if isinstance(hi, (tuple, list)):
        return tuple(max_error(a, b) for a, b in zip(lo, hi))
    return max_error(lo, hi)


def yours_or_reference(passed: bool, yours: Callable, reference: Callable) -> Callable:
    """Your function once its checker has passed; until then the reference, with a note.

    The cells after an exercise use its function.  In the learner's version of a
    chapter the function is still a stub, so those cells would stop with your
    ``NotImplementedError``; with this they run on the reference and say so.
    """
    if passed is True:
        return yours
    name = getattr(yours, "__name__", "your function")
    where = f"{getattr(reference, '__module__', '')}.{getattr(reference, '__qualname__', reference)}"
    print(f"Note: {name} has not passed its checker yet, so the cells below use the reference "
          f"({where.lstrip('.')}). Run them again once yours passes.")
    return reference

