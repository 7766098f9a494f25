"""Chapter 14's checkers: mistakes beyond the near-miss data (tests/near_misses/ch14.py)
are named, and the references have the properties the chapter relies on."""

import pytest
import torch

from checker_run import assert_names_mistake
from normcourse.exercises import residual_streams as rs


def test_sinkhorn_batch_axis_is_named(capsys):
    def wrong(z, n):
        m = z.exp()
        for _ in range(n):
            m = m / m.sum(1, keepdim=True)
            m = m / m.sum(0, keepdim=True)
        return m
    assert_names_mistake(rs.check_sinkhorn, wrong, "batch axis", capsys)


def test_sinkhorn_in_place_is_named(capsys):
    def in_place(z, n):
        z.exp_()
        return rs.sinkhorn(z.log(), n)
    assert_names_mistake(rs.check_sinkhorn, in_place, "in place", capsys)


def test_sinkhorn_output_is_doubly_stochastic_and_positive():
    g = torch.Generator().manual_seed(3)
    m = rs.sinkhorn(torch.randn(5, 6, 6, generator=g, dtype=torch.float64), 100)
    assert (m > 0).all()
    assert torch.allclose(m.sum(-1), torch.ones(5, 6, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(m.sum(-2), torch.ones(5, 6, dtype=torch.float64), atol=1e-9)


def test_ngpt_update_stays_on_the_sphere_and_interpolates():
    g = torch.Generator().manual_seed(4)
    h = torch.nn.functional.normalize(torch.randn(3, 8, generator=g), dim=-1)
    b = torch.randn(3, 8, generator=g) * 5
    out = rs.ngpt_update(h, b, torch.full((8,), 0.3))
    assert torch.allclose(out.norm(dim=-1), torch.ones(3), atol=1e-6)
    assert torch.allclose(rs.ngpt_update(h, b, torch.zeros(8)), h, atol=1e-6)
    unit_b = torch.nn.functional.normalize(b, dim=-1)
    assert torch.allclose(rs.ngpt_update(h, b, torch.ones(8)), unit_b, atol=1e-6)


def test_ngpt_wrong_axis_is_named(capsys):
    def wrong(h, b, a):
        unit = lambda v: v / v.norm(dim=0, keepdim=True)   # noqa: E731
        return unit(h + a * (unit(b) - h))
    assert_names_mistake(rs.check_ngpt_update, wrong, "first axis", capsys)


def test_gain_matches_the_package_if_present():
    """The exercise's gain is the package's (normcourse.residual_streams), once it exists."""
    try:
        from normcourse.residual_streams import amax_gain
    except ImportError:
        pytest.skip("this checkout has no normcourse.residual_streams yet")
    g = torch.Generator().manual_seed(5)
    mats = [torch.eye(3, dtype=torch.float64) + 0.4 * torch.randn(3, 3, generator=g,
                                                                  dtype=torch.float64)
            for _ in range(7)]
    ours = rs.composite_gain(mats)
    theirs = amax_gain(mats)
    assert ours == pytest.approx((theirs["forward"], theirs["backward"]), rel=1e-12)


def test_gain_returning_one_number_is_named(capsys):
    assert_names_mistake(rs.check_composite_gain, lambda ms: 1.0, "pair", capsys)


def test_gain_of_identity_and_of_a_growing_map():
    eye = [torch.eye(3, dtype=torch.float64)] * 4
    assert rs.composite_gain(eye) == (1.0, 1.0)
    doubling = [2 * torch.eye(3, dtype=torch.float64)] * 5
    assert rs.composite_gain(doubling) == (32.0, 32.0)
