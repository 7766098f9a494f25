r"""LayerNorm and RMSNorm from scratch, with a hand-derived backward.

Both normalize each row ``x`` (the last ``len(normalized_shape)`` dimensions,
flattened to ``N`` features) and then apply an elementwise affine map.

LayerNorm (Ba, Kiros & Hinton 2016, arXiv:1607.06450)::

    mu    = mean(x)                          # over the N features of a row
    var   = mean((x - mu)^2)                 # biased: divide by N, not N - 1
    rstd  = 1 / sqrt(var + eps)
    x_hat = (x - mu) * rstd
    y     = weight * x_hat + bias

RMSNorm (Zhang & Sennrich 2019, arXiv:1910.07467) drops the mean::

    rstd  = 1 / sqrt(mean(x^2) + eps)
    x_hat = x * rstd
    y     = weight * x_hat

Backward.  With ``g = dy * weight`` (the gradient that reaches ``x_hat``)
and ``<.>`` the mean over the row::

    LayerNorm:  dx = rstd * (g - <g> - x_hat * <g * x_hat>)
    RMSNorm:    dx = rstd * (g        - x_hat * <g * x_hat>)
    dweight = sum over rows of dy * x_hat,     dbias = sum over rows of dy

The chapter "LayerNorm from scratch" derives these line by line.

Numerics.  Statistics use two passes (mean first, then the mean of squared
deviations), never ``E[x^2] - E[x]^2``, which cancels catastrophically when
|mean| >> std.  Half-precision inputs (float16, bfloat16) are computed in
float32 and the result is returned in the input dtype.  ``eps`` is added in
that compute dtype, so an eps below its smallest normal number (about 1e-38
in float32) rounds to 0 there and a constant row then divides 0 by 0: use
such tiny values only with float64 inputs.

Second derivatives.  The hand-written backward is not itself differentiable,
so ``create_graph=True`` (double backward, e.g. a gradient penalty) raises a
RuntimeError instead of silently dropping the second-order terms; use
``torch.nn.functional.layer_norm`` / ``rms_norm`` or the ``*_reference``
functions below, which autograd differentiates as often as needed.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from normcourse.checks import check_norm_args, check_norm_module_args, refuse_double_backward

__all__ = [
    "layer_norm",
    "rms_norm",
    "layer_norm_reference",
    "rms_norm_reference",
    "LayerNormFunction",
    "RMSNormFunction",
    "LayerNorm",
    "RMSNorm",
]

# Half-precision inputs are normalized in float32: their 10 (fp16) or 7 (bf16)
# mantissa bits are not enough to hold a sum over thousands of features.
_COMPUTE_DTYPE = {torch.float16: torch.float32, torch.bfloat16: torch.float32}


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return _COMPUTE_DTYPE.get(dtype, dtype)


# --------------------------------------------------------------------------
# References: the formulas written with plain torch ops (autograd does the
# backward).  Readable, and used by the tests as the float64 ground truth.
# --------------------------------------------------------------------------


def layer_norm_reference(x, weight=None, bias=None, eps=1e-5):
    """LayerNorm over the last dimension with plain torch ops (two-pass statistics)."""
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # biased, as in Ba et al.
    y = (x - mean) / torch.sqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def rms_norm_reference(x, weight=None, eps=1e-6):
    """RMSNorm over the last dimension with plain torch ops."""
    y = x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight
    return y


# --------------------------------------------------------------------------
# autograd.Functions: forward saves (x, rstd[, mean]); backward is the
# hand-derived formula from the module docstring, no autograd inside, so it
# refuses create_graph=True (see normcourse.checks.refuse_double_backward).
# --------------------------------------------------------------------------

_TWICE = ("Use torch.nn.functional.{0} or normcourse.norms.{0}_reference, which autograd "
          "differentiates twice.")


def _affine_grads(dy, x_hat, weight, bias, needs_weight, needs_bias):
    """dweight = sum_rows dy * x_hat and dbias = sum_rows dy, in float32."""
    dweight = (dy * x_hat).sum(dim=0).to(weight.dtype) if needs_weight else None
    dbias = dy.sum(dim=0).to(bias.dtype) if needs_bias else None
    return dweight, dbias


class LayerNormFunction(torch.autograd.Function):
    """LayerNorm over the last dimension of a 2-D ``(rows, N)`` tensor."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        xf = x.to(_compute_dtype(x.dtype))
        mean = xf.mean(dim=-1, keepdim=True)
        xc = xf - mean
        var = (xc * xc).mean(dim=-1, keepdim=True)
        rstd = torch.rsqrt(var + eps)
        x_hat = xc * rstd
        y = x_hat
        if weight is not None:
            y = y * weight.to(xf.dtype)
        if bias is not None:
            y = y + bias.to(xf.dtype)
        ctx.save_for_backward(x, mean, rstd, weight, bias)
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        refuse_double_backward("layer_norm", "this", _TWICE.format("layer_norm"))
        x, mean, rstd, weight, bias = ctx.saved_tensors
        dtype = _compute_dtype(x.dtype)
        dy = dy.to(dtype)
        x_hat = (x.to(dtype) - mean) * rstd
        g = dy * weight.to(dtype) if weight is not None else dy
        dx = None
        if ctx.needs_input_grad[0]:
            mean_g = g.mean(dim=-1, keepdim=True)
            mean_gx = (g * x_hat).mean(dim=-1, keepdim=True)
            dx = (rstd * (g - mean_g - x_hat * mean_gx)).to(x.dtype)
        dweight, dbias = _affine_grads(
            dy, x_hat, weight, bias, ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        )
        return dx, dweight, dbias, None


class RMSNormFunction(torch.autograd.Function):
    """RMSNorm over the last dimension of a 2-D ``(rows, N)`` tensor."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        xf = x.to(_compute_dtype(x.dtype))
        rstd = torch.rsqrt((xf * xf).mean(dim=-1, keepdim=True) + eps)
        y = xf * rstd
        if weight is not None:
            y = y * weight.to(xf.dtype)
        ctx.save_for_backward(x, rstd, weight)
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        refuse_double_backward("rms_norm", "this", _TWICE.format("rms_norm"))
        x, rstd, weight = ctx.saved_tensors
        dtype = _compute_dtype(x.dtype)
        dy = dy.to(dtype)
        x_hat = x.to(dtype) * rstd
        g = dy * weight.to(dtype) if weight is not None else dy
        dx = None
        if ctx.needs_input_grad[0]:
            mean_gx = (g * x_hat).mean(dim=-1, keepdim=True)
            dx = (rstd * (g - x_hat * mean_gx)).to(x.dtype)
        dweight, _ = _affine_grads(dy, x_hat, weight, None, ctx.needs_input_grad[1], False)
        return dx, dweight, None


# --------------------------------------------------------------------------
# Functional API: any leading shape, validated arguments.
# --------------------------------------------------------------------------


def layer_norm(x, weight=None, bias=None, eps=1e-5, normalized_shape=None):
    """LayerNorm of ``x`` over ``normalized_shape`` (default: the last dimension).

    Same semantics as ``torch.nn.functional.layer_norm``; the backward is the
    hand-derived one of :class:`LayerNormFunction`.
    """
    shape = check_norm_args(x, weight, bias, eps, normalized_shape, "layer_norm")
    n = math.prod(shape)
    rows = x.reshape(-1, n)  # copies only when x is not viewable as rows
    w = weight.reshape(n) if weight is not None else None
    b = bias.reshape(n) if bias is not None else None
    return LayerNormFunction.apply(rows, w, b, float(eps)).reshape(x.shape)


def rms_norm(x, weight=None, eps=None, normalized_shape=None):
    """RMSNorm of ``x`` over ``normalized_shape`` (default: the last dimension).

    ``eps=None`` means ``torch.finfo(x.dtype).eps``, as in ``torch.nn.functional.rms_norm``.
    """
    if eps is None and isinstance(x, torch.Tensor) and x.is_floating_point():
        eps = torch.finfo(x.dtype).eps
    shape = check_norm_args(x, weight, None, eps, normalized_shape, "rms_norm")
    n = math.prod(shape)
    rows = x.reshape(-1, n)
    w = weight.reshape(n) if weight is not None else None
    return RMSNormFunction.apply(rows, w, float(eps)).reshape(x.shape)


# --------------------------------------------------------------------------
# Modules: drop-in for nn.LayerNorm / nn.RMSNorm (same arguments, same
# state_dict keys), so a checkpoint loads into either.
# --------------------------------------------------------------------------


class _Norm(nn.Module):
    """What both modules share: their checked arguments and their parameters, as torch's store them."""

    def __init__(self, op, normalized_shape, eps, elementwise_affine, dtype, allow_none_eps):
        super().__init__()
        self.normalized_shape = check_norm_module_args(op, normalized_shape, eps, dtype,
                                                       allow_none_eps=allow_none_eps)
        self.eps = eps
        self.elementwise_affine = elementwise_affine

    def _parameter(self, name, value):
        # register_parameter(name, None) keeps the attribute (and state_dict) as in nn.LayerNorm
        self.register_parameter(name, nn.Parameter(value) if value is not None else None)


class LayerNorm(_Norm):
    """Drop-in replacement for ``torch.nn.LayerNorm`` backed by :func:`layer_norm`.

    Same signature and state_dict keys; the arguments are checked here
    (``normalized_shape`` positive ints, ``eps`` a positive finite number).
    Note that eps is added in float32 for float32 and half inputs: below
    about 1e-38 it becomes 0 there.
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
                 device=None, dtype=None):
        super().__init__("LayerNorm", normalized_shape, eps, elementwise_affine, dtype,
                         allow_none_eps=False)
        factory = {"device": device, "dtype": dtype}
        weight = torch.ones(self.normalized_shape, **factory) if elementwise_affine else None
        bias_ = torch.zeros(self.normalized_shape, **factory) if elementwise_affine and bias else None
        self._parameter("weight", weight)
        self._parameter("bias", bias_)

    def forward(self, x):
        return layer_norm(x, self.weight, self.bias, self.eps, self.normalized_shape)

    def extra_repr(self):
        # nn.LayerNorm's own format, bias= included
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")


class RMSNorm(_Norm):
    """Drop-in replacement for ``torch.nn.RMSNorm`` backed by :func:`rms_norm`.

    ``eps=None`` (the default) means ``torch.finfo(x.dtype).eps``, as in torch.
    """

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True,
                 device=None, dtype=None):
        super().__init__("RMSNorm", normalized_shape, eps, elementwise_affine, dtype,
                         allow_none_eps=True)
        self._parameter("weight", torch.ones(self.normalized_shape, device=device, dtype=dtype)
                        if elementwise_affine else None)

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps, self.normalized_shape)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")
