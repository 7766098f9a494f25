"""How close is close enough: the tolerance rule for low-precision kernels.

The rule (flash-attention's Triton layer norm tests): a kernel's error against
a float64 reference, computed on the same rounded inputs, may be at most about
twice PyTorch's own error in the same dtype, plus a small absolute slack
scaled by the reference's magnitude::

    max|ours - ref| <= 2 * max|torch - ref| + ATOL[dtype] * max(1, max|ref|)

PyTorch's error is the yardstick because it is what a user already accepts:
float32 lands far below it, and bfloat16's rounding of the output alone is
about 4e-3 relative.  NaN never passes, and neither does an output of the
wrong shape.  The kernel tests and the benchmark's correctness gate both use
:func:`compare`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["ATOL", "FACTOR", "Closeness", "max_error", "compare", "assert_close_to_reference"]

FACTOR = 2.0  # how many times PyTorch's own error a kernel may make
# Floor below which any difference is fine, relative to max |reference|.
ATOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


class Closeness(NamedTuple):
    """One comparison: the error, what was allowed, and PyTorch's own error."""

    ok: bool
    error: float
    allowed: float
    torch_error: float

    def describe(self) -> str:
        verdict = "within" if self.ok else "OUTSIDE"
        return (f"error {self.error:.3g} {verdict} the allowed {self.allowed:.3g} "
                f"(PyTorch's own error {self.torch_error:.3g})")


def max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a - b|`` in float64; NaN if either holds a NaN (so it never passes)."""
    if a.numel() == 0:
        return 0.0
    diff = (a.double() - b.double()).abs()
    return float("nan") if diff.isnan().any() else diff.max().item()


def compare(ours: torch.Tensor, theirs: torch.Tensor, reference: torch.Tensor,
            dtype: torch.dtype | None = None) -> Closeness:
    """Is ``ours`` as close to ``reference`` as the rule allows, given PyTorch's ``theirs``?

    ``dtype`` is the precision of the computation (by default ``ours.dtype``);
    it picks the absolute slack from :data:`ATOL`.
    """
    dtype = dtype or ours.dtype
    if dtype not in ATOL:
        raise ValueError(f"dtype must be one of {', '.join(map(str, ATOL))}, got {dtype}")
    if ours.shape != reference.shape:
        return Closeness(False, float("inf"), 0.0, float("nan"))
    scale = reference.abs().max().item() if reference.numel() else 0.0
    torch_error = max_error(theirs, reference)
    allowed = FACTOR * torch_error + ATOL[dtype] * max(1.0, scale)
    error = max_error(ours, reference)
    return Closeness(bool(error <= allowed), error, allowed, torch_error)


def assert_close_to_reference(name: str, ours, theirs, reference, dtype=None) -> None:
    """Raise an AssertionError naming ``name`` unless :func:`compare` accepts ``ours``."""
    c = compare(ours, theirs, reference, dtype)
    if not c.ok:
        shape = tuple(reference.shape)
        raise AssertionError(f"{name} {shape} {dtype or ours.dtype}: {c.describe()}")
