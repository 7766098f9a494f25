"""Chapter 13's checkers: mistakes beyond the near-miss data (tests/near_misses/ch13.py)
are named, and nothing a learner returns makes a checker raise."""

import math

import pytest
import torch

from checker_run import assert_names_mistake
from normcourse.blocks import Block
from normcourse.exercises import attention_norms as an


def _across_heads(q, k, wq, wk, eps):
    B, H, T, d = q.shape

    def norm(x):
        flat = x.transpose(1, 2).reshape(B, T, H * d)
        flat = flat * torch.rsqrt(flat.pow(2).mean(-1, keepdim=True) + eps)
        return flat.reshape(B, T, H, d).transpose(1, 2)
    return (norm(q) * wq) @ (norm(k) * wk).transpose(-2, -1) / math.sqrt(d)


def test_qk_norm_across_all_heads_is_named(capsys):
    assert_names_mistake(an.check_qk_norm_logits, _across_heads, "across all heads", capsys)


def test_qk_norm_wrong_shape_is_named(capsys):
    assert_names_mistake(an.check_qk_norm_logits,
                         lambda q, k, wq, wk, eps: q, "shape", capsys)


def test_qk_norm_bounds_the_logits():
    """Why QK-norm helps: scaling q and k up by 1000 leaves its logits unchanged."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 2, 4, 8, generator=g), torch.randn(2, 2, 4, 8, generator=g)
    w = torch.ones(8)
    small = an.qk_norm_logits(q, k, w, w, 1e-6)
    big = an.qk_norm_logits(1000 * q, 1000 * k, w, w, 1e-6)
    assert torch.allclose(small, big, atol=1e-4)
    assert small.abs().max() <= math.sqrt(8) + 1e-4   # |q_hat . k_hat| / sqrt(d) <= sqrt(d)


def test_z_loss_returning_a_vector_is_named(capsys):
    assert_names_mistake(an.check_z_loss,
                         lambda z, c: c * torch.logsumexp(z, -1).pow(2),
                         "single number", capsys)


def test_z_loss_squared_mean_is_named(capsys):
    assert_names_mistake(an.check_z_loss,
                         lambda z, c: c * torch.logsumexp(z, -1).mean() ** 2,
                         "mean of the squares", capsys)


def test_reordered_block_no_norm_after_attention_is_named(capsys):
    assert_names_mistake(an.check_reordered_block,
                         lambda x, a, m, na, nm: (lambda h: h + nm(m(h)))(x + a(x)),
                         "no norm after attention", capsys)


def test_reordered_reference_matches_the_package_block_if_present():
    """The exercise's formula is the package's placement="reordered" (once it exists)."""
    try:
        block = Block(16, 2, placement="reordered").eval()
    except ValueError:
        pytest.skip("this checkout has no placement='reordered' yet")
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        ours = an.reordered_block(x, block.attn, block.mlp, block.norm_attn_out,
                                  block.norm_mlp_out)
        assert torch.allclose(ours, block(x), atol=1e-6)
