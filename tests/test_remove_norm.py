"""normcourse.remove_norm: fixed-scale LayerNorm, the identity swap, gradual removal."""

import torch
import torch.nn as nn

from normcourse.data import markov_chain
from normcourse.model import GPTConfig, TinyGPT
from normcourse.remove_norm import (
    FixedScaleLayerNorm, freeze_norm, layer_norm_names, norm_input_stats, remove_gradually,
    removal_order, strip_layer_norms,
)
from normcourse.train import TrainConfig


def tiny(placement="pre", **kw):
    torch.manual_seed(0)
    return TinyGPT(GPTConfig(vocab_size=8, block_size=8, n_layer=2, n_head=2, d_model=16,
                             placement=placement, **kw))


def test_fixed_scale_layer_norm_equals_layer_norm_on_rows_of_that_sigma():
    ln = nn.LayerNorm(16)
    with torch.no_grad():
        ln.weight.normal_(1, 0.3)
        ln.bias.normal_(0, 0.3)
    x = torch.randn(5, 16, dtype=torch.float64)
    x = (x - x.mean(-1, keepdim=True)) / x.std(-1, unbiased=False, keepdim=True) * 2.5 + 1.0
    fixed = FixedScaleLayerNorm(ln, 2.5).double()
    ln = ln.double()
    ln.eps = 0.0
    assert torch.allclose(fixed(x), ln(x), atol=1e-12)
    assert [n for n, _ in fixed.named_parameters()] == ["weight", "bias"]   # the scale is not trained
    assert "scale" in dict(fixed.named_buffers())


def test_fixed_scale_layer_norm_is_linear():
    fixed = FixedScaleLayerNorm(nn.LayerNorm(16, bias=False), 3.0)
    a, b = torch.randn(4, 16), torch.randn(4, 16)
    assert torch.allclose(fixed(a + 2 * b), fixed(a) + 2 * fixed(b), atol=1e-5)


def test_removal_order_puts_mlp_norms_first_and_the_final_norm_last():
    model = tiny()
    assert layer_norm_names(model) == ["blocks.0.norm_attn", "blocks.0.norm_mlp", "blocks.1.norm_attn",
                                       "blocks.1.norm_mlp", "norm_final"]
    assert removal_order(model) == ["blocks.0.norm_mlp", "blocks.1.norm_mlp", "blocks.0.norm_attn",
                                    "blocks.1.norm_attn", "norm_final"]


def test_strip_layer_norms_removes_every_norm_and_keeps_other_weights():
    model = tiny("peri", embed_norm=True)
    before = {k: v.clone() for k, v in model.state_dict().items() if "norm" not in k}
    strip_layer_norms(model)
    assert layer_norm_names(model) == []
    after = model.state_dict()
    assert set(after) == set(before) and all(torch.equal(after[k], v) for k, v in before.items())


def test_freeze_norm_uses_the_average_sigma_and_gradual_removal_leaves_no_layer_norm():
    data = markov_chain(vocab_size=8, n_tokens=4000, seed=0)
    model = tiny()
    stats = norm_input_stats(model, data, ["norm_final"], seed=0)
    scale = freeze_norm(model, "norm_final", data, seed=0)
    assert scale == stats["norm_final"]["mean_sigma"] > 0
    assert isinstance(model.norm_final, FixedScaleLayerNorm)
    tc = TrainConfig(steps=1, batch_size=4, lr=1e-3, threads=1, eval_batches=1)
    out = remove_gradually(model, data, tc, steps_per_norm=2, final_steps=1)
    assert layer_norm_names(model) == []
    assert len(out["ft_loss"]) == 2 * 4 + 1 and len(out["val_after_each"]) == 4
    assert torch.isfinite(torch.tensor(out["val"]))
