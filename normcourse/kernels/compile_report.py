"""Compile the kernels for real GPUs without one, and report what the compiler made.

The Triton interpreter runs kernels with NumPy: it will happily run code that
the GPU compiler rejects, or that compiles into something slow.  Triton can
compile ahead of time for any NVIDIA target on a machine without a GPU::

    triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", 90, 32))

gives PTX (and a cubin).  Feeding the PTX to ``ptxas -v`` reports the
registers per thread and any *spills* (registers that did not fit and went to
slow local memory), and reading the PTX shows whether global loads are
vectorized (``ld.global.v4`` moves 16 bytes per instruction).  From the
registers, warps and shared memory follows how many CTAs fit on one SM
(:func:`normcourse.kernels.launch.resident_ctas`).

Nothing here mirrors the kernels by hand: :func:`captured_launches` runs the
real launchers on small CPU tensors with every kernel replaced by a recorder,
so the report compiles exactly the kernel, arguments, constexpr flags, warps
and register cap that a launch on a GPU would use, with each argument's type
as Triton's own runtime names it.  :func:`resource_report` does this for
every kernel at the given sizes; :func:`format_report` prints it as a table.
The benchmark command and the chapter "LayerNorm in Triton" show it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from typing import NamedTuple
from unittest import mock

import torch

from normcourse.kernels import launch, triton_norm, triton_norm_looped
from normcourse.kernels.launch import resident_ctas
from normcourse.runtime import triton_interpreted

__all__ = ["KERNELS", "KernelCase", "Launch", "CompileResult", "captured_launches",
           "compile_kernel", "compile_many", "resource_report", "format_report", "ptxas_path",
           "SM_LIMITS"]

_TYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
_DTYPE = {v: k for k, v in _TYPE.items()}
_ROWS = 3  # rows of the tensors the launchers are run on; any small number will do


class KernelCase(NamedTuple):
    """Which launch of which public op a report entry compiles."""

    op: str  # layer_norm, rms_norm, add_layer_norm, add_rms_norm
    backward: bool  # the backward's launches instead of the forward's
    launch: int = 0  # which of the launches (the backward's 1 is the partial-sum reduction)


KERNELS = {
    f"{op}_{d}": KernelCase(op, d == "bwd")
    for op in ("layer_norm", "add_layer_norm", "rms_norm", "add_rms_norm") for d in ("fwd", "bwd")
}
# The second stage of every backward: dW and dB partials summed and cast in one launch.
KERNELS["sum_partials"] = KernelCase("layer_norm", True, 1)

# Per-SM limits by compute capability (CUDA C++ Programming Guide, "Technical
# Specifications per Compute Capability"): threads, CTAs, shared memory bytes.
SM_LIMITS = {75: (1024, 16, 64 * 1024), 80: (2048, 32, 164 * 1024), 86: (1536, 16, 100 * 1024),
             89: (1536, 24, 100 * 1024), 90: (2048, 32, 228 * 1024)}


class Launch(NamedTuple):
    """One kernel launch as a launcher made it: the kernel, its grid and its arguments."""

    kernel: object  # the @triton.jit function (interpreted or not)
    grid: tuple
    args: tuple
    kwargs: dict


class _Recorder:
    """Stands in for a kernel: ``kernel[grid](*args, **kwargs)`` records instead of running."""

    def __init__(self, kernel, launches):
        self.kernel, self.launches = kernel, launches

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.launches.append(Launch(self.kernel, grid, args, kwargs))


def _kernels_of(module):
    from triton.runtime.jit import KernelInterface

    return {k: v for k, v in vars(module).items()
            if isinstance(v, KernelInterface) or type(v).__name__ == "InterpretedFunction"}


def _inputs(op, dtype, n, affine):
    """Random tensors for the launchers (values do not matter: nothing runs)."""
    x = torch.randn(_ROWS, n).to(dtype)
    residual = torch.randn_like(x) if op.startswith("add_") else None
    weight = torch.randn(n).to(dtype) if affine else None
    bias = torch.randn(n).to(dtype) if affine and "layer" in op else None
    return x, residual, weight, bias


def captured_launches(op: str, dtype: torch.dtype, n: int, affine: bool = True,
                      backward: bool = False) -> list[Launch]:
    """The kernel launches ``op`` makes on a CUDA device for ``(3, n)`` rows, recorded, not run."""
    is_rms = "rms" in op
    x, residual, weight, bias = _inputs(op, dtype, n, affine)
    launches: list[Launch] = []
    cuda = torch.device("cuda")

    def options(device, settings, ctas):  # the options a CUDA launch would get
        return launch.launch_options(cuda, settings, ctas)

    with ExitStack() as stack:
        for module in (triton_norm, triton_norm_looped):
            for name, kernel in _kernels_of(module).items():
                stack.enter_context(mock.patch.object(module, name, _Recorder(kernel, launches)))
            stack.enter_context(mock.patch.object(module, "launch_options", options))
        if not backward:
            triton_norm.norm_forward(x, residual, weight, bias, 1e-5, is_rms)
        else:
            mean = None if is_rms else torch.zeros(_ROWS)
            dres = torch.randn_like(x) if residual is not None else None
            triton_norm.norm_backward(torch.randn_like(x), dres, x, weight, bias, mean,
                                      torch.ones(_ROWS), is_rms)
    return launches


@dataclass
class CompileResult:
    """What the compiler made of one kernel at one configuration."""

    kernel: str  # a KERNELS name
    variant: str  # the kernel that ran: "row", "chunked" (long rows) or "sum" (partials)
    dtype: str
    n: int
    block_n: int  # BLOCK_N, CHUNK_N for the chunked kernels, BLOCK_COLS for the sum
    num_warps: int
    cc: int
    registers: int
    spill_stores: int  # bytes per thread written to local memory for lack of registers
    spill_loads: int
    vector_loads: str  # widest global load, e.g. "v4.b32" (16 bytes) or "b16" (scalar)
    affine: bool = True  # compiled with weight (and bias)
    maxnreg: int = 0  # register cap the launcher asked for (0: none)
    shared: int = 0  # shared memory bytes per CTA
    ctas_per_sm: int = 0  # CTAs that fit on one SM of this cc, from the above
    pipelined: bool = False  # global reads by cp.async (a software-pipelined loop, sm_80+)

    def as_dict(self) -> dict:
        return asdict(self)


def _jit_function(kernel):
    """The real ``JITFunction`` of a kernel, even when it was defined interpreted."""
    from triton.runtime.jit import JITFunction

    if isinstance(kernel, JITFunction):
        return kernel
    # Under TRITON_INTERPRET=1, @triton.jit returns an InterpretedFunction that
    # wraps the plain Python function; a JITFunction built from it compiles.
    return JITFunction(kernel.fn)


def ptxas_path(cc: int = 80) -> str | None:
    """The ``ptxas`` Triton itself uses for sm_``cc``, else one on PATH, else None.

    Triton's PTX can be newer than a system CUDA's ptxas accepts (Triton 3.9
    writes PTX 9.4, which CUDA 13.0's ptxas rejects), so Triton's own comes first.
    """
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        path = get_ptxas(cc).path
        if path and os.path.exists(path):
            return path
    except Exception:  # an older or newer Triton without this helper
        pass
    return shutil.which("ptxas")


def _ptxas_resources(ptx: str) -> tuple[int, int, int]:
    """(registers, spill store bytes, spill load bytes) from ``ptxas -v``."""
    arch = re.search(r"^\.target\s+(\S+)", ptx, re.M).group(1).rstrip(",")
    ptxas = ptxas_path(int(re.search(r"\d+", arch).group(0)))
    if ptxas is None:
        raise RuntimeError("ptxas not found (neither on PATH nor inside triton)")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        out = subprocess.run([ptxas, "-v", f"--gpu-name={arch}", src, "-o",
                              os.path.join(tmp, "k.cubin")],
                             capture_output=True, text=True, check=True)
    text = out.stdout + out.stderr
    regs = int(re.search(r"Used (\d+) registers", text).group(1))
    stores = int(re.search(r"(\d+) bytes spill stores", text).group(1))
    loads = int(re.search(r"(\d+) bytes spill loads", text).group(1))
    return regs, stores, loads


def _widest_load(ptx: str) -> str:
    """The widest global read in the PTX: an ``ld.global`` (width and type) or a ``cp.async``.

    A software-pipelined loop (``tl.range(..., num_stages=2)``) reads global
    memory with asynchronous copies into shared memory, ``cp.async`` of 4, 8
    or 16 bytes, named here ``cp.async.16`` and so on.
    """
    loads = re.findall(r"ld\.global(?:\.\w+)*?\.((?:v[248]\.)?[bfsu]\d+)", ptx)
    copies = re.findall(r"cp\.async\.\w+\.shared\.global\s*\[[^\]]*\],\s*\[[^\]]*\],\s*(\w+)",
                        ptx)

    def width(s):  # bits
        if s.startswith("cp.async."):
            return 8 * int(s.rsplit(".", 1)[1])
        v = int(s[1]) if s.startswith("v") else 1
        return v * int(re.search(r"(\d+)$", s).group(1))

    # Equally wide: the ld.global name comes first (max keeps the first).
    candidates = loads + [f"cp.async.{int(c, 0)}" for c in copies]
    return max(candidates, key=width) if candidates else "none"


def _source(recorded: Launch):
    """``(ASTSource, compile options)`` of a recorded launch, typed as Triton's runtime types it.

    Pointers are taken as 16-byte aligned and integers divisible by 16 marked
    so, as the runtime specializes them for fresh allocations.
    """
    from triton.compiler import ASTSource
    from triton.runtime.jit import mangle_type

    fn = _jit_function(recorded.kernel)
    params = [p.name for p in fn.params]
    values = dict(zip(params, recorded.args))
    constexprs = {k: v for k, v in recorded.kwargs.items() if k in params}
    options = {k: v for k, v in recorded.kwargs.items() if k not in params}
    signature, attrs = {}, {}
    for i, name in enumerate(params):
        if name in constexprs:
            signature[name] = "constexpr"
            continue
        value = values[name]
        signature[name] = mangle_type(value)
        if isinstance(value, torch.Tensor) or (isinstance(value, int) and value % 16 == 0):
            attrs[(i,)] = [["tt.divisibility", 16]]
    return ASTSource(fn, signature, constexprs, attrs), options


def _variant(recorded: Launch) -> str:
    name = _jit_function(recorded.kernel).fn.__name__
    return "sum" if "sum" in name else "chunked" if "looped" in name else "row"


def compile_kernel(name: str, dtype: torch.dtype, n: int, cc: int,
                   affine: bool = True) -> CompileResult:
    """Compile kernel ``name`` (a :data:`KERNELS` key) for rows of ``n`` features, for sm_``cc``.

    ``affine=False`` compiles the variant without weight and bias (the
    ``HAS_WEIGHT`` / ``HAS_BIAS`` branches switched off).
    """
    import triton
    from triton.backends.compiler import GPUTarget

    case = KERNELS[name]
    launches = captured_launches(case.op, dtype, n, affine, case.backward)
    if case.launch >= len(launches):
        raise ValueError(f"{name} makes no launch #{case.launch} at affine={affine} "
                         f"(it launches {len(launches)} kernels)")
    recorded = launches[case.launch]
    src, options = _source(recorded)
    compiled = triton.compile(src, target=GPUTarget("cuda", cc, 32), options=options)
    ptx = compiled.asm["ptx"]
    regs, stores, loads = _ptxas_resources(ptx)
    warps = options["num_warps"]
    threads, ctas, smem = SM_LIMITS.get(cc, SM_LIMITS[90])
    limits = dict(threads_per_sm=threads, ctas_limit=ctas, shared_per_sm=smem)
    shared = compiled.metadata.shared
    cap = options.get("maxnreg") or 0
    block = next(recorded.kwargs[k] for k in ("BLOCK_N", "CHUNK_N", "BLOCK_COLS")
                 if k in recorded.kwargs)
    return CompileResult(
        name, _variant(recorded), _TYPE[dtype], n, block, warps, cc, regs, stores, loads,
        _widest_load(ptx), affine, cap, shared, resident_ctas(warps, regs, shared, **limits),
        "cp.async" in ptx)


def resource_report(kernels=None, dtypes=(torch.float32, torch.bfloat16),
                    ns=(1024, 4096, 16384, 65536), ccs=(80,)) -> list[CompileResult]:
    """Compile every requested (kernel, dtype, N, cc) and collect the resources."""
    kernels = list(KERNELS) if kernels is None else list(kernels)
    return compile_many([(k, d, n, cc) for k in kernels for d in dtypes for n in ns
                         for cc in ccs])


def compile_many(jobs) -> list[CompileResult]:
    """Compile a list of ``(kernel, dtype, n, cc[, affine])`` jobs (dtype a torch dtype or "bf16").

    Under the interpreter, Triton's own ``@jit`` library functions (``tl.sum``
    and friends) are interpreter objects and cannot be compiled, so the work
    runs in a fresh Python with ``TRITON_INTERPRET=0``.
    """
    jobs = [(j[0], _TYPE.get(j[1], j[1]), int(j[2]), int(j[3]), bool(j[4]) if len(j) > 4 else True)
            for j in jobs]
    if not triton_interpreted():
        return [compile_kernel(k, _DTYPE[d], n, cc, a) for k, d, n, cc, a in jobs]
    env = dict(os.environ, TRITON_INTERPRET="0")
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9's default, minus its warning
    out = subprocess.run([sys.executable, "-m", "normcourse.kernels.compile_report"],
                         input=json.dumps(jobs), capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"ahead-of-time compilation failed:\n{out.stderr[-4000:]}")
    return [CompileResult(**r) for r in json.loads(out.stdout.strip().splitlines()[-1])]


def format_report(results: list[CompileResult]) -> str:
    """A plain-text table of :func:`resource_report`'s results.

    ``kind`` is "row" for the row-in-registers kernels, "chunked" for the
    looped kernels long rows use (BLOCK is then the chunk width) and "sum"
    for the partial-sum reduction.  ``cap`` is the launcher's register cap
    (maxnreg), ``CTAs/SM`` how many CTAs fit on one SM with the registers and
    shared memory ptxas reports, ``pipe`` whether a loop was software-pipelined
    (its loads are ``cp.async`` copies into shared memory).
    """
    head = (f"{'kernel':<20} {'kind':<8} {'dtype':<5} {'N':>6} {'BLOCK':>6} {'warps':>5} "
            f"{'sm':>3} {'regs':>4} {'cap':>4} {'spill st/ld':>12} {'smem':>6} {'CTAs/SM':>7} "
            f"{'widest load':>12} {'pipe':>4}")
    lines = [head, "-" * len(head)]
    for r in results:
        name = r.kernel if r.affine else r.kernel + " (no w)"
        lines.append(f"{name:<20} {r.variant:<8} {r.dtype:<5} {r.n:>6} {r.block_n:>6} "
                     f"{r.num_warps:>5} {r.cc:>3} {r.registers:>4} {r.maxnreg or '-':>4} "
                     f"{f'{r.spill_stores}/{r.spill_loads}':>12} {r.shared:>6} "
                     f"{r.ctas_per_sm:>7} {r.vector_loads:>12} {'yes' if r.pipelined else '-':>4}")
    return "\n".join(lines)


if __name__ == "__main__":
    # Worker for resource_report(): jobs as JSON on stdin, results as JSON on stdout.
    _jobs = json.loads(sys.stdin.read())
    _results = [compile_kernel(k, _DTYPE[d], n, cc, a).as_dict() for k, d, n, cc, a in _jobs]
    print(json.dumps(_results))
