"""Checkers for the chapters "LayerNorm in Triton" and "Fusing the residual add".

Normalization is memory-bound, so its cost is the bytes it moves.  Two
checkers ask the learner to count them, with the same model as
:func:`normcourse.bench.minimal_bytes`: every row-sized tensor read or
written once (``element_size`` bytes per element), each parameter read once
(``N`` elements, not once per row), and one float32 (4 bytes) per row for
each saved statistic.

- :func:`check_layer_norm_bytes` (chapter 6): ``fn(m, n, element_size)``, the
  bytes of the LayerNorm forward.
- :func:`check_add_norm_bytes` (chapter 7): ``fn(m, n, element_size, fused)``,
  the bytes of ``residual_out = x + residual; y = rms_norm(residual_out)``,
  in one kernel (``fused=True``) or as an add kernel, then an RMSNorm kernel.
- :func:`check_add_rms_norm_backward` (chapter 7): the backward of the fused
  op, ``fn(x, residual, weight, eps, dy, dres) -> (dx, dresidual, dweight)``,
  checked against float64 autograd.
"""

from __future__ import annotations

from typing import Callable

import torch

from normcourse.exercises.feedback import (
    Mistake, as_number, call_learner, checker, close, expect_tensor, float32_error, is_mistake,
    max_error,
)

__all__ = ["layer_norm_bytes", "add_norm_bytes", "check_layer_norm_bytes",
           "check_add_norm_bytes", "check_add_rms_norm_backward"]

_CASES = ((4096, 4096, 2), (4096, 1024, 4), (1, 1, 2), (300, 768, 1))


def layer_norm_bytes(m: int, n: int, element_size: int) -> int:
    """Bytes the LayerNorm forward moves: x in, y out, weight and bias, mean and rstd."""
    return 2 * m * n * element_size + 2 * n * element_size + 2 * m * 4


def add_norm_bytes(m: int, n: int, element_size: int, fused: bool) -> int:
    """Bytes of ``s = x + residual; y = rms_norm(s)`` (forward), fused or not.

    Fused: read x and residual, write residual_out and y (4 row passes).
    Unfused: the add reads x and residual and writes s (3), then RMSNorm reads
    s and writes y (2).  Both read the weight once and write rstd (4 bytes/row).
    """
    rows = 4 if fused else 5
    return rows * m * n * element_size + n * element_size + m * 4


def _count(fn, *args) -> int:
    """The learner's byte count for one shape, as an int (NumPy and tensor integers too)."""
    return as_number(call_learner(fn, *args, name="your function"), "your count of bytes",
                     whole=True, shape_hint="count the bytes of the whole operation: one number.")


# Known wrong ways to count the LayerNorm forward, as formulas of (m, n, element_size).
# A mistake is named only when the learner's count follows its formula on *every*
# test shape: on a single shape two of them can give the same number (with
# element_size 2, two float32 statistics in element_size bytes each weigh as much as
# one float32 statistic).
_LN_BYTES_MISTAKES = (
    (lambda m, n, e: 2 * m * n * e,
     "you counted x and y but not the weight, the bias, or the saved mean and rstd."),
    (lambda m, n, e: 2 * m * n * e + 2 * n * e,
     "the saved statistics are missing: the forward writes a float32 mean and rstd per row "
     "(8 bytes per row) for the backward."),
    (lambda m, n, e: 2 * m * n * e + 2 * m * 4,
     "the weight and bias are missing: each is read once (N elements)."),
    (lambda m, n, e: 4 * m * n * e + 2 * m * 4,
     "you read the weight and bias once per row: a parameter is N elements, read once."),
    (lambda m, n, e: 2 * m * n * e + 2 * n * e + 2 * m * e,
     "the statistics are float32 (4 bytes each), whatever the input's dtype."),
    (lambda m, n, e: m * n * e + 2 * n * e + 2 * m * 4,
     "count the output too: y is written (M x N elements)."),
    (lambda m, n, e: 2 * m * n * e + 2 * n * e + m * 4,
     "LayerNorm saves two statistics per row (mean and rstd)."),
    (lambda m, n, e: 2 * m * n + 2 * n + 2 * m,
     "you counted elements, not bytes."),
    (lambda m, n, e: layer_norm_bytes(m, n, e) // e,
     "you counted elements, not bytes."),
)


@checker
def check_layer_norm_bytes(fn: Callable) -> str:
    """Check ``fn(m, n, element_size)``: the bytes the LayerNorm forward must move."""
    counts = [(case, _count(fn, *case)) for case in _CASES]
    wrong = [(case, got) for case, got in counts if got != layer_norm_bytes(*case)]
    if not wrong:
        return ("check_layer_norm_bytes: your count matches on 4 shapes and dtypes "
                "(x, y, weight, bias and two float32 statistics per row).")
    (m, n, e), got = wrong[0]
    label = f"M={m}, N={n}, element_size={e}"
    hint = "x in and y out are M*N elements each; weight and bias N each; 2 float32 per row."
    named = {what for formula, what in _LN_BYTES_MISTAKES
             if all(formula(*case) == count for case, count in counts)}
    if len(named) == 1:
        what = named.pop()
        raise Mistake(f"{what} (for {label})",
                      "multiply by element_size (4 bytes per float32 statistic)."
                      if "elements, not bytes" in what else hint)
    raise Mistake(f"for {label} you counted {got:,} bytes; the forward moves "
                  f"{layer_norm_bytes(m, n, e):,}.", hint)


@checker
def check_add_norm_bytes(fn: Callable) -> str:
    """Check ``fn(m, n, element_size, fused)``: bytes of add + RMSNorm, fused or unfused."""
    for m, n, e in _CASES:
        label = f"M={m}, N={n}, element_size={e}"
        for fused in (True, False):
            got = _count(fn, m, n, e, fused)
            want = add_norm_bytes(m, n, e, fused)
            if got == want:
                continue
            kind = "fused" if fused else "unfused"
            row = m * n * e
            extra = n * e + m * 4
            if fused and got == 3 * row + extra:
                raise Mistake(f"the fused kernel must also write residual_out (for {label}).",
                              "the next block's skip connection needs x + residual: the fused "
                              "kernel reads 2 row tensors and writes 2.")
            if not fused and got == 4 * row + extra:
                raise Mistake(f"your unfused count equals the fused one (for {label}).",
                              "unfused, the sum s is written by the add kernel and read back by "
                              "the norm kernel: one more row pass.")
            if not fused and got == 6 * row + extra:
                raise Mistake(f"unfused, you counted a read of x and residual by the norm "
                              f"kernel, or s written twice (for {label}).",
                              "add: read x, residual, write s (3). RMSNorm: read s, write y (2).")
            if got == _rows_only(m, n, e, fused):
                raise Mistake(f"the weight (N elements, read once) and the float32 rstd per row "
                              f"are missing from your {kind} count (for {label}).",
                              "add n * element_size + m * 4.")
            raise Mistake(f"{kind}, for {label}, you counted {got:,} bytes; it moves {want:,}.",
                          "count row-sized tensors (M*N elements each): fused reads 2 and writes "
                          "2; unfused 3 in the add and 2 in the norm. Then the weight once and "
                          "4 bytes of rstd per row.")
    saved = add_norm_bytes(4096, 4096, 2, False) - add_norm_bytes(4096, 4096, 2, True)
    return (f"check_add_norm_bytes: fused and unfused counts match on 4 shapes; at M=N=4096 in "
            f"bfloat16 fusing saves {saved:,} bytes per forward.")


def _rows_only(m, n, e, fused):
    return (4 if fused else 5) * m * n * e


def _reference_backward(x, r, w, eps, dy, dres):
    x64, r64, w64 = (t.detach().double().requires_grad_(True) for t in (x, r, w))
    s = x64 + r64
    y = s * torch.rsqrt((s * s).mean(-1, keepdim=True) + eps) * w64
    torch.autograd.backward([y, s], [dy.double(), dres.double()])
    return x64.grad, r64.grad, w64.grad


def _formula_backward(x, r, w, eps, dy, dres):
    """The hand-derived backward in the inputs' own dtype (to measure float32's error)."""
    s = x + r
    rstd = torch.rsqrt((s * s).mean(-1, keepdim=True) + eps)
    x_hat = s * rstd
    g = dy * w
    ds = rstd * (g - x_hat * (g * x_hat).mean(-1, keepdim=True)) + dres
    return ds, ds, (dy * x_hat).reshape(-1, s.shape[-1]).sum(0)


def _unpack(out):
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        raise Mistake("your function should return three tensors: (dx, dresidual, dweight).",
                      "return dx, dresidual, dweight")
    return out


@checker
def check_add_rms_norm_backward(fn: Callable) -> str:
    """Check ``fn(x, residual, weight, eps, dy, dres) -> (dx, dresidual, dweight)``."""
    g = torch.Generator().manual_seed(2607)
    shapes = ((4, 16), (2, 3, 40), (5, 1))
    for shape in shapes:
        n = shape[-1]
        x = torch.randn(*shape, generator=g, dtype=torch.float64)
        r = torch.randn(*shape, generator=g, dtype=torch.float64) * 2
        w = torch.randn(n, generator=g, dtype=torch.float64) * 0.5 + 1
        dy = torch.randn(*shape, generator=g, dtype=torch.float64)
        dres = torch.randn(*shape, generator=g, dtype=torch.float64)
        eps = 1e-6
        dx, dr, dw = _unpack(call_learner(fn, x, r, w, eps, dy, dres, name="your backward"))
        label = f"the {'x'.join(map(str, shape))} input"
        ref_dx, ref_dr, ref_dw = _reference_backward(x, r, w, eps, dy, dres)
        expect_tensor(dx, x, name="dx")
        expect_tensor(dr, r, name="dresidual")
        expect_tensor(dw, w, name="dweight",
                      shape_hint="dweight has the weight's shape (N,): sum over every leading "
                                 "dimension.")
        # float64 inputs, but float32 math inside (cast back) is fine: allow a few times
        # the error the same formula makes in float32 on this input, per output.
        tol_dx, tol_dr, tol_dw = (4 * err + 1e-9 for err in
                                  float32_error(_formula_backward, x, r, w, eps, dy, dres))
        if not close(dw, ref_dw, atol=tol_dw):
            raise Mistake(f"dweight is wrong on {label} (max error {max_error(dw, ref_dw):.3g}).",
                          "dweight = sum over all rows of dy * x_hat, with x_hat = s * rstd and "
                          "s = x + residual.")
        if not close(dx, ref_dx, atol=tol_dx):
            if is_mistake(dx, ref_dx - dres, ref_dx, atol=tol_dx):
                raise Mistake(f"dx is missing the gradient of residual_out on {label}.",
                              "residual_out = x + residual is an output too: add dres to the "
                              "gradient that comes back through the norm.")
            if is_mistake(dx, dres, ref_dx, atol=tol_dx):
                raise Mistake(f"dx is only dres on {label}: the path through the norm is missing.",
                              "ds = rstd * (g - x_hat * mean(g * x_hat)) + dres, g = dy * weight.")
            raise Mistake(f"dx is wrong on {label} (max error {max_error(dx, ref_dx):.3g}).",
                          "ds = rstd * (g - x_hat * mean(g * x_hat, -1)) + dres, with "
                          "g = dy * weight; then dx = ds.")
        if not close(dr, ref_dr, atol=tol_dr):
            if (dr == 0).all():
                raise Mistake(f"dresidual is zero on {label}, but the residual feeds the sum too.",
                              "s = x + residual: ds/dx = ds/dresidual = 1, so dresidual = dx.")
            raise Mistake(f"dresidual is wrong on {label} (max error "
                          f"{max_error(dr, ref_dr):.3g}).",
                          "s = x + residual: the residual gets exactly the same gradient as x.")
    return ("check_add_rms_norm_backward: dx, dresidual and dweight match float64 autograd on "
            "3 shapes; x and the residual get the same gradient.")
