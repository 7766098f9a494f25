"""Ahead-of-time compilation of every kernel for real GPUs (no GPU needed).

The interpreter runs code a GPU compiler would reject; this test compiles each
kernel with ``triton.compile`` for sm_75 (Colab's T4), sm_80 (A100) and sm_90
(H100), in every dtype, at the block sizes and warps the launcher picks, then
reads ``ptxas -v`` for registers and spills and the PTX for vector loads.
"""

from __future__ import annotations

import pytest

from normcourse.kernels.compile_report import KERNELS, compile_many, format_report, ptxas_path
from normcourse.kernels.launch import (backward_is_looped, forward_is_looped, looped_settings,
                                       row_settings)

pytestmark = pytest.mark.skipif(ptxas_path() is None, reason="ptxas not available")

CCS = (75, 80, 90)
DTYPES = ("fp32", "fp16", "bf16")
# Representative row lengths: tiny, odd, the usual hidden sizes, the limit.
SWEEP = (1, 123, 1024, 1500, 4096, 8192, 16384, 32768, 65536)


@pytest.fixture(scope="module")
def results():
    jobs = [(k, d, 4096, cc) for k in KERNELS for d in DTYPES for cc in CCS]
    jobs += [(k, d, n, 80) for k in KERNELS for d in ("fp32", "bf16") for n in SWEEP
             if n != 4096]
    # Without weight and bias: the HAS_WEIGHT / HAS_BIAS = False branches compile too.
    jobs += [(k, "fp32", n, 80, False) for k in KERNELS for n in (123, 16384)]
    out = compile_many(jobs)
    print("\n" + format_report(out))  # shown with pytest -s: the resource report
    return out


def test_every_kernel_dtype_and_target_compiles(results):
    got = {(r.kernel, r.dtype, r.cc) for r in results if r.n == 4096}
    assert sum(not r.affine for r in results) == 2 * len(KERNELS)
    assert got == {(k, d, cc) for k in KERNELS for d in DTYPES for cc in CCS}
    for r in results:
        assert r.registers > 0


def test_compiled_with_the_launchers_settings(results):
    for r in results:
        looped = backward_is_looped(r.n) if r.kernel.endswith("_bwd") else forward_is_looped(r.n)
        if looped:
            assert (r.block_n, r.num_warps) == tuple(looped_settings())
        else:
            assert (r.block_n, r.num_warps) == tuple(row_settings(r.n))


def test_no_spills_at_shipped_configs(results):
    """No shipped configuration spills, up to N = 65536 (long rows use chunked kernels)."""
    for r in results:
        assert r.spill_stores == 0 and r.spill_loads == 0, r


def test_global_loads_are_vectorized(results):
    """With N a multiple of 16, rows are 16-byte aligned and loads use ld.global.v2/v4."""
    for r in results:
        if r.n % 16 == 0 and r.n >= 1024:
            assert r.vector_loads.startswith(("v4", "v2")), r
