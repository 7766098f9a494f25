"""normcourse.timing.median_seconds: the one wall-clock timer the chapters use."""

import pytest

from normcourse import timing


def _fake_clock(monkeypatch, durations):
    """perf_counter that advances by the next duration at every call to fn."""
    now = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: now[0])
    steps = iter(durations)

    def fn():
        now[0] += next(steps)
    return fn


def test_median_of_the_timed_calls_after_warmup(monkeypatch):
    # warmup call (100 s) is not timed; the median of 1, 5, 2 is 2
    fn = _fake_clock(monkeypatch, [100.0, 1.0, 5.0, 2.0])
    assert timing.median_seconds(fn, repeats=3, warmup=1) == 2.0


def test_even_repeats_average_the_middle_two(monkeypatch):
    fn = _fake_clock(monkeypatch, [1.0, 2.0, 4.0, 8.0])
    assert timing.median_seconds(fn, repeats=4, warmup=0) == 3.0


def test_calls_fn_warmup_plus_repeats_times():
    calls = []
    assert timing.median_seconds(lambda: calls.append(1), repeats=5, warmup=2) >= 0
    assert len(calls) == 7


def test_repeats_must_be_positive():
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        timing.median_seconds(lambda: None, repeats=0)
