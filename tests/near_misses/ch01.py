"""Chapter 1, "Why deep networks break": near misses and unusual right answers."""

from __future__ import annotations

import math

import numpy as np
import torch

from checker_run import _not_implemented
from near_misses import Attempt, Exercise
from normcourse.exercises.signal_propagation import (
    check_fraction_saturated, check_update_to_data_ratio,
)

NOTEBOOK = "notebooks/01_why_deep_networks_break.ipynb"


# ---- fraction_saturated(a, threshold) -------------------------------------------------

def _sat_loop(a, threshold):
    count = 0
    for v in a.flatten().tolist():
        if abs(v) > threshold:
            count += 1
    return count / a.numel()


def _sat_two_sided(a, threshold):
    return ((a > threshold) | (a < -threshold)).sum().item() / a.numel()


def _sat_numpy(a, threshold):
    return np.mean(np.abs(a.numpy()) > threshold)        # a np.float64


def _sat_tensor(a, threshold):
    return (a.abs() > threshold).double().mean()           # a 0-d tensor


def _sat_count_nonzero(a, threshold):
    return torch.count_nonzero(a.abs() > threshold) / a.numel()


def _sat_flat_per_row(a, threshold):
    # averages per row first: the same number when every row has the same length
    flat = a.reshape(a.shape[0], -1)
    return (flat.abs() > threshold).float().mean(dim=1).mean().item()


FRACTION_SATURATED = Exercise(
    check_fraction_saturated, NOTEBOOK, "fraction_saturated",
    near_misses=(
        Attempt("no abs(): only +1 counts",
                lambda a, t: (a > t).float().mean().item(), ("near +1",)),
        Attempt("a percentage", lambda a, t: 100 * (a.abs() > t).float().mean().item(),
                ("percentage",)),
        Attempt("a count", lambda a, t: int((a.abs() > t).sum()), ("number of saturated",)),
        Attempt("the unsaturated share", lambda a, t: (a.abs() < t).float().mean().item(),
                ("not* saturated",)),
        Attempt("the chapter's 0.97, not the argument",
                lambda a, t: (a.abs() > 0.97).float().mean().item(), ("threshold argument",)),
        Attempt("per-row fractions (a tensor)",
                lambda a, t: (a.abs() > t).float().mean(dim=-1), ("single number",)),
        Attempt("divided by the first two sizes only",
                lambda a, t: float((a.abs() > t).sum()) / (a.shape[0] * a.shape[-1]),
                ("shape (3, 7, 11)",)),
        Attempt("divided by len(a)", lambda a, t: float((a.abs() > t).sum()) / len(a),
                ("divide by the number of entries",)),
        Attempt("integer division", lambda a, t: int((a.abs() > t).sum()) // a.numel(),
                ("divide by the number of entries",)),
        Attempt("mean of a bool tensor", lambda a, t: (a.abs() > t).mean(),
                ("raised RuntimeError",)),
        Attempt("abs_() in place", lambda a, t: (a.abs_() > t).float().mean().item(),
                ("in place",)),
        Attempt("mean |a| compared with the threshold",
                lambda a, t: float(a.abs().mean() > t), ("count entries",)),
        Attempt("forgot return", lambda a, t: None, ("return",)),
        Attempt("is any saturated?", lambda a, t: bool((a.abs() > t).any()), ("got bool",)),
        Attempt(">= instead of >", lambda a, t: (a.abs() >= t).float().mean().item(),
                ("equal to the threshold", "use >")),
        Attempt("a python loop with >=",
                lambda a, t: sum(abs(v) >= t for v in a.flatten().tolist()) / a.numel(),
                ("equal to the threshold",)),
        Attempt("abs() of the mean, not of each entry",
                lambda a, t: float(a.mean().abs() > t), ("count entries",)),
    ),
    right_answers=(
        Attempt("python loop", _sat_loop),
        Attempt("two one-sided tests", _sat_two_sided),
        Attempt("numpy", _sat_numpy),
        Attempt("0-d tensor", _sat_tensor),
        Attempt("count_nonzero / numel", _sat_count_nonzero),
        Attempt("mean of equal-length row means", _sat_flat_per_row),
        Attempt("torch.sum / torch.numel",
                lambda a, t: torch.sum(a.abs() > t) / torch.numel(a)),
    ),
)


# ---- update_to_data_ratio(weight, grad, lr) -------------------------------------------

def _ratio_log_sum(w, g, lr):
    return math.log10(lr) + math.log10(float(g.std())) - math.log10(float(w.std()))


def _ratio_biased_std(w, g, lr):
    # the N / (N - 1) factors of two biased stds over equally many elements cancel
    return float(np.log10(np.std((lr * g).numpy()) / np.std(w.numpy())))


def _ratio_tensor(w, g, lr):
    return torch.log10((lr * g).std() / w.std())


def _ratio_natural_log_converted(w, g, lr):
    return math.log(float((lr * g).std() / w.std())) / math.log(10)


def _ratio_float64(w, g, lr):
    return math.log10(float((lr * g.double()).std() / w.double().std()))


UPDATE_TO_DATA_RATIO = Exercise(
    check_update_to_data_ratio, NOTEBOOK, "update_to_data_ratio",
    near_misses=(
        Attempt("no log10", lambda w, g, lr: float((lr * g).std() / w.std()),
                ("the ratio itself", "log10")),
        Attempt("lr forgotten", lambda w, g, lr: math.log10(float(g.std() / w.std())),
                ("learning rate is missing",)),
        Attempt("upside down", lambda w, g, lr: math.log10(float(w.std() / (lr * g).std())),
                ("upside down",)),
        Attempt("natural log", lambda w, g, lr: math.log(float((lr * g).std() / w.std())),
                ("natural logarithm",)),
        Attempt("mean |.| instead of std",
                lambda w, g, lr: math.log10(float((lr * g).abs().mean() / w.abs().mean())),
                ("mean absolute",)),
        Attempt("variances instead of stds",
                lambda w, g, lr: math.log10(float((lr * g).var() / w.var())), ("variance",)),
        Attempt("norms instead of stds",
                lambda w, g, lr: math.log10(float((lr * g).norm() / w.norm())), ("norm",)),
        Attempt("std of the elementwise ratio",
                lambda w, g, lr: math.log10(float((lr * g / w).std())), ("element",)),
        Attempt("ratio of the logs",
                lambda w, g, lr: math.log10(float((lr * g).std())) / math.log10(float(w.std())),
                ("log10( (lr * grad).std() / weight.std() )",)),
        Attempt("per-column stds (a tensor)",
                lambda w, g, lr: torch.log10((lr * g).std(0) / w.std(0)), ("single number",)),
        Attempt("a percentage", lambda w, g, lr: 100 * float((lr * g).std() / w.std()),
                ("log10",)),
        Attempt("a stub", lambda w, g, lr: _not_implemented(), ("not implemented",)),
        Attempt("norms, and off by a constant",
                lambda w, g, lr: math.log10(float((lr * g).norm() / w.norm())) + 0.5,
                ("expected",)),
        Attempt("grad scaled in place", lambda w, g, lr: math.log10(float(g.mul_(lr).std() / w.std())),
                ("in place",)),
    ),
    right_answers=(
        Attempt("sum of logs", _ratio_log_sum),
        Attempt("numpy, biased std", _ratio_biased_std),
        Attempt("0-d tensor", _ratio_tensor),
        Attempt("ln / ln 10", _ratio_natural_log_converted),
        Attempt("float64 inside", _ratio_float64),
        Attempt("difference of tensor log10s",
                lambda w, g, lr: (lr * g).std().log10() - w.std().log10()),
    ),
)

CASES = [FRACTION_SATURATED, UPDATE_TO_DATA_RATIO]
