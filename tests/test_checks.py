"""normcourse.checks: each shared check, called directly, names the argument and what is allowed.

The convention: a bad value raises ValueError, a wrong type TypeError; the
norms' and kernels' type errors (ValueError before the convention) are
WrongTypeError, both at once.
"""

from __future__ import annotations

import argparse

import pytest
import torch

from normcourse import checks


@pytest.mark.parametrize("call, error, match", [
    (lambda: checks.check_int("n_layer", 0, low=1), ValueError,
     r"n_layer must be an integer >= 1, got 0"),
    (lambda: checks.check_int("n_layer", 2.0, low=1), TypeError,
     r"n_layer must be an integer >= 1, got 2.0 \(float\)"),
    (lambda: checks.check_int("n_layer", True), TypeError,
     r"n_layer must be an integer, got True \(bool\)"),
    (lambda: checks.check_number("lr", 0.0, gt=0), ValueError,
     r"lr must be a finite number > 0, got 0.0"),
    (lambda: checks.check_number("beta", 1.0, ge=0, lt=1), ValueError,
     r"beta must be a finite number >= 0 and < 1, got 1.0"),
    (lambda: checks.check_number("lr", float("nan"), gt=0), ValueError,
     r"lr must be a finite number > 0, got nan"),
    (lambda: checks.check_number("lr", "1e-3"), TypeError,
     r"lr must be a finite number, got '1e-3' \(str\)"),
    (lambda: checks.check_bool("bias", 1), TypeError, r"bias must be True or False, got 1"),
    (lambda: checks.check_bool("final_norm", "no", allow_none=True), TypeError,
     r"final_norm must be True or False or None, got 'no'"),
    (lambda: checks.check_device("device", "tpu"), ValueError,
     r"device must be 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
    (lambda: checks.check_device("device", 3.5), ValueError,
     r"device must be 'cpu', 'cuda' or 'cuda:N'"),
])
def test_config_checks_name_the_field_and_its_limits(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_good_values_pass_silently():
    checks.check_int("n", 3, low=1)
    checks.check_number("x", float("inf"), gt=0, finite=False)
    checks.check_bool("flag", None, allow_none=True)
    checks.check_device("device", "cpu")


@pytest.mark.parametrize("parse, text, match", [
    (checks.positive_int, "0", "must be an integer >= 1, got 0"),
    (checks.positive_int, "two", "must be an integer >= 1, got 'two'"),
    (checks.int_at_least(0), "-1", "must be an integer >= 0, got -1"),
    (checks.positive_float, "0", "must be a number > 0, got '0'"),
    (checks.positive_float, "x", "must be a number > 0, got 'x'"),
])
def test_argparse_types_give_usage_errors(parse, text, match):
    with pytest.raises(argparse.ArgumentTypeError, match=match):
        parse(text)
    assert checks.int_at_least(0)("0") == 0 and checks.positive_float("2.5") == 2.5


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(idx=[[1, 2]]), TypeError, "idx must be a torch.Tensor of token ids, got list"),
    (dict(idx=torch.zeros(3, dtype=torch.long)), ValueError, r"idx must have shape \(batch, time\)"),
    (dict(idx=torch.zeros(1, 3)), ValueError,
     r"idx must hold integer token ids \(torch.int64 or torch.int32\)"),
    (dict(idx=torch.full((1, 3), 9)), ValueError,
     r"idx holds token ids from 9 to 9; .*\[0, vocab_size=5\)"),
    (dict(idx=torch.zeros(1, 9, dtype=torch.long)), ValueError,
     "sequence length 9 exceeds block_size=8"),
    (dict(targets=torch.zeros(3, 1, dtype=torch.long)), ValueError,
     r"targets must have the shape of idx \(1, 3\)"),
    (dict(device=torch.device("meta")), ValueError, "idx is on cpu but the model is on meta"),
])
def test_token_batch_names_the_argument(kwargs, error, match):
    args = dict(idx=torch.zeros(1, 3, dtype=torch.long), targets=None, vocab_size=5, block_size=8,
                device=torch.device("cpu"))
    args.update(kwargs)
    idx, targets = args.pop("idx"), args.pop("targets")
    with pytest.raises(error, match=match):
        checks.check_token_batch(idx, targets, **args)


@pytest.mark.parametrize("call, match", [
    (lambda: checks.check_eps("layer_norm", 0.0),
     r"layer_norm: eps must be a positive finite number, got 0.0"),
    (lambda: checks.check_eps("RMSNorm", float("inf"), allow_none=True),
     r"RMSNorm: eps must be a positive finite number or None "
     r"\(meaning torch.finfo\(x.dtype\).eps\), got inf"),
    (lambda: checks.as_shape(-5, "LayerNorm"),
     r"LayerNorm: normalized_shape \(-5,\) has a negative size"),
    (lambda: checks.as_shape((), "LayerNorm"), "normalized_shape must have at least one dimension"),
    (lambda: checks.check_float_dtype("LayerNorm", "dtype", torch.int64),
     "LayerNorm: dtype must be float16, bfloat16, float32 or float64, got torch.int64"),
    (lambda: checks.check_ends_with("LayerNorm", torch.zeros(2, 3), (4,)),
     r"LayerNorm: x of shape \(2, 3\) does not end with normalized_shape \(4,\)"),
    (lambda: checks.check_backend_name("LayerNorm", "cuda"),
     "LayerNorm: backend must be 'auto', 'triton' or 'torch', got 'cuda'"),
    (lambda: checks.check_eps_float32("layer_norm", 1e-40),
     "eps=1e-40 is outside float32's normal range"),
    (lambda: checks.check_param("rms_norm", "weight", torch.ones(4), torch.zeros(2, 3)),
     r"rms_norm: weight must have shape \(3,\) \(x's last dimension\), got \(4,\)"),
    (lambda: checks.check_features("rms_norm", torch.zeros(2, 0)),
     r"rms_norm: normalized_shape \(0,\) .* no features"),
    (lambda: checks.check_backend("rms_norm", "torch", torch.zeros(2, 3, dtype=torch.int32)),
     "backend='torch' takes float32, float16, bfloat16 or float64; x has dtype torch.int32"),
])
def test_bad_values_raise_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert not isinstance(info.value, TypeError)


@pytest.mark.parametrize("call, match", [
    (lambda: checks.check_eps("layer_norm", "1e-5"),
     r"layer_norm: eps must be a positive finite number, got '1e-5'"),
    (lambda: checks.check_eps("layer_norm", True), "eps must be a positive finite number, got True"),
    (lambda: checks.as_shape(5.0, "RMSNorm"),
     "RMSNorm: normalized_shape must be an int or a sequence of ints, got 5.0"),
    (lambda: checks.check_tensor("layer_norm", "x", [1.0]),
     "layer_norm: x must be a torch.Tensor, got list"),
    (lambda: checks.check_input("add_rms_norm", "residual", None),
     "residual must be a torch.Tensor, got NoneType"),
    (lambda: checks.check_param("layer_norm", "bias", [0.0], torch.zeros(2, 1)),
     "layer_norm: bias must be a tensor or None, got list"),
    (lambda: checks.check_norm_args(torch.zeros(2, 3), "w", None, 1e-5, None, "layer_norm"),
     "weight must be a tensor or None, got str"),
])
def test_wrong_types_raise_type_error_that_is_also_a_value_error(call, match):
    with pytest.raises(TypeError, match=match) as info:
        call()
    assert isinstance(info.value, ValueError), "code that caught ValueError must keep working"
    assert isinstance(info.value, checks.WrongTypeError)


def test_check_eps_returns_a_float_or_none():
    assert checks.check_eps("op", 1) == 1.0 and isinstance(checks.check_eps("op", 1), float)
    assert checks.check_eps("op", None, allow_none=True) is None
    assert checks.as_shape([2, 3]) == (2, 3)


def test_refuse_double_backward_only_under_create_graph():
    with torch.no_grad():
        checks.refuse_double_backward("layer_norm", "this", "Use something else.")
    message = (r"layer_norm: double backward \(create_graph=True\) is not supported by this "
               r"hand-written backward: .*  Use something else\.")
    with pytest.raises(RuntimeError, match=message):
        checks.refuse_double_backward("layer_norm", "this", "Use something else.")
