r"""LayerNorm and RMSNorm (and the fused residual add + norm) as Triton kernels.

One kernel serves both norms; the ``IS_RMS`` flag drops the mean (as in
flash-attention's Triton layer norm).  Forward, one program per row of ``N``
features, all in float32 registers::

    s     = x + residual            # only for the fused op; stored as residual_out
    mu    = sum(s) / N              # LayerNorm; RMSNorm: mu = 0
    var   = sum((s - mu)^2) / N     # two passes over registers, never E[s^2] - E[s]^2
    rstd  = 1 / sqrt(var + eps)
    x_hat = (s - mu) * rstd
    y     = x_hat * weight + bias   # RMSNorm has no bias

``mean`` (LayerNorm) and ``rstd`` (one float32 each per row) are saved for
the backward.

Backward.  With ``g = dy * weight`` and ``<.>`` the mean over the row::

    dx      = rstd * (g - <g> - x_hat * <g * x_hat>)   (RMSNorm: no <g> term)
              (+ d residual_out, fused op)
    dweight = sum over rows of dy * x_hat
    dbias   = sum over rows of dy

``dx`` is a per-row computation.  ``dweight`` and ``dbias`` are sums over all
rows: each backward program walks a contiguous slice of rows, accumulates its
own float32 partial sums in registers and writes them once to its row of a
``(programs, N)`` buffer; :func:`_sum_partials_kernel` then sums the buffer's
columns in a fixed order and casts to the parameters' dtype, dweight and dbias
in one launch.  No atomics, so the result is bit-identical on every run.
The row loop is software-pipelined (``tl.range(..., num_stages=2)``): the
next row's loads are issued while this row is reduced.

Long rows do not fit in one program's registers: beyond 32768 features the
forward (16384 when rows are not 16-byte aligned, see
:func:`~normcourse.kernels.launch.forward_is_looped`), and beyond 8192 (the
backward holds four row-sized vectors: x, dy, dW and dB partials) the
backward, run the chunked kernels of :mod:`normcourse.kernels.triton_norm_looped`.

Occupancy: the launchers cap the registers per thread (``maxnreg``) where
that buys a second resident CTA without spilling, and the backward launches
as many programs as fit on the GPU at once (SMs times resident CTAs); see
:mod:`normcourse.kernels.launch`, and the compile report for the proof.

For the fused op ``residual_out = x + residual`` feeds both the next residual
branch and the norm, so its gradient is ``d residual_out + d(norm)/d s``, and
that single tensor is the gradient of both ``x`` and ``residual``.
"""

from __future__ import annotations

import normcourse  # noqa: F401  isort: skip  (sets TRITON_INTERPRET before triton is imported)
import torch
import triton
import triton.language as tl

from normcourse.checks import refuse_double_backward
from normcourse.kernels.launch import (LaunchSettings, as_rows, as_vector, backward_ctas_per_sm,
                                       backward_is_looped, backward_programs, forward_ctas_per_sm,
                                       forward_is_looped, launch_options, looped_settings,
                                       row_settings, rows_aligned, rows_to_save)
from normcourse.kernels.triton_norm_looped import launch_looped_backward, launch_looped_forward

__all__ = ["norm_forward", "norm_backward", "NormFunction", "SUM_PARTIALS_SETTINGS"]

# The partial-sum reduction: a (BLOCK_P, BLOCK_COLS) tile per step, 32 values per thread.
SUM_PARTIALS_SETTINGS = LaunchSettings(64, 4)  # (BLOCK_COLS, num_warps)
_SUM_PARTIALS_ROWS = 64  # BLOCK_P


@triton.jit
def _norm_fwd_kernel(
    X,  # pointer to the input rows, (M, N) with row stride stride_x
    R,  # pointer to the residual rows, read only when HAS_RESIDUAL
    RES_OUT,  # pointer to residual_out = x + residual, contiguous (M, N), written when HAS_RESIDUAL
    Y,  # pointer to the output, contiguous (M, N), in the input dtype
    W,  # pointer to the weight (N,), read only when HAS_WEIGHT
    B,  # pointer to the bias (N,), read only when HAS_BIAS
    MEAN,  # pointer to the per-row mean (M,), float32, written unless IS_RMS
    RSTD,  # pointer to the per-row 1/std (1/rms for RMSNorm) (M,), float32
    stride_x,  # elements between consecutive rows of X
    stride_r,  # elements between consecutive rows of R
    N,  # features per row
    eps,  # added to the variance (mean square) before the square root
    IS_RMS: tl.constexpr,  # RMSNorm (no mean, no bias) instead of LayerNorm
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
        # Normalize the stored (rounded) sum, so y == norm(residual_out) exactly.
        x = s.to(tl.float32)
    if IS_RMS:
        xc = tl.where(mask, x, 0.0)  # (padding lanes hold 0 already)
    else:
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
    if not IS_RMS:
        tl.store(MEAN + row, mean)
    tl.store(RSTD + row, rstd)


@triton.jit
def _norm_bwd_kernel(
    X,  # pointer to the forward's normalized input (residual_out for the fused op), row stride stride_x
    DY,  # pointer to the gradient of y, row stride stride_dy
    DRES,  # pointer to the gradient of residual_out, row stride stride_dres (HAS_DRESIDUAL)
    DX,  # pointer to the output gradient of x, contiguous (M, N)
    W,  # pointer to the weight (N,), read only when HAS_WEIGHT
    MEAN,  # pointer to the per-row mean saved by the forward (M,), float32, read unless IS_RMS
    RSTD,  # pointer to the per-row 1/std saved by the forward (M,), float32
    DW_PARTIAL,  # pointer to the (programs, N) float32 dweight partials, written when HAS_WEIGHT
    DB_PARTIAL,  # pointer to the (programs, N) float32 dbias partials, written when HAS_BIAS
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
    # Two stages: the next row's x and dy are in flight while this row is reduced.
    for row in tl.range(row_start, row_end, num_stages=2):
        row64 = tl.cast(row, tl.int64)  # int64 offsets: row * stride may pass 2**31
        x = tl.load(X + row64 * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + row64 * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + row64)
        if IS_RMS:
            x_hat = x * rstd  # padding lanes load 0 and stay 0
        else:
            x_hat = tl.where(mask, (x - tl.load(MEAN + row64)) * rstd, 0.0)
        if HAS_WEIGHT:
            g = dy * w
        else:
            g = dy
        mean_gx = tl.sum(g * x_hat, axis=0) / N
        if IS_RMS:
            dx = rstd * (g - x_hat * mean_gx)
        else:
            dx = rstd * (g - tl.sum(g, axis=0) / N - x_hat * mean_gx)
        if HAS_DRESIDUAL:
            dx += tl.load(DRES + row64 * stride_dres + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(DX + row64 * N + cols, dx.to(DX.dtype.element_ty), mask=mask)
        dw += dy * x_hat
        db += dy
    # Every program owns at least one row and writes its whole partial row,
    # so the partial buffers need no zero fill.
    if HAS_WEIGHT:
        tl.store(DW_PARTIAL + pid * N + cols, dw, mask=mask)
    if HAS_BIAS:
        tl.store(DB_PARTIAL + pid * N + cols, db, mask=mask)


@triton.jit
def _sum_partials_kernel(
    DW_PARTIAL,  # pointer to the (P, N) float32 dweight partials, read when HAS_DW
    DB_PARTIAL,  # pointer to the (P, N) float32 dbias partials, read when HAS_DB
    DW,  # pointer to dweight (N,), in the weight's dtype
    DB,  # pointer to dbias (N,), in the bias's dtype
    P,  # number of partial rows (backward programs)
    N,  # features per row
    HAS_DW: tl.constexpr,
    HAS_DB: tl.constexpr,
    BLOCK_P: tl.constexpr,  # partial rows summed per step
    BLOCK_COLS: tl.constexpr,  # columns per program
):
    """Column sums of the partial buffers, in a fixed order, cast on the way out."""
    cols = tl.program_id(0) * BLOCK_COLS + tl.arange(0, BLOCK_COLS)
    col_mask = cols < N
    acc_w = tl.zeros((BLOCK_P, BLOCK_COLS), dtype=tl.float32)
    acc_b = tl.zeros((BLOCK_P, BLOCK_COLS), dtype=tl.float32)
    for p0 in range(0, P, BLOCK_P):
        rows = p0 + tl.arange(0, BLOCK_P)
        offsets = rows.to(tl.int64)[:, None] * N + cols[None, :]
        mask = (rows[:, None] < P) & col_mask[None, :]
        if HAS_DW:
            acc_w += tl.load(DW_PARTIAL + offsets, mask=mask, other=0.0)
        if HAS_DB:
            acc_b += tl.load(DB_PARTIAL + offsets, mask=mask, other=0.0)
    if HAS_DW:
        tl.store(DW + cols, tl.sum(acc_w, axis=0).to(DW.dtype.element_ty), mask=col_mask)
    if HAS_DB:
        tl.store(DB + cols, tl.sum(acc_b, axis=0).to(DB.dtype.element_ty), mask=col_mask)


def norm_forward(x, residual, weight, bias, eps, is_rms):
    """Launch the forward on 2-D rows; return ``(y, residual_out, mean, rstd)``.

    ``x`` and ``residual`` (or None) are ``(M, N)`` with unit stride along N
    (see :func:`normcourse.kernels.launch.as_rows`).  ``residual_out`` is None
    without a residual, ``mean`` is None for RMSNorm.  ``y`` and
    ``residual_out`` are contiguous, in x's dtype.  ``weight`` and ``bias``
    may have any stride (see :func:`~normcourse.kernels.launch.as_vector`).
    """
    weight, bias = as_vector(weight), as_vector(bias)
    m, n = x.shape
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    res_out = torch.empty_like(y) if residual is not None else None
    mean = None if is_rms else torch.empty(m, dtype=torch.float32, device=x.device)
    rstd = torch.empty(m, dtype=torch.float32, device=x.device)
    if m == 0:
        return y, res_out, mean, rstd
    aligned = rows_aligned(n, x, residual)
    if forward_is_looped(n, aligned=aligned):
        launch_looped_forward(x, residual, res_out, y, weight, bias, mean, rstd, eps, is_rms)
        return y, res_out, mean, rstd
    settings = row_settings(n)
    # Absent tensors are replaced by x: the constexpr flags keep them unread.
    _norm_fwd_kernel[(m,)](
        x, residual if residual is not None else x, res_out if res_out is not None else y,
        y, weight if weight is not None else x, bias if bias is not None else x,
        mean if mean is not None else rstd, rstd,
        x.stride(0), residual.stride(0) if residual is not None else 0,
        n, eps,
        IS_RMS=is_rms, HAS_RESIDUAL=residual is not None, HAS_WEIGHT=weight is not None,
        HAS_BIAS=bias is not None, BLOCK_N=settings.block_n,
        # RMSNorm fits two CTAs per SM uncapped, and spills a few bytes under
        # the cap (the compile report shows both): LayerNorm alone is capped.
        **launch_options(x.device, settings,
                         None if is_rms else forward_ctas_per_sm(settings, aligned)),
    )
    return y, res_out, mean, rstd


def sum_partials(dw_partial, db_partial, weight, bias, programs):
    """``(dweight, dbias)`` from the ``(programs, N)`` partials, in one launch (None where absent).

    A partial buffer whose parameter is None is a placeholder and never read.
    """
    n = dw_partial.shape[-1]
    dw = torch.empty(n, dtype=weight.dtype, device=dw_partial.device) if weight is not None \
        else None
    db = torch.empty(n, dtype=bias.dtype, device=dw_partial.device) if bias is not None else None
    if dw is None and db is None:
        return None, None
    block_cols, num_warps = SUM_PARTIALS_SETTINGS
    _sum_partials_kernel[(triton.cdiv(n, block_cols),)](
        dw_partial, db_partial, dw if dw is not None else db, db if db is not None else dw,
        programs, n,
        HAS_DW=dw is not None, HAS_DB=db is not None, BLOCK_P=_SUM_PARTIALS_ROWS,
        BLOCK_COLS=block_cols, num_warps=num_warps,
    )
    return dw, db


def norm_backward(dy, dres, x, weight, bias, mean, rstd, is_rms):
    """Launch the backward on 2-D rows; return ``(dx, dweight, dbias)``.

    ``x`` is what the forward normalized (residual_out for the fused op),
    ``dres`` the gradient of residual_out or None, ``mean`` None for RMSNorm.
    ``dweight`` / ``dbias`` are None when ``weight`` / ``bias`` is, else in
    the parameter's dtype.
    """
    weight = as_vector(weight)
    m, n = x.shape
    dx = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m == 0:  # no rows, no partials: the sums over rows are 0
        zeros = [torch.zeros(n, dtype=p.dtype, device=x.device) if p is not None else None
                 for p in (weight, bias)]
        return dx, zeros[0], zeros[1]
    looped = backward_is_looped(n)
    settings = looped_settings() if looped else row_settings(n)
    aligned = rows_aligned(n, x, dy, dres)  # vector loads need fewer registers: more CTAs
    programs = backward_programs(m, x.device, settings, aligned)
    rows_per_program = triton.cdiv(m, programs)
    programs = triton.cdiv(m, rows_per_program)  # every program owns at least one row
    # Every program writes its whole partial row: no zero fill needed.
    dw_partial = torch.empty((programs, n), dtype=torch.float32, device=x.device) \
        if weight is not None else dx
    db_partial = torch.empty((programs, n), dtype=torch.float32, device=x.device) \
        if bias is not None else dw_partial
    if looped:
        launch_looped_backward(x, dy, dres, dx, weight, mean, rstd, dw_partial, db_partial,
                               rows_per_program, programs, is_rms=is_rms,
                               has_bias=bias is not None)
    else:
        _norm_bwd_kernel[(programs,)](
            x, dy, dres if dres is not None else dy, dx,
            weight if weight is not None else x, mean if mean is not None else rstd, rstd,
            dw_partial, db_partial,
            x.stride(0), dy.stride(0), dres.stride(0) if dres is not None else 0,
            m, n, rows_per_program,
            IS_RMS=is_rms, HAS_DRESIDUAL=dres is not None, HAS_WEIGHT=weight is not None,
            HAS_BIAS=bias is not None, BLOCK_N=settings.block_n,
            **launch_options(x.device, settings, backward_ctas_per_sm(settings, aligned=aligned)),
        )
    dw, db = sum_partials(dw_partial, db_partial, weight, bias, programs)
    return dx, dw, db


class NormFunction(torch.autograd.Function):
    """Autograd glue: ``apply(x, residual, weight, bias, eps, is_rms)``.

    Returns ``y`` when ``residual`` is None, else ``(y, residual_out)``.
    ``x`` and ``residual`` may have any leading shape and any strides;
    arguments are assumed validated (see :mod:`normcourse.checks`).
    First derivatives only: the backward refuses ``create_graph=True``.
    """

    @staticmethod
    def forward(ctx, x, residual, weight, bias, eps, is_rms):
        shape = x.shape
        x2 = as_rows(x)
        r2 = as_rows(residual) if residual is not None else None
        y, res_out, mean, rstd = norm_forward(x2, r2, weight, bias, eps, is_rms)
        ctx.fused = residual is not None
        ctx.is_rms = is_rms
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
        torch_fn = "rms_norm" if ctx.is_rms else "layer_norm"
        refuse_double_backward(("add_" if ctx.fused else "") + torch_fn, "the Triton kernels'",
                               "Pass backend='torch' (to the function or the module), which runs "
                               f"torch.nn.functional.{torch_fn}, differentiable twice.")
        s, weight, bias, mean, rstd = ctx.saved_tensors
        s = as_rows(s)
        dy2 = as_rows(dy) if dy is not None else torch.zeros_like(s)
        dres2 = as_rows(dres) if dres is not None else None
        dx, dw, db = norm_backward(dy2, dres2, s, weight, bias, mean, rstd, ctx.is_rms)
        dx = dx.view(ctx.shape)
        return dx, (dx if ctx.fused else None), dw, db, None, None
