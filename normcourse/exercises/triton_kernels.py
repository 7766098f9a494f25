"""Checker for the chapter "LayerNorm in Triton": the learner's RMSNorm forward kernel.

The learner writes a ``@triton.jit`` kernel with this signature, one program
per row::

    @triton.jit
    def rms_norm_kernel(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
        ...

``X`` and ``Y`` point to ``(M, N)`` rows ``stride`` elements apart, ``W`` to
the ``(N,)`` weight.  :func:`check_rms_norm_kernel` launches it itself (the
interpreter on CPU, the GPU on CUDA) and explains what went wrong.

Out-of-bounds access is made visible, and harmless: every row lives inside a
bigger buffer whose gaps are filled with NaN.  A load without its mask reads
NaN from the gap and the row's result turns NaN; a store without its mask
writes into the gap, which we check is untouched.  Nothing outside our own
allocation is ever read or written.
"""

from __future__ import annotations

from typing import Callable

import torch

from normcourse.exercises.feedback import Mistake, checker, close, max_error

__all__ = ["check_rms_norm_kernel", "launch_rms_norm_kernel"]

_GAP = 16  # NaN-filled elements after each row's block (and after the weight's)


def _padded(n: int) -> int:
    """Room for a whole block (the next power of two >= n) plus a gap."""
    return (1 << (n - 1).bit_length()) + _GAP


def _guarded_rows(x: torch.Tensor):
    """Rows of x inside a NaN-padded buffer: returns (buffer, view, stride)."""
    m, n = x.shape
    stride = _padded(n)
    buf = torch.full((m + 1, stride), float("nan"), dtype=x.dtype, device=x.device)
    view = buf[:m, :n]
    view.copy_(x)
    return buf, view, stride


def launch_rms_norm_kernel(kernel, x, weight, eps=1e-6):
    """Launch a learner's ``rms_norm_kernel`` on 2-D ``x``; return ``(y, out_buffer, stride)``."""
    import triton

    m, n = x.shape
    _, xv, stride = _guarded_rows(x)
    wbuf = torch.full((_padded(n),), float("nan"), dtype=weight.dtype, device=x.device)
    wbuf[:n].copy_(weight)
    ybuf = torch.full((m + 1, stride), float("nan"), dtype=x.dtype, device=x.device)
    # A sentinel (not NaN) in the gaps of the output: a stray store changes it.
    ybuf[:, n:] = 7.0
    ybuf[m:] = 7.0
    kernel[(m,)](xv, ybuf, wbuf, stride, n, eps, BLOCK_N=triton.next_power_of_2(n))
    return ybuf[:m, :n], ybuf, stride


def _reference(x, w, eps):
    x64 = x.double()
    return x64 * torch.rsqrt((x64 * x64).mean(-1, keepdim=True) + eps) * w.double()


def _run(kernel, x, w, eps, label):
    try:
        y, ybuf, stride = launch_rms_norm_kernel(kernel, x, w, eps)
    except Exception as err:  # the learner's kernel failed to compile or run
        if "NotImplementedError" in f"{type(err).__name__}: {err}":
            raise Mistake("your kernel is not implemented yet.",
                          "replace `raise NotImplementedError` with the kernel body.") from None
        msg = str(err).strip().splitlines()
        raise Mistake(f"your kernel failed on the {label}: {type(err).__name__}: "
                      f"{msg[-1] if msg else ''}",
                      "check the signature rms_norm_kernel(X, Y, W, stride, N, eps, "
                      "BLOCK_N: tl.constexpr), and that shapes inside the kernel are BLOCK_N "
                      "long.") from None
    m, n = x.shape
    gaps = torch.cat([ybuf[:, n:].reshape(-1), ybuf[m:].reshape(-1)])
    if not (gaps == 7.0).all():
        raise Mistake(f"your kernel wrote outside the rows on the {label} (N = {n}, not a "
                      "power of two).",
                      "the block has BLOCK_N >= N lanes: pass mask=cols < N to tl.store too.")
    return y


@checker
def check_rms_norm_kernel(kernel: Callable) -> str:
    """Check a learner's ``@triton.jit`` RMSNorm forward kernel (see the module docstring)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator().manual_seed(1910)

    # A power-of-two row first: no mask needed, so only the math is tested.
    for (m, n, label) in ((4, 64, "4 x 64 input"), (5, 100, "5 x 100 input"),
                          (3, 1, "3 x 1 input")):
        x = (torch.randn(m, n, generator=g) + 0.5).to(device)
        w = (torch.randn(n, generator=g) * 0.5 + 1).to(device)
        y = _run(kernel, x, w, 1e-6, label)
        ref = _reference(x, w, 1e-6)
        if close(y, ref, atol=1e-5, rtol=1e-4):
            continue
        if y.isnan().any():
            if n & (n - 1):
                raise Mistake(f"your output on the {label} contains NaN: the kernel read past "
                              "the end of the row (the block has BLOCK_N lanes, N is smaller).",
                              "load with mask=cols < N and other=0.0, so padding lanes add "
                              "nothing to the sum of squares.")
            raise Mistake(f"your output on the {label} contains NaN.",
                          "is eps inside the square root? Do you load the weight with the "
                          "row's column offsets?")
        if (y == 0).all():
            raise Mistake(f"your output on the {label} is all zeros.",
                          "did you tl.store the result to Y + row * stride + cols?")
        x64 = x.double()
        wrong = {
            "you used the sum of squares; RMSNorm uses their mean (divide by N, not BLOCK_N).":
                x64 * torch.rsqrt((x64 * x64).sum(-1, keepdim=True) + 1e-6) * w.double(),
            "the weight is missing.": _reference(x, torch.ones_like(w), 1e-6),
            "you subtracted the mean: that is LayerNorm.":
                _reference(x - x.mean(-1, keepdim=True), w, 1e-6),
        }
        nb = 1 << (n - 1).bit_length()
        wrong["you divided by BLOCK_N instead of N: padding lanes are not features."] = \
            x64 * torch.rsqrt((x64 * x64).sum(-1, keepdim=True) / nb + 1e-6) * w.double()
        for what, candidate in wrong.items():
            if close(y, candidate, atol=1e-4, rtol=1e-3):
                raise Mistake(f"{what} (on the {label})",
                              "rstd = 1 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps).")
        raise Mistake(f"your output on the {label} is wrong (max error "
                      f"{max_error(y, ref):.3g}).",
                      "row = tl.program_id(0); cols = tl.arange(0, BLOCK_N); load X + row * "
                      "stride + cols; y = x * rstd * w.")

    # bfloat16: statistics must be computed in float32.
    x = (torch.randn(6, 200, generator=g) * 3).to(device, torch.bfloat16)
    w = (torch.randn(200, generator=g) * 0.5 + 1).to(device, torch.bfloat16)
    y = _run(kernel, x, w, 1e-6, "bfloat16 input")
    if y.dtype != torch.bfloat16:
        raise Mistake("your bfloat16 output changed dtype.", "store y.to(Y.dtype.element_ty).")
    ref = _reference(x, w, 1e-6)
    tol = 2 * max_error(torch.nn.functional.rms_norm(x, (200,), w, 1e-6), ref) + 3e-2
    if not close(y, ref, atol=tol):
        raise Mistake(f"your bfloat16 output is off by {max_error(y, ref):.3g} (allowed "
                      f"{tol:.2g}).",
                      "convert the loaded values to float32 with .to(tl.float32) before summing.")
    where = "the GPU" if device == "cuda" else "the Triton interpreter (CPU)"
    return (f"check_rms_norm_kernel: your kernel is correct on 4 shapes, including N not a "
            f"power of two and bfloat16, with no access outside the rows (ran on {where}).")
