"""Chapter 5, "RMSNorm and DyT": near misses and unusual right answers."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from near_misses import Attempt, Exercise, attempts
from normcourse.exercises.rms_and_dyt import check_dyt, check_rms_norm_backward

NOTEBOOK = "notebooks/05_rmsnorm_and_dyt.ipynb"


# ---- rms_norm_backward(dy, x, weight, eps) ---------------------------------------------------

def _bw(weight=True, proj=True, rstd=True, ln_term=False, dw_x=False, proj_x=False, sign=1.0,
        proj_sign=1.0, eps_used=lambda e: e, axis=-1, dw_dim=0):
    def fn(dy, x, w, eps):
        r = torch.rsqrt((x * x).mean(-1, keepdim=True) + eps_used(eps))
        xh = x * r
        g = dy * w if weight else dy
        inner = g
        if ln_term:
            inner = inner - g.mean(-1, keepdim=True)
        if proj:
            along = x if proj_x else xh
            inner = inner - proj_sign * along * (g * along).mean(axis, keepdim=True)
        dx = sign * (r * inner if rstd else inner)
        return dx, (dy * (x if dw_x else xh)).sum(dw_dim)
    return fn


def _bw_autograd(dy, x, w, eps):
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    y = x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w
    return torch.autograd.grad(y, (x, w), dy)


def _bw_cubed(dy, x, w, eps):
    """rstd cubed"""
    # the same formula expanded: rstd * g - x * rstd^3 * mean(g * x)
    r = torch.rsqrt((x * x).mean(-1, keepdim=True) + eps)
    g = dy * w
    return r * g - x * r ** 3 * (g * x).mean(-1, keepdim=True), (dy * x * r).sum(0)


def _bw_float64(dy, x, w, eps):
    """float64 inside"""
    dx, dw = _bw()(dy.double(), x.double(), w.double(), eps)
    return dx.to(x.dtype), dw.to(w.dtype)


def _bw_rows(dy, x, w, eps):
    """loop over rows"""
    dx, dw = torch.empty_like(x), torch.zeros_like(w)
    for i in range(x.shape[0]):
        r = 1.0 / torch.sqrt((x[i] ** 2).mean() + eps)
        xh, g = x[i] * r, dy[i] * w
        dx[i] = r * (g - xh * (g * xh).mean())
        dw += dy[i] * xh
    return dx, dw


def _bw_list(dy, x, w, eps):
    """a list"""
    return list(_bw()(dy, x, w, eps))


RMS_NORM_BACKWARD = Exercise(
    check_rms_norm_backward, NOTEBOOK, "my_rms_norm_backward",
    near_misses=(
        Attempt("LayerNorm's - mean(g)", _bw(ln_term=True), ("- mean(g)",)),
        Attempt("autograd, which the exercise forbids", _bw_autograd, ("autograd",)),
        Attempt("weight ignored", _bw(weight=False), ("ignores the weight",)),
        Attempt("rstd as a constant", _bw(proj=False), ("constant",)),
        Attempt("rstd factor forgotten", _bw(rstd=False), ("overall factor rstd",)),
        Attempt("projection along x", _bw(proj_x=True), ("uses x instead of x_hat",)),
        Attempt("dweight from x", _bw(dw_x=True), ("dweight uses x",)),
        Attempt("dweight over the features", _bw(dw_dim=-1), ("dim=0",)),
        Attempt("dx negated", _bw(sign=-1.0), ("sign",)),
        Attempt("+ projection", _bw(proj_sign=-1.0), ("sign",)),
        Attempt("no eps in rstd", _bw(eps_used=lambda e: 0.0), ("eps", "missing")),
        Attempt("eps hard-coded as 1e-6", _bw(eps_used=lambda e: 1e-6),
                ("ignores its eps argument",)),
        Attempt("means over the rows", _bw(axis=0), ("dim=-1",)),
        Attempt("returns a dbias too",
                lambda dy, x, w, eps: (*_bw()(dy, x, w, eps), dy.sum(0)), ("no dbias",)),
        Attempt("dweight as LayerNorm's dbias",
                lambda dy, x, w, eps: (_bw()(dy, x, w, eps)[0], dy.sum(0)), ("dbias",)),
        Attempt("inputs scaled in place",
                lambda dy, x, w, eps: _bw()(dy.mul_(1.0), x.mul_(2.0), w, eps), ("in place",)),
    ),
    right_answers=attempts(_bw_cubed, _bw_float64, _bw_rows, _bw_list),
)


# ---- dyt(x, alpha, gamma, beta) ---------------------------------------------------------------

def _dyt_exp(x, alpha, gamma, beta):
    z = alpha * x
    return gamma * (torch.exp(z) - torch.exp(-z)) / (torch.exp(z) + torch.exp(-z)) + beta


def _dyt_sigmoid(x, alpha, gamma, beta):
    return gamma * (2 * torch.sigmoid(2 * alpha * x) - 1) + beta   # tanh(z) = 2 sigmoid(2z) - 1


def _dyt_float32(x, alpha, gamma, beta):
    y = gamma.float() * torch.tanh(alpha.float() * x.float()) + beta.float()
    return y.to(x.dtype)


def _dyt_addcmul(x, alpha, gamma, beta):
    return torch.addcmul(beta, gamma, torch.tanh(alpha * x))


def _dyt_module(x, alpha, gamma, beta):
    return gamma * torch.nn.Tanh()(alpha[0] * x) + beta


def _dyt_f_tanh(x, alpha, gamma, beta):
    return gamma * F.tanh(x * alpha) + beta


def _dyt_inplace(x, alpha, gamma, beta):
    return gamma * torch.tanh(x.mul_(alpha)) + beta


DYT = Exercise(
    check_dyt, NOTEBOOK, "my_dyt",
    near_misses=(
        Attempt("alpha outside the tanh",
                lambda x, a, g, b: g * a * torch.tanh(x) + b, ("alpha multiplies tanh's output",)),
        Attempt("no alpha", lambda x, a, g, b: g * torch.tanh(x) + b, ("alpha is missing",)),
        Attempt("no gamma", lambda x, a, g, b: torch.tanh(a * x) + b, ("gamma is missing",)),
        Attempt("no beta", lambda x, a, g, b: g * torch.tanh(a * x), ("beta is missing",)),
        Attempt("gamma and beta swapped", lambda x, a, g, b: b * torch.tanh(a * x) + g,
                ("swapped",)),
        Attempt("affine inside the tanh", lambda x, a, g, b: torch.tanh(g * a * x + b),
                ("inside the tanh",)),
        Attempt("beta inside the tanh", lambda x, a, g, b: g * torch.tanh(a * x + b),
                ("beta",)),
        Attempt("sigmoid", lambda x, a, g, b: g * torch.sigmoid(a * x) + b, ("sigmoid",)),
        Attempt("sign flipped", lambda x, a, g, b: g * torch.tanh(-a * x) + b, ("sign",)),
        Attempt("alpha.item(): no gradient",
                lambda x, a, g, b: g * torch.tanh(a.item() * x) + b, ("gradient",)),
        Attempt("float(alpha) and detached parameters",
                lambda x, a, g, b: (g * torch.tanh(float(a.detach()) * x) + b).detach(),
                ("gradient",)),
        Attempt("hand-written tanh overflows", _dyt_exp, ("overflow",)),
        Attempt("float32 result for bfloat16",
                lambda x, a, g, b: g.float() * torch.tanh(a.float() * x.float()) + b.float(),
                ("dtype",)),
        Attempt("x scaled in place", _dyt_inplace, ("in place",)),
        Attempt("normalized first",
                lambda x, a, g, b: g * torch.tanh(a * F.layer_norm(x, x.shape[-1:])) + b,
                ("normalized",)),
        Attempt("hardtanh", lambda x, a, g, b: g * F.hardtanh(a * x) + b, ("largest error",)),
        Attempt("tanh of alpha alone", lambda x, a, g, b: g * torch.tanh(a) * x + b,
                ("largest error",)),
    ),
    right_answers=(
        Attempt("2 sigmoid(2z) - 1", _dyt_sigmoid),
        Attempt("float32 inside", _dyt_float32),
        Attempt("addcmul", _dyt_addcmul),
        Attempt("nn.Tanh and alpha[0]", _dyt_module),
        Attempt("F.tanh, x * alpha", _dyt_f_tanh),
        Attempt("method chain", lambda x, a, g, b: torch.tanh(a * x).mul(g).add(b)),
    ),
)

CASES = [RMS_NORM_BACKWARD, DYT]
