"""Diagnostics on TinyGPT and on a plain nn.TransformerEncoder; hooks come off; plots draw."""


import matplotlib
import pytest
import torch
import torch.nn as nn

matplotlib.use("Agg")

from normcourse import plots
from normcourse.diagnostics import Diagnostics, select_modules
from normcourse.model import GPTConfig, TinyGPT

torch.set_num_threads(1)


def tiny():
    torch.manual_seed(0)
    return TinyGPT(GPTConfig(vocab_size=20, block_size=16, n_layer=3, n_head=2, d_model=32))


def n_hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_tinygpt_records_match_direct_computation():
    m = tiny()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    idx = torch.randint(0, 20, (4, 16), generator=torch.Generator().manual_seed(0))
    with Diagnostics(m, optimizer=opt) as diag:
        assert n_hooks(m) == 3
        for _ in range(3):
            loss = m(idx, idx)[1]
            loss.backward()
            opt.step()
            opt.zero_grad()
    assert n_hooks(m) == 0 and not opt._optimizer_step_pre_hooks
    assert diag.step == 3
    names = [n for n, _ in diag.targets]
    assert names == ["blocks.0", "blocks.1", "blocks.2"]
    # block 1's statistics computed by hand on the trained weights ...
    with torch.no_grad():
        x = m.wte(idx) + m.wpe(torch.arange(16))
        x_in = m.blocks[0](x)
        out = m.blocks[1](x_in)
    # ... against what a fresh Diagnostics records from the same forward
    with Diagnostics(m, optimizer=None) as d2:
        m(idx)
    row = d2.rows("activation", "blocks.1")[0]
    assert row["rms"] == pytest.approx(out.pow(2).mean().sqrt().item(), rel=1e-5)
    assert row["max"] == pytest.approx(out.abs().max().item(), rel=1e-5)
    assert row["max_median_ratio"] == pytest.approx((out.abs().max() / out.abs().median()).item(), rel=1e-5)
    cos = d2.rows("cosine", "blocks.1")[0]["cosine"]
    assert cos == pytest.approx(nn.functional.cosine_similarity(x_in, out, dim=-1).mean().item(), rel=1e-5)
    # grads and updates: one row per parameter per step
    n_matrices = sum(p.dim() == 2 for p in m.parameters())
    assert len(diag.rows("grad")) == 3 * n_matrices
    upd = diag.rows("update", "blocks.0.mlp.c_fc.weight")
    assert len(upd) == 3 and all(0 < r["update_data_ratio"] < 1 for r in upd)


def test_update_ratio_is_the_actual_update():
    m = tiny()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    idx = torch.randint(0, 20, (2, 8))
    w = m.blocks[0].mlp.c_fc.weight
    with Diagnostics(m, optimizer=opt) as diag:
        m(idx, idx)[1].backward()
        expected_update = -0.1 * w.grad.clone()
        w_before = w.detach().clone()
        opt.step()
    r = diag.rows("update", "blocks.0.mlp.c_fc.weight")[0]["update_data_ratio"]
    assert r == pytest.approx((expected_update.std() / w_before.std()).item(), rel=1e-4)


def test_second_architecture_transformer_encoder_and_selection():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, batch_first=True)
    enc = nn.TransformerEncoder(layer, num_layers=3, enable_nested_tensor=False)
    x = torch.randn(2, 10, 32)
    with Diagnostics(enc, parameters="all") as diag:
        enc(x).sum().backward()
        diag.record_grads()
    assert [n for n, _ in diag.targets] == ["layers.0", "layers.1", "layers.2"]
    assert len(diag.rows("activation")) == 3 and len(diag.rows("cosine")) == 3
    assert any(r["name"] == "layers.2.linear2.weight" for r in diag.rows("grad"))
    assert any(r["name"] == "layers.2.linear2.bias" for r in diag.rows("grad"))
    assert n_hooks(enc) == 0
    # by type and by name pattern
    assert len(select_modules(enc, nn.LayerNorm)) == 6
    assert [n for n, _ in select_modules(enc, r"layers\.\d\.linear1")] == \
        ["layers.0.linear1", "layers.1.linear1", "layers.2.linear1"]
    with pytest.raises(ValueError, match="no submodule"):
        select_modules(enc, ["layers.9"])


def test_hand_made_mlp_and_hooks_removed_on_error():
    mlp = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2))
    with pytest.raises(RuntimeError):
        with Diagnostics(mlp, modules=nn.Tanh) as diag:
            mlp(torch.randn(5, 8))
            raise RuntimeError("boom")
    assert n_hooks(mlp) == 0
    assert len(diag.rows("activation")) == 2
    assert all(r["max"] <= 1 for r in diag.rows("activation"))


def test_plots_draw_with_titles_and_labels():
    m = tiny()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    idx = torch.randint(0, 20, (2, 16))
    with Diagnostics(m, optimizer=opt) as diag:
        for _ in range(3):
            m(idx, idx)[1].backward()
            opt.step()
            opt.zero_grad()
    for ax in (plots.layer_histograms(diag), plots.layer_histograms(diag, "gradients"),
               plots.update_ratio_plot(diag),
               plots.depth_lines({"rms": [r["rms"] for r in diag.rows("activation") if r["step"] == 2]}),
               plots.step_heatmap(*diag.table("activation", "rms"), label="RMS")):
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    import matplotlib.pyplot as plt
    plt.close("all")


# ------------------------------------------------------------ bad input fails early and clearly

def test_nested_reentry_of_one_instance_is_an_error():
    m = tiny()
    idx = torch.randint(0, 20, (2, 16))
    diag = Diagnostics(m)
    with diag:
        with pytest.raises(RuntimeError, match="already attached"):
            with diag:
                pass
        assert n_hooks(m) == 3          # the outer `with` still has its hooks, once
        m(idx)
    assert n_hooks(m) == 0
    assert len(diag.rows("activation")) == 3
    with diag:                          # entering again after exit is fine
        m(idx)
    assert len(diag.rows("activation")) == 6


def test_empty_outputs_are_skipped_not_a_crash():
    m = tiny()
    with Diagnostics(m) as diag:
        m(torch.zeros(0, 8, dtype=torch.long))      # batch 0
        m(torch.zeros(2, 0, dtype=torch.long))      # T = 0
    assert diag.records == []


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(every=0), ValueError, "every must be an integer >= 1"),
    (dict(every=-1), ValueError, "every must be an integer >= 1"),
    (dict(max_values=-1), ValueError, "max_values must be an integer >= 0"),
    (dict(modules=3), TypeError, "modules must be None, a module type"),
    (dict(modules="(["), ValueError, r"modules='\(\[' is not a valid regular expression"),
    (dict(modules="foo.*"), ValueError, r"no submodules matched modules='foo\.\*'; some valid names"),
])
def test_bad_arguments_name_themselves(kwargs, error, message):
    with pytest.raises(error, match=message):
        Diagnostics(tiny(), **kwargs)


def test_model_must_be_a_module():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        Diagnostics("model")


def test_a_leaf_module_records_its_own_output():
    lin = nn.Linear(4, 3)
    with Diagnostics(lin) as diag:
        lin(torch.randn(5, 4))
    assert [n for n, _ in diag.targets] == ["Linear"]
    assert [r["name"] for r in diag.rows("activation")] == ["Linear"]
    assert n_hooks(lin) == 0


def test_table_lists_the_fields_of_a_kind():
    m = tiny()
    with Diagnostics(m) as diag:
        m(torch.randint(0, 20, (2, 16)))
    with pytest.raises(ValueError, match="no field 'nosuchfield'; choose one of mean, rms"):
        diag.table("activation", "nosuchfield")
    with pytest.raises(ValueError, match="unknown kind 'nope'; choose one of activation"):
        diag.table("nope", "rms")
    steps, names, values = diag.table("activation", "rms")
    assert steps == [0] and len(names) == 3
