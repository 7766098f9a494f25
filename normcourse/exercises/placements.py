"""Checkers for the chapters "Where the norm goes" and "Training deep stacks".

- :func:`check_pre_ln_block`: a Pre-LN block's forward from attention, MLP and norm callables.
- :func:`check_deepnorm_residual`: DeepNorm's residual, LN(alpha * x + F(x)).
- :func:`check_classify_run`: label a stored run "diverged", "failed" or "trained".
- :func:`check_count_spikes`: the engine's loss-spike rule (:func:`normcourse.train.count_spikes`).
"""

from __future__ import annotations

import math
import statistics

import torch
import torch.nn as nn

from normcourse.exercises.containers import call_keeping_inputs
from normcourse.exercises.feedback import (
    Mistake, Wrong, as_number, call_learner, checker, close, compare, expect_tensor,
    explain_when, generator,
)
from normcourse.train import count_spikes

__all__ = ["check_pre_ln_block", "check_deepnorm_residual", "check_classify_run",
           "check_count_spikes", "FAILED_MARGIN", "classify_run", "pre_ln_block", "deepnorm_residual"]

# A run "failed to train" when its validation loss is less than this many nats below the
# loss of predicting every character from its frequency alone (the unigram loss).
FAILED_MARGIN = 0.1

def classify_run(run: dict, unigram_loss: float, margin: float = FAILED_MARGIN) -> str:
    """The reference: "diverged" (stopped by the engine), "failed" (no better than unigram), "trained"."""
    if run["diverged"]:
        return "diverged"
    if run["val_loss"] > unigram_loss - margin:
        return "failed"
    return "trained"


def pre_ln_block(x, attn, mlp, norm_attn, norm_mlp):
    """The reference Pre-LN block: h = x + attn(norm_attn(x)); y = h + mlp(norm_mlp(h))."""
    h = x + attn(norm_attn(x))
    return h + mlp(norm_mlp(h))


def deepnorm_residual(x, sublayer, norm, alpha):
    """The reference DeepNorm residual: norm(alpha * x + sublayer(x)), the skip up-weighted."""
    return norm(alpha * x + sublayer(x))


# ------------------------------------------------------------------ sub-layers to test with

class _Attention(nn.Module):
    """A nonlinear stand-in for attention: 1.5 * tanh(h W)."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.proj = nn.Linear(w.shape[0], w.shape[1], bias=False, dtype=torch.float64)
        with torch.no_grad():
            self.proj.weight.copy_(w.T)

    def forward(self, h):
        return torch.tanh(self.proj(h)) * 1.5


def _linear(w: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(w.shape[0], w.shape[1], bias=False, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(w.T)
    return layer


def _layer_norm(gain: torch.Tensor, bias: torch.Tensor) -> nn.LayerNorm:
    norm = nn.LayerNorm(gain.shape[0], dtype=torch.float64)
    with torch.no_grad():
        norm.weight.copy_(gain)
        norm.bias.copy_(bias)
    return norm


def _sublayers(d: int, seed: int):
    """Distinct, nonlinear stand-ins for attention, the MLP and two LayerNorms.

    Real ``nn.Module`` objects, as the chapter passes (``block.attn``, ``block.norm_attn``):
    a learner may combine them with ``nn.Sequential`` or call ``.forward``.
    """
    g = generator(seed)
    wa = torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    w1 = torch.randn(d, 2 * d, generator=g, dtype=torch.float64) / math.sqrt(d)
    w2 = torch.randn(2 * d, d, generator=g, dtype=torch.float64) / math.sqrt(2 * d)

    def vec():
        return torch.randn(d, generator=g, dtype=torch.float64)

    ga, ba = 1 + 0.3 * vec(), 0.2 * vec()   # two LayerNorms with different affine parameters
    gm, bm = 1 + 0.3 * vec(), 0.2 * vec()
    mlp = nn.Sequential(_linear(w1), nn.GELU(), _linear(w2))
    return _Attention(wa), mlp, _layer_norm(ga, ba), _layer_norm(gm, bm)


_PRE_LN_HINT = "Pre-LN: h = x + attn(norm_attn(x)); y = h + mlp(norm_mlp(h))."


def _pre_ln_mistakes(x, attn, mlp, na, nm) -> list[Wrong]:
    """Known wrong Pre-LN blocks, by what is wrong with them."""
    h = x + attn(na(x))
    ref = h + mlp(nm(h))

    def then_mlp(hh, norm=nm):
        return hh + mlp(norm(hh))

    return [
        Wrong("you computed a Post-LN block, N(x + F(x)): the norm sits on the residual stream.",
              _PRE_LN_HINT,
              lambda: (lambda hp: nm(hp + mlp(hp)))(na(x + attn(x)))),
        Wrong("the MLP sees the block input x, not h = x + attention(...): the two sub-layers run in "
              "parallel instead of one after the other.",
              _PRE_LN_HINT,
              lambda: x + attn(na(x)) + mlp(nm(x))),
        Wrong("the residual (skip) connections are missing: the output should be h + mlp(...).",
              _PRE_LN_HINT,
              lambda: mlp(nm(attn(na(x))))),
        Wrong("the MLP's residual is missing: return h + mlp(norm_mlp(h)), not mlp(norm_mlp(h)).",
              _PRE_LN_HINT,
              lambda: mlp(nm(h))),
        Wrong("the attention's residual is missing: h = x + attn(norm_attn(x)), not "
              "attn(norm_attn(x)).",
              _PRE_LN_HINT,
              lambda: then_mlp(attn(na(x)))),
        Wrong("the skip carries the normalized input: the stream must stay un-normalized "
              "(h = x + attn(norm_attn(x)), not norm_attn(x) + attn(norm_attn(x))).",
              _PRE_LN_HINT,
              lambda: (lambda a: then_mlp(a + attn(a)))(na(x))),
        Wrong("you used norm_attn before the MLP too: each sub-layer has its own norm "
              "(its own learned weight and bias).",
              _PRE_LN_HINT,
              lambda: then_mlp(h, na)),
        Wrong("you used norm_mlp before attention too: each sub-layer has its own norm "
              "(norm_attn before attention).",
              _PRE_LN_HINT,
              lambda: (lambda hh: hh + mlp(nm(hh)))(x + attn(nm(x)))),
        Wrong("the MLP half is missing: after h = x + attn(norm_attn(x)) the block returns "
              "h + mlp(norm_mlp(h)).",
              _PRE_LN_HINT,
              lambda: h),
        *order_mistakes(pre_ln_block, x, attn, mlp, na, nm, "before", _PRE_LN_HINT),
        Wrong("you normalized each sub-layer's output instead of its input (Peri-LN's output norm "
              "without its input norm); Pre-LN normalizes what the sub-layer reads.",
              _PRE_LN_HINT,
              lambda: (lambda hp: hp + nm(mlp(hp)))(x + na(attn(x)))),
        Wrong("you subtracted the attention's output from the stream; the residual adds it: "
              "h = x + attn(norm_attn(x)).",
              _PRE_LN_HINT,
              lambda: then_mlp(x - attn(na(x)))),
        Wrong("you subtracted the MLP's output from the stream; the residual adds it: "
              "y = h + mlp(norm_mlp(h)).",
              _PRE_LN_HINT,
              lambda: h - mlp(nm(h))),
        Wrong("there is no norm before the MLP.",
              _PRE_LN_HINT,
              lambda: h + mlp(h)),
        Wrong("there is no norm before attention.",
              _PRE_LN_HINT,
              lambda: (x + attn(x)) + mlp(nm(x + attn(x)))),
        Wrong("you normalized the block's output: Pre-LN leaves the residual stream un-normalized "
              "(the model adds one final norm before the output head).",
              _PRE_LN_HINT,
              lambda: nm(ref)),
    ]


def order_mistakes(block, x, attn, mlp, na, nm, where: str, hint: str) -> list[Wrong]:
    """The two mistakes of order in ``block(x, attn, mlp, norm_attn, norm_mlp)``: the
    norms swapped, and the MLP run first (with its own norm).  ``where`` says where
    each norm goes ("before" or "after" its sub-layer)."""
    return [
        Wrong(f"you swapped the two norms: norm_attn goes {where} attention, norm_mlp {where} "
              "the MLP.", hint, lambda: block(x, attn, mlp, nm, na)),
        Wrong("you ran the MLP before attention: attention comes first, then the MLP.",
              hint, lambda: block(x, mlp, attn, nm, na)),
    ]


def check_block(fn, reference, mistakes, hint: str, name: str, cases, x_seed: int,
                summary: str) -> str:
    """Check ``fn(x, attn, mlp, norm_attn, norm_mlp)``, a whole block, against ``reference``.

    For each ``(d, seed, shape)`` of ``cases``: the stand-in sub-layers of
    :func:`_sublayers`, an input with mean 2 and spread 3 (seeded ``seed + x_seed``),
    and ``mistakes(x, attn, mlp, norm_attn, norm_mlp)``, the known wrong blocks.
    Returns ``summary``, the checker's message when every case passed.
    """
    for d, seed, shape in cases:
        attn, mlp, na, nm = _sublayers(d, seed)
        x = 2.0 + 3.0 * torch.randn(*shape, generator=generator(seed + x_seed),
                                    dtype=torch.float64)
        out = expect_tensor(call_learner(fn, x, attn, mlp, na, nm, name=name), x,
                            name="the block output")
        with torch.no_grad():
            ref = reference(x, attn, mlp, na, nm)
            compare(out, ref, 1e-9, mistakes(x, attn, mlp, na, nm), rtol=1e-9,
                       otherwise=Mistake(f"for an input of shape {tuple(shape)} the largest "
                                         f"error is {(out.detach() - ref).abs().max():.3g}.",
                                         hint))
    return summary


@checker
def check_pre_ln_block(fn) -> str:
    """``fn(x, attn, mlp, norm_attn, norm_mlp)`` returns the output of one Pre-LN block."""
    return check_block(fn, pre_ln_block, _pre_ln_mistakes, _PRE_LN_HINT, "pre_ln_block",
                       ((8, 1, (3, 8)), (16, 2, (2, 5, 16))), 10,
                       "pre_ln_block is correct: each sub-layer reads a normalized copy, and the "
                       "stream itself is never normalized.")


_DEEPNORM_HINT = "return norm(alpha * x + sublayer(x))."


def _deepnorm_mistakes(x, sub, norm, alpha) -> list[Wrong]:
    """Known wrong DeepNorm residuals, by what is wrong with them."""
    return [
        Wrong("you scaled the branch against the skip, LN(x + alpha*F(x)) (or, the same function "
              "once normalized, LN(x / alpha + F(x))); DeepNorm up-weights the skip: "
              "LN(alpha*x + F(x)).",
              _DEEPNORM_HINT,
              lambda: norm(x + alpha * sub(x))),
        Wrong("alpha is not used: DeepNorm multiplies the skip by alpha before the norm.",
              _DEEPNORM_HINT,
              lambda: norm(x + sub(x))),
        Wrong("you subtracted the sub-layer's output, LN(alpha*x - F(x)); the residual adds it: "
              "LN(alpha*x + F(x)).",
              _DEEPNORM_HINT,
              lambda: norm(alpha * x - sub(x))),
        Wrong("alpha multiplies the output of the norm; it belongs on the skip, inside the norm.",
              _DEEPNORM_HINT,
              lambda: alpha * norm(x + sub(x))),
        Wrong("the norm is missing: DeepNorm is a Post-LN scheme, LN(alpha*x + F(x)).",
              _DEEPNORM_HINT,
              lambda: alpha * x + sub(x)),
        Wrong("the sub-layer reads a normalized input (Pre-LN style); in DeepNorm it reads x and "
              "the norm comes after the addition.",
              _DEEPNORM_HINT,
              lambda: norm(alpha * x + sub(norm(x)))),
        Wrong("you normalized only the sub-layer's input, alpha*x + F(LN(x)) (Pre-LN with a scaled "
              "skip); DeepNorm normalizes the sum: LN(alpha*x + F(x)).",
              _DEEPNORM_HINT,
              lambda: alpha * x + sub(norm(x))),
        Wrong("you normalized only the skip, LN(alpha*x) + F(x); the norm covers the whole sum: "
              "LN(alpha*x + F(x)).",
              _DEEPNORM_HINT,
              lambda: norm(alpha * x) + sub(x)),
        Wrong("you added the skip again after the norm, x + LN(...); DeepNorm's output is the norm "
              "itself: LN(alpha*x + F(x)).",
              _DEEPNORM_HINT,
              lambda: x + norm(alpha * x + sub(x))),
        Wrong("the sub-layer reads alpha*x; alpha scales only the skip, the sub-layer reads x: "
              "LN(alpha*x + F(x)).",
              _DEEPNORM_HINT,
              lambda: norm(alpha * x + sub(alpha * x))),
        Wrong("alpha scales the sub-layer's input, LN(x + F(alpha*x)); it belongs on the skip: "
              "LN(alpha*x + F(x)).",
              _DEEPNORM_HINT,
              lambda: norm(x + sub(alpha * x))),
    ]


@checker
def check_deepnorm_residual(fn) -> str:
    """``fn(x, sublayer, norm, alpha)`` returns DeepNorm's ``norm(alpha * x + sublayer(x))``."""
    for d, seed, alpha in ((8, 3, (2 * 6) ** 0.25), (16, 4, (2 * 24) ** 0.25)):
        sub, _, norm, _ = _sublayers(d, seed)
        x = 0.5 + torch.randn(4, d, generator=generator(seed), dtype=torch.float64)
        with torch.no_grad():
            ref = deepnorm_residual(x, sub, norm, alpha)
        out = expect_tensor(call_learner(fn, x, sub, norm, alpha, name="deepnorm_residual"), x,
                            name="the output")
        with torch.no_grad():
            compare(out, ref, 1e-9, _deepnorm_mistakes(x, sub, norm, alpha), rtol=1e-9,
                       otherwise=lambda: _deepnorm_loosely(out, ref, x, sub, norm, alpha))
    return "deepnorm_residual is correct: LN(alpha * x + F(x)), the skip up-weighted by alpha."


@torch.no_grad()
def _deepnorm_loosely(out, ref, x, sub, norm, alpha) -> None:
    """Two mistakes equal to a named one up to LayerNorm's eps (the norm removes a
    common scale): matched more loosely, after the exact matches."""
    whole, divided = norm(alpha * (x + sub(x))), norm(x / alpha + sub(x))
    if close(out, whole, atol=1e-6, rtol=1e-6):
        raise Mistake("you scaled the whole sum alpha*(x + F(x)); LayerNorm removes that scale "
                      "again, so alpha has no effect.", "only the skip is scaled: alpha * x + F(x).")
    if close(out, divided, atol=1e-6, rtol=1e-6):
        raise Mistake("you divided the skip by alpha, LN(x / alpha + F(x)): once normalized "
                      "that is LN(x + alpha*F(x)), the branch up-weighted. DeepNorm up-weights "
                      "the skip: LN(alpha*x + F(x)).", _DEEPNORM_HINT)
    raise Mistake(f"with alpha={alpha:.3f} the largest error is "
                  f"{(out.detach() - ref).abs().max():.3g}.", _DEEPNORM_HINT)


# --------------------------------------------------------------------- training runs

def _run(diverged, val, losses):
    """A stored run as the engine writes it, with the fields a classifier might reach for."""
    return {"diverged": diverged, "diverged_at": len(losses) if diverged else None,
            "val_loss": val, "loss": list(losses), "spikes": count_spikes(losses),
            "final_train_loss": sum(losses[-10:]) / len(losses[-10:])}


def _runs(unigram: float):
    down = [4.6 - 2.0 * (1 - math.exp(-t / 30)) for t in range(150)]
    flat = [4.6 if t < 5 else unigram + 0.04 for t in range(150)]
    spiky = list(down)
    spiky[80:83] = [3.9, 4.1, 3.5]
    return [
        ("a run the engine stopped (diverged=True, val_loss None)", _run(True, None, down[:40] + [9.8]),
         "diverged"),
        (f"a run whose val loss {unigram - 0.02:.3f} is just below the unigram loss {unigram:.3f}",
         _run(False, unigram - 0.02, flat), "failed"),
        (f"a run whose val loss {unigram + 0.3:.3f} is above the unigram loss {unigram:.3f}",
         _run(False, unigram + 0.3, flat), "failed"),
        (f"a run whose val loss {unigram - 0.06:.3f} is within the margin {FAILED_MARGIN} "
         f"of the unigram loss {unigram:.3f}", _run(False, unigram - 0.06, flat), "failed"),
        (f"a run whose val loss {unigram - 0.15:.3f} is {0.15} nats below the unigram loss",
         _run(False, unigram - 0.15, down), "trained"),
        ("a run with a loss spike that recovered (val loss 2.7)", _run(False, 2.7, spiky), "trained"),
        ("a run that learned (val loss 2.4)", _run(False, 2.4, down), "trained"),
        # Training and validation loss on opposite sides of the line: only val_loss decides.
        (f"a run whose training loss fell to {down[-1]:.2f} but whose val loss "
         f"{unigram - 0.03:.3f} is within the margin of the unigram loss {unigram:.3f} (it "
         "memorised its training text)", _run(False, unigram - 0.03, down), "failed"),
        (f"a run whose val loss {unigram - 0.3:.3f} is well below the unigram loss "
         f"{unigram:.3f} while its training loss (measured with dropout on) stayed at "
         f"{flat[-1]:.3f}", _run(False, unigram - 0.3, flat), "trained"),
        # On the margin itself: "greater than" is strict, so this run trained.
        (f"a run whose val loss {unigram - FAILED_MARGIN:.3f} is exactly unigram_loss - "
         f"{FAILED_MARGIN} (unigram loss {unigram:.3f})",
         _run(False, unigram - FAILED_MARGIN, down), "trained"),
    ]


def _by_training_loss(run: dict, unigram_loss: float, key: str) -> str:
    """The classification a learner gets who reads the training loss instead of val_loss."""
    if run["diverged"]:
        return "diverged"
    train = run["loss"][-1] if key == "loss" else run[key]
    return "failed" if train > unigram_loss - FAILED_MARGIN else "trained"


# A diverged run's val_loss is None: comparing it with a number raises TypeError.
_explain_none = explain_when(
    lambda err: isinstance(err, TypeError) and "NoneType" in str(err),
    "a run the engine stopped has val_loss None (it never reached validation), and None cannot "
    "be compared with a number: check run['diverged'] first and return 'diverged' before you "
    "look at val_loss.")


@checker
def check_classify_run(fn) -> str:
    """``fn(run, unigram_loss)`` returns "diverged", "failed" or "trained" for a stored run."""
    for unigram in (3.237, 2.9):
        for what, run, expected in _runs(unigram):
            got = call_keeping_inputs(
                fn, dict(run), unigram, name="classify_run", labels=("run", "unigram_loss"),
                explain=_explain_none,
                hint="read the run, do not write into it: the chapter stores the outcome itself "
                     "(r['outcome'] = classify(r, UNIGRAM)) and plots the stored losses.")
            if not isinstance(got, str):
                raise Mistake(f"classify_run returned {type(got).__name__}; expected one of the strings "
                              "'diverged', 'failed', 'trained'.", "return a string.")
            if got == expected:
                continue
            if got.strip().lower() == expected:
                raise Mistake(f"for {what} you returned {got!r}; the outcome must be exactly "
                              f"{expected!r} (lower case, no spaces).",
                              "the chapter counts the runs with r['outcome'] == 'trained' and "
                              "so on: return exactly 'diverged', 'failed' or 'trained'.")
            got = got.strip().lower()   # what the answer means; its spelling is checked above
            # Both training losses may give the same answer here: name each one that does.
            used = [shown for key, shown in (("final_train_loss", "run['final_train_loss']"),
                                             ("loss", "run['loss'][-1]"))
                    if got == _by_training_loss(run, unigram, key)]
            if used:
                raise Mistake(f"for {what} you returned {got!r}; expected {expected!r}. You "
                              f"classified by the training loss ({' or '.join(used)}); a run is "
                              "judged by its validation loss, run['val_loss'].",
                              "the training loss can be low on text the model memorised, or "
                              "high because of dropout; held-out text tells whether it learned: "
                              f"failed means val_loss > unigram_loss - {FAILED_MARGIN}.")
            if expected == "diverged":
                raise Mistake(f"for {what} you returned {got!r}; expected 'diverged'.",
                              "check run['diverged'] first: a stopped run has no validation loss.")
            if expected == "failed" and got == "diverged":
                raise Mistake(f"for {what} you returned 'diverged'; it ran to the end without crossing "
                              "the divergence threshold, so it 'failed'.",
                              "only run['diverged'] decides divergence.")
            if expected == "failed":
                raise Mistake(f"for {what} you returned {got!r}; expected 'failed': it learned no more "
                              "than the character frequencies.",
                              f"failed means val_loss > unigram_loss - {FAILED_MARGIN} (mind the margin).")
            if got == "failed" and run["val_loss"] == unigram - FAILED_MARGIN:
                raise Mistake(f"for {what} you returned 'failed'; expected 'trained': a run "
                              f"fails when val_loss > unigram_loss - {FAILED_MARGIN}, strictly "
                              "greater, so a run exactly on the margin trained.",
                              "use >, not >=, when you compare with unigram_loss - "
                              f"{FAILED_MARGIN}.")
            if got == "diverged":
                raise Mistake(f"for {what} you returned 'diverged'; a spike the run recovered from is "
                              "not divergence.", "only run['diverged'] decides divergence.")
            raise Mistake(f"for {what} you returned {got!r}; expected 'trained'.",
                          f"failed means val_loss > unigram_loss - {FAILED_MARGIN}; "
                          "anything lower is 'trained'.")
    return (f"classify_run is correct: diverged if the engine stopped the run, failed if its val loss "
            f"is not {FAILED_MARGIN} nats below the unigram loss, trained otherwise.")


_STEPPED = [3.0, 2.0, 4.0, 2.0, 2.0, 2.0, 4.0, 3.0, 4.0, 3.0, 2.0, 3.0, 3.0, 4.0, 4.0, 2.0, 2.5,
            4.0, 2.5, 3.0, 4.0, 3.0, 4.0, 2.0]
_JUMPY = [5.0, 5.0, 2.0, 2.0, 2.0, 2.0, 5.0, 2.0, 4.0, 5.0, 4.0, 5.0, 2.0, 2.0, 3.0, 2.0, 3.0, 2.0,
          3.0, 4.0, 2.0, 2.5, 4.0, 2.5, 5.0, 4.0, 5.0, 3.0, 2.0, 3.0]


def _spike_cases():
    """(what, losses, [(ratio, window), ...]): curves that tell the rule from its near misses.

    The last two curves step between a few exactly representable levels, so that windows
    of even length have two different middle values (the median is their mean, not
    the lower or the upper one), ties with ratio * median occur (a spike is strictly
    above), and a window one step too long or too short changes the count.  Together
    the curves give every rule of ``_SPIKE_MISTAKES`` its own counts (a test checks it),
    so a mistake can be named from the counts alone.
    """
    g = generator(7)
    base = [3.0 - 0.005 * t + 0.02 * float(v) for t, v in enumerate(torch.randn(120, generator=g))]
    long_spike = list(base)
    long_spike[50:56] = [5.0] * 6                          # one spike, six steps long
    two = list(base)
    two[30], two[90] = 4.5, 4.2                            # two one-step spikes
    early = list(base)
    early[2:4] = [9.0, 9.0]                                # early outliers inflate a mean, not a median
    early[12] = 1.25 * early[11]
    gap = list(base)
    gap[40:43], gap[44:47] = [4.0] * 3, [4.0] * 3          # two spikes separated by one normal step
    second = list(base)
    second[1] = 1.3 * second[0]                            # a spike at step 1: the window is one loss
    engine = [(1.2, 20), (1.2, 5)]
    return [("one spike lasting six steps", long_spike, engine),
            ("a spike at the second step", second, engine),
            ("two isolated spikes", two, engine),
            ("a spike shortly after two very large early losses", early, engine),
            ("two spikes separated by one normal step", gap, engine),
            ("a smooth curve", base, engine),
            ("a loss that steps between a few levels", list(_STEPPED), [(1.25, 4), (1.5, 5)]),
            ("a loss that jumps between a few levels", list(_JUMPY),
             [(1.25, 4), (1.5, 6), (1.25, 3)])]


def _spike_rule(window_of=lambda t, w: max(0, t - w), end=0, center=statistics.median,
                above=lambda loss, line: loss > line, once=True, start=1):
    """The engine's rule with one part swapped: how a near miss counts."""
    def count(losses, ratio, window):
        spikes, in_spike = 0, False
        for t in range(start, len(losses)):
            recent = losses[window_of(t, window):t + end]
            now = bool(recent) and above(losses[t], ratio * center(recent))
            if now and (not in_spike or not once):
                spikes += 1
            in_spike = now
        return spikes
    return count


_SPIKE_MISTAKES = (
    (_spike_rule(once=False),
     "you counted every step above the line; a spike lasting several steps counts once.",
     "count a step only if the previous step was not itself in a spike."),
    (_spike_rule(center=statistics.mean),
     "you compared with the mean of the window; a few huge losses drag a mean up, the median "
     "ignores them.", "reference = statistics.median(losses[max(0, t - window):t])."),
    (_spike_rule(end=1),
     "your window includes step t itself; the reference is the previous `window` steps only, "
     "so that a spike does not raise its own reference.",
     "losses[max(0, t - window):t] ends before step t."),
    (_spike_rule(center=lambda w: sorted(w)[(len(w) - 1) // 2]),
     "when the window holds an even number of losses (an even `window`, or the first "
     "steps, which have fewer), you took the lower of the two middle losses (as "
     "torch.median does); the median is the mean of the two.",
     "statistics.median or np.median average the two middle values."),
    (_spike_rule(center=lambda w: sorted(w)[len(w) // 2]),
     "when the window holds an even number of losses (an even `window`, or the first "
     "steps, which have fewer), you took the upper of the two middle losses "
     "(sorted(w)[len(w) // 2]); the median is the mean of the two.",
     "statistics.median or np.median average the two middle values."),
    (_spike_rule(window_of=lambda t, w: max(0, t - w + 1)),
     "your window holds window - 1 losses; it should hold the previous `window` losses.",
     "losses[max(0, t - window):t]."),
    (_spike_rule(window_of=lambda t, w: max(0, t - w - 1)),
     "your window holds window + 1 losses; it should hold the previous `window` losses.",
     "losses[max(0, t - window):t]."),
    (_spike_rule(window_of=lambda t, w: 0),
     "you took the median of every earlier loss; only the previous `window` losses count.",
     "losses[max(0, t - window):t]."),
    (_spike_rule(window_of=lambda t, w: t - 1),
     "you compared with the previous loss only; the reference is the median of the previous "
     "`window` losses.", "losses[max(0, t - window):t]."),
    (_spike_rule(start=0, window_of=lambda t, w: t - w if t >= w else t),
     "you found no spike before step `window`, as if the window had to be full (a slice "
     "losses[t - window:t] with t < window starts from the end of the list and is empty); from "
     "step 1 on, compare with the losses there are (a shorter window).",
     "for t in range(1, len(losses)): use losses[max(0, t - window):t]."),
    (_spike_rule(above=lambda loss, line: loss >= line),
     "a loss exactly equal to ratio * median counted as a spike; a spike is strictly above "
     "the line (>).", "losses[t] > ratio * reference."),
    (lambda losses, ratio, window: count_spikes(losses, 1.2, window),
     "your count does not follow the `ratio` argument: it looks fixed at 1.2.",
     "use the ratio you are given."),
    (lambda losses, ratio, window: count_spikes(losses, ratio, 20),
     "your count does not follow the `window` argument: it looks fixed at 20.",
     "use the window you are given."),
)


# statistics.median of no losses (step 0 has no previous steps) raises StatisticsError.
_explain_empty = explain_when(
    lambda err: type(err).__name__ == "StatisticsError" or "empty" in str(err),
    "a median of no losses: at t = 0 there are no previous losses (start at t = 1; step 0 "
    "cannot be a spike), and for t < window the slice losses[t - window:t] starts from the end "
    "of the list and comes out empty (use max(0, t - window)).")


@checker
def check_count_spikes(fn) -> str:
    """``fn(losses, ratio, window)`` counts spikes by the rule of :mod:`normcourse.train`."""
    counted = []
    for what, losses, settings in _spike_cases():
        for ratio, window in settings:
            got = call_keeping_inputs(
                fn, list(losses), ratio, window, name="count_spikes",
                labels=("losses", "ratio", "window"), explain=_explain_empty,
                hint="read the losses, do not edit them: the chapter passes each run's stored "
                     "losses and plots them afterwards. Work on a copy if you must.")
            got = as_number(got, "the number of spikes", whole=True,
                            shape_hint="return one count for the whole curve.")
            counted.append((what, losses, ratio, window, got))
    wrong = [case for case in counted if case[-1] != count_spikes(*case[1:4])]
    if not wrong:
        return "count_spikes is correct: median of the previous window, a multi-step spike counted once."
    what, losses, ratio, window, got = wrong[0]
    expected = count_spikes(losses, ratio, window)
    msg = f"for {what} (ratio {ratio}, window {window}) you counted {got}, expected {expected}."
    # Name a mistake only when it explains every count: one count alone is a small number
    # that several wrong rules can hit by chance.
    named = [(what_, hint) for rule, what_, hint in _SPIKE_MISTAKES
             if all(rule(list(c[1]), c[2], c[3]) == c[-1] for c in counted)]
    if len(named) == 1:
        what_, hint = named[0]
        raise Mistake(f"{msg} {what_[0].upper()}{what_[1:]}", hint)
    if what.startswith("one spike lasting") and got > expected:
        raise Mistake(msg, "a spike lasting several steps counts once: count a step only if the "
                           "previous step was not itself in a spike.")
    if what.startswith("a spike shortly after"):
        raise Mistake(msg, "compare with the *median* of the previous `window` losses; a mean "
                           "is dragged up by a few huge values.")
    raise Mistake(msg, "step t is a spike when losses[t] > ratio * "
                       "median(losses[max(0, t - window):t]) (the previous `window` steps, not "
                       "step t itself); count it when step t-1 was not a spike.")
