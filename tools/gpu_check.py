"""``make gpu-check``: check and record, on one GPU, everything only a GPU can show.

Written for a short GPU loan (10 minutes of machine time, all included): every
step runs under its own timeout, the sum of the timeouts stays within
:data:`BUDGET_S` (9 minutes), and each step's output is written to disk while
it runs, so whatever finished is kept even if the loan ends mid-way.  Results
go to ``normcourse/results/gpu/<date>_<gpu-name>/``:

====================  ======================================================
``device.txt``         ``nvidia-smi -q``
``versions.json``      python, torch, triton, CUDA, GPU name, date
``selfcheck.txt``      ``python -m normcourse selfcheck``
``cuda_tests.txt``     ``pytest tests/test_cuda_kernels.py`` (compiled kernels)
``bench.*``            ``python -m normcourse bench --quick`` (csv, json, png),
                       its log in ``bench.txt``
``notebooks.txt``      every chapter top to bottom on CUDA (``--nbval-lax``)
``summary.md``         one page: device, each step's status and time, the
                       benchmark's table; rewritten after every step
====================  ======================================================

Time estimate per step on one H100/H200 (our estimate, not yet measured:
no GPU run has happened), and the timeout that bounds it:

===========  =========  =======  ===============================================
step          estimate   timeout  what dominates
===========  =========  =======  ===============================================
device           3 s       20 s  nvidia-smi; importing torch and CUDA init
selfcheck       15 s       60 s  CUDA init, compiling two small kernels
cuda_tests     120 s      170 s  ~230 compiles of the kernels (8 processes with
                                 pytest-xdist, which the image has), each test
                                 milliseconds on the GPU
bench          100 s      130 s  torch.compile once per case (16 cases, ~4 s
                                 each); 2**27-element working sets, CUDA graphs
notebooks      100 s      150 s  12 chapters, 6 at a time (pytest-xdist); each
                                 under 60 s on a 2-core CPU, so far less there,
                                 unless launch overhead dominates on the GPU
===========  =========  =======  ===============================================

Total of the timeouts: 530 s, within the 540 s budget; estimated total about
5.5 minutes (338 s).

Without CUDA the command says so in one line and exits with status 2.  The
GPU machine reaches no package registry: the script uses ``.venv/bin/python``
when there is one, else ``python3``, and installs the wheels of ``.whl/``
(``make gpu-wheels``) into a temporary folder for the notebook step.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "normcourse", "results", "gpu")
BUDGET_S = 540  # 9 minutes: the loan is 10, the machine's start and the transfers take the rest


@dataclass
class Step:
    """One command, its timeout, and the file its output goes to (in the run folder)."""

    name: str
    argv: list
    timeout_s: float
    estimate_s: float
    log: str
    env: dict = field(default_factory=dict)
    # Why it cannot run (set before running); the step is then recorded as skipped.
    skip: str | None = None


@dataclass
class Outcome:
    name: str
    status: str  # "passed", "FAILED (exit N)", "TIMED OUT after N s", "skipped: why"
    seconds: float
    log: str


def pick_python() -> str:
    """The project's ``.venv`` python when there is one, else ``python3`` (the GPU image's)."""
    venv = os.path.join(ROOT, ".venv", "bin", "python")
    return venv if os.path.exists(venv) else shutil.which("python3") or sys.executable


def probe(python: str) -> dict:
    """Versions and the GPU, as ``python`` sees them (``cuda`` False when there is none)."""
    code = ("import json, platform, torch\n"
            "d = {'python': platform.python_version(), 'torch': torch.__version__,\n"
            "     'cuda': torch.cuda.is_available(), 'cuda_version': torch.version.cuda}\n"
            "try:\n    import triton; d['triton'] = triton.__version__\n"
            "except ImportError:\n    d['triton'] = None\n"
            "if d['cuda']:\n"
            "    p = torch.cuda.get_device_properties(0)\n"
            "    d.update(gpu=p.name, capability=f'{p.major}.{p.minor}',\n"
            "             memory_GiB=round(p.total_memory / 2**30, 1),\n"
            "             multiprocessors=p.multi_processor_count)\n"
            "print(json.dumps(d))\n")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": ROOT})
    if out.returncode != 0:
        return {"cuda": False, "error": out.stderr.strip().splitlines()[-1:] or ["?"]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_folder_name(gpu: str, when: dt.datetime) -> str:
    """``<date>_<gpu-name>``, the name made safe for a path (``2026-12-02_NVIDIA-H200``)."""
    safe = re.sub(r"[^A-Za-z0-9.]+", "-", gpu).strip("-") or "unknown-GPU"
    return f"{when:%Y-%m-%d}_{safe}"


def has_module(python: str, name: str, env: dict | None = None) -> bool:
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({name!r}) is None)"
    return subprocess.run([python, "-c", code], env={**os.environ, **(env or {})},
                          capture_output=True, timeout=60).returncode == 0


def install_wheels(python: str, wheel_dir: str, target: str) -> str | None:
    """Install every wheel of ``wheel_dir`` into ``target``; None, or why it failed."""
    wheels = sorted(glob.glob(os.path.join(wheel_dir, "*.whl")))
    if not wheels:
        return None
    out = subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                          "--no-compile", "--no-cache-dir", "--upgrade", "--target", target,
                          *wheels], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return f"pip install of {wheel_dir} failed: {out.stderr[-300:]}"
    return None


def plan(python: str, run_dir: str, wheels_site: str | None) -> list[Step]:
    """The steps, in order, with their timeouts (:data:`BUDGET_S` in total)."""
    env = {"PYTHONPATH": ROOT, "PYTHONUNBUFFERED": "1"}
    nb_env = dict(env)
    if wheels_site:
        nb_env["PYTHONPATH"] = os.pathsep.join([wheels_site, ROOT])
    xdist = ["-n", "8"] if has_module(python, "xdist") else []
    notebooks = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
    steps = [
        Step("device", ["nvidia-smi", "-q"], 20, 3, "device.txt", env),
        Step("selfcheck", [python, "-m", "normcourse", "selfcheck"], 60, 15, "selfcheck.txt",
             env),
        Step("cuda_tests", [python, "-m", "pytest", "-q", "-rs", *xdist,
                            os.path.join(ROOT, "tests", "test_cuda_kernels.py")],
             170, 120, "cuda_tests.txt", env),
        Step("bench", [python, "-m", "normcourse", "bench", "--quick", "--out", run_dir],
             130, 100, "bench.txt", env),
        # one notebook per worker (--dist loadfile): a chapter's cells share a kernel
        Step("notebooks", [python, "-m", "pytest", "-q", "--nbval-lax",
                           *(["-n", "6", "--dist", "loadfile"] if xdist else []),
                           "--nbval-cell-timeout", "120", *notebooks], 150, 100,
             "notebooks.txt", nb_env),
    ]
    if shutil.which("nvidia-smi") is None:
        steps[0].skip = "nvidia-smi not found"
    if not has_module(python, "nbval", nb_env):
        steps[-1].skip = ("nbval is not installed: run `make gpu-wheels` where pip works "
                          "and bring .whl/ along")
    return steps


def run_step(step: Step, run_dir: str, deadline: float) -> Outcome:
    """Run one step, its output streamed into its log file; kill it at its timeout."""
    log_path = os.path.join(run_dir, step.log)
    if step.skip:
        with open(log_path, "w") as f:
            f.write(f"skipped: {step.skip}\n")
        return Outcome(step.name, f"skipped: {step.skip}", 0.0, step.log)
    timeout = min(step.timeout_s, deadline - time.monotonic())
    if timeout <= 1:
        return Outcome(step.name, "skipped: the 9-minute budget is spent", 0.0, step.log)
    t0 = time.monotonic()
    with open(log_path, "w") as f:
        f.write(f"$ {' '.join(map(str, step.argv))}\n")
        f.flush()
        # A new session, so a timeout kills the step's children (xdist workers, kernels) too.
        proc = subprocess.Popen(step.argv, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, **step.env}, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
            status = "passed" if rc == 0 else f"FAILED (exit {rc})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = f"TIMED OUT after {timeout:.0f} s"
            f.write(f"\n[gpu-check: {status}]\n")
    return Outcome(step.name, status, time.monotonic() - t0, step.log)


def _tail_line(path: str, pattern: str) -> str:
    """The last line of ``path`` matching ``pattern`` (pytest's closing line), or ''."""
    try:
        with open(path, errors="replace") as f:
            lines = [ln.strip() for ln in f if re.search(pattern, ln)]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def write_summary(run_dir: str, info: dict, outcomes: list[Outcome], steps: list[Step]) -> str:
    """One page of markdown: the device, each step's result, the benchmark table."""
    gpu = info.get("gpu", "no GPU")
    lines = [f"# gpu-check on {gpu}", "",
             f"- date (UTC): {info.get('date', '?')}",
             f"- device: {gpu}, compute capability {info.get('capability', '?')}, "
             f"{info.get('memory_GiB', '?')} GiB, {info.get('multiprocessors', '?')} SMs",
             f"- python {info.get('python')}, torch {info.get('torch')} "
             f"(CUDA {info.get('cuda_version')}), triton {info.get('triton')}", "",
             "| step | result | seconds | timeout | log |", "|---|---|---|---|---|"]
    done = {o.name: o for o in outcomes}
    for s in steps:
        o = done.get(s.name)
        result = o.status if o else "not run yet"
        detail = _tail_line(os.path.join(run_dir, s.log), r"\d+ (passed|failed|skipped)")
        if detail and o:
            result += f": {detail}"
        secs = f"{o.seconds:.0f}" if o else ""
        lines.append(f"| {s.name} | {result} | {secs} | {s.timeout_s:.0f} | {s.log} |")
    bench_json = os.path.join(run_dir, "bench.json")
    if os.path.exists(bench_json):
        with open(bench_json) as f:
            bench = json.load(f)
        meta = bench["meta"]
        lines += ["", f"Benchmark (`bench --quick`): measured copy bandwidth "
                      f"{meta['copy_bandwidth_GBps']:.0f} GB/s; nominal peak "
                      f"{meta.get('nominal_peak_GBps') or 'unknown'} GB/s "
                      f"({meta.get('nominal_peak_source')}).", "",
                  "| op | mode | N | provider | variant | us | GB/s | of copy |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in bench["rows"]:
            if r["status"] != "ok":
                lines.append(f"| {r['op']} | {r['mode']} | {r['N']} | {r['provider']} | "
                             f"| {r['status']} | | |")
                continue
            lines.append(f"| {r['op']} | {r['mode']} | {r['N']} | {r['provider']} | "
                         f"{r['variant']} | {r['ms'] * 1e3:.1f} | {r['GBps']:.0f} | "
                         f"{r['fraction_of_copy']:.0%} |")
        # bench.png lies beside it; not linked here, since the chapters that show this
        # summary draw the benchmark themselves (a relative link would break there).
        lines += ["", "Plot: `bench.png` in this folder."]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(run_dir, "summary.md"), "w") as f:
        f.write(text)
    return text


def run_all(steps: list[Step], run_dir: str, info: dict, budget_s: float = BUDGET_S,
            log=print, started: float | None = None) -> list[Outcome]:
    """Run ``steps`` in order, all done within ``budget_s`` of ``started`` (default: now);
    the summary is rewritten after each step."""
    deadline = (started or time.monotonic()) + budget_s
    outcomes = []
    write_summary(run_dir, info, outcomes, steps)
    for step in steps:
        log(f"gpu-check: {step.name} (timeout {step.timeout_s:.0f} s) ...")
        outcome = run_step(step, run_dir, deadline)
        outcomes.append(outcome)
        write_summary(run_dir, info, outcomes, steps)
        log(f"gpu-check: {step.name}: {outcome.status} ({outcome.seconds:.0f} s) -> "
            f"{os.path.relpath(os.path.join(run_dir, outcome.log), ROOT)}")
    return outcomes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="tools/gpu_check.py", description=__doc__.split("\n")[0])
    p.add_argument("--python", default=None, help="interpreter to check (default: .venv's, "
                   "else python3)")
    p.add_argument("--results", default=RESULTS, help="folder for the run's folder")
    p.add_argument("--wheels", default=os.path.join(ROOT, ".whl"),
                   help="wheelhouse installed to a temporary folder for the notebook step")
    p.add_argument("--dry-run", action="store_true",
                   help="print the steps, their timeouts and estimates; run nothing")
    args = p.parse_args(argv)
    started = time.monotonic()  # the budget counts the probe and the wheel install too
    python = args.python or pick_python()
    info = probe(python)
    if args.dry_run:
        steps = plan(python, "<run folder>", None)
        print(f"gpu-check plan ({python}; CUDA {'found' if info.get('cuda') else 'NOT found'}):")
        for s in steps:
            print(f"  {s.name:<11} timeout {s.timeout_s:4.0f} s  estimate {s.estimate_s:4.0f} s"
                  f"  -> {s.log}{'  [skipped: ' + s.skip + ']' if s.skip else ''}")
        print(f"  total timeout {sum(s.timeout_s for s in steps):.0f} s "
              f"(budget {BUDGET_S} s), estimate {sum(s.estimate_s for s in steps):.0f} s")
        return 0
    if not info.get("cuda"):
        print(f"gpu-check: no CUDA GPU visible to {python} (torch.cuda.is_available() is "
              "False); run it on a machine with an NVIDIA GPU.")
        return 2
    now = dt.datetime.now(dt.timezone.utc)
    info["date"] = now.isoformat(timespec="seconds")
    run_dir = os.path.join(args.results, run_folder_name(info["gpu"], now))
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "versions.json"), "w") as f:
        json.dump(info, f, indent=1)
    with tempfile.TemporaryDirectory(prefix="gpu-check-site-") as site:
        problem = install_wheels(python, args.wheels, site)
        if problem:
            print(f"gpu-check: {problem}")
        steps = plan(python, run_dir, site if os.listdir(site) else None)
        outcomes = run_all(steps, run_dir, info, started=started)
    print(f"gpu-check: wrote {os.path.relpath(run_dir, ROOT)}/summary.md")
    return 0 if all(o.status == "passed" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
