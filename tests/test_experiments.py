"""The results cache: every cached experiment reproduces; runs resume; rows load."""

import json

import pytest

import tiny_grid
from cache_compare import assert_reproduces

from normcourse import experiments as ex
from normcourse.data import cached

CACHED = sorted(p.stem for p in ex.RESULTS_DIR.glob("E*.json"))





# Grids whose seeds 1-4 were added for the verdict rule of
# normcourse.verdicts; their slice also re-runs the cheapest seed-4 run.
ADDED_SEEDS = ("E3", "E3D")


def slice_of(name):
    """A small slice: the cheapest run, plus a diverged one if the grid has any.

    For a grid in :data:`ADDED_SEEDS`, also its cheapest run of seed 4.
    """
    runs = ex.read_cache(name)["runs"]
    entries = sorted(runs.items(), key=lambda kv: kv[1]["seconds"])
    picked = [entries[0]]
    diverged = [kv for kv in entries if kv[1]["result"].get("diverged")]
    if diverged and diverged[0] is not entries[0]:
        picked.append(diverged[0])
    if name in ADDED_SEEDS:
        added = [kv for kv in entries if kv[1]["spec"]["train"]["seed"] == 4]
        assert added, f"{name}: no run of seed 4 is stored"
        if added[0] not in picked:
            picked.append(added[0])
    return picked


@pytest.mark.parametrize("name", CACHED)
def test_cached_experiment_reproduces(name):
    cache = ex.read_cache(name)
    assert cache["format_version"] == ex.FORMAT_VERSION
    specs = {ex.spec_key(s): s for s in ex.EXPERIMENTS[name].specs()}
    for key, entry in slice_of(name):
        assert key == ex.spec_key(entry["spec"]) and key in specs   # the grid still contains it
        assert entry["corpus_sha256"] == cached("python_docs").sha256
        assert {"torch", "python", "numpy"} <= set(entry["env"]) and "engine_sha256" in entry["code"]
        assert_reproduces(entry, ex.run_one(entry["spec"]))


def test_resume_and_round_trip(tmp_path, monkeypatch):
    part = ex.Part({"placement": ["pre", "post", "peri"], "seed": [0]}, **tiny_grid.SMALL)
    tiny = ex.Experiment("T", "tiny", "train", ex.preview(part), ex.full(part, why="a test grid"))
    monkeypatch.setitem(ex.EXPERIMENTS, "T", tiny)
    first = ex.run("T", limit=1, progress=False, results_dir=tmp_path)
    assert len(first["runs"]) == 1
    stored = json.loads((tmp_path / "T.json").read_text())
    done_key = next(iter(stored["runs"]))
    # resuming runs only the missing points (here in 2 processes) and keeps the finished one
    second = ex.run("T", workers=2, progress=False, results_dir=tmp_path)
    assert len(second["runs"]) == 3 and second["runs"][done_key] == stored["runs"][done_key]
    for entry in second["runs"].values():   # a worker process computes what this one does
        assert entry["result"] == ex.run_one(entry["spec"])
    rows = ex.load_results("T", results_dir=tmp_path)
    assert {r["placement"] for r in rows} == {"pre", "post", "peri"}
    assert all(len(r["loss"]) == 5 and len(r["init"]["layer_rms"]) == 2 for r in rows)
    with pytest.raises(ValueError, match="E1"):
        ex.run("E99", progress=False, results_dir=tmp_path)


def test_cli_list(capsys):
    assert ex.main(["list"]) == 0
    assert "E3" in capsys.readouterr().out
    assert ex.main(["nope"]) == 2
