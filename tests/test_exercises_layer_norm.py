"""The chapter-4 checkers: they accept right answers and name each typical mistake."""

import pytest
import torch
import torch.nn.functional as F

from checker_run import assert_names_mistake, run

from normcourse.exercises import check_layer_norm, check_layer_norm_backward, check_rms_norm
from normcourse.exercises.layer_norm import welford_sweep


# ---- LayerNorm forward ---------------------------------------------------

def ln_two_pass(x, w, b, eps):
    m = x.mean(-1, keepdim=True)
    return (x - m) / torch.sqrt(((x - m) ** 2).mean(-1, keepdim=True) + eps) * w + b


def ln_float32_inside(x, w, b, eps):
    xf = x.float()
    y = (xf - xf.mean(-1, keepdim=True)) * torch.rsqrt(xf.var(-1, unbiased=False, keepdim=True) + eps)
    return (y * w.float() + b.float()).to(x.dtype)


def ln_torch(x, w, b, eps):
    return F.layer_norm(x, x.shape[-1:], w, b, eps)


def ln_float64_inside(x, w, b, eps):
    return ln_two_pass(x.double(), w.double(), b.double(), eps).to(x.dtype)


def ln_var_mean(x, w, b, eps):
    var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
    return torch.addcmul(b, (x - mean) / (var + eps).sqrt(), w)


def ln_welford_float32(x, w, b, eps):
    # chapter 4's recommendation for large means: one sweep gives mean and variance
    xf = x.float()
    mean, var = welford_sweep(xf)
    return ((xf - mean) * torch.rsqrt(var + eps) * w.float() + b.float()).to(x.dtype)


def ln_welford_variance_only(x, w, b, eps):
    xf = x.float()
    _, var = welford_sweep(xf)
    y = (xf - xf.mean(-1, keepdim=True)) / torch.sqrt(var + eps)
    return (y * w.float() + b.float()).to(x.dtype)


@pytest.mark.parametrize("fn", [ln_float32_inside, ln_float64_inside, ln_welford_float32,
                                ln_welford_variance_only])
def test_check_layer_norm_accepts_correct_implementations(fn, capsys):
    ok, out = run(check_layer_norm, fn, capsys)
    assert ok, out
    assert "\u2714" in out


def _ln(unbiased=False, eps_inside=True, dim=-1, one_pass=False, affine=True, use_eps=True):
    def fn(x, w, b, eps):
        m = x.mean(dim, keepdim=True)
        if one_pass:
            v = (x * x).mean(dim, keepdim=True) - m * m
        else:
            v = x.var(dim, unbiased=unbiased, keepdim=True)
        e = eps if use_eps else 0.0
        y = (x - m) / (torch.sqrt(v + e) if eps_inside else torch.sqrt(v) + e)
        return y * w + b if affine else y
    return fn


def ln_inplace(x, w, b, eps):
    x -= x.mean(-1, keepdim=True)
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w + b


def ln_returns_float32(x, w, b, eps):
    return ln_two_pass(x.float(), w.float(), b.float(), eps)


def ln_flattens(x, w, b, eps):
    return ln_two_pass(x.reshape(-1, x.shape[-1]), w, b, eps)


def ln_not_implemented(x, w, b, eps):
    raise NotImplementedError("your code here")


def ln_crashes(x, w, b, eps):
    return x @ w.unsqueeze(0)


def ln_returns_none(x, w, b, eps):
    ln_two_pass(x, w, b, eps)


def ln_swapped(x, w, b, eps):
    return ln_two_pass(x, b, w, eps)


def _ln_one_pass_kept_positive(keep):
    """E[x^2] - E[x]^2 with the negative variances hidden by clamp or abs: no NaN, still wrong."""
    def fn(x, w, b, eps):
        m = x.mean(-1, keepdim=True)
        v = keep((x * x).mean(-1, keepdim=True) - m * m)
        return (x - m) / torch.sqrt(v + eps) * w + b
    return fn


@pytest.mark.parametrize("fn, message", [
    (_ln(unbiased=True), "unbiased variance"),
    (_ln(eps_inside=False), "eps is added outside the square root"),
    (_ln(dim=0), "dimension 0"),
    (_ln(one_pass=True), "large mean"),
    (_ln_one_pass_kept_positive(lambda v: v.clamp(min=0)), "loses all precision"),
    (_ln_one_pass_kept_positive(torch.abs), "loses all precision"),
    (_ln(affine=False), "without the affine map"),
    (_ln(use_eps=False), "eps is missing"),
    (ln_inplace, "in place"),
    (ln_returns_float32, "dtype torch.float32 but the input was torch.float16"),
    (ln_flattens, "has shape (10, 48), expected (2, 5, 48)"),
    (ln_not_implemented, "not implemented yet"),
    (ln_crashes, "raised RuntimeError"),
    (ln_returns_none, "should be a torch.Tensor, got NoneType"),
    (ln_swapped, "swapped"),
    (ln_torch, "you called F.layer_norm"),
    (ln_two_pass, "you compute the statistics in float16"),   # right in float32, not in float16
    (ln_var_mean, "you compute the statistics in float16"),
])
def test_check_layer_norm_names_the_mistake(fn, message, capsys):
    assert_names_mistake(check_layer_norm, fn, message, capsys)


def test_checker_survives_a_non_function(capsys):
    ok, out = run(check_layer_norm, 42, capsys)
    assert ok is False and "needs your function" in out


# ---- RMSNorm forward -----------------------------------------------------

def rms_ok(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rms_norm_of_vector(x, w, eps):
    n = x.shape[-1]
    return x / torch.sqrt(torch.linalg.vector_norm(x, dim=-1, keepdim=True) ** 2 / n + eps) * w


def rms_torch(x, w, eps):
    return F.rms_norm(x, x.shape[-1:], w, eps)


def _in_float32(rms):
    def fn(x, w, eps):
        return rms(x.float(), w.float(), eps).to(x.dtype)
    return fn


@pytest.mark.parametrize("fn", [_in_float32(rms_ok), _in_float32(rms_norm_of_vector), rms_torch])
def test_check_rms_norm_accepts_correct_implementations(fn, capsys):
    ok, out = run(check_rms_norm, fn, capsys)
    assert ok, out


@pytest.mark.parametrize("fn", [rms_ok, rms_norm_of_vector])
def test_check_rms_norm_names_float16_statistics(fn, capsys):
    # right in float32, but x * x overflows float16 on entries of a few hundred
    assert_names_mistake(check_rms_norm, fn, "x * x overflows float16", capsys)


@pytest.mark.parametrize("fn, message", [
    (lambda x, w, eps: F.layer_norm(x, x.shape[-1:], w, None, eps), "subtracted the mean"),
    (lambda x, w, eps: x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + eps) * w, "sum of squares"),
    (lambda x, w, eps: x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps) * w, "outside the square root"),
    (lambda x, w, eps: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps), "weight is missing"),
    (lambda x, w, eps: x * torch.rsqrt(x.pow(2).mean(0, keepdim=True) + eps) * w, "dimension 0"),
    (lambda x, w, eps: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True)) * w, "eps is missing"),
])
def test_check_rms_norm_names_the_mistake(fn, message, capsys):
    ok, out = run(check_rms_norm, fn, capsys)
    assert ok is False
    assert message in out, out


# ---- LayerNorm backward --------------------------------------------------

def bw_formula(dy, x, w, eps):
    mean = x.mean(-1, keepdim=True)
    rstd = ((x - mean).pow(2).mean(-1, keepdim=True) + eps).rsqrt()
    xh = (x - mean) * rstd
    g = dy * w
    n = x.shape[-1]
    # an equivalent arrangement: (n * g - sum g - xh * sum(g xh)) * rstd / n
    dx = (n * g - g.sum(-1, keepdim=True) - xh * (g * xh).sum(-1, keepdim=True)) * rstd / n
    return dx, (dy * xh).sum(0), dy.sum(0)


def bw_autograd(dy, x, w, eps):
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    b = torch.zeros_like(w, requires_grad=True)
    F.layer_norm(x, x.shape[-1:], w, b, eps).backward(dy)
    return x.grad, w.grad, b.grad


def test_check_layer_norm_backward_accepts_the_formula(capsys):
    ok, out = run(check_layer_norm_backward, bw_formula, capsys)
    assert ok, out


def test_check_layer_norm_backward_refuses_autograd(capsys):
    # the exercise asks for the formula "without autograd"
    assert_names_mistake(check_layer_norm_backward, bw_autograd, "you used autograd", capsys)


def _bw(drop_mean=False, drop_proj=False, ignore_weight=False, dw_with_x=False, no_rstd=False,
        db_wrong=False, no_sum=False):
    def fn(dy, x, w, eps):
        mean = x.mean(-1, keepdim=True)
        rstd = ((x - mean).pow(2).mean(-1, keepdim=True) + eps).rsqrt()
        xh = (x - mean) * rstd
        g = dy if ignore_weight else dy * w
        inner = g
        if not drop_mean:
            inner = inner - g.mean(-1, keepdim=True)
        if not drop_proj:
            inner = inner - xh * (g * xh).mean(-1, keepdim=True)
        dx = inner if no_rstd else rstd * inner
        dw = dy * (x if dw_with_x else xh)
        return dx, (dw if no_sum else dw.sum(0)), (dy.mean(0) if db_wrong else dy.sum(0))
    return fn


@pytest.mark.parametrize("fn, message", [
    (_bw(drop_mean=True), "missing the `- mean(g)` term"),
    (_bw(drop_proj=True), "missing the `- x_hat * mean(g * x_hat)` term"),
    (_bw(drop_mean=True, drop_proj=True), "treats mean and variance as constants"),
    (_bw(ignore_weight=True), "ignores the weight"),
    (_bw(no_rstd=True), "missing the overall factor rstd"),
    (_bw(dw_with_x=True), "dweight uses x instead of the normalized x_hat"),
    (_bw(no_sum=True), "dweight (x of shape (6, 32)) has shape (6, 32)"),
    (_bw(db_wrong=True), "dbias is wrong"),
    (lambda dy, x, w, eps: (dy, w), "should return a tuple (dx, dweight, dbias)"),
])
def test_check_layer_norm_backward_names_the_mistake(fn, message, capsys):
    ok, out = run(check_layer_norm_backward, fn, capsys)
    assert ok is False
    assert message in out, out
