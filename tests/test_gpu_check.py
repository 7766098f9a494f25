"""``make gpu-check``'s orchestration, on the CPU: refusal without a GPU, the plan's
budget, per-step timeouts, results on disk as each step finishes, and the summary.

The steps themselves (nvidia-smi, the CUDA tests, the benchmark on a GPU) need a
GPU; here they are replaced by small commands with the same contract.
"""

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("gpu_check", os.path.join(ROOT, "tools",
                                                                         "gpu_check.py"))
gpu_check = importlib.util.module_from_spec(spec)
sys.modules["gpu_check"] = gpu_check  # dataclasses look their module up there
spec.loader.exec_module(gpu_check)

INFO = {"gpu": "NVIDIA H200", "date": "2026-12-02T08:00:00+00:00", "python": "3.12.3",
        "torch": "2.11.0", "triton": "3.6.0", "cuda_version": "13.0", "capability": "9.0",
        "memory_GiB": 139.8, "multiprocessors": 132}


def _step(name, code, timeout=30):
    return gpu_check.Step(name, [sys.executable, "-c", code], timeout, 1, f"{name}.txt")


needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(),
                                   reason="checks the refusal on a machine without CUDA")


@needs_no_cuda
def test_make_gpu_check_refuses_in_one_line_without_a_gpu():
    out = subprocess.run(["make", "-s", "gpu-check"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode != 0
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-check: no CUDA GPU visible to")


def test_the_script_exits_2_and_writes_nothing_without_a_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "probe", lambda python: {"cuda": False})
    rc = gpu_check.main(["--results", str(tmp_path)])
    assert rc == 2
    assert list(tmp_path.iterdir()) == []


def test_the_plan_fits_nine_minutes():
    steps = gpu_check.plan(sys.executable, "/tmp/run", None)
    assert [s.name for s in steps] == ["device", "selfcheck", "cuda_tests", "bench",
                                       "notebooks"]
    assert sum(s.timeout_s for s in steps) <= gpu_check.BUDGET_S == 540
    assert all(s.estimate_s < s.timeout_s for s in steps)
    bench = next(s for s in steps if s.name == "bench")
    assert "--quick" in bench.argv and "/tmp/run" in bench.argv
    cuda = next(s for s in steps if s.name == "cuda_tests")
    assert cuda.argv[-1].endswith("tests/test_cuda_kernels.py")
    nb = steps[-1]
    assert "--nbval-lax" in nb.argv
    chapters = sorted(p.name for p in pathlib.Path(ROOT, "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(os.path.basename(a) for a in nb.argv if a.endswith(".ipynb")) == chapters
    assert not any("learner" in a for a in nb.argv)


def test_dry_run_prints_the_plan_without_a_gpu(capsys, monkeypatch):
    monkeypatch.setattr(gpu_check, "probe", lambda python: {"cuda": False})
    assert gpu_check.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "total timeout 530 s (budget 540 s)" in out
    for name in ("device", "selfcheck", "cuda_tests", "bench", "notebooks"):
        assert name in out


def test_steps_run_in_order_each_logged_as_it_finishes(tmp_path):
    seen_by_step3 = []
    steps = [_step("first", "print('one passed')"),
             _step("broken", "import sys; print('boom'); sys.exit(3)"),
             _step("slow", "import time; print('started', flush=True); time.sleep(60)",
                   timeout=2),
             gpu_check.Step("absent", ["true"], 5, 1, "absent.txt", skip="nbval is not installed"),
             _step("last", "import os; print(sorted(os.listdir('.')))")]
    outcomes = gpu_check.run_all(steps, str(tmp_path), INFO, log=seen_by_step3.append)
    status = {o.name: o.status for o in outcomes}
    assert status == {"first": "passed", "broken": "FAILED (exit 3)",
                      "slow": "TIMED OUT after 2 s", "absent": "skipped: nbval is not installed",
                      "last": "passed"}
    assert "one passed" in (tmp_path / "first.txt").read_text()
    slow = (tmp_path / "slow.txt").read_text()
    assert "started" in slow and "TIMED OUT" in slow  # what it printed before the kill stays
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("# gpu-check on NVIDIA H200")
    assert "| broken | FAILED (exit 3)" in summary and "| slow | TIMED OUT after 2 s" in summary
    assert "torch 2.11.0 (CUDA 13.0), triton 3.6.0" in summary
    assert any("first: passed" in line for line in seen_by_step3)


def test_the_summary_is_on_disk_before_the_next_step_starts(tmp_path):
    probe = ("import pathlib; s = pathlib.Path('SUMMARY').read_text(); "
             "assert '| first | passed' in s and '| second | not run yet' in s; print('seen')")
    steps = [_step("first", "pass"),
             _step("second", probe.replace("SUMMARY", str(tmp_path / "summary.md")))]
    outcomes = gpu_check.run_all(steps, str(tmp_path), INFO, log=lambda s: None)
    assert [o.status for o in outcomes] == ["passed", "passed"]


def test_a_spent_budget_skips_the_remaining_steps(tmp_path):
    steps = [_step("long", "import time; time.sleep(60)", timeout=60),
             _step("after", "print('never')")]
    outcomes = gpu_check.run_all(steps, str(tmp_path), INFO, budget_s=2, log=lambda s: None)
    assert outcomes[0].status.startswith("TIMED OUT")
    assert outcomes[1].status == "skipped: the 9-minute budget is spent"


def test_summary_includes_the_benchmark_table(tmp_path):
    from normcourse import bench

    rows, meta = bench.run(ops=("rms_norm",), dtypes=("float32",), ns=(16,), modes=("fwd",),
                           providers=("torch",), device="cpu", min_elements=64, repeats=1,
                           copy_elements=1024, out_dir=str(tmp_path), log=lambda s: None)
    text = gpu_check.write_summary(str(tmp_path), INFO, [], [])
    assert "measured copy bandwidth" in text
    assert "| rms_norm | fwd | 16 | torch |" in text
    assert json.loads((tmp_path / "bench.json").read_text())["rows"]


def test_run_folder_name_is_date_and_safe_gpu_name():
    import datetime as dt

    when = dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.timezone.utc)
    assert gpu_check.run_folder_name("NVIDIA H200", when) == "2026-12-02_NVIDIA-H200"
    assert gpu_check.run_folder_name("NVIDIA A100-SXM4-80GB", when) == \
        "2026-12-02_NVIDIA-A100-SXM4-80GB"
    assert gpu_check.run_folder_name("a/b c", when) == "2026-12-02_a-b-c"


def test_python_choice_prefers_the_venv(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "ROOT", str(tmp_path))
    assert gpu_check.pick_python().endswith("python3") or gpu_check.pick_python() == sys.executable
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text("")
    assert gpu_check.pick_python() == str(tmp_path / ".venv" / "bin" / "python")


def test_an_empty_wheelhouse_installs_nothing(tmp_path):
    assert gpu_check.install_wheels(sys.executable, str(tmp_path), str(tmp_path / "site")) is None


def test_wheel_list_pins_one_version_of_each():
    with open(os.path.join(ROOT, "tools", "gpu_wheels.txt")) as f:
        pins = [ln.split("==") for ln in f if ln.strip() and not ln.startswith("#")]
    names = [n.lower().replace("_", "-") for n, _ in pins]
    assert all(len(p) == 2 for p in pins)
    assert len(names) == len(set(names))
    assert {"nbval", "ipykernel", "jupyter-client", "nbformat"} <= set(names)


def test_make_uses_python3_where_there_is_no_venv():
    out = subprocess.run(["make", "-n", "-s", "gpu-check", "BIN=/nonexistent/bin"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "python3 tools/gpu_check.py --python python3"


def test_wheels_are_installed_into_the_given_folder(tmp_path):
    """A wheel made here (no registry needed) lands in the target, as .whl/ does there."""
    import zipfile

    wheels = tmp_path / "whl"
    wheels.mkdir()
    info = "gpu_check_demo-0.1.dist-info"
    with zipfile.ZipFile(wheels / "gpu_check_demo-0.1-py3-none-any.whl", "w") as z:
        z.writestr("gpu_check_demo.py", "ANSWER = 42\n")
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: gpu-check-demo\n"
                                       "Version: 0.1\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\n"
                                    "Root-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    site = tmp_path / "site"
    assert gpu_check.install_wheels(sys.executable, str(wheels), str(site)) is None
    assert (site / "gpu_check_demo.py").read_text() == "ANSWER = 42\n"


def test_main_on_a_forced_gpu_writes_the_run_folder(tmp_path, monkeypatch, capsys):
    """The whole command with the probe and the steps replaced: folder, versions, summary."""
    monkeypatch.setattr(gpu_check, "probe", lambda python: dict(INFO, cuda=True))
    monkeypatch.setattr(gpu_check, "plan", lambda python, run_dir, site: [
        _step("selfcheck", "print('ok: matched')"),
        _step("bench", "import sys; sys.exit(1)")])
    rc = gpu_check.main(["--results", str(tmp_path), "--wheels", str(tmp_path / "none")])
    assert rc == 1  # one step failed
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name.endswith("_NVIDIA-H200")
    assert json.loads((run_dir / "versions.json").read_text())["gpu"] == "NVIDIA H200"
    summary = (run_dir / "summary.md").read_text()
    assert "| selfcheck | passed" in summary and "| bench | FAILED (exit 1)" in summary
    assert "wrote" in capsys.readouterr().out
