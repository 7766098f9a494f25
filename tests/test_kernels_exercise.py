"""check_rms_norm_kernel accepts a correct learner kernel and explains common mistakes."""

# normcourse first: it sets TRITON_INTERPRET on a machine without a GPU, and
# Triton reads it when ``triton`` itself is imported (tl.sum is a @jit function).
import normcourse  # noqa: F401  isort: skip
import triton  # noqa: E402  isort: skip
import triton.language as tl  # noqa: E402  isort: skip

import pytest  # noqa: E402
import torch  # noqa: E402

from normcourse.exercises.triton_kernels import check_rms_norm_kernel  # noqa: E402
from near_misses.ch06 import (  # noqa: E402  the kernels the chapter's near misses list
    no_load_mask as no_load_mask_kernel,
    no_store_mask as no_store_mask_kernel,
    divides_by_block as block_mean_kernel,
    no_eps as no_eps_kernel,
    eps_outside as eps_outside_kernel,
    unmasked_weight as no_weight_mask_kernel,
    rows_n_apart as rows_n_apart_kernel,
    loads_n_apart as loads_n_apart_kernel,
    empty as empty_kernel,
    first_row_only as first_row_only_kernel,
    rsqrt_weight_first as rsqrt_kernel,
)


@triton.jit
def good_kernel(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


def test_correct_kernel_passes(capsys):
    assert check_rms_norm_kernel(good_kernel)
    assert "correct" in capsys.readouterr().out


def test_missing_load_mask_is_named(capsys):
    assert not check_rms_norm_kernel(no_load_mask_kernel)
    assert "read past the end of the row" in capsys.readouterr().out


def test_missing_store_mask_is_named(capsys):
    assert not check_rms_norm_kernel(no_store_mask_kernel)
    assert "wrote outside the rows" in capsys.readouterr().out


def test_dividing_by_block_size_is_named(capsys):
    assert not check_rms_norm_kernel(block_mean_kernel)
    assert "BLOCK_N instead of N" in capsys.readouterr().out


def test_not_a_kernel(capsys):
    assert not check_rms_norm_kernel(lambda *a: None)
    assert "@triton.jit decorator is missing" in capsys.readouterr().out


def test_stub_kernel_is_reported_as_not_implemented(capsys):
    import triton
    import triton.language as tl

    from normcourse.exercises import check_rms_norm_kernel

    @triton.jit
    def stub(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
        raise NotImplementedError("your code here")

    assert check_rms_norm_kernel(stub) is False
    assert "not implemented yet" in capsys.readouterr().out


# ---- eps, weight mask, stride, empty body: each mistake gets its own diagnosis --------

@triton.jit
def eps_constant_kernel(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + 1e-5)   # not the eps argument
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


def test_equivalent_kernel_passes(capsys):
    assert check_rms_norm_kernel(rsqrt_kernel), capsys.readouterr().out


def test_missing_eps_is_named(capsys):
    assert not check_rms_norm_kernel(no_eps_kernel)
    out = capsys.readouterr().out
    assert "all-zero row" in out and "without eps" in out, out


def test_eps_outside_the_square_root_is_named(capsys):
    assert not check_rms_norm_kernel(eps_outside_kernel)
    out = capsys.readouterr().out
    assert "outside the square root" in out, out


def test_eps_constant_is_named_not_the_sum_of_squares(capsys):
    # on a 3 x 1 input the sum of squares equals their mean: it must never be blamed there
    assert not check_rms_norm_kernel(eps_constant_kernel)
    out = capsys.readouterr().out
    assert "as if eps were 1e-05" in out and "eps argument is 0.001" in out, out
    assert "sum of squares" not in out


def test_unmasked_weight_load_is_named(capsys):
    assert not check_rms_norm_kernel(no_weight_mask_kernel)
    out = capsys.readouterr().out
    assert "reads the weight past its N = 100 elements" in out, out
    assert "mask=cols < N" in out


def test_rows_n_apart_are_named(capsys):
    assert not check_rms_norm_kernel(rows_n_apart_kernel)
    out = capsys.readouterr().out
    assert "Y + r * N" in out and "80 elements apart" in out, out
    assert "not a power of two" not in out and "pass mask" not in out


def test_loads_n_apart_are_named(capsys):
    assert not check_rms_norm_kernel(loads_n_apart_kernel)
    out = capsys.readouterr().out
    assert "X + r * N" in out and "80 elements apart" in out, out


def test_empty_kernel_is_told_it_never_stored(capsys):
    assert not check_rms_norm_kernel(empty_kernel)
    out = capsys.readouterr().out
    assert "never stored anything" in out, out
    assert "NaN" not in out and "eps" not in out


def test_rows_left_unwritten_are_named(capsys):
    assert not check_rms_norm_kernel(first_row_only_kernel)
    out = capsys.readouterr().out
    assert "unwritten" in out and "rows [1, 2, 3]" in out, out


def test_store_mask_message_names_n_only_when_it_is_not_a_power_of_two(capsys):
    assert not check_rms_norm_kernel(no_store_mask_kernel)
    out = capsys.readouterr().out
    assert "N = 100 is not a power of two" in out, out


# ---- masked loads without other=, and where the test tensors live -------------------------

@triton.jit
def load_mask_without_other_kernel(X, Y, W, stride, N, eps, BLOCK_N: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    mask = cols < N
    w = tl.load(W + cols, mask=mask).to(tl.float32)  # harmless: only padding lanes meet it
    x = tl.load(X + row * stride + cols, mask=mask).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / N + eps)
    tl.store(Y + row * stride + cols, (x * rstd * w).to(Y.dtype.element_ty), mask=mask)


def test_masked_load_without_other_is_named(capsys):
    # the interpreter would give 0 in the masked-off lanes; a GPU gives whatever is there
    assert not check_rms_norm_kernel(load_mask_without_other_kernel)
    out = capsys.readouterr().out
    assert "no other=" in out and "X + row * stride + cols, mask=mask)" in out, out


def test_masked_loads_without_other_are_found_in_the_source():
    from normcourse.exercises import triton_kernels as tk

    assert tk._masked_loads_without_other(load_mask_without_other_kernel) == [
        ("w = tl.load(W + cols, mask=mask).to(tl.float32)", "W"),
        ("x = tl.load(X + row * stride + cols, mask=mask).to(tl.float32)", "X"),
    ]
    assert tk._masked_loads_without_other(good_kernel) == []
    assert tk._first_argument(good_kernel) == "X"


def test_tensors_go_to_the_gpu_for_a_compiled_kernel(monkeypatch):
    from normcourse.exercises import triton_kernels as tk

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert tk._device_for(good_kernel) == "cpu"        # the interpreter reads host memory
    monkeypatch.setattr(tk, "_interpreted", lambda kernel: False)
    assert tk._device_for(good_kernel) == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(tk.Mistake) as raised:
        tk._device_for(good_kernel)
    assert "import normcourse before triton" in raised.value.hint


def test_every_tensor_the_kernel_gets_is_on_the_chosen_device(monkeypatch, capsys):
    from normcourse.exercises import triton_kernels as tk

    devices = []

    class CompiledKernel:   # stands in for a JITFunction: kernel[grid](*args)
        def __call__(self, *args):
            raise RuntimeError("a kernel is launched with kernel[grid](...)")

        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                devices.extend(a.device.type for a in args if isinstance(a, torch.Tensor))
                raise RuntimeError("no GPU to run on")
            return launch

    monkeypatch.setattr(tk, "_device_for", lambda kernel: "meta")
    assert check_rms_norm_kernel(CompiledKernel()) is False
    assert "no GPU to run on" in capsys.readouterr().out
    assert devices == ["meta"] * 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_undefined_lanes_are_nan_in_every_float_dtype(dtype):
    from normcourse.exercises import triton_kernels as tk

    x = torch.randn(3, 100).to(dtype)
    w = torch.ones(100).to(dtype)
    poisoned = tk._launch(load_mask_without_other_kernel, x, w, 1e-6)
    assert poisoned.undefined_lanes and poisoned.y.isnan().all()
    clean = tk._launch(good_kernel, x, w, 1e-6)   # other=0.0 everywhere: nothing is poisoned
    assert not clean.undefined_lanes and not clean.y.isnan().any()
