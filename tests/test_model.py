"""TinyGPT: shapes, loss, init, options and errors."""

import dataclasses
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


# ------------------------------------------------------------ bad input fails early and clearly

@pytest.mark.parametrize("field, value, error, message", [
    ("n_layer", 0, ValueError, "n_layer must be an integer >= 1"),
    ("n_layer", -1, ValueError, "n_layer must be an integer >= 1"),
    ("n_head", 0, ValueError, "n_head must be an integer >= 1"),
    ("n_head", -2, ValueError, "n_head must be an integer >= 1"),
    ("d_model", 0, ValueError, "d_model must be an integer >= 1"),
    ("d_model", 8.0, TypeError, "d_model must be an integer"),
    ("block_size", 0, ValueError, "block_size must be an integer >= 1"),
    ("vocab_size", 0, ValueError, "vocab_size must be an integer >= 1"),
    ("mlp_ratio", 0, ValueError, "mlp_ratio must be an integer >= 1"),
    ("mlp_ratio", 1.5, TypeError, "mlp_ratio must be an integer"),
    ("norm_eps", 0.0, ValueError, "norm_eps must be a finite number > 0"),
    ("norm_eps", -1.0, ValueError, "norm_eps must be a finite number > 0"),
    ("norm_eps", float("nan"), ValueError, "norm_eps must be a finite number > 0"),
    ("init_std", -1.0, ValueError, "init_std must be a finite number > 0"),
    ("init_std", 0.0, ValueError, "init_std must be a finite number > 0"),
    ("dyt_alpha", float("nan"), ValueError, "dyt_alpha must be a finite number"),
    ("embed_scale", 0.0, ValueError, "embed_scale must be a finite number > 0"),
    ("final_norm", "no", TypeError, "final_norm must be True or False or None"),
    ("placement", None, TypeError, "placement must be one name"),
])
def test_config_rejects_bad_fields_naming_them(field, value, error, message):
    with pytest.raises(error, match=message):
        cfg(**{field: value})


def test_negative_or_nan_eps_fails_at_config_time_not_as_nan_logits():
    # before: accepted, the forward gave NaN logits and train() recorded a "divergence"
    for eps in (-1.0, 0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="GPTConfig.norm_eps"):
            GPTConfig(norm_eps=eps)


def test_unknown_norm_is_an_error_even_without_norms():
    with pytest.raises(ValueError, match="unknown norm 'batchnorm'.*rmsnorm"):
        cfg(norm="batchnorm", placement="none")


def test_placement_must_be_an_ordered_reusable_sequence():
    # a set has no order, a generator is used up by the first call: both rejected, naming the choices
    with pytest.raises(TypeError, match="placement must be one name .* list/tuple.*post, pre"):
        cfg(n_layer=2, placement={"pre", "post"})
    with pytest.raises(TypeError, match="placement must be one name"):
        cfg(n_layer=2, placement=(p for p in ["pre", "post"]))
    c = cfg(placement=["post", "pre", "peri"])   # a list is kept in its order, as a tuple
    assert c.placement == ("post", "pre", "peri")
    assert c.placements() == c.placements() == ["post", "pre", "peri"]
    assert c.to_dict()["placement"] == ["post", "pre", "peri"]
    assert [b.placement for b in TinyGPT(c).blocks] == ["post", "pre", "peri"]


def test_valid_configs_are_unchanged_by_validation():
    assert GPTConfig().to_dict() == {f.name: f.default for f in dataclasses.fields(GPTConfig)}
    torch.manual_seed(0)
    a = TinyGPT(cfg(placement=("post", "pre", "peri")))
    torch.manual_seed(0)
    b = TinyGPT(cfg(placement=["post", "pre", "peri"]))
    idx = torch.randint(0, 20, (2, 16))
    torch.testing.assert_close(a(idx, idx), b(idx, idx), rtol=0, atol=0)


def test_changed_config_is_checked_again_when_a_model_is_built():
    c = cfg()
    c.n_layer = 0
    with pytest.raises(ValueError, match="n_layer must be an integer >= 1"):
        TinyGPT(c)
    with pytest.raises(TypeError, match="config must be a GPTConfig"):
        TinyGPT({"vocab_size": 20})


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return TinyGPT(cfg())


@pytest.mark.parametrize("make, error, message", [
    (lambda idx: idx[0], ValueError, r"idx must have shape \(batch, time\)"),
    (lambda idx: idx[None], ValueError, r"idx must have shape \(batch, time\)"),
    (lambda idx: idx.float(), ValueError, "idx must hold integer token ids"),
    (lambda idx: idx.bool(), ValueError, "idx must hold integer token ids"),
    (lambda idx: idx.to(torch.uint8), ValueError, "idx must hold integer token ids"),
    (lambda idx: torch.full_like(idx, 20), ValueError, r"idx holds token ids from 20 to 20.*vocab_size=20"),
    (lambda idx: torch.full_like(idx, -1), ValueError, r"must lie in \[0, vocab_size=20\)"),
    (lambda idx: idx.tolist(), TypeError, "idx must be a torch.Tensor"),
    (lambda idx: idx.to("meta"), ValueError, "idx is on meta but the model is on cpu"),
])
def test_forward_rejects_bad_idx(small_model, make, error, message):
    idx = torch.randint(0, 20, (2, 16), generator=torch.Generator().manual_seed(0))
    with pytest.raises(error, match=message):
        small_model(make(idx))


@pytest.mark.parametrize("make, error, message", [
    (lambda idx: idx.t().contiguous(), ValueError, r"targets must have the shape of idx \(2, 8\), got \(8, 2\)"),
    (lambda idx: idx.t(), ValueError, r"targets must have the shape of idx"),
    (lambda idx: idx.reshape(-1), ValueError, r"targets must have shape \(batch, time\)"),
    (lambda idx: idx[:, :-1], ValueError, r"targets must have the shape of idx"),
    (lambda idx: idx.float(), ValueError, "targets must hold integer token ids"),
    (lambda idx: torch.full_like(idx, 20), ValueError, "targets holds token ids from 20"),
])
def test_forward_rejects_bad_targets(small_model, make, error, message):
    # a (T, B) target used to be accepted through .view(-1): a loss against the wrong tokens
    idx = torch.randint(0, 20, (2, 8), generator=torch.Generator().manual_seed(0))
    with pytest.raises(error, match=message):
        small_model(idx, make(idx))


def test_forward_accepts_int32_ids_and_empty_batches(small_model):
    idx = torch.randint(0, 20, (2, 8), generator=torch.Generator().manual_seed(0))
    logits, loss = small_model(idx, idx)
    logits32, loss32 = small_model(idx.int(), idx.int())
    torch.testing.assert_close(loss32, loss, rtol=0, atol=0)
    assert small_model(idx[:0])[0].shape == (0, 8, 20)


@pytest.mark.parametrize("extra", [{}, {"embed_scale": 50.0}, {"embed_norm": True, "norm": "rmsnorm"}])
def test_residual_streams_are_the_forward_step_by_step(extra):
    """embed, then each block: bit for bit what the measures computed by hand before."""
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=11, n_layer=3, d_model=16, n_head=2, block_size=8, **extra))
    idx = torch.randint(0, 11, (2, 8))
    with torch.no_grad():
        hs = model.residual_streams(idx)
        h = (model.wte(idx) + model.wpe(torch.arange(8))) * model.config.embed_scale
        if model.norm_embed is not None:
            h = model.norm_embed(h)
        assert torch.equal(hs[0], h)
        for block, out in zip(model.blocks, hs[1:]):
            h = block(h)
            assert torch.equal(out, h)
        assert len(hs) == 4
        assert torch.equal(model.head(hs[-1])[0], model(idx)[0])
