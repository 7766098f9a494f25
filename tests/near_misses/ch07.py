"""Chapter 7, "Fusing the residual add": count the bytes, derive the backward."""

import numpy as np
import torch

from near_misses import Attempt, Exercise, attempts
from normcourse.exercises.fused_add import (
    _formula_backward, _variant_backward, check_add_norm_bytes, check_add_rms_norm_backward,
)

NOTEBOOK = "notebooks/07_fusing_the_residual_add.ipynb"


# ------------------------------------------------------------------ bytes

def _bytes(rows_fused=4, rows_unfused=5, weight=None, stats=None):
    def count(m, n, e, fused):
        rows = rows_fused if fused else rows_unfused
        w = n * e if weight is None else weight(m, n, e)
        st = 4 * m if stats is None else stats(m, n, e)
        return rows * m * n * e + w + st
    return count


def _by_tensor_list(m, n, e, fused):
    reads = ["x", "residual"] if fused else ["x", "residual", "s"]
    writes = ["residual_out", "y"] if fused else ["s", "y"]
    return len(reads + writes) * m * n * e + n * e + m * 4


def _as_float(m, n, e, fused):
    return float((5 - fused) * m * n * e + n * e + m * 32 / 8)    # bool arithmetic, a float


BYTES_NEAR_MISSES = (
    Attempt("fused: residual_out not written", _bytes(rows_fused=3), ("residual_out",)),
    Attempt("unfused = fused", _bytes(rows_unfused=4), ("equals the fused one",)),
    Attempt("unfused: 6 row passes", _bytes(rows_unfused=6), ("s written twice",)),
    Attempt("fused and unfused swapped", _bytes(rows_fused=5, rows_unfused=4), ("swapped",)),
    Attempt("row passes only", lambda m, n, e, f: (4 if f else 5) * m * n * e,
            ("weight", "rstd", "missing")),
    Attempt("weight forgotten", _bytes(weight=lambda m, n, e: 0), ("weight is missing",)),
    Attempt("rstd forgotten", _bytes(stats=lambda m, n, e: 0), ("rstd is missing",)),
    Attempt("weight read per row", _bytes(weight=lambda m, n, e: m * n * e), ("once per row",)),
    Attempt("rstd in element_size bytes", _bytes(stats=lambda m, n, e: m * e), ("float32",)),
    Attempt("mean and rstd, as LayerNorm", _bytes(stats=lambda m, n, e: 8 * m), ("one statistic",)),
    Attempt("weight in float32", _bytes(weight=lambda m, n, e: 4 * n), ("input's dtype",)),
    Attempt("a weight and a bias", _bytes(weight=lambda m, n, e: 2 * n * e), ("no bias",)),
    Attempt("weight in elements", _bytes(weight=lambda m, n, e: n), ("counted in elements",)),
    Attempt("rstd as one byte per row", _bytes(stats=lambda m, n, e: m), ("one byte per row",)),
    Attempt("elements, not bytes", lambda m, n, e, f: (4 if f else 5) * m * n + n + m,
            ("elements, not bytes",)),
    Attempt("a string", lambda m, n, e, f: f"{(4 if f else 5) * m * n * e:,}", ("whole number",)),
    Attempt("a fraction", lambda m, n, e, f: (4 if f else 5) * m * n * e / 3, ("whole number",)),
)


# ------------------------------------------------------------------ backward

def _backward(x, r, w, eps, dy, dres, **mistake):
    """the chapter's"""  # with a mistake (see fused_add._variant_backward), a near miss
    return tuple(t.to(x.dtype) for t in _variant_backward(x, r, w, eps, dy, dres, **mistake))


def _in_float32(x, r, w, eps, dy, dres):
    """float32 inside"""
    grads = _formula_backward(*(t.float() for t in (x, r, w)), eps, dy.float(), dres.float())
    return tuple(t.to(x.dtype) for t in grads)


def _two_steps(x, r, w, eps, dy, dres):
    """sums, rstd cubed, einsum"""  # the norm's backward first, then residual_out's joins it
    s = x + r
    n = s.shape[-1]
    rstd = 1.0 / torch.sqrt((s ** 2).sum(-1, keepdim=True) / n + eps)
    d_norm = rstd * (dy * w) - s * rstd ** 3 * (dy * w * s).sum(-1, keepdim=True) / n
    ds = d_norm + dres
    dweight = torch.einsum("...n,...n->n", dy, s * rstd)
    return ds, ds.clone(), dweight


def _flattened(x, r, w, eps, dy, dres):
    """flattened to rows"""
    shape = x.shape
    flat = [t.reshape(-1, shape[-1]) for t in (x, r, dy, dres)]
    dx, dr, dw = _backward(flat[0], flat[1], w, eps, flat[2], flat[3])
    return dx.reshape(shape), dr.reshape(shape), dw


def _autograd(x, r, w, eps, dy, dres):
    leaves = [t.detach().clone().requires_grad_() for t in (x, r, w)]
    s = leaves[0] + leaves[1]
    y = s * torch.rsqrt((s * s).mean(-1, keepdim=True) + eps) * leaves[2]
    return torch.autograd.grad([y, s], leaves, [dy, dres])


def _layer_norm_backward(x, r, w, eps, dy, dres):
    # LayerNorm's backward, derived for the wrong norm
    s = x + r
    mu = s.mean(-1, keepdim=True)
    rstd = torch.rsqrt(((s - mu) ** 2).mean(-1, keepdim=True) + eps)
    x_hat = (s - mu) * rstd
    g = dy * w
    ds = rstd * (g - g.mean(-1, keepdim=True) - x_hat * (g * x_hat).mean(-1, keepdim=True)) + dres
    return ds, ds, (dy * x_hat).reshape(-1, s.shape[-1]).sum(0)


def _variance_rstd(x, r, w, eps, dy, dres):
    s = x + r
    rstd = torch.rsqrt(s.var(-1, keepdim=True, unbiased=False) + eps)   # LayerNorm's statistic
    s_hat = s * rstd
    g = dy * w
    ds = rstd * (g - s_hat * (g * s_hat).mean(-1, keepdim=True)) + dres
    return ds, ds, (dy * s_hat).reshape(-1, s.shape[-1]).sum(0)


def _dresidual_is_dres(x, r, w, eps, dy, dres):
    dx, _, dw = _backward(x, r, w, eps, dy, dres)
    return dx, dres.clone(), dw


def _mean_dweight(x, r, w, eps, dy, dres):
    dx, dr, dw = _backward(x, r, w, eps, dy, dres)
    return dx, dr, dw / (x.numel() // x.shape[-1])


def _keepdim_dweight(x, r, w, eps, dy, dres):
    dx, dr, dw = _backward(x, r, w, eps, dy, dres)
    return dx, dr, dw[None]


def _dy_in_place(x, r, w, eps, dy, dres):
    dy *= w                                              # changes the caller's dy
    return _backward(x, r, torch.ones_like(w), eps, dy, dres)


BACKWARD_NEAR_MISSES = (
    Attempt("dres forgotten", lambda *a: _backward(*a, with_dres=False), ("residual_out",)),
    Attempt("dresidual zero", lambda *a: (lambda g: (g[0], torch.zeros_like(g[0]), g[2]))(_backward(*a)),
            ("dresidual is zero",)),
    Attempt("dx only dres", lambda x, r, w, eps, dy, dres: (dres, dres, _backward(x, r, w, eps, dy, dres)[2]),
            ("path through the norm",)),
    Attempt("norm of x alone", lambda *a: _backward(*a, residual=False), ("x alone",)),
    Attempt("dy and dres swapped", lambda x, r, w, eps, dy, dres: _backward(x, r, w, eps, dres, dy),
            ("swapped",)),
    Attempt("eps forgotten", lambda *a: _backward(*a, eps_at="missing"), ("eps is missing",)),
    Attempt("eps outside the square root", lambda *a: _backward(*a, eps_at="outside"),
            ("outside the square root",)),
    Attempt("eps hard-coded as 1e-6",
            lambda x, r, w, eps, dy, dres: _backward(x, r, w, 1e-6, dy, dres),
            ("ignores its eps argument",)),
    Attempt("weight missing from dx", lambda *a: _backward(*a, weight=False), ("weight is missing",)),
    Attempt("projection term forgotten", lambda *a: _backward(*a, projection=0),
            ("x_hat * mean(g * x_hat)",)),
    Attempt("projection term added", lambda *a: _backward(*a, projection=-1), ("wrong sign",)),
    Attempt("mean(g) subtracted", lambda *a: _backward(*a, centre=True), ("LayerNorm", "mean(g)")),
    Attempt("LayerNorm's statistics and backward", _layer_norm_backward, ("LayerNorm's backward",
                                                                           "no mean")),
    Attempt("rstd from the variance", _variance_rstd, ("variance of s",)),
    Attempt("dresidual = dres", _dresidual_is_dres, ("dresidual is only dres",)),
    Attempt("dweight from s", lambda *a: _backward(*a, dweight="s"), ("dweight uses s",)),
    Attempt("dweight with the weight", lambda *a: _backward(*a, dweight="g"), ("includes the weight",)),
    Attempt("dweight averaged", _mean_dweight, ("averaged",)),
    Attempt("dweight keepdim", _keepdim_dweight, ("dweight has shape",)),
    Attempt("autograd, which the exercise forbids", _autograd, ("autograd",)),
    Attempt("dy *= weight in place", _dy_in_place, ("in place",)),
    Attempt("two tensors returned", lambda *a: _backward(*a)[:2], ("three tensors",)),
)


CASES = [
    Exercise(
        check_add_norm_bytes, NOTEBOOK, "add_norm_bytes",
        near_misses=BYTES_NEAR_MISSES,
        right_answers=(
            Attempt("the chapter's", _bytes()),
            Attempt("a list of tensors read and written", _by_tensor_list),
            Attempt("bool arithmetic, a float", _as_float),
            Attempt("an np.int64", lambda m, n, e, f: np.int64(_bytes()(m, n, e, f))),
            Attempt("a 0-d tensor", lambda m, n, e, f: torch.tensor(_bytes()(m, n, e, f))),
        ),
    ),
    Exercise(
        check_add_rms_norm_backward, NOTEBOOK, "add_rms_norm_backward",
        near_misses=BACKWARD_NEAR_MISSES,
        right_answers=(
            *attempts(_backward, _in_float32, _two_steps, _flattened),
        ),
    ),
]
