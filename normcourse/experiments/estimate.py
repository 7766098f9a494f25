"""``--dry-run``: how many runs, how many FLOPs, and how long on this CPU, before anything long starts.

FLOPs come from the model's shape (:func:`measures.forward_flops`).  CPU
time is measured, not assumed: a probe trains a one-layer model of the
tier's width and context for a few steps on one thread (as every run is
configured), and the FLOP rate it reaches converts the grid's FLOPs into
CPU-core-hours.  No GPU was measured by the code's authors, so GPU-hours are
printed only for a rate you give (``--gpu-tflops``: the sustained TFLOP/s
you expect for this small-model, float32 workload), labelled as your
assumption.
"""

from __future__ import annotations

import time
from functools import lru_cache

import torch

from normcourse import data as data_mod
from normcourse.experiments.measures import MEASURES, forward_flops, run_flops
from normcourse.model import GPTConfig, TinyGPT
from normcourse.train import TrainConfig, make_optimizer

PROBE_STEPS = 3
PROBE_BATCH = 4


@lru_cache(maxsize=None)
def probe_cpu_rate(d_model: int, block_size: int, n_head: int) -> float:
    """FLOP/s of training steps on this CPU, one thread, for a one-layer model of this shape."""
    d = data_mod.cached("python_docs")
    mc = GPTConfig(vocab_size=d.vocab_size, block_size=block_size, n_head=n_head, d_model=d_model, n_layer=1)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = TinyGPT(mc)
        opt = make_optimizer(model, TrainConfig())
        g = torch.Generator().manual_seed(0)

        def step():
            x, y = d.batch("train", PROBE_BATCH, block_size, g)
            _, loss = model(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step()   # the first step allocates; not timed
        t0 = time.perf_counter()
        for _ in range(PROBE_STEPS):
            step()
        seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(old)
    return 3 * forward_flops(mc, PROBE_STEPS * PROBE_BATCH * block_size) / seconds


def estimate(specs: list[dict]) -> dict:
    """Runs, FLOPs and measured CPU-core-hours of ``specs``."""
    flops, cpu_s = 0.0, 0.0
    for s in specs:
        f = run_flops(s)
        m = s["model"]
        flops += f
        cpu_s += f / probe_cpu_rate(m["d_model"], m["block_size"], m["n_head"])
    return {"runs": len(specs), "flops": flops, "cpu_hours": cpu_s / 3600}


def report(name: str, scale: str, specs: list[dict], total: int, *, workers: int = 1,
           gpu_tflops: float | None = None) -> str:
    """The lines ``--dry-run`` prints for one experiment and tier."""
    e = estimate(specs)
    shapes = sorted({(s["model"]["d_model"], s["model"]["block_size"], s["model"]["n_head"]) for s in specs})
    rates = ", ".join(f"{probe_cpu_rate(*shape) / 1e9:.1f} GFLOP/s at d_model {shape[0]}, context {shape[1]}"
                      for shape in shapes)
    lines = [f"{name} ({scale}): {e['runs']} of {total} runs to do, {e['flops']:.2e} FLOP "
             f"(model shape, forward + backward)"]
    if e["runs"]:
        lines.append(f"  CPU: {e['cpu_hours']:.3g} core-hours (measured here: {rates}, one thread); "
                     f"{e['cpu_hours'] / workers:.3g} h of wall time with {workers} worker(s)")
        cpu_only = {MEASURES[s['measure']].cpu_only for s in specs} - {""}
        if cpu_only:
            lines.append(f"  GPU: none; this measure runs on the CPU only ({cpu_only.pop()})")
        elif gpu_tflops:
            lines.append(f"  GPU: {e['flops'] / (gpu_tflops * 1e12) / 3600:.3g} GPU-hours at an ASSUMED "
                         f"{gpu_tflops:g} TFLOP/s sustained (your --gpu-tflops, not a measurement)")
        else:
            lines.append("  GPU: FLOP / your GPU's sustained FLOP/s; pass --gpu-tflops R to convert "
                         "(no GPU rate is assumed here)")
    return "\n".join(lines)
