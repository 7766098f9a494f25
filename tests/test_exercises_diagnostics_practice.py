"""Checkers of chapter 12 accept right answers (also equivalent formulations) and reject typical
wrong ones with a specific message."""

import math

import numpy as np
import pytest
import torch

from checker_run import run, _not_implemented

from normcourse.exercises import diagnostics_practice as dp
from normcourse.exercises.feedback import FAIL, PASS

# a wrong answer below takes the std of a single entry on purpose
pytestmark = pytest.mark.filterwarnings("ignore:std\\(\\)")


# ------------------------------------------------------------------ update:data ratio

def _ratios_loop(before, after):
    out = {}
    for name in before:
        if before[name].numel() < 2:
            continue
        delta = after[name] - before[name]
        out[name] = (delta.std() / before[name].std()).item()
    return out


def _ratios_biased(before, after):
    # the n/(n-1) correction cancels between numerator and denominator
    return {n: (torch.std(after[n] - p, correction=0) / torch.std(p, correction=0)).item()
            for n, p in before.items() if p.numel() > 1}


def _ratios_centred(before, after):
    out = {}
    for n, p in before.items():
        if p.numel() > 1:
            d = after[n] - p
            out[n] = math.sqrt(((d - d.mean()) ** 2).sum() / ((p - p.mean()) ** 2).sum())
    return out


def _ratios_numpy(before, after):
    # NumPy float32 values are numbers too
    return {n: np.float32(np.std(after[n].numpy() - p.numpy()) / np.std(p.numpy()))
            for n, p in before.items() if p.numel() > 1}


@pytest.mark.parametrize("fn", [dp.update_data_ratios, _ratios_loop, _ratios_biased, _ratios_centred,
                                _ratios_numpy])
def test_update_ratios_accepts(fn, capsys):
    ok, out = run(dp.check_update_data_ratios, fn, capsys)
    assert ok, out
    assert PASS in out


def _inplace(before, after):
    for n in after:
        after[n].sub_(before[n])
    return {n: after[n].std() / p.std() for n, p in before.items() if p.numel() > 1}


@pytest.mark.parametrize("fn, message", [
    (lambda b, a: {n: math.log10(max(float((a[n] - p).std() / p.std()), 1e-30))
                   for n, p in b.items() if p.numel() > 1}, "log10"),
    (lambda b, a: {n: float((a[n] - p).std() / a[n].std()) for n, p in b.items() if p.numel() > 1},
     "*after* the step"),
    (lambda b, a: {n: float(a[n].std() / p.std()) for n, p in b.items() if p.numel() > 1},
     "std(after) / std(before)"),
    (lambda b, a: {n: float((a[n] - p).norm() / p.norm()) for n, p in b.items() if p.numel() > 1},
     "norms"),
    (lambda b, a: {n: float(p.std() / (a[n] - p).std()) for n, p in b.items() if p.numel() > 1},
     "upside down"),
    (lambda b, a: {n: float((a[n] - p).abs().mean() / p.abs().mean()) for n, p in b.items()
                   if p.numel() > 1}, "mean absolute"),
    (lambda b, a: {n: float((a[n] - p).std() / p.std()) for n, p in b.items()}, "single entry"),
    (lambda b, a: {n: float((a[n] - p).std() / p.std()) for n, p in b.items() if p.dim() == 2},
     "no entry for"),
    (lambda b, a: {n: (a[n] - p) / p.std() for n, p in b.items() if p.numel() > 1}, "single number"),
    (lambda b, a: [float((a[n] - p).std() / p.std()) for n, p in b.items()], "expected a dict"),
    (lambda b, a: {n: 1.1 * float((a[n] - p).std() / p.std()) for n, p in b.items()
                   if p.numel() > 1}, "expected"),
    (_inplace, "in place"),
    (_not_implemented, "not implemented"),
    # the exercise asks for Python floats: the chapter prints comparisons of them
    (lambda b, a: {n: (a[n] - p).std() / p.std() for n, p in b.items() if p.numel() > 1},
     "is a tensor"),
])
def test_update_ratios_rejects(fn, message, capsys):
    ok, out = run(dp.check_update_data_ratios, fn, capsys)
    assert not ok
    assert FAIL in out
    assert message in out, out


# ------------------------------------------------------------------ massive activations

def _flag_loop(acts, threshold):
    flagged = []
    for name, a in acts.items():
        m = a.abs().flatten()
        if (m.max() / m.median()).item() > threshold:
            flagged.append(name)
    return flagged


def _flag_sorted(acts, threshold):
    # sort the magnitudes and take the middle one: the same median for an odd count
    out = []
    for name, a in acts.items():
        m = a.abs().flatten().sort().values
        if m[-1] / m[(len(m) - 1) // 2] > threshold:
            out.append(name)
    return out


@pytest.mark.parametrize("fn", [dp.flag_massive, _flag_loop, _flag_sorted])
def test_flag_massive_accepts(fn, capsys):
    ok, out = run(dp.check_flag_massive, fn, capsys)
    assert ok, out
    assert PASS in out


def _flag_with(ratio):
    return lambda acts, threshold: [n for n, a in acts.items() if ratio(a.flatten()) > threshold]


def _abs_inplace(acts, threshold):
    return [n for n, a in acts.items() if a.abs_().max() / a.median() > threshold]


@pytest.mark.parametrize("fn, message", [
    (_flag_with(lambda m: m.abs().max() / m.median()), "median of the signed values"),
    (_flag_with(lambda m: m.max() / m.abs().median()), "negative activation goes unseen"),
    (_flag_with(lambda m: m.abs().max() / m.abs().mean()), "mean of |a|"),
    (_flag_with(lambda m: m.abs().max() / m.pow(2).mean().sqrt()), "RMS"),
    (lambda acts, threshold: _flag_loop(acts, 100.0), "fixed at 100"),
    (lambda acts, threshold: _flag_loop(acts, threshold)[::-1], "wrong order"),
    (lambda acts, threshold: set(_flag_loop(acts, threshold)), "set"),
    (lambda acts, threshold: tuple(_flag_loop(acts, threshold)), "asks for a list"),
    (lambda acts, threshold: sorted(_flag_loop(acts, threshold)), "in sorted order"),
    (lambda acts, threshold: {n: float(a.abs().max() / a.abs().median()) for n, a in acts.items()},
     "not their ratios"),
    (lambda acts, threshold: None, "expected a list"),
    (lambda acts, threshold: _flag_loop(acts, threshold)[:1], "expected"),
    (_abs_inplace, "in place"),
    (_not_implemented, "not implemented"),
    # the ratio of each token (row), or of each feature, instead of the whole tensor's
    (lambda acts, t: [n for n, a in acts.items()
                      if (a.abs().amax(-1) / a.abs().median(-1).values).max() > t], "per token"),
    (lambda acts, t: [n for n, a in acts.items()
                      if (a.abs().amax(0) / a.abs().median(0).values).max() > t], "per feature"),
    # the activations instead of their names
    (lambda acts, t: [a for a in acts.values() if a.abs().max() / a.abs().median() > t],
     "names of the flagged layers"),
])
def test_flag_massive_rejects(fn, message, capsys):
    ok, out = run(dp.check_flag_massive, fn, capsys)
    assert not ok
    assert FAIL in out
    assert message in out, out
    assert "checker itself failed" not in out


def test_non_callable(capsys):
    assert not dp.check_flag_massive(None)
    assert "needs your function" in capsys.readouterr().out
