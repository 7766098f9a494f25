"""The benchmark: its byte model, sizing rule, correctness gate, compile-once rule,
per-case recording, columns and CPU path, all exercised on the CPU.

The GPU code path (``bench.run`` with ``device="cuda"``) is driven here on CPU
tensors with a wall-clock timer; only CUDA-graph timing itself needs a GPU.
"""

import csv
import json

import pytest
import torch

from cli_usage import assert_usage_error, must_not_run
from normcourse import bench


def _run(tmp_path=None, **kw):
    """A tiny run of the GPU code path on the CPU."""
    args = dict(ops=("rms_norm",), dtypes=("float32",), ns=(16,), modes=("fwd", "bwd"),
                providers=("torch",), device="cpu", min_elements=64, repeats=1,
                copy_elements=1024, log=lambda line: None)
    args.update(kw)
    if tmp_path is not None:
        args["out_dir"] = str(tmp_path)
    return bench.run(**args)


def test_cpu_bench_runs_quick_and_writes_results_and_png(tmp_path, capsys):
    rc = bench.main(["--quick", "--out", str(tmp_path), "--sizes", "16", "--rows", "4"])
    out = capsys.readouterr().out
    assert rc == 0
    if not torch.cuda.is_available():
        assert "GPU throughput numbers need a GPU" in out
        data = json.loads((tmp_path / "bench.json").read_text())
        assert data["meta"]["device"] == "cpu" and data["meta"]["is_gpu"] is False
        assert "not a GPU measurement" in data["meta"]["timing"]
        assert {r["provider"] for r in data["rows"]} == {"normcourse.norms (from scratch)",
                                                         "torch"}
        assert {r["op"] for r in data["rows"]} == set(bench.OPS)
        assert all(r["timing"] == "wall_clock" for r in data["rows"])
    assert (tmp_path / "bench.csv").exists()
    assert (tmp_path / "bench.png").stat().st_size > 10_000  # the PNG the help promises


def test_minimal_bytes_counts_rows_params_and_stats():
    m, n = 4096, 1024
    # RMSNorm forward in bf16: read x, write y (2 bytes each), read weight, write rstd.
    assert bench.minimal_bytes("rms_norm", "fwd", m, n, torch.bfloat16) == 2 * m * n * 2 + n * 2 + m * 4
    # The fused op moves x, residual in and y, residual_out out.
    assert bench.minimal_bytes("add_rms_norm", "fwd", m, n, torch.float32) == 4 * m * n * 4 + n * 4 + m * 4
    # LayerNorm backward: read x, dy, write dx; read w, b, write dw, db; read mean, rstd.
    assert bench.minimal_bytes("layer_norm", "bwd", m, n, torch.float32) == \
        3 * m * n * 4 + 4 * n * 4 + 2 * m * 4
    assert bench.minimal_bytes("add_layer_norm", "fwd", m, n, torch.bfloat16) == \
        4 * m * n * 2 + 2 * n * 2 + 2 * m * 4
    for op in bench.OPS:
        assert bench.minimal_bytes(op, "fwd+bwd", m, n, torch.float32) == \
            bench.minimal_bytes(op, "fwd", m, n, torch.float32) + \
            bench.minimal_bytes(op, "bwd", m, n, torch.float32)
    with pytest.raises(ValueError, match="mode must be"):
        bench.minimal_bytes("rms_norm", "both", m, n, torch.float32)
    with pytest.raises(ValueError, match="op must be one of"):
        bench.minimal_bytes("rmsnorm", "fwd", m, n, torch.float32)


@pytest.mark.parametrize("n", [1, 123, 1024, 4096, 9001, 65536, 1 << 20])
def test_working_set_is_far_larger_than_l2(n):
    m = bench.rows_for(n)
    assert m * n >= 1 << 27                       # 256 MiB in bfloat16, > 4x a 60 MB L2
    assert (m - 1) * n < 1 << 27                  # and no larger than needed
    assert 2 * m * n >= 4 * 60e6                  # bytes of one bf16 tensor vs the H200's L2
    assert bench.rows_for(n, at_least=10 ** 9) == 10 ** 9  # --rows only raises M


def test_run_sizes_each_case_by_the_rule():
    rows, _ = _run(ns=(8, 24), min_elements=100)
    assert {(r["N"], r["M"]) for r in rows} == {(8, 13), (24, 5)}


def test_nominal_peak_table():
    assert bench.nominal_peak("NVIDIA H200") == (4800.0, "NVIDIA H200 datasheet")
    assert bench.nominal_peak("NVIDIA H100 80GB HBM3")[0] == 3350.0
    assert bench.nominal_peak("NVIDIA H100 PCIe")[0] == 2000.0
    assert bench.nominal_peak("Tesla T4")[0] == 320.0
    assert bench.nominal_peak("NVIDIA L4")[0] == 300.0
    assert bench.nominal_peak("NVIDIA H100 NVL")[0] == 3900.0
    assert bench.nominal_peak("NVIDIA A100-SXM4-80GB")[0] == 2039.0
    assert bench.nominal_peak("NVIDIA A100 80GB PCIe")[0] == 1935.0
    assert bench.nominal_peak("NVIDIA A100-PCIE-40GB")[0] == 1555.0
    assert bench.nominal_peak("NVIDIA A100-SXM4-40GB")[0] == 1555.0
    assert bench.nominal_peak("NVIDIA GH200 480GB") == (None, "unknown")  # not an H200
    assert bench.nominal_peak("NVIDIA L40S") == (None, "unknown")
    assert bench.nominal_peak("Some Future GPU") == (None, "unknown")


def test_columns_record_device_peak_copy_and_variant(tmp_path):
    rows, meta = _run(tmp_path, ops=("layer_norm", "add_rms_norm"), ns=(16, 20001),
                      providers=("triton", "torch", "triton add, then norm"),
                      min_elements=1)
    data = json.loads((tmp_path / "bench.json").read_text())
    for key in ("device", "copy_bandwidth_GBps", "nominal_peak_GBps", "nominal_peak_source",
                "torch", "triton", "date", "min_working_set_elements"):
        assert key in data["meta"], key
    with open(tmp_path / "bench.csv") as f:
        table = list(csv.DictReader(f))
    assert tuple(table[0]) == bench.COLUMNS
    assert len(table) == len(rows) == len(data["rows"])
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == len(rows)
    assert all(r["device"] == "cpu" and r["GBps"] > 0 and r["fraction_of_copy"] > 0 for r in ok)
    assert all(r["fraction_of_peak"] is None for r in ok)  # a CPU has no datasheet peak here
    variants = {(r["provider"], r["mode"], r["N"]): r["variant"] for r in rows}
    # N=20001 (rows not 16-byte aligned, beyond 16384) takes the chunked forward and
    # backward; N=16 the row kernels.
    assert variants[("triton", "fwd", 20001)] == "chunked"
    assert variants[("triton", "bwd", 20001)] == "chunked"
    assert variants[("triton", "fwd", 16)] == "row"
    assert variants[("torch", "fwd", 16)] == ""
    # the unfused pair runs only for the fused ops
    assert {r["op"] for r in rows if r["provider"] == "triton add, then norm"} == {"add_rms_norm"}


def test_a_wrong_provider_is_reported_and_not_timed(tmp_path, monkeypatch):
    def slightly_wrong(op, x, r, w, b, backend):
        f = bench.TORCH_OPS[op]
        return lambda: tuple(o * 1.01 for o in f(x, r, w, b))  # 1% off: a wrong scale

    monkeypatch.setitem(bench.PROVIDERS, "wrong", bench.Provider(slightly_wrong, bench.OPS))
    timed = []

    def timer(fn, repeats):
        timed.append(fn)
        return bench.KernelTime(1.0, "test")

    rows, _ = _run(tmp_path, providers=("wrong", "torch"), timer=timer)
    status = {(r["provider"], r["mode"]): r for r in rows}
    for mode in ("fwd", "bwd"):
        assert status[("wrong", mode)]["status"] == "wrong"
        assert status[("wrong", mode)]["ms"] is None
        assert "OUTSIDE the allowed" in status[("wrong", mode)]["note"]
        assert status[("torch", mode)]["status"] == "ok"
    assert len(timed) == 1 + 2  # the copy-bandwidth probe, then torch's two cases only


def test_a_wrong_gradient_alone_fails_the_backward_gate():
    class WrongGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, y):
            return y.clone()

        @staticmethod
        def backward(ctx, g):
            return -g

    def wrong_backward(op, x, r, w, b, backend):
        f = bench.TORCH_OPS[op]
        return lambda: tuple(WrongGrad.apply(o) for o in f(x, r, w, b))

    bench.PROVIDERS["wrong backward"] = bench.Provider(wrong_backward, bench.OPS)
    try:
        rows, _ = _run(providers=("wrong backward",))
    finally:
        del bench.PROVIDERS["wrong backward"]
    assert [r["status"] for r in rows] == ["ok", "wrong"]


def test_a_failing_provider_is_reported_and_the_run_goes_on():
    def broken(op, x, r, w, b, backend):
        def run():
            raise RuntimeError("no kernel for this shape")
        return run

    bench.PROVIDERS["broken"] = bench.Provider(broken, bench.OPS)
    try:
        rows, _ = _run(providers=("broken", "torch"))
    finally:
        del bench.PROVIDERS["broken"]
    assert [r["status"] for r in rows if r["provider"] == "broken"] == ["failed", "failed"]
    assert "no kernel for this shape" in rows[0]["note"]
    assert all(r["status"] == "ok" for r in rows if r["provider"] == "torch")


def test_torch_compile_compiles_once_per_case_with_static_shapes():
    """A counting backend sees one compile per (op, N, mode), never a dynamic shape."""
    compiles = []

    def counting(gm, example_inputs):
        shapes = [tuple(t.shape) for t in example_inputs if isinstance(t, torch.Tensor)]
        static = all(isinstance(d, int) for s in shapes for d in s)
        compiles.append(static and not any(isinstance(t, torch.SymInt) for t in example_inputs))
        return gm.forward

    ops, ns, modes = ("rms_norm", "add_layer_norm"), (8, 24, 40), ("fwd", "bwd")
    rows, _ = _run(ops=ops, ns=ns, modes=modes, providers=("torch.compile",),
                   compile_backend=counting, repeats=3)
    assert all(r["status"] == "ok" for r in rows), [r["note"] for r in rows]
    assert len(rows) == len(ops) * len(ns) * len(modes)
    assert len(compiles) == len(rows)       # once per case: no recompiles while timing
    assert all(compiles)                    # dynamic=False: every shape is a concrete int


def test_interrupting_keeps_the_cases_already_measured(tmp_path):
    calls = []

    def timer(fn, repeats):
        calls.append(1)
        if len(calls) == 4:  # call 1 is the copy-bandwidth probe
            raise KeyboardInterrupt  # the user presses Ctrl-C during the third case
        return bench.KernelTime(0.5, "test")

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, ns=(16, 32), timer=timer)
    data = json.loads((tmp_path / "bench.json").read_text())
    assert [(r["N"], r["mode"]) for r in data["rows"]] == [(16, "fwd"), (16, "bwd")]
    with open(tmp_path / "bench.csv") as f:
        assert len(list(csv.DictReader(f))) == 2


def test_a_second_run_keeps_the_first_runs_files(tmp_path):
    _run(tmp_path)
    first = json.loads((tmp_path / "bench.json").read_text())
    _run(tmp_path, ns=(32,))
    kept = sorted(p.name for p in tmp_path.glob("bench.*.json"))
    assert len(kept) == 1
    assert json.loads((tmp_path / kept[0]).read_text()) == first
    assert json.loads((tmp_path / "bench.json").read_text())["rows"][0]["N"] == 32


def test_bad_names_are_refused_with_the_valid_choices():
    with pytest.raises(ValueError, match="providers: .*'tritton'.* not among .*triton"):
        _run(providers=("tritton",))
    with pytest.raises(ValueError, match="modes: .*'fwd\\+bwd'.* not among fwd, bwd"):
        _run(modes=("fwd+bwd",))


def test_liger_is_skipped_with_a_note_when_absent(monkeypatch):
    monkeypatch.setattr(bench, "_liger_functions", lambda: None)
    rows, meta = _run(providers=("liger", "torch"))
    assert {r["provider"] for r in rows} == {"torch"}
    assert any("liger_kernel is not installed" in note for note in meta["notes"])


def test_liger_fused_add_rms_norm_is_used_when_present(monkeypatch):
    used = []

    def fused(x, r, w, b):
        used.append("fused")
        return bench.TORCH_OPS["add_rms_norm"](x, r, w, b)

    monkeypatch.setattr(bench, "_liger_functions", lambda: {"add_rms_norm": fused})
    rows, meta = _run(ops=("add_rms_norm", "add_layer_norm"), providers=("liger",))
    assert [(r["op"], r["status"]) for r in rows] == [("add_rms_norm", "ok")] * 2
    assert used  # Liger's fused op itself, not Liger's norm after a separate add


def test_plot_of_a_cpu_run_says_cpu(tmp_path):
    rows, meta = _run()
    bench.plot(rows, meta, str(tmp_path / "b.png"))
    assert (tmp_path / "b.png").stat().st_size > 0
    bench.plot([], meta, str(tmp_path / "empty.png"))  # nothing measured: still a figure
    assert (tmp_path / "empty.png").exists()


def test_show_gpu_results_shows_recorded_runs_labelled_with_the_device(tmp_path, capsys,
                                                                       monkeypatch):
    bench.show_gpu_results("layer_norm", live=False, root=str(tmp_path))
    assert capsys.readouterr().out == ""  # nothing recorded: nothing shown (the prose says so)
    run_dir = tmp_path / "2026-12-01_NVIDIA-H200"
    run_dir.mkdir()
    (run_dir / "summary.md").write_text("| step | status |\n|---|---|\n| selfcheck | passed |\n")
    rows, meta = _run(ops=("layer_norm",))
    meta = dict(meta, device="NVIDIA H200", is_gpu=True)
    (run_dir / "bench.json").write_text(json.dumps({"meta": meta, "rows": rows}))
    plotted = []
    monkeypatch.setattr(bench, "plot", lambda r, m, path=None, ops=None: plotted.append(m))
    monkeypatch.setattr(bench, "_display_markdown", print)
    bench.show_gpu_results("layer_norm", live=False, root=str(tmp_path))
    out = capsys.readouterr().out
    assert "Recorded by `make gpu-check` on NVIDIA H200" in out
    assert "| selfcheck | passed |" in out
    assert [m["device"] for m in plotted] == ["NVIDIA H200"]


@pytest.mark.parametrize("argv, message", [
    (["--rows", "0"], "argument --rows: must be an integer >= 1, got 0"),
    (["--rows", "-4"], "argument --rows: must be an integer >= 1, got -4"),
    (["--repeats", "0"], "argument --repeats: must be an integer >= 1, got 0"),
    (["--repeats", "-1"], "argument --repeats: must be an integer >= 1, got -1"),
    (["--sizes", "0"], "argument --sizes: must be an integer >= 1, got 0"),
    (["--sizes", "16", "-8"], "argument --sizes: must be an integer >= 1, got -8"),
    (["--ops", "layernorm"], "argument --ops: invalid choice: 'layernorm'"),
    (["--modes", "fwd+bwd"], "argument --modes: invalid choice: 'fwd+bwd'"),
    (["--providers", "tritton"], "argument --providers: invalid choice: 'tritton'"),
])
def test_bad_arguments_are_usage_errors(argv, message, capsys, monkeypatch):
    # before: 0 was silently replaced by the default (`args.rows or 256`), negatives crashed
    monkeypatch.setattr(bench, "run", must_not_run)
    assert_usage_error(bench.main, argv, message, capsys)


def test_unwritable_out_fails_before_the_benchmark(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "run", must_not_run)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert_usage_error(bench.main, ["--out", str(a_file / "sub"), "--rows", "2", "--sizes", "8",
                                    "--repeats", "1"], "--out: cannot write to folder", capsys)


def test_without_triton_the_triton_providers_are_skipped_with_a_note(monkeypatch):
    from normcourse import runtime

    monkeypatch.setattr(runtime, "triton_available", lambda: False)
    rows, meta = _run(ops=("add_rms_norm",), providers=("triton", "triton add, then norm",
                                                        "torch"))
    assert {r["provider"] for r in rows} == {"torch"}
    assert meta["triton"] is None
    assert sum("triton is not installed" in note for note in meta["notes"]) == 2
