"""Launch settings shared by every norm kernel: block size, warps, registers, grid sizes.

One program normalizes one row, holding the whole row in registers, so the
block must cover the row: ``BLOCK_N`` is the next power of two >= N (Triton
blocks are powers of two; the mask hides the tail).  The number of warps grows
with the block to keep ~8-32 elements per thread.

Registers are the budget.  An SM has 64K 32-bit registers (every NVIDIA GPU
from sm_75 to sm_90: CUDA C++ Programming Guide, "Technical Specifications
per Compute Capability"), shared by every thread resident on it.  A kernel
that needs ``r`` registers per thread in CTAs of ``t`` threads fits
``65536 // (r * t)`` CTAs per SM (:func:`resident_ctas`).  Two resident CTAs
let one CTA's loads overlap the other's reductions, so the launchers *cap*
the registers (``maxnreg``, :func:`register_cap`) to keep the occupancy they
count on, and the compile report (:mod:`normcourse.kernels.compile_report`)
checks with ``ptxas`` that no shipped configuration spills under that cap.

Registers run out eventually: beyond :data:`MAX_REGISTER_ROW_FORWARD`
features (forward: 32 float32 values per thread at 32 warps) and
:data:`MAX_REGISTER_ROW` (backward, which holds four row-sized vectors) the
*looped* kernels take over: they walk the row in :func:`looped_settings`
chunks and have no size limit.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton

MAX_REGISTER_ROW_FORWARD = 32768  # longest row the forward keeps in registers (aligned rows)
MAX_UNALIGNED_REGISTER_ROW_FORWARD = 16384  # the same when rows are not 16-byte aligned
MAX_REGISTER_ROW = 8192  # longest row the backward keeps in registers
REGISTERS_PER_SM = 65536  # sm_75 ... sm_90
MAX_REGISTERS_PER_THREAD = 255
# In the interpreter programs run one after another: a few backward programs suffice.
INTERPRETER_BACKWARD_PROGRAMS = 4

__all__ = ["MAX_REGISTER_ROW_FORWARD", "MAX_UNALIGNED_REGISTER_ROW_FORWARD", "MAX_REGISTER_ROW",
           "LaunchSettings", "row_settings", "forward_is_looped", "backward_is_looped",
           "looped_settings", "forward_ctas_per_sm", "backward_ctas_per_sm", "register_cap",
           "resident_ctas", "rows_aligned", "backward_programs", "launch_options", "as_rows",
           "as_vector", "rows_to_save"]


class LaunchSettings(NamedTuple):
    """``(block_n, num_warps)``: the block of columns one program holds, and its warps."""

    block_n: int
    num_warps: int


def row_settings(n: int) -> LaunchSettings:
    """Block size and warps of the row-in-registers kernels for rows of ``n`` features."""
    if n < 1:
        raise ValueError(f"the normalized dimension must have at least 1 feature, got {n}")
    block = triton.next_power_of_2(n)
    # About 8 elements per thread for small rows, up to 32 for the largest:
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


def forward_is_looped(n: int, *, aligned: bool | None = None) -> bool:
    """True when the forward walks rows in chunks instead of holding them in registers.

    Rows beyond :data:`MAX_REGISTER_ROW_FORWARD` features are chunked, and
    so are rows beyond :data:`MAX_UNALIGNED_REGISTER_ROW_FORWARD` that are
    not 16-byte aligned (:func:`rows_aligned`): without vector loads every
    element needs its own address registers, and the 32-warp row kernel
    spills.  ``aligned`` defaults to ``n % 16 == 0``, what contiguous rows
    of fresh tensors give.
    """
    aligned = n % 16 == 0 if aligned is None else aligned
    limit = MAX_REGISTER_ROW_FORWARD if aligned else MAX_UNALIGNED_REGISTER_ROW_FORWARD
    return triton.next_power_of_2(n) > limit


def backward_is_looped(n: int) -> bool:
    """True when the backward walks rows in chunks instead of holding them in registers.

    The row-per-program backward holds four row-sized float32 vectors (x, dy
    and the dW/dB partial sums).  Beyond :data:`MAX_REGISTER_ROW` features
    that outgrows the registers and spills (ptxas says so: see
    :mod:`normcourse.kernels.compile_report`), so the chunked kernel of
    :mod:`normcourse.kernels.triton_norm_looped` takes over.
    """
    return triton.next_power_of_2(n) > MAX_REGISTER_ROW


def looped_settings() -> LaunchSettings:
    """``(CHUNK_N, num_warps)`` of the chunked kernels: 16 elements per thread and vector."""
    return LaunchSettings(4096, 8)


def forward_ctas_per_sm(settings: LaunchSettings, aligned: bool = True) -> int:
    """CTAs per SM the forward's register cap guarantees: 2 for the 16384-wide block, else 1.

    At BLOCK_N = 16384 (16 warps, 32 elements per thread; rows of 8193-16384
    features) ptxas would give the fused LayerNorm forward 97 registers per
    thread: one CTA per SM.  Capped at 64 it does not spill and two CTAs fit,
    when the rows are aligned (unaligned rows need their registers for
    addresses: no cap).  Smaller blocks fit two or more CTAs without a cap
    (a cap there only makes ptxas schedule worse), and two CTAs of 32 warps
    would leave 32 registers for 32 row elements per thread: those run one
    CTA per SM.
    """
    per_thread = settings.block_n // (32 * settings.num_warps)
    return 2 if settings.num_warps == 16 and per_thread == 32 and aligned else 1


def backward_ctas_per_sm(settings: LaunchSettings, threads_per_sm: int = 2048,
                         aligned: bool = True) -> int:
    """CTAs per SM the backward is built for (its program count is SMs times this).

    The backward holds five row-sized float32 vectors per thread (x, dy, the
    weight and the two partial sums).  ptxas fits them (see
    :mod:`normcourse.kernels.compile_report`) in

    - 64 registers: up to 4 elements per thread, or 8 when the rows are
      16-byte aligned (:func:`rows_aligned`: 16-byte vector loads, one
      address each);
    - 128 registers: 8 elements per thread, or 16 when aligned;
    - no cap: 16 unaligned elements per thread (the chunked kernel, the
      4096-8192 row kernels) take up to 219 registers, one CTA per SM.

    The CTAs per SM follow from that budget, the threads an SM holds (2048
    on sm_80/sm_90, 1024 on sm_75) and at most 16 CTAs (sm_75's limit).
    """
    threads = 32 * settings.num_warps
    per_thread = settings.block_n // threads
    if per_thread <= 4 or (per_thread <= 8 and aligned):
        budget = 64
    elif per_thread <= 8 or aligned:
        budget = 128
    else:
        return 1
    return max(1, min(16, threads_per_sm // threads, REGISTERS_PER_SM // (budget * threads)))


def register_cap(settings: LaunchSettings, ctas_per_sm: int) -> int:
    """Registers per thread (``maxnreg``) that let ``ctas_per_sm`` CTAs share an SM.

    Rounded down to a multiple of 8 (the allocation granularity), at most 255.
    """
    threads = 32 * settings.num_warps
    per_thread = REGISTERS_PER_SM // (threads * ctas_per_sm)
    return min(MAX_REGISTERS_PER_THREAD, per_thread - per_thread % 8)


def resident_ctas(num_warps: int, registers: int, shared_bytes: int = 0, *,
                  registers_per_sm: int = REGISTERS_PER_SM, threads_per_sm: int = 2048,
                  ctas_limit: int = 32, shared_per_sm: int = 228 * 1024) -> int:
    """How many CTAs of ``num_warps`` warps fit on one SM (the occupancy calculator's rule).

    Registers are allocated per warp in units of 256 (``registers`` per thread
    rounded up to 8, times 32 lanes); every CTA also reserves 1 KiB of shared
    memory on sm_80 and later.  The defaults are sm_90's (H100/H200): 2048
    threads, 32 CTAs and 228 KiB of shared memory per SM (CUDA C++ Programming
    Guide, "Technical Specifications per Compute Capability").
    """
    per_warp = -(-registers * 32 // 256) * 256
    by_registers = registers_per_sm // (per_warp * num_warps)
    by_threads = threads_per_sm // (32 * num_warps)
    by_shared = shared_per_sm // (shared_bytes + 1024) if shared_bytes else ctas_limit
    return max(0, min(by_registers, by_threads, by_shared, ctas_limit))


def rows_aligned(n: int, *rows: torch.Tensor | None) -> bool:
    """True when every row of every 2-D tensor starts 16 bytes aligned (vector loads).

    Triton's runtime specializes a kernel on it: pointers 16-byte aligned and
    integer arguments (``N``, the row strides) divisible by 16.
    """
    return n % 16 == 0 and all(t.stride(0) % 16 == 0 and t.data_ptr() % 16 == 0
                               for t in rows if t is not None)


def backward_programs(rows: int, device: torch.device,
                      settings: LaunchSettings | None = None, aligned: bool = True) -> int:
    """How many programs share the backward's rows (each keeps one dW/dB partial).

    On a GPU: every SM gets as many programs as fit on it at once
    (:func:`backward_ctas_per_sm` of the backward's ``settings``), so all SMs
    stay busy in one wave while the partial buffer stays small
    (``programs x N`` floats).  In the interpreter programs run one after
    another, so :data:`INTERPRETER_BACKWARD_PROGRAMS` suffice.  Never more
    programs than rows.
    """
    if rows == 0:
        return 1
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        threads = getattr(props, "max_threads_per_multi_processor", 2048)
        ctas = backward_ctas_per_sm(settings or LaunchSettings(1024, 4), threads, aligned)
        return max(1, min(rows, props.multi_processor_count * ctas))
    return max(1, min(rows, INTERPRETER_BACKWARD_PROGRAMS))


def launch_options(device: torch.device, settings: LaunchSettings,
                   ctas_per_sm: int | None) -> dict:
    """Keyword arguments of a kernel launch: warps, and on NVIDIA GPUs the register cap.

    ``ctas_per_sm`` is the occupancy to guarantee (:func:`register_cap`), or
    None for no cap.
    The cap is passed only where it binds (below the 255 registers, or the
    ``65536 / threads`` that one CTA may use anyway): ptxas schedules a
    little differently under any ``maxnreg``.  ``maxnreg`` is an NVIDIA
    backend option; the interpreter ignores it and AMD's backend has none, so
    it is passed only to CUDA (not ROCm) devices.
    """
    options = {"num_warps": settings.num_warps}
    cap = register_cap(settings, ctas_per_sm) if ctas_per_sm else MAX_REGISTERS_PER_THREAD
    if cap < register_cap(settings, 1) and device.type == "cuda" and torch.version.hip is None:
        options["maxnreg"] = cap
    return options


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
