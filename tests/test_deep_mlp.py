"""The deep MLP and its statistics: shapes, the configurations, and known signal behaviour."""

import math

import pytest
import torch

from normcourse.deep_mlp import (DeepMLP, fraction_saturated, layer_stats, make_teacher_data,
                                 train_and_track_updates, update_to_data_ratio)


@pytest.fixture
def data():
    return make_teacher_data(n=128, n_in=16, n_classes=5, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("norm", [None, "layernorm", "batchnorm"])
def test_forward_shapes_and_activations(data, residual, norm):
    x, y = data
    torch.manual_seed(0)
    m = DeepMLP(n_in=16, width=20, depth=6, n_classes=5, residual=residual, norm=norm)
    out = m(x)
    assert out.shape == (128, 5)
    assert len(m.activations) == 6 and all(a.shape == (128, 20) for a in m.activations)
    stats = layer_stats(m, x, y)
    assert [s.layer for s in stats] == list(range(1, 7))
    assert all(s.grad_std > 0 for s in stats)
    assert all(0.0 <= s.saturated <= 1.0 for s in stats)


def test_bad_arguments():
    with pytest.raises(ValueError, match="activation"):
        DeepMLP(activation="gelu")
    with pytest.raises(ValueError, match="norm"):
        DeepMLP(norm="rmsnorm")


def test_residual_adds_the_branch(data):
    x, _ = data
    torch.manual_seed(0)
    m = DeepMLP(n_in=16, width=20, depth=3, n_classes=5, residual=True)
    with torch.no_grad():
        m(x)
        h = m.inp(x)
        for a in m.activations:
            h = h + a
        assert torch.allclose(m.out(h), m(x))


def test_init_scale_controls_vanishing_and_saturation(data):
    x, y = data
    torch.manual_seed(0)
    small = layer_stats(DeepMLP(n_in=16, width=64, depth=30, n_classes=5, gain=0.5), x, y)
    torch.manual_seed(0)
    big = layer_stats(DeepMLP(n_in=16, width=64, depth=30, n_classes=5, gain=3.0), x, y)
    assert small[-1].act_std < 1e-3          # the signal dies
    assert small[0].grad_std < small[-1].grad_std * 1e-3  # and so does the gradient
    assert big[-1].saturated > 0.2            # many units pinned at +-1
    torch.manual_seed(0)
    normed = layer_stats(DeepMLP(n_in=16, width=64, depth=30, n_classes=5, gain=0.5, norm="layernorm"), x, y)
    assert 0.4 < normed[-1].act_std < 0.9     # normalization restores the scale


def test_fraction_saturated():
    a = torch.tensor([0.0, 0.98, -0.99, 0.5])
    assert fraction_saturated(a) == 0.5
    assert fraction_saturated(a, threshold=0.1) == 0.75


def test_update_to_data_ratio():
    w = torch.randn(50, 50)
    g = torch.randn(50, 50)
    assert math.isclose(update_to_data_ratio(w, g, 1e-3), math.log10(float((1e-3 * g).std() / w.std())),
                        abs_tol=1e-6)


def test_training_records_ratios(data):
    x, y = data
    torch.manual_seed(0)
    m = DeepMLP(n_in=16, width=20, depth=4, n_classes=5)
    losses, ratios = train_and_track_updates(m, x, y, lr=0.5, steps=30, batch_size=32,
                                             generator=torch.Generator().manual_seed(0))
    assert len(losses) == 30 and ratios.shape == (30, 4)
    assert torch.isfinite(ratios).all()
    assert sum(losses[-5:]) < sum(losses[:5])


# ------------------------------------------------- residual scaling schemes (chapter 2)

from normcourse.residual_scaling import SCHEMES, ResidualStack, gpt2_residual_std  # noqa: E402


@pytest.mark.parametrize("scheme", SCHEMES)
def test_residual_stack_runs(scheme):
    torch.manual_seed(0)
    m = ResidualStack(n_in=8, width=16, depth=5, scheme=scheme)
    out = m(torch.randn(32, 8))
    assert out.shape == (32, 1)
    assert len(m.stream) == 6 and len(m.stream_std()) == 6
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_rezero_is_identity_at_init():
    torch.manual_seed(0)
    m = ResidualStack(n_in=8, width=16, depth=5, scheme="rezero")
    m(torch.randn(32, 8))
    assert all(torch.equal(h, m.stream[0]) for h in m.stream)


def test_schemes_control_stream_growth():
    torch.manual_seed(0)
    x = torch.randn(256, 16)
    stds = {}
    for scheme in SCHEMES:
        torch.manual_seed(1)
        m = ResidualStack(depth=32, scheme=scheme)
        m(x)
        stds[scheme] = m.stream_std()[-1] / m.stream_std()[0]
    assert stds["none"] > 3                      # unscaled pre-norm branches: the stream grows
    assert stds["gpt2"] < 1.5 and stds["layerscale"] < 1.5 and stds["rezero"] == 1.0
    assert stds["sqrt_half"] < 1.0


def test_gpt2_residual_std_and_bad_scheme():
    assert math.isclose(gpt2_residual_std(0.02, 24), 0.02 / math.sqrt(24))
    with pytest.raises(ValueError, match="scheme"):
        ResidualStack(scheme="fixup")
