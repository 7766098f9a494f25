r"""RMSNorm (and the fused residual add + RMSNorm) as Triton kernels.

The same layout as :mod:`normcourse.kernels.triton_layer_norm`, without the mean.
Forward, one program per row of ``N`` features (float32 registers)::

    s     = x + residual            # only for the fused op; stored as residual_out
    rstd  = 1 / sqrt(sum(s^2) / N + eps)
    x_hat = s * rstd
    y     = x_hat * weight

``rstd`` (one float32 per row) is saved for the backward.

Backward.  With ``g = dy * weight`` and ``<.>`` the mean over the row::

    dx      = rstd * (g - x_hat * <g * x_hat>)     (+ d residual_out, fused op)
    dweight = sum over rows of dy * x_hat

``dweight`` is reduced in two deterministic stages: per-program float32
partials in a ``(programs, N)`` buffer, then a sum over programs.  Rows
beyond 16384 (forward) or 8192 (backward) features use the chunked kernels of
:mod:`normcourse.kernels.triton_norm_forward_looped` and
:mod:`normcourse.kernels.triton_norm_backward_looped`.
"""

from __future__ import annotations

import normcourse  # noqa: F401  isort: skip  (sets TRITON_INTERPRET before triton is imported)
import torch
import triton
import triton.language as tl

from normcourse.kernels.launch import (as_rows, as_vector, backward_is_looped, backward_programs,
                                       forward_is_looped, row_settings, rows_to_save)
from normcourse.kernels.triton_norm_forward_looped import launch_looped_forward
from normcourse.kernels.triton_norm_backward_looped import launch_looped_backward
from normcourse.kernels.validation import refuse_double_backward

__all__ = ["rms_norm_forward", "rms_norm_backward", "RMSNormFunction"]


@triton.jit
def _rms_norm_fwd_kernel(
    X,  # pointer to the input rows, (M, N) with row stride stride_x
    R,  # pointer to the residual rows, read only when HAS_RESIDUAL
    RES_OUT,  # pointer to residual_out = x + residual, contiguous (M, N), written when HAS_RESIDUAL
    Y,  # pointer to the output, contiguous (M, N), in the input dtype
    W,  # pointer to the weight (N,), read only when HAS_WEIGHT
    RSTD,  # pointer to the per-row 1/rms (M,), float32
    stride_x,  # elements between consecutive rows of X
    stride_r,  # elements between consecutive rows of R
    N,  # features per row
    eps,  # added to the mean square before the square root
    HAS_RESIDUAL: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    BLOCK_N: tl.constexpr,  # power of two >= N: the whole row in one block
):
    row = tl.program_id(0).to(tl.int64)  # int64: row * stride may pass 2**31
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N  # padding lanes load 0 and so add nothing to the sum of squares
    x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        r = tl.load(R + row * stride_r + cols, mask=mask, other=0.0).to(tl.float32)
        s = (x + r).to(RES_OUT.dtype.element_ty)
        tl.store(RES_OUT + row * N + cols, s, mask=mask)
        x = s.to(tl.float32)  # normalize exactly what was stored
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    y = x * rstd
    if HAS_WEIGHT:
        y = y * tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * N + cols, y.to(Y.dtype.element_ty), mask=mask)
    tl.store(RSTD + row, rstd)


@triton.jit
def _rms_norm_bwd_kernel(
    X,  # pointer to the forward's normalized input (residual_out for the fused op), row stride stride_x
    DY,  # pointer to the gradient of y, row stride stride_dy
    DRES,  # pointer to the gradient of residual_out, row stride stride_dres (HAS_DRESIDUAL)
    DX,  # pointer to the output gradient of x, contiguous (M, N)
    W,  # pointer to the weight (N,), read only when HAS_WEIGHT
    RSTD,  # pointer to the per-row 1/rms saved by the forward (M,), float32
    DW_PARTIAL,  # pointer to the partial dweight rows, (programs, N) float32
    stride_x,  # elements between consecutive rows of X
    stride_dy,  # elements between consecutive rows of DY
    stride_dres,  # elements between consecutive rows of DRES
    M,  # number of rows
    N,  # features per row
    rows_per_program,  # each program owns rows [pid * rows_per_program, ... + rows_per_program)
    HAS_DRESIDUAL: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    if HAS_WEIGHT:
        w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    dw = tl.zeros((BLOCK_N,), dtype=tl.float32)  # this program's float32 partial sum
    row_start = pid * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, M)
    for row in range(row_start, row_end):
        row64 = tl.cast(row, tl.int64)  # int64 offsets: row * stride may pass 2**31
        x = tl.load(X + row64 * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + row64 * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + row64)
        x_hat = x * rstd
        if HAS_WEIGHT:
            g = dy * w
        else:
            g = dy
        mean_gx = tl.sum(g * x_hat, axis=0) / N
        dx = rstd * (g - x_hat * mean_gx)
        if HAS_DRESIDUAL:
            dx += tl.load(DRES + row64 * stride_dres + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(DX + row64 * N + cols, dx.to(DX.dtype.element_ty), mask=mask)
        dw += dy * x_hat
    if HAS_WEIGHT:
        tl.store(DW_PARTIAL + pid * N + cols, dw, mask=mask)


def rms_norm_forward(x, residual, weight, eps):
    """Launch the forward on 2-D rows; return ``(y, residual_out, rstd)``.

    ``x`` and ``residual`` (or None) are ``(M, N)`` with unit stride along N.
    ``residual_out`` is None without a residual.  ``weight`` may have any
    stride (see :func:`~normcourse.kernels.launch.as_vector`).
    """
    weight = as_vector(weight)
    m, n = x.shape
    block_n, num_warps = row_settings(n)
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    res_out = torch.empty_like(y) if residual is not None else None
    rstd = torch.empty(m, dtype=torch.float32, device=x.device)
    if m == 0:
        return y, res_out, rstd
    if forward_is_looped(n):
        launch_looped_forward(x, residual, res_out, y, weight, None, None, rstd, eps, is_rms=True)
        return y, res_out, rstd
    # Absent tensors are replaced by x: the constexpr flags keep them unread.
    _rms_norm_fwd_kernel[(m,)](
        x, residual if residual is not None else x, res_out if res_out is not None else y,
        y, weight if weight is not None else x, rstd,
        x.stride(0), residual.stride(0) if residual is not None else 0,
        n, eps,
        HAS_RESIDUAL=residual is not None, HAS_WEIGHT=weight is not None,
        BLOCK_N=block_n, num_warps=num_warps,
    )
    return y, res_out, rstd


def rms_norm_backward(dy, dres, x, weight, rstd):
    """Launch the backward on 2-D rows; return ``(dx, dweight)`` (dweight None without weight)."""
    weight = as_vector(weight)
    m, n = x.shape
    block_n, num_warps = row_settings(n)
    dx = torch.empty((m, n), dtype=x.dtype, device=x.device)
    programs = backward_programs(m, x.device)
    rows_per_program = triton.cdiv(max(m, 1), programs)
    programs = triton.cdiv(max(m, 1), rows_per_program)
    dw_partial = torch.zeros((programs, n), dtype=torch.float32, device=x.device)
    if m > 0 and backward_is_looped(n):
        launch_looped_backward(x, dy, dres, dx, weight, None, rstd, dw_partial, dw_partial,
                               rows_per_program, programs, is_rms=True, has_bias=False)
    elif m > 0:
        _rms_norm_bwd_kernel[(programs,)](
            x, dy, dres if dres is not None else dy, dx,
            weight if weight is not None else x, rstd, dw_partial,
            x.stride(0), dy.stride(0), dres.stride(0) if dres is not None else 0,
            m, n, rows_per_program,
            HAS_DRESIDUAL=dres is not None, HAS_WEIGHT=weight is not None,
            BLOCK_N=block_n, num_warps=num_warps,
        )
    # Second stage: a fixed-order sum over the programs' partials.
    dw = dw_partial.sum(dim=0).to(weight.dtype) if weight is not None else None
    return dx, dw


class RMSNormFunction(torch.autograd.Function):
    """Autograd glue: ``apply(x, residual, weight, eps)``.

    Returns ``y`` when ``residual`` is None, else ``(y, residual_out)``.
    First derivatives only: the backward refuses ``create_graph=True``.
    """

    @staticmethod
    def forward(ctx, x, residual, weight, eps):
        shape = x.shape
        x2 = as_rows(x)
        r2 = as_rows(residual) if residual is not None else None
        y, res_out, rstd = rms_norm_forward(x2, r2, weight, eps)
        ctx.fused = residual is not None
        ctx.shape = shape
        ctx.set_materialize_grads(False)
        if residual is None:
            # Saved so that an in-place change before the backward is caught:
            # see rows_to_save, and LayerNormFunction for the fused case.
            ctx.save_for_backward(rows_to_save(x, x2), weight, rstd)
            return y.view(shape)
        res_out = res_out.view(shape)
        ctx.save_for_backward(res_out, weight, rstd)
        return y.view(shape), res_out

    @staticmethod
    def backward(ctx, dy, dres=None):
        refuse_double_backward("add_rms_norm" if ctx.fused else "rms_norm")
        s, weight, rstd = ctx.saved_tensors
        s = as_rows(s)
        dy2 = as_rows(dy) if dy is not None else torch.zeros_like(s)
        dres2 = as_rows(dres) if dres is not None else None
        dx, dw = rms_norm_backward(dy2, dres2, s, weight, rstd)
        dx = dx.view(ctx.shape)
        if not ctx.fused:
            return dx, None, dw, None
        return dx, dx, dw, None
