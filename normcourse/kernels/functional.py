"""The public functions: validate, pick a backend, call the kernels.

``backend`` chooses what computes:

- ``"auto"`` (default): the fastest correct choice for the tensor at hand.
  The Triton kernels, compiled for the GPU, for a float32 / float16 /
  bfloat16 tensor on CUDA; PyTorch's own fused op (``"torch"``) for
  everything else: a CPU tensor, float64, or no ``triton`` installed.  The
  interpreter never runs unasked: on a CPU it is exact but orders of
  magnitude slower than PyTorch (about 3500x for a (64, 256) forward and
  backward in one measurement on a 2-core machine).
- ``"triton"``: the Triton kernels, always.  On CUDA tensors they are
  compiled for the GPU; on CPU tensors they run through the Triton
  interpreter (``import normcourse`` switches it on when there is no GPU).
  That is how the kernels are tested and taught on a laptop: the kernel
  chapters and checkers pass ``backend="triton"`` explicitly.  Without
  ``triton`` installed it raises a ValueError saying so.
- ``"torch"``: PyTorch's own fused kernels (``F.layer_norm``, ``F.rms_norm``),
  also the one to use for second derivatives (``create_graph=True``): the
  Triton backward is a hand-written kernel autograd cannot differentiate, so
  it raises a RuntimeError there rather than return incomplete gradients.

``eps`` of the RMSNorm functions may be None: ``torch.finfo(x.dtype).eps``,
as in ``torch.nn.functional.rms_norm`` (the default stays 1e-6).  The
kernels add eps in float32, so on the Triton path it must lie in float32's
normal range (about 1.2e-38 to 3.4e38).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from normcourse.checks import (check_backend, check_eps, check_eps_float32, check_features,
                               check_input, check_param)
from normcourse.runtime import triton_available, triton_interpreted

__all__ = ["layer_norm", "rms_norm", "add_layer_norm", "add_rms_norm"]


def _prepare(op, x, residual, weight, bias, eps, backend):
    """Validate everything; return (eps as float, resolved backend)."""
    check_input(op, "x", x)
    check_features(op, x)
    if residual is not None or op.startswith("add_"):
        check_input(op, "residual", residual, like=x)
    check_param(op, "weight", weight, x)
    check_param(op, "bias", bias, x)
    eps = check_eps(op, eps)
    if backend == "triton" and not triton_available():
        raise ValueError(f"{op}: backend='triton' but triton is not installed "
                         "(pip install triton; on CPU it runs in the interpreter)")
    backend = check_backend(op, backend, x, triton_available())
    if backend == "triton" and x.device.type == "cpu" and not triton_interpreted():
        raise ValueError(
            f"{op}: x is on the CPU but the Triton interpreter is off (TRITON_INTERPRET is not "
            "1); move x to CUDA, or pass backend='torch'"
        )
    if backend == "triton":
        check_eps_float32(op, eps)
    return eps, backend


def _norm_function():
    # Imported on first use: the kernels need triton, the "torch" backend does not.
    from normcourse.kernels.triton_norm import NormFunction

    return NormFunction


def _default_eps(eps, x):
    """RMSNorm's ``eps=None``: ``torch.finfo(x.dtype).eps``, as in torch."""
    # A non-float x is passed through untouched, for check_input to reject by name.
    if eps is None and isinstance(x, torch.Tensor) and x.is_floating_point():
        return torch.finfo(x.dtype).eps
    return eps


def _param(p, x):
    # torch's kernels want parameters in x's dtype; the cast is differentiable.
    return p.to(x.dtype) if p is not None else None


def layer_norm(x, weight=None, bias=None, eps=1e-5, *, backend="auto"):
    """LayerNorm over the last dimension of ``x`` (any leading shape).

    ``weight`` and ``bias`` are ``(N,)`` tensors or None.  Output in x's
    dtype; statistics in float32.  See the module docstring for ``backend``.
    """
    eps, backend = _prepare("layer_norm", x, None, weight, bias, eps, backend)
    if backend == "torch":
        return F.layer_norm(x, x.shape[-1:], _param(weight, x), _param(bias, x), eps)
    return _norm_function().apply(x, None, weight, bias, eps, False)


def rms_norm(x, weight=None, eps=1e-6, *, backend="auto"):
    """RMSNorm over the last dimension of ``x`` (any leading shape); ``weight`` may be None.

    ``eps=None`` means ``torch.finfo(x.dtype).eps`` (torch's default).
    """
    eps, backend = _prepare("rms_norm", x, None, weight, None, _default_eps(eps, x), backend)
    if backend == "torch":
        return F.rms_norm(x, x.shape[-1:], _param(weight, x), eps)
    return _norm_function().apply(x, None, weight, None, eps, True)


def add_layer_norm(x, residual, weight=None, bias=None, eps=1e-5, *, backend="auto"):
    """Fused pre-norm step: ``residual_out = x + residual``, ``y = layer_norm(residual_out)``.

    Returns ``(y, residual_out)``, both in x's dtype.  One pass over memory
    instead of two: the sum is never re-read from memory to be normalized.
    """
    eps, backend = _prepare("add_layer_norm", x, residual, weight, bias, eps, backend)
    if backend == "torch":
        s = x + residual
        return F.layer_norm(s, s.shape[-1:], _param(weight, x), _param(bias, x), eps), s
    return _norm_function().apply(x, residual, weight, bias, eps, False)


def add_rms_norm(x, residual, weight=None, eps=1e-6, *, backend="auto"):
    """Fused pre-norm step: ``residual_out = x + residual``, ``y = rms_norm(residual_out)``.

    Returns ``(y, residual_out)``, both in x's dtype.  ``eps=None`` as in :func:`rms_norm`.
    """
    eps, backend = _prepare("add_rms_norm", x, residual, weight, None, _default_eps(eps, x),
                            backend)
    if backend == "torch":
        s = x + residual
        return F.rms_norm(s, s.shape[-1:], _param(weight, x), eps), s
    return _norm_function().apply(x, residual, weight, None, eps, True)
