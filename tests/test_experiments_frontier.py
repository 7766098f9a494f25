"""Chapters 13 and 14's cached experiments are complete and a slice of each reproduces.

Each reproduced run is the cheapest one that still tests the chapter's claim: a
run with QK-norm and z-loss at the highest learning rate (E13Q), a reordered run
at the high learning rate (E13R), a Derf run (E13D), an nGPT run (E14N) and an
mHC run with its gain record (E14H).
"""

import pytest

from cache_compare import assert_reproduces

from normcourse import experiments as ex
from normcourse.data import cached
from normcourse.frontier_measures import token_gains

GRIDS = ["E13Q", "E13R", "E13D", "E14N", "E14H"]


def _entry(name, **want):
    """The one cached run of ``name`` whose model/train fields match ``want``."""
    runs = ex.read_cache(name)["runs"]
    hits = [(k, e) for k, e in runs.items()
            if all({**e["spec"]["model"], **e["spec"]["train"]}.get(f) == v
                   for f, v in want.items())]
    assert len(hits) == 1, f"{name}: {len(hits)} runs match {want}"
    return hits[0]


def _registered(name):
    if name not in ex.EXPERIMENTS:
        pytest.skip(f"{name} is not registered in this checkout")


@pytest.mark.parametrize("name", GRIDS)
def test_grid_is_fully_cached_with_five_seeds(name):
    _registered(name)
    cache = ex.read_cache(name)
    assert cache["format_version"] == ex.FORMAT_VERSION
    specs = ex.EXPERIMENTS[name].specs()
    keys = {ex.spec_key(s) for s in specs}
    assert set(cache["runs"]) == keys, "re-run: python -m normcourse experiment " + name
    assert {s["train"]["seed"] for s in specs} == {0, 1, 2, 3, 4}
    for entry in cache["runs"].values():
        assert entry["corpus_sha256"] == cached("python_docs").sha256
        result = entry["result"]
        assert len(result["loss"]) == entry["spec"]["train"]["steps"] or result["diverged"]
        if entry["spec"]["train"].get("record_attn_logits"):
            assert len(result["max_attn_logit"]) == len(result["loss"])


@pytest.mark.parametrize("name, want", [
    ("E13Q", {"qk_norm": True, "z_loss": 1e-4, "lr": 0.3, "seed": 0}),
    ("E13R", {"placement": "reordered", "lr": 3e-2, "seed": 1}),
    ("E13D", {"norm": "derf", "seed": 2}),
    ("E14N", {"placement": "ngpt", "lr": 3e-2, "seed": 3}),
    ("E14H", {"residual": "mhc", "seed": 4}),
])
def test_a_slice_reproduces(name, want):
    _registered(name)
    key, entry = _entry(name, **want)
    assert key == ex.spec_key(entry["spec"])
    assert_reproduces(entry, ex.run_one(entry["spec"]))


def test_token_gains_of_plain_and_mhc_models():
    """A plain residual has gain 1 at every depth; mHC's doubly stochastic maps too."""
    import torch

    from normcourse.model import GPTConfig, TinyGPT

    x = torch.randint(0, 50, (2, 8))
    for residual in ("plain", "mhc"):
        torch.manual_seed(0)
        model = TinyGPT(GPTConfig(vocab_size=50, block_size=8, n_layer=2, d_model=16,
                                  n_head=2, residual=residual))
        out = token_gains(model, x)
        assert len(out["forward"]) == 4          # two sub-layers per block
        for key in ("forward", "backward", "worst_forward", "worst_backward"):
            assert out[key] == pytest.approx([1.0] * 4, abs=1e-4), (residual, key)
