"""Argument checks, in one place: each raises with a message naming the argument and its limits.

The convention, everywhere in the package: a bad *value* (out of range, wrong
shape, dtype or device of a tensor, an unknown name) raises ``ValueError``; a
wrong *type* (a list where a tensor goes, a float where an int goes) raises
``TypeError``.  The norm functions and the kernels raised ValueError for
wrong types before this convention: their type errors are
:class:`WrongTypeError`, a TypeError that is also a ValueError, so code that
catches ValueError keeps working.  Autograd limits (double backward) raise
RuntimeError, as torch's own do.

Sections: general checks of config fields (``check_int``, ``check_number``,
``check_bool``, ``check_device``) and of command-line arguments
(``int_at_least``, ``positive_float``); token ids of TinyGPT
(``check_token_batch``); the norms' arguments (``as_shape``, ``check_eps``,
``check_norm_args``); the kernels' arguments and backend rule
(``check_input``, ``check_param``, ``check_backend``, ...); and
``refuse_double_backward`` for the hand-written backwards.
"""

from __future__ import annotations

import argparse
import math
import numbers
import operator
from typing import Sequence

import torch

from normcourse.runtime import pick_device


class WrongTypeError(TypeError, ValueError):
    """A wrong type where the code once raised ValueError: both, so either ``except`` catches it."""


# ------------------------------------------------------------------ config fields
# Configs are checked when they are made, so a bad value fails with its name and
# its limits instead of as NaN logits or an IndexError deep inside a forward.

def check_int(name: str, value, *, low: int | None = None) -> None:
    """Raise unless ``value`` is an integer (a bool is not one) and at least ``low``."""
    want = "an integer" + (f" >= {low}" if low is not None else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {want}, got {value!r} ({type(value).__name__})")
    if low is not None and value < low:
        raise ValueError(f"{name} must be {want}, got {value!r}")


def check_number(name: str, value, *, gt=None, ge=None, lt=None, le=None, finite: bool = True) -> None:
    """Raise unless ``value`` is a real number (not NaN, finite unless told) within the limits."""
    limits = [f"{op} {v}" for op, v in ((">", gt), (">=", ge), ("<", lt), ("<=", le)) if v is not None]
    want = ("a finite number" if finite else "a number") + "".join(
        (" " if i == 0 else " and ") + lim for i, lim in enumerate(limits))
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {want}, got {value!r} ({type(value).__name__})")
    ok = (not math.isnan(value) and (math.isfinite(value) or not finite)
          and (gt is None or value > gt) and (ge is None or value >= ge)
          and (lt is None or value < lt) and (le is None or value <= le))
    if not ok:
        raise ValueError(f"{name} must be {want}, got {value!r}")


def check_bool(name: str, value, *, allow_none: bool = False) -> None:
    """Raise unless ``value`` is True or False (or None when allowed): 0, 1, "no" are not flags."""
    if not (isinstance(value, bool) or (allow_none and value is None)):
        raise TypeError(f"{name} must be True or False{' or None' if allow_none else ''}, got {value!r}")


def check_device(name: str, device) -> None:
    """Raise unless ``device`` is "cpu", or "cuda"/"cuda:N" with that GPU present."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"{name} must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from err
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{name} must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    try:
        pick_device(dev.type)   # the runtime's own check and message for a missing GPU
    except ValueError as err:
        raise ValueError(f"{name}={device!r} is not available: {err}; use 'cpu', or "
                         f"normcourse.pick_device() to take a GPU only when there is one") from err
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"{name}={device!r} but this machine has {torch.cuda.device_count()} CUDA "
                         f"device(s), numbered from 0")


# ------------------------------------------------------------------ command line
# argparse turns an ArgumentTypeError into a usage error (exit status 2).

def int_at_least(low: int):
    """An argparse type: an integer >= ``low`` (never "0 means the default")."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
        return value
    return parse


positive_int = int_at_least(1)


def positive_float(text: str) -> float:
    """An argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


# ------------------------------------------------------------------ token ids (TinyGPT)

TOKEN_DTYPES = (torch.int64, torch.int32)   # what nn.Embedding takes as indices


def check_token_ids(name: str, ids, vocab_size: int) -> None:
    """Raise unless ``ids`` is a 2-D (B, T) int64/int32 tensor of ids in [0, vocab_size)."""
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(ids).__name__}")
    if ids.dim() != 2:
        raise ValueError(f"{name} must have shape (batch, time), got shape {tuple(ids.shape)}; "
                         f"a single sequence s is s[None]")
    if ids.dtype not in TOKEN_DTYPES:
        raise ValueError(f"{name} must hold integer token ids (torch.int64 or torch.int32), got {ids.dtype}")
    # The range check reads two numbers back.  Under torch.vmap (multiseed) or torch.compile
    # a tensor's values cannot be read, and an empty or meta tensor has none to check.  On a
    # GPU the read would stall every step; there the embedding's own device-side assert fires.
    wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", lambda t: False)
    if ids.numel() == 0 or ids.device.type != "cpu" or torch.compiler.is_compiling() or wrapped(ids):
        return
    low, high = torch.stack(torch.aminmax(ids)).tolist()   # one sync for both
    if low < 0 or high >= vocab_size:
        raise ValueError(f"{name} holds token ids from {low} to {high}; they must lie in "
                         f"[0, vocab_size={vocab_size})")


def check_token_batch(idx, targets, *, vocab_size: int, block_size: int,
                      device: torch.device) -> None:
    """A language model's forward arguments: ``idx`` (and ``targets``) token ids (B, T).

    On the model's ``device``, ``T <= block_size``, targets shaped like idx.
    """
    check_token_ids("idx", idx, vocab_size)
    if idx.device != device:   # a meta or CPU idx would read garbage or fail late
        raise ValueError(f"idx is on {idx.device} but the model is on {device}; "
                         f"move it with idx.to({str(device)!r})")
    T = idx.shape[1]
    if T > block_size:
        raise ValueError(f"sequence length {T} exceeds block_size={block_size}")
    if targets is not None:
        check_token_ids("targets", targets, vocab_size)
        if targets.shape != idx.shape:
            # a (T, B) or flattened target would otherwise pair the wrong tokens silently
            raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, "
                             f"got {tuple(targets.shape)}")


# ------------------------------------------------------------------ norms (normcourse.norms)

# The dtypes a norm accepts: the float8 types and friends have no arithmetic
# in torch (their ops raise NotImplementedError deep inside), so they are
# refused up front with a message that names the argument.
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def as_int(value) -> int | None:
    """``value`` as an int if it is an integer (int, numpy or 0-d torch integer), else None.

    bool is an int subclass but never a size, and floats are not silently truncated.
    """
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def as_shape(normalized_shape, op: str = "LayerNorm") -> tuple[int, ...]:
    """``normalized_shape`` (an int or a sequence of ints) as a tuple of positive ints.

    Stricter than ``nn.LayerNorm``, which runs ``tuple()`` on anything: there
    ``'12'`` becomes two dimensions and ``[5.7]`` is truncated to 5.
    """
    single = as_int(normalized_shape)
    if single is not None:
        dims = [single]
    elif isinstance(normalized_shape, Sequence) and not isinstance(normalized_shape, (str, bytes)):
        dims = [as_int(d) for d in normalized_shape]
    else:
        dims = [None]
    if any(d is None for d in dims):
        raise WrongTypeError(f"{op}: normalized_shape must be an int or a sequence of ints, "
                             f"got {normalized_shape!r}")
    shape = tuple(dims)
    if not shape:
        raise ValueError(f"{op}: normalized_shape must have at least one dimension, got ()")
    if any(d < 0 for d in shape):
        raise ValueError(f"{op}: normalized_shape {shape} has a negative size; sizes must be >= 1")
    if math.prod(shape) == 0:
        raise ValueError(f"{op}: normalized_shape {shape} has no features to normalize over")
    return shape


def check_eps(op: str, eps, allow_none: bool = False) -> float | None:
    """``eps`` is a positive finite real number (not a bool, str or tensor); returned as a float.

    ``allow_none``: RMSNorm's None, meaning ``torch.finfo(x.dtype).eps`` as in torch
    (returned as None).
    """
    if eps is None and allow_none:
        return None
    also = " or None (meaning torch.finfo(x.dtype).eps)" if allow_none else ""
    message = f"{op}: eps must be a positive finite number{also}, got {eps!r}"
    if not isinstance(eps, numbers.Number) or isinstance(eps, (bool, complex)):
        raise WrongTypeError(message)
    if not (eps > 0) or not math.isfinite(eps):
        raise ValueError(message)
    return float(eps)


def check_float_dtype(op: str, name: str, dtype) -> None:
    """``dtype`` is one of the floating dtypes a norm computes in."""
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"{op}: {name} must be float16, bfloat16, float32 or float64, "
                         f"got {dtype}")


def check_tensor(op: str, name: str, t) -> None:
    """``t`` is a torch.Tensor."""
    if not isinstance(t, torch.Tensor):
        raise WrongTypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")


def check_ends_with(op: str, x: torch.Tensor, shape: tuple[int, ...]) -> None:
    """x's trailing dimensions are ``shape`` (the normalized shape)."""
    if x.dim() < len(shape) or tuple(x.shape[x.dim() - len(shape):]) != shape:
        raise ValueError(
            f"{op}: x of shape {tuple(x.shape)} does not end with normalized_shape {shape}"
        )


def check_norm_args(x, weight, bias, eps, normalized_shape, op: str) -> tuple[int, ...]:
    """Check the arguments of :func:`normcourse.norms.layer_norm` / ``rms_norm``.

    Returns the normalized shape (the trailing dimensions that are reduced).
    """
    check_tensor(op, "x", x)
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"{op}: x must be a floating-point tensor (float16, bfloat16, float32 or "
            f"float64), got dtype {x.dtype}; convert it with x.float()"
        )
    if normalized_shape is None:
        if x.dim() == 0:
            raise ValueError(f"{op}: x must have at least one dimension (the features)")
        shape = as_shape(x.shape[-1:], op)
    else:
        shape = as_shape(normalized_shape, op)
    check_ends_with(op, x, shape)
    check_eps(op, eps)
    for name, p in (("weight", weight), ("bias", bias)):
        if p is None:
            continue
        if not isinstance(p, torch.Tensor):
            raise WrongTypeError(f"{op}: {name} must be a tensor or None, got {type(p).__name__}")
        if tuple(p.shape) != shape:
            raise ValueError(
                f"{op}: {name} must have shape {shape} (the normalized shape), got {tuple(p.shape)}"
            )
        if not p.is_floating_point():
            raise ValueError(f"{op}: {name} must be floating point, got dtype {p.dtype}")
        if p.device != x.device:
            raise ValueError(f"{op}: {name} is on {p.device} but x is on {x.device}")
    return shape


def check_norm_module_args(op: str, normalized_shape, eps, dtype, allow_none_eps: bool):
    """The constructor checks of the norm modules; returns the normalized shape as a tuple.

    Done at construction, so a typo fails where it was written, not at the
    first forward.
    """
    shape = as_shape(normalized_shape, op)
    check_eps(op, eps, allow_none=allow_none_eps)
    if dtype is not None:
        check_float_dtype(op, "dtype", dtype)
    return shape


def refuse_double_backward(op: str, whose: str, remedy: str) -> None:
    """Raise if autograd asked for a differentiable backward (``create_graph=True``).

    The autograd engine runs a backward with grad mode on exactly when the
    caller passed create_graph=True.  A hand-written backward (a formula, or a
    Triton kernel) is opaque to autograd: its gradients would come back
    without their second-order terms, silently.  ``whose`` names the backward
    ("this", "the Triton kernels'"), ``remedy`` says what differentiates twice.
    """
    if torch.is_grad_enabled():
        raise RuntimeError(
            f"{op}: double backward (create_graph=True) is not supported by {whose} hand-written "
            f"backward: autograd cannot differentiate it, so second-order terms would be silently "
            f"missing.  {remedy}"
        )


# ------------------------------------------------------------------ kernels (normcourse.kernels)
# A kernel fed a wrong argument does not fail politely: an int tensor is read
# as garbage floats, a weight of the wrong length reads out of bounds, a tensor
# on another device crashes deep inside Triton.  So every public entry point
# checks its arguments here first.

KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# PyTorch's own kernels (backend="torch") also take float64; float8 and other
# storage-only types have no norm kernel there and fail deep inside torch.
TORCH_DTYPES = KERNEL_DTYPES + (torch.float64,)
BACKENDS = ("auto", "triton", "torch")
# The kernels add eps to a float32 variance: outside float32's normal range it
# would silently become 0 (a constant row then gives 0/0) or inf (y = bias).
_F32 = torch.finfo(torch.float32)


def check_input(op: str, name: str, t, like: torch.Tensor | None = None) -> None:
    """``t`` is a floating-point tensor (with ``like``'s shape, dtype, device if given)."""
    check_tensor(op, name, t)
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
        raise WrongTypeError(f"{op}: {name} must be a tensor or None, got {type(p).__name__}")
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
