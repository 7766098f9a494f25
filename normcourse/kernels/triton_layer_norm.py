r"""LayerNorm (and the fused residual add + LayerNorm) as Triton kernels.

Forward, one program per row of ``N`` features (all in float32 registers)::

    s     = x + residual            # only for the fused op; stored as residual_out
    mu    = sum(s) / N
    var   = sum((s - mu)^2) / N     # two passes over registers, never E[s^2] - E[s]^2
    rstd  = 1 / sqrt(var + eps)
    x_hat = (s - mu) * rstd
    y     = x_hat * weight + bias

``mean`` and ``rstd`` (one float32 each per row) are saved for the backward.

Backward.  With ``g = dy * weight`` and ``<.>`` the mean over the row::

    dx      = rstd * (g - <g> - x_hat * <g * x_hat>)   (+ d residual_out, fused op)
    dweight = sum over rows of dy * x_hat
    dbias   = sum over rows of dy

``dx`` is a per-row computation.  ``dweight`` and ``dbias`` are sums over all
rows: each backward program walks a contiguous slice of rows, accumulates its
own float32 partial sums in registers and writes them to one row of a
``(programs, N)`` buffer; a second reduction sums that buffer.  No atomics,
so the result is bit-identical on every run.

Long rows do not fit in one program's registers: beyond 16384 features the
forward runs the chunked kernel of :mod:`normcourse.kernels.triton_norm_forward_looped`,
and beyond 8192 (the backward holds four row-sized vectors: x, dy, dW and dB
partials) the backward runs :mod:`normcourse.kernels.triton_norm_backward_looped`.

For the fused op ``residual_out = x + residual`` feeds both the next residual
branch and the norm, so its gradient is ``d residual_out + d(norm)/d s``, and
that single tensor is the gradient of both ``x`` and ``residual``.
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

__all__ = ["layer_norm_forward", "layer_norm_backward", "LayerNormFunction"]


@triton.jit
def _layer_norm_fwd_kernel(
    X,  # pointer to the input rows, (M, N) with row stride stride_x
    R,  # pointer to the residual rows, read only when HAS_RESIDUAL
    RES_OUT,  # pointer to residual_out = x + residual, contiguous (M, N), written when HAS_RESIDUAL
    Y,  # pointer to the output, contiguous (M, N), in the input dtype
    W,  # pointer to the weight (N,), read only when HAS_WEIGHT
    B,  # pointer to the bias (N,), read only when HAS_BIAS
    MEAN,  # pointer to the per-row mean (M,), float32
    RSTD,  # pointer to the per-row 1/std (M,), float32
    stride_x,  # elements between consecutive rows of X
    stride_r,  # elements between consecutive rows of R
    N,  # features per row
    eps,  # added to the variance before the square root
    HAS_RESIDUAL: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BLOCK_N: tl.constexpr,  # power of two >= N: the whole row in one block
):
    # int64 row index: row * stride overflows int32 beyond 2**31 elements.
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N  # the block is padded up to a power of two
    x = tl.load(X + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        r = tl.load(R + row * stride_r + cols, mask=mask, other=0.0).to(tl.float32)
        s = (x + r).to(RES_OUT.dtype.element_ty)
        tl.store(RES_OUT + row * N + cols, s, mask=mask)
        # Normalize the stored (rounded) sum, so y == layer_norm(residual_out) exactly.
        x = s.to(tl.float32)
    mean = tl.sum(x, axis=0) / N
    # Padding lanes hold 0, and 0 - mean would pollute the variance: zero them.
    xc = tl.where(mask, x - mean, 0.0)
    var = tl.sum(xc * xc, axis=0) / N
    rstd = 1.0 / tl.sqrt(var + eps)
    y = xc * rstd
    if HAS_WEIGHT:
        y = y * tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        y = y + tl.load(B + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * N + cols, y.to(Y.dtype.element_ty), mask=mask)
    tl.store(MEAN + row, mean)
    tl.store(RSTD + row, rstd)


@triton.jit
def _layer_norm_bwd_kernel(
    X,  # pointer to the forward's normalized input (residual_out for the fused op), row stride stride_x
    DY,  # pointer to the gradient of y, row stride stride_dy
    DRES,  # pointer to the gradient of residual_out, row stride stride_dres (HAS_DRESIDUAL)
    DX,  # pointer to the output gradient of x, contiguous (M, N)
    W,  # pointer to the weight (N,), read only when HAS_WEIGHT
    MEAN,  # pointer to the per-row mean saved by the forward (M,), float32
    RSTD,  # pointer to the per-row 1/std saved by the forward (M,), float32
    DW_PARTIAL,  # pointer to this program's partial dweight row, (programs, N) float32
    DB_PARTIAL,  # pointer to this program's partial dbias row, (programs, N) float32
    stride_x,  # elements between consecutive rows of X
    stride_dy,  # elements between consecutive rows of DY
    stride_dres,  # elements between consecutive rows of DRES
    M,  # number of rows
    N,  # features per row
    rows_per_program,  # each program owns rows [pid * rows_per_program, ... + rows_per_program)
    HAS_DRESIDUAL: tl.constexpr,
    HAS_WEIGHT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    if HAS_WEIGHT:
        w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    # float32 partial sums live in registers for the whole slice of rows.
    dw = tl.zeros((BLOCK_N,), dtype=tl.float32)
    db = tl.zeros((BLOCK_N,), dtype=tl.float32)
    row_start = pid * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, M)
    for row in range(row_start, row_end):
        row64 = tl.cast(row, tl.int64)  # int64 offsets: row * stride may pass 2**31
        x = tl.load(X + row64 * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + row64 * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
        mean = tl.load(MEAN + row64)
        rstd = tl.load(RSTD + row64)
        x_hat = tl.where(mask, (x - mean) * rstd, 0.0)
        if HAS_WEIGHT:
            g = dy * w
        else:
            g = dy
        mean_g = tl.sum(g, axis=0) / N
        mean_gx = tl.sum(g * x_hat, axis=0) / N
        dx = rstd * (g - mean_g - x_hat * mean_gx)
        if HAS_DRESIDUAL:
            dx += tl.load(DRES + row64 * stride_dres + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(DX + row64 * N + cols, dx.to(DX.dtype.element_ty), mask=mask)
        dw += dy * x_hat
        db += dy
    if HAS_WEIGHT:
        tl.store(DW_PARTIAL + pid * N + cols, dw, mask=mask)
    if HAS_BIAS:
        tl.store(DB_PARTIAL + pid * N + cols, db, mask=mask)


def layer_norm_forward(x, residual, weight, bias, eps):
    """Launch the forward on 2-D rows; return ``(y, residual_out, mean, rstd)``.

    ``x`` and ``residual`` (or None) are ``(M, N)`` with unit stride along N
    (see :func:`normcourse.kernels.launch.as_rows`).  ``residual_out`` is None
    without a residual.  ``y`` and ``residual_out`` are contiguous, in x's dtype.
    ``weight`` and ``bias`` may have any stride (see :func:`~normcourse.kernels.launch.as_vector`).
    """
    weight, bias = as_vector(weight), as_vector(bias)
    m, n = x.shape
    block_n, num_warps = row_settings(n)
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    res_out = torch.empty_like(y) if residual is not None else None
    mean = torch.empty(m, dtype=torch.float32, device=x.device)
    rstd = torch.empty(m, dtype=torch.float32, device=x.device)
    if m == 0:
        return y, res_out, mean, rstd
    if forward_is_looped(n):
        launch_looped_forward(x, residual, res_out, y, weight, bias, mean, rstd, eps, is_rms=False)
        return y, res_out, mean, rstd
    # Absent tensors are replaced by x: the constexpr flags keep them unread.
    _layer_norm_fwd_kernel[(m,)](
        x, residual if residual is not None else x, res_out if res_out is not None else y,
        y, weight if weight is not None else x, bias if bias is not None else x,
        mean, rstd,
        x.stride(0), residual.stride(0) if residual is not None else 0,
        n, eps,
        HAS_RESIDUAL=residual is not None, HAS_WEIGHT=weight is not None,
        HAS_BIAS=bias is not None, BLOCK_N=block_n, num_warps=num_warps,
    )
    return y, res_out, mean, rstd


def layer_norm_backward(dy, dres, x, weight, bias, mean, rstd):
    """Launch the backward on 2-D rows; return ``(dx, dweight, dbias)``.

    ``x`` is what the forward normalized (residual_out for the fused op),
    ``dres`` the gradient of residual_out or None.  ``dweight`` / ``dbias``
    are None when ``weight`` / ``bias`` is, else in the parameter's dtype.
    """
    weight = as_vector(weight)
    m, n = x.shape
    block_n, num_warps = row_settings(n)
    dx = torch.empty((m, n), dtype=x.dtype, device=x.device)
    programs = backward_programs(m, x.device)
    rows_per_program = triton.cdiv(max(m, 1), programs)
    programs = triton.cdiv(max(m, 1), rows_per_program)
    # Zero-filled, so an empty input (no program writes) still sums to 0.
    dw_partial = torch.zeros((programs, n), dtype=torch.float32, device=x.device)
    db_partial = torch.zeros((programs, n), dtype=torch.float32, device=x.device) \
        if bias is not None else dw_partial
    if m > 0 and backward_is_looped(n):
        launch_looped_backward(x, dy, dres, dx, weight, mean, rstd, dw_partial, db_partial,
                               rows_per_program, programs, is_rms=False,
                               has_bias=bias is not None)
    elif m > 0:
        _layer_norm_bwd_kernel[(programs,)](
            x, dy, dres if dres is not None else dy, dx,
            weight if weight is not None else x, mean, rstd, dw_partial, db_partial,
            x.stride(0), dy.stride(0), dres.stride(0) if dres is not None else 0,
            m, n, rows_per_program,
            HAS_DRESIDUAL=dres is not None, HAS_WEIGHT=weight is not None,
            HAS_BIAS=bias is not None, BLOCK_N=block_n, num_warps=num_warps,
        )
    # Second stage: a fixed-order sum over the programs' partials.
    dw = dw_partial.sum(dim=0).to(weight.dtype) if weight is not None else None
    db = db_partial.sum(dim=0).to(bias.dtype) if bias is not None else None
    return dx, dw, db


class LayerNormFunction(torch.autograd.Function):
    """Autograd glue: ``apply(x, residual, weight, bias, eps)``.

    Returns ``y`` when ``residual`` is None, else ``(y, residual_out)``.
    ``x`` and ``residual`` may have any leading shape and any strides;
    arguments are assumed validated (see :mod:`normcourse.kernels.validation`).
    First derivatives only: the backward refuses ``create_graph=True``.
    """

    @staticmethod
    def forward(ctx, x, residual, weight, bias, eps):
        shape = x.shape
        x2 = as_rows(x)
        r2 = as_rows(residual) if residual is not None else None
        y, res_out, mean, rstd = layer_norm_forward(x2, r2, weight, bias, eps)
        ctx.fused = residual is not None
        ctx.shape = shape
        # Unused outputs get None gradients instead of zero tensors we would read.
        ctx.set_materialize_grads(False)
        if residual is None:
            # The backward re-reads what was normalized: x (see rows_to_save).
            ctx.save_for_backward(rows_to_save(x, x2), weight, bias, mean, rstd)
            return y.view(shape)
        # Fused: residual_out, saved as the very tensor returned, so autograd
        # notices if the caller changes it in place before the backward.
        res_out = res_out.view(shape)
        ctx.save_for_backward(res_out, weight, bias, mean, rstd)
        return y.view(shape), res_out

    @staticmethod
    def backward(ctx, dy, dres=None):
        refuse_double_backward("add_layer_norm" if ctx.fused else "layer_norm")
        s, weight, bias, mean, rstd = ctx.saved_tensors
        s = as_rows(s)
        dy2 = as_rows(dy) if dy is not None else torch.zeros_like(s)
        dres2 = as_rows(dres) if dres is not None else None
        dx, dw, db = layer_norm_backward(dy2, dres2, s, weight, bias, mean, rstd)
        dx = dx.view(ctx.shape)
        if not ctx.fused:
            return dx, None, dw, db, None
        return dx, dx, dw, db, None
