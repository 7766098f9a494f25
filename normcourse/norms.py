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
import operator
from numbers import Number
from typing import Sequence

import torch
from torch import nn

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


# The dtypes a norm accepts: the float8 types and friends have no arithmetic
# in torch (their ops raise NotImplementedError deep inside), so they are
# refused up front with a message that names the argument.
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _as_int(value) -> int | None:
    """``value`` as an int if it is an integer (int, numpy or 0-d torch integer), else None.

    bool is an int subclass but never a size, and floats are not silently truncated.
    """
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _as_shape(normalized_shape, op: str = "LayerNorm") -> tuple[int, ...]:
    """``normalized_shape`` (an int or a sequence of ints) as a tuple of positive ints.

    Stricter than ``nn.LayerNorm``, which runs ``tuple()`` on anything: there
    ``'12'`` becomes two dimensions and ``[5.7]`` is truncated to 5.
    """
    single = _as_int(normalized_shape)
    if single is not None:
        dims = [single]
    elif isinstance(normalized_shape, Sequence) and not isinstance(normalized_shape, (str, bytes)):
        dims = [_as_int(d) for d in normalized_shape]
    else:
        dims = [None]
    if any(d is None for d in dims):
        raise ValueError(f"{op}: normalized_shape must be an int or a sequence of ints, "
                         f"got {normalized_shape!r}")
    shape = tuple(dims)
    if not shape:
        raise ValueError(f"{op}: normalized_shape must have at least one dimension, got ()")
    if any(d < 0 for d in shape):
        raise ValueError(f"{op}: normalized_shape {shape} has a negative size; sizes must be >= 1")
    if math.prod(shape) == 0:
        raise ValueError(f"{op}: normalized_shape {shape} has no features to normalize over")
    return shape


def _check_eps(op: str, eps, allow_none: bool = False) -> None:
    """``eps`` is a positive finite real number (not a bool, str or tensor).

    ``allow_none``: RMSNorm's None, meaning ``torch.finfo(x.dtype).eps`` as in torch.
    """
    if eps is None and allow_none:
        return
    if not isinstance(eps, Number) or isinstance(eps, (bool, complex)) or not (eps > 0) \
            or not math.isfinite(eps):
        also = " or None (meaning torch.finfo(x.dtype).eps)" if allow_none else ""
        raise ValueError(f"{op}: eps must be a positive finite number{also}, got {eps!r}")


def _check_dtype(op: str, name: str, dtype) -> None:
    """``dtype`` is one of the floating dtypes a norm computes in."""
    if dtype not in _FLOAT_DTYPES:
        raise ValueError(f"{op}: {name} must be float16, bfloat16, float32 or float64, "
                         f"got {dtype}")


def _validate(x, weight, bias, eps, normalized_shape, op: str) -> tuple[int, ...]:
    """Check a norm's arguments; raise ValueError naming the culprit.

    Returns the normalized shape (the trailing dimensions that are reduced).
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{op}: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise ValueError(
            f"{op}: x must be a floating-point tensor (float16, bfloat16, float32 or "
            f"float64), got dtype {x.dtype}; convert it with x.float()"
        )
    if normalized_shape is None:
        if x.dim() == 0:
            raise ValueError(f"{op}: x must have at least one dimension (the features)")
        shape = _as_shape(x.shape[-1:], op)
    else:
        shape = _as_shape(normalized_shape, op)
    if x.dim() < len(shape) or tuple(x.shape[-len(shape):]) != shape:
        raise ValueError(
            f"{op}: x of shape {tuple(x.shape)} does not end with normalized_shape {shape}"
        )
    _check_eps(op, eps)
    for name, p in (("weight", weight), ("bias", bias)):
        if p is None:
            continue
        if not isinstance(p, torch.Tensor):
            raise ValueError(f"{op}: {name} must be a tensor or None, got {type(p).__name__}")
        if tuple(p.shape) != shape:
            raise ValueError(
                f"{op}: {name} must have shape {shape} (the normalized shape), got {tuple(p.shape)}"
            )
        if not p.is_floating_point():
            raise ValueError(f"{op}: {name} must be floating point, got dtype {p.dtype}")
        if p.device != x.device:
            raise ValueError(f"{op}: {name} is on {p.device} but x is on {x.device}")
    return shape


def _refuse_double_backward(op: str) -> None:
    """Raise if autograd asked for a differentiable backward (``create_graph=True``).

    The engine runs a backward with grad mode on exactly when the caller passed
    create_graph=True.  The hand-written backward below is a formula autograd
    cannot see through: its result would silently lack every second-order term.
    """
    if torch.is_grad_enabled():
        raise RuntimeError(
            f"{op}: double backward (create_graph=True) is not supported by this hand-written "
            f"backward: autograd cannot differentiate it, so second-order terms would be silently "
            f"missing.  Use torch.nn.functional.{op} or normcourse.norms.{op}_reference, which "
            f"autograd differentiates twice."
        )


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
# refuses create_graph=True (see _refuse_double_backward).
# --------------------------------------------------------------------------


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
        _refuse_double_backward("layer_norm")
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
        _refuse_double_backward("rms_norm")
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
    shape = _validate(x, weight, bias, eps, normalized_shape, "layer_norm")
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
    shape = _validate(x, weight, None, eps, normalized_shape, "rms_norm")
    n = math.prod(shape)
    rows = x.reshape(-1, n)
    w = weight.reshape(n) if weight is not None else None
    return RMSNormFunction.apply(rows, w, float(eps)).reshape(x.shape)


# --------------------------------------------------------------------------
# Modules: drop-in for nn.LayerNorm / nn.RMSNorm (same arguments, same
# state_dict keys), so a checkpoint loads into either.
# --------------------------------------------------------------------------


def _check_module_args(op: str, normalized_shape, eps, dtype, allow_none_eps: bool):
    """The constructor checks of both modules; returns the normalized shape as a tuple.

    Done at construction, so a typo fails where it was written, not at the
    first forward.
    """
    shape = _as_shape(normalized_shape, op)
    _check_eps(op, eps, allow_none=allow_none_eps)
    if dtype is not None:
        _check_dtype(op, "dtype", dtype)
    return shape


class LayerNorm(nn.Module):
    """Drop-in replacement for ``torch.nn.LayerNorm`` backed by :func:`layer_norm`.

    Same signature and state_dict keys; the arguments are checked here
    (``normalized_shape`` positive ints, ``eps`` a positive finite number).
    Note that eps is added in float32 for float32 and half inputs: below
    about 1e-38 it becomes 0 there.
    """

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
                 device=None, dtype=None):
        super().__init__()
        self.normalized_shape = _check_module_args("LayerNorm", normalized_shape, eps, dtype,
                                                   allow_none_eps=False)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        factory = {"device": device, "dtype": dtype}
        weight = torch.ones(self.normalized_shape, **factory) if elementwise_affine else None
        bias_ = torch.zeros(self.normalized_shape, **factory) if elementwise_affine and bias else None
        # register_parameter(name, None) keeps the attribute (and state_dict) as in nn.LayerNorm
        self.register_parameter("weight", nn.Parameter(weight) if weight is not None else None)
        self.register_parameter("bias", nn.Parameter(bias_) if bias_ is not None else None)

    def forward(self, x):
        return layer_norm(x, self.weight, self.bias, self.eps, self.normalized_shape)

    def extra_repr(self):
        # nn.LayerNorm's own format, bias= included
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")


class RMSNorm(nn.Module):
    """Drop-in replacement for ``torch.nn.RMSNorm`` backed by :func:`rms_norm`.

    ``eps=None`` (the default) means ``torch.finfo(x.dtype).eps``, as in torch.
    """

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True,
                 device=None, dtype=None):
        super().__init__()
        self.normalized_shape = _check_module_args("RMSNorm", normalized_shape, eps, dtype,
                                                   allow_none_eps=True)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(self.normalized_shape, device=device, dtype=dtype))
        else:
            self.register_parameter("weight", None)

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps, self.normalized_shape)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")
