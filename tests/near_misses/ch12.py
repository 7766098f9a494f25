"""Chapter 12, "Diagnostics in practice": update:data ratios, massive activations.

The cell after the first exercise compares the ratios with the toolkit's floats
and prints the result; the cell after the second prints the flagged list.  Both
exercises say what to return (Python floats; the list of names, in the dict's order).
"""

import math
import statistics
import warnings

import numpy as np
import torch

from checker_run import _not_implemented
from near_misses import Attempt, Exercise, attempts
from normcourse.exercises.diagnostics_practice import (
    check_flag_massive, check_update_data_ratios, flag_massive, update_data_ratios,
)

NOTEBOOK = "notebooks/12_diagnostics_in_practice.ipynb"


# ------------------------------------------------------------------ update:data ratios

def _ratios(before, after, value=lambda d, b, a: (d.std() / b.std()).item(),
            keep=lambda p: p.numel() > 1):
    """the chapter's"""
    return {n: value(after[n] - p, p, after[n]) for n, p in before.items() if keep(p)}


def _loop(before, after):
    """a loop, float()"""
    out = {}
    for name, p in before.items():
        if p.numel() < 2:
            continue
        out[name] = float((after[name] - p).std() / p.std())
    return out


def _biased(before, after):
    """biased standard deviations"""
    # the n / (n - 1) correction cancels between the two standard deviations
    return _ratios(before, after, lambda d, b, a: (d.std(correction=0) / b.std(correction=0)).item())


def _numpy(before, after):
    """NumPy, np.float32 values"""
    return {n: np.std(after[n].numpy() - p.numpy()) / np.std(p.numpy())    # np.float32
            for n, p in before.items() if p.size().numel() > 1}


def _centred_sums(before, after):
    """sums of centred squares"""
    out = {}
    for n, p in before.items():
        if p.numel() > 1:
            d = after[n] - p
            out[n] = math.sqrt(((d - d.mean()) ** 2).sum() / ((p - p.mean()) ** 2).sum())
    return out


def _float64(before, after):
    """in float64"""
    return _ratios(before, after, lambda d, b, a: float((a.double() - b.double()).std() / b.double().std()))


def _in_place(before, after):
    for n in after:
        after[n].sub_(before[n])                         # changes the caller's tensors
    return {n: float(after[n].std() / p.std()) for n, p in before.items() if p.numel() > 1}


def _single_entries_kept(before, after):
    with warnings.catch_warnings():                      # the std of one entry warns (NaN)
        warnings.simplefilter("ignore")
        return _ratios(before, after, lambda d, b, a: float(d.std() / b.std()), keep=lambda p: True)


def _pops_scalars(before, after):
    for n in [n for n, p in before.items() if p.numel() == 1]:
        before.pop(n)                                    # changes the caller's dict
    return _ratios(before, after)


def _clamped(before, after):
    """the toolkit's clamp_min(1e-12)"""
    return _ratios(before, after, lambda d, p, q: (d.std() / p.std().clamp_min(1e-12)).item())


RATIO_NEAR_MISSES = (
    Attempt("log10 of the ratio", lambda b, a: _ratios(b, a, lambda d, p, q: math.log10(
        max(float(d.std() / p.std()), 1e-30))), ("log10",)),
    Attempt("divided by std(after)", lambda b, a: _ratios(b, a, lambda d, p, q: float(d.std() / q.std())),
            ("*after* the step",)),
    Attempt("std(after) / std(before)", lambda b, a: _ratios(b, a, lambda d, p, q: float(q.std() / p.std())),
            ("std(after) / std(before)",)),
    Attempt("difference of the stds", lambda b, a: _ratios(
        b, a, lambda d, p, q: float((q.std() - p.std()) / p.std())),
            ("difference of the standard deviations",)),
    Attempt("variances", lambda b, a: _ratios(b, a, lambda d, p, q: float(d.var() / p.var())),
            ("variances",)),
    Attempt("norms", lambda b, a: _ratios(b, a, lambda d, p, q: float(d.norm() / p.norm())), ("norms",)),
    Attempt("RMS values", lambda b, a: _ratios(
        b, a, lambda d, p, q: float(d.pow(2).mean().sqrt() / p.pow(2).mean().sqrt())), ("RMS",)),
    Attempt("upside down", lambda b, a: _ratios(b, a, lambda d, p, q: float(p.std() / d.std())),
            ("upside down",)),
    Attempt("mean absolute values", lambda b, a: _ratios(
        b, a, lambda d, p, q: float(d.abs().mean() / p.abs().mean())), ("mean absolute",)),
    Attempt("single-entry parameters kept", _single_entries_kept, ("single entry",)),
    Attempt("matrices only (p.dim() >= 2)", lambda b, a: _ratios(b, a, keep=lambda p: p.dim() >= 2),
            ("p.dim() >= 2", "numel")),
    Attempt("0-d tensors, not floats", lambda b, a: _ratios(b, a, lambda d, p, q: d.std() / p.std()),
            ("is a tensor", ".item()")),
    Attempt("per-entry tensors", lambda b, a: _ratios(b, a, lambda d, p, q: d / p.std()), ("single number",)),
    Attempt("a list", lambda b, a: list(_ratios(b, a).values()), ("expected a dict",)),
    Attempt("after -= before in place", _in_place, ("in place",)),
    Attempt("pops the scalars from `before`", _pops_scalars, ("changed the dict", "before")),
    Attempt("10% too large", lambda b, a: _ratios(b, a, lambda d, p, q: 1.1 * (d.std() / p.std()).item()),
            ("expected",)),
    Attempt("the stub", _not_implemented, ("not implemented",)),
    Attempt("p.shape[0] > 1", lambda b, a: _ratios(b, a, keep=lambda p: p.shape[0] > 1),
            ("p.shape[0] > 1", "numel")),
    Attempt("len(p) > 1", lambda b, a: _ratios(b, a, keep=lambda p: len(p) > 1), ("first dimension",)),
    Attempt("constant weights dropped", lambda b, a: _ratios(b, a, keep=lambda p: p.numel() > 1
                                                             and p.std() > 0), ("std(before) is 0",)),
    Attempt("ratio 0 for a constant weight", lambda b, a: _ratios(
        b, a, lambda d, p, q: (d.std() / p.std()).item() if p.std() > 0 else 0.0), ("all equal", "inf")),
)


# ------------------------------------------------------------------ massive activations

def _flags(acts, threshold, ratio=lambda a: a.abs().max() / a.abs().median(), above=None):
    """the chapter's"""
    above = above or (lambda r, t: r > t)
    return [n for n, a in acts.items() if above(ratio(a.flatten()), threshold)]


def _sorted_middle(acts, threshold):
    """sorted magnitudes, the middle one"""
    out = []
    for name, a in acts.items():
        m = a.abs().flatten().sort().values
        if m[-1] / m[(len(m) - 1) // 2] > threshold:
            out.append(name)
    return out


def _statistics(acts, threshold):
    """statistics.median, multiplied through"""
    out = []
    for name, a in acts.items():
        values = [abs(v) for v in a.flatten().tolist()]
        if max(values) > threshold * statistics.median(values):
            out.append(name)
    return out


def _numpy_flags(acts, threshold):
    """NumPy"""
    return [n for n, a in acts.items()
            if np.abs(a.numpy()).max() / np.median(np.abs(a.numpy())) > threshold]


def _quantile(acts, threshold):
    """torch.quantile(0.5)"""
    return [n for n, a in acts.items() if a.abs().max() / torch.quantile(a.abs().flatten(), 0.5) > threshold]


def _pops(acts, threshold):
    flagged = []
    for name in list(acts):
        a = acts.pop(name)                               # empties the caller's dict
        if a.abs().max() / a.abs().median() > threshold:
            flagged.append(name)
    return flagged


def _item_loop(acts, threshold):
    """a loop, .item() before comparing"""
    return [n for n, a in acts.items() if (a.abs().max() / a.abs().median()).item() > threshold]


MASSIVE_NEAR_MISSES = (
    Attempt("signed median", lambda acts, t: _flags(acts, t, lambda a: a.abs().max() / a.median()),
            ("median of the signed values",)),
    Attempt("signed max", lambda acts, t: _flags(acts, t, lambda a: a.max() / a.abs().median()),
            ("negative activation goes unseen",)),
    Attempt("min instead of median", lambda acts, t: _flags(acts, t, lambda a: a.abs().max() / a.abs().min()),
            ("smallest |a|",)),
    Attempt("mean of |a|", lambda acts, t: _flags(acts, t, lambda a: a.abs().max() / a.abs().mean()),
            ("mean of |a|",)),
    Attempt("RMS", lambda acts, t: _flags(acts, t, lambda a: a.abs().max() / a.pow(2).mean().sqrt()),
            ("RMS",)),
    Attempt("per token", lambda acts, t: [n for n, a in acts.items()
                                          if (a.abs().amax(-1) / a.abs().median(-1).values).max() > t],
            ("per token",)),
    Attempt("per feature", lambda acts, t: [n for n, a in acts.items()
                                            if (a.abs().amax(0) / a.abs().median(0).values).max() > t],
            ("per feature",)),
    Attempt(">= threshold", lambda acts, t: _flags(acts, t, above=lambda r, th: r >= th),
            ("strictly above",)),
    Attempt("threshold fixed at 100", lambda acts, t: _flags(acts, 100.0), ("fixed at 100",)),
    Attempt("sorted names", lambda acts, t: sorted(_flags(acts, t)), ("sorted order",)),
    Attempt("reversed", lambda acts, t: _flags(acts, t)[::-1], ("wrong order",)),
    Attempt("a set", lambda acts, t: set(_flags(acts, t)), ("set",)),
    Attempt("a tuple", lambda acts, t: tuple(_flags(acts, t)), ("asks for a list",)),
    Attempt("the ratios, a dict", lambda acts, t: {n: float(a.abs().max() / a.abs().median())
                                                   for n, a in acts.items()}, ("not their ratios",)),
    Attempt("the tensors, not the names", lambda acts, t: [a for a in acts.values()
                                                           if a.abs().max() / a.abs().median() > t],
            ("names of the flagged layers",)),
    Attempt("abs_() in place", lambda acts, t: [n for n, a in acts.items()
                                                if a.abs_().max() / a.median() > t], ("in place",)),
    Attempt("pops the layers off the dict", _pops, ("changed the dict", "activations")),
    Attempt("returns None", lambda acts, t: None, ("expected a list",)),
    Attempt("the first flagged layer only", lambda acts, t: _flags(acts, t)[:1], ("expected",)),
    Attempt("the stub", _not_implemented, ("not implemented",)),
    Attempt("skips a zero median", lambda acts, t: [n for n, a in acts.items() if a.abs().median() > 0
                                                    and a.abs().max() / a.abs().median() > t],
            ("median |a| is 0", "inf")),
    Attempt("a zero median counts as ratio 0", lambda acts, t: _flags(
        acts, t, lambda a: a.abs().max() / a.abs().median() if a.abs().median() > 0 else 0.0),
            ("median |a| is 0",)),
)


CASES = [
    Exercise(
        checker=check_update_data_ratios, notebook=NOTEBOOK, function="my_update_data_ratios",
        near_misses=RATIO_NEAR_MISSES,
        right_answers=attempts(_ratios, _loop, _biased, _numpy, _centred_sums, _float64,
                              update_data_ratios, _clamped),
    ),
    Exercise(
        checker=check_flag_massive, notebook=NOTEBOOK, function="my_flag_massive",
        near_misses=MASSIVE_NEAR_MISSES,
        right_answers=attempts(_flags, _sorted_middle, _statistics, _numpy_flags, _quantile,
                              flag_massive, _item_loop),
    ),
]
