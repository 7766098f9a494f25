"""Which device the kernel tests use, and which backend "auto" picks (both decided here, on CPU).

``kernel_device`` (tests/conftest.py) must pick CUDA on a GPU machine, where
``import normcourse`` leaves the interpreter off, and the CPU wherever the
interpreter is on; "auto" must never run the interpreter.
"""

from __future__ import annotations

from types import SimpleNamespace
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

import kernel_device as kd
import normcourse.kernels as K
from normcourse.kernels import functional
from normcourse.kernels.triton_norm import NormFunction
from normcourse.checks import resolve_auto
from normcourse.runtime import triton_interpreted

OPS = ["layer_norm", "rms_norm", "add_layer_norm", "add_rms_norm"]


# --------------------------------------------------------------------------
# The fixture's choice
# --------------------------------------------------------------------------

@pytest.mark.parametrize("cuda, interpret, expected", [
    (True, None, "cuda"),  # a GPU machine: import normcourse leaves TRITON_INTERPRET unset
    (True, "0", "cuda"),
    (False, "1", "cpu"),  # a laptop: import normcourse set TRITON_INTERPRET=1
    (True, "1", "cpu"),  # the user asked for the interpreter on a GPU machine
    (False, "0", None),  # nothing can run the kernels
])
def test_kernel_device_choice(monkeypatch, cuda, interpret, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    if interpret is None:
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    else:
        monkeypatch.setenv("TRITON_INTERPRET", interpret)
    device = kd.choose_kernel_device()
    assert (device.type if device is not None else None) == expected


def test_no_kernel_device_skips_with_the_reason(monkeypatch):
    monkeypatch.setattr(kd, "choose_kernel_device", lambda: None)
    with pytest.raises(pytest.skip.Exception, match="no device can run the Triton kernels"):
        kd.kernel_device_or_skip()


def test_the_fixture_follows_the_rule(kernel_device):
    assert kernel_device == kd.choose_kernel_device()
    assert kernel_device.type == ("cpu" if triton_interpreted() else "cuda")


def test_interpreter_only_tests_skip_with_a_reason_when_the_kernels_are_compiled():
    mark = kd.interpreter_only.mark
    assert mark.args == (not triton_interpreted(),)
    assert "interpreter" in mark.kwargs["reason"] and "CUDA" in mark.kwargs["reason"]


# --------------------------------------------------------------------------
# backend="auto"
# --------------------------------------------------------------------------

def _call(op, x, **kw):
    w = torch.randn(x.shape[-1], dtype=x.dtype)
    if op.startswith("add_"):
        return getattr(K, op)(x, torch.randn_like(x), w, **kw)
    return getattr(K, op)(x, w, **kw)


@pytest.mark.parametrize("op", OPS)
def test_auto_on_a_cpu_tensor_runs_pytorch_not_the_interpreter(op):
    x = torch.randn(3, 16)
    with mock.patch.object(NormFunction, "apply", side_effect=AssertionError("kernel ran")):
        out = _call(op, x)  # would raise if the kernels (the interpreter) ran
        module = (K.LayerNorm if "layer" in op else K.RMSNorm)(16)
        module(x)
    assert isinstance(out, tuple) == op.startswith("add_")


def test_auto_on_cpu_equals_torch_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 40, generator=g)
    w, b = torch.randn(40, generator=g), torch.randn(40, generator=g)
    assert torch.equal(K.layer_norm(x, w, b), F.layer_norm(x, (40,), w, b, 1e-5))
    assert torch.equal(K.rms_norm(x, w), F.rms_norm(x, (40,), w, 1e-6))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_auto_picks_triton_for_kernel_dtypes_on_cuda(dtype):
    cuda_tensor = SimpleNamespace(device=torch.device("cuda"), dtype=dtype)
    assert resolve_auto(cuda_tensor) == "triton"
    assert resolve_auto(cuda_tensor, have_triton=False) == "torch"
    assert resolve_auto(SimpleNamespace(device=torch.device("cpu"), dtype=dtype)) == "torch"


def test_auto_picks_torch_for_float64_even_on_cuda():
    cuda_tensor = SimpleNamespace(device=torch.device("cuda"), dtype=torch.float64)
    assert resolve_auto(cuda_tensor) == "torch"
    x = torch.randn(2, 8, dtype=torch.float64)
    torch.testing.assert_close(K.rms_norm(x), F.rms_norm(x, (8,), eps=1e-6))


def test_without_triton_auto_is_torch_and_triton_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(functional, "triton_available", lambda: False)
    x = torch.randn(2, 8)
    torch.testing.assert_close(K.layer_norm(x), F.layer_norm(x, (8,)))
    with pytest.raises(ValueError, match="backend='triton' but triton is not installed"):
        K.layer_norm(x, backend="triton")


def test_triton_on_a_cpu_tensor_with_the_interpreter_off_says_what_to_do(monkeypatch):
    """What a CUDA machine answers to backend='triton' on a CPU tensor."""
    monkeypatch.setattr(functional, "triton_interpreted", lambda: False)
    with pytest.raises(ValueError, match="x is on the CPU but the Triton interpreter is off"):
        K.rms_norm(torch.randn(2, 8), backend="triton")
    # "auto" is unaffected: PyTorch computes.
    K.rms_norm(torch.randn(2, 8))


@kd.interpreter_only
def test_triton_on_a_cpu_tensor_runs_the_kernels_in_the_interpreter():
    x = torch.randn(3, 16)
    with mock.patch.object(NormFunction, "apply", wraps=NormFunction.apply) as spy:
        y = K.layer_norm(x, backend="triton")
    assert spy.call_count == 1
    torch.testing.assert_close(y, F.layer_norm(x, (16,)), rtol=1e-5, atol=1e-5)


def test_auto_error_for_float8_names_what_auto_picked():
    x = torch.randn(2, 8).to(torch.float8_e4m3fn)
    with pytest.raises(ValueError, match=r"rms_norm: backend='torch' \(what 'auto' picks here\)"):
        K.rms_norm(x)
