"""Input handling of the Triton norm kernels: parameter layouts, autograd limits, bad arguments.

Numerical checks follow tests/test_kernels.py: fresh random inputs (never
zeros), and the kernel's error against a float64 reference may be at most
twice PyTorch's own float32 error plus a small floor.  Tensors live on the
``kernel_device`` fixture's device (CUDA when present, else the CPU, where
``backend="triton"`` runs Triton's interpreter).  Shapes stay small.
"""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F

import normcourse.kernels as K
from normcourse import norms

OPS = ["layer_norm", "rms_norm", "add_layer_norm", "add_rms_norm"]
ATOL = 1e-5  # float32 floor, relative to max |reference|


def _err(a, b):
    return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0


# --------------------------------------------------------------------------
# A1: weight and bias of any stride (the kernels used to read them at stride 1)
# --------------------------------------------------------------------------

# Each layout: (shape of the leaf tensor that owns the values, how to view it as (N,)).
PARAM_LAYOUTS = {
    "stride_2": (lambda n: (2 * n,), lambda t, n: t[::2]),
    "offset_stride_2": (lambda n: (2 * n + 1,), lambda t, n: t[1::2]),  # storage offset 1 too
    "expanded": (lambda n: (), lambda t, n: t.expand(n)),  # stride 0: one value, N times
    "column_of_matrix": (lambda n: (n, 3), lambda t, n: t[:, 1]),  # stride 3
}


def _layout_inputs(op, n, layout, seed, device):
    """Random leaves: x, residual (fused ops), and the owners of weight and bias."""
    g = torch.Generator().manual_seed(seed)
    leaf_shape, _ = PARAM_LAYOUTS[layout]
    t = {"x": torch.randn(3, n, generator=g) * 2 + 0.5}
    if op.startswith("add_"):
        t["residual"] = torch.randn(3, n, generator=g)
    t["weight"] = torch.randn(leaf_shape(n), generator=g) * 0.5 + 1
    if "layer" in op:
        t["bias"] = torch.randn(leaf_shape(n), generator=g) * 0.5
    grads = [torch.randn(3, n, generator=g) for _ in range(2 if op.startswith("add_") else 1)]
    return {k: v.to(device) for k, v in t.items()}, [d.to(device) for d in grads]


def _run_with_views(op, leaves, grads, layout, n, backend, dtype):
    """Outputs, and gradients of every leaf, with weight / bias passed as strided views."""
    _, view = PARAM_LAYOUTS[layout]
    leaves = {k: v.to(dtype).requires_grad_() for k, v in leaves.items()}
    args = {k: (view(v, n) if k in ("weight", "bias") else v) for k, v in leaves.items()}
    assert all(not args[k].is_contiguous() or layout == "expanded" and n == 1
               for k in ("weight", "bias") if k in args)
    outs = getattr(K, op)(**args, backend=backend)
    outs = outs if isinstance(outs, tuple) else (outs,)
    dins = torch.autograd.grad(outs, list(leaves.values()), [d.to(dtype) for d in grads])
    return [o.detach() for o in outs] + list(dins)


@pytest.mark.parametrize("layout", list(PARAM_LAYOUTS))
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("n", [37, 9001], ids=["registers", "chunked_backward"])
def test_strided_and_expanded_parameters(op, layout, n, kernel_device):
    leaves, grads = _layout_inputs(op, n, layout, seed=n + len(layout), device=kernel_device)
    ours = _run_with_views(op, leaves, grads, layout, n, "triton", torch.float32)
    theirs = _run_with_views(op, leaves, grads, layout, n, "torch", torch.float32)
    ref = _run_with_views(op, leaves, grads, layout, n, "torch", torch.float64)
    names = ["y", "residual_out"][: len(grads)] + ["d" + k for k in leaves]
    for name, o, t, r in zip(names, ours, theirs, ref):
        assert o.shape == r.shape, name
        tol = 2 * _err(t, r) + ATOL * max(1.0, r.abs().max().item())
        assert _err(o, r) <= tol, f"{op} {layout} {name}: error {_err(o, r):.3g} > {tol:.3g}"


@pytest.mark.parametrize("op", ["layer_norm", "add_rms_norm"])
@pytest.mark.parametrize("n", [16500, 33000], ids=["row", "chunked"])
def test_strided_parameters_in_long_rows(op, n, kernel_device):
    """Long rows: the 32-warp row kernel, and beyond 32768 the looped forward (weight by chunks)."""
    leaves, grads = _layout_inputs(op, n, "stride_2", seed=31, device=kernel_device)
    ours = _run_with_views(op, leaves, grads, "stride_2", n, "triton", torch.float32)
    ref = _run_with_views(op, leaves, grads, "stride_2", n, "torch", torch.float64)
    theirs = _run_with_views(op, leaves, grads, "stride_2", n, "torch", torch.float32)
    for o, t, r in zip(ours, theirs, ref):
        assert _err(o, r) <= 2 * _err(t, r) + ATOL * max(1.0, r.abs().max().item())


def test_strided_half_precision_weight_with_float32_master_copy(kernel_device):
    """bfloat16 x with a strided float32 weight: gradients keep the leaf's dtype and layout."""
    g = torch.Generator().manual_seed(33)
    x = (torch.randn(4, 40, generator=g) * 2).to(kernel_device, torch.bfloat16).requires_grad_()
    base = torch.randn(40, 2, generator=g).to(kernel_device).requires_grad_()
    y = K.rms_norm(x, base[:, 0], backend="triton")
    dy = torch.randn(4, 40, generator=g).to(kernel_device, torch.bfloat16)
    dx, dbase = torch.autograd.grad(y, (x, base), dy)
    x64, base64 = x.detach().double().requires_grad_(), base.detach().double().requires_grad_()
    ref = torch.autograd.grad(F.rms_norm(x64, (40,), base64[:, 0], 1e-6), (x64, base64),
                              dy.double())
    assert dbase.dtype == torch.float32
    assert torch.equal(dbase[:, 1], torch.zeros(40, device=kernel_device))
    assert _err(dbase, ref[1]) < 1e-4 * max(1.0, ref[1].abs().max().item())
    assert _err(dx, ref[0]) < 0.05


# --------------------------------------------------------------------------
# A2: no silent double backward
# --------------------------------------------------------------------------

def _call(op, x, backend):
    n = x.shape[-1]
    w = torch.randn(n, dtype=x.dtype, device=x.device)
    if op.startswith("add_"):
        return getattr(K, op)(x, torch.randn_like(x), w, backend=backend)[0]
    return getattr(K, op)(x, w, backend=backend)


@pytest.mark.parametrize("op", OPS)
def test_double_backward_raises_on_the_triton_path(op, kernel_device):
    x = torch.randn(3, 8, device=kernel_device, requires_grad=True)
    target = torch.randn(3, 8, device=kernel_device)
    with pytest.raises(RuntimeError, match=rf"{op}: double backward \(create_graph=True\) is not "
                                           rf"supported.*backend='torch'"):
        torch.autograd.grad((_call(op, x, "triton") * target).sum(), x, create_graph=True)
    # A plain backward is unaffected.
    (g,) = torch.autograd.grad((_call(op, x, "triton") * target).sum(), x)
    assert g.shape == x.shape and torch.isfinite(g).all()


@pytest.mark.parametrize("op", OPS)
def test_torch_backend_is_twice_differentiable(op):
    """What the error message recommends really gives second derivatives."""
    g = torch.Generator().manual_seed(40)
    x = torch.randn(3, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    r = torch.randn(3, 6, generator=g, dtype=torch.float64)
    fn = getattr(K, op)
    if op.startswith("add_"):
        def f(x, w):
            return fn(x, r, w, backend="torch")[0]
    else:
        def f(x, w):
            return fn(x, w, backend="torch")
    assert torch.autograd.gradgradcheck(f, (x, w))


def test_gradient_penalty_through_the_torch_backend_matches_nn_layer_norm(kernel_device):
    """A WGAN-GP style penalty: the case that used to come out silently wrong."""
    def weight_grad(norm):
        torch.manual_seed(0)
        lin1, lin2 = torch.nn.Linear(8, 16), torch.nn.Linear(16, 1)
        x = torch.randn(4, 8, requires_grad=True)
        lin1, lin2, norm = lin1.to(kernel_device), lin2.to(kernel_device), norm.to(kernel_device)
        x = x.detach().to(kernel_device).requires_grad_()
        out = lin2(norm(lin1(x)))
        (gx,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        (out.mean() + (gx.norm(dim=1) - 1).pow(2).mean()).backward()
        return lin1.weight.grad

    expected = weight_grad(torch.nn.LayerNorm(16))
    torch.testing.assert_close(weight_grad(K.LayerNorm(16, backend="torch")), expected)
    with pytest.raises(RuntimeError, match="create_graph=True"):
        weight_grad(K.LayerNorm(16, backend="triton"))
    with pytest.raises(RuntimeError, match="create_graph=True"):
        weight_grad(norms.LayerNorm(16))


# --------------------------------------------------------------------------
# B1 / B2: no features, and the modules' constructors
# --------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("op", OPS)
def test_zero_features_raise_a_clear_value_error(op, backend, kernel_device):
    for shape in ((3, 0), (0, 0), (2, 3, 0)):
        x = torch.randn(shape, device=kernel_device)
        args = (x, torch.randn(shape, device=kernel_device)) if op.startswith("add_") else (x,)
        with pytest.raises(ValueError, match=rf"{op}: normalized_shape \(0,\) .*has no features"):
            getattr(K, op)(*args, backend=backend)


@pytest.mark.parametrize("module", [K.LayerNorm, K.RMSNorm])
@pytest.mark.parametrize("kwargs, match", [
    ({"normalized_shape": 0}, r"normalized_shape \(0,\) has no features"),
    ({"normalized_shape": -5}, "normalized_shape"),
    ({"normalized_shape": True}, "normalized_shape"),
    ({"normalized_shape": 5.0}, "normalized_shape"),
    ({"normalized_shape": "12"}, "normalized_shape"),
    ({"normalized_shape": [5.7]}, "normalized_shape"),
    ({"normalized_shape": ()}, "normalized_shape"),
    ({"normalized_shape": 5, "eps": "1e-5"}, "eps"),
    ({"normalized_shape": 5, "eps": float("inf")}, "eps"),
    ({"normalized_shape": 5, "backend": "cuda"}, "backend must be 'auto', 'triton' or 'torch'"),
    ({"normalized_shape": 5, "backend": None}, "backend must be 'auto', 'triton' or 'torch'"),
])
def test_module_constructors_validate_their_arguments(module, kwargs, match):
    with pytest.raises(ValueError, match=f"{module.__name__}: {match}"):
        module(**kwargs)


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_layer_norm_module_rejects_eps_none_and_rms_norm_module_accepts_it(backend,
                                                                          kernel_device):
    with pytest.raises(ValueError, match="LayerNorm: eps"):
        K.LayerNorm(5, eps=None)
    x = torch.randn(3, 5).half().to(kernel_device)
    ref = F.rms_norm(x.double(), (5,), eps=torch.finfo(torch.float16).eps)
    module = K.RMSNorm(5, dtype=torch.float16, backend=backend).to(kernel_device)
    assert _err(module(x), ref) < 2e-3


def test_module_repr_includes_bias_like_torch():
    for kwargs in ({}, {"bias": False}, {"elementwise_affine": False}):
        assert repr(K.LayerNorm(6, **kwargs)) == repr(torch.nn.LayerNorm(6, **kwargs))
    assert repr(K.RMSNorm(6)) == repr(torch.nn.RMSNorm(6))


def test_module_with_non_tensor_input_names_x():
    with pytest.raises(ValueError, match="LayerNorm: x must be a torch.Tensor, got list"):
        K.LayerNorm(2)([[1.0, 2.0]])


# --------------------------------------------------------------------------
# B3: dtypes on the torch backend, eps in float32, in-place changes
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
@pytest.mark.parametrize("backend", ["auto", "triton", "torch"])
def test_float8_is_refused_with_a_value_error_on_every_backend(dtype, backend):
    x = torch.randn(2, 8).to(dtype)
    for op in OPS:
        args = (x, x.clone()) if op.startswith("add_") else (x,)
        with pytest.raises(ValueError, match=rf"{op}: .*x has dtype {dtype}"):
            getattr(K, op)(*args, backend=backend)


@pytest.mark.parametrize("eps", [1e-50, 1e39])
def test_eps_outside_float32_range_is_refused_on_the_triton_path(eps, kernel_device):
    x = torch.randn(2, 8, device=kernel_device)
    with pytest.raises(ValueError, match=r"rms_norm: eps=.* outside float32's normal range"):
        K.rms_norm(x, eps=eps, backend="triton")
    with pytest.raises(ValueError, match=r"layer_norm: eps=.* outside float32's normal range"):
        K.LayerNorm(8, eps=eps, backend="triton").to(kernel_device)(x)
    # PyTorch's kernels take eps as a double: float64 inputs may use such values.
    x64 = x.double()
    torch.testing.assert_close(K.rms_norm(x64, eps=eps, backend="torch"),
                               F.rms_norm(x64, (8,), eps=eps))


@pytest.mark.parametrize("op", ["layer_norm", "rms_norm"])
def test_in_place_change_of_x_after_forward_gives_the_standard_error(op, kernel_device):
    x = torch.randn(4, 24, device=kernel_device, requires_grad=True)
    xi = x * 1.0
    y = _call(op, xi, "triton")
    xi.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_in_place_change_of_a_copied_x_does_not_change_the_gradient(kernel_device):
    """A transposed x is copied into rows and the copy is saved: changing x later is harmless."""
    g = torch.Generator().manual_seed(41)
    base = torch.randn(24, 4, generator=g).to(kernel_device).requires_grad_()
    w = torch.randn(24, generator=g).to(kernel_device)
    dy = torch.randn(4, 24, generator=g).to(kernel_device)
    x64 = base.detach().t().double().requires_grad_()
    (expected,) = torch.autograd.grad(F.layer_norm(x64, (24,), w.double()), x64, dy.double())
    xt = base.t() * 1.0  # (4, 24) with feature stride 4: the forward works on a private copy
    assert xt.stride(-1) != 1
    y = K.layer_norm(xt, w, backend="triton")
    with torch.no_grad():
        xt.mul_(2)
    (got,) = torch.autograd.grad(y, base, dy)
    assert _err(got.t(), expected) < 1e-4


# --------------------------------------------------------------------------
# C: eps=None for the RMSNorm functions
# --------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_rms_norm_eps_none_means_finfo_eps(backend, dtype, kernel_device):
    g = torch.Generator().manual_seed(42)
    x = (torch.randn(3, 40, generator=g) * 1e-3).to(kernel_device, dtype)  # small rows: eps matters
    r = (torch.randn(3, 40, generator=g) * 1e-3).to(kernel_device, dtype)
    w = torch.randn(40, generator=g).to(kernel_device, dtype)
    eps = torch.finfo(dtype).eps
    atol = {torch.float32: 1e-5, torch.bfloat16: 3e-2}[dtype]
    ref = F.rms_norm(x.double(), (40,), w.double(), eps)
    assert _err(K.rms_norm(x, w, eps=None, backend=backend), ref) <= atol * ref.abs().max()
    s = x + r
    ref = F.rms_norm(s.double(), (40,), w.double(), eps)
    y, _ = K.add_rms_norm(x, r, w, eps=None, backend=backend)
    assert _err(y, ref) <= atol * ref.abs().max() + 2 * _err(F.rms_norm(s, (40,), w, eps), ref)


def test_rms_norm_default_eps_is_unchanged():
    assert inspect.signature(K.rms_norm).parameters["eps"].default == 1e-6
    assert inspect.signature(K.add_rms_norm).parameters["eps"].default == 1e-6
