"""The chapter-5 checkers: they accept right answers and name each typical mistake."""

import pytest
import torch
import torch.nn.functional as F

from checker_run import assert_names_mistake, run

from normcourse.exercises.rms_and_dyt import check_dyt, check_rms_norm_backward
from normcourse.norms import RMSNormFunction


# ---- RMSNorm backward ----------------------------------------------------

def rms_bwd(dy, x, w, eps):
    rstd = torch.rsqrt((x * x).mean(-1, keepdim=True) + eps)
    x_hat = x * rstd
    g = dy * w
    return rstd * (g - x_hat * (g * x_hat).mean(-1, keepdim=True)), (dy * x_hat).sum(0)


def rms_bwd_autograd(dy, x, w, eps):
    x, w = x.detach().requires_grad_(), w.detach().requires_grad_()
    y = F.rms_norm(x, x.shape[-1:], w, eps)
    return torch.autograd.grad(y, (x, w), dy)


def rms_bwd_normcourse(dy, x, w, eps):
    x, w = x.detach().requires_grad_(), w.detach().requires_grad_()
    return torch.autograd.grad(RMSNormFunction.apply(x, w, eps), (x, w), dy)


def rms_bwd_float64_list(dy, x, w, eps):
    dx, dw = rms_bwd(dy.double(), x.double(), w.double(), eps)
    return [dx.float(), dw.float()]


def rms_bwd_expanded(dy, x, w, eps):
    # the same formula written through the mean square instead of rstd
    ms = (x * x).mean(-1, keepdim=True) + eps
    g = dy * w
    return g / ms.sqrt() - x * (g * x).mean(-1, keepdim=True) / ms ** 1.5, (dy * x / ms.sqrt()).sum(0)


@pytest.mark.parametrize("fn", [rms_bwd, rms_bwd_float64_list, rms_bwd_expanded])
def test_check_rms_norm_backward_accepts_correct_implementations(fn, capsys):
    ok, out = run(check_rms_norm_backward, fn, capsys)
    assert ok, out
    assert "\u2714" in out


@pytest.mark.parametrize("fn", [rms_bwd_autograd, rms_bwd_normcourse])
def test_check_rms_norm_backward_refuses_autograd(fn, capsys):
    # the exercise asks for the formula "without autograd"
    ok, out = run(check_rms_norm_backward, fn, capsys)
    assert ok is False and "you used autograd" in out, out


def _bwd(layer_norm_term=False, drop_proj=False, no_weight=False, no_rstd=False, dw_uses_x=False,
         proj_uses_x=False, dw_sum_dim=0, dw_is_dbias=False):
    def fn(dy, x, w, eps):
        rstd = torch.rsqrt((x * x).mean(-1, keepdim=True) + eps)
        x_hat = x * rstd
        g = dy if no_weight else dy * w
        inner = g
        if layer_norm_term:
            inner = inner - g.mean(-1, keepdim=True)
        if not drop_proj:
            along = x if proj_uses_x else x_hat
            inner = inner - along * (g * along).mean(-1, keepdim=True)
        dx = inner if no_rstd else rstd * inner
        if dw_is_dbias:
            dw = dy.sum(0)
        else:
            dw = (dy * (x if dw_uses_x else x_hat)).sum(dw_sum_dim)
        return dx, dw
    return fn


def bwd_three_outputs(dy, x, w, eps):
    dx, dw = rms_bwd(dy, x, w, eps)
    return dx, dw, dy.sum(0)


def bwd_inplace(dy, x, w, eps):
    dy *= w
    return rms_bwd(dy, x, torch.ones_like(w), eps)


def bwd_not_implemented(dy, x, w, eps):
    raise NotImplementedError("your code here")


@pytest.mark.parametrize("fn, message", [
    (_bwd(layer_norm_term=True), "LayerNorm's `- mean(g)` term"),
    (_bwd(drop_proj=True), "treats rstd as a constant"),
    (_bwd(no_weight=True), "ignores the weight"),
    (_bwd(no_rstd=True), "missing the overall factor rstd"),
    (_bwd(proj_uses_x=True), "uses x instead of x_hat"),
    (_bwd(dw_uses_x=True), "dweight uses x instead of the normalized x_hat"),
    (_bwd(dw_is_dbias=True), "that is LayerNorm's dbias"),
    (_bwd(dw_sum_dim=-1), "dweight (x of shape (6, 32), eps=1e-06) has shape (6,)"),
    (bwd_three_outputs, "should return a tuple (dx, dweight), got tuple of length 3"),
    (bwd_inplace, "in place"),
    (bwd_not_implemented, "not implemented yet"),
])
def test_check_rms_norm_backward_names_the_mistake(fn, message, capsys):
    assert_names_mistake(check_rms_norm_backward, fn, message, capsys)


# ---- DyT -----------------------------------------------------------------

def dyt(x, alpha, gamma, beta):
    return gamma * torch.tanh(alpha * x) + beta


def dyt_float32_inside(x, alpha, gamma, beta):
    y = gamma.float() * torch.tanh(alpha.float() * x.float()) + beta.float()
    return y.to(x.dtype)


def dyt_addcmul(x, alpha, gamma, beta):
    return torch.addcmul(beta, gamma, (alpha * x).tanh())


def dyt_float64_inside(x, alpha, gamma, beta):
    y = gamma.double() * torch.tanh(alpha.double() * x.double()) + beta.double()
    return y.to(x.dtype)


def dyt_via_sigmoid(x, alpha, gamma, beta):
    # tanh(z) = 2 sigmoid(2z) - 1: the same function
    return gamma * (2 * torch.sigmoid(2 * alpha * x) - 1) + beta


@pytest.mark.parametrize("fn", [dyt, dyt_float32_inside, dyt_addcmul, dyt_float64_inside, dyt_via_sigmoid])
def test_check_dyt_accepts_correct_implementations(fn, capsys):
    ok, out = run(check_dyt, fn, capsys)
    assert ok, out
    assert "\u2714" in out


def dyt_alpha_outside(x, alpha, gamma, beta):
    return gamma * alpha * torch.tanh(x) + beta


def dyt_no_alpha(x, alpha, gamma, beta):
    return gamma * torch.tanh(x) + beta


def dyt_no_gamma(x, alpha, gamma, beta):
    return torch.tanh(alpha * x) + beta


def dyt_no_beta(x, alpha, gamma, beta):
    return gamma * torch.tanh(alpha * x)


def dyt_swapped(x, alpha, gamma, beta):
    return beta * torch.tanh(alpha * x) + gamma


def dyt_normalizes_first(x, alpha, gamma, beta):
    xf = x.float()
    ln = (xf - xf.mean(-1, keepdim=True)) / xf.std(-1, unbiased=False, keepdim=True)
    return (gamma * torch.tanh(alpha * ln) + beta).to(x.dtype)


def dyt_handmade_tanh(x, alpha, gamma, beta):
    z = alpha * x
    return gamma * (torch.exp(z) - torch.exp(-z)) / (torch.exp(z) + torch.exp(-z)) + beta


def dyt_item(x, alpha, gamma, beta):
    return gamma * torch.tanh(alpha.item() * x) + beta


def dyt_detached(x, alpha, gamma, beta):
    return (gamma * torch.tanh(alpha * x) + beta).detach()


def dyt_sigmoid(x, alpha, gamma, beta):
    return gamma * torch.sigmoid(alpha * x) + beta


def dyt_float32_out(x, alpha, gamma, beta):
    return gamma.float() * torch.tanh(alpha.float() * x.float()) + beta.float()


@pytest.mark.parametrize("fn, message", [
    (dyt_alpha_outside, "alpha multiplies tanh's output"),
    (dyt_no_alpha, "alpha is missing"),
    (dyt_no_gamma, "gamma is missing"),
    (dyt_no_beta, "beta is missing"),
    (dyt_swapped, "gamma and beta are swapped"),
    (dyt_normalizes_first, "element-wise"),
    (dyt_handmade_tanh, "exp(z) overflows"),
    (dyt_item, "gradient with respect to alpha"),
    (dyt_detached, "no gradient flows"),
    (dyt_sigmoid, "you used a sigmoid"),
    (dyt_float32_out, "dtype torch.float32 but the input was torch.bfloat16"),
])
def test_check_dyt_names_the_mistake(fn, message, capsys):
    assert_names_mistake(check_dyt, fn, message, capsys)


def test_checkers_survive_a_non_function(capsys):
    for check in (check_rms_norm_backward, check_dyt):
        ok, out = run(check, None, capsys)
        assert ok is False and "needs your function" in out


def test_the_models_dyt_module_is_what_the_checker_accepts(capsys):
    from normcourse.blocks import DyT

    def via_module(x, alpha, gamma, beta):
        m = DyT(x.shape[-1], alpha_init=float(alpha))
        with torch.no_grad():
            m.weight.copy_(gamma)
            m.bias.copy_(beta)
        return m(x.float()).to(x.dtype)

    x = torch.randn(3, 24)
    a, w, b = torch.tensor([0.7]), torch.randn(24), torch.randn(24)
    assert torch.allclose(via_module(x, a, w, b), dyt(x, a, w, b), atol=1e-6)
