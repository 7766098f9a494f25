"""Timers: the one wall-clock timer the chapters use, and the GPU kernel timers.

- :func:`median_seconds`: median wall-clock seconds of ``fn()``, synchronizing
  CUDA around each call so that asynchronous GPU work is inside the interval.
  What a chapter uses to time anything on either device.
- :func:`kernel_ms`: GPU time of one call with the host taken out.  The calls
  are captured once into a CUDA graph and the graph is replayed, so the time
  between kernels is the GPU's, not Python's; where capture fails the calls
  are issued back to back between two CUDA events (batched), which hides host
  overhead as long as the host keeps ahead of the GPU.
- :func:`host_us`: what one call costs the host (Python, dispatch, launch),
  which a learner calling the op eagerly pays too; when it exceeds the kernel
  time, an eager loop of such calls is host-bound.
"""

from __future__ import annotations

import statistics
import time
from typing import NamedTuple

import torch

__all__ = ["median_seconds", "KernelTime", "kernel_ms", "host_us"]


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def median_seconds(fn, repeats: int = 7, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` calls, after ``warmup`` calls."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync()
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class KernelTime(NamedTuple):
    """Milliseconds per call and how they were measured ("cuda_graph" or "batched")."""

    ms: float
    method: str


def kernel_ms(fn, repeats: int = 20, calls: int = 10, warmup: int = 3) -> KernelTime:
    """Median GPU milliseconds of one ``fn()``, without the host's launch overhead.

    ``calls`` calls are captured into one CUDA graph; each of ``repeats``
    replays is timed with CUDA events and divided by ``calls``.  Capture needs
    a stream other than the default one: the current stream is used when it
    is one (a backward must be captured on the stream its forward ran on,
    since autograd runs each backward op on its forward op's stream), else a
    new one.  Warm-up runs there first, so that lazy initialisation,
    autotuning and compilation stay out of the capture and the timing.
    """
    stream = torch.cuda.current_stream()
    if stream == torch.cuda.default_stream():
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
    torch.cuda.synchronize()
    try:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            for _ in range(calls):
                fn()
        run, method = graph.replay, "cuda_graph"
        with torch.cuda.stream(stream):
            run()
    except Exception:  # not capturable (a host sync, a CPU tensor...): time a batch instead
        torch.cuda.synchronize()

        def run():
            for _ in range(calls):
                fn()
        method = "batched"
    torch.cuda.synchronize()
    times = []
    with torch.cuda.stream(stream):
        for _ in range(repeats):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / calls)
    return KernelTime(statistics.median(times), method)


def host_us(fn, repeats: int = 5, calls: int = 20) -> float:
    """Median microseconds the host spends issuing one ``fn()`` (no synchronization inside)."""
    _sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls * 1e6)
        _sync()
    return statistics.median(times)
