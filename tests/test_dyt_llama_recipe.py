"""DyT's LLaMA recipe as TinyGPT options (Zhu et al. 2025; the DyT repository's
other_tasks/LLaMA/fms_fsdp/models/llama.py): a learned scalar on the embeddings
starting at sqrt(d_model), one initial alpha for the attention norms and another
for the FFN and final norms, and DyT without its bias."""

import math

import pytest
import torch
import torch.nn as nn

from normcourse.blocks import DyT, make_norm
from normcourse.model import GPTConfig, TinyGPT

RECIPE = dict(norm="dyt", placement="pre", n_layer=3, d_model=64, n_head=4, block_size=16,
              embed_scale_learned=True, dyt_alpha_attn=0.8, dyt_alpha=0.2, dyt_bias=False)


def test_the_embedding_scalar_is_a_learned_parameter_starting_at_sqrt_d():
    model = TinyGPT(GPTConfig(**RECIPE))
    gain = model.embed_gain
    assert isinstance(gain, nn.Parameter) and gain.shape == (1,)
    assert gain.item() == pytest.approx(math.sqrt(64))
    assert any(p is gain for p in model.parameters()), "the optimizer must see it"
    idx = torch.randint(0, 65, (2, 16), generator=torch.Generator().manual_seed(0))
    raw = model.wte(idx) + model.wpe(torch.arange(16))
    torch.testing.assert_close(model.embed(idx), raw * 8.0)
    _, loss = model(idx, idx)
    loss.backward()
    assert gain.grad is not None and gain.grad.abs().item() > 0


def test_the_scalar_starts_at_sqrt_of_each_width():
    model = TinyGPT(GPTConfig(**{**RECIPE, "d_model": 32}))
    assert model.embed_gain.item() == pytest.approx(math.sqrt(32))


def test_attention_norms_get_their_own_alpha_ffn_and_final_norms_the_other():
    model = TinyGPT(GPTConfig(**RECIPE))
    for block in model.blocks:
        assert block.norm_attn.alpha.item() == pytest.approx(0.8)
        assert block.norm_mlp.alpha.item() == pytest.approx(0.2)
    assert model.norm_final.alpha.item() == pytest.approx(0.2)


def test_peri_ln_attention_norms_both_take_the_attention_alpha():
    model = TinyGPT(GPTConfig(**{**RECIPE, "placement": "peri"}))
    block = model.blocks[0]
    assert block.norm_attn_in.alpha.item() == pytest.approx(0.8)
    assert block.norm_attn_out.alpha.item() == pytest.approx(0.8)
    assert block.norm_mlp_in.alpha.item() == pytest.approx(0.2)
    assert block.norm_mlp_out.alpha.item() == pytest.approx(0.2)


def test_dyt_without_bias_has_no_bias_parameter_and_computes_gamma_tanh():
    model = TinyGPT(GPTConfig(**RECIPE))
    dyts = [m for m in model.modules() if isinstance(m, DyT)]
    assert len(dyts) == 2 * 3 + 1
    assert all(m.bias is None for m in dyts)
    assert not any(name.endswith("bias") for m in dyts for name, _ in m.named_parameters())
    norm = make_norm("dyt", 8, dyt_alpha=0.7, dyt_bias=False)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 8))
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(norm(x), norm.weight * torch.tanh(0.7 * x))


def test_defaults_change_nothing():
    model = TinyGPT(GPTConfig(norm="dyt", n_layer=2, dyt_alpha=0.5))
    assert model.embed_gain is None
    assert "embed_gain" not in model.state_dict()
    for block in model.blocks:
        assert block.norm_attn.alpha.item() == block.norm_mlp.alpha.item() == 0.5
        assert block.norm_attn.bias is not None
    torch.manual_seed(0)
    a = TinyGPT(GPTConfig(norm="dyt", n_layer=2))
    torch.manual_seed(0)
    b = TinyGPT(GPTConfig(norm="dyt", n_layer=2, embed_scale_learned=False, dyt_alpha_attn=None,
                          dyt_bias=True))
    idx = torch.randint(0, 65, (2, 8), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a(idx)[0], b(idx)[0], rtol=0, atol=0)


def test_the_options_leave_other_norms_alone():
    model = TinyGPT(GPTConfig(**{**RECIPE, "norm": "rmsnorm"}))
    assert isinstance(model.blocks[0].norm_attn, nn.RMSNorm)
    assert model.embed_gain.item() == pytest.approx(8.0)


@pytest.mark.parametrize("field, value, error", [
    ("dyt_alpha_attn", "0.8", TypeError), ("dyt_alpha_attn", float("nan"), ValueError),
    ("embed_scale_learned", 1, TypeError), ("dyt_bias", "no", TypeError)])
def test_bad_values_are_refused_naming_the_field(field, value, error):
    with pytest.raises(error, match=f"GPTConfig.{field}"):
        GPTConfig(**{**RECIPE, field: value})


def test_ngpt_refuses_the_learned_embedding_scale():
    with pytest.raises(ValueError, match="embed_scale_learned"):
        GPTConfig(placement="ngpt", embed_scale_learned=True)


def test_norm_affine_false_drops_gamma_and_beta_of_every_layernorm():
    model = TinyGPT(GPTConfig(n_layer=2, placement="post", norm_affine=False))
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 4
    assert all(m.weight is None and m.bias is None for m in norms)
    kept = TinyGPT(GPTConfig(n_layer=2, placement="post"))
    n_affine = sum(p.numel() for m in kept.modules() if isinstance(m, nn.LayerNorm)
                   for p in m.parameters())
    assert sum(p.numel() for p in kept.parameters()) - sum(p.numel() for p in model.parameters()) \
        == n_affine == 4 * 2 * 64


def test_norm_affine_false_is_refused_for_dyt():
    with pytest.raises(ValueError, match="norm_affine"):
        GPTConfig(norm="dyt", norm_affine=False)
