"""Checkers of chapters 8-9 accept right answers (also equivalent formulations) and reject typical
wrong ones with a specific message."""

import math
import statistics

import numpy as np
import pytest
import torch

from checker_run import run, _not_implemented

from normcourse.exercises import placements as pl
from normcourse.exercises.feedback import PASS


# ------------------------------------------------------------------ Pre-LN block

def _pre_loop(x, attn, mlp, na, nm):
    for sub, norm in ((attn, na), (mlp, nm)):
        x = x + sub(norm(x))
    return x


@pytest.mark.parametrize("fn", [
    lambda x, a, m, na, nm: (lambda h: h + m(nm(h)))(x + a(na(x))),
    _pre_loop,
])
def test_pre_ln_accepts(fn, capsys):
    ok, out = run(pl.check_pre_ln_block, fn, capsys)
    assert ok, out
    assert PASS in out


@pytest.mark.parametrize("fn, message", [
    (lambda x, a, m, na, nm: (lambda h: nm(h + m(h)))(na(x + a(x))), "Post-LN"),
    (lambda x, a, m, na, nm: x + a(na(x)) + m(nm(x)), "parallel"),
    (lambda x, a, m, na, nm: m(nm(a(na(x)))), "skip) connections are missing"),
    (lambda x, a, m, na, nm: (lambda h: h + m(na(h)))(x + a(na(x))), "its own norm"),
    (lambda x, a, m, na, nm: (lambda h: h + m(h))(x + a(na(x))), "no norm before the MLP"),
    (lambda x, a, m, na, nm: (lambda h: nm(h + m(nm(h))))(x + a(na(x))), "normalized the block's output"),
    (lambda x, a, m, na, nm: (lambda h: h + m(nm(h)))(na(x) + a(na(x))), "normalized input"),
    (lambda x, a, m, na, nm: (lambda h: h + 0.5 * m(nm(h)))(x + a(na(x))), "largest error"),
    (lambda x, a, m, na, nm: (x + a(na(x))).float(), "dtype"),
    (_not_implemented, "not implemented"),
])
def test_pre_ln_rejects(fn, message, capsys):
    ok, out = run(pl.check_pre_ln_block, fn, capsys)
    assert not ok
    assert message in out, out


# ------------------------------------------------------------------ DeepNorm residual

@pytest.mark.parametrize("fn", [
    lambda x, f, norm, alpha: norm(alpha * x + f(x)),
    lambda x, f, norm, alpha: norm(torch.add(f(x), x, alpha=alpha)),
])
def test_deepnorm_accepts(fn, capsys):
    ok, out = run(pl.check_deepnorm_residual, fn, capsys)
    assert ok, out


@pytest.mark.parametrize("fn, message", [
    (lambda x, f, norm, alpha: norm(x + alpha * f(x)), "LN(x + alpha*F(x))"),
    (lambda x, f, norm, alpha: norm(x + f(x)), "alpha is not used"),
    (lambda x, f, norm, alpha: alpha * norm(x + f(x)), "output of the norm"),
    (lambda x, f, norm, alpha: alpha * x + f(x), "norm is missing"),
    (lambda x, f, norm, alpha: norm(alpha * x + f(norm(x))), "Pre-LN style"),
    (lambda x, f, norm, alpha: norm(alpha * (x + f(x))), "whole sum"),
    (lambda x, f, norm, alpha: norm(alpha ** 2 * x + f(x)), "largest error"),
    (lambda x, f, norm, alpha: None, "torch.Tensor"),
])
def test_deepnorm_rejects(fn, message, capsys):
    ok, out = run(pl.check_deepnorm_residual, fn, capsys)
    assert not ok
    assert message in out, out


# ------------------------------------------------------------------ classify a run

def _classify_alt(run, unigram):
    if run.get("val_loss") is None:
        return "diverged"
    return "trained" if unigram - run["val_loss"] >= 0.1 else "failed"


@pytest.mark.parametrize("fn", [pl.classify_run, _classify_alt])
def test_classify_accepts(fn, capsys):
    ok, out = run(pl.check_classify_run, fn, capsys)
    assert ok, out


@pytest.mark.parametrize("fn, message", [
    (lambda r, u: "failed" if r["diverged"] or r["val_loss"] > u - 0.1 else "trained", "expected 'diverged'"),
    (lambda r, u: "diverged" if r["diverged"] or r["val_loss"] > u - 0.1 else "trained",
     "only run['diverged']"),
    (lambda r, u: "diverged" if r["diverged"] else ("failed" if r["val_loss"] > u else "trained"),
     "mind the margin"),
    (lambda r, u: "diverged" if r["diverged"] else ("failed" if r["val_loss"] > u - 0.5 else "trained"),
     "expected 'trained'"),
    (lambda r, u: "diverged" if r["diverged"] or max(r["loss"][5:]) > 1.2 * min(r["loss"]) else
     ("failed" if r["val_loss"] > u - 0.1 else "trained"), "not divergence"),
    (lambda r, u: "diverged" if r["diverged"] or r["spikes"] > 0 else          # the engine's spike count
     ("failed" if r["val_loss"] > u - 0.1 else "trained"), "not divergence"),
    (lambda r, u: r["val_loss"] > u - 0.1, "expected one of the strings"),
    (lambda r, u: "failed" if r["val_loss"] > u - 0.1 else "trained", "TypeError"),
    # the chapter compares the outcome with exactly 'trained', 'failed', 'diverged'
    (lambda r, u: pl.classify_run(r, u).upper(), "must be exactly 'diverged'"),
    (lambda r, u: pl.classify_run(r, u) + " ", "(lower case, no spaces)"),
])
def test_classify_rejects(fn, message, capsys):
    ok, out = run(pl.check_classify_run, fn, capsys)
    assert not ok
    assert message in out, out


@pytest.mark.parametrize("key, shown", [
    ("final_train_loss", "run['final_train_loss']"),
    ("loss", "run['loss'][-1]"),
])
def test_classify_rejects_the_training_loss(key, shown, capsys):
    def by_train_loss(r, u):
        if r["diverged"]:
            return "diverged"
        train = r["loss"][-1] if key == "loss" else r[key]
        return "failed" if train > u - 0.1 else "trained"
    ok, out = run(pl.check_classify_run, by_train_loss, capsys)
    assert not ok
    assert shown in out and "run['val_loss']" in out, out


def test_classify_explains_the_none_of_a_diverged_run(capsys):
    ok, out = run(pl.check_classify_run,
                  lambda r, u: "failed" if r["val_loss"] > u - 0.1 else "trained", capsys)
    assert not ok
    assert "val_loss None" in out and "run['diverged'] first" in out, out
    assert "print the shapes" not in out


# ------------------------------------------------------------------ count spikes

def _spikes_alt(losses, ratio, window):
    count, prev = 0, False
    for t in range(1, len(losses)):
        now = losses[t] > ratio * float(torch.tensor(losses[max(0, t - window):t]).median()) \
            if len(losses[max(0, t - window):t]) % 2 else \
            losses[t] > ratio * statistics.median(losses[max(0, t - window):t])
        count += now and not prev
        prev = now
    return count


def _spikes_every_step(losses, ratio, window):
    return sum(losses[t] > ratio * statistics.median(losses[max(0, t - window):t])
               for t in range(1, len(losses)))


def _spikes_mean(losses, ratio, window):
    count, prev = 0, False
    for t in range(1, len(losses)):
        now = losses[t] > ratio * statistics.mean(losses[max(0, t - window):t])
        count += now and not prev
        prev = now
    return count


def _spikes_including_now(losses, ratio, window):
    count, prev = 0, False
    for t in range(1, len(losses)):
        now = losses[t] > ratio * statistics.median(losses[max(0, t - window):t + 1])
        count += now and not prev
        prev = now
    return count


def _spikes_min(losses, ratio, window):
    count, prev = 0, False
    for t in range(1, len(losses)):
        now = losses[t] > ratio * min(losses[max(0, t - window):t])
        count += now and not prev
        prev = now
    return count


def _spikes_numpy(losses, ratio, window):
    # vectorised: the count comes back as np.int64, which is a whole number too
    L = np.asarray(losses)
    now = np.array([L[t] > ratio * np.median(L[max(0, t - window):t]) for t in range(1, len(L))])
    return np.sum(now & ~np.concatenate([[False], now[:-1]]))


@pytest.mark.parametrize("fn", [pl.count_spikes, _spikes_alt, _spikes_numpy,
                                lambda losses, ratio, window: torch.tensor(pl.count_spikes(
                                    losses, ratio, window))])
def test_count_spikes_accepts(fn, capsys):
    ok, out = run(pl.check_count_spikes, fn, capsys)
    assert ok, out


@pytest.mark.parametrize("fn, message", [
    (_spikes_every_step, "counts once"),
    (_spikes_mean, "median"),
    (_spikes_including_now, "includes step t itself"),
    (_spikes_min, "expected"),
    (lambda losses, ratio, window: "3", "whole number"),
    (lambda losses, ratio, window: float("nan"), "whole number, got nan"),
    (lambda losses, ratio, window: float("inf"), "whole number, got inf"),
    (lambda losses, ratio, window: 2.5, "whole number, got 2.5"),
    (lambda losses, ratio, window: 0, "expected"),
])
def test_count_spikes_rejects(fn, message, capsys):
    ok, out = run(pl.check_count_spikes, fn, capsys)
    assert not ok
    assert message in out, out
    assert "checker itself failed" not in out


def test_checkers_need_a_function(capsys):
    assert not pl.check_pre_ln_block(None)
    assert "needs your function" in capsys.readouterr().out


def test_failed_margin_matches_the_reference():
    run_ = {"diverged": False, "val_loss": 3.0}
    assert pl.classify_run(run_, 3.0 + pl.FAILED_MARGIN / 2) == "failed"
    assert pl.classify_run(run_, 3.0 + 2 * pl.FAILED_MARGIN) == "trained"
    assert math.isclose(pl.FAILED_MARGIN, 0.1)
