"""The compiled Triton kernels on a CUDA GPU against a float64 reference.

CUDA only: on a machine without a GPU the whole module is collected and
skipped with a reason (the same kernels are checked there through the
interpreter, at small sizes, by tests/test_kernels.py).  The harness itself,
:func:`check`, runs on any device, and tests/test_tolerance.py exercises it
on the CPU so that a bug in it cannot hide until a GPU run.

Every op (layer_norm, rms_norm, add_layer_norm, add_rms_norm), forward and
backward, in float32, float16 and bfloat16, at every N below: row lengths of
1, odd sizes, powers of two, and both sides of the row/chunked switches of
:mod:`normcourse.kernels.launch`.  Variants: with weight (and bias), without
them, x strided along rows (a slice of a wider buffer, read in place), and
float32 weights with bfloat16 x (mixed precision).  Tolerance: the rule of
:mod:`normcourse.tolerance` (at most twice PyTorch's own error in the same
dtype, plus a small atol), for every output and every gradient.
"""

from __future__ import annotations

import pytest
import torch

import normcourse.kernels as K
from normcourse.tolerance import assert_close_to_reference

CUDA_REASON = ("needs a CUDA GPU: checks the compiled kernels (on CPU, tests/test_kernels.py "
               "checks them through the interpreter)")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason=CUDA_REASON)

OPS = ("layer_norm", "rms_norm", "add_layer_norm", "add_rms_norm")
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
SIZES = (1, 123, 1500, 4096, 8192, 9001, 16384, 20000, 65536)
VARIANTS = ("affine", "no_params", "row_strided", "float32_params")


def rows_for(n: int) -> int:
    """Enough rows that the backward's programs each own several (many SMs), few at large N."""
    return 1000 if n <= 1500 else 96 if n <= 20000 else 12


def make_inputs(op, m, n, dtype, variant, device, seed=0):
    """Leaves by name (x, residual, weight, bias as the op takes them) and upstream grads."""
    g = torch.Generator(device=device).manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, device=device)

    if variant == "row_strided":
        # rows n + 64 elements apart, unit stride along the row: the kernel reads in place
        x = (randn(m, n + 64) * 2 + 0.5).to(dtype)[:, :n]
    else:
        x = (randn(m, n) * 2 + 0.5).to(dtype)
    t = {"x": x}
    if op.startswith("add_"):
        t["residual"] = randn(m, n).to(dtype)
    if variant != "no_params":
        pdtype = torch.float32 if variant == "float32_params" else dtype
        t["weight"] = (randn(n) * 0.5 + 1).to(pdtype)
        if "layer" in op:
            t["bias"] = (randn(n) * 0.5).to(pdtype)
    grads = [randn(m, n).to(dtype) for _ in range(2 if op.startswith("add_") else 1)]
    return t, grads


def outputs_and_grads(op, tensors, grads, backend, to=None):
    """Outputs, then the gradient of every input, optionally computed in dtype ``to``."""
    leaves = {k: (v.to(to) if to else v).detach().requires_grad_() for k, v in tensors.items()}
    outs = getattr(K, op)(**leaves, backend=backend)
    outs = outs if isinstance(outs, tuple) else (outs,)
    dins = torch.autograd.grad(outs, list(leaves.values()), [d.to(to) if to else d for d in grads])
    names = ["y", "residual_out"][: len(outs)] + [f"d{k}" for k in leaves]
    return names, [o.detach() for o in outs] + list(dins)


def check(op, n, dtype, variant="affine", device="cuda", rows=None, seed=0):
    """Triton vs float64, PyTorch's own error as the yardstick; raises AssertionError."""
    tensors, grads = make_inputs(op, rows or rows_for(n), n, dtype, variant, device, seed)
    names, ours = outputs_and_grads(op, tensors, grads, "triton")
    _, theirs = outputs_and_grads(op, tensors, grads, "torch")
    _, ref = outputs_and_grads(op, tensors, grads, "torch", to=torch.float64)
    for name, o, t, r in zip(names, ours, theirs, ref):
        key = name[1:] if name.startswith("d") and name[1:] in tensors else name
        want = tensors[key].dtype if key in tensors else dtype
        assert o.dtype == want, f"{op} {name}: dtype {o.dtype}, expected {want}"
        assert o.shape == r.shape, f"{op} {name}: shape {tuple(o.shape)} != {tuple(r.shape)}"
        assert o.device.type == torch.device(device).type
        assert_close_to_reference(f"{op} {variant} {name}", o, t, r, dtype)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op", OPS)
def test_every_op_dtype_and_size(op, dtype, n):
    check(op, n, dtype, "affine", seed=n)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("variant, dtype", [("no_params", torch.bfloat16),
                                            ("row_strided", torch.float16),
                                            ("float32_params", torch.bfloat16)], ids=str)
def test_variants(op, n, variant, dtype):
    check(op, n, dtype, variant, seed=n + 1)


def test_kernels_ran_compiled_not_interpreted():
    from normcourse.runtime import triton_interpreted

    assert not triton_interpreted(), "TRITON_INTERPRET=1 on a CUDA machine: kernels not compiled"
    x = torch.randn(4, 256, device="cuda")
    assert K.layer_norm(x, backend="triton").is_cuda
