"""Chapter 10's cached experiment (E6: adjacent-layer cosine and layer-skip losses) reproduces."""

import pytest

from cache_compare import assert_reproduces

from normcourse import experiments as ex
from normcourse.data import cached

# GPTConfig defaults, for specs that leave a field out
DEFAULTS = {"depth_scaled_norm": False, "scaled_residual_init": True}


def _entry(**want):
    runs = ex.read_cache("E6")["runs"]
    hits = [(k, e) for k, e in runs.items()
            if all({**DEFAULTS, **e["spec"]["model"], **e["spec"]["train"]}.get(f) == v for f, v in want.items())]
    assert len(hits) == 1, f"E6: {len(hits)} runs match {want}"
    return hits[0]


def test_grid_is_fully_cached():
    cache = ex.read_cache("E6")
    assert cache["format_version"] == ex.FORMAT_VERSION
    keys = {ex.spec_key(s) for s in ex.EXPERIMENTS["E6"].specs()}
    assert set(cache["runs"]) == keys, "re-run: python -m normcourse experiment E6"
    for entry in cache["runs"].values():
        assert entry["corpus_sha256"] == cached("python_docs").sha256
        result = entry["result"]
        L = entry["spec"]["model"]["n_layer"]
        assert len(result["init"]["skip_delta"]) == len(result["init"]["adjacent_cosine"]) == L
        assert result["diverged"] or len(result["trained"]["skip_delta"]) == L


@pytest.mark.parametrize("want", [
    # LayerNorm scaling without GPT-2's scaled init: exercises both options at once
    {"placement": "pre", "depth_scaled_norm": True, "scaled_residual_init": False, "seed": 0},
])
def test_a_slice_reproduces(want):
    key, entry = _entry(**want)
    assert key == ex.spec_key(entry["spec"])
    # layer-skip deltas are differences of losses, hence abs=1e-6
    assert_reproduces(entry, ex.run_one(entry["spec"]), abs=1e-6)
