"""Chapter 9, "Training deep stacks": classify a run, count loss spikes.

The cells after the classifier compare its result with exactly "trained",
"failed" and "diverged"; the cells after the spike counter pass each stored
run's own list of losses and plot it afterwards.
"""

import statistics

import numpy as np
import torch

from near_misses import Attempt, Exercise, attempts
from normcourse.exercises.placements import (
    FAILED_MARGIN, check_classify_run, check_count_spikes, classify_run,
)
from normcourse.train import count_spikes

NOTEBOOK = "notebooks/09_training_deep_stacks.ipynb"


# ------------------------------------------------------------------ classify: right answers

def _reference(run, unigram_loss):
    """the chapter's"""
    if run["diverged"]:
        return "diverged"
    if run["val_loss"] > unigram_loss - FAILED_MARGIN:
        return "failed"
    return "trained"


def _by_none(run, unigram_loss):
    """val_loss is None means diverged"""
    # a stopped run is the one without a validation loss
    if run.get("val_loss") is None:
        return "diverged"
    return "trained" if unigram_loss - run["val_loss"] >= 0.1 else "failed"


def _table(run, unigram_loss):
    """a dict lookup"""
    if run["diverged"]:
        return "diverged"
    return {True: "failed", False: "trained"}[run["val_loss"] + 0.1 > unigram_loss]


def _not_below(run, unigram_loss):
    """<= below the line"""
    if run["diverged"] is True:
        return "diverged"
    return "trained" if run["val_loss"] <= unigram_loss - 0.1 else "failed"


# ------------------------------------------------------------------ classify: near misses

def _capitalized(run, unigram_loss):
    return _reference(run, unigram_loss).capitalize()


def _stores_outcome(run, unigram_loss):
    run["outcome"] = _reference(run, unigram_loss)       # writes into the caller's run
    return run["outcome"]


def _fills_none(run, unigram_loss):
    if run["val_loss"] is None:
        run["val_loss"] = float("inf")                   # changes the stored run
        return "diverged"
    return _reference(run, unigram_loss)


def _by_final_train_loss(run, unigram_loss):
    if run["diverged"]:
        return "diverged"
    return "failed" if run["final_train_loss"] > unigram_loss - 0.1 else "trained"


def _by_last_loss(run, unigram_loss):
    if run["diverged"]:
        return "diverged"
    return "failed" if run["loss"][-1] > unigram_loss - 0.1 else "trained"


CLASSIFY_NEAR_MISSES = (
    Attempt("'Trained' capitalized", _capitalized, ("exactly",)),
    Attempt("upper case", lambda r, u: _reference(r, u).upper(), ("exactly",)),
    Attempt("trailing newline", lambda r, u: _reference(r, u) + "\n", ("exactly", "no spaces")),
    Attempt("no margin", lambda r, u: "diverged" if r["diverged"] else
            ("failed" if r["val_loss"] > u else "trained"), ("margin",)),
    Attempt("margin added", lambda r, u: "diverged" if r["diverged"] else
            ("failed" if r["val_loss"] > u + 0.1 else "trained"), ("expected 'failed'",)),
    Attempt("margin too wide", lambda r, u: "diverged" if r["diverged"] else
            ("failed" if r["val_loss"] > u - 0.5 else "trained"), ("expected 'trained'",)),
    Attempt("comparison reversed", lambda r, u: "diverged" if r["diverged"] else
            ("failed" if r["val_loss"] < u - 0.1 else "trained"), ("expected",)),
    Attempt("val_loss read before diverged", lambda r, u: "failed" if r["val_loss"] > u - 0.1
            else "trained", ("val_loss None", "run['diverged'] first")),
    Attempt("diverged never returned", lambda r, u: "failed" if r["diverged"] or r["val_loss"] > u - 0.1
            else "trained", ("expected 'diverged'",)),
    Attempt("spikes count as divergence", lambda r, u: "diverged" if r["diverged"] or r["spikes"] > 0
            else _reference(r, u), ("not divergence",)),
    Attempt("a jump in the loss counts as divergence", lambda r, u: "diverged" if r["diverged"] or
            max(r["loss"][5:]) > 1.2 * min(r["loss"]) else _reference(r, u), ("not divergence",)),
    Attempt("failed runs called diverged", lambda r, u: "diverged" if r["diverged"] or
            r["val_loss"] > u - 0.1 else "trained", ("only run['diverged']",)),
    Attempt("final training loss", _by_final_train_loss, ("final_train_loss", "run['val_loss']")),
    Attempt("last training loss", _by_last_loss, ("run['loss'][-1]", "run['val_loss']")),
    Attempt("returns a bool", lambda r, u: not r["diverged"] and r["val_loss"] <= u - 0.1,
            ("expected one of the strings",)),
    Attempt(">= on the margin", lambda r, u: "diverged" if r["diverged"] else
            ("failed" if r["val_loss"] >= u - 0.1 else "trained"), ("strictly greater", ">=")),
    Attempt("not below, written with not <", lambda r, u: "diverged" if r["diverged"] else
            ("failed" if not r["val_loss"] < u - FAILED_MARGIN else "trained"), ("strictly",)),
    Attempt("writes the outcome into the run", _stores_outcome, ("changed the dict", "run")),
    Attempt("replaces val_loss None by inf", _fills_none, ("changed the dict", "val_loss")),
)


# ------------------------------------------------------------------ count spikes

def _rule(losses, ratio, window, median=statistics.median, lo=lambda t, w: max(0, t - w),
          end=0, once=True, strict=True):
    """the chapter's loop"""
    spikes, in_spike = 0, False
    for t in range(1, len(losses)):
        recent = losses[lo(t, window):t + end]
        line = ratio * median(recent)
        now = losses[t] > line if strict else losses[t] >= line
        if now and (not in_spike or not once):
            spikes += 1
        in_spike = now
    return spikes


def _numpy(losses, ratio, window):
    """NumPy, an np.int64"""
    values = np.asarray(losses)
    now = np.array([values[t] > ratio * np.median(values[max(0, t - window):t])
                    for t in range(1, len(values))])
    return np.sum(now & ~np.concatenate([[False], now[:-1]]))          # an np.int64


def _steps_then_runs(losses, ratio, window):
    """spike steps, then runs of them"""
    steps = [t for t in range(1, len(losses))
             if losses[t] > ratio * statistics.median(losses[max(0, t - window):t])]
    return sum(1 for i, t in enumerate(steps) if i == 0 or steps[i - 1] != t - 1)


def _ratio_form(losses, ratio, window):
    """divided through by the median"""
    # losses[t] / median > ratio: the same test, divided through
    flags = [losses[t] / statistics.median(losses[max(0, t - window):t]) > ratio
             for t in range(1, len(losses))]
    return sum(now and not before for before, now in zip([False] + flags, flags))


def _from_zero(losses, ratio, window):
    """enumerate from 0, np.median"""
    spikes, in_spike = 0, False
    for t, loss in enumerate(losses):
        if t == 0:
            continue
        now = loss > ratio * float(np.median(losses[max(0, t - window):t]))
        spikes += now and not in_spike
        in_spike = now
    return spikes


def _clips_spikes(losses, ratio, window):
    spikes, in_spike = 0, False
    for t in range(1, len(losses)):
        ref = statistics.median(losses[max(0, t - window):t])
        now = losses[t] > ratio * ref
        if now:
            losses[t] = ref                              # edits the caller's losses
        spikes += now and not in_spike
        in_spike = now
    return spikes


def _from_step_zero(losses, ratio, window):
    spikes, in_spike = 0, False
    for t in range(len(losses)):                         # median of no losses at t = 0
        now = losses[t] > ratio * statistics.median(losses[max(0, t - window):t])
        spikes += now and not in_spike
        in_spike = now
    return spikes


def _full_windows_only(losses, ratio, window):
    spikes, in_spike = 0, False
    for t in range(window, len(losses)):
        now = losses[t] > ratio * statistics.median(losses[t - window:t])
        spikes += now and not in_spike
        in_spike = now
    return spikes


def _negative_slice(losses, ratio, window, median=statistics.median):
    spikes, in_spike = 0, False
    for t in range(1, len(losses)):
        now = losses[t] > ratio * median(losses[t - window:t])    # no max(0, ...)
        spikes += now and not in_spike
        in_spike = now
    return spikes


def _negative_slice_nan(losses, ratio, window):
    # np.median of an empty slice is NaN (with a warning): no spike there
    return _negative_slice(losses, ratio, window,
                           median=lambda v: float(np.median(v)) if len(v) else float("nan"))


def _a_tensor(losses, ratio, window):
    """a 0-d tensor"""
    return torch.tensor(count_spikes(losses, ratio, window))


SPIKE_NEAR_MISSES = (
    Attempt("a string", lambda l, r, w: "3", ("whole number",)),
    Attempt("NaN", lambda l, r, w: float("nan"), ("whole number, got nan",)),
    Attempt("inf", lambda l, r, w: float("inf"), ("whole number, got inf",)),
    Attempt("a fraction", lambda l, r, w: 2.5, ("whole number, got 2.5",)),
    Attempt("always 0", lambda l, r, w: 0, ("expected",)),
    Attempt("every step counted", lambda l, r, w: _rule(l, r, w, once=False), ("counts once",)),
    Attempt("mean, not median", lambda l, r, w: _rule(l, r, w, median=statistics.mean), ("mean",)),
    Attempt("window includes step t", lambda l, r, w: _rule(l, r, w, end=1), ("includes step t",)),
    Attempt("torch.median (the lower middle value)",
            lambda l, r, w: _rule(l, r, w, median=lambda v: torch.tensor(v).median().item()),
            ("lower of the two middle",)),
    Attempt("sorted(w)[len(w) // 2] (the upper middle value)",
            lambda l, r, w: _rule(l, r, w, median=lambda v: sorted(v)[len(v) // 2]),
            ("upper of the two middle",)),
    Attempt("window - 1 losses", lambda l, r, w: _rule(l, r, w, lo=lambda t, n: max(0, t - n + 1)),
            ("window - 1",)),
    Attempt("window + 1 losses", lambda l, r, w: _rule(l, r, w, lo=lambda t, n: max(0, t - n - 1)),
            ("window + 1",)),
    Attempt("median of all earlier losses", lambda l, r, w: _rule(l, r, w, lo=lambda t, n: 0),
            ("every earlier loss",)),
    Attempt("previous loss only", lambda l, r, w: _rule(l, r, w, lo=lambda t, n: t - 1),
            ("previous loss only",)),
    Attempt("only full windows", _full_windows_only, ("window had to be full",)),
    Attempt(">= instead of >", lambda l, r, w: _rule(l, r, w, strict=False), ("strictly above",)),
    Attempt("ratio fixed at 1.2", lambda l, r, w: _rule(l, 1.2, w), ("ratio",)),
    Attempt("window fixed at 20", lambda l, r, w: _rule(l, r, 20), ("window",)),
    Attempt("clips the spikes in the caller's list", _clips_spikes, ("changed the list", "losses")),
    Attempt("starts at t = 0", _from_step_zero, ("start at t = 1",)),
    Attempt("t - window without max(0, ...)", _negative_slice, ("max(0, t - window)",)),
    Attempt("t - window without max(0, ...), np.median", _negative_slice_nan, ("starts from the end",)),
    Attempt("returns the spike steps", lambda l, r, w: [t for t in range(1, len(l)) if l[t] > r *
                                                        statistics.median(l[max(0, t - w):t])],
            ("whole number", "list")),
)


SPIKE_RIGHT_ANSWERS = attempts(_rule, _numpy, _steps_then_runs, _ratio_form, _from_zero,
                              count_spikes, _a_tensor)

CASES = [  # Exercise(checker, notebook, function, near misses, right answers)
    Exercise(check_classify_run, NOTEBOOK, "my_classify_run", CLASSIFY_NEAR_MISSES,
             attempts(_reference, _by_none, _table, _not_below, classify_run)),
    Exercise(check_count_spikes, NOTEBOOK, "my_count_spikes", SPIKE_NEAR_MISSES,
             SPIKE_RIGHT_ANSWERS),
]
