"""Checkers of the chapters "LayerNorm in Triton" and "Fusing the residual add"."""

import numpy as np
import torch

from checker_run import run
from near_misses.ch07 import _backward as backward

from normcourse.bench import minimal_bytes
from normcourse.exercises.fused_add import (
    _CASES, _LN_BYTES_MISTAKES, add_norm_bytes, check_add_norm_bytes, check_add_rms_norm_backward,
    check_layer_norm_bytes, layer_norm_bytes,
)


def test_byte_models_agree_with_the_benchmark():
    for m, n in ((4096, 4096), (7, 300)):
        for dtype in (torch.float32, torch.bfloat16):
            e = torch.tensor([], dtype=dtype).element_size()
            assert layer_norm_bytes(m, n, e) == minimal_bytes("layer_norm", "fwd", m, n, dtype)
            assert add_norm_bytes(m, n, e, True) == minimal_bytes("add_rms_norm", "fwd", m, n, dtype)
    assert add_norm_bytes(10, 10, 2, False) - add_norm_bytes(10, 10, 2, True) == 10 * 10 * 2


# ---- LayerNorm bytes ------------------------------------------------------

def test_layer_norm_bytes_accepts_the_right_count(capsys):
    ok, out = run(check_layer_norm_bytes, lambda m, n, e: 2 * m * n * e + 2 * n * e + 8 * m, capsys)
    assert ok and "matches" in out


def test_layer_norm_bytes_names_missing_statistics(capsys):
    ok, out = run(check_layer_norm_bytes, lambda m, n, e: 2 * m * n * e + 2 * n * e, capsys)
    assert not ok and "statistics are missing" in out


def test_layer_norm_bytes_names_parameters_per_row(capsys):
    ok, out = run(check_layer_norm_bytes, lambda m, n, e: 4 * m * n * e + 8 * m, capsys)
    assert not ok and "once per row" in out


def test_layer_norm_bytes_names_statistics_in_input_dtype(capsys):
    ok, out = run(check_layer_norm_bytes, lambda m, n, e: 2 * m * n * e + 2 * n * e + 2 * m * e,
                  capsys)
    assert not ok and "the statistics are float32 (4 bytes each)" in out, out


def test_layer_norm_bytes_names_missing_parameters_when_m_equals_n(capsys):
    # at M = N = 4096 and 2 bytes this count equals two other mistakes' counts
    ok, out = run(check_layer_norm_bytes, lambda m, n, e: 2 * m * n * e + 2 * m * 4, capsys)
    assert not ok and "the weight and bias are missing" in out, out


def test_layer_norm_bytes_names_one_statistic(capsys):
    ok, out = run(check_layer_norm_bytes, lambda m, n, e: 2 * m * n * e + 2 * n * e + 4 * m, capsys)
    assert not ok and "two statistics per row" in out, out


def test_layer_norm_bytes_mistakes_are_told_apart_by_the_shapes():
    # every known mistake gives its own numbers over the test shapes, none of them the right ones
    counts = {}
    for formula, what in _LN_BYTES_MISTAKES:
        values = tuple(formula(*case) for case in _CASES)
        assert values != tuple(layer_norm_bytes(*case) for case in _CASES), what
        assert counts.setdefault(values, what) == what, (what, counts[values])


def test_layer_norm_bytes_two_mistakes_at_once_are_not_named_as_one(capsys):
    # weight and bias missing *and* the statistics in element_size: matches no single mistake
    ok, out = run(check_layer_norm_bytes, lambda m, n, e: 2 * m * n * e + 2 * m * e, capsys)
    assert not ok and "you counted" in out and "the forward moves" in out, out


def test_byte_counts_accept_numpy_and_tensor_integers(capsys):
    ok, out = run(check_layer_norm_bytes,
                  lambda m, n, e: np.int64(2 * m * n * e + 2 * n * e + 8 * m), capsys)
    assert ok, out
    ok, out = run(check_layer_norm_bytes,
                  lambda m, n, e: np.prod([2, m, n, e]) + np.int32(2 * n * e) + 8 * m, capsys)
    assert ok, out
    ok, out = run(check_add_norm_bytes, lambda m, n, e, f: np.int64(right_add_norm(m, n, e, f)),
                  capsys)
    assert ok, out
    ok, out = run(check_add_norm_bytes,
                  lambda m, n, e, f: torch.tensor(right_add_norm(m, n, e, f)), capsys)
    assert ok, out


def test_layer_norm_bytes_names_elements_instead_of_bytes(capsys):
    ok, out = run(check_layer_norm_bytes, lambda m, n, e: 2 * m * n + 2 * n + 2 * m, capsys)
    assert not ok and "elements, not bytes" in out


def test_layer_norm_bytes_stub_and_non_integer(capsys):
    def stub(m, n, e):
        raise NotImplementedError("your code here")
    ok, out = run(check_layer_norm_bytes, stub, capsys)
    assert not ok and "not implemented" in out
    ok, out = run(check_layer_norm_bytes, lambda m, n, e: "many", capsys)
    assert not ok and "whole number" in out


# ---- add + norm bytes -----------------------------------------------------

def right_add_norm(m, n, e, fused):
    return (4 if fused else 5) * m * n * e + n * e + 4 * m


def test_add_norm_bytes_accepts_the_right_count(capsys):
    ok, out = run(check_add_norm_bytes, right_add_norm, capsys)
    assert ok and "saves" in out


def test_add_norm_bytes_names_missing_residual_out(capsys):
    ok, out = run(check_add_norm_bytes,
                  lambda m, n, e, f: (3 if f else 5) * m * n * e + n * e + 4 * m, capsys)
    assert not ok and "residual_out" in out


def test_add_norm_bytes_names_unfused_equal_to_fused(capsys):
    ok, out = run(check_add_norm_bytes, lambda m, n, e, f: 4 * m * n * e + n * e + 4 * m, capsys)
    assert not ok and "equals the fused one" in out


def test_add_norm_bytes_names_missing_parameters(capsys):
    ok, out = run(check_add_norm_bytes, lambda m, n, e, f: (4 if f else 5) * m * n * e, capsys)
    assert not ok and "weight" in out


# ---- add + RMSNorm backward -----------------------------------------------

def test_backward_accepts_the_right_answer(capsys):
    ok, out = run(check_add_rms_norm_backward, backward, capsys)
    assert ok and "same gradient" in out


def test_backward_still_rejects_a_small_real_error(capsys):
    def eps_too_big(x, r, w, eps, dy, dres):
        return backward(x, r, w, 100 * eps, dy, dres)
    ok, out = run(check_add_rms_norm_backward, eps_too_big, capsys)
    assert not ok and "is wrong" in out, out


def test_backward_names_missing_dres(capsys):
    def no_dres(x, r, w, eps, dy, dres):
        dx, _, dw = backward(x, r, w, eps, dy, torch.zeros_like(dres))
        return dx, dx, dw
    ok, out = run(check_add_rms_norm_backward, no_dres, capsys)
    assert not ok and "gradient of residual_out" in out


def test_backward_names_zero_residual_gradient(capsys):
    def zero_dr(x, r, w, eps, dy, dres):
        dx, _, dw = backward(x, r, w, eps, dy, dres)
        return dx, torch.zeros_like(dx), dw
    ok, out = run(check_add_rms_norm_backward, zero_dr, capsys)
    assert not ok and "dresidual is zero" in out


def test_backward_names_wrong_dweight_shape(capsys):
    def per_row_dw(x, r, w, eps, dy, dres):
        dx, dr, _ = backward(x, r, w, eps, dy, dres)
        return dx, dr, dy
    ok, out = run(check_add_rms_norm_backward, per_row_dw, capsys)
    assert not ok and "dweight has shape" in out


def test_backward_wrong_return(capsys):
    ok, out = run(check_add_rms_norm_backward, lambda *a: a[0], capsys)
    assert not ok and "three tensors" in out
