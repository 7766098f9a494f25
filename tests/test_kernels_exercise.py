"""check_rms_norm_kernel: the details of its messages, and its memory guards.

Every near miss of chapter 6 is rejected with its mistake named by
tests/test_near_misses.py; the kernels here come from that list
(tests/near_misses/ch06.py), and these tests check what that runner does not:
the exact numbers a message quotes, what it must not say, and the guards' parts.
"""

# normcourse first: it sets TRITON_INTERPRET on a machine without a GPU, and
# Triton reads it when ``triton`` itself is imported (tl.sum is a @jit function).
import normcourse  # noqa: F401  isort: skip

import pytest  # noqa: E402
import torch  # noqa: E402

from near_misses import ch06  # noqa: E402  the chapter's kernels, right and wrong
from normcourse.exercises import triton_kernels as tk  # noqa: E402
from normcourse.exercises.triton_kernels import check_rms_norm_kernel  # noqa: E402


def _feedback(kernel, capsys):
    """The checker's verdict on ``kernel`` must be a rejection; its printed feedback."""
    assert not check_rms_norm_kernel(kernel)
    return capsys.readouterr().out


def test_correct_kernel_passes(capsys):
    assert check_rms_norm_kernel(ch06.rms_norm_kernel)
    assert "correct" in capsys.readouterr().out


def test_not_a_kernel(capsys):
    assert "@triton.jit decorator is missing" in _feedback(lambda *a: None, capsys)


def test_missing_eps_is_named(capsys):
    out = _feedback(ch06.no_eps, capsys)
    assert "all-zero row" in out and "without eps" in out, out


def test_eps_constant_is_named_not_the_sum_of_squares(capsys):
    # on a 3 x 1 input the sum of squares equals their mean: it must never be blamed there
    out = _feedback(ch06.eps_constant, capsys)
    assert "as if eps were 1e-05" in out and "eps argument is 0.001" in out, out
    assert "sum of squares" not in out


def test_unmasked_weight_load_is_named(capsys):
    out = _feedback(ch06.unmasked_weight, capsys)
    assert "reads the weight past its N = 100 elements" in out, out
    assert "mask=cols < N" in out


def test_unmasked_x_load_hidden_by_where_is_named(capsys):
    out = _feedback(ch06.no_load_mask_then_where, capsys)
    assert "reads X past the end of each row on the 5 x 100 input" in out, out
    assert "BLOCK_N = 128" in out


def test_rows_n_apart_are_named(capsys):
    out = _feedback(ch06.rows_n_apart, capsys)
    assert "Y + r * N" in out and "80 elements apart" in out, out
    assert "not a power of two" not in out and "pass mask" not in out


def test_loads_n_apart_are_named(capsys):
    out = _feedback(ch06.loads_n_apart, capsys)
    assert "X + r * N" in out and "80 elements apart" in out, out


def test_empty_kernel_is_told_it_never_stored(capsys):
    out = _feedback(ch06.empty, capsys)
    assert "never stored anything" in out, out
    assert "NaN" not in out and "eps" not in out


def test_rows_left_unwritten_are_named(capsys):
    out = _feedback(ch06.first_row_only, capsys)
    assert "unwritten" in out and "rows [1, 2, 3]" in out, out


def test_store_mask_message_names_n_only_when_it_is_not_a_power_of_two(capsys):
    assert "N = 100 is not a power of two" in _feedback(ch06.no_store_mask, capsys)


# ---- masked loads without other=, and where the test tensors live -------------------------

def test_masked_load_without_other_is_named(capsys):
    # the interpreter would give 0 in the masked-off lanes; a GPU gives whatever is there
    out = _feedback(ch06.load_mask_without_other, capsys)
    assert "no other=" in out and "`x = tl.load(X + at, mask=mask).to(tl.float32)`" in out, out


def test_masked_loads_without_other_are_found_in_the_source():
    assert tk._masked_loads_without_other(ch06.load_mask_without_other) == [
        ("x = tl.load(X + at, mask=mask).to(tl.float32)", "X")]
    assert tk._masked_loads_without_other(ch06.weight_without_other) == [
        ("_store(Y, at, x * _rstd(x, N, eps) * tl.load(W + cols, mask=mask).to(tl.float32), "
         "mask)", "W")]
    assert tk._masked_loads_without_other(ch06.rms_norm_kernel) == []
    assert tk._first_argument(ch06.rms_norm_kernel) == "X"


def test_tensors_go_to_the_gpu_for_a_compiled_kernel(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert tk._device_for(ch06.rms_norm_kernel) == "cpu"   # the interpreter reads host memory
    monkeypatch.setattr(tk, "_interpreted", lambda kernel: False)
    assert tk._device_for(ch06.rms_norm_kernel) == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(tk.Mistake) as raised:
        tk._device_for(ch06.rms_norm_kernel)
    assert "import normcourse before triton" in raised.value.hint


def test_every_tensor_the_kernel_gets_is_on_the_chosen_device(monkeypatch, capsys):
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
    assert "no GPU to run on" in _feedback(CompiledKernel(), capsys)
    assert devices == ["meta"] * 3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_undefined_lanes_are_nan_in_every_float_dtype(dtype):
    x = torch.randn(3, 100).to(dtype)
    w = torch.ones(100).to(dtype)
    poisoned = tk._launch(ch06.load_mask_without_other, x, w, 1e-6)
    assert poisoned.undefined_lanes and poisoned.y.isnan().all()
    clean = tk._launch(ch06.rms_norm_kernel, x, w, 1e-6)   # other=0.0: nothing is poisoned
    assert not clean.undefined_lanes and not clean.y.isnan().any()


def test_x_reads_are_recorded_only_inside_the_rows_for_a_masked_load():
    x, w = torch.randn(3, 100), torch.ones(100)
    masked = tk._launch(ch06.rms_norm_kernel, x, w, 1e-6)
    assert masked.x_reads is not None and ((masked.x_reads % masked.stride) < 100).all()
    unmasked = tk._launch(ch06.no_load_mask_then_where, x, w, 1e-6)
    assert ((unmasked.x_reads % unmasked.stride) >= 100).any()
