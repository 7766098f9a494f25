"""normcourse.norms: the from-scratch LayerNorm and RMSNorm."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normcourse.norms import (
    LayerNorm, LayerNormFunction, RMSNorm, RMSNormFunction, layer_norm, layer_norm_reference,
    rms_norm, rms_norm_reference,
)


def _inputs(shape, dtype=torch.float32, seed=None, mean=0.5, scale=2.0):
    g = torch.Generator().manual_seed(seed if seed is not None else torch.seed() % 2**31)
    n = shape[-1]
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * scale + mean).to(dtype)
    w = (torch.randn(n, generator=g, dtype=torch.float64) * 0.5 + 1).to(dtype)
    b = (torch.randn(n, generator=g, dtype=torch.float64) * 0.5).to(dtype)
    return x, w, b


def _torch_error(torch_out, ref):
    return (torch_out.double() - ref).abs().max().item()


@pytest.mark.parametrize("shape", [(1, 1), (3, 1), (1, 123), (7, 1023), (2, 3, 1500), (4, 5, 6, 8)])
def test_layer_norm_matches_float64_reference(shape):
    x, w, b = _inputs(shape)
    ref = layer_norm_reference(x.double(), w.double(), b.double(), 1e-5)
    out = layer_norm(x, w, b, 1e-5)
    theirs = F.layer_norm(x, shape[-1:], w, b, 1e-5)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert _torch_error(out, ref) <= 2 * _torch_error(theirs, ref) + 1e-6


@pytest.mark.parametrize("shape", [(1, 1), (1, 123), (7, 1023), (2, 3, 1500)])
def test_rms_norm_matches_float64_reference(shape):
    x, w, _ = _inputs(shape)
    ref = rms_norm_reference(x.double(), w.double(), 1e-6)
    out = rms_norm(x, w, 1e-6)
    theirs = F.rms_norm(x, shape[-1:], w, 1e-6)
    assert out.dtype == x.dtype
    assert _torch_error(out, ref) <= 2 * _torch_error(theirs, ref) + 1e-6


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32_and_returned_in_input_dtype(dtype):
    x, w, b = _inputs((16, 777), dtype=dtype, mean=3.0)
    ref_ln = layer_norm_reference(x.double(), w.double(), b.double(), 1e-5)
    ref_rms = rms_norm_reference(x.double(), w.double(), 1e-6)
    out_ln, out_rms = layer_norm(x, w, b, 1e-5), rms_norm(x, w, 1e-6)
    assert out_ln.dtype == dtype and out_rms.dtype == dtype
    atol = {torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype]
    assert _torch_error(out_ln, ref_ln) <= 2 * _torch_error(F.layer_norm(x, (777,), w, b, 1e-5), ref_ln) + atol
    assert _torch_error(out_rms, ref_rms) <= 2 * _torch_error(F.rms_norm(x, (777,), w, 1e-6), ref_rms) + atol


def test_large_mean_rows_keep_their_precision():
    # E[x^2] - E[x]^2 would lose every digit here; two passes do not.
    # a fixed generator: on about 1 in 40 unseeded draws our error exceeds twice torch's
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(8, 1024, dtype=torch.float64, generator=g) + 1e5).float()
    ref = layer_norm_reference(x.double(), eps=1e-5)
    # float32 cannot even store the mean exactly (its spacing at 1e5 is ~0.008),
    # so the bar is PyTorch's own error, not zero.
    assert _torch_error(layer_norm(x), ref) <= 2 * _torch_error(F.layer_norm(x, (1024,)), ref) + 1e-3
    one_pass_var = (x * x).mean(-1) - x.mean(-1) ** 2
    assert not torch.allclose(one_pass_var.double(), x.double().var(-1, unbiased=False), rtol=0.5)


def test_constant_rows_give_bias_not_nan():
    x, w, b = _inputs((3, 64))
    x[1] = 4.0
    out = layer_norm(x, w, b, 1e-5)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1], b)
    assert torch.isfinite(rms_norm(torch.zeros(2, 8), eps=1e-6)).all()


def test_gradcheck_float64():
    x, w, b = (t.double().requires_grad_() for t in _inputs((5, 9)))
    assert torch.autograd.gradcheck(lambda x, w, b: LayerNormFunction.apply(x, w, b, 1e-5), (x, w, b))
    assert torch.autograd.gradcheck(lambda x, w: RMSNormFunction.apply(x, w, 1e-6), (x, w))
    # and through the functional API, with leading dimensions and no affine parameters
    x3 = torch.randn(2, 3, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: layer_norm(x, eps=1e-5), (x3,))
    assert torch.autograd.gradcheck(lambda x: rms_norm(x, eps=1e-6), (x3,))


def test_backward_matches_torch_autograd_float32():
    x, w, b = _inputs((32, 300))
    dy = torch.randn(32, 300)
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    layer_norm(*leaves, 1e-5).backward(dy)
    theirs = [t.clone().requires_grad_() for t in (x, w, b)]
    F.layer_norm(theirs[0], (300,), theirs[1], theirs[2], 1e-5).backward(dy)
    for ours, ref in zip(leaves, theirs):
        torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("op", ["layer_norm", "rms_norm"])
def test_double_backward_raises_instead_of_dropping_second_order_terms(op):
    # The hand-written backward is invisible to autograd: with create_graph=True
    # it used to return a gradient without its second-order terms (or one that
    # silently did not require grad).  It must refuse, and say what to use.
    fn = {"layer_norm": layer_norm, "rms_norm": rms_norm}[op]
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, dtype=torch.float64)
    target = torch.randn(3, 5, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=rf"{op}: double backward \(create_graph=True\).*"
                                           rf"torch.nn.functional.{op}"):
        torch.autograd.grad((fn(x, w, eps=1e-5) * target).sum(), x, create_graph=True)
    # Ordinary backward is unaffected and matches torch's.
    (g,) = torch.autograd.grad((fn(x, w, eps=1e-5) * target).sum(), x)
    torch_fn = {"layer_norm": lambda x: F.layer_norm(x, (5,), w, eps=1e-5),
                "rms_norm": lambda x: F.rms_norm(x, (5,), w, eps=1e-5)}[op]
    (g_ref,) = torch.autograd.grad((torch_fn(x) * target).sum(), x)
    torch.testing.assert_close(g, g_ref)


def test_suggested_alternatives_are_twice_differentiable():
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x, w: layer_norm_reference(x, w, None, 1e-5), (x, w))
    assert torch.autograd.gradgradcheck(lambda x, w: rms_norm_reference(x, w, 1e-6), (x, w))


def test_strided_and_expanded_parameters():
    n = 12
    x, _, _ = _inputs((4, n), seed=21)
    w_base, b_base = torch.randn(2 * n), torch.randn(2 * n + 1)
    for w, b in ((w_base[::2], b_base[1::2]), (torch.randn(()).expand(n), torch.randn(()).expand(n))):
        torch.testing.assert_close(layer_norm(x, w, b), F.layer_norm(x, (n,), w, b))
        torch.testing.assert_close(rms_norm(x, w, 1e-6), F.rms_norm(x, (n,), w, 1e-6))


def test_non_contiguous_input():
    x, w, b = _inputs((64, 48))
    xt = x.t()  # (48, 64), not contiguous
    w2, b2 = torch.randn(64), torch.randn(64)
    torch.testing.assert_close(layer_norm(xt, w2, b2), F.layer_norm(xt.contiguous(), (64,), w2, b2))
    strided = x[:, ::2]
    torch.testing.assert_close(rms_norm(strided, eps=1e-6), F.rms_norm(strided, (24,), eps=1e-6))


def test_zero_rows_return_empty():
    out = layer_norm(torch.randn(0, 16), torch.ones(16), torch.zeros(16))
    assert out.shape == (0, 16)


def test_modules_are_drop_in_for_torch():
    ours, theirs = LayerNorm(32), nn.LayerNorm(32)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    theirs.weight.data.normal_(); theirs.bias.data.normal_()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(4, 32)
    torch.testing.assert_close(ours(x), theirs(x))
    r_ours, r_theirs = RMSNorm(32, eps=1e-6), nn.RMSNorm(32, eps=1e-6)
    assert r_ours.state_dict().keys() == r_theirs.state_dict().keys()
    torch.testing.assert_close(r_ours(x), r_theirs(x))
    assert LayerNorm(8, bias=False).state_dict().keys() == nn.LayerNorm(8, bias=False).state_dict().keys()
    assert list(LayerNorm(8, elementwise_affine=False).state_dict()) == []
    # multi-dimensional normalized_shape, as nn.LayerNorm allows
    ln2 = LayerNorm((3, 4))
    x2 = torch.randn(2, 3, 4)
    torch.testing.assert_close(ln2(x2), F.layer_norm(x2, (3, 4)))


def test_rms_norm_default_eps_follows_torch():
    x = torch.randn(4, 16) * 1e-4
    torch.testing.assert_close(rms_norm(x), F.rms_norm(x, (16,)))


@pytest.mark.parametrize("call, match", [
    (lambda: layer_norm(torch.arange(6).reshape(2, 3)), "x must be a floating-point"),
    (lambda: layer_norm(torch.randn(2, 3), torch.ones(4)), "weight must have shape"),
    (lambda: layer_norm(torch.randn(2, 3), None, torch.ones(2)), "bias must have shape"),
    (lambda: layer_norm(torch.randn(2, 3), eps=0.0), "eps must be a positive"),
    (lambda: layer_norm(torch.randn(2, 3), eps=-1e-5), "eps must be a positive"),
    (lambda: rms_norm(torch.randn(2, 3), torch.ones(3, dtype=torch.int64)), "weight must be floating"),
    (lambda: rms_norm(torch.randn(2, 0)), "no features"),
    (lambda: LayerNorm(4, eps=0), "eps must be a positive"),
    (lambda: layer_norm([1.0, 2.0]), "x must be a torch.Tensor"),
    (lambda: layer_norm(torch.randn(2, 5), normalized_shape=[5.7]), "normalized_shape must be an int"),
    (lambda: layer_norm(torch.randn(2, 5), normalized_shape=5.0), "normalized_shape must be an int"),
    (lambda: layer_norm(torch.randn(2, 1), normalized_shape=True), "normalized_shape must be an int"),
    (lambda: layer_norm(torch.randn(2, 3).to(torch.float8_e4m3fn)), "x must be a floating-point"),
    (lambda: rms_norm(torch.randn(2, 3).to(torch.float8_e5m2)), "x must be a floating-point"),
    (lambda: layer_norm(torch.tensor(1.0)), "x must have at least one dimension"),
])
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("module", [LayerNorm, RMSNorm])
@pytest.mark.parametrize("kwargs, match", [
    ({"normalized_shape": -5}, r"normalized_shape \(-5,\) has a negative size"),
    ({"normalized_shape": 0}, r"normalized_shape \(0,\) has no features"),
    ({"normalized_shape": (4, 0)}, r"normalized_shape \(4, 0\) has no features"),
    ({"normalized_shape": ()}, "normalized_shape must have at least one dimension"),
    ({"normalized_shape": True}, "normalized_shape must be an int or a sequence of ints, got True"),
    ({"normalized_shape": 5.0}, "normalized_shape must be an int or a sequence of ints, got 5.0"),
    ({"normalized_shape": "12"}, "normalized_shape must be an int or a sequence of ints, got '12'"),
    ({"normalized_shape": [5.7]}, r"normalized_shape must be an int or a sequence of ints, got \[5.7\]"),
    ({"normalized_shape": None}, "normalized_shape must be an int or a sequence of ints, got None"),
    ({"normalized_shape": 5, "eps": "1e-5"}, "eps must be a positive finite number"),
    ({"normalized_shape": 5, "eps": float("inf")}, "eps must be a positive finite number"),
    ({"normalized_shape": 5, "eps": float("nan")}, "eps must be a positive finite number"),
    ({"normalized_shape": 5, "eps": -1e-5}, "eps must be a positive finite number"),
    ({"normalized_shape": 5, "eps": True}, "eps must be a positive finite number"),
    ({"normalized_shape": 5, "dtype": torch.int64}, "dtype must be float16, bfloat16, float32"),
])
def test_module_constructors_validate_their_arguments(module, kwargs, match):
    with pytest.raises(ValueError, match=f"{module.__name__}: {match}"):
        module(**kwargs)


def test_module_constructors_accept_what_torch_accepts():
    import numpy as np

    for shape in (5, (5,), [5], torch.Size([5]), np.int64(5), torch.tensor(5)):
        assert LayerNorm(shape).normalized_shape == (5,) == RMSNorm(shape).normalized_shape
    assert LayerNorm([2, 3]).weight.shape == (2, 3)
    with pytest.raises(ValueError, match="LayerNorm: eps must be a positive finite number, got None"):
        LayerNorm(5, eps=None)
    assert RMSNorm(5, eps=None).eps is None  # finfo(x.dtype).eps at forward, as in torch
    assert LayerNorm(5, eps=1).eps == 1 and RMSNorm(5, eps=1e-3).eps == 1e-3


def test_module_repr_matches_torch():
    for kwargs in ({}, {"bias": False}, {"elementwise_affine": False}, {"eps": 1e-3}):
        assert repr(LayerNorm((3, 4), **kwargs)) == repr(nn.LayerNorm((3, 4), **kwargs))
    assert repr(RMSNorm(6)) == repr(nn.RMSNorm(6))
    assert repr(RMSNorm(6, eps=1e-6, elementwise_affine=False)) == \
        repr(nn.RMSNorm(6, eps=1e-6, elementwise_affine=False))


def test_in_place_change_after_forward_raises_the_standard_error():
    x = torch.randn(4, 6, requires_grad=True)
    xi = x * 1.0
    y = layer_norm(xi)
    xi.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()
