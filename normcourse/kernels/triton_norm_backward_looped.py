r"""The backward for long rows: the row is walked in chunks, not held in registers.

The row-per-program backward of :mod:`~normcourse.kernels.triton_layer_norm`
keeps four row-sized float32 vectors in registers: x, dy and the program's
dW and dB partial sums.  At N = 16384 that is 64K values, the whole register
file of an SM, and the compiler spills.  For rows longer than
:data:`~normcourse.kernels.launch.MAX_REGISTER_ROW` this kernel is used instead
(for LayerNorm and RMSNorm alike, ``IS_RMS`` picks)::

    for each row of this program's slice:
        pass 1, chunk by chunk:  sum_g  += sum(g),  sum_gx += sum(g * x_hat)
        pass 2, chunk by chunk:  dx = rstd * (g - sum_g/N - x_hat * sum_gx/N)
                                 partial_dw[chunk] += dy * x_hat     (and partial_db += dy)

Pass 2 re-reads the row (mostly from cache, it was just read), and the dW/dB
partials live in this program's own row of the ``(programs, N)`` buffer in
global memory: only this program ever touches that row, and each thread
reads back exactly the elements it wrote, so no atomics and no races, and the
second-stage sum stays deterministic.
"""

from __future__ import annotations

import normcourse  # noqa: F401  isort: skip  (sets TRITON_INTERPRET before triton is imported)
import triton
import triton.language as tl

from normcourse.kernels.launch import looped_settings

__all__ = ["norm_bwd_looped_kernel", "launch_looped_backward"]


@triton.jit
def _chunk_terms(X, DY, W, row64, stride_x, stride_dy, cols, mask, mean, rstd,
                 HAS_WEIGHT: tl.constexpr):
    """One chunk of one row, in float32: (x_hat, dy, g) with g = dy * w.

    x_hat is zeroed off the row so that masked lanes add nothing to the sums.
    Both passes call this: pass 2 recomputes x_hat instead of storing it.
    """
    x = tl.load(X + row64 * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(DY + row64 * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
    x_hat = tl.where(mask, (x - mean) * rstd, 0.0)
    if HAS_WEIGHT:
        g = dy * tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    else:
        g = dy
    return x_hat, dy, g


@triton.jit
def norm_bwd_looped_kernel(
    X,  # pointer to the forward's normalized input (residual_out for the fused op), row stride stride_x
    DY,  # pointer to the gradient of y, row stride stride_dy
    DRES,  # pointer to the gradient of residual_out, row stride stride_dres (HAS_DRESIDUAL)
    DX,  # pointer to the output gradient of x, contiguous (M, N)
    W,  # pointer to the weight (N,), read only when HAS_WEIGHT
    MEAN,  # pointer to the per-row mean (M,) float32, read only for LayerNorm
    RSTD,  # pointer to the per-row 1/std (or 1/rms) (M,), float32
    DW_PARTIAL,  # pointer to the (programs, N) float32 dweight partials, zero-filled
    DB_PARTIAL,  # pointer to the (programs, N) float32 dbias partials, zero-filled (HAS_BIAS)
    stride_x,  # elements between consecutive rows of X
    stride_dy,  # elements between consecutive rows of DY
    stride_dres,  # elements between consecutive rows of DRES
    M,  # number of rows
    N,  # features per row
    rows_per_program,  # each program owns rows [pid * rows_per_program, ... + rows_per_program)
    IS_RMS: tl.constexpr,  # RMSNorm (no mean) instead of LayerNorm
    HAS_DRESIDUAL: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    CHUNK_N: tl.constexpr,  # columns handled per step
    NUM_CHUNKS: tl.constexpr,  # CHUNK_N * NUM_CHUNKS >= N
):
    pid = tl.program_id(0)
    row_start = pid * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, M)
    partial = pid.to(tl.int64) * N  # this program's row in the partial buffers
    for row in range(row_start, row_end):
        row64 = tl.cast(row, tl.int64)  # int64 offsets: row * stride may pass 2**31
        rstd = tl.load(RSTD + row64)
        if IS_RMS:
            mean = 0.0
        else:
            mean = tl.load(MEAN + row64)
        # Pass 1: the two row means that couple all columns of dx.
        sum_g = tl.zeros((CHUNK_N,), dtype=tl.float32)
        sum_gx = tl.zeros((CHUNK_N,), dtype=tl.float32)
        for c in range(NUM_CHUNKS):
            cols = c * CHUNK_N + tl.arange(0, CHUNK_N)
            mask = cols < N
            x_hat, dy, g = _chunk_terms(X, DY, W, row64, stride_x, stride_dy, cols, mask, mean, rstd,
                                        HAS_WEIGHT)
            sum_g += g
            sum_gx += g * x_hat
        mean_gx = tl.sum(sum_gx, axis=0) / N
        if IS_RMS:
            mean_g = 0.0
        else:
            mean_g = tl.sum(sum_g, axis=0) / N
        # Pass 2: dx, and the dW/dB partials accumulated in this program's own row.
        for c in range(NUM_CHUNKS):
            cols = c * CHUNK_N + tl.arange(0, CHUNK_N)
            mask = cols < N
            x_hat, dy, g = _chunk_terms(X, DY, W, row64, stride_x, stride_dy, cols, mask, mean, rstd,
                                        HAS_WEIGHT)
            dx = rstd * (g - mean_g - x_hat * mean_gx)
            if HAS_DRESIDUAL:
                dx += tl.load(DRES + row64 * stride_dres + cols, mask=mask,
                              other=0.0).to(tl.float32)
            tl.store(DX + row64 * N + cols, dx.to(DX.dtype.element_ty), mask=mask)
            if HAS_WEIGHT:
                dw = tl.load(DW_PARTIAL + partial + cols, mask=mask, other=0.0)
                tl.store(DW_PARTIAL + partial + cols, dw + dy * x_hat, mask=mask)
            if HAS_BIAS:
                db = tl.load(DB_PARTIAL + partial + cols, mask=mask, other=0.0)
                tl.store(DB_PARTIAL + partial + cols, db + dy, mask=mask)


def launch_looped_backward(x, dy, dres, dx, weight, mean, rstd, dw_partial, db_partial,
                           rows_per_program, programs, is_rms, has_bias):
    """Launch :func:`norm_bwd_looped_kernel` (arguments as in the row-per-program launchers)."""
    m, n = x.shape
    chunk, num_warps = looped_settings()
    norm_bwd_looped_kernel[(programs,)](
        x, dy, dres if dres is not None else dy, dx,
        weight if weight is not None else x, mean if mean is not None else rstd, rstd,
        dw_partial, db_partial,
        x.stride(0), dy.stride(0), dres.stride(0) if dres is not None else 0,
        m, n, rows_per_program,
        IS_RMS=is_rms, HAS_DRESIDUAL=dres is not None, HAS_WEIGHT=weight is not None,
        HAS_BIAS=has_bias, CHUNK_N=chunk, NUM_CHUNKS=triton.cdiv(n, chunk), num_warps=num_warps,
    )
