"""The tolerance rule, and the CUDA test harness exercised on the CPU.

tests/test_cuda_kernels.py runs only on a GPU; its harness (``check``) and
the rule it relies on are tested here, so that neither can be wrong unseen.
"""

import os
import subprocess
import sys

import pytest
import torch

import normcourse.kernels as K
import test_cuda_kernels as cuda_tests
from normcourse.tolerance import ATOL, assert_close_to_reference, compare


def _pair(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 300, generator=g).to(dtype)
    ref = torch.nn.functional.layer_norm(x.double(), (300,))
    theirs = torch.nn.functional.layer_norm(x, (300,))
    return ref, theirs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_torch_itself_passes_and_a_perturbed_result_fails(dtype):
    ref, theirs = _pair(dtype)
    assert compare(theirs, theirs, ref).ok
    # off by 3x torch's own error (plus the slack): must fail
    c = compare(theirs, theirs, ref)
    bump = 3 * c.torch_error + 2 * ATOL[dtype] * ref.abs().max().item()
    perturbed = theirs.clone()
    perturbed.view(-1)[17] += bump
    bad = compare(perturbed, theirs, ref)
    assert not bad.ok and bad.error > bad.allowed
    with pytest.raises(AssertionError, match="OUTSIDE the allowed"):
        assert_close_to_reference("y", perturbed, theirs, ref)


def test_nan_wrong_shape_and_unknown_dtype_never_pass():
    ref, theirs = _pair(torch.float32)
    nan = theirs.clone()
    nan[3, 4] = float("nan")
    assert not compare(nan, theirs, ref).ok
    assert not compare(theirs[:, :-1], theirs, ref).ok
    with pytest.raises(ValueError, match="dtype must be one of"):
        compare(theirs.double(), theirs, ref)


def test_rule_scales_with_torchs_error_not_a_fixed_rtol():
    ref, theirs = _pair(torch.bfloat16)
    c = compare(theirs, theirs, ref)
    assert c.allowed == pytest.approx(2 * c.torch_error + ATOL[torch.bfloat16] *
                                      max(1.0, ref.abs().max().item()))


@pytest.mark.parametrize("variant", cuda_tests.VARIANTS)
@pytest.mark.parametrize("op", cuda_tests.OPS)
def test_cuda_harness_runs_through_the_interpreter(op, variant):
    """The GPU module's ``check`` on the CPU (small rows): it must pass the real kernels."""
    dtype = torch.float16 if variant == "row_strided" else torch.bfloat16
    cuda_tests.check(op, 123, dtype, variant, device="cpu", rows=5)


def test_cuda_harness_rejects_a_deliberately_wrong_kernel(monkeypatch):
    real = K.rms_norm
    monkeypatch.setattr(K, "rms_norm", lambda *a, **kw: (
        real(*a, **kw) * (1.1 if kw.get("backend") == "triton" else 1)))  # 10% off
    with pytest.raises(AssertionError, match="rms_norm affine y .*OUTSIDE"):
        cuda_tests.check("rms_norm", 123, torch.bfloat16, device="cpu", rows=5)


def test_cuda_harness_strided_variant_really_is_strided():
    t, _ = cuda_tests.make_inputs("layer_norm", 3, 10, torch.float16, "row_strided", "cpu")
    assert t["x"].stride() == (74, 1) and not t["x"].is_contiguous()
    t, _ = cuda_tests.make_inputs("add_rms_norm", 3, 10, torch.bfloat16, "float32_params", "cpu")
    assert t["weight"].dtype == torch.float32 and t["x"].dtype == torch.bfloat16


def test_cuda_module_is_collected_and_skipped_with_a_reason_here():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the module runs instead of skipping")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs",
                          "tests/test_cuda_kernels.py"],
                         capture_output=True, text=True, timeout=300,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stdout + out.stderr
    n = len(cuda_tests.OPS) * len(cuda_tests.DTYPES) * len(cuda_tests.SIZES) \
        + len(cuda_tests.OPS) * len(cuda_tests.SIZES) * 3 + 1
    assert f"{n} skipped" in out.stdout
    assert "needs a CUDA GPU" in out.stdout
