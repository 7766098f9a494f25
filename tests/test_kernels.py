"""The Triton norm kernels against float64, on the ``kernel_device`` fixture's device.

On CUDA the kernels are compiled; on a CPU they run through Triton's
interpreter (``backend="triton"`` is passed explicitly everywhere: "auto"
means PyTorch on a CPU).

Tolerance rule (flash-attention's): for every output and gradient, the
kernel's max error against a float64 reference on the same (rounded) inputs
may be at most twice PyTorch's own error in the same dtype, plus a small atol
scaled by the reference's magnitude.  Inputs are fresh random values, never
zeros (a kernel that writes nothing must not pass).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import normcourse.kernels as K
from normcourse.kernels.launch import backward_is_looped, forward_is_looped
from normcourse.kernels.triton_norm import norm_forward

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# Floor below which any difference is fine, relative to max |reference|.
ATOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
OPS = ["layer_norm", "rms_norm", "add_layer_norm", "add_rms_norm"]


def _inputs(op, shape, dtype, affine=True, seed=0, device="cpu", mean=0.5):
    """Random x (+ residual), weight, bias, and upstream gradients, in ``dtype`` on ``device``.

    Drawn on the CPU (the same values on every device), x around ``mean``.
    """
    g = torch.Generator().manual_seed(seed)
    n = shape[-1]
    t = {"x": torch.randn(shape, generator=g) * 2 + mean}
    if op.startswith("add_"):
        t["residual"] = torch.randn(shape, generator=g)
    if affine:
        t["weight"] = torch.randn(n, generator=g) * 0.5 + 1
        if "layer" in op:
            t["bias"] = torch.randn(n, generator=g) * 0.5
    grads = [torch.randn(shape, generator=g)]
    if op.startswith("add_"):
        grads.append(torch.randn(shape, generator=g))
    return ({k: v.to(device, dtype) for k, v in t.items()},
            [d.to(device, dtype) for d in grads])


def _run(op, tensors, grads, backend, dtype=None, prep=None):
    """Outputs and gradients of every tensor input, optionally cast to ``dtype`` first."""
    leaves = {k: (v.to(dtype) if dtype else v).detach().requires_grad_() for k, v in tensors.items()}
    args = dict(leaves)
    if prep is not None:  # e.g. make x non-contiguous without changing its values
        args["x"] = prep(args["x"])
    outs = getattr(K, op)(**args, backend=backend)
    outs = outs if isinstance(outs, tuple) else (outs,)
    gs = [(d.to(dtype) if dtype else d) for d in grads]
    dins = torch.autograd.grad(outs, list(leaves.values()), gs)
    return [o.detach() for o in outs] + list(dins)


def _err(a, b):
    return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0


def check_against_reference(op, shape, dtype, device, affine=True, seed=0, prep=None, mean=0.5):
    """Kernel vs float64 reference, with PyTorch's own error as the yardstick."""
    tensors, grads = _inputs(op, shape, dtype, affine, seed, device, mean)
    ours = _run(op, tensors, grads, "triton", prep=prep)
    theirs = _run(op, tensors, grads, "torch")
    ref = _run(op, tensors, grads, "torch", dtype=torch.float64)
    names = ["y", "residual_out"][: 2 if op.startswith("add_") else 1] + list(tensors)
    for name, o, t, r in zip(names, ours, theirs, ref):
        assert o.dtype == tensors.get(name, tensors["x"]).dtype, name
        assert o.shape == r.shape, name
        tol = 2 * _err(t, r) + ATOL[dtype] * max(1.0, r.abs().max().item() if r.numel() else 0)
        assert _err(o, r) <= tol, (f"{op} {name} {tuple(shape)} {dtype}: error {_err(o, r):.3g} "
                                   f"> {tol:.3g} (torch's own error {_err(t, r):.3g})")


# --------------------------------------------------------------------------
# Every op, every dtype, odd sizes
# --------------------------------------------------------------------------

@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matches_float64(op, dtype, kernel_device):
    for n in (1, 123, 1023):
        check_against_reference(op, (5, n), dtype, kernel_device, seed=n)


@pytest.mark.parametrize("op", OPS)
def test_n_1500_and_3d(op, kernel_device):
    check_against_reference(op, (2, 3, 1500), torch.bfloat16, kernel_device, seed=3)


@pytest.mark.parametrize("op", OPS)
def test_without_weight_and_bias(op, kernel_device):
    check_against_reference(op, (4, 100), torch.float32, kernel_device, affine=False, seed=4)


def test_layer_norm_weight_without_bias(kernel_device):
    tensors, grads = _inputs("layer_norm", (3, 40), torch.float32, seed=5, device=kernel_device)
    del tensors["bias"]
    x, w = (t.detach().requires_grad_() for t in tensors.values())
    y = K.layer_norm(x, w, None, backend="triton")
    ref = torch.nn.functional.layer_norm(x.double(), (40,), w.double())
    assert _err(y, ref) < 1e-5


@pytest.mark.parametrize("op", ["layer_norm", "add_layer_norm"])
@pytest.mark.parametrize("n", [40, 9001], ids=["row", "chunked"])
def test_layer_norm_bias_without_weight(op, n, kernel_device):
    """Only dbias is reduced: the dweight buffer is a placeholder, never read."""
    tensors, grads = _inputs(op, (9, n), torch.float32, seed=23, device=kernel_device)
    del tensors["weight"]
    ours = _run(op, tensors, grads, "triton")
    ref = _run(op, tensors, grads, "torch", dtype=torch.float64)
    theirs = _run(op, tensors, grads, "torch")
    for o, t, r in zip(ours, theirs, ref):
        assert _err(o, r) <= 2 * _err(t, r) + 1e-5 * max(1.0, r.abs().max().item())


@pytest.mark.parametrize("op", OPS)
def test_one_row_and_one_column(op, kernel_device):
    check_against_reference(op, (1, 257), torch.float32, kernel_device, seed=6)
    check_against_reference(op, (7, 1), torch.float32, kernel_device, seed=7)


@pytest.mark.parametrize("op", OPS)
def test_long_rows_use_the_chunked_backward(op, kernel_device):
    """Rows beyond MAX_REGISTER_ROW take the chunked (looped) backward kernel."""
    assert backward_is_looped(9001) and not backward_is_looped(8192)
    check_against_reference(op, (3, 9001), torch.float32, kernel_device, seed=13)
    check_against_reference(op, (2, 9001), torch.bfloat16, kernel_device, seed=14)


@pytest.mark.parametrize("op", OPS)
def test_rows_up_to_32768_stay_in_registers_in_the_forward(op, kernel_device):
    """Aligned rows of 16385..32768 features: one read of x, the 32-warp row kernel.

    Unaligned rows that long (N not a multiple of 16) take the chunked forward.
    """
    assert not forward_is_looped(16400) and not forward_is_looped(32768)
    assert forward_is_looped(16385)
    check_against_reference(op, (2, 16400), torch.float32, kernel_device, seed=17)
    check_against_reference(op, (2, 32768), torch.bfloat16, kernel_device, seed=18)
    check_against_reference(op, (2, 16385), torch.float32, kernel_device, seed=22)


@pytest.mark.parametrize("op", OPS)
def test_long_rows_use_the_chunked_forward(op, kernel_device):
    """Rows beyond 32768 features: the chunked kernels, and no upper limit on N."""
    assert forward_is_looped(32769) and forward_is_looped(40000)
    check_against_reference(op, (2, 40000), torch.float32, kernel_device, seed=8)
    check_against_reference(op, (2, 70001), torch.bfloat16, kernel_device, seed=16)


@pytest.mark.parametrize("op", ["layer_norm", "add_layer_norm"])
@pytest.mark.parametrize("n", [4000, 40000], ids=["row", "chunked"])
def test_rows_with_a_large_mean_keep_their_precision(op, n, kernel_device):
    """Mean 3000, spread 2: E[x^2] - E[x]^2 would lose the variance in float32.

    The chunked forward merges per-chunk (count, mean, m2) with Chan et al.'s
    update; its error must stay within twice torch's (Welford) error.
    """
    check_against_reference(op, (3, n), torch.float32, kernel_device, seed=19, mean=3000.0)
    g = torch.Generator().manual_seed(20)
    x = (torch.randn(3, n, generator=g) * 2 + 3000.0).to(kernel_device)
    _, _, mean, rstd = norm_forward(x, None, None, None, 1e-5, is_rms=False)
    x64 = x.double()
    torch.testing.assert_close(mean.double(), x64.mean(-1), rtol=1e-6, atol=0)
    torch.testing.assert_close(rstd.double(), (x64.var(-1, unbiased=False) + 1e-5).rsqrt(),
                               rtol=2e-3, atol=0)


# --------------------------------------------------------------------------
# Saved statistics
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", [300, 40000], ids=["row", "chunked"])
def test_saved_statistics(dtype, n, kernel_device):
    g = torch.Generator().manual_seed(9)
    x = (torch.randn(6, n, generator=g) * 3 + 2).to(kernel_device, dtype)
    r = torch.randn(6, n, generator=g).to(kernel_device, dtype)
    x64 = x.double()
    _, _, mean, rstd = norm_forward(x, None, None, None, 1e-5, is_rms=False)
    assert mean.dtype == rstd.dtype == torch.float32
    torch.testing.assert_close(mean.double(), x64.mean(-1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(rstd.double(), (x64.var(-1, unbiased=False) + 1e-5).rsqrt(),
                               rtol=1e-5, atol=1e-6)
    _, _, mean, rstd = norm_forward(x, None, None, None, 1e-6, is_rms=True)
    assert mean is None
    torch.testing.assert_close(rstd.double(), ((x64 * x64).mean(-1) + 1e-6).rsqrt(),
                               rtol=1e-5, atol=1e-6)
    # Fused: the statistics are those of residual_out as stored (rounded to dtype).
    _, s, _, rstd = norm_forward(x, r, None, None, 1e-6, is_rms=True)
    if dtype == torch.bfloat16 and kernel_device.type == "cpu":
        # Triton's interpreter rounds float32 -> bfloat16 toward zero (a GPU rounds to
        # nearest even), so on CPU the stored sum may be 1 ulp off torch's.
        torch.testing.assert_close(s, x + r)
    else:
        assert torch.equal(s, x + r)
    s64 = s.double()
    torch.testing.assert_close(rstd.double(), ((s64 * s64).mean(-1) + 1e-6).rsqrt(),
                               rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------
# Layouts: strided, transposed, expanded, empty
# --------------------------------------------------------------------------

LAYOUTS = {
    "transposed": lambda x: x.transpose(0, 1).contiguous().transpose(0, 1),
    "row_slice": lambda x: torch.stack([x, x], dim=1).flatten(0, 1)[::2],  # row stride 2N
    "column_stride": lambda x: torch.stack([x, x], dim=-1)[..., 0],  # stride 2 along N
}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_strided_inputs(op, layout, kernel_device):
    prep = LAYOUTS[layout]
    check_against_reference(op, (6, 37), torch.float32, kernel_device, seed=10, prep=prep)
    assert not prep(torch.randn(6, 37)).is_contiguous()


def test_non_contiguous_gradient_and_expanded_input(kernel_device):
    x = torch.randn(1, 64, device=kernel_device).expand(5, 64)  # stride 0 rows
    w = torch.randn(64, device=kernel_device, requires_grad=True)
    y = K.rms_norm(x, w, backend="triton")
    torch.testing.assert_close(y, torch.nn.functional.rms_norm(x, (64,), w, 1e-6))
    dy = torch.randn(64, 5, device=kernel_device).t()  # a transposed upstream gradient
    (dw,) = torch.autograd.grad(y, w, dy)
    (dw_ref,) = torch.autograd.grad(torch.nn.functional.rms_norm(x, (64,), w, 1e-6), w, dy)
    torch.testing.assert_close(dw, dw_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("n", [16, 9001], ids=["row", "chunked"])
def test_zero_rows(op, n, kernel_device):
    tensors, grads = _inputs(op, (0, n), torch.float32, device=kernel_device)
    outs = _run(op, tensors, grads, "triton")
    assert outs[0].shape == (0, n)
    for name, d in zip(list(tensors), outs[-len(tensors):]):
        assert d.shape == tensors[name].shape
        if name in ("weight", "bias"):
            assert torch.equal(d, torch.zeros(n, device=kernel_device))


@pytest.mark.parametrize("op", ["layer_norm", "add_rms_norm"])
@pytest.mark.parametrize("m", [1, 2, 3, 5, 9])
def test_row_counts_around_the_program_count(op, m, kernel_device):
    """Fewer rows than programs, and slices that leave the last program short.

    The partial buffers come from ``torch.empty``: every program must write
    its whole partial row, or dweight would sum uninitialized memory.
    """
    check_against_reference(op, (m, 48), torch.float32, kernel_device, seed=30 + m)
    check_against_reference(op, (m, 8200), torch.float32, kernel_device, seed=40 + m)


# --------------------------------------------------------------------------
# Determinism, modules, property-based shapes, bad inputs
# --------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["add_layer_norm", "add_rms_norm"])
@pytest.mark.parametrize("shape", [(37, 200), (9, 9001)], ids=["registers", "chunked"])
def test_weight_gradient_is_bit_identical(op, shape, kernel_device):
    """Several programs each write a partial; the fixed-order sum never races."""
    tensors, grads = _inputs(op, shape, torch.bfloat16, seed=11, device=kernel_device)
    first = _run(op, tensors, grads, "triton")
    for _ in range(2):
        again = _run(op, tensors, grads, "triton")
        for a, b in zip(first[-2:], again[-2:]):
            assert torch.equal(a, b)


def test_modules_are_drop_in(kernel_device):
    torch.manual_seed(12)
    for ours, theirs, x in (
        (K.LayerNorm(24, backend="triton"), torch.nn.LayerNorm(24), torch.randn(2, 3, 24)),
        (K.LayerNorm((4, 6), bias=False, backend="triton"), torch.nn.LayerNorm((4, 6), bias=False),
         torch.randn(3, 4, 6)),
        (K.LayerNorm(24, elementwise_affine=False, backend="triton"),
         torch.nn.LayerNorm(24, elementwise_affine=False), torch.randn(5, 24)),
        (K.RMSNorm(24, backend="triton"), torch.nn.RMSNorm(24), torch.randn(2, 3, 24)),
        (K.RMSNorm(24, eps=1e-5, backend="triton"), torch.nn.RMSNorm(24, eps=1e-5),
         torch.randn(5, 24)),
    ):
        ours, theirs, x = ours.to(kernel_device), theirs.to(kernel_device), x.to(kernel_device)
        with torch.no_grad():
            for p in theirs.parameters():
                p.copy_(torch.randn_like(p))
        assert list(ours.state_dict()) == list(theirs.state_dict())
        ours.load_state_dict(theirs.state_dict())
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
        theirs.load_state_dict(ours.state_dict())


@settings(max_examples=12, deadline=None, database=None)
@given(op=st.sampled_from(OPS), dtype=st.sampled_from(DTYPES),
       lead=st.lists(st.integers(1, 4), min_size=0, max_size=2),
       n=st.integers(1, 300), seed=st.integers(0, 2**16))
def test_property_shapes(kernel_device, op, dtype, lead, n, seed):
    check_against_reference(op, (*lead, n), dtype, kernel_device, seed=seed)


def _bad_calls():
    x = torch.randn(4, 8)
    w = torch.randn(8)
    yield "x", lambda: K.layer_norm(torch.ones(4, 8, dtype=torch.int64), w)
    yield "weight", lambda: K.layer_norm(x, torch.randn(7))
    yield "bias", lambda: K.layer_norm(x, w, torch.ones(8, dtype=torch.int32))
    yield "weight", lambda: K.rms_norm(x, w.to(torch.float16))
    yield "weight", lambda: K.rms_norm(x, torch.randn(8, device="meta"))
    yield "residual", lambda: K.add_rms_norm(x, torch.randn(4, 9), w)
    yield "residual", lambda: K.add_layer_norm(x, x.half(), w)
    yield "residual", lambda: K.add_rms_norm(x, None, w)
    yield "eps", lambda: K.layer_norm(x, w, eps=0.0)
    yield "eps", lambda: K.rms_norm(x, w, eps=-1e-6)
    yield "backend", lambda: K.rms_norm(x, w, backend="cuda")
    yield "float64", lambda: K.rms_norm(x.double(), backend="triton")
    yield "x", lambda: K.RMSNorm(8)(torch.ones(2, 8, dtype=torch.int32))
    yield "normalized_shape", lambda: K.LayerNorm(8)(torch.randn(2, 7))


@pytest.mark.parametrize("word,call", list(_bad_calls()))
def test_bad_inputs_raise_value_error_naming_the_argument(word, call):
    with pytest.raises(ValueError, match=word):
        call()


def test_float32_parameters_with_bfloat16_activations(kernel_device):
    """Mixed precision: float32 master weights next to bfloat16 x; gradients keep each dtype."""
    g = torch.Generator().manual_seed(15)
    x = (torch.randn(4, 96, generator=g) * 2).to(kernel_device, torch.bfloat16).requires_grad_()
    w = (torch.randn(96, generator=g) * 0.5 + 1).to(kernel_device).requires_grad_()
    b = torch.randn(96, generator=g).to(kernel_device).requires_grad_()
    y = K.layer_norm(x, w, b, backend="triton")
    assert y.dtype == torch.bfloat16
    dy = torch.randn(4, 96, generator=g).to(kernel_device, torch.bfloat16)
    dx, dw, db = torch.autograd.grad(y, (x, w, b), dy)
    assert (dx.dtype, dw.dtype, db.dtype) == (torch.bfloat16, torch.float32, torch.float32)
    x64 = x.detach().double().requires_grad_()
    w64, b64 = w.detach().double().requires_grad_(), b.detach().double().requires_grad_()
    y64 = torch.nn.functional.layer_norm(x64, (96,), w64, b64)
    ref = torch.autograd.grad(y64, (x64, w64, b64), dy.double())
    assert _err(y, y64) < 0.05 and _err(dx, ref[0]) < 0.05
    assert _err(dw, ref[1]) < 1e-4 * max(1.0, ref[1].abs().max().item())
    assert _err(db, ref[2]) < 1e-5 * max(1.0, ref[2].abs().max().item())


def test_half_precision_parameters_get_gradients_in_their_dtype(kernel_device):
    """The partial-sum kernel casts on the way out: bfloat16 weight and bias, bfloat16 grads."""
    tensors, grads = _inputs("layer_norm", (7, 300), torch.bfloat16, seed=21, device=kernel_device)
    outs = _run("layer_norm", tensors, grads, "triton")
    ref = _run("layer_norm", tensors, grads, "torch", dtype=torch.float64)
    for got, want in zip(outs[-2:], ref[-2:]):
        assert got.dtype == torch.bfloat16
        assert _err(got, want) <= 1e-2 * max(1.0, want.abs().max().item())


def test_torch_backend_handles_float64():
    x = torch.randn(2, 70000, dtype=torch.float64)
    y = K.rms_norm(x, backend="torch")
    torch.testing.assert_close(y, torch.nn.functional.rms_norm(x, x.shape[-1:], eps=1e-6))
