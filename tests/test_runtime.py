"""normcourse.runtime: the device choice and the Triton interpreter switch."""

import os
import subprocess
import sys

import pytest
import torch

import normcourse
from normcourse.runtime import pick_device, triton_self_check


def test_interpreter_is_on_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the interpreter is only used without it")
    assert os.environ["TRITON_INTERPRET"] == "1"
    assert triton_self_check() == "interpreter (CPU)"


def test_pick_device():
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="prefer must be"):
        pick_device("tpu")


def test_importing_normcourse_sets_the_variable_before_kernels_are_defined():
    # A fresh interpreter: import normcourse first, then define a kernel, and it runs on CPU.
    code = (
        "import os; os.environ.pop('TRITON_INTERPRET', None)\n"
        "import normcourse\n"
        "from normcourse.runtime import triton_self_check\n"
        "print(triton_self_check())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    expected = "cuda" if torch.cuda.is_available() else "interpreter (CPU)"
    assert expected in out.stdout


def test_self_check_reports_a_broken_setup():
    # Kernels defined with the interpreter off cannot run on CPU tensors: the
    # self-check must say so rather than return garbage.
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    code = (
        "import os; os.environ['TRITON_INTERPRET'] = '0'\n"
        "import normcourse\n"
        "from normcourse.runtime import triton_self_check, TritonSetupError\n"
        "try:\n    triton_self_check()\nexcept TritonSetupError as e:\n    print('reported:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "reported:" in out.stdout, out.stdout + out.stderr
    assert "TRITON_INTERPRET" in out.stdout


def test_command_line_selfcheck():
    out = subprocess.run([sys.executable, "-m", "normcourse", "selfcheck"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ok: normcourse.kernels.layer_norm" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "normcourse", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "choose one of" in bad.stderr


def test_selfcheck_says_what_it_checked_and_that_it_matched(capsys):
    from normcourse import runtime

    assert runtime.main([]) == 0
    out = capsys.readouterr().out
    assert f"torch {torch.__version__}" in out
    assert "ok: a one-line Triton kernel" in out and "matched its reference" in out
    assert "normcourse.kernels.layer_norm" in out and "forward and backward" in out
    assert "matched the float64 reference" in out
    if torch.cuda.is_available():
        assert torch.cuda.get_device_name() in out and "compiled for this GPU" in out
    else:
        assert "no CUDA GPU" in out and "through the interpreter" in out


def test_selfcheck_fails_when_the_library_kernel_is_wrong(capsys, monkeypatch):
    from normcourse import kernels as K
    from normcourse import runtime

    real = K.layer_norm
    monkeypatch.setattr(K, "layer_norm", lambda x, w, b, **kw: real(x, w, b, **kw) * 1.001)
    assert runtime.main([]) == 1
    out = capsys.readouterr().out
    assert "FAILED: normcourse.kernels.layer_norm" in out and "OUTSIDE the allowed" in out


@pytest.mark.parametrize("triton_v, numpy_v, expected", [
    ("3.0.0", "2.2.6", "pip install 'triton>=3.2'"),
    ("3.1.0", "1.26.4", "pip install 'triton>=3.2'"),
    ("3.2.0", "2.2.6", None),
    ("3.6.0", "2.3.5", None),
    ("3.6.0", "2.4.0", "pip install 'numpy<2.4'"),
    ("3.3.1", "2.4.6", "pip install 'numpy<2.4'"),
    ("3.7.1", "2.4.6", None),
    ("3.9.0", "2.4.6", None),
    ("3.10.0+git1a2b", "3.0.0rc1", None),
])
def test_known_interpreter_incompatibilities_are_named(triton_v, numpy_v, expected):
    """Each pair was run here: the kernel tests fail exactly where a problem is named."""
    from normcourse.runtime import interpreter_problem

    problem = interpreter_problem(triton_v, numpy_v)
    assert (problem is None) == (expected is None)
    if expected:
        assert expected in problem and triton_v in problem


def test_selfcheck_names_an_incompatible_triton_numpy_pair(monkeypatch, capsys):
    if torch.cuda.is_available():
        pytest.skip("the interpreter is not used on a CUDA machine")
    import numpy
    import triton

    from normcourse import runtime

    monkeypatch.setattr(triton, "__version__", "3.6.0")
    monkeypatch.setattr(numpy, "__version__", "2.4.6")
    runtime.triton_self_check.cache_clear()
    try:
        assert runtime.main([]) == 1
    finally:
        runtime.triton_self_check.cache_clear()
    assert "FAILED: triton 3.6.0's interpreter fails with numpy 2.4.6" in capsys.readouterr().out
