"""E5L (DyT's LLaMA recipe, chapter 5) and E9 (memorization, chapter 4): complete
caches with 5 seeds, and one run of each reproduces (cache_compare's rule)."""

import pytest

from cache_compare import assert_reproduces
from test_experiments_frontier import _entry   # the one cached run matching fields

from normcourse import experiments as ex
from normcourse.memorization import flip_labels, majority_task, task_data

import torch


@pytest.mark.parametrize("name", ["E5L", "E9"])
def test_grid_is_fully_cached_with_five_seeds(name):
    cache = ex.read_cache(name)
    specs = ex.EXPERIMENTS[name].specs()
    assert set(cache["runs"]) == {ex.spec_key(s) for s in specs}, \
        "re-run: python -m normcourse experiment " + name
    assert {s["train"]["seed"] for s in specs} == {0, 1, 2, 3, 4}


def test_e5l_recipe_arms_carry_the_recipe():
    specs = ex.EXPERIMENTS["E5L"].specs()
    dyt = [s["model"] for s in specs if s["model"]["norm"] == "dyt"]
    assert len(dyt) == 30
    assert all(m["embed_scale_learned"] and m["dyt_bias"] is False for m in dyt)
    assert {(m["dyt_alpha_attn"], m["dyt_alpha"]) for m in dyt} == {(0.8, 0.2), (2.0, 0.5), (4.0, 1.0)}
    base = [s["model"] for s in specs if s["model"]["norm"] != "dyt"]
    assert not any(m.get("embed_scale_learned") for m in base)
    assert all(s["model"]["bias"] is False for s in specs)


def test_e9_results_hold_the_scores():
    for entry in ex.read_cache("E9")["runs"].values():
        r = entry["result"]
        assert r["memorization"] + r["recovery"] + r["random"] == pytest.approx(1.0)
        assert r["n_flipped"] == round(0.02 * 2000)


def test_flipped_labels_always_change_and_the_task_is_the_majority():
    g = torch.Generator().manual_seed(0)
    x, y = majority_task(500, 16, 8, g)
    assert all(torch.bincount(row, minlength=8).argmax() == label for row, label in zip(x, y))
    noisy, flipped = flip_labels(y, 0.1, 8, g)
    assert flipped.sum() == 50
    assert (noisy[flipped] != y[flipped]).all() and (noisy[~flipped] == y[~flipped]).all()
    data = task_data({"n_train": 100, "n_test": 50, "n_class": 8, "noise": 0.02, "seq_len": 16})
    assert data["flipped"].sum() == 2 and len(data["y_test"]) == 50


@pytest.mark.parametrize("name, want", [
    ("E5L", {"norm": "dyt", "dyt_alpha_attn": 4.0, "embed_scale": 6.25, "seed": 0}),
    ("E9", {"placement": "post", "norm_affine": False, "seed": 1}),
])
def test_a_slice_reproduces(name, want):
    key, entry = _entry(name, **want)
    assert key == ex.spec_key(entry["spec"])
    assert_reproduces(entry, ex.run_one(entry["spec"]))
