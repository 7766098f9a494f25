"""Argument checks shared by the kernel launchers: a ValueError naming the culprit.

A kernel fed a wrong argument does not fail politely: an int tensor is read
as garbage floats, a weight of the wrong length reads out of bounds, a tensor
on another device crashes deep inside Triton.  So every public entry point
checks its arguments here first.  :func:`refuse_double_backward` guards the
other way in: a backward asked for something it cannot give.
"""

from __future__ import annotations

import math
from numbers import Number

import torch

KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# PyTorch's own kernels (backend="torch") also take float64; float8 and other
# storage-only types have no norm kernel there and fail deep inside torch.
TORCH_DTYPES = KERNEL_DTYPES + (torch.float64,)
BACKENDS = ("auto", "triton", "torch")
# The kernels add eps to a float32 variance: outside float32's normal range it
# would silently become 0 (a constant row then gives 0/0) or inf (y = bias).
_F32 = torch.finfo(torch.float32)

__all__ = ["KERNEL_DTYPES", "TORCH_DTYPES", "BACKENDS", "check_input", "check_features",
           "check_param", "check_eps", "check_eps_float32", "check_backend_name",
           "check_backend", "resolve_auto", "refuse_double_backward"]


def check_input(op: str, name: str, t, like: torch.Tensor | None = None) -> None:
    """``t`` is a floating-point tensor (with ``like``'s shape, dtype, device if given)."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{op}: {name} must be a floating-point tensor, got dtype {t.dtype}; "
                         f"convert it with {name}.float()")
    if t.dim() == 0:
        raise ValueError(f"{op}: {name} must have at least one dimension (the features)")
    if like is not None:
        if tuple(t.shape) != tuple(like.shape):
            raise ValueError(f"{op}: {name} has shape {tuple(t.shape)} but x has shape "
                             f"{tuple(like.shape)}")
        if t.dtype != like.dtype:
            raise ValueError(f"{op}: {name} has dtype {t.dtype} but x has dtype {like.dtype}")
        if t.device != like.device:
            raise ValueError(f"{op}: {name} is on {t.device} but x is on {like.device}")


def check_features(op: str, x: torch.Tensor) -> None:
    """x's last dimension (the features normalized over) is not empty.

    Zero features have no mean and no variance; both backends say so here
    instead of failing (or returning an empty tensor) in their own ways.
    """
    if x.shape[-1] == 0:
        raise ValueError(f"{op}: normalized_shape (0,) (x's last dimension) has no features to "
                         f"normalize over; x has shape {tuple(x.shape)}")


def check_param(op: str, name: str, p, x: torch.Tensor) -> None:
    """``p`` (weight or bias) is None or a float vector of x's last size on x's device.

    Its dtype must be x's dtype or float32 (mixed precision keeps float32
    parameters next to half-precision activations).
    """
    if p is None:
        return
    if not isinstance(p, torch.Tensor):
        raise ValueError(f"{op}: {name} must be a tensor or None, got {type(p).__name__}")
    if not p.is_floating_point():
        raise ValueError(f"{op}: {name} must be floating point, got dtype {p.dtype}")
    if tuple(p.shape) != (x.shape[-1],):
        raise ValueError(f"{op}: {name} must have shape ({x.shape[-1]},) (x's last dimension), "
                         f"got {tuple(p.shape)}")
    if p.dtype not in (x.dtype, torch.float32):
        raise ValueError(f"{op}: {name} has dtype {p.dtype}; it must be x's dtype ({x.dtype}) "
                         f"or torch.float32")
    if p.device != x.device:
        raise ValueError(f"{op}: {name} is on {p.device} but x is on {x.device}")


def check_eps(op: str, eps) -> float:
    """``eps`` is a positive finite number; returned as a Python float."""
    if not isinstance(eps, Number) or isinstance(eps, (bool, complex)) or not (eps > 0) \
            or not math.isfinite(eps):
        raise ValueError(f"{op}: eps must be a positive finite number, got {eps!r}")
    return float(eps)


def check_eps_float32(op: str, eps: float) -> None:
    """``eps`` survives the cast to float32 that the kernels make (no underflow to 0, no inf)."""
    if not (_F32.tiny <= eps <= _F32.max):
        becomes = "0" if eps < _F32.tiny else "inf"
        raise ValueError(f"{op}: eps={eps!r} is outside float32's normal range "
                         f"[{_F32.tiny:.3g}, {_F32.max:.3g}]; the Triton kernels add it in "
                         f"float32, where it would become {becomes}")


def check_backend_name(op: str, backend) -> None:
    """``backend`` is one of :data:`BACKENDS` (checked without a tensor, e.g. by a constructor)."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"{op}: backend must be 'auto', 'triton' or 'torch', got {backend!r}")


def resolve_auto(x: torch.Tensor, have_triton: bool = True) -> str:
    """What ``backend="auto"`` means for ``x``: "triton" for a kernel dtype on CUDA, else "torch".

    On a CPU the Triton kernels could only run interpreted, orders of magnitude
    slower than PyTorch's fused op, so "auto" never picks them there.
    """
    if have_triton and x.device.type == "cuda" and x.dtype in KERNEL_DTYPES:
        return "triton"
    return "torch"


def check_backend(op: str, backend: str, x: torch.Tensor, have_triton: bool = True) -> str:
    """Resolve ``backend`` to "triton" or "torch"; each takes only the dtypes it has kernels for."""
    check_backend_name(op, backend)
    asked = backend
    if backend == "auto":
        backend = resolve_auto(x, have_triton)
    if backend == "torch":
        if x.dtype not in TORCH_DTYPES:
            via = " (what 'auto' picks here)" if asked == "auto" else ""
            raise ValueError(f"{op}: backend='torch'{via} takes float32, float16, bfloat16 or "
                             f"float64; x has dtype {x.dtype}")
        return "torch"
    if x.dtype not in KERNEL_DTYPES:
        hint = " (use backend='torch' for it)" if x.dtype in TORCH_DTYPES else ""
        raise ValueError(f"{op}: the Triton kernels take float32, float16 or bfloat16; x has "
                         f"dtype {x.dtype}{hint}")
    if x.device.type not in ("cuda", "cpu"):
        raise ValueError(f"{op}: x is on {x.device}; Triton runs on cuda (or cpu, interpreted)")
    return "triton"


def refuse_double_backward(op: str) -> None:
    """Raise if autograd asked for a differentiable backward (``create_graph=True``).

    The autograd engine runs a backward with grad mode on exactly when the
    caller passed create_graph=True.  A Triton kernel is opaque to autograd:
    its gradients would come back without their second-order terms, silently.
    """
    if torch.is_grad_enabled():
        torch_fn = "rms_norm" if "rms" in op else "layer_norm"
        raise RuntimeError(
            f"{op}: double backward (create_graph=True) is not supported by the Triton kernels' "
            f"hand-written backward: autograd cannot differentiate it, so second-order terms "
            f"would be silently missing.  Pass backend='torch' (to the function or the module), "
            f"which runs torch.nn.functional.{torch_fn}, differentiable twice."
        )
