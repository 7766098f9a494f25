"""The benchmark command's CPU path runs, says plainly it measured no GPU, and writes its files."""

import json

import pytest
import torch

from normcourse import bench


def test_cpu_bench_runs_and_writes_results(tmp_path, capsys):
    rc = bench.main(["--rows", "4", "--sizes", "16", "--repeats", "2", "--out", str(tmp_path),
                     "--no-compile-report"])
    out = capsys.readouterr().out
    assert rc == 0
    if not torch.cuda.is_available():
        assert "GPU throughput numbers need a GPU" in out
        data = json.loads((tmp_path / "bench.json").read_text())
        assert data["meta"]["device"] == "cpu"
        assert {r["provider"] for r in data["rows"]} == {"normcourse.norms (from scratch)",
                                                         "torch (F.*)"}
        assert (tmp_path / "bench.csv").exists()


def test_minimal_bytes_counts_rows_params_and_stats():
    m, n = 4096, 1024
    # RMSNorm forward in bf16: read x, write y (2 bytes each), read weight, write rstd.
    assert bench.minimal_bytes("rms_norm", "fwd", m, n, torch.bfloat16) == 2 * m * n * 2 + n * 2 + m * 4
    # The fused op moves x, residual in and y, residual_out out.
    assert bench.minimal_bytes("add_rms_norm", "fwd", m, n, torch.float32) == 4 * m * n * 4 + n * 4 + m * 4
    assert bench.minimal_bytes("layer_norm", "fwd+bwd", m, n, torch.float32) > \
        bench.minimal_bytes("layer_norm", "fwd", m, n, torch.float32)


def test_gpu_code_path_on_cpu_with_a_wall_clock(tmp_path):
    """Drive the GPU benchmark's loop, table, files and plot on tiny CPU tensors."""
    rows, meta = bench.run_gpu(m=2, ns=(16,), dtypes=("float32",), repeats=1, device="cpu",
                               timer=bench.wall_clock,
                               providers=("triton", "torch", "triton add, then rms_norm"))
    assert {(r["op"], r["mode"]) for r in rows} == {
        (op, mode) for op in ("layer_norm", "rms_norm", "add_rms_norm")
        for mode in ("fwd", "fwd+bwd")}
    assert all(r["GBps"] > 0 and r["fraction_of_copy"] > 0 for r in rows)
    assert "triton add, then rms_norm" in {r["provider"] for r in rows}
    assert "fraction_of_copy" in bench.format_table(rows, list(rows[0]))
    bench._save(rows, meta, str(tmp_path))
    bench.plot(rows, meta, str(tmp_path / "bench.png"))
    assert (tmp_path / "bench.png").stat().st_size > 0


@pytest.mark.parametrize("argv, message", [
    (["--rows", "0"], "argument --rows: must be an integer >= 1, got 0"),
    (["--rows", "-4"], "argument --rows: must be an integer >= 1, got -4"),
    (["--repeats", "0"], "argument --repeats: must be an integer >= 1, got 0"),
    (["--repeats", "-1"], "argument --repeats: must be an integer >= 1, got -1"),
    (["--sizes", "0"], "argument --sizes: must be an integer >= 1, got 0"),
    (["--sizes", "16", "-8"], "argument --sizes: must be an integer >= 1, got -8"),
])
def test_non_positive_sizes_are_usage_errors(argv, message, capsys, monkeypatch):
    # before: 0 was silently replaced by the default (`args.rows or 256`), negatives crashed
    monkeypatch.setattr(bench, "run_cpu", _must_not_run)
    monkeypatch.setattr(bench, "run_gpu", _must_not_run)
    with pytest.raises(SystemExit) as exit_:
        bench.main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_unwritable_out_fails_before_the_benchmark(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "run_cpu", _must_not_run)
    monkeypatch.setattr(bench, "run_gpu", _must_not_run)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--out", str(a_file / "sub"), "--rows", "2", "--sizes", "8", "--repeats", "1"])
    assert exit_.value.code == 2
    assert "--out: cannot write to folder" in capsys.readouterr().err


def _must_not_run(*args, **kwargs):
    raise AssertionError("the benchmark ran although its arguments were bad")
