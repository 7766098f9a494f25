"""Where code runs: the device, and how Triton kernels execute without a GPU.

Triton compiles kernels for GPUs.  On a machine without CUDA it can still run
them through its *interpreter* (NumPy under the hood), which is slow but exact
enough to test and to teach with.  The interpreter is switched on by the
environment variable ``TRITON_INTERPRET=1`` and, crucially, the variable is
read when a ``@triton.jit`` function is **defined**, not when it is launched.
So :func:`configure_triton` must run before any module that defines kernels
is imported; ``import normcourse`` does it first thing.
"""

from __future__ import annotations

import functools
import os

import torch


def pick_device(prefer: str | None = None) -> torch.device:
    """The device chapters run on: CUDA when present, else the CPU.

    ``prefer`` ("cpu" or "cuda") overrides the choice; asking for CUDA on a
    machine without it raises a ValueError instead of failing later.
    """
    if prefer is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if prefer not in ("cpu", "cuda"):
        raise ValueError(f"prefer must be 'cpu', 'cuda' or None, got {prefer!r}")
    if prefer == "cuda" and not torch.cuda.is_available():
        raise ValueError("prefer='cuda' but torch.cuda.is_available() is False on this machine")
    return torch.device(prefer)


def configure_triton() -> bool:
    """Turn on the Triton interpreter when no CUDA device is present.

    Returns True when kernels will run through the interpreter.  A value the
    user already set in ``TRITON_INTERPRET`` is respected.
    """
    if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_interpreted() -> bool:
    """True when ``@triton.jit`` functions defined from now on run in the interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_available() -> bool:
    """True when the ``triton`` package can be imported."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


class TritonSetupError(RuntimeError):
    """Triton is installed but does not compute what it should on this machine."""


def _version(text: str) -> tuple[int, int]:
    major, minor = (text.split("+")[0].split(".") + ["0"])[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def interpreter_problem(triton_version: str, numpy_version: str) -> str | None:
    """Why Triton's interpreter cannot run this package's kernels with these
    versions, or None.  Both were found by running the kernel tests under each
    triton release on CPU (see the README's tested versions):

    - triton 3.0 and 3.1: the interpreter misses ``tl.constexpr`` parameters
      whose annotations are strings (``from __future__ import annotations``)
      and fails with "arange's arguments must be of type tl.constexpr";
    - triton 3.2 to 3.6 with numpy >= 2.4: the interpreter converts a
      one-element array to an int, which numpy 2.4 turned into a TypeError
      (3.2, 3.3.1 and 3.6 tried; 3.4 and 3.5 assumed alike).
    """
    t, n = _version(triton_version), _version(numpy_version)
    if t < (3, 2):
        return (f"triton {triton_version}'s interpreter cannot run these kernels; "
                "pip install 'triton>=3.2'")
    if t < (3, 7) and n >= (2, 4):
        return (f"triton {triton_version}'s interpreter fails with numpy {numpy_version}; "
                "pip install 'numpy<2.4' (or 'triton>=3.7')")
    return None


@functools.lru_cache(maxsize=None)
def triton_self_check() -> str:
    """Launch a tiny kernel once and check that it really computed.

    A misconfigured interpreter (for example, kernels defined before
    ``TRITON_INTERPRET`` was set, then launched on CPU tensors) can fail
    loudly, or worse, leave the output untouched.  We write ``2 * x + 1`` over
    an odd number of elements and compare every one.  Returns a one-line
    description of the mode ("interpreter" or "cuda"); raises
    :class:`TritonSetupError` with a hint otherwise.
    """
    if not triton_available():
        raise TritonSetupError(
            "triton is not installed: `pip install triton` (CPU: kernels then run "
            "through the interpreter)"
        )
    import numpy
    import triton

    from normcourse import _triton_probe

    device = "cpu" if triton_interpreted() else "cuda"
    problem = interpreter_problem(triton.__version__, numpy.__version__) \
        if device == "cpu" else None
    if problem:
        raise TritonSetupError(problem)
    if device == "cuda" and not torch.cuda.is_available():
        raise TritonSetupError(
            "TRITON_INTERPRET is not 1 but there is no CUDA device: set "
            "TRITON_INTERPRET=1 before importing any module that defines kernels "
            "(import normcourse first)"
        )
    x = torch.randn(1000, device=device)
    try:
        y = _triton_probe.affine(x)
    except Exception as err:  # a setup problem, reported with the hint below
        raise TritonSetupError(
            f"a one-line Triton kernel failed on {device}: {err}. If you imported "
            "triton kernels before normcourse, restart and import normcourse first."
        ) from err
    if not torch.allclose(y, 2 * x + 1, rtol=1e-6, atol=1e-6):
        raise TritonSetupError(
            f"a one-line Triton kernel on {device} returned wrong values "
            f"(first elements {y[:3].tolist()} instead of {(2 * x + 1)[:3].tolist()}); "
            "the interpreter is not really computing"
        )
    return "interpreter (CPU)" if device == "cpu" else f"cuda ({torch.cuda.get_device_name()})"


def kernel_self_check(device: torch.device) -> str:
    """Run the library's LayerNorm kernel forward and backward on ``device`` and
    compare it with a float64 reference (the rule of :mod:`normcourse.tolerance`).

    Returns one line saying what matched; raises :class:`TritonSetupError` if not.
    """
    from normcourse import kernels as K
    from normcourse.tolerance import compare

    g = torch.Generator().manual_seed(0)
    x, w, b, dy = (torch.randn(*s, generator=g).to(device) for s in ((8, 1000), (1000,),
                                                                       (1000,), (8, 1000)))

    def run(backend, dtype):
        leaves = [t.to(dtype).requires_grad_() for t in (x, w, b)]
        if backend == "triton":
            y = K.layer_norm(*leaves, backend="triton")
        else:
            y = torch.nn.functional.layer_norm(leaves[0], (1000,), leaves[1], leaves[2])
        return [y.detach(), *torch.autograd.grad(y, leaves, dy.to(dtype))]

    ours, theirs = run("triton", torch.float32), run("torch", torch.float32)
    ref = run("torch", torch.float64)
    for name, o, t, r in zip(("y", "dx", "dweight", "dbias"), ours, theirs, ref):
        c = compare(o, t, r, torch.float32)
        if not c.ok:
            raise TritonSetupError(f"normcourse.kernels.layer_norm on {device}: {name} "
                                   f"{c.describe()}")
    how = "compiled for this GPU" if device.type == "cuda" else "through the interpreter"
    return (f"normcourse.kernels.layer_norm ({how}), forward and backward on 8 x 1000 "
            "float32, matched the float64 reference within the tolerance rule")


def main(argv: list[str] | None = None) -> int:
    """``python -m normcourse selfcheck``: say what was checked, and that it matched."""
    import platform

    device = pick_device()
    print(f"python {platform.python_version()}, torch {torch.__version__}", end="")
    if triton_available():
        import triton

        print(f", triton {triton.__version__}")
    else:
        print(", triton not installed")
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        print(f"device: {props.name} (compute capability {props.major}.{props.minor}, "
              f"{props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}")
    else:
        print("device: cpu (no CUDA GPU): Triton kernels run through the interpreter")
    try:
        mode = triton_self_check()
        print(f"ok: a one-line Triton kernel (y = 2x + 1 on 1000 float32) matched its "
              f"reference on {mode}")
        print(f"ok: {kernel_self_check(device)}")
    except TritonSetupError as err:
        print(f"FAILED: {err}")
        return 1
    return 0
