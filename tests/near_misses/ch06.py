"""Chapter 6, "LayerNorm in Triton": near misses and unusual right answers.

The kernels are ``@triton.jit`` functions at module level (Triton reads their
source from this file); ``normcourse`` is imported first, so that they run in the
interpreter on a machine without a GPU.
"""

from __future__ import annotations

import normcourse  # noqa: F401  isort: skip  (sets TRITON_INTERPRET before triton loads)
import triton  # noqa: E402  isort: skip
import triton.language as tl  # noqa: E402  isort: skip

from near_misses import Attempt, Exercise, attempts  # noqa: E402
from normcourse.exercises.fused_add import check_layer_norm_bytes  # noqa: E402
from normcourse.exercises.triton_kernels import check_rms_norm_kernel  # noqa: E402

NOTEBOOK = "notebooks/06_layernorm_in_triton.ipynb"


# ---- layer_norm_bytes(m, n, element_size) ------------------------------------------------

def _bytes_right_float(m, n, e):
    return float(2 * m * n * e + 2 * n * e + 8 * m)     # a whole number as a float


def _bytes_numpy(m, n, e):
    import numpy as np
    return np.int64(m) * n * e * 2 + np.int64(n) * e * 2 + np.int64(m) * 8


def _bytes_by_tensor(m, n, e):
    tensors = [(m * n, e), (m * n, e), (n, e), (n, e), (m, 4), (m, 4)]
    return sum(count * size for count, size in tensors)


LAYER_NORM_BYTES = Exercise(
    check_layer_norm_bytes, NOTEBOOK, "layer_norm_bytes",
    near_misses=(
        Attempt("x and y only", lambda m, n, e: 2 * m * n * e, ("weight, the bias",)),
        Attempt("statistics forgotten", lambda m, n, e: 2 * m * n * e + 2 * n * e,
                ("saved statistics are missing",)),
        Attempt("parameters forgotten", lambda m, n, e: 2 * m * n * e + 8 * m,
                ("weight and bias are missing",)),
        Attempt("parameters per row", lambda m, n, e: 4 * m * n * e + 8 * m, ("once per row",)),
        Attempt("statistics in the input dtype",
                lambda m, n, e: 2 * m * n * e + 2 * n * e + 2 * m * e, ("float32",)),
        Attempt("y forgotten", lambda m, n, e: m * n * e + 2 * n * e + 8 * m, ("output",)),
        Attempt("one statistic", lambda m, n, e: 2 * m * n * e + 2 * n * e + 4 * m,
                ("two statistics",)),
        Attempt("elements, not bytes", lambda m, n, e: 2 * m * n + 2 * n + 2 * m,
                ("elements, not bytes",)),
        Attempt("megabytes", lambda m, n, e: (2 * m * n * e + 2 * n * e + 8 * m) / 1e6,
                ("whole number",)),
        Attempt("element_size ignored (float32)",
                lambda m, n, e: 2 * m * n * 4 + 2 * n * 4 + 8 * m, ("bytes",)),
        Attempt("statistics per element", lambda m, n, e: 2 * m * n * e + 2 * n * e + 8 * m * n,
                ("bytes",)),
        Attempt("forward and backward", lambda m, n, e: 2 * (2 * m * n * e + 2 * n * e + 8 * m),
                ("bytes",)),
    ),
    right_answers=(
        Attempt("a whole float", _bytes_right_float),
        Attempt("numpy integers", _bytes_numpy),
        Attempt("a sum over the tensors", _bytes_by_tensor),
    ),
)


# ---- rms_norm_kernel(X, Y, W, stride, N, eps, BLOCK_N) -------------------------------------
#
# The near misses differ from the right kernel in one step each, so they are written
# with the right kernel's steps as @triton.jit helpers, and only the step they get
# wrong spelled out.  A load or store whose form is the mistake (no mask, no other=)
# stays in the kernel itself, where the checker reads the kernel's source.

@triton.jit
def rms_norm_kernel(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    """the chapter's kernel"""
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _row(stride, N, BLOCK_N: tl.constexpr):
    """(offsets of this program's row, the columns, the mask of the real columns)."""
    cols = tl.arange(0, BLOCK_N)
    return tl.program_id(0) * stride + cols, cols, cols < N


@triton.jit
def _load(P, at, mask):
    return tl.load(P + at, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _rstd(x, N, eps):
    return 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)


@triton.jit
def _store(Y, at, y, mask):
    tl.store(Y + at, y.to(Y.dtype.element_ty), mask=mask)


@triton.jit
def no_load_mask(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    at, cols, mask = _row(stride, N, BLOCK_N)
    x = tl.load(X + at).to(tl.float32)
    _store(Y, at, x * _rstd(x, N, eps) * _load(W, cols, mask), mask)


@triton.jit
def no_load_mask_then_where(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    # the right numbers, but the load itself reads past the end of the row
    at, cols, mask = _row(stride, N, BLOCK_N)
    x = tl.where(mask, tl.load(X + at).to(tl.float32), 0.0)
    _store(Y, at, x * _rstd(x, N, eps) * _load(W, cols, mask), mask)


@triton.jit
def load_mask_without_other(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    at, cols, mask = _row(stride, N, BLOCK_N)
    x = tl.load(X + at, mask=mask).to(tl.float32)   # lanes past N undefined
    _store(Y, at, x * _rstd(x, N, eps) * _load(W, cols, mask), mask)


@triton.jit
def no_store_mask(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    at, cols, mask = _row(stride, N, BLOCK_N)
    x = _load(X, at, mask)
    tl.store(Y + at, (x * _rstd(x, N, eps) * _load(W, cols, mask)).to(Y.dtype.element_ty))


@triton.jit
def divides_by_block(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    at, cols, mask = _row(stride, N, BLOCK_N)
    x = _load(X, at, mask)
    _store(Y, at, x * _rstd(x, BLOCK_N, eps) * _load(W, cols, mask), mask)


@triton.jit
def sum_of_squares(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    at, cols, mask = _row(stride, N, BLOCK_N)
    x = _load(X, at, mask)
    _store(Y, at, x * _rstd(x, 1, eps) * _load(W, cols, mask), mask)


@triton.jit
def no_eps(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    at, cols, mask = _row(stride, N, BLOCK_N)
    x = _load(X, at, mask)
    _store(Y, at, x * _rstd(x, N, 0.0) * _load(W, cols, mask), mask)


@triton.jit
def eps_outside(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    at, cols, mask = _row(stride, N, BLOCK_N)
    x = _load(X, at, mask)
    _store(Y, at, x * 1.0 / (tl.sqrt(tl.sum(x * x, axis=0) / N) + eps) * _load(W, cols, mask), mask)


@triton.jit
def eps_constant(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    at, cols, mask = _row(stride, N, BLOCK_N)
    x = _load(X, at, mask)
    _store(Y, at, x * _rstd(x, N, 1e-5) * _load(W, cols, mask), mask)   # not the eps argument


@triton.jit
def eps_squared(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    at, cols, mask = _row(stride, N, BLOCK_N)
    x = _load(X, at, mask)
    _store(Y, at, x * _rstd(x, N, eps * eps) * _load(W, cols, mask), mask)


@triton.jit
def unmasked_weight(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    at, cols, mask = _row(stride, N, BLOCK_N)
    x = _load(X, at, mask)
    _store(Y, at, x * _rstd(x, N, eps) * tl.load(W + cols).to(tl.float32), mask)


@triton.jit
def no_weight(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    at, cols, mask = _row(stride, N, BLOCK_N)
    x = _load(X, at, mask)
    _store(Y, at, x * _rstd(x, N, eps), mask)


@triton.jit
def centred(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    at, cols, mask = _row(stride, N, BLOCK_N)
    x = _load(X, at, mask)
    xc = tl.where(mask, x - tl.sum(x, axis=0) / N, 0.0)
    _store(Y, at, xc * _rstd(xc, N, eps) * _load(W, cols, mask), mask)


@triton.jit
def rows_n_apart(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    at, cols, mask = _row(N, N, BLOCK_N)
    x = _load(X, at, mask)
    _store(Y, at, x * _rstd(x, N, eps) * _load(W, cols, mask), mask)


@triton.jit
def loads_n_apart(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    at, cols, mask = _row(stride, N, BLOCK_N)
    x = _load(X, tl.program_id(0) * N + cols, mask)
    _store(Y, at, x * _rstd(x, N, eps) * _load(W, cols, mask), mask)


@triton.jit
def empty(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    pass


@triton.jit
def first_row_only(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    at, cols, mask = _row(0, N, BLOCK_N)    # every program on row 0
    x = _load(X, at, mask)
    _store(Y, at, x * _rstd(x, N, eps) * _load(W, cols, mask), mask)


@triton.jit
def wrong_program_axis(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    cols = tl.arange(0, BLOCK_N)
    at, mask = tl.program_id(1) * stride + cols, cols < N    # the grid is 1-D: always 0
    x = _load(X, at, mask)
    _store(Y, at, x * _rstd(x, N, eps) * _load(W, cols, mask), mask)


@triton.jit
def stub(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    raise NotImplementedError("your code here")


def not_jitted(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    at, cols, mask = _row(stride, N, BLOCK_N)
    x = _load(X, at, mask)
    _store(Y, at, x * _rstd(x, N, eps) * _load(W, cols, mask), mask)


@triton.jit
def stores_x(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    at, cols, mask = _row(stride, N, BLOCK_N)
    _store(Y, at, _load(X, at, mask), mask)


@triton.jit
def statistics_in_input_dtype(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    # no .to(tl.float32): on bfloat16 rows the sum of squares keeps 8 bits
    at, cols, mask = _row(stride, N, BLOCK_N)
    x = tl.load(X + at, mask=mask, other=0.0)
    ms = (tl.sum(x * x, axis=0) / N).to(x.dtype)
    rstd = (1.0 / tl.sqrt((ms + eps).to(tl.float32))).to(x.dtype)
    tl.store(Y + at, x * rstd * tl.load(W + cols, mask=mask, other=0.0), mask=mask)


# the right answers, each unusual in one way

@triton.jit
def positional_axis(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    """mask and other by position"""
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask, 0.0).to(tl.float32)
    rstd = tl.rsqrt(tl.sum(x * x, 0) / N + eps)
    tl.store(Y + row * stride + cols, (x * rstd * tl.load(W + cols, mask, 0.0)), mask)


@triton.jit
def rsqrt_weight_first(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    """rsqrt, weight loaded first"""
    at, cols, mask = _row(stride, N, BLOCK_N)
    w = _load(W, cols, mask)
    x = _load(X, at, mask)
    _store(Y, at, w * x * tl.rsqrt(tl.sum(x * x, axis=0) / N + eps), mask)


@triton.jit
def where_after_load(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    """tl.where after a masked load without other="""
    at, cols, mask = _row(stride, N, BLOCK_N)
    x = tl.where(mask, tl.load(X + at, mask=mask).to(tl.float32), 0.0)
    _store(Y, at, x * _rstd(x, N, eps) * _load(W, cols, mask), mask)


@triton.jit
def weight_without_other(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    """weight load without other="""
    # the weight's undefined lanes only reach padding lanes, which the masked store drops
    at, cols, mask = _row(stride, N, BLOCK_N)
    x = _load(X, at, mask)
    _store(Y, at, x * _rstd(x, N, eps) * tl.load(W + cols, mask=mask).to(tl.float32), mask)


@triton.jit
def implicit_store_cast(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    """the store converts implicitly"""
    at, cols, mask = _row(stride, N, BLOCK_N)
    x = _load(X, at, mask)
    tl.store(Y + at, x / tl.sqrt(tl.sum(x * x, axis=0) / N + eps) * _load(W, cols, mask),
             mask=mask)


@triton.jit
def int64_offsets(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    """int64 row offsets"""
    cols = tl.arange(0, BLOCK_N)
    at = tl.program_id(0).to(tl.int64) * stride + cols
    x = _load(X, at, cols < N)
    _store(Y, at, x * _rstd(x, N, eps) * _load(W, cols, cols < N), cols < N)


RMS_NORM_KERNEL = Exercise(
    check_rms_norm_kernel, NOTEBOOK, "rms_norm_kernel",
    near_misses=(
        Attempt("no mask on the x load", no_load_mask, ("read past the end of the row",)),
        Attempt("no mask on the x load, tl.where afterwards", no_load_mask_then_where,
                ("reads X past the end of each row",)),
        Attempt("mask without other= on the x load", load_mask_without_other, ("other=0.0",)),
        Attempt("no mask on the store", no_store_mask, ("wrote outside the rows",)),
        Attempt("divides by BLOCK_N", divides_by_block,
                ("BLOCK_N instead of N",)),
        Attempt("sum of squares", sum_of_squares, ("sum of squares",)),
        Attempt("no eps", no_eps, ("without eps",)),
        Attempt("eps outside the sqrt", eps_outside,
                ("outside the square root",)),
        Attempt("a constant eps", eps_constant,
                ("as if eps were",)),
        Attempt("eps * eps", eps_squared, ("eps ** 2",)),
        Attempt("unmasked weight load", unmasked_weight, ("reads the weight past",)),
        Attempt("no weight", no_weight, ("weight is missing",)),
        Attempt("mean subtracted", centred, ("LayerNorm",)),
        Attempt("rows N apart", rows_n_apart, ("Y + r * N",)),
        Attempt("loads N apart", loads_n_apart, ("X + r * N",)),
        Attempt("empty body", empty, ("never stored",)),
        Attempt("first row only", first_row_only, ("unwritten",)),
        Attempt("program_id(1)", wrong_program_axis, ("unwritten",)),
        Attempt("stub", stub, ("not implemented",)),
        Attempt("no @triton.jit", not_jitted, ("@triton.jit",)),
        Attempt("copies x", stores_x, ("wrong",)),
        Attempt("statistics in bfloat16", statistics_in_input_dtype, ("to(tl.float32)",)),
    ),
    right_answers=attempts(rms_norm_kernel, rsqrt_weight_first, where_after_load,
                           weight_without_other, implicit_store_cast, int64_offsets,
                           positional_axis),
)

CASES = [LAYER_NORM_BYTES, RMS_NORM_KERNEL]
