"""The command line rejects bad arguments with a usage error (status 2) before anything runs."""

import subprocess
import sys

import pytest

from cli_usage import assert_usage_error, must_not_run
from normcourse import __main__ as cli
from normcourse import experiments as ex
from normcourse.experiments import cli as cli_mod
from normcourse.experiments import executors, sweep


@pytest.mark.parametrize("argv, message", [
    (["E1", "--limit", "-1"], "argument --limit: must be an integer >= 0, got -1"),
    (["E1", "--limit", "x"], "argument --limit: must be an integer >= 0, got 'x'"),
    (["E1", "--workers", "0"], "argument --workers: must be an integer >= 1, got 0"),
    (["E1", "--workers", "-3"], "argument --workers: must be an integer >= 1, got -3"),
    (["E1", "--scale", "huge"], "argument --scale: invalid choice: 'huge'"),
    (["E1", "--executor", "k8s"], "argument --executor: invalid choice: 'k8s'"),
    (["E1", "--where", "lr"], "argument --where: must be FIELD=VALUE"),
    (["E1", "--slurm-time", "soon"], "argument --slurm-time: must be minutes or [D-]HH:MM[:SS]"),
    (["E1", "--gpu-tflops", "0"], "argument --gpu-tflops: must be a number > 0"),
    (["E1", "--smoke-steps", "0"], "argument --smoke-steps: must be an integer >= 1, got 0"),
])
def test_experiment_limit_and_workers_are_checked(argv, message, capsys, monkeypatch):
    # before: --limit -1 ran all grid points but the last, --workers 0 was accepted
    monkeypatch.setattr(sweep, "run", must_not_run)
    assert_usage_error(ex.main, argv, message, capsys)


def test_experiment_run_checks_limit_and_workers(tmp_path, monkeypatch):
    monkeypatch.setattr(executors, "run_and_store", must_not_run)
    with pytest.raises(ValueError, match="limit .* must be an integer >= 0"):
        ex.run("E1", limit=-1, progress=False, results_dir=tmp_path)
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        ex.run("E1", workers=0, progress=False, results_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_experiment_limit_zero_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(executors, "run_and_store", must_not_run)
    assert ex.main(["E1", "--limit", "0", "--quiet", "--results", str(tmp_path)]) == 0
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("text, minutes", [("90", 90), ("1:30", 90), ("4:00:00", 240), ("1-00:00:00", 1440),
                                           ("0:10:30", 11)])
def test_slurm_time_accepts_what_sbatch_accepts(text, minutes):
    assert cli_mod._minutes(text) == minutes


def test_experiment_list_shows_tiers_and_run_counts(capsys):
    assert ex.main(["list"]) == 0
    out = capsys.readouterr().out
    for name, e in ex.EXPERIMENTS.items():
        assert f"preview {len(e.specs())} runs ({len(e.specs())} stored); full {len(e.specs('full'))} runs" in out


@pytest.mark.parametrize("argv", [["selfcheck", "--bogus"], ["selfcheck", "extra"]])
def test_selfcheck_rejects_unknown_arguments(argv, capsys):
    assert_usage_error(cli.main, argv, "unrecognized arguments", capsys)


def test_usage_errors_exit_with_status_2_from_the_shell():
    out = subprocess.run([sys.executable, "-m", "normcourse", "bench", "--rows", "0"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--rows: must be an integer >= 1" in out.stderr


def test_bench_quick_runs_from_the_shell_and_makes_the_png_it_promises(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("on a GPU --quick measures the GPU (make gpu-check runs it)")
    out = subprocess.run([sys.executable, "-m", "normcourse", "bench", "--quick", "--out",
                          str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "No CUDA GPU here" in out.stdout
    assert "wrote" in out.stdout and "bench.png" in out.stdout
    assert {p.name for p in tmp_path.iterdir()} == {"bench.csv", "bench.json", "bench.png"}
