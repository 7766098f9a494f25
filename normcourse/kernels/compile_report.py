"""Compile the kernels for real GPUs without one, and report what the compiler made.

The Triton interpreter runs kernels with NumPy: it will happily run code that
the GPU compiler rejects, or that compiles into something slow.  Triton can
compile ahead of time for any NVIDIA target on a machine without a GPU::

    triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", 80, 32))

gives PTX (and a cubin).  Feeding the PTX to ``ptxas -v`` reports the
registers per thread and any *spills* (registers that did not fit and went to
slow local memory), and reading the PTX shows whether global loads are
vectorized (``ld.global.v4`` moves 16 bytes per instruction).

:func:`resource_report` does this for every kernel at the block sizes the
launcher picks; :func:`format_report` prints it as a table.  The benchmark
command and the chapter "LayerNorm in Triton" show it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass

import torch

from normcourse.kernels import (triton_layer_norm, triton_norm_backward_looped,
                                triton_norm_forward_looped, triton_rms_norm)
from normcourse.kernels.launch import (backward_is_looped, forward_is_looped, looped_settings,
                                       row_settings)
from normcourse.runtime import triton_interpreted

__all__ = ["KERNELS", "CompileResult", "compile_kernel", "compile_many", "resource_report",
           "format_report", "ptxas_path"]

_TYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
_DTYPE = {v: k for k, v in _TYPE.items()}


def _fwd_signature(t: str, kind: str) -> dict:
    sig = {"X": f"*{t}", "R": f"*{t}", "RES_OUT": f"*{t}", "Y": f"*{t}", "W": f"*{t}"}
    if kind == "layer_norm":
        sig.update({"B": f"*{t}", "MEAN": "*fp32"})
    sig.update({"RSTD": "*fp32", "stride_x": "i32", "stride_r": "i32", "N": "i32",
                "eps": "fp32"})
    return sig


def _bwd_signature(t: str, kind: str) -> dict:
    sig = {"X": f"*{t}", "DY": f"*{t}", "DRES": f"*{t}", "DX": f"*{t}", "W": f"*{t}"}
    if kind == "layer_norm":
        sig["MEAN"] = "*fp32"
    sig.update({"RSTD": "*fp32", "DW_PARTIAL": "*fp32"})
    if kind == "layer_norm":
        sig["DB_PARTIAL"] = "*fp32"
    sig.update({"stride_x": "i32", "stride_dy": "i32", "stride_dres": "i32", "M": "i32",
                "N": "i32", "rows_per_program": "i32"})
    return sig


# name -> (module, kernel attribute, signature builder, norm kind, constexpr flags)
KERNELS = {
    "layer_norm_fwd": (triton_layer_norm, "_layer_norm_fwd_kernel", _fwd_signature, "layer_norm",
                       {"HAS_RESIDUAL": False, "HAS_WEIGHT": True, "HAS_BIAS": True}),
    "add_layer_norm_fwd": (triton_layer_norm, "_layer_norm_fwd_kernel", _fwd_signature,
                           "layer_norm",
                           {"HAS_RESIDUAL": True, "HAS_WEIGHT": True, "HAS_BIAS": True}),
    "layer_norm_bwd": (triton_layer_norm, "_layer_norm_bwd_kernel", _bwd_signature, "layer_norm",
                       {"HAS_DRESIDUAL": False, "HAS_WEIGHT": True, "HAS_BIAS": True}),
    "add_layer_norm_bwd": (triton_layer_norm, "_layer_norm_bwd_kernel", _bwd_signature,
                           "layer_norm",
                           {"HAS_DRESIDUAL": True, "HAS_WEIGHT": True, "HAS_BIAS": True}),
    "rms_norm_fwd": (triton_rms_norm, "_rms_norm_fwd_kernel", _fwd_signature, "rms_norm",
                     {"HAS_RESIDUAL": False, "HAS_WEIGHT": True}),
    "add_rms_norm_fwd": (triton_rms_norm, "_rms_norm_fwd_kernel", _fwd_signature, "rms_norm",
                         {"HAS_RESIDUAL": True, "HAS_WEIGHT": True}),
    "rms_norm_bwd": (triton_rms_norm, "_rms_norm_bwd_kernel", _bwd_signature, "rms_norm",
                     {"HAS_DRESIDUAL": False, "HAS_WEIGHT": True}),
    "add_rms_norm_bwd": (triton_rms_norm, "_rms_norm_bwd_kernel", _bwd_signature, "rms_norm",
                         {"HAS_DRESIDUAL": True, "HAS_WEIGHT": True}),
}


@dataclass
class CompileResult:
    """What the compiler made of one kernel at one configuration."""

    kernel: str  # beyond MAX_REGISTER_ROW(_FORWARD) this is the chunked (looped) kernel
    dtype: str
    n: int
    block_n: int  # BLOCK_N, or CHUNK_N for the chunked backward
    num_warps: int
    cc: int
    registers: int
    spill_stores: int  # bytes per thread written to local memory for lack of registers
    spill_loads: int
    vector_loads: str  # widest global load, e.g. "v4.b32" (16 bytes) or "b16" (scalar)
    affine: bool = True  # compiled with weight (and bias)

    def as_dict(self) -> dict:
        return asdict(self)


def _jit_function(module, attr):
    """The real ``JITFunction`` of a kernel, even when it was defined interpreted."""
    from triton.runtime.jit import JITFunction

    kernel = getattr(module, attr)
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
    """The widest ``ld.global`` in the PTX: vector width and element type."""
    loads = re.findall(r"ld\.global(?:\.\w+)*?\.((?:v[248]\.)?[bfsu]\d+)", ptx)
    if not loads:
        return "none"

    def width(s):
        v = int(s[1]) if s.startswith("v") else 1
        return v * int(re.search(r"(\d+)$", s).group(1))

    return max(loads, key=width)


def compile_kernel(name: str, dtype: torch.dtype, n: int, cc: int,
                   affine: bool = True) -> CompileResult:
    """Compile kernel ``name`` for rows of ``n`` features in ``dtype`` for sm_``cc``.

    ``affine=False`` compiles the variant without weight and bias (the
    ``HAS_WEIGHT`` / ``HAS_BIAS`` branches switched off).

    Uses the launcher's own ``BLOCK_N`` and ``num_warps`` for ``n``, and the
    divisibility hints the runtime gives (pointers 16-byte aligned; ``N`` and
    the row strides divisible by 16 when ``n`` is).
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    module, attr, make_signature, kind, flags = KERNELS[name]
    if not affine:
        flags = {k: (False if k in ("HAS_WEIGHT", "HAS_BIAS") else v) for k, v in flags.items()}
    block_n, num_warps = row_settings(n)
    signature = make_signature(_TYPE[dtype], kind)
    constexprs = dict(flags, BLOCK_N=block_n)
    if name.endswith("_bwd") and backward_is_looped(n):
        # Long rows: the launcher switches to the chunked backward kernel.
        module, attr = triton_norm_backward_looped, "norm_bwd_looped_kernel"
        signature = _bwd_signature(_TYPE[dtype], "layer_norm")
        chunk, num_warps = looped_settings()
        block_n = chunk
        constexprs = dict(flags, IS_RMS=kind == "rms_norm", HAS_BIAS=kind == "layer_norm",
                          CHUNK_N=chunk, NUM_CHUNKS=-(-n // chunk))
        if not affine:
            constexprs["HAS_BIAS"] = False
    if name.endswith("_fwd") and forward_is_looped(n):
        module, attr = triton_norm_forward_looped, "norm_fwd_looped_kernel"
        signature = _fwd_signature(_TYPE[dtype], "layer_norm")
        chunk, num_warps = looped_settings()
        block_n = chunk
        constexprs = dict(flags, IS_RMS=kind == "rms_norm", CHUNK_N=chunk,
                          NUM_CHUNKS=-(-n // chunk))
        constexprs.setdefault("HAS_BIAS", False)
    fn = _jit_function(module, attr)
    for k in constexprs:
        signature[k] = "constexpr"
    names = fn.arg_names
    aligned = [k for k, v in signature.items() if v.startswith("*")]
    if n % 16 == 0:
        aligned += [k for k in signature if k.startswith("stride") or k == "N"]
    attrs = {(names.index(k),): [["tt.divisibility", 16]] for k in aligned}
    src = ASTSource(fn, signature, constexprs, attrs)
    compiled = triton.compile(src, target=GPUTarget("cuda", cc, 32),
                              options={"num_warps": num_warps})
    ptx = compiled.asm["ptx"]
    regs, stores, loads = _ptxas_resources(ptx)
    return CompileResult(name, _TYPE[dtype], n, block_n, num_warps, cc, regs, stores, loads,
                         _widest_load(ptx), affine)


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

    ``kind`` is "row" for the row-in-registers kernels and "chunked" for the
    looped kernels long rows use; BLOCK is then the chunk width.
    """
    head = (f"{'kernel':<20} {'kind':<8} {'dtype':<5} {'N':>6} {'BLOCK':>6} {'warps':>5} "
            f"{'sm':>3} {'regs':>4} {'spill st/ld':>12} {'widest load':>12}")
    lines = [head, "-" * len(head)]
    for r in results:
        looped = backward_is_looped(r.n) if r.kernel.endswith("_bwd") else forward_is_looped(r.n)
        kind = "chunked" if looped else "row"
        name = r.kernel if r.affine else r.kernel + " (no w)"
        lines.append(f"{name:<20} {kind:<8} {r.dtype:<5} {r.n:>6} {r.block_n:>6} "
                     f"{r.num_warps:>5} {r.cc:>3} {r.registers:>4} "
                     f"{f'{r.spill_stores}/{r.spill_loads}':>12} {r.vector_loads:>12}")
    return "\n".join(lines)


if __name__ == "__main__":
    # Worker for resource_report(): jobs as JSON on stdin, results as JSON on stdout.
    _jobs = json.loads(sys.stdin.read())
    _results = [compile_kernel(k, _DTYPE[d], n, cc, a).as_dict() for k, d, n, cc, a in _jobs]
    print(json.dumps(_results))
