"""Shared fixtures.  ``kernel_device``: where the Triton kernel tests run (see kernel_device.py)."""

from __future__ import annotations

import pytest

from kernel_device import kernel_device_or_skip


@pytest.fixture(scope="session")
def kernel_device():
    """CUDA when present (compiled kernels), else the CPU through Triton's interpreter."""
    return kernel_device_or_skip()
