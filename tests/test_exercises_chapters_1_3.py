"""Checkers of chapters 1-3 accept right answers (also alternative formulas) and reject typical
wrong ones with a specific message."""

import math

import numpy as np
import pytest
import torch

from checker_run import run, _not_implemented

from normcourse.exercises import signal_propagation as sp
from normcourse.exercises.feedback import PASS


# ---------------------------------------------------------------- chapter 1


@pytest.mark.parametrize("fn", [
    lambda a, t: float((a.abs() > t).float().mean()),
    lambda a, t: (a.abs() > t).sum().item() / a.numel(),
    lambda a, t: ((a > t) | (a < -t)).double().mean(),           # a 0-d tensor is fine
    lambda a, t: torch.mean((torch.abs(a) > t).to(torch.float32)),
    # NumPy numbers are numbers too
    lambda a, t: np.float32((a.abs() > t).float().mean().item()),
    lambda a, t: np.mean(np.abs(a.numpy()) > t),                  # np.float64
    lambda a, t: np.asarray((a.abs() > t).float().mean().item()),  # a 0-d array
    lambda a, t: (a.abs() > t).float().mean().reshape(1),          # a one-element tensor
])
def test_fraction_saturated_accepts(fn, capsys):
    ok, out = run(sp.check_fraction_saturated, fn, capsys)
    assert ok, out
    assert PASS in out


@pytest.mark.parametrize("fn, message", [
    (lambda a, t: 100 * float((a.abs() > t).float().mean()), "percentage"),
    (lambda a, t: float((a.abs() > t).sum()), "number of saturated entries"),
    (lambda a, t: float((a > t).float().mean()), "only units near +1"),
    (lambda a, t: float((a.abs() < t).float().mean()), "not* saturated"),
    (lambda a, t: float((a.abs() > 0.97).float().mean()), "threshold"),
    (lambda a, t: (a.abs() > t).float().mean(dim=0), "single number"),
    (lambda a, t: None, "should be a number"),
    (lambda a, t: np.mean(np.abs(a.numpy()) > t, axis=0), "NumPy array of shape"),
    (lambda a, t: 1 / 0, "ZeroDivisionError"),
])
def test_fraction_saturated_rejects(fn, message, capsys):
    ok, out = run(sp.check_fraction_saturated, fn, capsys)
    assert not ok
    assert message in out, out


@pytest.mark.parametrize("fn", [
    lambda w, g, lr: math.log10(float((lr * g).std() / w.std())),
    lambda w, g, lr: torch.log10((lr * g).std(unbiased=False) / w.std(unbiased=False)),
    lambda w, g, lr: math.log10(lr) + math.log10(g.std().item()) - math.log10(w.std().item()),
    lambda w, g, lr: np.log10(np.std(lr * g.numpy(), ddof=1) / np.std(w.numpy(), ddof=1)),  # np.float32
])
def test_update_ratio_accepts(fn, capsys):
    ok, out = run(sp.check_update_to_data_ratio, fn, capsys)
    assert ok, out


# the update ratio's near misses, each with the words its feedback must hold, are in
# tests/near_misses/ch01.py


def test_checker_needs_a_function(capsys):
    assert not sp.check_fraction_saturated(0.5)
    assert "needs your function" in capsys.readouterr().out


# ---------------------------------------------------------------- chapter 3

import torch.nn.functional as F  # noqa: E402

from normcourse.exercises import batch_vs_layer as bl  # noqa: E402


def _bn_manual(x):
    m = x.mean(0, keepdim=True)
    v = ((x - m) ** 2).mean(0, keepdim=True)
    return (x - m) / torch.sqrt(v + 1e-5)


@pytest.mark.parametrize("fn", [
    _bn_manual,
    lambda x: F.batch_norm(x, None, None, training=True, eps=1e-5),
    lambda x: torch.nn.BatchNorm1d(x.shape[1], affine=False, dtype=x.dtype).train()(x).detach(),
    lambda x: (x - x.mean(0)) * torch.rsqrt(x.var(0, unbiased=False) + 1e-5),
])
def test_batch_norm_accepts(fn, capsys):
    ok, out = run(bl.check_batch_norm_train, fn, capsys)
    assert ok, out


@pytest.mark.parametrize("fn, message", [
    (lambda x: F.layer_norm(x, x.shape[-1:]), "LayerNorm"),
    (lambda x: (x - x.mean(0)) / torch.sqrt(x.var(0) + 1e-5), "unbiased"),
    (lambda x: (x - x.mean(0)) / x.std(0, unbiased=False), "eps"),
    (lambda x: (x - x.mean(0)) / (x.std(0, unbiased=False) + 1e-5), "eps"),
    (lambda x: x - x.mean(0), "largest error"),
    (lambda x: _bn_manual(x).float(), "dtype"),
    (lambda x: _bn_manual(x)[0], "shape"),
    (_not_implemented, "not implemented"),
])
def test_batch_norm_rejects(fn, message, capsys):
    ok, out = run(bl.check_batch_norm_train, fn, capsys)
    assert not ok
    assert message in out, out


def _masked_sums(x, mask):
    w = mask[..., None].to(x.dtype)
    n = w.sum((0, 1))
    mean = (x * w).sum((0, 1)) / n
    var = (((x - mean) * w) ** 2).sum((0, 1)) / n
    return (x - mean) / torch.sqrt(var + 1e-5) * w


def _masked_indexing(x, mask):
    real = x[mask]                                 # (n_real, C)
    mean, var = real.mean(0), real.var(0, unbiased=False)
    out = torch.zeros_like(x)
    out[mask] = (real - mean) / torch.sqrt(var + 1e-5)
    return out


def _masked_via_functional(x, mask):
    out = torch.zeros_like(x)
    out[mask] = F.batch_norm(x[mask], None, None, training=True, eps=1e-5)
    return out


@pytest.mark.parametrize("fn", [_masked_sums, _masked_indexing, _masked_via_functional])
def test_masked_bn_accepts(fn, capsys):
    ok, out = run(bl.check_masked_batch_norm, fn, capsys)
    assert ok, out


def _include_pads(x, mask):
    return F.batch_norm(x.reshape(-1, x.shape[-1]), None, None, training=True).reshape(x.shape) \
        * mask[..., None]


def _divide_by_bt(x, mask):
    w = mask[..., None].to(x.dtype)
    n = mask.numel()
    mean = (x * w).sum((0, 1)) / n
    var = (((x - mean) * w) ** 2).sum((0, 1)) / n
    return (x - mean) / torch.sqrt(var + 1e-5) * w


def _per_sequence(x, mask):
    out = torch.zeros_like(x)
    for b in range(x.shape[0]):
        n = int(mask[b].sum())
        out[b, :n] = F.batch_norm(x[b, :n], None, None, training=True)
    return out


def _unbiased(x, mask):
    real = x[mask]
    out = torch.zeros_like(x)
    out[mask] = (real - real.mean(0)) / torch.sqrt(real.var(0) + 1e-5)
    return out


@pytest.mark.parametrize("fn, message", [
    (_include_pads, "padding tokens were counted"),
    (lambda x, m: _masked_sums(x, m) + (~m[..., None]) * 1.0, "padded positions are not zero"),
    (_divide_by_bt, "divided by B * T"),
    (_per_sequence, "each sequence over its own tokens"),
    (_unbiased, "unbiased"),
    (lambda x, m: _masked_sums(x, m).transpose(0, 1), "shape"),
])
def test_masked_bn_rejects(fn, message, capsys):
    ok, out = run(bl.check_masked_batch_norm, fn, capsys)
    assert not ok
    assert message in out, out


# ---------------------------------------------------------------- chapter 2

from normcourse.exercises import residuals as rs  # noqa: E402


def _jac_formula(W1, W2, x):
    s = 1 - torch.tanh(W1 @ x) ** 2
    return torch.eye(x.shape[0], dtype=x.dtype) + W2 @ torch.diag(s) @ W1


@pytest.mark.parametrize("fn", [
    _jac_formula,
    lambda W1, W2, x: torch.autograd.functional.jacobian(lambda v: v + W2 @ torch.tanh(W1 @ v), x),
    lambda W1, W2, x: torch.eye(len(x), dtype=x.dtype) + (W2 * (1 / torch.cosh(W1 @ x) ** 2)) @ W1,
])
def test_residual_jacobian_accepts(fn, capsys):
    ok, out = run(rs.check_residual_jacobian, fn, capsys)
    assert ok, out


@pytest.mark.parametrize("fn, message", [
    (lambda W1, W2, x: _jac_formula(W1, W2, x) - torch.eye(len(x), dtype=x.dtype), "identity is missing"),
    (lambda W1, W2, x: torch.eye(len(x), dtype=x.dtype) + W2 @ W1, "derivative of tanh is missing"),
    (lambda W1, W2, x: torch.eye(len(x), dtype=x.dtype) + W2 @ torch.diag(torch.tanh(W1 @ x)) @ W1,
     "where its derivative"),
    (lambda W1, W2, x: _jac_formula(W1, W2, x).T, "transposed"),
    (lambda W1, W2, x: 2 * _jac_formula(W1, W2, x), "largest error"),
    (lambda W1, W2, x: _jac_formula(W1, W2, x).float(), "dtype"),
])
def test_residual_jacobian_rejects(fn, message, capsys):
    ok, out = run(rs.check_residual_jacobian, fn, capsys)
    assert not ok
    assert message in out, out


def _gpt2_ok(linear, n_layer, base_std):
    torch.nn.init.normal_(linear.weight, mean=0.0, std=base_std / math.sqrt(2 * n_layer))


def _gpt2_ok_manual(linear, n_layer, base_std):
    with torch.no_grad():
        linear.weight.copy_(torch.randn_like(linear.weight) * base_std * (2 * n_layer) ** -0.5)


def _gpt2_with(std_fn):
    def init(linear, n_layer, base_std):
        torch.nn.init.normal_(linear.weight, 0.0, std_fn(n_layer, base_std))
    return init


@pytest.mark.parametrize("fn", [_gpt2_ok, _gpt2_ok_manual])
def test_gpt2_init_accepts(fn, capsys):
    ok, out = run(rs.check_gpt2_init, fn, capsys)
    assert ok, out


@pytest.mark.parametrize("fn, message", [
    (_gpt2_with(lambda n, s: s / math.sqrt(n)), "two residual branches"),
    (_gpt2_with(lambda n, s: s / (2 * n)), "instead of its square root"),
    (_gpt2_with(lambda n, s: s), "not scaled down"),
    (_gpt2_with(lambda n, s: s ** 2 / (2 * n)), "variance"),
    (_gpt2_with(lambda n, s: 0.5 * s / math.sqrt(2 * n)), "expected"),
    (lambda linear, n, s: None, "was not changed"),
])
def test_gpt2_init_rejects(fn, message, capsys):
    ok, out = run(rs.check_gpt2_init, fn, capsys)
    assert not ok
    assert message in out, out


def test_update_ratio_shows_enough_digits_to_see_the_difference(capsys):
    # 3e-4 off: the tolerance is 1e-4, so the two printed values must differ visibly
    ok, out = run(sp.check_update_to_data_ratio,
                  lambda w, g, lr: math.log10(float((lr * g).std() / w.std())) + 3e-4, capsys)
    assert not ok
    line = out.splitlines()[0]
    returned, expected = line.split("you returned ")[1].split(", expected ")
    assert returned != expected.rstrip("."), out


def _bn_float32_inside(x):
    xf = x.float()
    m = xf.mean(0, keepdim=True)
    v = ((xf - m) ** 2).mean(0, keepdim=True)
    return ((xf - m) / torch.sqrt(v + 1e-5)).to(x.dtype)


def _masked_float32_inside(x, mask):
    return _masked_sums(x.float(), mask).to(x.dtype)


def _jac_float32_inside(W1, W2, x):
    return _jac_formula(W1.float(), W2.float(), x.float()).to(x.dtype)


def test_float32_inside_is_accepted_on_float64_inputs(capsys):
    # the dtype hint itself says "compute in float32 if you like, but convert back"
    for check, fn in ((bl.check_batch_norm_train, _bn_float32_inside),
                      (bl.check_masked_batch_norm, _masked_float32_inside),
                      (rs.check_residual_jacobian, _jac_float32_inside)):
        ok, out = run(check, fn, capsys)
        assert ok, out


def test_batch_norm_does_not_blame_eps_where_eps_changes_nothing(capsys):
    # 1e-5 off in scale: wrong, but not the eps mistake (on the first batch eps is invisible)
    ok, out = run(bl.check_batch_norm_train, lambda x: _bn_manual(x) * (1 + 1e-5), capsys)
    assert not ok
    assert "eps" not in out and "largest error" in out, out


def test_residual_jacobian_shape_hint_is_about_the_jacobian(capsys):
    ok, out = run(rs.check_residual_jacobian, lambda W1, W2, x: _jac_formula(W1, W2, x)[0], capsys)
    assert not ok
    assert "5 x 5 matrix" in out and "keepdim" not in out, out


def _gpt2_uniform(linear, n_layer, base_std):
    bound = math.sqrt(3) * base_std / math.sqrt(2 * n_layer)   # the right std, the wrong shape
    torch.nn.init.uniform_(linear.weight, -bound, bound)


def _gpt2_truncated(linear, n_layer, base_std):
    std = base_std / math.sqrt(2 * n_layer)
    torch.nn.init.trunc_normal_(linear.weight, 0.0, std, -3 * std, 3 * std)


def test_gpt2_init_needs_a_normal_distribution(capsys):
    ok, out = run(rs.check_gpt2_init, _gpt2_uniform, capsys)
    assert not ok
    assert "not normally distributed" in out, out
    ok, out = run(rs.check_gpt2_init, _gpt2_truncated, capsys)   # +-3 std: a normal for all purposes
    assert ok, out
