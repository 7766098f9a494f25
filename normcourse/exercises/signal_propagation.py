"""Checkers for the chapter "Why deep networks break".

- :func:`check_fraction_saturated`: the share of tanh units stuck near +-1.
- :func:`check_update_to_data_ratio`: log10 of std(lr * grad) / std(weight).
"""

from __future__ import annotations

import math

import torch

from normcourse.exercises.feedback import (
    Mistake, Wrong, as_number, call_learner, checker, compare, generator,
)

__all__ = ["check_fraction_saturated", "check_update_to_data_ratio"]

_ONE_NUMBER = ("reduce over every element (e.g. .mean() over the whole tensor), not along one "
               "dimension.")


def _saturation_cases():
    gen = generator(11)
    cases = []
    # Skewed on purpose: many more units saturated at +1 than at -1, so that forgetting
    # abs() gives a visibly different answer.  No entry sits exactly on the threshold.
    a = torch.tanh(2.5 * torch.randn(64, 50, generator=gen) + 1.0)
    a = torch.where((a.abs() - 0.97).abs() < 1e-4, torch.zeros_like(a), a)
    cases.append((a, 0.97))
    b = torch.tanh(torch.randn(3, 7, 11, generator=gen) * 3.0)  # a 3-D tensor
    b = torch.where((b.abs() - 0.9).abs() < 1e-4, torch.zeros_like(b), b)
    cases.append((b, 0.9))
    cases.append((torch.zeros(10, 10), 0.97))  # nothing saturated
    # Entries exactly on the threshold (0.875 is exact in every float type): they are
    # not saturated, so `>=` instead of `>` shows here.
    c = torch.tanh(2.0 * torch.randn(20, 30, generator=gen))
    c.view(-1)[::7] = 0.875
    c.view(-1)[3::11] = -0.875
    cases.append((c, 0.875))
    return cases


@checker
def check_fraction_saturated(fn) -> str:
    """``fn(a, threshold)`` returns the fraction of entries with ``|a| > threshold``."""
    for a, t in _saturation_cases():
        out = as_number(call_learner(fn, a, t, name="fraction_saturated"), "the fraction",
                        shape_hint=_ONE_NUMBER)
        expected = float((a.abs() > t).float().mean())
        count = float((a.abs() > t).sum())
        compare(out, expected, 1e-6, [
            Wrong(f"you returned {out:.4g}, a percentage; expected the fraction {expected:.4g}.",
                  "return a number between 0 and 1 (drop the * 100).", lambda: 100 * expected),
            Wrong(f"you returned {out:.4g}, the number of saturated entries; expected the "
                  f"fraction {expected:.4g}.",
                  "divide by the total number of entries (a.numel()), or use .float().mean().",
                  lambda: count),
            Wrong("you counted only units near +1; units near -1 are saturated too.",
                  "compare a.abs() with the threshold.", lambda: (a > t).float().mean()),
            Wrong("you returned the fraction of units that are *not* saturated.",
                  "saturated means |a| > threshold.", lambda: (a.abs() < t).float().mean()),
            Wrong(f"you counted the entries equal to the threshold ({t}) as saturated: "
                  "saturated means strictly above it, |a| > threshold.",
                  "use >, not >=.", lambda: (a.abs() >= t).float().mean()),
        ], rtol=1e-6, otherwise=Mistake(
            f"for a tensor of shape {tuple(a.shape)} and threshold {t} you returned {out:.6g}, "
            f"expected {expected:.6g}.",
            "count entries with |a| > threshold over the whole tensor, then divide by the "
            "number of entries; use the threshold argument, not a constant."))
    return "fraction_saturated is correct: it counts |a| > threshold over the whole tensor."


@checker
def check_update_to_data_ratio(fn) -> str:
    """``fn(weight, grad, lr)`` returns ``log10(std(lr * grad) / std(weight))``."""
    gen = generator(12)
    cases = [
        (torch.randn(100, 100, generator=gen) * 0.17, torch.randn(100, 100, generator=gen) * 3e-3, 0.1),
        (torch.randn(30, 40, generator=gen) * 0.5 + 0.2, torch.randn(30, 40, generator=gen) * 0.02 + 0.01, 0.5),
        (torch.randn(64, 8, generator=gen), torch.randn(64, 8, generator=gen) * 1e-4, 1.0),
    ]
    for w, g, lr in cases:
        out = as_number(call_learner(fn, w, g, lr, name="update_to_data_ratio"), "the ratio",
                        shape_hint=_ONE_NUMBER)
        update = lr * g
        ratio = float(update.std() / w.std())
        expected = math.log10(ratio)
        if math.isclose(out, ratio, rel_tol=1e-3) and not math.isclose(out, expected,
                                                                        abs_tol=1e-4):
            raise Mistake(f"you returned {out:.6g}, the ratio itself; expected its log10, {expected:.6g}.",
                          "wrap the ratio in math.log10 (or torch.log10 for a tensor).")
        std_hint = "use .std() of the update and of the weight."
        compare(out, expected, 1e-4, [
            Wrong("the learning rate is missing: the update SGD applies is lr * grad.",
                  "use (lr * grad).std(), not grad.std().",
                  lambda: math.log10(float(g.std() / w.std()))),
            Wrong("the ratio is upside down: you divided the weight's spread by the update's.",
                  "the update goes on top: std(lr * grad) / std(weight).", lambda: -expected),
            Wrong("you used the natural logarithm.",
                  "use log10, so that -3 means an update a thousand times smaller than the "
                  "weights.", lambda: math.log(ratio)),
            Wrong("you used mean absolute values instead of standard deviations.", std_hint,
                  lambda: math.log10(float(update.abs().mean() / w.abs().mean()))),
            Wrong("you divided variances: the ratio of standard deviations is their square "
                  "root, so your log10 is twice the right one.", "use .std(), not .var().",
                  lambda: 2 * expected),
            Wrong("you divided norms: a norm also counts the mean (and grows with the number "
                  "of elements), a standard deviation only the spread around it.", std_hint,
                  lambda: math.log10(float(update.norm() / w.norm()))),
            Wrong("you took the spread of the elementwise ratio lr * grad / weight; the ratio "
                  "is between the two spreads.",
                  "divide the std of the whole update by the std of the whole weight.",
                  lambda: math.log10(float((update / w).std()))),
        ], otherwise=Mistake(
            f"for weights of shape {tuple(w.shape)} and lr={lr} you returned {out:.6g}, "
            f"expected {expected:.6g}.", "compute log10( (lr * grad).std() / weight.std() )."))
    return "update_to_data_ratio is correct: log10(std(lr * grad) / std(weight))."
