"""TinyGPT: shapes, loss, init, options and errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from normcourse.blocks import PLACEMENTS, deepnorm_constants
from normcourse.model import GPTConfig, TinyGPT

torch.set_num_threads(1)


def cfg(**kw):
    base = dict(vocab_size=20, block_size=16, n_layer=3, n_head=2, d_model=32)
    base.update(kw)
    return GPTConfig(**base)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_forward_shapes_and_loss(placement):
    torch.manual_seed(0)
    m = TinyGPT(cfg(placement=placement))
    idx = torch.randint(0, 20, (2, 16))
    logits, loss = m(idx, idx)
    assert logits.shape == (2, 16, 20)
    torch.testing.assert_close(loss, F.cross_entropy(logits.view(-1, 20), idx.view(-1)))
    assert m(idx)[1] is None
    assert all(hasattr(b, "attn") and hasattr(b, "mlp") for b in m.blocks)
    # final norm exactly for pre and peri
    assert (m.norm_final is not None) == (placement in ("pre", "peri"))
    # near-uniform predictions at init: loss close to ln(vocab)
    assert abs(loss.item() - math.log(20)) < 0.5


def test_mixed_placements_per_layer():
    m = TinyGPT(cfg(placement=("post", "pre", "peri")))
    assert [b.placement for b in m.blocks] == ["post", "pre", "peri"]
    assert m.norm_final is not None
    with pytest.raises(ValueError, match="n_layer=3"):
        TinyGPT(cfg(placement=("post", "pre")))


def test_residual_init_scaling():
    torch.manual_seed(0)
    c = cfg(n_layer=8, d_model=64)
    m = TinyGPT(c)
    std = m.blocks[0].mlp.c_proj.weight.std().item()
    assert std == pytest.approx(0.02 / math.sqrt(16), rel=0.1)
    assert m.blocks[0].mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.1)
    m2 = TinyGPT(cfg(n_layer=8, d_model=64, scaled_residual_init=False))
    assert m2.blocks[0].mlp.c_proj.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_deepnorm_init_gains():
    torch.manual_seed(0)
    L, d = 8, 64
    m = TinyGPT(cfg(n_layer=L, d_model=d, n_head=4, placement="deepnorm"))
    _, beta = deepnorm_constants(L)
    a = m.blocks[0].attn
    xavier = math.sqrt(2 / (d + d))
    w = a.c_attn.weight
    assert w[:d].std().item() == pytest.approx(xavier, rel=0.1)            # q: gain 1
    assert w[2 * d:].std().item() == pytest.approx(beta * xavier, rel=0.1)  # v: gain beta
    assert a.c_proj.weight.std().item() == pytest.approx(beta * xavier, rel=0.1)
    fc = m.blocks[0].mlp.c_fc.weight
    assert fc.std().item() == pytest.approx(beta * math.sqrt(2 / (d + 4 * d)), rel=0.1)


def test_errors():
    with pytest.raises(ValueError, match="pre"):
        TinyGPT(cfg(placement="middle"))
    with pytest.raises(ValueError, match="rmsnorm"):
        TinyGPT(cfg(norm="groupnorm"))
    with pytest.raises(ValueError, match="divisible"):
        TinyGPT(cfg(d_model=33))
    m = TinyGPT(cfg())
    with pytest.raises(ValueError, match="block_size=16"):
        m(torch.zeros(1, 17, dtype=torch.long))


def test_embed_norm_and_depth_scaled_norm():
    m = TinyGPT(cfg(embed_norm=True, depth_scaled_norm=True))
    assert m.norm_embed is not None
    assert m.blocks[2].norm_attn.scale == pytest.approx(1 / math.sqrt(3))


def test_embed_scale_scales_the_input_not_the_head():
    torch.manual_seed(0)
    m = TinyGPT(cfg(embed_scale=50.0, placement="post"))
    idx = torch.randint(0, 20, (2, 16))
    seen = {}
    m.blocks[0].register_forward_pre_hook(lambda mod, args: seen.setdefault("x", args[0]))
    logits, _ = m(idx)
    x = (m.wte(idx) + m.wpe(torch.arange(16))) * 50
    torch.testing.assert_close(seen["x"], x)
    assert m.lm_head.weight.std().item() < 0.03
