"""Launch settings shared by every norm kernel: block size, warps, grid sizes.

One program normalizes one row, holding the whole row in registers, so the
block must cover the row: ``BLOCK_N`` is the next power of two >= N (Triton
blocks are powers of two; the mask hides the tail).  Registers are finite, so
the number of warps grows with the block to keep ~8-32 elements per thread.

Registers run out eventually: an SM has 64K of them.  Beyond
:data:`MAX_REGISTER_ROW_FORWARD` features (forward) and
:data:`MAX_REGISTER_ROW` (backward, which holds four row-sized vectors) the
compiler would spill to slow local memory, so *looped* kernels take over:
they walk the row in :func:`looped_settings` chunks and have no size limit.
The compile report (:mod:`normcourse.kernels.compile_report`) checks, with
``ptxas``, that no shipped configuration spills.
"""

from __future__ import annotations

import torch
import triton

MAX_REGISTER_ROW_FORWARD = 16384  # longest row the forward keeps in registers
MAX_REGISTER_ROW = 8192  # longest row the backward keeps in registers

__all__ = ["MAX_REGISTER_ROW_FORWARD", "MAX_REGISTER_ROW", "LaunchSettings", "row_settings",
           "forward_is_looped", "backward_is_looped", "looped_settings", "backward_programs",
           "as_rows", "as_vector", "rows_to_save"]


class LaunchSettings(tuple):
    """``(BLOCK_N, num_warps)`` for one row length."""

    __slots__ = ()

    def __new__(cls, block_n: int, num_warps: int):
        return super().__new__(cls, (block_n, num_warps))

    @property
    def block_n(self) -> int:
        return self[0]

    @property
    def num_warps(self) -> int:
        return self[1]


def row_settings(n: int) -> LaunchSettings:
    """Block size and warps of the row-in-registers kernels for rows of ``n`` features."""
    if n < 1:
        raise ValueError(f"the normalized dimension must have at least 1 feature, got {n}")
    block = triton.next_power_of_2(n)
    # About 8 elements per thread for small rows, up to 64 for the largest:
    # enough independent loads in flight to saturate memory, few enough
    # registers that nothing spills.
    if block >= 32768:
        warps = 32
    elif block >= 8192:
        warps = 16
    elif block >= 2048:
        warps = 8
    elif block >= 512:
        warps = 4
    else:
        warps = 2 if block >= 128 else 1
    return LaunchSettings(block, warps)


def forward_is_looped(n: int) -> bool:
    """True when the forward walks rows in chunks (rows beyond MAX_REGISTER_ROW_FORWARD)."""
    return triton.next_power_of_2(n) > MAX_REGISTER_ROW_FORWARD


def backward_is_looped(n: int) -> bool:
    """True when the backward walks rows in chunks instead of holding them in registers.

    The row-per-program backward holds four row-sized float32 vectors (x, dy
    and the dW/dB partial sums).  Beyond :data:`MAX_REGISTER_ROW` features
    that outgrows an SM's 64K registers and spills (ptxas says so: see
    :mod:`normcourse.kernels.compile_report`), so the chunked kernel of
    :mod:`normcourse.kernels.triton_norm_backward_looped` takes over.
    """
    return triton.next_power_of_2(n) > MAX_REGISTER_ROW


def looped_settings() -> LaunchSettings:
    """``(CHUNK_N, num_warps)`` of the chunked backward: 16 elements per thread and vector."""
    return LaunchSettings(4096, 8)


def backward_programs(rows: int, device: torch.device) -> int:
    """How many programs share the backward's rows (each keeps one dW/dB partial).

    On a GPU: one per streaming multiprocessor times a small factor, so every
    SM is busy and the partial buffer stays small (``programs x N`` floats).
    In the interpreter programs run one after another, so a few suffice.
    """
    if rows == 0:
        return 1
    if device.type == "cuda":
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        return max(1, min(rows, 2 * sms))
    return max(1, min(rows, 4))


def as_rows(t: torch.Tensor) -> torch.Tensor:
    """View ``t`` as ``(rows, N)`` with unit stride along N (copying only if needed).

    The kernels address element ``(i, j)`` as ``ptr + i * row_stride + j``, so
    they accept any row stride (a slice ``x[::2]``, even an expanded tensor
    with stride 0) but need the features to be contiguous.  A transposed or
    otherwise strided last dimension is copied here, never read wrongly.
    """
    rows = t.reshape(-1, t.shape[-1])
    if rows.stride(-1) != 1 and rows.shape[-1] > 1:
        rows = rows.contiguous()
    return rows


def as_vector(p: torch.Tensor | None) -> torch.Tensor | None:
    """A weight or bias as a contiguous ``(N,)`` vector (None stays None).

    The kernels read parameter ``j`` at ``ptr + j``: a strided view such as
    ``w[::2]`` would be read wrongly and an expanded one (stride 0, e.g.
    ``torch.tensor(0.5).expand(N)``) out of bounds.  Only ``N`` elements are
    copied, and only when needed.  Called inside the autograd Functions, so
    the gradient (a plain ``(N,)`` tensor of the same shape) still flows back
    to the caller's strided view.
    """
    return p.contiguous() if p is not None else None


def rows_to_save(t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """What a backward should save of input ``t``, given ``rows = as_rows(t)``.

    If ``rows`` is a view of ``t``, save ``t`` itself: autograd then tracks
    its version, and changing ``t`` in place before the backward raises the
    usual "modified by an inplace operation" error (a view made inside the
    forward, in no-grad mode, would raise a misleading "view created in
    no_grad mode" error instead).  If ``rows`` is a private copy, save that:
    nothing else can change it.  The backward calls :func:`as_rows` again.
    """
    return t if rows.untyped_storage().data_ptr() == t.untyped_storage().data_ptr() else rows
