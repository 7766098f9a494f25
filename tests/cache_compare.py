"""Comparing a re-run experiment with the numbers stored in the results cache."""

import pytest


def assert_same_results(stored, recomputed, path="result", rel=1e-5, abs=1e-7):
    """Recursively compare stored and recomputed results: floats to ``rel``/``abs``, the rest exactly."""
    if isinstance(stored, dict):
        assert set(stored) == set(recomputed), path
        for k in stored:
            assert_same_results(stored[k], recomputed[k], f"{path}.{k}", rel, abs)
    elif isinstance(stored, list):
        assert len(stored) == len(recomputed), path
        for i, (x, y) in enumerate(zip(stored, recomputed)):
            assert_same_results(x, y, f"{path}[{i}]", rel, abs)
    elif isinstance(stored, float):
        assert recomputed == pytest.approx(stored, rel=rel, abs=abs), path
    else:
        assert stored == recomputed, path
