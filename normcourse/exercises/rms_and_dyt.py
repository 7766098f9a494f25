"""Checkers for chapter 5, "RMSNorm and DyT".

- :func:`check_rms_norm_backward`: ``fn(dy, x, weight, eps) -> (dx, dweight)``,
  RMSNorm's hand-derived backward over the last dimension of a 2-D input.
- :func:`check_dyt`: ``fn(x, alpha, gamma, beta) -> y``, Dynamic Tanh
  ``gamma * tanh(alpha * x) + beta`` (Zhu et al. 2025), with gradients that
  reach the scalar ``alpha``.

As in chapter 4, a wrong answer is compared with a list of known wrong
formulas, so the learner hears which mistake it is, not only that it is wrong,
and the backward must be the formula, not autograd.
"""

from __future__ import annotations

from typing import Callable

import torch

from normcourse.exercises.feedback import (
    SECOND_EPS, Mistake, Wrong, call_learner, checker, close, compare, expect_tensor, generator,
    max_error,
)
from normcourse.exercises.layer_norm import (
    _AUTOGRAD, _eps_ignored, backward_cases, expect_gradients,
)

__all__ = ["check_rms_norm_backward", "check_dyt"]


# --------------------------------------------------------------------------
# RMSNorm backward
# --------------------------------------------------------------------------

def _rms_backward(dy, x, w, eps, layer_norm_term=False, drop_proj=False, no_weight=False,
                  no_rstd=False, dw_uses_x=False, proj_uses_x=False, proj_sign=1.0, axis=-1):
    """Hand-derived RMSNorm backward in float64, with optional deliberate mistakes."""
    dy, x, w = dy.double(), x.double(), w.double()
    rstd = ((x * x).mean(-1, keepdim=True) + eps).rsqrt()
    x_hat = x * rstd
    g = dy if no_weight else dy * w
    inner = g.clone()
    if layer_norm_term:
        inner = inner - g.mean(-1, keepdim=True)
    if not drop_proj:
        along = x if proj_uses_x else x_hat
        inner = inner - proj_sign * along * (g * along).mean(axis, keepdim=True)
    dx = inner if no_rstd else rstd * inner
    dw = (dy * (x if dw_uses_x else x_hat)).sum(0)
    return dx, dw


@checker
def check_rms_norm_backward(fn: Callable) -> str:
    """Check ``fn(dy, x, weight, eps) -> (dx, dweight)`` for RMSNorm (no bias)."""
    # a row mean far from 0 makes LayerNorm's extra `- mean(g)` term visible
    cases = backward_cases(1910, ((6, 32, 1.0, 0.7, 1e-6), (1, 17, 3.0, -1.0, 1e-6),
                                  (16, 64, 0.05, 0.02, 1e-3)))
    for dy, x, w, eps in cases:
        label = f"x of shape {tuple(x.shape)}, eps={eps:g}"
        out = call_learner(fn, dy, x, w, eps, name="your rms_norm_backward",
                           forbidden=_AUTOGRAD)
        dx, dw = expect_gradients(out, "dx, dweight", "RMSNorm has no bias, so there is no "
                                  "dbias: end with `return dx, dweight`.")
        ref_dx, ref_dw = _rms_backward(dy, x, w, eps)
        expect_tensor(dx, x, name=f"dx ({label})", shape_hint="dx has the shape of x.")
        expect_tensor(dw, w, name=f"dweight ({label})",
                      shape_hint="dweight has the shape of weight: sum over the rows with .sum(dim=0).")
        tol = 1e-4 * (1 + float(ref_dx.abs().max()) + float(ref_dw.abs().max()))
        other = _rms_backward(dy, x, w, SECOND_EPS)

        def ignored(i):  # the eps-ignored mistake, seen in output number i
            return _eps_ignored(lambda e: call_learner(fn, dy, x, w, e, forbidden=_AUTOGRAD)[i],
                                out[i], (ref_dx, ref_dw)[i], other[i], eps, tol,
                                "your rms_norm_backward")

        if not close(dw, ref_dw, atol=tol):
            variants = [
                Wrong(f"dweight uses x instead of the normalized x_hat ({label}).",
                      "dweight = (dy * x_hat).sum(dim=0) with x_hat = x * rstd.",
                      lambda: _rms_backward(dy, x, w, eps, dw_uses_x=True)[1]),
                Wrong(f"dweight is summed over the features instead of over the rows ({label}).",
                      "weight is shared by every row: sum dy * x_hat over dim=0.",
                      lambda: (dy.double() * x.double() * ((x.double() ** 2).mean(
                          -1, keepdim=True) + eps).rsqrt()).sum(-1)),
                Wrong(f"dweight is dy summed over the rows: that is LayerNorm's dbias ({label}).",
                      "dweight = (dy * x_hat).sum(dim=0).",
                      lambda: dy.double().sum(0)),
                ignored(1),
            ]
            compare(dw, ref_dw, tol, variants, name=f"dweight ({label})")
        if not close(dx, ref_dx, atol=tol):
            variants = [
                Wrong(f"dx has LayerNorm's `- mean(g)` term ({label}). RMSNorm does not subtract "
                      "the mean, so nothing in its forward pass produces that term.",
                      "dx = rstd * (g - x_hat * (g * x_hat).mean(-1, keepdim=True)).",
                      lambda: _rms_backward(dy, x, w, eps, layer_norm_term=True)[0]),
                Wrong(f"dx ignores the weight ({label}): the gradient reaching x_hat is "
                      "g = dy * weight, not dy.",
                      "start from g = dy * weight.",
                      lambda: _rms_backward(dy, x, w, eps, no_weight=True)[0]),
                Wrong(f"dx treats rstd as a constant: it is only rstd * g ({label}).",
                      "rstd depends on every x_j; differentiating it gives the "
                      "`- x_hat * mean(g * x_hat)` term.",
                      lambda: _rms_backward(dy, x, w, eps, drop_proj=True)[0]),
                Wrong(f"dx is missing the overall factor rstd = 1 / sqrt(mean(x^2) + eps) ({label}).",
                      "multiply the bracket by rstd.",
                      lambda: _rms_backward(dy, x, w, eps, no_rstd=True)[0]),
                Wrong(f"the projection term uses x instead of x_hat ({label}).",
                      "subtract x_hat * mean(g * x_hat), with x_hat = x * rstd.",
                      lambda: _rms_backward(dy, x, w, eps, proj_uses_x=True)[0]),
                Wrong(f"a sign error: your dx is minus the gradient ({label}).",
                      "dx = rstd * (g - x_hat * mean(g * x_hat)), with g = dy * weight.",
                      lambda: -ref_dx),
                Wrong(f"a sign error: you added the `x_hat * mean(g * x_hat)` term; it is "
                      f"subtracted ({label}).",
                      "dx = rstd * (g - x_hat * mean(g * x_hat)).",
                      lambda: _rms_backward(dy, x, w, eps, proj_sign=-1.0)[0]),
                Wrong(f"the mean in dx is taken over the rows (dim=0); it is over the features of "
                      f"each row (dim=-1), like the forward's mean square ({label}).",
                      "(g * x_hat).mean(dim=-1, keepdim=True).",
                      lambda: _rms_backward(dy, x, w, eps, axis=0)[0]),
                Wrong(f"eps is missing from rstd ({label}).",
                      "rstd = 1 / sqrt(mean(x^2) + eps), the same as in the forward.",
                      lambda: _rms_backward(dy, x, w, 0.0)[0]),
                ignored(0),
            ]
            compare(dx, ref_dx, tol, variants, name=f"dx ({label})")
    # autograd through plain torch ops agrees with the float64 reference (the checker checks itself)
    dy, x, w, eps = cases[0]
    xa, wa = x.double().requires_grad_(), w.double().requires_grad_()
    (xa * ((xa * xa).mean(-1, keepdim=True) + eps).rsqrt() * wa).backward(dy.double())
    ref_dx, ref_dw = _rms_backward(dy, x, w, eps)
    assert max_error(xa.grad, ref_dx) < 1e-9 and max_error(wa.grad, ref_dw) < 1e-9
    return ("check_rms_norm_backward: dx and dweight match a float64 reference on 3 shapes "
            "(including a large eps).")


# --------------------------------------------------------------------------
# Dynamic Tanh
# --------------------------------------------------------------------------

def _dyt(x, alpha, gamma, beta):
    return gamma.double() * torch.tanh(alpha.double() * x.double()) + beta.double()


def _dyt_variants(x, alpha, gamma, beta):
    x64, a, w, b = x.double(), alpha.double(), gamma.double(), beta.double()
    ln = (x64 - x64.mean(-1, keepdim=True)) / x64.std(-1, unbiased=False, keepdim=True)
    return [
        Wrong("alpha multiplies tanh's output: DyT squashes alpha * x, i.e. tanh(alpha * x).",
              "y = gamma * torch.tanh(alpha * x) + beta.",
              lambda: w * a * torch.tanh(x64) + b),
        Wrong("alpha is missing: you computed gamma * tanh(x) + beta.",
              "scale the input first: torch.tanh(alpha * x).",
              lambda: w * torch.tanh(x64) + b),
        Wrong("gamma is missing: the per-channel scale multiplies tanh(alpha * x).",
              "y = gamma * torch.tanh(alpha * x) + beta.",
              lambda: torch.tanh(a * x64) + b),
        Wrong("beta is missing.",
              "add beta after multiplying by gamma.",
              lambda: w * torch.tanh(a * x64)),
        Wrong("gamma and beta are swapped.",
              "y = gamma * tanh(alpha * x) + beta.",
              lambda: b * torch.tanh(a * x64) + w),
        Wrong("gamma and beta are inside the tanh: DyT applies them after it, like LayerNorm's affine.",
              "y = gamma * torch.tanh(alpha * x) + beta.",
              lambda: torch.tanh(w * a * x64 + b)),
        Wrong("you normalized each row before the tanh: DyT has no statistics at all, it is "
              "element-wise.",
              "drop the mean and std: y = gamma * torch.tanh(alpha * x) + beta.",
              lambda: w * torch.tanh(a * ln) + b),
        Wrong("you used a sigmoid; DyT uses tanh (odd, range (-1, 1)).",
              "use torch.tanh.",
              lambda: w * torch.sigmoid(a * x64) + b),
        Wrong("beta is inside the tanh: DyT adds it after the scale, like LayerNorm's bias.",
              "y = gamma * torch.tanh(alpha * x) + beta.",
              lambda: w * torch.tanh(a * x64 + b)),
        Wrong("a sign error: you computed gamma * tanh(-alpha * x) + beta.",
              "y = gamma * torch.tanh(alpha * x) + beta, with no minus sign.",
              lambda: -w * torch.tanh(a * x64) + b),
    ]


def _check_dyt_case(fn, x, alpha, gamma, beta, label):
    ref = _dyt(x, alpha, gamma, beta)
    out = expect_tensor(call_learner(fn, x, alpha, gamma, beta, name="your dyt"), x,
                        name=f"your output ({label})",
                        shape_hint="DyT is element-wise: the output has the shape of x; gamma "
                                   "and beta broadcast over the last dimension.")
    atol = {torch.float32: 1e-5, torch.float64: 1e-10, torch.float16: 4e-3,
            torch.bfloat16: 3e-2}[x.dtype]
    tol = atol * (1 + float(ref.abs().max()))
    compare(out, ref, tol, _dyt_variants(x, alpha, gamma, beta), name=f"your output ({label})")
    return out


@checker
def check_dyt(fn: Callable) -> str:
    """Check ``fn(x, alpha, gamma, beta) -> gamma * tanh(alpha * x) + beta``.

    ``alpha`` is a tensor of shape (1,) (one learnable scalar); ``gamma`` and
    ``beta`` have the shape of the last dimension of ``x``.
    """
    g = generator(2025)
    n = 24
    gamma = torch.randn(n, generator=g) * 0.5 + 1
    beta = torch.randn(n, generator=g) * 0.5
    alpha = torch.tensor([0.7])

    _check_dyt_case(fn, torch.randn(8, n, generator=g) * 2 + 0.5, alpha, gamma, beta,
                    "random 8 x 24 input")
    _check_dyt_case(fn, torch.randn(2, 3, n, generator=g), torch.tensor([2.5]), gamma, beta,
                    "3-D input, alpha=2.5")
    # large inputs: tanh saturates; a hand-written (e^z - e^-z)/(e^z + e^-z) overflows to NaN
    big = torch.randn(4, n, generator=g) * 200
    try:
        _check_dyt_case(fn, big, alpha, gamma, beta, "inputs of size ~200")
    except Mistake as m:
        if "NaN" in m.what:
            raise Mistake("your output contains NaN for large inputs (|alpha * x| ~ 100): "
                          "exp(z) overflows in float32 above z ~ 88, and inf/inf is NaN.",
                          "use torch.tanh, which saturates to +-1 without overflowing.") from None
        raise
    _check_dyt_case(fn, (torch.randn(6, n, generator=g) * 3).to(torch.bfloat16),
                    alpha.to(torch.bfloat16), gamma.to(torch.bfloat16), beta.to(torch.bfloat16),
                    "bfloat16 input")

    # the gradient must reach alpha (it is learned), gamma and beta
    x = torch.randn(5, n, generator=g)
    a = alpha.clone().requires_grad_()
    w, b = gamma.clone().requires_grad_(), beta.clone().requires_grad_()
    out = call_learner(fn, x, a, w, b, name="your dyt")
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        raise Mistake("no gradient flows out of your output: alpha, gamma and beta are learned "
                      "parameters.", "use alpha as a tensor; alpha.item() or float(alpha) cuts it "
                      "out of the autograd graph.")
    dy = torch.randn(5, n, generator=g)
    grads = torch.autograd.grad(out, (a, w, b), dy, allow_unused=True)
    a64 = alpha.double().requires_grad_()
    ref = torch.autograd.grad(_dyt(x, a64, gamma.double().requires_grad_(),
                                   beta.double().requires_grad_()),
                              a64, dy.double())[0]
    if grads[0] is None or not close(grads[0], ref, atol=1e-4 * (1 + float(ref.abs().max()))):
        raise Mistake("the gradient with respect to alpha is missing or wrong, so alpha would "
                      "not learn.", "use alpha as a tensor (no .item(), no float(alpha)) inside "
                      "torch.tanh(alpha * x).")
    if grads[1] is None or grads[2] is None:
        raise Mistake("gamma or beta gets no gradient.", "use the gamma and beta you were given.")
    return ("check_dyt: all 5 cases pass (random, 3-D, saturating inputs, bfloat16, gradient "
            "reaches alpha).")
