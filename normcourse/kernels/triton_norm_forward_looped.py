r"""The forward for long rows: the row is walked in chunks, not held in registers.

Up to ``MAX_REGISTER_ROW_FORWARD`` (16384) features, one program holds its
whole row in registers (:mod:`~normcourse.kernels.triton_layer_norm`).  Longer
rows would spill, so this kernel walks the row in ``CHUNK_N``-wide steps, for
LayerNorm and RMSNorm alike (``IS_RMS`` picks), with no limit on N::

    pass 1:  s = x + residual (stored as residual_out, fused op);  sum(s)  -> mean
    pass 2:  sum((s - mean)^2) -> var     (LayerNorm only: two passes, never E[s^2] - E[s]^2)
             (RMSNorm: sum(s^2) in pass 1 instead)
    pass 3:  y = (s - mean) * rstd * weight + bias

Passes 2 and 3 re-read the row just read (or, for the fused op, just written
as residual_out), mostly from cache.
"""

from __future__ import annotations

import normcourse  # noqa: F401  isort: skip  (sets TRITON_INTERPRET before triton is imported)
import triton
import triton.language as tl

from normcourse.kernels.launch import looped_settings

__all__ = ["norm_fwd_looped_kernel", "launch_looped_forward"]


@triton.jit
def norm_fwd_looped_kernel(
    X,  # pointer to the input rows, (M, N) with row stride stride_x
    R,  # pointer to the residual rows, read only when HAS_RESIDUAL
    RES_OUT,  # pointer to residual_out = x + residual, contiguous (M, N), written when HAS_RESIDUAL
    Y,  # pointer to the output, contiguous (M, N), in the input dtype
    W,  # pointer to the weight (N,), read only when HAS_WEIGHT
    B,  # pointer to the bias (N,), read only when HAS_BIAS
    MEAN,  # pointer to the per-row mean (M,) float32, written for LayerNorm only
    RSTD,  # pointer to the per-row 1/std (or 1/rms) (M,), float32
    stride_x,  # elements between consecutive rows of X
    stride_r,  # elements between consecutive rows of R
    N,  # features per row
    eps,  # added to the variance (mean square) before the square root
    IS_RMS: tl.constexpr,  # RMSNorm (no mean) instead of LayerNorm
    HAS_RESIDUAL: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    CHUNK_N: tl.constexpr,  # columns handled per step
    NUM_CHUNKS: tl.constexpr,  # CHUNK_N * NUM_CHUNKS >= N
):
    row = tl.program_id(0).to(tl.int64)  # int64: row * stride may pass 2**31
    # The source of the statistics: x, or residual_out once pass 1 has written it.
    if HAS_RESIDUAL:
        S = RES_OUT + row * N
    else:
        S = X + row * stride_x
    # Pass 1: the sum (LayerNorm) or the sum of squares (RMSNorm), chunk-wide partials.
    acc = tl.zeros((CHUNK_N,), dtype=tl.float32)
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
            acc += s * s
        else:
            acc += s
    if HAS_RESIDUAL:
        # Later passes read residual_out back: make every thread's stores visible
        # to the whole program first.
        tl.debug_barrier()
    if IS_RMS:
        mean = 0.0
        rstd = 1.0 / tl.sqrt(tl.sum(acc, axis=0) / N + eps)
    else:
        mean = tl.sum(acc, axis=0) / N
        # Pass 2: the variance as the mean squared deviation (numerically safe).
        acc = tl.zeros((CHUNK_N,), dtype=tl.float32)
        for c in range(NUM_CHUNKS):
            cols = c * CHUNK_N + tl.arange(0, CHUNK_N)
            mask = cols < N
            s = tl.load(S + cols, mask=mask, other=0.0).to(tl.float32)
            d = tl.where(mask, s - mean, 0.0)
            acc += d * d
        rstd = 1.0 / tl.sqrt(tl.sum(acc, axis=0) / N + eps)
        tl.store(MEAN + row, mean)
    tl.store(RSTD + row, rstd)
    # Pass 3: normalize and apply the affine map.
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


def launch_looped_forward(x, residual, res_out, y, weight, bias, mean, rstd, eps, is_rms):
    """Launch :func:`norm_fwd_looped_kernel`, one program per row of 2-D ``x``."""
    m, n = x.shape
    chunk, num_warps = looped_settings()
    norm_fwd_looped_kernel[(m,)](
        x, residual if residual is not None else x, res_out if res_out is not None else y, y,
        weight if weight is not None else x, bias if bias is not None else x,
        mean if mean is not None else rstd, rstd,
        x.stride(0), residual.stride(0) if residual is not None else 0,
        n, eps,
        IS_RMS=is_rms, HAS_RESIDUAL=residual is not None, HAS_WEIGHT=weight is not None,
        HAS_BIAS=bias is not None, CHUNK_N=chunk, NUM_CHUNKS=triton.cdiv(n, chunk),
        num_warps=num_warps,
    )
