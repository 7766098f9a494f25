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

from normcourse.exercises.containers import call_keeping_inputs
from normcourse.exercises.feedback import Mistake, Wrong, as_number, checker, generator

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
    """Parameters before and after one made-up step: matrices, a norm gain near 1, a scalar,
    a (1, 16) row, and a gain still at its initial 1 (constant: its ratio is inf)."""
    g = generator(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    before = {
        "tok.weight": 0.02 * randn(40, 16),
        "blocks.0.mlp.weight": 0.05 * randn(32, 16),
        "blocks.0.norm.weight": 1.0 + 0.05 * randn(16),   # a LayerNorm gain: mean 1, small spread
        "blocks.0.norm.bias": 0.01 * randn(16),
        "alpha": torch.tensor([0.5]),                     # one entry: no spread to compare with
        "head.weight": 0.02 * randn(40, 16),
        "pos.scale": 0.1 * randn(1, 16),                  # one row, 16 entries: it has a ratio
        "blocks.1.norm.weight": torch.ones(16),           # a gain at its initial 1: std 0
    }
    step = {
        "tok.weight": 2e-5 * randn(40, 16),
        "blocks.0.mlp.weight": 0.03 * randn(32, 16),      # a big step: after and before differ
        "blocks.0.norm.weight": 1e-3 * randn(16),
        "blocks.0.norm.bias": torch.zeros(16),            # this one did not move
        "alpha": torch.tensor([0.01]),
        "head.weight": 1e-4 * randn(40, 16),
        "pos.scale": 1e-3 * randn(1, 16),
        "blocks.1.norm.weight": 1e-3 * randn(16),         # ratio std(step) / 0 = inf
    }
    after = {k: before[k] + step[k] for k in before}
    return before, after


_RATIO_HINT = "ratio = (after[n] - before[n]).std() / before[n].std()."


def _ratio_mistakes(before: dict, after: dict, ref: dict) -> list[Wrong]:
    """Known wrong ratios, each a lazy {name: value} for the names of ``ref``."""
    def per_name(what, ratio):
        return Wrong(what, _RATIO_HINT, lambda: {
            k: float(ratio(after[k].double() - before[k].double(), before[k].double(),
                           after[k].double())) for k in ref})

    def upside_down(d, b, a):
        return b.std() / d.std() if d.std() > 0 else math.inf

    return [
        Wrong("you returned log10 of the ratio; return the ratio itself (plot it on a log "
              "scale).", _RATIO_HINT,
              lambda: {k: math.log10(ref[k]) if ref[k] > 0 else -math.inf for k in ref}),
        per_name("you divided by the spread of the weights *after* the step; the reference is "
                 "the weights before it, std(after - before) / std(before).",
                 lambda d, b, a: d.std() / a.std()),
        per_name("you compared the spread of the weights after and before, std(after) / "
                 "std(before); the update is the difference after - before.",
                 lambda d, b, a: a.std() / b.std()),
        per_name("you took the difference of the standard deviations, (std(after) - "
                 "std(before)) / std(before); the update's spread is the standard deviation of "
                 "the difference, std(after - before).",
                 lambda d, b, a: (a.std() - b.std()) / b.std()),
        per_name("you divided variances; the ratio compares standard deviations (take the "
                 "square root, or use .std()).", lambda d, b, a: d.var() / b.var()),
        per_name("you divided norms (or RMS values), not standard deviations: for a LayerNorm "
                 "gain near 1 the norm counts its mean of 1, and the ratio comes out far too "
                 "small.", lambda d, b, a: d.norm() / b.norm()),
        per_name("the ratio is upside down: the update goes on top, std(after - before) / "
                 "std(before).", upside_down),
        per_name("you used mean absolute values; the update:data ratio compares standard "
                 "deviations.", lambda d, b, a: d.abs().mean() / b.abs().mean()),
    ]


@checker
def check_update_data_ratios(fn) -> str:
    """``fn(before, after)`` returns {name: std(after - before) / std(before)} for tensors with > 1 entry."""
    for seed in (0, 1):
        before, after = _parameters(seed)
        # call_learner reports an in-place edit of any tensor in the two dicts; the dicts
        # themselves must stay as they are too
        out = call_keeping_inputs(
            fn, before, after, name="update_data_ratios", labels=("before", "after"),
            hint="build a new dict for the result and leave `before` and `after` as they are.")
        if not isinstance(out, dict):
            raise Mistake(f"update_data_ratios returned a {type(out).__name__}, expected a dict.",
                          "return {name: ratio for each parameter}; did you forget `return`?")
        ref = update_data_ratios(before, after)
        if "alpha" in out:
            raise Mistake("'alpha' has a single entry, so its standard deviation is undefined "
                          "(NaN): leave such parameters out.",
                          "skip tensors with p.numel() <= 1.")
        missing = [k for k in ref if k not in out]
        if missing and all(before[k].dim() == 1 for k in missing) and \
                all(before[k].dim() >= 2 for k in out if k in ref):
            raise Mistake(f"the result has no entry for {missing}: you kept only matrices "
                          "(p.dim() >= 2), but these vectors have more than one entry too.",
                          "leave out only tensors with a single entry: p.numel() > 1.")
        if missing and all(before[k].shape[0] == 1 for k in missing):
            raise Mistake(f"the result has no entry for {missing}, of shape "
                          f"{tuple(before[missing[0]].shape)}: it has "
                          f"{before[missing[0]].numel()} entries, but you filtered on its first "
                          "dimension (p.shape[0] > 1 or len(p) > 1).",
                          "leave out only tensors with a single entry: p.numel() > 1.")
        if missing and all(before[k].std() == 0 for k in missing):
            raise Mistake(f"the result has no entry for {missing}: its values before the step are "
                          "all equal (a gain at its initial 1), so std(before) is 0 and its ratio "
                          "is inf; the exercise leaves out only single-entry parameters.",
                          "keep it: std(after - before) / std(before) gives inf for a constant "
                          "weight that moved, and the chapter wants to see that.")
        if missing:
            raise Mistake(f"the result has no entry for {missing}.",
                          "every parameter with more than one entry gets a ratio, including ones "
                          "that did not move (ratio 0).")
        extra = [k for k in out if k not in ref]
        if extra:
            raise Mistake(f"the result has entries {extra} that are not parameters.",
                          "use the names of `before` as keys.")
        tensors = [k for k in ref if isinstance(out[k], torch.Tensor) and out[k].numel() == 1]
        if tensors:
            raise Mistake(f"the value for '{tensors[0]}' is a tensor; the exercise asks for a "
                          "Python float.",
                          "call .item() on the ratio: the chapter compares and prints these "
                          "numbers next to the toolkit's floats.")
        got = {k: as_number(out[k], f"the value for '{k}'",
                            shape_hint="reduce over the whole tensor: (after - before).std() / "
                                       "before.std().") for k in ref}
        # a constant weight has std(before) = 0: its ratio is inf (a clamped denominator, as
        # the toolkit's, gives a huge finite number, which is as good)
        constant = [k for k in ref if not math.isfinite(ref[k])]
        ref = {k: v for k, v in ref.items() if k not in constant}
        right = all(math.isclose(got[k], ref[k], rel_tol=1e-4, abs_tol=1e-9) for k in ref)
        if right and all(got[k] > 1e6 for k in constant):
            continue
        if right:
            k = next(k for k in constant if not got[k] > 1e6)
            raise Mistake(f"for '{k}', whose values before the step are all equal (std(before) "
                          f"= 0), you returned {got[k]:.4g}; the ratio of a constant weight that "
                          "moved is inf.",
                          "do not special-case std(before) == 0: the division gives inf, which "
                          "says that the step is huge against the weight's spread.")
        moved = [k for k in ref if ref[k] > 0]   # log10(0) may come back as -inf, NaN or a clamp
        for wrong in _ratio_mistakes(before, after, ref):
            values = wrong.value()
            # a difference of two nearly equal spreads loses digits in float32: looser there
            rel = 1e-2 if wrong.what.startswith("you took the difference") else 1e-4
            if all(math.isclose(got[k], values[k], rel_tol=rel, abs_tol=1e-9) for k in moved):
                raise Mistake(wrong.what, wrong.hint)
        worst = max(ref, key=lambda k: abs(got[k] - ref[k]) / max(ref[k], 1e-12))
        raise Mistake(f"for '{worst}' you returned {got[worst]:.4g}, expected {ref[worst]:.4g}.",
                      _RATIO_HINT)
    return ("update_data_ratios is correct: std(after - before) / std(before) per parameter, "
            "whatever the optimizer, single-entry parameters left out.")


# ------------------------------------------------------------------ massive activations

# The layer names, in the dict's order, which is not their sorted order ("layers.10" sorts
# before "layers.9", "head" before "layers.8"): a sorted() answer must show.
_NAMES = ("embed", "layers.9", "layers.10", "layers.11", "layers.8", "head", "final_norm")


def _activations(seed: int, threshold: float) -> dict:
    """Eight 'layers' of 7 tokens x 143 features (1001 entries, odd, so the median is one entry).

    The first five are symmetric around 0, some with a single huge entry.  Two more
    tell the whole-tensor ratio from a per-token (per-row) one: in "head" one token is
    quiet (x 0.001) except for one entry of 3, which is huge for that row only; in
    "final_norm" one whole token is loud (x 170), which is massive for the layer but
    ordinary within its own row.  The last, "probe", sits exactly on the threshold
    (median |a| exactly 1, max exactly ``threshold``): "exceeds" means strictly above.
    Its entries are all positive, so a signed median is not 0 there.  The very last,
    "mlp.relu", is mostly exact zeros (median |a| = 0): max / 0 = inf flags it.
    """
    g = generator(seed)

    def symmetric():
        v = torch.randn(500, generator=g)
        return torch.cat([v, -v, torch.zeros(1)])     # signed median exactly 0

    acts = {}
    for name, outlier in zip(_NAMES, (None, 2000.0, -2000.0, 250.0, None)):
        a = symmetric()
        if outlier is not None:
            a[int(torch.randint(1000, (1,), generator=g))] = outlier
        acts[name] = a.reshape(7, 143)
    quiet = symmetric().reshape(7, 143)
    quiet[3] *= 1e-3
    quiet[3, int(torch.randint(143, (1,), generator=g))] = 3.0
    acts[_NAMES[5]] = quiet
    loud = symmetric().reshape(7, 143)
    loud[5] *= 170.0
    acts[_NAMES[6]] = loud
    low = 0.05 + 0.9 * torch.rand(500, generator=g)                  # below the median
    high = 1.0 + (threshold - 1.0) * torch.rand(499, generator=g)    # above it, below the max
    probe = torch.cat([low, torch.ones(1), high, torch.full((1,), threshold)])
    acts["probe"] = probe[torch.randperm(1001, generator=g)].reshape(7, 143)
    # After a ReLU most entries are exactly 0: median |a| = 0, so max / median is inf and
    # the layer is flagged (601 zeros of 1001).
    relu = torch.cat([torch.zeros(601), torch.rand(400, generator=g) + 0.1])
    acts["mlp.relu"] = relu[torch.randperm(1001, generator=g)].reshape(7, 143)
    return acts


def _variant(acts: dict, threshold: float, ratio, above=lambda r, t: r > t) -> list:
    """The names a wrong ``ratio(a)`` flags (``a`` as given: tokens x features, in float64)."""
    return [n for n, a in acts.items() if above(ratio(a.double()), threshold)]


def _true_ratio(a):
    return a.abs().max() / a.abs().median()


# Known wrong ways to flag, with what is wrong: (what, ratio, comparison).
_MASSIVE_MISTAKES = (
    ("you took the median of the signed values: for activations centred on 0 it is close "
     "to 0 and every layer looks massive. Use the median of |a|.",
     lambda a: a.abs().max() / a.median(), None),
    ("you took the largest *signed* value, so a huge negative activation goes unseen; "
     "use max |a|.", lambda a: a.max() / a.abs().median(), None),
    ("you divided by the smallest |a|, which is 0 or nearly so for most layers; divide by "
     "the median of |a|.", lambda a: a.abs().max() / a.abs().min(), None),
    ("you divided by the mean of |a|; one huge activation drags the mean up with it. The "
     "median ignores the outlier: use it.", lambda a: a.abs().max() / a.abs().mean(), None),
    ("you divided by the RMS; one huge activation dominates the RMS and hides itself. "
     "Divide by the median of |a|.", lambda a: a.abs().max() / a.pow(2).mean().sqrt(), None),
    ("you computed the ratio per token (along the last dimension) and took the largest; "
     "the ratio is over the whole tensor: a token that is large everywhere is massive, "
     "a quiet token with one ordinary entry is not.",
     lambda a: (a.abs().amax(-1) / a.abs().median(-1).values).max(), None),
    ("you computed the ratio per feature (along dimension 0) and took the largest; the "
     "ratio is over the whole tensor.",
     lambda a: (a.abs().amax(0) / a.abs().median(0).values).max(), None),
    ("you skipped a layer whose median |a| is 0 (most of its entries are exactly 0, as after "
     "a ReLU); max |a| / 0 is inf, which exceeds any threshold: flag it.",
     lambda a: _true_ratio(a) if a.abs().median() > 0 else a.new_zeros(()), None),
    ("a layer whose ratio equals the threshold exactly was flagged; \"exceeds\" means "
     "strictly above: use >, not >=.", _true_ratio, lambda r, t: r >= t),
)


@checker
def check_flag_massive(fn) -> str:
    """``fn(activations, threshold)`` returns the names whose max|a| / median|a| > threshold, in order."""
    flagged = []
    for seed, threshold in ((0, 300.0), (1, 1000.0), (2, 20.0)):
        acts = _activations(seed, threshold)
        out = call_keeping_inputs(  # in-place edits of the tensors, and of the dict
            fn, acts, threshold, name="flag_massive", labels=("activations", "threshold"),
            hint="read the activations, do not edit them: the toolkit keeps using its records.")
        if isinstance(out, dict):
            raise Mistake("flag_massive returned a dict; return the names of the flagged layers "
                          "(a list), not their ratios.",
                          "collect the names whose ratio exceeds the threshold in a list.")
        if isinstance(out, (set, frozenset)):
            raise Mistake("flag_massive returned a set, which has no order; return a list in the "
                          "order of the layers.", "append each flagged name to a list as you go.")
        if isinstance(out, tuple):
            raise Mistake("flag_massive returned a tuple; the exercise asks for a list (the "
                          "chapter prints it).", "collect the names in a list, or return "
                                                 "list(...).")
        if not isinstance(out, list):
            raise Mistake(f"flag_massive returned a {type(out).__name__}, expected a list of names.",
                          "did you forget `return`?")
        got = list(out)
        if not all(isinstance(name, str) for name in got):
            kinds = sorted({type(name).__name__ for name in got if not isinstance(name, str)})
            raise Mistake(f"flag_massive returned a list of {', '.join(kinds)}; expected the "
                          "names of the flagged layers (strings).",
                          "iterate with `for name, a in activations.items()` and append name, "
                          "not the activation a.")
        flagged.append((acts, threshold, got))
    wrong = [(acts, t, got) for acts, t, got in flagged if got != flag_massive(acts, t)]
    if wrong:
        acts, threshold, got = wrong[0]
        ref = flag_massive(acts, threshold)
        # Name a mistake only when it alone explains what was flagged on every input.
        named = [what for what, ratio, above in _MASSIVE_MISTAKES
                 if all(g == _variant(a, t, ratio, *(() if above is None else (above,)))
                        for a, t, g in flagged)]
        if len(named) == 1:
            raise Mistake(named[0], "ratio = a.abs().max() / a.abs().median().")
        if sorted(got) == sorted(ref):
            order = ("in sorted order" if got == sorted(ref) else "in the wrong order")
            raise Mistake(f"the right layers, {order}: {got}; the dict's order is {ref}.",
                          "keep the order of the dict: append each name as you meet it.")
        if all(g == _variant(a, 100.0, _true_ratio) for a, t, g in flagged):
            raise Mistake(f"with threshold={threshold:g} you flagged {got}, expected {ref}: the "
                          "threshold looks fixed at 100.", "compare with the `threshold` argument.")
        raise Mistake(f"with threshold={threshold:g} you flagged {got}, expected {ref}.",
                      "flag a layer when a.abs().max() / a.abs().median() > threshold.")
    return ("flag_massive is correct: max |a| over median |a|, so a single huge activation of "
            "either sign stands out.")
