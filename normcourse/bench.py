"""``python -m normcourse bench``: how fast are the norm kernels?

On a CUDA GPU: forward and forward+backward of LayerNorm, RMSNorm and the
fused add+RMSNorm, for M rows and a sweep of N, against torch eager,
``torch.compile`` and Liger-Kernel (when installed).  Timing: CUDA events
after warm-up, the median of many repeats.  Throughput counts the *minimal*
bytes each operation must move (read x, write y, ...; parameters and the
per-row statistics included), and is also shown as a fraction of the
device's copy bandwidth, measured in the same run with ``y.copy_(x)``.
Writes a table to stdout and ``bench.csv``, ``bench.json`` (with device,
versions and date) and ``bench.png`` to ``--out``.

On a CPU there is no GPU number to measure, and the command says so.  It
times what a CPU can show, the from-scratch torch norms of
:mod:`normcourse.norms` against torch's own kernels at small sizes, and
prints the ahead-of-time compile report of the Triton kernels (registers,
spills, vector loads per GPU target).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

__all__ = ["main", "minimal_bytes", "copy_bandwidth", "time_cuda", "wall_clock", "run_gpu", "run_cpu",
           "plot", "format_table"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def minimal_bytes(op: str, mode: str, m: int, n: int, dtype: torch.dtype) -> int:
    """Bytes an ideal implementation must move for ``op`` in ``mode`` ("fwd" or "fwd+bwd").

    Rows: forward reads x (and the residual) and writes y (and residual_out);
    backward reads the saved input, dy (and d residual_out) and writes dx.
    Parameters (N each, read; their gradients written) and the float32
    statistics (4 bytes per row each) are counted too.
    """
    e = torch.tensor([], dtype=dtype).element_size()
    params = {"layer_norm": 2, "rms_norm": 1, "add_rms_norm": 1}[op]
    stats = {"layer_norm": 2, "rms_norm": 1, "add_rms_norm": 1}[op]
    fwd_rows = 4 if op == "add_rms_norm" else 2
    total = fwd_rows * m * n * e + params * n * e + stats * m * 4
    if mode == "fwd+bwd":
        bwd_rows = 4 if op == "add_rms_norm" else 3
        total += bwd_rows * m * n * e + 2 * params * n * e + stats * m * 4
    return total


def time_cuda(fn, warmup: int = 10, repeats: int = 50) -> float:
    """Median milliseconds of ``fn()`` with CUDA events, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_bandwidth(nbytes: int = 1 << 30) -> float:
    """The device's copy bandwidth in GB/s, measured now (read + write of ``nbytes``)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device="cuda").normal_()
    dst = torch.empty_like(src)
    ms = time_cuda(lambda: dst.copy_(src), warmup=5, repeats=30)
    return 2 * nbytes / (ms * 1e-3) / 1e9


def _providers(op: str):
    """name -> factory(x, r, w, b) returning a callable that runs the op once."""
    from normcourse import kernels as K

    def torch_eager(x, r, w, b):
        n = x.shape[-1]
        if op == "layer_norm":
            return lambda: F.layer_norm(x, (n,), w, b)
        if op == "rms_norm":
            return lambda: F.rms_norm(x, (n,), w, 1e-6)
        return lambda: (F.rms_norm(x + r, (n,), w, 1e-6), x + r)

    def triton_ours(x, r, w, b):
        if op == "layer_norm":
            return lambda: K.layer_norm(x, w, b)
        if op == "rms_norm":
            return lambda: K.rms_norm(x, w)
        return lambda: K.add_rms_norm(x, r, w)

    def compiled(x, r, w, b):
        return torch.compile(torch_eager(x, r, w, b))

    out = {"triton": triton_ours, "torch": torch_eager, "torch.compile": compiled}
    if op == "add_rms_norm":  # the unfused baseline the fusion must beat
        def unfused(x, r, w, b):
            def run():
                s = x + r
                return K.rms_norm(s, w), s
            return run
        out["triton add, then rms_norm"] = unfused
    try:
        from liger_kernel.transformers.functional import liger_layer_norm, liger_rms_norm

        def liger(x, r, w, b):
            if op == "layer_norm":
                return lambda: liger_layer_norm(x, w, b, 1e-5)
            if op == "rms_norm":
                return lambda: liger_rms_norm(x, w, 1e-6)
            return lambda: (liger_rms_norm(x + r, w, 1e-6), x + r)
        out["liger"] = liger
    except ImportError:
        pass
    return out


def _with_backward(fn, inputs):
    """Wrap a forward into forward + backward with fixed upstream gradients."""
    def run():
        out = fn()
        outs = out if isinstance(out, tuple) else (out,)
        torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])
        for t in inputs:
            t.grad = None
    return run


def run_gpu(m=4096, ns=(1024, 2048, 4096, 8192, 16384, 32768, 65536),
            dtypes=("float32", "bfloat16"), ops=("layer_norm", "rms_norm", "add_rms_norm"),
            modes=("fwd", "fwd+bwd"), repeats=50, providers=None, device="cuda", timer=None):
    """Run the GPU benchmark; return ``(rows, meta)``.

    ``providers`` (names) restricts who runs; ``device`` and ``timer`` exist so
    the tests can drive this code path on a CPU with a wall-clock timer.
    """
    import triton

    timer = timer or time_cuda
    copy_gbs = copy_bandwidth() if device == "cuda" else _cpu_copy_bandwidth()
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    meta = {"device": name, "torch": torch.__version__, "triton": triton.__version__,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(),
            "copy_bandwidth_GBps": copy_gbs, "rows_M": m}
    rows = []
    for op in ops:
        for dname in dtypes:
            dtype = DTYPES[dname]
            for n in ns:
                x = torch.randn(m, n, device=device, dtype=dtype, requires_grad=True)
                r = torch.randn_like(x, requires_grad=True)
                w = torch.randn(n, device=device, dtype=dtype, requires_grad=True)
                b = torch.randn(n, device=device, dtype=dtype, requires_grad=True)
                for mode in modes:
                    nbytes = minimal_bytes(op, mode, m, n, dtype)
                    for prov, make in _providers(op).items():
                        if providers is not None and prov not in providers:
                            continue
                        try:
                            fn = make(x, r, w, b)
                            if mode == "fwd+bwd":
                                fn = _with_backward(fn, (x, r, w, b))
                            else:
                                fn = torch.no_grad()(fn)
                            ms = timer(fn, repeats=repeats)
                        except Exception as err:  # a provider that cannot run this case
                            print(f"  {prov} {op} {dname} N={n} {mode}: skipped ({err})")
                            continue
                        gbs = nbytes / (ms * 1e-3) / 1e9
                        rows.append({"op": op, "mode": mode, "dtype": dname, "M": m, "N": n,
                                     "provider": prov, "ms": ms, "GBps": gbs,
                                     "fraction_of_copy": gbs / copy_gbs})
                del x, r, w, b
                if device == "cuda":
                    torch.cuda.empty_cache()
    return rows, meta


def _cpu_copy_bandwidth(nbytes: int = 1 << 24) -> float:
    src = torch.randn(nbytes // 4)
    dst = torch.empty_like(src)
    ms = wall_clock(lambda: dst.copy_(src), repeats=5)
    return 2 * nbytes / (ms * 1e-3) / 1e9


def wall_clock(fn, warmup: int = 1, repeats: int = 20) -> float:
    """Median milliseconds of ``fn()`` by ``time.perf_counter`` (for CPU runs)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def run_cpu(m=256, ns=(256, 1024, 4096), repeats=20):
    """Time the from-scratch torch norms against torch's kernels on the CPU."""
    from normcourse import norms

    rows = []
    cases = {
        "layer_norm": (lambda x, w, b: norms.layer_norm(x, w, b),
                       lambda x, w, b: F.layer_norm(x, x.shape[-1:], w, b)),
        "rms_norm": (lambda x, w, b: norms.rms_norm(x, w, 1e-6),
                     lambda x, w, b: F.rms_norm(x, x.shape[-1:], w, 1e-6)),
    }
    for op, (scratch, native) in cases.items():
        for n in ns:
            x = torch.randn(m, n, requires_grad=True)
            w = torch.randn(n, requires_grad=True)
            b = torch.randn(n, requires_grad=True)
            for mode in ("fwd", "fwd+bwd"):
                for name, f in (("normcourse.norms (from scratch)", scratch),
                                ("torch (F.*)", native)):
                    def once(f=f):
                        if mode == "fwd":
                            with torch.no_grad():
                                f(x, w, b)
                        else:
                            f(x, w, b).sum().backward()
                    rows.append({"op": op, "mode": mode, "dtype": "float32", "M": m, "N": n,
                                 "provider": name, "ms": wall_clock(once, repeats=repeats)})
    return rows


def format_table(rows, columns) -> str:
    """A plain-text table of ``rows`` (dicts) showing ``columns``."""
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    widths = {c: max(len(c), *(len(cell(r[c])) for r in rows)) for c in columns} if rows else {}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(cell(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def _save(rows, meta, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "bench.json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    if rows:
        with open(os.path.join(out_dir, "bench.csv"), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def plot(rows, meta, path):
    """GB/s against N, one panel per (op, mode, dtype), one line per provider."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["op"], r["mode"], r["dtype"]) for r in rows})
    cols = 4
    nrows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3.2 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, panels):
        sel = [r for r in rows if (r["op"], r["mode"], r["dtype"]) == key]
        for prov in dict.fromkeys(r["provider"] for r in sel):
            pts = sorted((r["N"], r["GBps"]) for r in sel if r["provider"] == prov)
            ax.plot(*zip(*pts), marker="o", label=prov)
        ax.axhline(meta["copy_bandwidth_GBps"], color="gray", ls="--", label="copy bandwidth")
        ax.set_xscale("log", base=2)
        ax.set_title(" ".join(key), fontsize=9)
        ax.set_xlabel("N (features per row)")
        ax.set_ylabel("GB/s (minimal bytes)")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{meta['device']}, M={meta['rows_M']}, {meta['date'][:10]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (0 or less is an error, never "use the default")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


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


def main(argv=None) -> int:
    """Entry point of ``python -m normcourse bench``."""
    p = argparse.ArgumentParser(prog="python -m normcourse bench", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="bench_results", help="folder for bench.csv/json/png")
    p.add_argument("--rows", type=positive_int, default=None, help="M (GPU default 4096, CPU 256)")
    p.add_argument("--sizes", type=positive_int, nargs="+", default=None, help="the N to sweep")
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=list(DTYPES))
    p.add_argument("--repeats", type=positive_int, default=None, help="timed repeats (GPU default 50, CPU 20)")
    p.add_argument("--no-compile-report", action="store_true",
                   help="CPU: skip the ahead-of-time compile report")
    args = p.parse_args(argv)
    problem = check_out_dir(args.out)
    if problem:
        p.error(f"--out: {problem}")   # exits with status 2, before anything is timed

    if torch.cuda.is_available():
        rows, meta = run_gpu(m=args.rows or 4096,
                             ns=tuple(args.sizes or (1024, 2048, 4096, 8192, 16384, 32768, 65536)),
                             dtypes=tuple(args.dtypes), repeats=args.repeats or 50)
        print(f"{meta['device']}; torch {meta['torch']}, triton {meta['triton']}; "
              f"measured copy bandwidth {meta['copy_bandwidth_GBps']:.0f} GB/s")
        print(format_table(rows, ["op", "mode", "dtype", "N", "provider", "ms", "GBps",
                                  "fraction_of_copy"]))
        _save(rows, meta, args.out)
        plot(rows, meta, os.path.join(args.out, "bench.png"))
        print(f"wrote {args.out}/bench.csv, bench.json, bench.png")
        return 0

    print("No CUDA GPU here: GPU throughput numbers need a GPU, so none are measured. "
          "On this CPU: the from-scratch torch norms vs torch's own kernels.")
    rows = run_cpu(m=args.rows or 256, ns=tuple(args.sizes or (256, 1024, 4096)),
                   repeats=args.repeats or 20)
    print(format_table(rows, ["op", "mode", "N", "provider", "ms"]))
    meta = {"device": "cpu", "torch": torch.__version__,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(), "rows_M": args.rows or 256}
    _save(rows, meta, args.out)
    if not args.no_compile_report:
        print_compile_report()
    print(f"wrote {args.out}/bench.csv, bench.json")
    return 0
