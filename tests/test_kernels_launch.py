"""Launch rules of the kernels: occupancy, register caps, program counts (no GPU needed)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from normcourse.kernels import launch
from normcourse.kernels.launch import (LaunchSettings, backward_ctas_per_sm, backward_programs,
                                       forward_ctas_per_sm, launch_options, looped_settings,
                                       register_cap, resident_ctas, row_settings)


def test_launch_settings_is_a_named_tuple_that_unpacks():
    s = row_settings(300)
    block_n, num_warps = s
    assert (block_n, num_warps) == (s.block_n, s.num_warps) == (512, 4)
    assert s._fields == ("block_n", "num_warps")


@pytest.mark.parametrize("warps, regs, shared, expected", [
    (4, 32, 0, 16),  # 128 threads x 32 registers: 16 CTAs by threads (2048 per SM)
    (16, 64, 0, 2),  # 512 x 64 = 32K registers: two CTAs fill 64K
    (16, 65, 0, 1),  # 65 rounds up to 72 per thread: 36864 per CTA, one fits
    (32, 64, 0, 1),  # 1024 threads: one CTA by registers, two by threads
    (8, 127, 0, 2),  # 127 -> 128 per thread
    (4, 62, 8228, 8),  # registers allow 8; 8 x (8228 + 1024) bytes fit in 228 KiB
    (4, 16, 60 * 1024, 3),  # shared memory limits: 228 KiB // 61 KiB
    (1, 16, 0, 32),  # the 32-CTA limit
])
def test_resident_ctas_follows_the_occupancy_rules(warps, regs, shared, expected):
    assert resident_ctas(warps, regs, shared) == expected


def test_resident_ctas_uses_the_limits_it_is_given():
    # sm_75: 1024 threads and 16 CTAs per SM
    assert resident_ctas(4, 32, threads_per_sm=1024, ctas_limit=16) == 8
    assert resident_ctas(1, 16, threads_per_sm=1024, ctas_limit=16) == 16


def test_register_cap_fits_the_ctas_it_promises():
    unlimited = dict(threads_per_sm=10**6, ctas_limit=10**6)
    for n in (1, 128, 1024, 4096, 8192, 16384, 32768):
        s = row_settings(n)
        for ctas in (1, 2, 4, 8):
            cap = register_cap(s, ctas)
            assert cap == 255 or (cap % 8 == 0 and cap < 255)
            assert resident_ctas(s.num_warps, cap, **unlimited) >= ctas or cap == 255


def test_forward_caps_only_the_512_thread_block():
    assert forward_ctas_per_sm(row_settings(16384)) == 2
    assert register_cap(row_settings(16384), 2) == 64
    assert all(forward_ctas_per_sm(row_settings(n)) == 1 for n in (1024, 4096, 8192, 32768))


def test_backward_ctas_shrink_with_the_block():
    ctas = [backward_ctas_per_sm(row_settings(n)) for n in (64, 1024, 2048, 4096, 8192)]
    assert ctas == sorted(ctas, reverse=True) and ctas[0] > ctas[-1] == 1
    assert backward_ctas_per_sm(row_settings(1024)) == 8
    assert backward_ctas_per_sm(row_settings(1024), threads_per_sm=1024) == 8
    assert backward_ctas_per_sm(row_settings(64), threads_per_sm=1024) == 16


def _fake_cuda(monkeypatch, sms=132, threads=2048):
    props = SimpleNamespace(multi_processor_count=sms, max_threads_per_multi_processor=threads)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)
    return torch.device("cuda")


@pytest.mark.parametrize("n", [64, 1024, 4096, 8192, 65536])
def test_backward_programs_on_a_gpu_are_sms_times_resident_ctas(monkeypatch, n):
    device = _fake_cuda(monkeypatch)
    s = looped_settings() if launch.backward_is_looped(n) else row_settings(n)
    assert backward_programs(10**6, device, s) == 132 * backward_ctas_per_sm(s)
    assert backward_programs(5, device, s) == 5  # never more programs than rows
    assert backward_programs(0, device, s) == 1


def test_backward_programs_on_an_sm75_count_its_thread_limit(monkeypatch):
    device = _fake_cuda(monkeypatch, sms=40, threads=1024)
    s = row_settings(2048)  # 8 warps: 4 CTAs on sm_90, 4 by threads on sm_75
    assert backward_programs(10**6, device, s) == 40 * backward_ctas_per_sm(s, 1024)


def test_rows_aligned_mirrors_tritons_specialization():
    x = torch.randn(4, 64)
    assert launch.rows_aligned(64, x, x, None)
    assert not launch.rows_aligned(60, torch.randn(4, 60))  # N and the row stride
    assert not launch.rows_aligned(64, torch.randn(4 * 64 + 1)[1:].view(4, 64))  # 4-byte offset
    assert launch.rows_aligned(64, torch.randn(1, 64).expand(4, 64))  # stride 0


def test_unaligned_rows_are_chunked_beyond_16384_and_get_no_register_cap():
    assert not launch.forward_is_looped(32768) and launch.forward_is_looped(32768, aligned=False)
    assert launch.forward_is_looped(20001) and not launch.forward_is_looped(16383)
    assert forward_ctas_per_sm(row_settings(16384), aligned=False) == 1
    assert backward_ctas_per_sm(looped_settings(), aligned=False) == 1
    assert backward_ctas_per_sm(row_settings(1024), aligned=False) == 4  # 128 registers
    assert backward_ctas_per_sm(row_settings(1024), aligned=True) == 8  # 64 registers


def test_backward_programs_in_the_interpreter():
    assert backward_programs(64, torch.device("cpu")) == launch.INTERPRETER_BACKWARD_PROGRAMS
    assert backward_programs(3, torch.device("cpu")) == 3


def test_launch_options_cap_registers_only_on_cuda_and_only_where_it_binds(monkeypatch):
    s16, s4 = row_settings(16384), row_settings(1024)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.setattr(torch.version, "hip", None)
    assert launch_options(cuda, s16, 2) == {"num_warps": 16, "maxnreg": 64}
    assert launch_options(cuda, s16, None) == {"num_warps": 16}
    assert launch_options(cuda, s16, 1) == {"num_warps": 16}  # 128 per thread: no cap binds
    assert launch_options(cuda, s4, 8) == {"num_warps": 4, "maxnreg": 64}
    assert launch_options(cpu, s16, 2) == {"num_warps": 16}  # the interpreter: no cap
    monkeypatch.setattr(torch.version, "hip", "6.0")  # ROCm has no maxnreg
    assert launch_options(cuda, s16, 2) == {"num_warps": 16}
    assert isinstance(LaunchSettings(1, 1), tuple)
