"""Checkers for chapter 4, "LayerNorm from scratch".

Each checker runs the learner's function on a sequence of cases, from the
plain one to the traps (eps placement, constant rows, large means, half
precision).  When an output is wrong it compares it with a list of *known
wrong* formulas: if it matches one, the learner hears exactly which mistake
it is; otherwise they get the size of the error and where it is.

The forward must be built from plain tensor operations: a call to
``F.layer_norm`` (directly or through ``nn.LayerNorm``), another library
normalization or ``normcourse.norms``' finished version is named as such, and
so is autograd in the backward, which the chapter asks for by hand
(:class:`~normcourse.exercises.feedback.Forbidden`).  Half-precision inputs
include rows on which statistics computed in float16 or bfloat16 break (a
large mean for LayerNorm, entries whose square overflows float16 for RMSNorm);
an answer that is right on the same numbers in float32 hears that.

Tolerances are calibrated per case: the reference is computed in float64
from the very same input, and a float32 or float16 answer may differ from it
by a few times what PyTorch's own kernel does on that input, plus a small atol.
On the rows with a large mean the bar is a few times the error of a float32
Welford sweep (which the chapter recommends), when that is larger.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from normcourse import norms
from normcourse.exercises.feedback import (
    SECOND_EPS, Forbidden, Mistake, Wrong, call_learner, checker, close, compare, expect_tensor,
    generator, ignores_eps, max_error,
)

__all__ = ["check_layer_norm", "check_rms_norm", "check_layer_norm_backward"]

# Headroom over PyTorch's own error on the same input, and the error floor
# below which any answer is fine (one float32 rounding of O(1) values is ~6e-8).
_SLACK = 4.0
_ATOL = {torch.float32: 1e-5, torch.float64: 1e-10, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def _torch_tolerance(torch_out: torch.Tensor, ref: torch.Tensor) -> float:
    """A few times PyTorch's own error on this input, plus the dtype's floor."""
    return _SLACK * max_error(torch_out, ref) + _ATOL[torch_out.dtype]


# --------------------------------------------------------------------------
# LayerNorm forward
# --------------------------------------------------------------------------

def _ln(x, w, b, eps, dim=-1, unbiased=False, eps_outside=False, one_pass=None, clamp=False,
        denom_power=0.5):
    """LayerNorm in float64 with optional, deliberate mistakes (for diagnosis).

    ``one_pass``: E[x^2] - E[x]^2 evaluated in float32, as a learner would, kept
    as it is ("raw") or kept from going negative with clamp(min=0) or abs().
    """
    x64 = x.double()
    mean = x64.mean(dim=dim, keepdim=True)
    if one_pass:
        xf = x.float()
        mean_f = xf.mean(dim=dim, keepdim=True)
        var = (xf * xf).mean(dim=dim, keepdim=True) - mean_f ** 2
        var = {"raw": var, "clamp": var.clamp(min=0), "abs": var.abs()}[one_pass].double()
        # with a variance near 0, the float32 mean's own rounding shows in x - mean
        mean = mean_f.double()
    else:
        var = x64.var(dim=dim, unbiased=unbiased, keepdim=True)
    if eps_outside:
        denom = var.sqrt() + eps
    elif clamp:
        denom = var.clamp(min=eps).sqrt()
    else:
        denom = (var + eps) ** denom_power
    y = (x64 - mean) / denom
    return y * w.double() + b.double()


def _layer_norm_variants(x, w, b, eps, ignored=()):
    """The known wrong LayerNorms on this input; ``ignored``: the eps-ignored one, if any."""
    return [
        Wrong("you normalized over dimension 0 (across rows) instead of the last dimension "
              "(across the features of each row).",
              "use dim=-1 with keepdim=True in mean() and var().",
              lambda: _ln(x, w, b, eps, dim=0)),
        Wrong("you normalized over the whole tensor instead of each row separately.",
              "pass dim=-1, keepdim=True to mean() and var().",
              lambda: _ln(x, w, b, eps, dim=tuple(range(x.dim())))),
        Wrong("you used the unbiased variance (dividing by N - 1); LayerNorm divides by N.",
              "x.var(dim=-1, unbiased=False, keepdim=True), or ((x - mean)**2).mean(-1, keepdim=True).",
              lambda: _ln(x, w, b, eps, unbiased=True)),
        Wrong("eps is added outside the square root: LayerNorm divides by sqrt(var + eps), "
              "not sqrt(var) + eps.",
              "move eps inside: torch.sqrt(var + eps) or torch.rsqrt(var + eps).",
              lambda: _ln(x, w, b, eps, eps_outside=True)),
        Wrong("you clamped the variance at eps (clamp(var, eps), or max(var, eps)): that changes "
              "only rows whose variance is below eps, where LayerNorm adds eps to every variance.",
              "torch.sqrt(var + eps), not torch.sqrt(var.clamp(min=eps)).",
              lambda: _ln(x, w, b, eps, clamp=True)),
        Wrong("eps is missing: LayerNorm divides by sqrt(var + eps); without eps a constant "
              "row divides by zero.",
              "add eps to the variance before the square root.",
              lambda: _ln(x, w, b, 0.0)),
        *ignored,
        Wrong(f"you added eps ** 2 ({eps ** 2:.0e}), not eps ({eps:g}), to the variance.",
              "torch.sqrt(var + eps): eps is already a variance-sized number.",
              lambda: _ln(x, w, b, eps ** 2)),
        Wrong("you divided by the variance: LayerNorm divides by the standard deviation, "
              "sqrt(var + eps).",
              "torch.sqrt(var + eps) or torch.rsqrt(var + eps).",
              lambda: _ln(x, w, b, eps, denom_power=1.0)),
        Wrong("you returned the normalized x without the affine map weight * x_hat + bias.",
              "multiply by weight and add bias at the end.",
              lambda: _ln(x, torch.ones_like(w), torch.zeros_like(b), eps)),
        Wrong("weight and bias are swapped.",
              "y = x_hat * weight + bias.",
              lambda: _ln(x, b, w, eps)),
        Wrong("the bias is missing.",
              "add bias after multiplying by weight.",
              lambda: _ln(x, w, torch.zeros_like(b), eps)),
        Wrong("the weight is missing.",
              "multiply x_hat by weight before adding bias.",
              lambda: _ln(x, torch.ones_like(w), b, eps)),
        Wrong("a sign error: your x_hat is (mean - x) / std; LayerNorm's is (x - mean) / std.",
              "subtract the mean from x, not x from the mean.",
              lambda: _ln(x, -w, b, eps)),
        Wrong("a sign error: you subtracted the bias; LayerNorm adds it.",
              "y = x_hat * weight + bias.",
              lambda: _ln(x, w, -b, eps)),
        Wrong("you multiplied by the weight before normalizing: LayerNorm normalizes x first, then "
              "applies weight and bias to the normalized x_hat.",
              "x_hat = (x - mean) / sqrt(var + eps); y = x_hat * weight + bias.",
              lambda: _ln(x * w.to(x.dtype), torch.ones_like(w), b, eps)),
    ]


def _welford(x, w, b, eps):
    """LayerNorm with Welford's single sweep for mean and variance, in float32.

    Chapter 4 recommends it for rows with a large mean.  Each step rounds the
    running mean to float32, and the rounding errors add up over the row: on
    rows of 10000 + noise its result is off by several times what the two-pass
    kernel of PyTorch is, and still far closer than E[x^2] - E[x]^2 gets.
    """
    xf = x.float()
    mean, var = welford_sweep(xf)
    return (xf - mean) * torch.rsqrt(var + eps) * w.float() + b.float()


def welford_sweep(xf: torch.Tensor):
    """Welford's single sweep over the last dimension: (mean, biased variance), keepdim."""
    mean = torch.zeros(xf.shape[:-1], dtype=xf.dtype)
    m2 = torch.zeros_like(mean)
    for k in range(xf.shape[-1]):
        delta = xf[..., k] - mean
        mean = mean + delta / (k + 1)
        m2 = m2 + delta * (xf[..., k] - mean)
    return mean[..., None], (m2 / xf.shape[-1])[..., None]


_PLAIN_OPS = ("write it with plain tensor operations: mean over dim=-1, the mean of (x - mean) "
              "** 2, torch.sqrt (or torch.rsqrt), then weight and bias.")
_LN_FORBIDDEN = (
    Forbidden((F.layer_norm, torch.layer_norm, torch.native_layer_norm),
              "you called F.layer_norm (directly, or through nn.LayerNorm): the exercise asks "
              "you to build LayerNorm yourself, not to call PyTorch's.", _PLAIN_OPS),
    Forbidden((F.group_norm, torch.group_norm, F.instance_norm),
              "you called a library normalization (F.group_norm or F.instance_norm), which "
              "computes LayerNorm's statistics for you: the exercise asks you to compute them.",
              _PLAIN_OPS),
    Forbidden((norms.layer_norm, norms.layer_norm_reference, norms.LayerNormFunction.forward),
              "you called normcourse.norms' LayerNorm, the finished version of this exercise.",
              _PLAIN_OPS),
)


def _low_precision_mistake(fn, args, out, ref, tol32, label, name, what_breaks):
    """A wrong float16/bfloat16 answer that is right on the same numbers in float32.

    Upcasting is exact, so ``ref`` is also the reference for the float32 inputs, and
    ``tol32`` the tolerance there.
    """
    wide = [a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a
            for a in args]
    try:
        out32 = call_learner(fn, *wide, name=name)
    except Mistake:
        return None
    if not (isinstance(out32, torch.Tensor) and out32.shape == ref.shape
            and close(out32, ref, atol=tol32)):
        return None
    dtype = str(args[0].dtype).replace("torch.", "")
    return Mistake(f"your output is right when the same numbers come in float32, but wrong on "
                   f"the {label} (max error {max_error(out, ref):.3g}): you compute the "
                   f"statistics in {dtype}, and {what_breaks}.",
                   "convert to float32 first (xf = x.float()), compute everything in float32, "
                   "and return the result with .to(x.dtype).")


def _eps_ignored(rerun, out, ref, ref_other, eps, tol, name) -> Wrong:
    """The hard-coded eps, named as such, with the hint every norm of this chapter shares."""
    return ignores_eps(rerun, out, ref, ref_other, eps, tol, name=name,
                       hint="use the eps argument inside the square root; a number written "
                            "into the function (1e-5, 1e-6) is right only when it happens "
                            "to equal the eps the caller passes.")


def _check_ln_case(fn, x, w, b, eps, label, extra_variants=(), nan_mistake=None,
                   welford=False):
    ref = _ln(x, w, b, eps)
    out = expect_tensor(call_learner(fn, x, w, b, eps, name="your layer_norm",
                                     forbidden=_LN_FORBIDDEN), x,
                        name=f"your output ({label})")
    tol = _torch_tolerance(F.layer_norm(x, x.shape[-1:], w.to(x.dtype), b.to(x.dtype), eps), ref)
    if welford:  # a correct float32 Welford sweep must pass too: allow a few times its error
        tol = max(tol, _torch_tolerance(_welford(x, w, b, eps), ref))
    if close(out, ref, atol=tol):
        return
    if x.dtype in (torch.float16, torch.bfloat16):
        xf, wf, bf = x.float(), w.float(), b.float()
        tol32 = _torch_tolerance(F.layer_norm(xf, xf.shape[-1:], wf, bf, eps), ref)
        low = _low_precision_mistake(fn, (x, w, b, eps), out, ref, tol32, label,
                                     "your layer_norm",
                                     "on rows whose mean is large next to their spread, the "
                                     "mean rounded to that precision shifts every x - mean")
        if low is not None:
            raise low
    ignored = _eps_ignored(lambda e: call_learner(fn, x, w, b, e, name="your layer_norm",
                                                  forbidden=_LN_FORBIDDEN),
                           out, ref, _ln(x, w, b, SECOND_EPS), eps, tol, "your layer_norm")
    compare(out, ref, tol, list(extra_variants) + _layer_norm_variants(x, w, b, eps, [ignored]),
            name=f"your output ({label})", nan_mistake=nan_mistake)


@checker
def check_layer_norm(fn: Callable) -> str:
    """Check ``fn(x, weight, bias, eps) -> y``: LayerNorm over the last dimension."""
    g = generator(2016)
    n = 48
    w = torch.randn(n, generator=g) * 0.5 + 1
    b = torch.randn(n, generator=g) * 0.5

    x = torch.randn(8, n, generator=g) * 2 + 0.5
    x3 = torch.randn(2, 5, n, generator=g)
    # Small variance and a large eps make eps's place in the formula visible.
    xs = torch.randn(6, n, generator=g) * 0.02
    _check_ln_case(fn, x, w, b, 1e-5, "random 8 x 48 input")
    # before the 3-D case: only here do the ways of getting eps wrong differ from each other
    _check_ln_case(fn, xs, w, b, 1e-3, "small-variance rows with eps=1e-3")
    _check_ln_case(fn, x3, w, b, 1e-5, "3-D input of shape (2, 5, 48)")

    # A constant row has variance 0: only eps keeps the division finite.
    xc = torch.randn(4, n, generator=g)
    xc[1] = 3.0
    _check_ln_case(fn, xc, w, b, 1e-5, "a constant row")

    # Large mean, small spread: E[x^2] - E[x]^2 cancels catastrophically in float32.
    xl = 1e4 + torch.randn(4, 512, generator=g)
    wl = torch.randn(512, generator=g) * 0.5 + 1
    bl = torch.randn(512, generator=g) * 0.5
    one_pass = [Wrong("your variance loses all precision on rows with a large mean (here 10000 "
                      "+ noise): E[x^2] - E[x]^2 subtracts two numbers near 1e8 in float32.",
                      "compute the mean first, then the mean of (x - mean)**2 (two passes).",
                      lambda kind=kind: _ln(xl, wl, bl, 1e-5, one_pass=kind))
                for kind in ("raw", "clamp", "abs")]
    negative_var = Mistake(
        "your output contains NaN on rows with a large mean (10000 + noise): the variance "
        "came out negative, which E[x^2] - E[x]^2 does in float32 when two numbers near 1e8 "
        "cancel.", "compute the mean first, then the mean of (x - mean)**2 (two passes).")
    _check_ln_case(fn, xl, wl, bl, 1e-5, "rows with mean 10000", one_pass, negative_var,
                   welford=True)

    # Half of the rows have a mean large next to their spread: statistics computed in
    # float16 or bfloat16 lose the spread there (float32 statistics do not).
    for dtype, large_mean in ((torch.float16, 200.0), (torch.bfloat16, 50.0)):
        xh = torch.randn(8, n, generator=g) * 2 + 1
        xh[4:] = torch.randn(4, n, generator=g) + large_mean
        _check_ln_case(fn, xh.to(dtype), w.to(dtype), b.to(dtype), 1e-5, f"{dtype} input")

    return ("check_layer_norm: all 7 cases pass (random, 3-D, eps placement, constant row, "
            "large mean, float16, bfloat16).")


# --------------------------------------------------------------------------
# RMSNorm forward
# --------------------------------------------------------------------------

def _rms(x, w, eps, dim=-1, eps_outside=False, centered=False, use_sum=False, clamp=False):
    x64 = x.double()
    if centered:
        x64 = x64 - x64.mean(dim=dim, keepdim=True)
    ms = (x64 * x64).sum(dim=dim, keepdim=True) if use_sum else (x64 * x64).mean(dim=dim, keepdim=True)
    if clamp:
        ms, eps = ms.clamp(min=eps), 0.0
    denom = ms.sqrt() + eps if eps_outside else (ms + eps).sqrt()
    return x64 / denom * w.double()


def _check_rms_case(fn, x, w, eps, label):
    ref = _rms(x, w, eps)
    out = expect_tensor(call_learner(fn, x, w, eps, name="your rms_norm"), x,
                        name=f"your output ({label})")
    tol = _torch_tolerance(F.rms_norm(x, x.shape[-1:], w.to(x.dtype), eps), ref)
    if close(out, ref, atol=tol):
        return
    if x.dtype in (torch.float16, torch.bfloat16):
        tol32 = _torch_tolerance(F.rms_norm(x.float(), x.shape[-1:], w.float(), eps), ref)
        low = _low_precision_mistake(fn, (x, w, eps), out, ref, tol32, label, "your rms_norm",
                                     "x * x overflows float16 (largest value 65504) on rows "
                                     "with entries of a few hundred")
        if low is not None:
            raise low
    compare(out, ref, tol, [
        Wrong("you subtracted the mean: that is LayerNorm. RMSNorm only re-scales, it does not "
              "re-center.",
              "divide x by sqrt(mean(x**2) + eps) without subtracting the mean.",
              lambda: _rms(x, w, eps, centered=True)),
        Wrong("you normalized over dimension 0 (across rows) instead of the last dimension.",
              "use .mean(dim=-1, keepdim=True).",
              lambda: _rms(x, w, eps, dim=0)),
        Wrong("you used the sum of squares; RMSNorm uses the mean of squares.",
              "(x * x).mean(dim=-1, keepdim=True).",
              lambda: _rms(x, w, eps, use_sum=True)),
        Wrong("eps is added outside the square root: RMSNorm divides by sqrt(mean(x^2) + eps).",
              "torch.rsqrt((x * x).mean(-1, keepdim=True) + eps).",
              lambda: _rms(x, w, eps, eps_outside=True)),
        Wrong("you clamped the mean square at eps (clamp(ms, eps), or max(ms, eps)): that changes "
              "only rows whose mean square is below eps, where RMSNorm adds eps to every one.",
              "torch.rsqrt(ms + eps), not torch.rsqrt(ms.clamp(min=eps)).",
              lambda: _rms(x, w, eps, clamp=True)),
        Wrong("eps is missing: RMSNorm divides by sqrt(mean(x^2) + eps).",
              "add eps to the mean square before the square root.",
              lambda: _rms(x, w, 0.0)),
        _eps_ignored(lambda e: call_learner(fn, x, w, e, name="your rms_norm"), out, ref,
                     _rms(x, w, SECOND_EPS), eps, tol, "your rms_norm"),
        Wrong(f"you added eps ** 2 ({eps ** 2:.0e}), not eps ({eps:g}), to the mean square.",
              "torch.rsqrt((x * x).mean(-1, keepdim=True) + eps).",
              lambda: _rms(x, w, eps ** 2)),
        Wrong("a sign error: your output is minus RMSNorm's.",
              "y = x / sqrt(mean(x^2) + eps) * weight, with no minus sign.",
              lambda: -ref),
        Wrong("the weight is missing.",
              "multiply the normalized x by weight.",
              lambda: _rms(x, torch.ones_like(w), eps)),
        Wrong("you divided by the mean square instead of its square root.",
              "divide by torch.sqrt(mean(x**2) + eps).",
              lambda: x.double() / (x.double() * x.double()).mean(-1, keepdim=True) * w.double()),
    ], name=f"your output ({label})")


@checker
def check_rms_norm(fn: Callable) -> str:
    """Check ``fn(x, weight, eps) -> y``: RMSNorm over the last dimension."""
    g = generator(2019)
    n = 40
    w = torch.randn(n, generator=g) * 0.5 + 1
    _check_rms_case(fn, torch.randn(8, n, generator=g) + 1.0, w, 1e-6, "random 8 x 40 input")
    _check_rms_case(fn, torch.randn(3, 4, n, generator=g), w, 1e-6, "3-D input of shape (3, 4, 40)")
    _check_rms_case(fn, torch.randn(5, n, generator=g) * 0.03, w, 1e-3,
                    "small rows with eps=1e-3")
    xz = torch.randn(4, n, generator=g)
    xz[2] = 0.0  # mean square 0: only eps avoids 0/0
    _check_rms_case(fn, xz, w, 1e-6, "a row of zeros")
    for dtype in (torch.float16, torch.bfloat16):
        xh = torch.randn(8, n, generator=g) * 3
        xh[6:] *= 100  # entries of a few hundred: x * x overflows float16, not float32
        _check_rms_case(fn, xh.to(dtype), w.to(dtype), 1e-6, f"{dtype} input")
    return ("check_rms_norm: all 6 cases pass (random, 3-D, eps placement, zero row, "
            "float16, bfloat16).")


# --------------------------------------------------------------------------
# LayerNorm backward
# --------------------------------------------------------------------------

def _ln_backward(dy, x, w, eps, drop_mean_g=False, drop_proj=False, no_weight=False,
                 no_rstd=False, dw_uses_x=False, proj_sign=1.0, axis=-1, unbiased=False):
    """Hand-derived LayerNorm backward in float64, with optional mistakes."""
    dy, x, w = dy.double(), x.double(), w.double()
    mean = x.mean(-1, keepdim=True)
    rstd = (x.var(-1, unbiased=unbiased, keepdim=True) + eps).rsqrt()
    x_hat = (x - mean) * rstd
    g = dy if no_weight else dy * w
    inner = g.clone()
    if not drop_mean_g:
        inner = inner - g.mean(axis, keepdim=True)
    if not drop_proj:
        inner = inner - proj_sign * x_hat * (g * x_hat).mean(axis, keepdim=True)
    dx = inner if no_rstd else rstd * inner
    dw = (dy * (x if dw_uses_x else x_hat)).sum(0)
    return dx, dw, dy.sum(0)


_AUTOGRAD = (
    Forbidden((torch.autograd.grad, torch.autograd.backward),
              "you used autograd (.backward() or torch.autograd.grad): the exercise asks for the "
              "hand-derived formula, which is what a fused kernel computes; autograd is what the "
              "checker compares you with.",
              "implement the boxed formula with plain tensor operations: x_hat, g = dy * weight, "
              "then dx and the parameters' gradients."),
)


def backward_cases(seed: int, rows) -> list:
    """(dy, x, weight, eps) for each (m, n, scale, shift, eps) of ``rows``: x of that scale
    and shift, a weight near 1."""
    g = generator(seed)
    cases = []
    for m, n, scale, shift, eps in rows:
        x = torch.randn(m, n, generator=g) * scale + shift
        w = torch.randn(n, generator=g) * 0.5 + 1
        dy = torch.randn(m, n, generator=g)
        cases.append((dy, x, w, eps))
    return cases


def expect_gradients(out, names: str, hint: str):
    """``out`` as the tuple of gradients ``names`` ("dx, dweight") says, or a Mistake."""
    count = len(names.split(","))
    if not isinstance(out, (tuple, list)) or len(out) != count:
        got = type(out).__name__
        if isinstance(out, (tuple, list)):
            got += f" of length {len(out)}"
        raise Mistake(f"your function should return a tuple ({names}), got {got}.", hint)
    return out


@checker
def check_layer_norm_backward(fn: Callable) -> str:
    """Check ``fn(dy, x, weight, eps) -> (dx, dweight, dbias)`` for LayerNorm."""
    # the last case has rows whose variance is about eps: eps's place in rstd shows there
    cases = backward_cases(1607, ((6, 32, 1.0, 0.3, 1e-5), (1, 17, 3.0, 0.3, 1e-5),
                                  (16, 64, 0.03, 0.3, 1e-3)))
    for dy, x, w, eps in cases:
        label = f"x of shape {tuple(x.shape)}"
        out = call_learner(fn, dy, x, w, eps, name="your layer_norm_backward",
                           forbidden=_AUTOGRAD)
        dx, dw, db = expect_gradients(out, "dx, dweight, dbias",
                                      "end with `return dx, dweight, dbias`.")
        ref_dx, ref_dw, ref_db = _ln_backward(dy, x, w, eps)
        # float64 autograd through torch's own layer_norm confirms the reference.
        for got, ref, name in ((dx, ref_dx, "dx"), (dw, ref_dw, "dweight"), (db, ref_db, "dbias")):
            expect_tensor(got, ref.to(x.dtype), name=f"{name} ({label})",
                          shape_hint=f"{name} has the shape of " + ("x." if name == "dx" else
                                     "weight: sum over the rows with .sum(dim=0)."))
        tol = 1e-4 * (1 + float(ref_dx.abs().max()))
        if not close(db, ref_db, atol=tol):
            raise Mistake(f"dbias is wrong ({label}): max error {max_error(db, ref_db):.3g}.",
                          "dbias is dy summed over the rows: dy.sum(dim=0).")
        other = _ln_backward(dy, x, w, SECOND_EPS)

        def ignored(i, name):  # the eps-ignored mistake, seen in output number i
            return _eps_ignored(lambda e: call_learner(fn, dy, x, w, e, forbidden=_AUTOGRAD)[i],
                                out[i], (ref_dx, ref_dw)[i], other[i], eps, tol, name)

        compare(dw, ref_dw, tol, [
            Wrong(f"dweight uses x instead of the normalized x_hat ({label}).",
                  "dweight = (dy * x_hat).sum(dim=0) with x_hat = (x - mean) * rstd.",
                  lambda: _ln_backward(dy, x, w, eps, dw_uses_x=True)[1]),
            Wrong(f"your x_hat uses the unbiased variance (dividing by N - 1), so dweight is "
                  f"off ({label}); LayerNorm's forward divides by N.",
                  "var = ((x - mean) ** 2).mean(-1, keepdim=True).",
                  lambda: _ln_backward(dy, x, w, eps, unbiased=True)[1]),
            Wrong(f"eps is missing from rstd, so x_hat and dweight are off on rows whose "
                  f"variance is about eps ({label}).",
                  "rstd = 1 / sqrt(var + eps), the same as in the forward.",
                  lambda: _ln_backward(dy, x, w, 0.0)[1]),
            ignored(1, "your layer_norm_backward"),
        ], name=f"dweight ({label})", otherwise=Mistake(
            f"dweight is wrong ({label}): max error {max_error(dw, ref_dw):.3g}.",
            "dweight = (dy * x_hat).sum(dim=0)."))
        if not close(dx, ref_dx, atol=tol):
            variants = [
                Wrong("dx ignores the weight: the gradient reaching x_hat is g = dy * weight, not dy.",
                      "start from g = dy * weight.",
                      lambda: _ln_backward(dy, x, w, eps, no_weight=True)[0]),
                Wrong("dx is missing the `- mean(g)` term, which comes from the mean's dependence on x.",
                      "dx = rstd * (g - g.mean(-1, keepdim=True) - x_hat * (g * x_hat).mean(-1, keepdim=True)).",
                      lambda: _ln_backward(dy, x, w, eps, drop_mean_g=True)[0]),
                Wrong("dx is missing the `- x_hat * mean(g * x_hat)` term, which comes from the "
                      "variance's dependence on x.",
                      "dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat)).",
                      lambda: _ln_backward(dy, x, w, eps, drop_proj=True)[0]),
                Wrong("dx treats mean and variance as constants: it is only rstd * g.",
                      "both statistics depend on x; differentiate through them.",
                      lambda: _ln_backward(dy, x, w, eps, drop_mean_g=True, drop_proj=True)[0]),
                Wrong("dx is missing the overall factor rstd = 1 / sqrt(var + eps).",
                      "multiply the bracket by rstd.",
                      lambda: _ln_backward(dy, x, w, eps, no_rstd=True)[0]),
                Wrong("a sign error: your dx is minus the gradient.",
                      "dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat)), with g = dy * weight.",
                      lambda: -ref_dx),
                Wrong("a sign error: you added the `x_hat * mean(g * x_hat)` term; it is subtracted.",
                      "dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat)).",
                      lambda: _ln_backward(dy, x, w, eps, proj_sign=-1.0)[0]),
                Wrong("the means in dx are taken over the rows (dim=0): they are over the features "
                      "of each row (dim=-1), like the forward's statistics.",
                      "g.mean(dim=-1, keepdim=True) and (g * x_hat).mean(dim=-1, keepdim=True).",
                      lambda: _ln_backward(dy, x, w, eps, axis=0)[0]),
                Wrong("eps is missing from rstd, so dx is off on rows whose variance is about eps.",
                      "rstd = 1 / sqrt(var + eps), the same as in the forward.",
                      lambda: _ln_backward(dy, x, w, 0.0)[0]),
                ignored(0, "your layer_norm_backward"),
            ]
            compare(dx, ref_dx, tol, variants, name=f"dx ({label})")
    return "check_layer_norm_backward: dx, dweight and dbias match a float64 reference on 3 shapes."
