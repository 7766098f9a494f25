"""Where the kernel tests run: one rule, used by the ``kernel_device`` fixture of conftest.py.

- CUDA present and the interpreter off (what ``import normcourse`` leaves on
  a GPU machine): the kernels are compiled, and the tests run on ``cuda``.
- The interpreter on (``import normcourse`` switches it on without CUDA, or
  the user set ``TRITON_INTERPRET=1``): the tests run on the ``cpu``, through
  Triton's interpreter.  CUDA tensors would be copied to the host and back
  by the interpreter, so the CPU is the honest choice there.
- Neither: no device can run the kernels, and the kernel tests are skipped
  with :data:`NO_KERNEL_DEVICE` as the reason.

Tests of behaviour only the interpreter shows are marked :data:`interpreter_only`.
"""

from __future__ import annotations

import pytest
import torch

from normcourse.runtime import triton_interpreted

NO_KERNEL_DEVICE = ("no device can run the Triton kernels: no CUDA, and the interpreter is off "
                    "(TRITON_INTERPRET is not 1)")
NEEDS_INTERPRETER = ("needs Triton's interpreter (CPU tensors through backend='triton'); on a CUDA "
                     "machine `import normcourse` leaves it off and the kernels are compiled")

interpreter_only = pytest.mark.skipif(not triton_interpreted(), reason=NEEDS_INTERPRETER)


def choose_kernel_device() -> torch.device | None:
    """The device the kernel tests use, or None when the kernels cannot run here."""
    if triton_interpreted():
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    return None


def kernel_device_or_skip() -> torch.device:
    """:func:`choose_kernel_device`, skipping the calling test when there is none."""
    device = choose_kernel_device()
    if device is None:
        pytest.skip(NO_KERNEL_DEVICE)
    return device
