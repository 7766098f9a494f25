"""Argument checks shared by the kernel launchers: a ValueError naming the culprit.

A kernel fed a wrong argument does not fail politely: an int tensor is read
as garbage floats, a weight of the wrong length reads out of bounds, a tensor
on another device crashes deep inside Triton.  So every public entry point
checks its arguments here first.
"""

from __future__ import annotations

import math
from numbers import Number

import torch

KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

__all__ = ["KERNEL_DTYPES", "check_input", "check_param", "check_eps", "check_backend"]


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
    if not isinstance(eps, Number) or isinstance(eps, bool) or not (eps > 0) \
            or not math.isfinite(eps):
        raise ValueError(f"{op}: eps must be a positive finite number, got {eps!r}")
    return float(eps)


def check_backend(op: str, backend: str, x: torch.Tensor) -> str:
    """Resolve ``backend`` to "triton" or "torch"; Triton takes only its three dtypes."""
    if backend not in ("auto", "triton", "torch"):
        raise ValueError(f"{op}: backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    if backend == "torch":
        return "torch"
    if x.dtype not in KERNEL_DTYPES:
        raise ValueError(f"{op}: the Triton kernels take float32, float16 or bfloat16; x has "
                         f"dtype {x.dtype} (use backend='torch' for it)")
    if x.device.type not in ("cuda", "cpu"):
        raise ValueError(f"{op}: x is on {x.device}; Triton runs on cuda (or cpu, interpreted)")
    return "triton"
