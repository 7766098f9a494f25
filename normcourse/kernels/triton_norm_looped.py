r"""Long rows: forward and backward walk the row in chunks instead of holding it in registers.

The row kernels of :mod:`~normcourse.kernels.triton_norm` keep a whole row in
registers: up to :data:`~normcourse.kernels.launch.MAX_REGISTER_ROW_FORWARD`
(32768, or 16384 for rows not 16-byte aligned) features in the forward, and
:data:`~normcourse.kernels.launch.MAX_REGISTER_ROW` (8192) in the backward,
which holds four row-sized float32 vectors (x, dy and the dW and dB partial
sums): at N = 16384 that is 64K values, the whole register file of an SM.
Longer rows would spill, so these kernels walk the row in ``CHUNK_N``-wide
steps, for LayerNorm and RMSNorm alike (``IS_RMS`` picks), with no limit on N.

Forward: two reads of x, not three.  The statistics come from one pass, by
merging each chunk's count, mean and sum of squared deviations into the
running ones (Chan, Golub and LeVeque's pairwise update, the parallel form
of Welford's algorithm)::

    pass 1, chunk by chunk:  s = x + residual (stored as residual_out, fused op)
                             n_c = valid lanes, mu_c = sum(s) / n_c,
                             m2_c = sum((s - mu_c)^2)            # in registers, two-pass
                             delta = mu_c - mu
                             mu   += delta * n_c / (n + n_c)
                             m2   += m2_c + delta^2 * n * n_c / (n + n_c)
                             n    += n_c
             var = m2 / N              (RMSNorm: sum(s^2) / N, no mean)
    pass 2, chunk by chunk:  y = (s - mu) * rstd * weight + bias

Every chunk's deviations are taken from its own mean, so a row with a large
mean and a small spread keeps its precision (E[s^2] - E[s]^2 would lose it).

Backward: the dW/dB partials are written once per program, not read and
rewritten for every row.  A program owns a slice of rows::

    pass 1, row by row, chunk by chunk:  <g>, <g * x_hat> of each row -> ROW_TERMS
    pass 2, chunk by chunk:              dw_c = db_c = 0 (registers)
             row by row:                 dx = rstd * (g - <g> - x_hat * <g * x_hat>)
                                         dw_c += dy * x_hat,  db_c += dy
                                         partial_dw[chunk] = dw_c (one store)

Each row is read twice (once per pass).  ``ROW_TERMS`` is a ``(2, M)``
float32 scratch buffer that only the program owning a row writes and reads
(after a barrier), so there are no atomics and the second-stage sum stays
deterministic.
"""

from __future__ import annotations

import normcourse  # noqa: F401  isort: skip  (sets TRITON_INTERPRET before triton is imported)
import torch
import triton
import triton.language as tl

from normcourse.kernels.launch import (backward_ctas_per_sm, forward_ctas_per_sm, launch_options,
                                       looped_settings, rows_aligned)

__all__ = ["norm_fwd_looped_kernel", "norm_bwd_looped_kernel", "launch_looped_forward",
           "launch_looped_backward"]


@triton.jit
def norm_fwd_looped_kernel(
    # the arguments of triton_norm._norm_fwd_kernel (documented there), in its order
    X, R, RES_OUT, Y, W, B, MEAN, RSTD, stride_x, stride_r, N, eps,
    IS_RMS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, HAS_WEIGHT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    CHUNK_N: tl.constexpr,  # columns handled per step (instead of BLOCK_N: the whole row)
    NUM_CHUNKS: tl.constexpr,  # CHUNK_N * NUM_CHUNKS >= N
):
    row = tl.program_id(0).to(tl.int64)  # int64: row * stride may pass 2**31
    # The source of pass 2: x, or residual_out once pass 1 has written it.
    if HAS_RESIDUAL:
        S = RES_OUT + row * N
    else:
        S = X + row * stride_x
    # Pass 1: the statistics, in one read of the row.
    count = 0.0  # features merged so far
    mean = 0.0  # their mean (LayerNorm)
    m2 = 0.0  # their sum of squared deviations from it (RMSNorm: sum of squares)
    for c in range(NUM_CHUNKS):
        cols = c * CHUNK_N + tl.arange(0, CHUNK_N)
        mask = cols < N
        s = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:
            r = tl.load(R + row * stride_r + cols, mask=mask, other=0.0).to(tl.float32)
            rounded = (s + r).to(RES_OUT.dtype.element_ty)
            tl.store(RES_OUT + row * N + cols, rounded, mask=mask)
            s = rounded.to(tl.float32)  # statistics of exactly what was stored
        if IS_RMS:
            m2 += tl.sum(s * s, axis=0)
        else:
            n_c = tl.minimum(N - c * CHUNK_N, CHUNK_N).to(tl.float32)
            mean_c = tl.sum(s, axis=0) / n_c
            d = tl.where(mask, s - mean_c, 0.0)
            # Chan et al.'s merge of (count, mean, m2) with the chunk's (n_c, mean_c, m2_c).
            total = count + n_c
            delta = mean_c - mean
            mean += delta * (n_c / total)
            m2 += tl.sum(d * d, axis=0) + delta * delta * (count * n_c / total)
            count = total
    if HAS_RESIDUAL:
        # Pass 2 reads residual_out back: make every thread's stores visible
        # to the whole program first.
        tl.debug_barrier()
    rstd = 1.0 / tl.sqrt(m2 / N + eps)
    if not IS_RMS:
        tl.store(MEAN + row, mean)
    tl.store(RSTD + row, rstd)
    # Pass 2: normalize and apply the affine map.
    for c in range(NUM_CHUNKS):
        cols = c * CHUNK_N + tl.arange(0, CHUNK_N)
        mask = cols < N
        s = tl.load(S + cols, mask=mask, other=0.0).to(tl.float32)
        y = (s - mean) * rstd
        if HAS_WEIGHT:
            y = y * tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_BIAS:
            y = y + tl.load(B + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(Y + row * N + cols, y.to(Y.dtype.element_ty), mask=mask)


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
    # the arguments of triton_norm._norm_bwd_kernel (documented there), in its order, plus
    # ROW_TERMS after RSTD: a (2, M) float32 scratch, each row's <g> and <g * x_hat>
    X, DY, DRES, DX, W, MEAN, RSTD, ROW_TERMS, DW_PARTIAL, DB_PARTIAL,
    stride_x, stride_dy, stride_dres, M, N, rows_per_program,
    IS_RMS: tl.constexpr, HAS_DRESIDUAL: tl.constexpr, HAS_WEIGHT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    CHUNK_N: tl.constexpr,  # columns handled per step (instead of BLOCK_N: the whole row)
    NUM_CHUNKS: tl.constexpr,  # CHUNK_N * NUM_CHUNKS >= N
):
    pid = tl.program_id(0)
    row_start = pid * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, M)
    partial = pid.to(tl.int64) * N  # this program's row in the partial buffers
    # Pass 1: the two row means that couple all columns of dx, for each row.
    for row in tl.range(row_start, row_end):
        row64 = tl.cast(row, tl.int64)  # int64 offsets: row * stride may pass 2**31
        rstd = tl.load(RSTD + row64)
        if IS_RMS:
            mean = 0.0
        else:
            mean = tl.load(MEAN + row64)
        sum_g = tl.zeros((CHUNK_N,), dtype=tl.float32)
        sum_gx = tl.zeros((CHUNK_N,), dtype=tl.float32)
        for c in range(NUM_CHUNKS):
            cols = c * CHUNK_N + tl.arange(0, CHUNK_N)
            mask = cols < N
            x_hat, dy, g = _chunk_terms(X, DY, W, row64, stride_x, stride_dy, cols, mask, mean,
                                        rstd, HAS_WEIGHT)
            sum_g += g
            sum_gx += g * x_hat
        tl.store(ROW_TERMS + row64, tl.sum(sum_g, axis=0) / N)
        tl.store(ROW_TERMS + M + row64, tl.sum(sum_gx, axis=0) / N)
    # Pass 2 reads ROW_TERMS back: make the stores visible to the whole program.
    tl.debug_barrier()
    # Pass 2: dx, and the dW/dB partials of one chunk over all this program's rows.
    for c in range(NUM_CHUNKS):
        cols = c * CHUNK_N + tl.arange(0, CHUNK_N)
        mask = cols < N
        dw = tl.zeros((CHUNK_N,), dtype=tl.float32)
        db = tl.zeros((CHUNK_N,), dtype=tl.float32)
        for row in tl.range(row_start, row_end):
            row64 = tl.cast(row, tl.int64)
            rstd = tl.load(RSTD + row64)
            if IS_RMS:
                mean = 0.0
            else:
                mean = tl.load(MEAN + row64)
            x_hat, dy, g = _chunk_terms(X, DY, W, row64, stride_x, stride_dy, cols, mask, mean,
                                        rstd, HAS_WEIGHT)
            mean_gx = tl.load(ROW_TERMS + M + row64)
            if IS_RMS:
                dx = rstd * (g - x_hat * mean_gx)
            else:
                dx = rstd * (g - tl.load(ROW_TERMS + row64) - x_hat * mean_gx)
            if HAS_DRESIDUAL:
                dx += tl.load(DRES + row64 * stride_dres + cols, mask=mask,
                              other=0.0).to(tl.float32)
            tl.store(DX + row64 * N + cols, dx.to(DX.dtype.element_ty), mask=mask)
            dw += dy * x_hat
            db += dy
        if HAS_WEIGHT:
            tl.store(DW_PARTIAL + partial + cols, dw, mask=mask)
        if HAS_BIAS:
            tl.store(DB_PARTIAL + partial + cols, db, mask=mask)


def launch_looped_forward(x, residual, res_out, y, weight, bias, mean, rstd, eps, is_rms):
    """Launch :func:`norm_fwd_looped_kernel`, one program per row of 2-D ``x``."""
    m, n = x.shape
    settings = looped_settings()
    norm_fwd_looped_kernel[(m,)](
        x, residual if residual is not None else x, res_out if res_out is not None else y, y,
        weight if weight is not None else x, bias if bias is not None else x,
        mean if mean is not None else rstd, rstd,
        x.stride(0), residual.stride(0) if residual is not None else 0,
        n, eps,
        IS_RMS=is_rms, HAS_RESIDUAL=residual is not None, HAS_WEIGHT=weight is not None,
        HAS_BIAS=bias is not None, CHUNK_N=settings.block_n,
        NUM_CHUNKS=triton.cdiv(n, settings.block_n),
        **launch_options(x.device, settings, forward_ctas_per_sm(settings)),
    )


def launch_looped_backward(x, dy, dres, dx, weight, mean, rstd, dw_partial, db_partial,
                           rows_per_program, programs, is_rms, has_bias):
    """Launch :func:`norm_bwd_looped_kernel` (arguments as in the row-per-program launcher)."""
    m, n = x.shape
    settings = looped_settings()
    row_terms = torch.empty((2, m), dtype=torch.float32, device=x.device)
    norm_bwd_looped_kernel[(programs,)](
        x, dy, dres if dres is not None else dy, dx,
        weight if weight is not None else x, mean if mean is not None else rstd, rstd,
        row_terms, dw_partial, db_partial,
        x.stride(0), dy.stride(0), dres.stride(0) if dres is not None else 0,
        m, n, rows_per_program,
        IS_RMS=is_rms, HAS_DRESIDUAL=dres is not None, HAS_WEIGHT=weight is not None,
        HAS_BIAS=has_bias, CHUNK_N=settings.block_n, NUM_CHUNKS=triton.cdiv(n, settings.block_n),
        **launch_options(x.device, settings,
                         backward_ctas_per_sm(settings, aligned=rows_aligned(n, x, dy, dres))),
    )
