"""Checkers for the chapter "Diagnostics in practice".

- :func:`check_update_data_ratios`: the update:data ratio of every parameter from
  its values before and after an optimizer step (any optimizer).
- :func:`check_flag_massive`: the layers whose max/median ratio of |activation|
  exceeds a threshold (the "massive activations" flag).

Both take dicts keyed by parameter or layer name, the way
:class:`normcourse.diagnostics.Diagnostics` keeps its records.
"""

from __future__ import annotations

import math

import torch

from normcourse.exercises.feedback import Mistake, as_number, call_learner, checker

__all__ = ["check_update_data_ratios", "check_flag_massive", "update_data_ratios", "flag_massive"]


def update_data_ratios(before: dict, after: dict) -> dict:
    """The reference: std(after - before) / std(before) for every tensor with more than one entry."""
    return {name: float((after[name].double() - p.double()).std() / p.double().std())
            for name, p in before.items() if p.numel() > 1}


def flag_massive(activations: dict, threshold: float) -> list:
    """The reference: names, in order, whose max |a| / median |a| exceeds ``threshold``."""
    flagged = []
    for name, a in activations.items():
        mag = a.detach().double().abs().flatten()
        if mag.max() / mag.median() > threshold:
            flagged.append(name)
    return flagged


# ------------------------------------------------------------------ update:data ratio

def _parameters(seed: int):
    """Parameters before and after one made-up step: matrices, a norm gain near 1, a scalar."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    before = {
        "tok.weight": 0.02 * randn(40, 16),
        "blocks.0.mlp.weight": 0.05 * randn(32, 16),
        "blocks.0.norm.weight": 1.0 + 0.05 * randn(16),   # a LayerNorm gain: mean 1, small spread
        "blocks.0.norm.bias": 0.01 * randn(16),
        "alpha": torch.tensor([0.5]),                     # one entry: no spread to compare with
        "head.weight": 0.02 * randn(40, 16),
    }
    step = {
        "tok.weight": 2e-5 * randn(40, 16),
        "blocks.0.mlp.weight": 0.03 * randn(32, 16),      # a big step: after and before differ
        "blocks.0.norm.weight": 1e-3 * randn(16),
        "blocks.0.norm.bias": torch.zeros(16),            # this one did not move
        "alpha": torch.tensor([0.01]),
        "head.weight": 1e-4 * randn(40, 16),
    }
    after = {k: before[k] + step[k] for k in before}
    return before, after


@checker
def check_update_data_ratios(fn) -> str:
    """``fn(before, after)`` returns {name: std(after - before) / std(before)} for tensors with > 1 entry."""
    for seed in (0, 1):
        before, after = _parameters(seed)
        # call_learner also reports an in-place edit of any tensor in the two dicts
        out = call_learner(fn, before, after, name="update_data_ratios")
        if not isinstance(out, dict):
            raise Mistake(f"update_data_ratios returned a {type(out).__name__}, expected a dict.",
                          "return {name: ratio for each parameter}; did you forget `return`?")
        ref = update_data_ratios(before, after)
        if "alpha" in out:
            raise Mistake("'alpha' has a single entry, so its standard deviation is undefined "
                          "(NaN): leave such parameters out.",
                          "skip tensors with p.numel() <= 1.")
        missing = [k for k in ref if k not in out]
        if missing:
            raise Mistake(f"the result has no entry for {missing}.",
                          "every parameter with more than one entry gets a ratio, including ones "
                          "that did not move (ratio 0).")
        extra = [k for k in out if k not in ref]
        if extra:
            raise Mistake(f"the result has entries {extra} that are not parameters.",
                          "use the names of `before` as keys.")
        got = {k: as_number(out[k], f"the value for '{k}'",
                            shape_hint="reduce over the whole tensor: (after - before).std() / "
                                       "before.std().") for k in ref}
        if all(math.isclose(got[k], ref[k], rel_tol=1e-4, abs_tol=1e-9) for k in ref):
            continue
        d = {k: (after[k].double() - before[k].double()) for k in ref}
        b = {k: before[k].double() for k in ref}
        a = {k: after[k].double() for k in ref}
        wrong = {
            "you returned log10 of the ratio; return the ratio itself (plot it on a log scale).":
                {k: math.log10(ref[k]) if ref[k] > 0 else -math.inf for k in ref},
            "you divided by the spread of the weights *after* the step; the reference is the "
            "weights before it, std(after - before) / std(before).":
                {k: float(d[k].std() / a[k].std()) for k in ref},
            "you compared the spread of the weights after and before, std(after) / std(before); "
            "the update is the difference after - before.":
                {k: float(a[k].std() / b[k].std()) for k in ref},
            "you divided norms (or RMS values), not standard deviations: for a LayerNorm gain "
            "near 1 the norm counts its mean of 1, and the ratio comes out far too small.":
                {k: float(d[k].norm() / b[k].norm()) for k in ref},
            "the ratio is upside down: the update goes on top, std(after - before) / std(before).":
                {k: float(b[k].std() / d[k].std()) if d[k].std() > 0 else math.inf for k in ref},
            "you used mean absolute values; the update:data ratio compares standard deviations.":
                {k: float(d[k].abs().mean() / b[k].abs().mean()) for k in ref},
        }
        moved = [k for k in ref if ref[k] > 0]   # log10(0) may come back as -inf, NaN or a clamp
        for what, values in wrong.items():
            if all(math.isclose(got[k], values[k], rel_tol=1e-4, abs_tol=1e-9) for k in moved):
                raise Mistake(what, "ratio = (after[n] - before[n]).std() / before[n].std().")
        worst = max(ref, key=lambda k: abs(got[k] - ref[k]) / max(ref[k], 1e-12))
        raise Mistake(f"for '{worst}' you returned {got[worst]:.4g}, expected {ref[worst]:.4g}.",
                      "ratio = (after[n] - before[n]).std() / before[n].std().")
    return ("update_data_ratios is correct: std(after - before) / std(before) per parameter, "
            "whatever the optimizer, single-entry parameters left out.")


# ------------------------------------------------------------------ massive activations

def _activations(seed: int) -> dict:
    """Seven 'layers' of 7 tokens x 143 features (1001 entries, odd, so the median is one entry).

    layers.0-4 are symmetric around 0, some with a single huge entry.  Two more
    tell the whole-tensor ratio from a per-token (per-row) one: in layers.5 one
    token is quiet (x 0.001) except for one entry of 3, which is huge for that
    row only; in layers.6 one whole token is loud (x 170), which is massive for
    the layer but ordinary within its own row.
    """
    g = torch.Generator().manual_seed(seed)

    def symmetric():
        v = torch.randn(500, generator=g)
        return torch.cat([v, -v, torch.zeros(1)])     # signed median exactly 0

    acts = {}
    for i, outlier in enumerate((None, 2000.0, -2000.0, 250.0, None)):
        a = symmetric()
        if outlier is not None:
            a[int(torch.randint(1000, (1,), generator=g))] = outlier
        acts[f"layers.{i}"] = a.reshape(7, 143)
    quiet = symmetric().reshape(7, 143)
    quiet[3] *= 1e-3
    quiet[3, int(torch.randint(143, (1,), generator=g))] = 3.0
    acts["layers.5"] = quiet
    loud = symmetric().reshape(7, 143)
    loud[5] *= 170.0
    acts["layers.6"] = loud
    return acts


def _variant(acts: dict, threshold: float, ratio) -> list:
    """The names a wrong ``ratio(a)`` flags (``a`` as given: tokens x features, in float64)."""
    return [n for n, a in acts.items() if ratio(a.double()) > threshold]


@checker
def check_flag_massive(fn) -> str:
    """``fn(activations, threshold)`` returns the names whose max|a| / median|a| > threshold, in order."""
    for seed, threshold in ((0, 300.0), (1, 1000.0), (2, 20.0)):
        acts = _activations(seed)
        out = call_learner(fn, acts, threshold, name="flag_massive")  # in-place edits too
        if isinstance(out, dict):
            raise Mistake("flag_massive returned a dict; return the names of the flagged layers "
                          "(a list), not their ratios.",
                          "collect the names whose ratio exceeds the threshold in a list.")
        if isinstance(out, (set, frozenset)):
            raise Mistake("flag_massive returned a set, which has no order; return a list in the "
                          "order of the layers.", "append each flagged name to a list as you go.")
        if not isinstance(out, (list, tuple)):
            raise Mistake(f"flag_massive returned a {type(out).__name__}, expected a list of names.",
                          "did you forget `return`?")
        got = list(out)
        if not all(isinstance(name, str) for name in got):
            kinds = sorted({type(name).__name__ for name in got if not isinstance(name, str)})
            raise Mistake(f"flag_massive returned a list of {', '.join(kinds)}; expected the "
                          "names of the flagged layers (strings).",
                          "iterate with `for name, a in activations.items()` and append name, "
                          "not the activation a.")
        ref = flag_massive(acts, threshold)
        if got == ref:
            continue
        wrong = {
            "you took the median of the signed values: for activations centred on 0 it is close "
            "to 0 and every layer looks massive. Use the median of |a|.":
                lambda a: a.abs().max() / a.median(),
            "you took the largest *signed* value, so a huge negative activation goes unseen; "
            "use max |a|.":
                lambda a: a.max() / a.abs().median(),
            "you divided by the mean of |a|; one huge activation drags the mean up with it. The "
            "median ignores the outlier: use it.":
                lambda a: a.abs().max() / a.abs().mean(),
            "you divided by the RMS; one huge activation dominates the RMS and hides itself. "
            "Divide by the median of |a|.":
                lambda a: a.abs().max() / a.pow(2).mean().sqrt(),
            "you computed the ratio per token (along the last dimension) and took the largest; "
            "the ratio is over the whole tensor: a token that is large everywhere is massive, "
            "a quiet token with one ordinary entry is not.":
                lambda a: (a.abs().amax(-1) / a.abs().median(-1).values).max(),
            "you computed the ratio per feature (along dimension 0) and took the largest; the "
            "ratio is over the whole tensor.":
                lambda a: (a.abs().amax(0) / a.abs().median(0).values).max(),
        }
        for what, ratio in wrong.items():
            if got == _variant(acts, threshold, ratio):
                raise Mistake(what, "ratio = a.abs().max() / a.abs().median().")
        if sorted(got) == sorted(ref):
            raise Mistake("the right layers, in the wrong order.", "keep the order of the dict.")
        if got == _variant(acts, 100.0, lambda a: a.abs().max() / a.abs().median()):
            raise Mistake(f"with threshold={threshold:g} you flagged {got}, expected {ref}: the "
                          "threshold looks fixed at 100.", "compare with the `threshold` argument.")
        raise Mistake(f"with threshold={threshold:g} you flagged {got}, expected {ref}.",
                      "flag a layer when a.abs().max() / a.abs().median() > threshold.")
    return ("flag_massive is correct: max |a| over median |a|, so a single huge activation of "
            "either sign stands out.")
