"""Chapter 6, "LayerNorm in Triton": near misses and unusual right answers.

The kernels are ``@triton.jit`` functions at module level (Triton reads their
source from this file); ``normcourse`` is imported first, so that they run in the
interpreter on a machine without a GPU.
"""

from __future__ import annotations

import normcourse  # noqa: F401  isort: skip  (sets TRITON_INTERPRET before triton loads)
import triton  # noqa: E402  isort: skip
import triton.language as tl  # noqa: E402  isort: skip

from near_misses import Attempt, Exercise  # noqa: E402
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
    checker=check_layer_norm_bytes,
    notebook=NOTEBOOK,
    function="layer_norm_bytes",
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

@triton.jit
def no_load_mask(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def no_load_mask_then_where(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    # the right numbers, but the load itself reads past the end of the row
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.where(mask, tl.load(X + row * stride + cols).to(tl.float32), 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def load_mask_without_other(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask).to(tl.float32)   # lanes past N undefined
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def no_store_mask(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty))


@triton.jit
def divides_by_block(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / BLOCK_N + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def sum_of_squares(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def no_eps(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def eps_outside(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / (tl.sqrt(tl.sum(x * x, axis=0) / N) + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def eps_constant(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + 1e-6)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def eps_squared(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps * eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def unmasked_weight(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    w = tl.load(W + cols).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def no_weight(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    tl.store(Y + row * stride + cols, (x * rstd).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def centred(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    xc = tl.where(mask, x - tl.sum(x, axis=0) / N, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, axis=0) / N + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, (xc * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def rows_n_apart(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * N + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * N + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def loads_n_apart(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * N + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def empty(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    pass


@triton.jit
def first_row_only(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def wrong_program_axis(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(1)    # the grid is 1-D: always 0
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def stub(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    raise NotImplementedError("your code here")


def not_jitted(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def stores_x(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0)
    tl.store(Y + row * stride + cols, x, mask=mask)


@triton.jit
def statistics_in_input_dtype(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    # no .to(tl.float32): on bfloat16 rows the sum of squares keeps 8 bits
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0)
    ms = (tl.sum(x * x, axis=0) / N).to(x.dtype)
    rstd = (1.0 / tl.sqrt((ms + eps).to(tl.float32))).to(x.dtype)
    w = tl.load(W + cols, mask=mask, other=0.0)
    tl.store(Y + row * stride + cols, x * rstd * w, mask=mask)


# the right answers

@triton.jit
def positional_axis(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask, 0.0).to(tl.float32)   # mask and other by position
    rstd = tl.rsqrt(tl.sum(x * x, 0) / N + eps)
    w = tl.load(W + cols, mask, 0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask)


@triton.jit
def rsqrt_weight_first(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    ms = tl.sum(x * x, axis=0) / N
    tl.store(Y + row * stride + cols, (w * x * tl.rsqrt(ms + eps)).to(Y.dtype.element_ty),
             mask=mask)


@triton.jit
def where_after_load(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    # no other=, but the undefined lanes are replaced before they are used
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask).to(tl.float32)
    x = tl.where(mask, x, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def weight_without_other(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    # the weight's undefined lanes only reach padding lanes, which the masked store drops
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    w = tl.load(W + cols, mask=mask).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def implicit_store_cast(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    # tl.store converts to the pointer's element type itself
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    rms = tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, x / rms * w, mask=mask)


@triton.jit
def int64_offsets(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x_ptrs = X + row * stride + cols
    x = tl.load(x_ptrs, mask=mask, other=0.0).to(tl.float32)
    mean_sq = tl.sum(x * x, axis=0) / N
    y = x / tl.sqrt(mean_sq + eps) * tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, y.to(Y.dtype.element_ty), mask=mask)


RMS_NORM_KERNEL = Exercise(
    checker=check_rms_norm_kernel,
    notebook=NOTEBOOK,
    function="rms_norm_kernel",
    near_misses=(
        Attempt("no mask on the x load", no_load_mask, ("read past the end of the row",)),
        Attempt("no mask on the x load, tl.where afterwards", no_load_mask_then_where,
                ("reads X past the end of each row",)),
        Attempt("mask without other= on the x load", load_mask_without_other, ("other=0.0",)),
        Attempt("no mask on the store", no_store_mask, ("wrote outside the rows",)),
        Attempt("divides by BLOCK_N", divides_by_block, ("BLOCK_N instead of N",)),
        Attempt("sum of squares", sum_of_squares, ("sum of squares",)),
        Attempt("no eps", no_eps, ("without eps",)),
        Attempt("eps outside the sqrt", eps_outside, ("outside the square root",)),
        Attempt("a constant eps", eps_constant, ("as if eps were",)),
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
    right_answers=(
        Attempt("rsqrt, weight loaded first", rsqrt_weight_first),
        Attempt("tl.where after a load without other=", where_after_load),
        Attempt("weight load without other=", weight_without_other),
        Attempt("store converts implicitly", implicit_store_cast),
        Attempt("int64 row offsets", int64_offsets),
        Attempt("mask and other by position", positional_axis),
    ),
)

CASES = [LAYER_NORM_BYTES, RMS_NORM_KERNEL]
