"""The results cache under many writers, and the flags that must not lose runs (issue 11).

Every run here is on the CPU (the sweeps get device="cpu" or the preview
default), so the suite means the same on a CUDA machine.
"""

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

import tiny_grid
from cache_compare import assert_same_results
from normcourse import experiments as ex
from normcourse.experiments import cache, estimate, executors, sweep

HERE = Path(__file__).parent
ROOT = HERE.parent


@pytest.fixture
def tiny(monkeypatch):
    """The tiny grids of tests/tiny_grid.py, registered for this test only."""
    for name, e in tiny_grid.TINY.items():
        monkeypatch.setitem(ex.EXPERIMENTS, name, e)
    return tiny_grid.TINY


def keys_of(name, scale="preview"):
    return {ex.spec_key(s) for s in ex.EXPERIMENTS[name].specs(scale)}


def script(*args):
    """A separate process running the experiment command line with the tiny grids registered."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(HERE / "tiny_grid.py"), *args, "--quiet"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_files(folder, name):
    return sorted(cache.runs_dir(name, folder).glob("*"))


# ------------------------------------------------------------------ many writers

def test_two_concurrent_fills_store_every_run_exactly_once(tiny, tmp_path):
    procs = [script("TMANY", "--results", str(tmp_path)), script("TMANY", "--results", str(tmp_path))]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    files = run_files(tmp_path, "TMANY")
    assert [f.stem for f in files] == sorted(keys_of("TMANY"))          # no temporary files left over
    merged = json.loads((tmp_path / "TMANY.json").read_text())
    assert set(merged["runs"]) == keys_of("TMANY")
    for f in files:                                                      # every file whole and right
        entry = json.loads(f.read_text())
        assert ex.spec_key(entry["spec"]) == f.stem and len(entry["result"]["loss"]) == 30
        assert merged["runs"][f.stem]["result"] == entry["result"]


def test_a_killed_worker_leaves_the_grid_resumable(tiny, tmp_path):
    p = script("TSLOW", "--results", str(tmp_path))
    deadline = time.monotonic() + 300
    while not [f for f in run_files(tmp_path, "TSLOW") if f.suffix == ".json"]:
        assert time.monotonic() < deadline and p.poll() is None, "no run finished"
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)                # mid-way through the second run
    p.communicate()
    done = [f for f in run_files(tmp_path, "TSLOW") if f.suffix == ".json"]
    assert 1 <= len(done) < len(keys_of("TSLOW"))
    first = {f.stem: f.read_text() for f in done}
    cache_ = ex.run("TSLOW", progress=False, results_dir=tmp_path)
    assert set(cache_["runs"]) == keys_of("TSLOW")
    for key, text in first.items():              # the finished runs were not recomputed
        assert (cache.runs_dir("TSLOW", tmp_path) / f"{key}.json").read_text() == text


def test_a_half_written_temporary_file_never_counts(tiny, tmp_path):
    ex.run("T", limit=1, progress=False, results_dir=tmp_path)
    (key,) = [f.stem for f in run_files(tmp_path, "T")]
    missing = sorted(keys_of("T") - {key})[0]
    half = cache.runs_dir("T", tmp_path) / f".{missing}.abc.tmp"
    half.write_text('{"spec": {"experiment": "T"')        # what a kill during the write leaves
    assert set(ex.read_cache("T", tmp_path)["runs"]) == {key}
    assert len(sweep.choose("T", done=ex.read_cache("T", tmp_path)["runs"])) == 5


@pytest.mark.parametrize("content, why", [
    ("{not json", "not readable JSON"),
    (json.dumps({"format_version": 99}), "format 99"),
    (json.dumps({"format_version": 1, "experiment": "E2"}), "a run of 'E2', not of 'T'"),
])
def test_corrupt_and_foreign_run_files_are_reported_by_name_and_skipped(tiny, tmp_path, content, why):
    ex.run("T", limit=2, progress=False, results_dir=tmp_path)
    bad = cache.runs_dir("T", tmp_path) / "0123456789abcdef.json"
    bad.write_text(content)
    with pytest.warns(ex.SkippedFile) as caught:
        runs = ex.read_cache("T", tmp_path)["runs"]
    assert len(runs) == 2
    assert any(str(bad) in str(w.message) and why in str(w.message) for w in caught)


def test_a_run_file_whose_spec_was_edited_is_skipped(tiny, tmp_path):
    ex.run("T", limit=1, progress=False, results_dir=tmp_path)
    (path,) = run_files(tmp_path, "T")
    entry = json.loads(path.read_text())
    entry["spec"]["train"]["lr"] = 0.5
    path.write_text(json.dumps(entry))
    with pytest.warns(ex.SkippedFile, match=f"{path.stem}.json: its spec does not hash to its key"):
        runs = ex.read_cache("T", tmp_path)["runs"]
    # only the merged file's copy, made before the edit, still counts
    assert list(runs) == [path.stem] and runs[path.stem]["spec"]["train"]["lr"] != 0.5
    (tmp_path / "T.json").unlink()
    with pytest.warns(ex.SkippedFile):
        assert ex.read_cache("T", tmp_path)["runs"] == {}


def test_a_corrupt_merged_file_is_reported_and_left_untouched(tiny, tmp_path, capsys):
    ex.run("T", limit=2, progress=False, results_dir=tmp_path)
    merged = tmp_path / "T.json"
    merged.write_text("garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ex.SkippedFile)
        ex.run("T", progress=False, results_dir=tmp_path)        # the run files still count
    assert merged.read_text() == "garbage"
    assert ex.main(["T", "--results", str(tmp_path), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"skipped {merged}" in err and "Traceback" not in err
    assert len(ex.read_cache("T", tmp_path)["runs"]) == 6


# ------------------------------------------------------------ nothing lost by a flag

def test_fresh_with_limit_recomputes_only_what_it_selected(tmp_path):
    """The issue's case: ``experiment E2 --fresh --limit 2`` used to replace 144 cached runs with 2."""
    shutil.copy(ex.RESULTS_DIR / "E2.json", tmp_path / "E2.json")
    before = json.loads((tmp_path / "E2.json").read_text())["runs"]
    assert ex.main(["E2", "--fresh", "--limit", "2", "--quiet", "--results", str(tmp_path)]) == 0
    after = json.loads((tmp_path / "E2.json").read_text())["runs"]
    assert set(after) == set(before) and len(after) == 144
    redone = [ex.spec_key(s) for s in ex.EXPERIMENTS["E2"].specs()[:2]]
    assert sorted(f.stem for f in run_files(tmp_path, "E2")) == sorted(redone)
    for key in set(before) - set(redone):                       # the other 142: byte-for-byte the same
        assert after[key] == before[key]
    for key in redone:                                          # recomputed: new provenance, same numbers
        assert after[key]["finished"] != before[key]["finished"] and "device" in after[key]["env"]
        assert_same_results(before[key]["result"], after[key]["result"])
    ex.load_results("E2", tmp_path)                            # and the chapter's loader is content


def test_an_incomplete_grid_names_the_missing_runs_and_the_command(tiny, tmp_path):
    ex.run("T", limit=4, progress=False, results_dir=tmp_path)
    with pytest.raises(ex.IncompleteGrid) as err:
        ex.load_results("T", tmp_path)
    message = str(err.value)
    missing = sweep.choose("T", done=ex.read_cache("T", tmp_path)["runs"])
    assert "T (preview) has 4 of 6 runs" in message and "python -m normcourse experiment T" in message
    for spec in missing:
        assert f"placement={spec['model']['placement']}" in message and f"seed={spec['train']['seed']}" in message
    assert len(ex.load_results("T", tmp_path, complete=False)) == 4


def test_an_installed_package_writes_to_the_user_folder(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "in_source_checkout", lambda: False)
    monkeypatch.delenv("NORMCOURSE_RESULTS", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    shipped = sorted(p.name for p in ex.RESULTS_DIR.iterdir())
    assert cache.default_results_root() == tmp_path / "normcourse" / "results"
    assert ex.main(["T", "--limit", "2", "--quiet"]) == 0
    assert len(run_files(tmp_path / "normcourse" / "results", "T")) == 2
    assert sorted(p.name for p in ex.RESULTS_DIR.iterdir()) == shipped     # nothing written into the package
    assert len(ex.read_cache("E2")["runs"]) == 144                           # the shipped previews still read
    monkeypatch.setenv("NORMCOURSE_RESULTS", str(tmp_path / "mine"))
    assert cache.default_results_root() == tmp_path / "mine"


def test_bad_where_and_cuda_without_a_gpu_are_refused_before_running(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(executors, "run_and_store", lambda *a: pytest.fail("it ran"))
    with pytest.raises(ValueError, match="T has no field 'learning_rate'; fields: .*lr"):
        ex.run("T", where={"learning_rate": 1e-3}, progress=False, results_dir=tmp_path)
    monkeypatch.setattr(sweep.torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU"):
        ex.run("T", device="cuda", progress=False, results_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_where_selects_grid_points(tiny, tmp_path):
    cache_ = ex.run("T", where={"placement": "post"}, progress=False, results_dir=tmp_path)
    assert {e["spec"]["model"]["placement"] for e in cache_["runs"].values()} == {"post"}
    assert len(cache_["runs"]) == 3


# --------------------------------------------------------------------- Slurm path

@pytest.mark.parametrize("cluster", ["local", "debug"])
def test_the_slurm_path_runs_a_small_grid_through_submitit(tiny, tmp_path, cluster, capsys):
    pytest.importorskip("submitit")
    options = executors.SlurmOptions(cluster=cluster, poll_s=0.2, partition="gpu", time_min=5)
    first = ex.run("T", executor="slurm", slurm=options, limit=2, progress=False, results_dir=tmp_path,
                   device="cpu")
    assert len(first["runs"]) == 2 and "submitted 2 runs as job array" in capsys.readouterr().out
    done = ex.run("T", executor="slurm", slurm=options, progress=False, results_dir=tmp_path, device="cpu")
    assert set(done["runs"]) == keys_of("T") and "submitted 4 runs" in capsys.readouterr().out  # resumed
    again = ex.run("T", executor="slurm", slurm=options, progress=False, results_dir=tmp_path, device="cpu")
    assert again["runs"] == done["runs"] and "submitted" not in capsys.readouterr().out
    stored = json.loads((tmp_path / "T.json").read_text())["runs"]
    for entry in stored.values():     # a job computes what this process does
        assert entry["result"] == ex.run_one(entry["spec"])
        assert entry["env"]["device"].startswith("cpu: ")


def test_the_slurm_command_line_runs_end_to_end_in_submitits_debug_executor(tiny, tmp_path, capsys):
    pytest.importorskip("submitit")
    argv = ["T", "--executor", "slurm", "--slurm-cluster", "debug", "--device", "cpu", "--quiet",
            "--results", str(tmp_path)]
    assert ex.main(argv) == 0
    out = capsys.readouterr().out
    assert "submitted 6 runs as job array" in out and "T: 6/6 runs stored" in out
    assert set(json.loads((tmp_path / "T.json").read_text())["runs"]) == keys_of("T")


def test_the_options_reach_sbatch(tmp_path, monkeypatch):
    """What a real cluster gets: the sbatch script submitit writes (no srun needed to write it)."""
    submitit = pytest.importorskip("submitit")
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))
    options = executors.SlurmOptions(partition="gpu", gpus_per_task=1, time_min=240, array_parallelism=8,
                                     cluster="slurm")
    script = executors.make_executor("E3", options, tmp_path)._executor._make_submission_file_text("run", "u")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-task=1", "#SBATCH --time=240",
                 "#SBATCH --job-name=normcourse-E3", "#SBATCH --cpus-per-task=1"):
        assert line in script


def test_a_missing_submitit_names_the_extra(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)      # import submitit now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'normcourse\[cluster\]'"):
        ex.run("T", executor="slurm", progress=False, results_dir=tmp_path, device="cpu")
    assert ex.main(["T", "--executor", "slurm", "--results", str(tmp_path), "--quiet"]) == 2
    assert "normcourse[cluster]" in capsys.readouterr().err


# --------------------------------------------------------------------- estimates

def test_dry_run_prints_counts_and_estimates_for_every_experiment_in_both_tiers(capsys, monkeypatch):
    monkeypatch.setattr(sweep, "run", lambda *a, **k: pytest.fail("a dry run ran something"))
    assert ex.main(["list", "--dry-run", "--gpu-tflops", "20"]) == 0
    out = capsys.readouterr().out
    for name, e in ex.EXPERIMENTS.items():
        for scale in ex.SCALES:
            n = len(e.specs(scale))
            assert f"{name} ({scale}): {n} of {n} runs to do" in out
    assert out.count("core-hours (measured here:") == 2 * len(ex.EXPERIMENTS)
    assert out.count("at an ASSUMED 20 TFLOP/s") == 2 * len(ex.EXPERIMENTS) - 2   # E7 runs on the CPU only
    assert ex.main(["E3", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "E3 (preview): 0 of 120 runs to do" in out and "E3 (full): 120 of 120 runs to do" in out
    assert "pass --gpu-tflops R" in out


def test_flop_estimate_follows_the_model_shape():
    e3 = ex.EXPERIMENTS["E3"].specs("full")[0]
    f = estimate.estimate([e3])["flops"]
    deeper = {**e3, "model": {**e3["model"], "n_layer": 12}}
    longer = {**e3, "train": {**e3["train"], "steps": 4000}}
    assert estimate.estimate([deeper])["flops"] == pytest.approx(2 * f, rel=0.05)
    assert estimate.estimate([longer])["flops"] == pytest.approx(2 * f, rel=0.01)
    # 6 N D for training (Kaplan et al. 2020), N = 12 L d^2 = 18.9 M, D = 2000 * 16 * 256 tokens
    assert f == pytest.approx(6 * 12 * 6 * 512 ** 2 * 2000 * 16 * 256, rel=0.1)
    assert estimate.probe_cpu_rate(64, 32, 4) > 1e8


# ----------------------------------------------------------------- provenance

def _normcourse_imports(path: Path) -> set:
    """normcourse modules imported by ``path`` (anywhere in it, lazy imports too), as file paths."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("normcourse"):
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("normcourse")]
        for n in names:
            parts = n.split(".")[1:]
            if not parts:                 # "from normcourse import x": the package itself
                found.add(Path("__init__.py"))
                continue
            rel = Path(*parts)
            for candidate in (rel.with_suffix(".py"), rel / "__init__.py"):
                if (cache.PACKAGE_DIR / candidate).is_file():
                    found.add(candidate)
    if path.name != "__init__.py":
        found.add(Path("__init__.py"))    # importing any normcourse module runs normcourse/__init__.py
    return found


def test_engine_files_cover_every_module_a_run_executes():
    todo, seen = [Path("experiments/measures.py")], set()
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        todo += [m for m in _normcourse_imports(cache.PACKAGE_DIR / rel)
                 if m.parts[0] != "experiments" or m == Path("experiments/measures.py")]
    engine = {p.relative_to(cache.PACKAGE_DIR) for p in cache.engine_paths()}
    assert seen <= engine, f"add to ENGINE_FILES: {sorted(map(str, seen - engine))}"
    for name in ("ablations.py", "remove_norm.py", "train.py", "experiments/measures.py"):
        assert Path(name) in engine


def test_every_new_run_records_device_versions_and_code(tiny, tmp_path):
    ex.run("T", limit=1, progress=False, results_dir=tmp_path)
    (path,) = run_files(tmp_path, "T")
    entry = json.loads(path.read_text())
    assert entry["env"]["device"].startswith("cpu: ") and len(entry["env"]["device"]) > 5
    assert {"python", "torch", "numpy"} <= set(entry["env"])
    assert entry["code"]["engine_sha256"] == cache.code_version()["engine_sha256"]


@pytest.mark.parametrize("name", sorted(ex.EXPERIMENTS))
def test_every_preview_grid_is_stored_completely(name):
    runs = ex.read_cache(name)["runs"]
    assert set(runs) == keys_of(name), f"re-run: python -m normcourse experiment {name}"


def test_full_tiers_build_valid_configs_with_a_reason_each():
    for e in ex.EXPERIMENTS.values():
        assert e.full.why and e.full.parts
        for spec in e.specs("full"):
            ex.measures.configs(spec)       # every field accepted by GPTConfig / TrainConfig
        assert len({ex.spec_key(s) for s in e.specs("full")}) == len(e.specs("full"))


# ------------------------------------------------------------- what chapters show

def test_full_tier_note_and_side_by_side(tiny, tmp_path):
    ex.run("T", progress=False, results_dir=tmp_path)
    note = ex.full_tier_note("T", tmp_path)
    assert note.startswith("No full-tier result of T") and "python -m normcourse experiment T --scale full" in note

    def summary(rows):
        return {"runs": len(rows), "mean val loss": sum(r["val_loss"] for r in rows) / len(rows)}

    alone = ex.beside_preview("T", summary, tmp_path)
    assert "[1] preview" in alone and note in alone
    ex.run("T", scale="full", device="cpu", progress=False, results_dir=tmp_path)
    note = ex.full_tier_note("T", tmp_path)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert note.startswith("Full-tier results of T: full, cpu: ") and today in note and "(6/6 runs)" in note
    both = ex.beside_preview("T", summary, tmp_path)
    assert "[2] full, cpu: " in both and "No full-tier" not in both
    line = next(li for li in both.splitlines() if li.startswith("mean val loss"))
    assert len(line.split()) == 5      # label (3 words) and two columns


@pytest.mark.parametrize("name", ["E1", "E2", "E3", "E4", "E6", "E7"])
def test_each_chapter_summary_reads_the_preview_and_names_the_full_command(name):
    from normcourse.experiments import side_by_side
    text = ex.full_tier_comparison(name)
    numbers = side_by_side.SUMMARIES[name](ex.load_results(name))
    assert numbers and all(v is None or v == v for v in numbers.values())   # no NaN
    assert f"No full-tier result of {name}" in text and f"experiment {name} --scale full" in text
    for label in numbers:
        assert label in text
    with pytest.raises(ValueError, match="no chapter summary for 'E5'"):
        ex.full_tier_comparison("E5")


def test_smoke_steps_run_full_sizes_briefly_and_never_count_as_the_grid(tiny, tmp_path):
    smoke = ex.run("T", scale="full", smoke_steps=2, limit=2, device="cpu", progress=False, results_dir=tmp_path)
    assert len(smoke["runs"]) == 2
    for entry in smoke["runs"].values():
        assert entry["spec"]["train"]["steps"] == 2 and len(entry["result"]["loss"]) == 2
        assert entry["spec"]["model"]["d_model"] == 32          # the tier's sizes otherwise
    assert (tmp_path / "smoke" / "full-cpu" / "T.json").exists()
    assert ex.read_cache("T", tmp_path, scale="full")["runs"] == {} and ex.full_results("T", tmp_path) == []
