"""``python -m normcourse bench``: how fast are the norm kernels, honestly measured?

On a CUDA GPU, for each case (op, dtype, N, mode) and each provider (our
Triton kernels, torch eager, ``torch.compile``, the unfused "add, then norm"
pair, Liger-Kernel when installed):

1. **Correctness first.**  The provider's outputs (forward) or outputs and
   gradients (backward) are compared with a float64 reference by the rule of
   :mod:`normcourse.tolerance`.  A wrong provider is reported and not timed.
2. **A working set far larger than L2.**  M rows are chosen so that
   ``M * N >= 2**27`` elements (256 MiB in bfloat16, several times the 50-60 MB
   L2 of an H100/H200), so repeated calls cannot be served from cache.
3. **Kernel time without the host.**  Calls are captured into a CUDA graph
   and replayed (:func:`normcourse.timing.kernel_ms`); the host's cost of one
   eager call is measured apart (``host_us``), since a learner pays it too.
4. **Forward and backward timed apart.**  The backward is
   ``torch.autograd.grad`` of a forward made once, with pre-allocated upstream
   gradients, so nothing but the backward's kernels is timed.
5. **torch.compile(dynamic=False), compiled once per case**, with
   ``torch._dynamo.reset()`` before each case: every shape gets its own static
   graph, never a dynamic-shape one left over from a previous case.

Throughput counts the *minimal* bytes (:func:`minimal_bytes`) and is shown
as a fraction of the copy bandwidth measured in the same run (``copy_`` of
``2**27`` float32) and of the GPU's nominal peak (vendor datasheet, when the
GPU is in :data:`NOMINAL_PEAK_GBPS`).  Each case is appended to
``bench.csv`` and ``bench.json`` in ``--out`` as soon as it is measured, so
an interrupted run keeps what it measured; earlier files there are renamed,
never overwritten.  ``bench.png`` plots every provider against the copy
bandwidth.

On a CPU there is no GPU number to measure, and the command says so: it
times what a CPU can show (the from-scratch norms of :mod:`normcourse.norms`
against PyTorch's own, by wall clock), labels every file and figure "CPU",
and prints the ahead-of-time compile report of the Triton kernels.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import functools
import json
import os
import re
import tempfile
from typing import NamedTuple

import torch
import torch.nn.functional as F

from normcourse.checks import positive_int
from normcourse.timing import KernelTime, host_us, kernel_ms, median_seconds
from normcourse.tolerance import compare

__all__ = ["OPS", "MODES", "DTYPES", "PROVIDERS", "COLUMNS", "MIN_WORKING_SET",
           "NOMINAL_PEAK_GBPS", "minimal_bytes", "rows_for", "nominal_peak", "copy_bandwidth",
           "run", "ResultsFile", "plot", "format_table", "show_gpu_results",
           "recorded_gpu_runs", "main"]

OPS = ("layer_norm", "rms_norm", "add_layer_norm", "add_rms_norm")
MODES = ("fwd", "bwd")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
EPS = {"layer_norm": 1e-5, "rms_norm": 1e-6}

GPU_SIZES = (1024, 2048, 4096, 8192, 16384, 32768, 65536)
QUICK_GPU_SIZES = (4096, 32768)  # one row-kernel and one chunked-kernel size
CPU_SIZES = (256, 1024, 4096)
QUICK_CPU_SIZES = (256, 1024)

# An H100's L2 is 50 MB, an H200's 60 MB: 2**27 elements is 256 MiB in
# bfloat16, 512 MiB in float32, so consecutive calls cannot hit in cache.
MIN_WORKING_SET = 1 << 27

# Vendor datasheet memory bandwidth (GB/s), matched in order against
# torch.cuda.get_device_name().  Sources, NVIDIA's datasheets: H200 (SXM and
# NVL) 4.8 TB/s; H100 NVL 3.9 TB/s, H100 PCIe 2 TB/s, H100 SXM 3.35 TB/s;
# A100 80GB PCIe 1,935 GB/s, A100 80GB SXM 2,039 GB/s, A100 40GB 1,555 GB/s;
# L4 300 GB/s; T4 320 GB/s.  Anything else (a GH200 too) is "unknown".
NOMINAL_PEAK_GBPS = (
    (r"(?<!G)H200", 4800.0, "NVIDIA H200 datasheet"),
    (r"H100.*NVL", 3900.0, "NVIDIA H100 NVL datasheet"),
    (r"H100.*PCIe", 2000.0, "NVIDIA H100 PCIe datasheet"),
    (r"(?<!G)H100", 3350.0, "NVIDIA H100 SXM datasheet"),
    (r"A100.*80GB.*PCIe|A100-PCIE-80GB", 1935.0, "NVIDIA A100 80GB PCIe datasheet"),
    (r"A100.*80GB", 2039.0, "NVIDIA A100 80GB SXM datasheet"),
    (r"A100", 1555.0, "NVIDIA A100 40GB datasheet"),
    (r"\bL4\b", 300.0, "NVIDIA L4 datasheet"),
    (r"\bT4\b", 320.0, "NVIDIA T4 datasheet"),
)

COLUMNS = ("device", "op", "mode", "dtype", "M", "N", "provider", "variant", "status",
           "timing", "ms", "host_us", "GBps", "fraction_of_copy", "fraction_of_peak", "note")


# ----------------------------------------------------------------- the byte model

def minimal_bytes(op: str, mode: str, m: int, n: int, dtype: torch.dtype) -> int:
    """Bytes an ideal implementation must move for ``op`` in ``mode``.

    ``mode``: "fwd", "bwd" or "fwd+bwd".  Forward: read x (and the residual),
    write y (and residual_out).  Backward: read the saved input, dy (and the
    gradient of residual_out), write dx (the residual's gradient is the same
    tensor).  Parameters (N each) are read once and their gradients written
    once; each float32 statistic is 4 bytes per row, written forward and read
    backward.
    """
    if op not in OPS:
        raise ValueError(f"op must be one of {', '.join(OPS)}, got {op!r}")
    if mode not in ("fwd", "bwd", "fwd+bwd"):
        raise ValueError(f"mode must be 'fwd', 'bwd' or 'fwd+bwd', got {mode!r}")
    e = torch.tensor([], dtype=dtype).element_size()
    layer = "layer" in op
    params = stats = 2 if layer else 1
    fused = op.startswith("add_")
    fwd = (4 if fused else 2) * m * n * e + params * n * e + stats * m * 4
    bwd = (4 if fused else 3) * m * n * e + 2 * params * n * e + stats * m * 4
    return {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd + bwd}[mode]


def rows_for(n: int, min_elements: int = MIN_WORKING_SET, at_least: int = 1) -> int:
    """Rows M so that one ``(M, n)`` tensor has at least ``min_elements`` elements."""
    return max(at_least, -(-min_elements // n))


def nominal_peak(device_name: str) -> tuple[float | None, str]:
    """``(GB/s, source)`` of the GPU's datasheet bandwidth, or ``(None, "unknown")``."""
    for pattern, gbps, source in NOMINAL_PEAK_GBPS:
        if re.search(pattern, device_name):
            return gbps, source
    return None, "unknown"


# ------------------------------------------------------------------ the providers

def _torch_layer_norm(x, r, w, b):
    return (F.layer_norm(x, x.shape[-1:], w, b, EPS["layer_norm"]),)


def _torch_rms_norm(x, r, w, b):
    return (F.rms_norm(x, x.shape[-1:], w, EPS["rms_norm"]),)


def _torch_add_layer_norm(x, r, w, b):
    s = x + r  # once: the sum is both the norm's input and the new residual stream
    return F.layer_norm(s, s.shape[-1:], w, b, EPS["layer_norm"]), s


def _torch_add_rms_norm(x, r, w, b):
    s = x + r
    return F.rms_norm(s, s.shape[-1:], w, EPS["rms_norm"]), s


# Module-level functions, not lambdas: torch.compile caches on the code object.
TORCH_OPS = {"layer_norm": _torch_layer_norm, "rms_norm": _torch_rms_norm,
             "add_layer_norm": _torch_add_layer_norm, "add_rms_norm": _torch_add_rms_norm}


def _triton(op, x, r, w, b, backend):
    from normcourse import kernels as K

    f = getattr(K, op)
    if op == "layer_norm":
        return lambda: (f(x, w, b, EPS[op], backend="triton"),)
    if op == "rms_norm":
        return lambda: (f(x, w, EPS[op], backend="triton"),)
    if op == "add_layer_norm":
        return lambda: f(x, r, w, b, EPS["layer_norm"], backend="triton")
    return lambda: f(x, r, w, EPS["rms_norm"], backend="triton")


def _triton_unfused(op, x, r, w, b, backend):
    """The baseline a fusion must beat: PyTorch's add, then our norm kernel."""
    from normcourse import kernels as K

    def run():
        s = x + r
        if op == "add_layer_norm":
            return K.layer_norm(s, w, b, EPS["layer_norm"], backend="triton"), s
        return K.rms_norm(s, w, EPS["rms_norm"], backend="triton"), s
    return run


def _eager(op, x, r, w, b, backend):
    f = TORCH_OPS[op]
    return lambda: f(x, r, w, b)


def _compiled(op, x, r, w, b, backend):
    # One static graph per case: the caller resets dynamo before each case.
    f = torch.compile(TORCH_OPS[op], dynamic=False, backend=backend)
    return lambda: f(x, r, w, b)


def _from_scratch(op, x, r, w, b, backend):
    from normcourse import norms

    def run():
        s = x + r if op.startswith("add_") else x
        if "layer" in op:
            y = norms.layer_norm(s, w, b, EPS["layer_norm"])
        else:
            y = norms.rms_norm(s, w, EPS["rms_norm"])
        return (y, s) if op.startswith("add_") else (y,)
    return run


def _liger_functions():
    """Liger-Kernel's functions by op, or None when it is not installed."""
    try:
        from liger_kernel.transformers import functional as lf
    except ImportError:
        return None
    out = {"layer_norm": lambda x, r, w, b: (lf.liger_layer_norm(x, w, b, EPS["layer_norm"]),),
           "rms_norm": lambda x, r, w, b: (lf.liger_rms_norm(x, w, EPS["rms_norm"], 0.0,
                                                             "llama", False),)}
    fused = getattr(lf, "liger_fused_add_rms_norm", None)
    if fused is not None:  # Liger's own fused add + RMSNorm (newer releases)
        out["add_rms_norm"] = lambda x, r, w, b: tuple(
            fused(x, r, w, EPS["rms_norm"], 0.0, "llama", False))
    return out


def _liger(op, x, r, w, b, backend):
    f = _liger_functions()[op]
    return lambda: f(x, r, w, b)


class Provider(NamedTuple):
    """Who computes: ``make(op, x, r, w, b, compile_backend)`` returns a call."""

    make: object
    ops: tuple
    triton: bool = False  # runs our kernels, so the row/chunked variant is recorded


PROVIDERS = {
    "triton": Provider(_triton, OPS, triton=True),
    "torch": Provider(_eager, OPS),
    "torch.compile": Provider(_compiled, OPS),
    "triton add, then norm": Provider(_triton_unfused, ("add_layer_norm", "add_rms_norm"),
                                      triton=True),
    "liger": Provider(_liger, ("layer_norm", "rms_norm", "add_rms_norm")),
    "normcourse.norms (from scratch)": Provider(_from_scratch, OPS),
}
GPU_PROVIDERS = ("triton", "torch", "torch.compile", "triton add, then norm", "liger")
CPU_PROVIDERS = ("normcourse.norms (from scratch)", "torch")


def _available(name: str, op: str) -> str | None:
    """Why provider ``name`` cannot run ``op`` here, or None when it can."""
    if op not in PROVIDERS[name].ops:
        return f"{name} has no {op}"
    if PROVIDERS[name].triton:
        from normcourse.runtime import triton_available

        if not triton_available():
            return "triton is not installed (pip install triton)"
    if name == "liger":
        funcs = _liger_functions()
        if funcs is None:
            return "liger_kernel is not installed (pip install liger-kernel)"
        if op not in funcs:
            return f"this liger_kernel has no fused {op}"
    return None


def _variant(name: str, op: str, mode: str, n: int) -> str:
    if not PROVIDERS[name].triton:
        return ""
    from normcourse.kernels.launch import backward_is_looped, forward_is_looped

    looped = forward_is_looped(n) if mode == "fwd" else backward_is_looped(n)
    return "chunked" if looped else "row"


# ------------------------------------------------------------- recording results

class ResultsFile:
    """``bench.csv`` and ``bench.json`` in ``out_dir``, updated after every case.

    Files an earlier run left there are renamed with their date, not
    overwritten.  The CSV is appended line by line; the JSON is rewritten
    whole (through a temporary file and a rename) so it is never half-written.
    """

    def __init__(self, out_dir: str, meta: dict):
        os.makedirs(out_dir, exist_ok=True)
        self.dir, self.meta, self.rows = out_dir, meta, []
        self.kept = _set_aside(out_dir)
        self.csv = os.path.join(out_dir, "bench.csv")
        self.json = os.path.join(out_dir, "bench.json")
        with open(self.csv, "w", newline="") as f:
            csv.DictWriter(f, fieldnames=COLUMNS).writeheader()
        self._write_json()

    def add(self, row: dict) -> None:
        self.rows.append(row)
        with open(self.csv, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=COLUMNS).writerow(
                {k: ("" if row.get(k) is None else row[k]) for k in COLUMNS})
        self._write_json()

    def _write_json(self) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump({"meta": self.meta, "rows": self.rows}, f, indent=1)
        os.replace(tmp, self.json)


def _set_aside(out_dir: str) -> list[str]:
    """Rename earlier bench.{csv,json,png} in ``out_dir``; return the new names."""
    kept = []
    old = os.path.join(out_dir, "bench.json")
    stamp = None
    if os.path.exists(old):
        try:
            with open(old) as f:
                stamp = json.load(f)["meta"]["date"][:19].replace(":", "")
        except (OSError, ValueError, KeyError):
            pass
    stamp = stamp or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H%M%S")
    for ext in ("csv", "json", "png"):
        path = os.path.join(out_dir, f"bench.{ext}")
        if os.path.exists(path):
            new = os.path.join(out_dir, f"bench.{stamp}.{ext}")
            os.replace(path, new)
            kept.append(new)
    return kept


# --------------------------------------------------------------------- measuring

def _wall_clock_timer(fn, repeats):
    return KernelTime(median_seconds(fn, repeats=repeats) * 1e3, "wall_clock")


def copy_bandwidth(device: str = "cuda", elements: int = MIN_WORKING_SET, timer=None,
                   repeats: int = 20) -> float:
    """GB/s of ``dst.copy_(src)`` on float32, counting bytes read plus written."""
    timer = timer or (kernel_ms if device == "cuda" else _wall_clock_timer)
    src = torch.randn(elements, device=device)
    dst = torch.empty_like(src)
    ms = timer(lambda: dst.copy_(src), repeats=repeats).ms
    return 2 * src.numel() * 4 / (ms * 1e-3) / 1e9


def _inputs(op, m, n, dtype, device, gen):
    """Leaves (x, residual, weight, bias: those the op takes) and upstream gradients."""
    def randn(*shape):
        return torch.randn(*shape, generator=gen, device=device, dtype=torch.float32).to(dtype)
    x = randn(m, n) * 2 + 0.5
    r = randn(m, n) if op.startswith("add_") else None
    w = randn(n) * 0.5 + 1
    b = randn(n) * 0.5 if "layer" in op else None
    leaves = [t.requires_grad_() for t in (x, r, w, b) if t is not None]
    dys = [randn(m, n) for _ in range(2 if op.startswith("add_") else 1)]
    return (x, r, w, b), leaves, dys


def _forward_backward(fn, leaves, dys, mode):
    """Outputs (fwd), or outputs and gradients of every leaf (bwd)."""
    if mode == "fwd":
        with torch.no_grad():
            return [o.detach() for o in fn()]
    outs = fn()
    grads = torch.autograd.grad(outs, leaves, dys, allow_unused=True)
    return [o.detach() for o in outs] + list(grads)


def _reference(op, tensors, leaves, dys, mode):
    """The float64 reference of :func:`_forward_backward` on the same inputs."""
    t64 = [t.detach().double().requires_grad_() if t is not None else None for t in tensors]
    leaves64 = [t for t in t64 if t is not None]
    return _forward_backward(lambda: TORCH_OPS[op](*t64), leaves64, [d.double() for d in dys],
                             mode)


def _gate(ours, theirs, ref, dtype) -> str | None:
    """None when every output/gradient passes the tolerance rule, else what failed."""
    for i, (o, t, r) in enumerate(zip(ours, theirs, ref)):
        if o is None:
            return f"output {i} missing"
        c = compare(o, t, r, dtype)
        if not c.ok:
            return f"output {i}: {c.describe()}"
    return None


def run(ops=OPS, dtypes=("bfloat16",), ns=GPU_SIZES, modes=MODES, providers=None, *,
        device="cuda", min_elements=MIN_WORKING_SET, rows=1, repeats=20, timer=None,
        host_timer=None, compile_backend="inductor", copy_elements=None, out_dir=None,
        log=print):
    """Check, then time, every case; return ``(rows, meta)``.

    ``device``, ``timer``, ``host_timer``, ``min_elements`` and
    ``compile_backend`` exist so the tests can drive this code on a CPU
    (``copy_elements``: float32 elements of the copy-bandwidth probe).  M is
    :func:`rows_for` ``(N, min_elements, rows)``.  With ``out_dir``, each
    case is appended to ``bench.csv``/``bench.json`` there as it finishes.
    """
    from normcourse.runtime import triton_available

    triton_version = None
    if triton_available():
        import triton

        triton_version = triton.__version__
    for name, valid, given in (("ops", OPS, ops), ("modes", MODES, modes),
                               ("dtypes", tuple(DTYPES), dtypes)):
        bad = [v for v in given if v not in valid]
        if bad:
            raise ValueError(f"{name}: {bad} not among {', '.join(valid)}")
    providers = tuple(providers or (GPU_PROVIDERS if device == "cuda" else CPU_PROVIDERS))
    unknown = [p for p in providers if p not in PROVIDERS]
    if unknown:
        raise ValueError(f"providers: {unknown} not among {', '.join(PROVIDERS)}")
    cuda = device == "cuda"
    timer = timer or (kernel_ms if cuda else _wall_clock_timer)
    host_timer = host_timer or (host_us if cuda else None)
    name = torch.cuda.get_device_name() if cuda else "cpu"
    peak, peak_source = nominal_peak(name) if cuda else (None, "not a GPU")
    copy_gbs = copy_bandwidth(device, copy_elements or (MIN_WORKING_SET if cuda else 1 << 22),
                              timer)
    meta = {"device": name, "is_gpu": cuda, "torch": torch.__version__,
            "triton": triton_version, "date": dt.datetime.now(dt.timezone.utc).isoformat(),
            "copy_bandwidth_GBps": copy_gbs, "nominal_peak_GBps": peak,
            "nominal_peak_source": peak_source, "min_working_set_elements": min_elements,
            "timing": ("CUDA graph replay (batched CUDA events where capture fails)" if cuda
                       else "wall clock on the CPU: not a GPU measurement"),
            "notes": []}
    log(f"{name}; torch {torch.__version__}, triton {triton_version or 'not installed'}; "
        f"measured copy "
        f"bandwidth {copy_gbs:.0f} GB/s; nominal peak "
        f"{f'{peak:.0f} GB/s ({peak_source})' if peak else 'unknown'}")
    for prov in providers:
        why = next((_available(prov, op) for op in ops
                    if op in PROVIDERS[prov].ops and _available(prov, op)), None)
        if why:
            meta["notes"].append(f"{prov}: skipped, {why}")
            log(f"  {prov}: skipped, {why}")
    results = ResultsFile(out_dir, meta) if out_dir else None
    if results and results.kept:
        log(f"  earlier results kept as {', '.join(os.path.basename(k) for k in results.kept)}")
    rows_out = []
    gen = torch.Generator(device=device).manual_seed(0)
    how = _How(device, name, timer, host_timer, repeats, compile_backend, copy_gbs, peak)
    # Everything on one side stream: CUDA graphs capture there, and a backward is
    # captured on the stream its forward ran on.
    with (torch.cuda.stream(torch.cuda.Stream()) if cuda else contextlib.nullcontext()):
        for op in ops:
            for dname in dtypes:
                for n in ns:
                    m = rows_for(n, min_elements, rows)
                    for row in _case_rows(op, dname, m, n, modes, providers, gen, how):
                        rows_out.append(row)
                        if results:
                            results.add(row)
                        log(_one_line(row))
    return rows_out, meta


class _How(NamedTuple):
    """What every case of one run shares: where and how it is timed."""

    device: str
    name: str  # the device's name, recorded on every row
    timer: object
    host_timer: object
    repeats: int
    compile_backend: object
    copy_gbs: float
    peak: float | None


def _case_rows(op, dname, m, n, modes, providers, gen, how):
    """Yield one row per (mode, provider) for ``op`` on ``(m, n)`` inputs of ``dname``."""
    dtype = DTYPES[dname]
    tensors, leaves, dys = _inputs(op, m, n, dtype, how.device, gen)
    for mode in modes:
        ref = _reference(op, tensors, leaves, dys, mode)
        theirs = _forward_backward(functools.partial(TORCH_OPS[op], *tensors), leaves,
                                   dys, mode)
        for prov in providers:
            if not _available(prov, op):
                yield _measure(prov, op, mode, dname, m, n, tensors, leaves, dys, theirs,
                               ref, how)
        del ref, theirs
    del tensors, leaves, dys
    if how.device == "cuda":
        torch.cuda.empty_cache()


def _measure(prov, op, mode, dname, m, n, tensors, leaves, dys, theirs, ref, how) -> dict:
    """Gate, then time, one provider on one case; return its row."""
    dtype = DTYPES[dname]
    row = {"device": how.name, "op": op, "mode": mode, "dtype": dname, "M": m, "N": n,
           "provider": prov,
           "variant": _variant(prov, op, mode, n), "status": "ok", "timing": "", "ms": None,
           "host_us": None, "GBps": None, "fraction_of_copy": None, "fraction_of_peak": None,
           "note": ""}
    torch._dynamo.reset()  # every case compiles its own static graph, once
    try:
        fn = PROVIDERS[prov].make(op, *tensors, how.compile_backend)
        if mode == "fwd":
            ours = _forward_backward(fn, leaves, dys, mode)
            call = torch.no_grad()(fn)
        else:
            outs = fn()  # one forward; the backward is then replayed on its graph
            ours = [o.detach() for o in outs] + list(
                torch.autograd.grad(outs, leaves, dys, retain_graph=True, allow_unused=True))

            def call():
                return torch.autograd.grad(outs, leaves, dys, retain_graph=True,
                                           allow_unused=True)
        wrong = _gate(ours, theirs, ref, dtype)
        del ours
        if wrong:
            row.update(status="wrong", note=f"not timed: {wrong}")
            return row
        t = how.timer(call, repeats=how.repeats)
        row.update(timing=t.method, ms=t.ms)
        if how.host_timer is not None:
            row["host_us"] = how.host_timer(call)
    except Exception as err:  # a provider that cannot run this case is reported, not fatal
        row.update(status="failed", note=f"{type(err).__name__}: {str(err)[:200]}")
        return row
    gbps = minimal_bytes(op, mode, m, n, dtype) / (row["ms"] * 1e-3) / 1e9
    row.update(GBps=gbps, fraction_of_copy=gbps / how.copy_gbs,
               fraction_of_peak=gbps / how.peak if how.peak else None)
    return row


def _one_line(row) -> str:
    head = (f"  {row['op']:<14} {row['mode']:<3} {row['dtype']:<8} N={row['N']:<6} "
            f"{row['provider']:<31}")
    if row["status"] != "ok":
        return f"{head} {row['status'].upper()}: {row['note']}"
    host = f", host {row['host_us']:.0f} us/call" if row["host_us"] is not None else ""
    variant = f" [{row['variant']}]" if row["variant"] else ""
    return (f"{head} {row['ms'] * 1e3:9.1f} us  {row['GBps']:7.0f} GB/s  "
            f"{row['fraction_of_copy']:5.1%} of copy{host}{variant}")


# ---------------------------------------------------------------------- showing

def format_table(rows, columns) -> str:
    """A plain-text table of ``rows`` (dicts) showing ``columns``."""
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))
    widths = {c: max(len(c), *(len(cell(r.get(c))) for r in rows)) for c in columns} \
        if rows else {c: len(c) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(cell(r.get(c)).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def plot(rows, meta, path=None, ops=None, modes=None):
    """GB/s against N, one panel per (op, mode, dtype), every provider against the
    measured copy bandwidth (and the nominal peak, where known).

    Saves to ``path``, or shows the figure (in a notebook) when ``path`` is None.
    A CPU run is titled as such: its numbers are never GPU numbers.
    """
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.get("status", "ok") == "ok" and r.get("GBps")
          and (ops is None or r["op"] in ops) and (modes is None or r["mode"] in modes)]
    panels = sorted({(r["op"], r["mode"], r["dtype"]) for r in ok})
    cols = min(4, max(1, len(panels)))
    nrows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, panels):
        sel = [r for r in ok if (r["op"], r["mode"], r["dtype"]) == key]
        for prov in dict.fromkeys(r["provider"] for r in sel):
            pts = sorted((r["N"], r["GBps"]) for r in sel if r["provider"] == prov)
            ax.plot(*zip(*pts), marker="o", label=prov)
        ax.axhline(meta["copy_bandwidth_GBps"], color="gray", ls="--",
                   label="copy bandwidth (measured)")
        if meta.get("nominal_peak_GBps"):
            ax.axhline(meta["nominal_peak_GBps"], color="gray", ls=":",
                       label="nominal peak (datasheet)")
        ax.set_xscale("log", base=2)
        ax.set_title(" ".join(key), fontsize=9)
        ax.set_xlabel("N (features per row)")
        ax.set_ylabel("GB/s (minimal bytes)")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if panels:
        axes.flat[0].legend(fontsize=7)
    else:
        axes.flat[0].text(0.5, 0.5, "no case was measured", ha="center", va="center")
    where = meta["device"] if meta.get("is_gpu") else "CPU, wall clock: not GPU numbers"
    fig.suptitle(f"{where}; {meta['date'][:10]}")
    fig.tight_layout()
    if path is None:
        plt.show()
    else:
        fig.savefig(path, dpi=150)
        plt.close(fig)


GPU_RESULTS = os.path.join(os.path.dirname(__file__), "results", "gpu")


def recorded_gpu_runs(root: str = GPU_RESULTS) -> list[dict]:
    """The ``make gpu-check`` runs committed under ``root``: one dict per run folder
    with a ``summary.md`` (``dir``, ``summary``, and ``bench``: its bench.json or None)."""
    runs = []
    if not os.path.isdir(root):
        return runs
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        summary = os.path.join(folder, "summary.md")
        if not os.path.isfile(summary):
            continue
        with open(summary) as f:
            run_ = {"dir": folder, "summary": f.read(), "bench": None}
        bench_json = os.path.join(folder, "bench.json")
        if os.path.isfile(bench_json):
            with open(bench_json) as f:
                run_["bench"] = json.load(f)
        runs.append(run_)
    return runs


def show_gpu_results(op: str, providers=None, live=None, root: str = GPU_RESULTS) -> None:
    """What a kernel chapter shows of GPU results: one call, on any machine.

    Every recorded ``make gpu-check`` run (its summary, labelled with the
    device, and its benchmark of ``op``); then, on a CUDA machine (``live``
    defaults to ``torch.cuda.is_available()``), a short live benchmark of
    ``op`` in bfloat16.  Shows nothing where neither exists (the chapter's
    prose says so).
    """
    for run_ in recorded_gpu_runs(root):
        device = run_["bench"]["meta"]["device"] if run_["bench"] else os.path.basename(
            run_["dir"])
        _display_markdown(f"**Recorded by `make gpu-check` on {device}** "
                          f"({os.path.basename(run_['dir'])}):\n\n{run_['summary']}")
        if run_["bench"]:
            plot(run_["bench"]["rows"], run_["bench"]["meta"], ops=(op,))
    if live if live is not None else torch.cuda.is_available():
        rows, meta = run(ops=(op,), ns=QUICK_GPU_SIZES, providers=providers,
                         log=lambda line: None)
        print(f"Measured now on {meta['device']}; the full sweep: "
              "`python -m normcourse bench`.")
        plot(rows, meta, ops=(op,))


def _display_markdown(text: str) -> None:
    try:
        from IPython.display import Markdown, display
    except ImportError:
        print(text)
        return
    display(Markdown(text))


def print_compile_report(ns=(1024, 4096, 16384, 65536), cc=80) -> None:
    """Print registers, spills and vector loads of every kernel compiled for sm_``cc``."""
    try:
        from normcourse.kernels.compile_report import (KERNELS, compile_many, format_report,
                                                       ptxas_path)
    except ImportError as err:
        print(f"\nCompile report skipped: {err}.")
        return
    if ptxas_path(cc) is None:
        print("\nCompile report skipped: no ptxas found.")
        return
    print(f"\nAhead-of-time compile for sm_{cc}, bfloat16, at the launcher's settings "
          "(no GPU needed):")
    print(format_report(compile_many([(k, "bf16", n, cc) for k in KERNELS for n in ns])))


# ------------------------------------------------------------------ command line

def check_out_dir(path: str) -> str | None:
    """Why results cannot be written to folder ``path``, or None when they can.

    Checked before the benchmark runs, so a typo costs nothing instead of the whole run.
    The folder is created if missing (it would be at the end anyway).
    """
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        return f"cannot write to folder {path!r}: {err.strerror or err}"
    return None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m normcourse bench", description=__doc__.split("\n")[0],
        epilog="Writes bench.csv, bench.json and bench.png to --out, a case at a time "
               "(earlier files there are renamed, not overwritten). On a CPU the numbers "
               "are wall-clock CPU timings of the from-scratch norms against PyTorch's, "
               "labelled CPU, never GPU numbers.")
    p.add_argument("--out", default="bench_results",
                   help="folder for bench.csv, bench.json and bench.png (made on CPU too)")
    p.add_argument("--ops", nargs="+", choices=OPS, default=None, help="default: all")
    p.add_argument("--providers", nargs="+", choices=list(PROVIDERS), default=None,
                   help=f"default on a GPU: {', '.join(GPU_PROVIDERS)}; "
                        f"on a CPU: {', '.join(CPU_PROVIDERS)}")
    p.add_argument("--modes", nargs="+", choices=MODES, default=None, help="default: fwd bwd")
    p.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=None,
                   help="default: float32 bfloat16 (--quick: bfloat16)")
    p.add_argument("--sizes", type=positive_int, nargs="+", default=None,
                   help=f"the N to sweep (GPU default {' '.join(map(str, GPU_SIZES))})")
    p.add_argument("--rows", type=positive_int, default=None,
                   help="at least this many rows M (on a GPU M is raised so that "
                        "M*N >= 2**27 elements, far beyond L2; CPU default 256)")
    p.add_argument("--repeats", type=positive_int, default=None,
                   help="timed repeats per case (GPU default 20, CPU 20, --quick 5)")
    p.add_argument("--quick", action="store_true",
                   help=f"a short run: bfloat16, N in {QUICK_GPU_SIZES} on a GPU "
                        f"({QUICK_CPU_SIZES} on a CPU), fewer repeats")
    p.add_argument("--no-compile-report", action="store_true",
                   help="CPU: skip the ahead-of-time compile report (--quick skips it too)")
    return p


def main(argv=None) -> int:
    """Entry point of ``python -m normcourse bench``."""
    p = _parser()
    args = p.parse_args(argv)
    problem = check_out_dir(args.out)
    if problem:
        p.error(f"--out: {problem}")   # exits with status 2, before anything is timed
    cuda = torch.cuda.is_available()
    if cuda:
        sizes = args.sizes or (QUICK_GPU_SIZES if args.quick else GPU_SIZES)
        rows, min_elements = args.rows or 1, MIN_WORKING_SET
    else:
        print("No CUDA GPU here: GPU throughput numbers need a GPU, so none are measured. "
              "On this CPU, by wall clock: the from-scratch torch norms vs torch's own kernels.")
        sizes = args.sizes or (QUICK_CPU_SIZES if args.quick else CPU_SIZES)
        rows, min_elements = args.rows or (64 if args.quick else 256), 1
    dtypes = args.dtypes or (("bfloat16",) if args.quick and cuda else
                             ("float32",) if not cuda else ("float32", "bfloat16"))
    rows_out, meta = run(ops=tuple(args.ops or OPS), dtypes=tuple(dtypes), ns=tuple(sizes),
                         modes=tuple(args.modes or MODES), providers=args.providers,
                         device="cuda" if cuda else "cpu", min_elements=min_elements,
                         rows=rows, repeats=args.repeats or (5 if args.quick else 20),
                         out_dir=args.out)
    plot(rows_out, meta, os.path.join(args.out, "bench.png"))
    if not cuda and not args.no_compile_report and not args.quick:
        print_compile_report()
    print(f"wrote {args.out}/bench.csv, bench.json, bench.png")
    wrong = [r for r in rows_out if r["status"] == "wrong"]
    if wrong:
        print(f"{len(wrong)} case(s) computed a wrong result and were not timed (see 'note').")
    return 1 if wrong else 0
