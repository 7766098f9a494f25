"""Chapter 4, "LayerNorm from scratch": near misses and unusual right answers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from near_misses import Attempt, Exercise, attempts
from normcourse import norms
from normcourse.exercises.layer_norm import (
    _welford, check_layer_norm, check_layer_norm_backward, check_rms_norm,
)

NOTEBOOK = "notebooks/04_layernorm_from_scratch.ipynb"


# ---- layer_norm(x, weight, bias, eps) -------------------------------------------------------

def _ln(denom=lambda var, eps: torch.sqrt(var + eps), dim=-1, unbiased=False, sign=1.0,
        affine=lambda y, w, b: y * w + b, upcast=True):
    def fn(x, w, b, eps):
        xf = x.float() if upcast else x
        mean = xf.mean(dim=dim, keepdim=True)
        var = xf.var(dim=dim, unbiased=unbiased, keepdim=True)
        y = sign * (xf - mean) / denom(var, eps)
        out = affine(y, w.to(xf.dtype), b.to(xf.dtype))
        return out.to(x.dtype)
    return fn


def _ln_one_pass(keep=lambda v: v):
    def fn(x, w, b, eps):
        xf = x.float()
        mean = xf.mean(-1, keepdim=True)
        var = keep((xf * xf).mean(-1, keepdim=True) - mean * mean)
        return ((xf - mean) / torch.sqrt(var + eps) * w.float() + b.float()).to(x.dtype)
    return fn


def _ln_weight_first(x, w, b, eps):
    xw = x.float() * w.float()   # the affine map before the normalization
    mean = xw.mean(-1, keepdim=True)
    return ((xw - mean) / torch.sqrt(xw.var(-1, unbiased=False, keepdim=True) + eps)
            + b.float()).to(x.dtype)


def _ln_module(x, w, b, eps):
    ln = nn.LayerNorm(x.shape[-1], eps=eps, dtype=x.dtype)
    with torch.no_grad():
        ln.weight.copy_(w)
        ln.bias.copy_(b)
    return ln(x)


def _ln_inplace(x, w, b, eps):
    x -= x.mean(-1, keepdim=True)
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w + b


def _ln_rows_loop(x, w, b, eps):
    """loop over rows, ** 0.5"""
    rows = x.reshape(-1, x.shape[-1]).float()
    out = torch.empty_like(rows)
    for i, row in enumerate(rows):
        mean = row.sum() / row.numel()
        var = ((row - mean) ** 2).sum() / row.numel()
        out[i] = (row - mean) / (var + eps) ** 0.5 * w.float() + b.float()
    return out.reshape(x.shape).to(x.dtype)


def _ln_float64(x, w, b, eps):
    """float64 inside"""
    x64 = x.double()
    mean = x64.mean(-1, keepdim=True)
    var = ((x64 - mean) ** 2).mean(-1, keepdim=True)
    return ((x64 - mean) * torch.rsqrt(var + eps) * w.double() + b.double()).to(x.dtype)


def _ln_var_mean_addcmul(x, w, b, eps):
    """var_mean + addcmul"""
    xf = x.float()
    var, mean = torch.var_mean(xf, dim=-1, keepdim=True, correction=0)
    return torch.addcmul(b.float(), (xf - mean) * torch.rsqrt(var + eps), w.float()).to(x.dtype)


def _ln_einsum_mean(x, w, b, eps):
    """einsum sums"""
    xf = x.float()
    n = xf.shape[-1]
    mean = torch.einsum("...n->...", xf)[..., None] / n
    dev = xf - mean
    var = torch.einsum("...n,...n->...", dev, dev)[..., None] / n
    return (dev / torch.sqrt(var + eps) * w.float() + b.float()).to(x.dtype)


def _ln_std(x, w, b, eps):
    """biased std squared"""
    xf = x.float()
    std = xf.std(-1, unbiased=False, keepdim=True)
    return ((xf - xf.mean(-1, keepdim=True)) / torch.sqrt(std ** 2 + eps) * w.float()
            + b.float()).to(x.dtype)


def _ln_welford(x, w, b, eps):
    """Welford in float32"""  # chapter 4's single sweep, which the checker allows for
    return _welford(x, w, b, eps).to(x.dtype)


def _eps_misses(norm, constant):
    """The ways of getting eps wrong, for a norm built by ``norm(denom=...)``: the
    denominator from the variance (or mean square) v and eps e."""
    return tuple(Attempt(label, norm(denom=denom), (name,)) for label, denom, name in (
        ("eps outside the sqrt", lambda v, e: torch.sqrt(v) + e, "outside the square root"),
        ("no eps", lambda v, e: torch.sqrt(v), "eps is missing"),
        ("clamp(v, eps)", lambda v, e: torch.sqrt(v.clamp(min=e)), "clamp"),
        ("eps ** 2", lambda v, e: torch.sqrt(v + e ** 2), "eps ** 2"),
        (f"eps hard-coded as {constant:g}", lambda v, e: torch.sqrt(v + constant),
         "ignores its eps argument"),
    ))


LAYER_NORM = Exercise(
    check_layer_norm, NOTEBOOK, "my_layer_norm",
    near_misses=(
        Attempt("F.layer_norm, which the exercise forbids",
                lambda x, w, b, eps: F.layer_norm(x, x.shape[-1:], w, b, eps), ("F.layer_norm",)),
        Attempt("nn.LayerNorm, which calls F.layer_norm", _ln_module, ("F.layer_norm",)),
        Attempt("normcourse.norms.layer_norm, the finished version",
                lambda x, w, b, eps: norms.layer_norm(x, w, b, eps), ("normcourse",)),
        Attempt("F.group_norm with one group",
                lambda x, w, b, eps: F.group_norm(x.reshape(-1, x.shape[-1]), 1, w, b, eps)
                .reshape(x.shape), ("group_norm",)),
        Attempt("statistics in float16", _ln(upcast=False), ("float32",)),
        Attempt("unbiased variance", _ln(unbiased=True), ("unbiased",)),
        Attempt("over dimension 0", _ln(dim=0), ("dimension 0",)),
        Attempt("over the whole tensor", _ln(dim=None), ("whole tensor",)),
        *_eps_misses(_ln, 1e-5),
        Attempt("divided by the variance", _ln(denom=lambda v, e: v + e), ("variance",)),
        Attempt("sign flipped: mean - x", _ln(sign=-1.0), ("sign",)),
        Attempt("bias subtracted", _ln(affine=lambda y, w, b: y * w - b), ("sign",)),
        Attempt("no affine map", _ln(affine=lambda y, w, b: y), ("affine",)),
        Attempt("weight and bias swapped", _ln(affine=lambda y, w, b: y * b + w), ("swapped",)),
        Attempt("no bias", _ln(affine=lambda y, w, b: y * w), ("bias is missing",)),
        Attempt("no weight", _ln(affine=lambda y, w, b: y + b), ("weight is missing",)),
        Attempt("affine map before the normalization", _ln_weight_first, ("before",)),
        Attempt("E[x^2] - E[x]^2 in float32", _ln_one_pass(), ("E[x^2] - E[x]^2",)),
        Attempt("E[x^2] - E[x]^2 clamped at 0", _ln_one_pass(lambda v: v.clamp(min=0)),
                ("E[x^2] - E[x]^2",)),
        Attempt("abs(E[x^2] - E[x]^2)", _ln_one_pass(torch.abs), ("E[x^2] - E[x]^2",)),
        Attempt("in place", _ln_inplace, ("in place",)),
        Attempt("float32 result", lambda x, w, b, eps: _ln_float64(x, w, b, eps).float(),
                ("dtype",)),
        Attempt("returns (y, mean, rstd)",
                lambda x, w, b, eps: (_ln_float64(x, w, b, eps), x.mean(-1), x.std(-1)),
                ("torch.Tensor",)),
    ),
    right_answers=(
        *attempts(_ln_rows_loop, _ln_float64, _ln_var_mean_addcmul, _ln_einsum_mean, _ln_std,
                  _ln_welford),
    ),
)


# ---- layer_norm_backward(dy, x, weight, eps) -------------------------------------------------

def _bw(mean_g=True, proj=True, weight=True, rstd=True, dw_x=False, db=lambda dy: dy.sum(0),
        sign=1.0, proj_sign=1.0, eps_used=lambda e: e, unbiased=False, axis=-1):
    def fn(dy, x, w, eps):
        mean = x.mean(-1, keepdim=True)
        var = x.var(-1, unbiased=unbiased, keepdim=True)
        r = torch.rsqrt(var + eps_used(eps))
        xh = (x - mean) * r
        g = dy * w if weight else dy
        inner = g
        if mean_g:
            inner = inner - g.mean(axis, keepdim=True)
        if proj:
            inner = inner - proj_sign * xh * (g * xh).mean(axis, keepdim=True)
        dx = sign * (r * inner if rstd else inner)
        return dx, (dy * (x if dw_x else xh)).sum(0), db(dy)
    return fn


def _bw_autograd(dy, x, w, eps):
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    b = torch.zeros_like(w, requires_grad=True)
    F.layer_norm(x, x.shape[-1:], w, b, eps).backward(dy)
    return x.grad, w.grad, b.grad


def _bw_sums(dy, x, w, eps):
    """sums, one division by N"""
    n = x.shape[-1]
    mean = x.mean(-1, keepdim=True)
    rstd = ((x - mean).pow(2).mean(-1, keepdim=True) + eps).rsqrt()
    xh = (x - mean) * rstd
    g = dy * w
    dx = (n * g - g.sum(-1, keepdim=True) - xh * (g * xh).sum(-1, keepdim=True)) * rstd / n
    return dx, (dy * xh).sum(0), dy.sum(0)


def _bw_float64(dy, x, w, eps):
    """float64 inside"""
    out = _bw()(dy.double(), x.double(), w.double(), eps)
    return tuple(t.to(x.dtype) for t in out)


def _bw_rows(dy, x, w, eps):
    """loop over rows"""
    dx = torch.empty_like(x)
    dw = torch.zeros_like(w)
    db = torch.zeros_like(w)
    for i in range(x.shape[0]):
        row, d = x[i], dy[i]
        mean = row.mean()
        rstd = 1.0 / torch.sqrt(((row - mean) ** 2).mean() + eps)
        xh = (row - mean) * rstd
        g = d * w
        dx[i] = rstd * (g - g.mean() - xh * (g * xh).mean())
        dw += d * xh
        db += d
    return dx, dw, db


def _bw_einsum(dy, x, w, eps):
    """einsum"""
    mean = x.mean(-1, keepdim=True)
    rstd = torch.rsqrt(x.var(-1, unbiased=False, keepdim=True) + eps)
    xh = (x - mean) * rstd
    g = dy * w
    dx = rstd * (g - g.mean(-1, keepdim=True)
                 - xh * torch.einsum("mn,mn->m", g, xh)[:, None] / x.shape[-1])
    return dx, torch.einsum("mn,mn->n", dy, xh), torch.einsum("mn->n", dy)


LAYER_NORM_BACKWARD = Exercise(
    check_layer_norm_backward, NOTEBOOK, "my_layer_norm_backward",
    near_misses=(
        Attempt("autograd, which the exercise forbids", _bw_autograd, ("autograd",)),
        Attempt("- mean(g) forgotten", _bw(mean_g=False), ("- mean(g)",)),
        Attempt("projection forgotten", _bw(proj=False), ("x_hat * mean(g * x_hat)",)),
        Attempt("statistics as constants", _bw(mean_g=False, proj=False), ("constants",)),
        Attempt("weight ignored", _bw(weight=False), ("ignores the weight",)),
        Attempt("rstd factor forgotten", _bw(rstd=False), ("rstd",)),
        Attempt("dweight from x", _bw(dw_x=True), ("x_hat",)),
        Attempt("dbias as a mean", _bw(db=lambda dy: dy.mean(0)), ("dbias",)),
        Attempt("dbias over the features", _bw(db=lambda dy: dy.sum(-1)), ("dbias",)),
        Attempt("dx negated", _bw(sign=-1.0), ("sign",)),
        Attempt("+ projection", _bw(proj_sign=-1.0), ("sign",)),
        Attempt("no eps in rstd", _bw(eps_used=lambda e: 0.0), ("eps",)),
        Attempt("eps hard-coded as 1e-5", _bw(eps_used=lambda e: 1e-5),
                ("ignores its eps argument",)),
        Attempt("unbiased variance", _bw(unbiased=True), ("unbiased",)),
        Attempt("means over the rows", _bw(axis=0), ("dim=-1",)),
        Attempt("(dx, dweight) only", lambda dy, x, w, eps: _bw()(dy, x, w, eps)[:2],
                ("tuple (dx, dweight, dbias)",)),
    ),
    right_answers=(
        *attempts(_bw_sums, _bw_float64, _bw_rows, _bw_einsum),
    ),
)


# ---- rms_norm(x, weight, eps) ------------------------------------------------------------------

def _rms(denom=lambda ms, eps: torch.sqrt(ms + eps), upcast=True, reduce=torch.mean, sign=1.0,
         weight=True):
    def fn(x, w, eps):
        xf = x.float() if upcast else x
        ms = reduce(xf * xf, dim=-1, keepdim=True)
        y = sign * xf / denom(ms, eps)
        return (y * w.to(xf.dtype) if weight else y).to(x.dtype)
    return fn


def _rms_float64(x, w, eps):
    """float64 inside"""
    x64 = x.double()
    return (x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + eps) * w.double()).to(x.dtype)


def _rms_norm_of_vector(x, w, eps):
    """vector_norm"""
    xf = x.float()
    n = xf.shape[-1]
    rms = torch.sqrt(torch.linalg.vector_norm(xf, dim=-1, keepdim=True) ** 2 / n + eps)
    return (xf / rms * w.float()).to(x.dtype)


def _rms_module(x, w, eps):
    """nn.RMSNorm"""
    m = nn.RMSNorm(x.shape[-1], eps=eps, dtype=x.dtype)
    with torch.no_grad():
        m.weight.copy_(w)
    return m(x)


RMS_NORM = Exercise(
    check_rms_norm, NOTEBOOK, "my_rms_norm",
    near_misses=(
        Attempt("the mean subtracted: LayerNorm",
                lambda x, w, eps: F.layer_norm(x, x.shape[-1:], w, None, eps),
                ("subtracted the mean",)),
        Attempt("sum of squares", _rms(reduce=torch.sum), ("sum of squares",)),
        *_eps_misses(_rms, 1e-6),
        Attempt("the mean square, no sqrt", _rms(denom=lambda ms, e: ms + e),
                ("square root",)),
        Attempt("no weight", _rms(weight=False), ("weight is missing",)),
        Attempt("sign flipped", _rms(sign=-1.0), ("sign",)),
        Attempt("statistics in float16", _rms(upcast=False), ("float32",)),
        Attempt("over dimension 0",
                lambda x, w, eps: x * torch.rsqrt(x.pow(2).mean(0, keepdim=True) + eps) * w,
                ("dimension 0",)),
        Attempt("std instead of rms",
                lambda x, w, eps: (x.float() / torch.sqrt(x.float().var(-1, keepdim=True) + eps)
                                   * w.float()).to(x.dtype), ("largest error",)),
    ),
    right_answers=(
        Attempt("F.rms_norm (allowed here)",
                lambda x, w, eps: F.rms_norm(x, x.shape[-1:], w, eps)),
        *attempts(_rms_module, _rms_float64, _rms_norm_of_vector),
    ),
)

CASES = [LAYER_NORM, LAYER_NORM_BACKWARD, RMS_NORM]
