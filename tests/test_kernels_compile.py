"""Ahead-of-time compilation of every kernel for real GPUs (no GPU needed).

The interpreter runs code a GPU compiler would reject; this test compiles each
kernel with ``triton.compile`` for sm_75 (Colab's T4), sm_80 (A100) and sm_90
(H100/H200), in every dtype, exactly as the launchers would launch it (the
report records the launches, see ``compile_report.captured_launches``), then
reads ``ptxas -v`` for registers and spills and the PTX for vector loads and
pipelining, and checks the occupancy the launchers count on.
"""

from __future__ import annotations

import pytest
import torch

from normcourse.kernels.compile_report import (KERNELS, SM_LIMITS, captured_launches,
                                               compile_many, format_report, ptxas_path)
from normcourse.kernels.launch import (MAX_REGISTER_ROW_FORWARD, LaunchSettings,
                                       backward_ctas_per_sm, backward_is_looped,
                                       forward_ctas_per_sm, forward_is_looped, looped_settings,
                                       row_settings)
from normcourse.kernels.triton_norm import SUM_PARTIALS_SETTINGS

pytestmark = pytest.mark.skipif(ptxas_path() is None, reason="ptxas not available")

CCS = (75, 80, 90)
DTYPES = ("fp32", "fp16", "bf16")
# Representative row lengths: tiny, odd, the usual hidden sizes, masked rows
# just below the register limits (12288, 30000), the limits, and beyond; 9001
# and 20001 are not multiples of 16, so their rows are not 16-byte aligned.
SWEEP = (1, 123, 1024, 1500, 4096, 8192, 9001, 12288, 16384, 20001, 30000, 32768, 65536)
NORM_KERNELS = [k for k in KERNELS if k != "sum_partials"]


@pytest.fixture(scope="module")
def results():
    jobs = [(k, d, 4096, cc) for k in KERNELS for d in DTYPES for cc in CCS]
    jobs += [(k, d, n, 90) for k in KERNELS for d in ("fp32", "bf16") for n in SWEEP
             if n != 4096]
    # Without weight and bias: the HAS_WEIGHT / HAS_BIAS = False branches compile too.
    jobs += [(k, "fp32", n, 90, False) for k in NORM_KERNELS for n in (123, 16384)]
    out = compile_many(jobs)
    print("\n" + format_report(out))  # shown with pytest -s: the resource report
    return out


def _settings(r) -> LaunchSettings:
    """The launch settings the launcher uses for this result's kernel."""
    if r.variant == "sum":
        return SUM_PARTIALS_SETTINGS
    if r.variant == "chunked":
        return looped_settings()
    return row_settings(r.n)


def test_every_kernel_dtype_and_target_compiles(results):
    got = {(r.kernel, r.dtype, r.cc) for r in results if r.n == 4096}
    assert sum(not r.affine for r in results) == 2 * len(NORM_KERNELS)
    assert got == {(k, d, cc) for k in KERNELS for d in DTYPES for cc in CCS}
    for r in results:
        assert r.registers > 0


def test_compiled_with_the_launchers_settings(results):
    for r in results:
        if r.kernel == "sum_partials":
            assert r.variant == "sum"
        else:
            looped = backward_is_looped(r.n) if r.kernel.endswith("_bwd") \
                else forward_is_looped(r.n)
            assert r.variant == ("chunked" if looped else "row"), r
        assert (r.block_n, r.num_warps) == tuple(_settings(r)), r


def test_no_spills_at_shipped_configs(results):
    """No shipped configuration spills, up to N = 65536 (long rows use chunked kernels)."""
    for r in results:
        assert r.spill_stores == 0 and r.spill_loads == 0, r


def test_global_loads_are_vectorized(results):
    """With N a multiple of 16, rows are 16-byte aligned and reads move 8-16 bytes each."""
    for r in results:
        if r.n % 16 == 0 and r.n >= 1024:
            assert r.vector_loads.startswith(("v4", "v2", "cp.async.16", "cp.async.8")), r


def test_single_pass_forward_up_to_32768_features(results):
    """Aligned rows up to 32768 features stay in registers; unaligned ones beyond 16384 do not."""
    assert MAX_REGISTER_ROW_FORWARD == 32768
    long_rows = [r for r in results if r.kernel.endswith("_fwd") and 16384 < r.n <= 32768]
    assert {r.n % 16 == 0 for r in long_rows} == {True, False}
    for r in long_rows:
        if r.n % 16 == 0:
            assert r.variant == "row" and r.num_warps == 32, r
        else:
            assert r.variant == "chunked", r


def test_layer_norm_forward_at_16384_fits_two_ctas_per_sm(results):
    hits = [r for r in results if r.kernel.endswith("layer_norm_fwd") and r.n == 16384]
    assert hits
    for r in hits:
        assert r.ctas_per_sm >= 2, r


def test_every_kernel_fits_the_ctas_its_launcher_counts_on(results):
    """The backward launches SMs x backward_ctas_per_sm programs: they must all fit at once."""
    for r in results:
        threads, aligned = SM_LIMITS[r.cc][0], r.n % 16 == 0
        if r.kernel.endswith("_bwd"):
            assert r.ctas_per_sm >= backward_ctas_per_sm(_settings(r), threads, aligned), r
        elif r.kernel.endswith("_fwd"):
            assert r.ctas_per_sm >= forward_ctas_per_sm(_settings(r), aligned), r


def test_the_backward_row_loop_is_pipelined(results):
    """tl.range(..., num_stages=2): the next row's loads are cp.async copies (sm_80 and later)."""
    rows = [r for r in results if r.kernel.endswith("_bwd") and r.variant == "row"
            and r.cc >= 80 and r.n >= 1024 and r.affine]
    assert rows
    for r in rows:
        assert r.pipelined and r.shared > 0, r


@pytest.mark.parametrize("name", list(KERNELS))
def test_signatures_come_from_the_launchers(name):
    """Each recorded launch passes every runtime argument of its kernel, and only those."""
    case = KERNELS[name]
    launches = captured_launches(case.op, torch.float32, 40000 if "fwd" in name else 300,
                                 backward=case.backward)
    assert len(launches) == (2 if case.backward else 1)
    rec = launches[case.launch]
    fn = getattr(rec.kernel, "fn", rec.kernel)
    params = list(fn.__code__.co_varnames[:fn.__code__.co_argcount])
    constexprs = [k for k in rec.kwargs if k in params]
    assert len(rec.args) + len(constexprs) == len(params)
    assert set(rec.kwargs) - set(constexprs) <= {"num_warps", "maxnreg", "num_stages"}
