"""The 2024-2026 features compute their papers' formulas, built by hand from each module's parts.

QK-norm, the reordered (OLMo 2) placement, Derf, hyper-connections and mHC, nGPT;
plus the training options that go with them (z-loss, attention-logit recording).
"""

import math

import pytest
import torch
import torch.nn.functional as F

from normcourse import data
from normcourse.blocks import Block, CausalSelfAttention, max_causal_logit
from normcourse.model import GPTConfig, TinyGPT
from normcourse.train import TrainConfig, train

torch.set_num_threads(1)

D, H = 32, 4


def perturb(module, names=("norm",), scale=0.3, seed=1):
    """Move parameters whose name contains one of ``names`` off their start values (1, 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if any(n in name for n in names):
                p.add_(scale * torch.randn(p.shape, generator=g))


def causal_softmax_attention(q, k, v, scale):
    """softmax(scale * q k^T + causal mask) v, written out."""
    T = q.shape[-2]
    scores = scale * q @ k.transpose(-2, -1)
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(-1) @ v


def heads(t, n_head):
    B, T, C = t.shape
    return t.view(B, T, n_head, C // n_head).transpose(1, 2)


def small_config(**kw):
    d = data.cached("python_docs")
    base = dict(vocab_size=d.vocab_size, block_size=16, n_layer=2, n_head=2, d_model=32)
    return GPTConfig(**{**base, **kw})


# ------------------------------------------------------------------------ QK-norm

@pytest.mark.parametrize("kind", ["layernorm", "rmsnorm"])
def test_qk_norm_normalizes_each_head_of_q_and_k_before_the_scores(kind):
    torch.manual_seed(0)
    a = CausalSelfAttention(D, H, qk_norm=kind)
    perturb(a)
    x = torch.randn(2, 7, D)
    q, k, v = a.c_attn(x).split(D, dim=2)
    q, k, v = heads(q, H), heads(k, H), heads(v, H)
    q, k = a.q_norm(q), a.k_norm(k)            # over the hs = 8 features of each head
    assert a.q_norm is not a.k_norm
    y = causal_softmax_attention(q, k, v, 1 / math.sqrt(D // H))
    want = a.c_proj(y.transpose(1, 2).reshape(2, 7, D))
    torch.testing.assert_close(a(x), want, rtol=1e-5, atol=1e-6)
    # normalizing over the whole C (not per head) would give a different answer
    assert next(iter(a.q_norm.parameters())).shape == (D // H,)


def test_qk_norm_bounds_the_attention_logit_that_plain_attention_lets_grow():
    torch.manual_seed(0)
    plain, normed = CausalSelfAttention(D, H), CausalSelfAttention(D, H, qk_norm="layernorm")
    normed.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():   # large q, k weights: the logit growth of Wortsman et al. 2023
        for a in (plain, normed):
            a.c_attn.weight.mul_(30)
    x = torch.randn(2, 9, D)
    for a in (plain, normed):
        a.record_max_logit = True
        a(x)
    hs = D // H
    # unit-gain LayerNorm makes |q| = |k| = sqrt(hs), so q.k / sqrt(hs) <= sqrt(hs)
    assert normed.max_logit <= math.sqrt(hs) + 1e-4
    assert plain.max_logit > 10 * math.sqrt(hs)


def test_max_causal_logit_is_the_largest_allowed_score():
    torch.manual_seed(0)
    q, k = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4)
    k[..., 4, :] = 100 * q[..., 0, :]   # a huge score for a future key: must be ignored
    scores = (q @ k.transpose(-2, -1)) * 0.5
    allowed = [scores[b, h, i, j] for b in range(2) for h in range(3) for i in range(5) for j in range(i + 1)]
    assert max_causal_logit(q, k, 0.5).item() == pytest.approx(max(allowed).item())


def test_block_and_config_pass_qk_norm_through():
    b = Block(D, H, placement="pre", norm="rmsnorm", qk_norm=True)
    assert isinstance(b.attn.q_norm, torch.nn.RMSNorm)
    assert Block(D, H).attn.q_norm is None
    m = TinyGPT(small_config(qk_norm=True))
    assert all(isinstance(blk.attn.k_norm, torch.nn.LayerNorm) for blk in m.blocks)


@pytest.mark.parametrize("norm", ["dyt", "identity"])
def test_qk_norm_needs_a_real_norm(norm):
    with pytest.raises(ValueError, match="qk_norm=True.*layernorm, rmsnorm"):
        small_config(qk_norm=True, norm=norm)
    with pytest.raises(TypeError, match="qk_norm must be True or False"):
        small_config(qk_norm=1)


def test_new_fields_round_trip_through_to_dict():
    c = small_config(qk_norm=True)
    assert GPTConfig(**c.to_dict()) == c and c.to_dict()["qk_norm"] is True
    tc = TrainConfig(z_loss=1e-4, record_attn_logits=True)
    assert TrainConfig(**tc.to_dict()) == tc


# ------------------------------------------------------------ training options

def test_defaults_leave_training_bit_identical_and_record_no_logits():
    tc = TrainConfig(steps=6, batch_size=4, warmup_steps=2, threads=1)
    a = train(small_config(), tc, progress=False)
    b = train(small_config(), TrainConfig(**{**tc.to_dict(), "z_loss": 0.0}), progress=False)
    assert a.history == b.history and "layer_max_attn_logit" not in a.history


def test_recorded_attention_logits_are_the_layers_maxima():
    tc = TrainConfig(steps=5, batch_size=4, warmup_steps=1, threads=1, record_attn_logits=True)
    r = train(small_config(), tc, progress=False, keep_model=True)
    rec = r.history["layer_max_attn_logit"]
    assert len(rec) == 5 and all(len(v) == 2 and all(math.isfinite(x) for x in v) for v in rec)
    m = r.model
    assert not any(b.attn.record_max_logit for b in m.blocks), "recording is switched off after"
    m.record_max_attention_logits()
    x = torch.randint(0, m.config.vocab_size, (2, 16))
    m(x)
    h = m.wte(x) + m.wpe(torch.arange(16))
    blk = m.blocks[0]
    q, k, _ = blk.attn.c_attn(blk.norm_attn(h)).split(32, dim=2)
    q, k = heads(q, 2), heads(k, 2)
    want = max_causal_logit(q, k, 1 / math.sqrt(16))
    assert m.max_attention_logits()[0] == pytest.approx(want.item(), rel=1e-5)


def test_z_loss_pulls_log_z_towards_zero():
    def mean_log_z_squared(z_loss):
        tc = TrainConfig(steps=25, batch_size=8, lr=3e-3, warmup_steps=2, threads=1, z_loss=z_loss)
        m = train(small_config(), tc, progress=False, keep_model=True).model
        x = torch.randint(0, m.config.vocab_size, (4, 16), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            return m(x)[0].logsumexp(-1).pow(2).mean().item()
    assert mean_log_z_squared(1.0) < 0.5 * mean_log_z_squared(0.0)


def test_z_loss_must_not_be_negative():
    with pytest.raises(ValueError, match="TrainConfig.z_loss"):
        TrainConfig(z_loss=-1e-4)


# --------------------------------------------------------- reordered (OLMo 2)

@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_reordered_normalizes_each_sublayer_output_before_the_add(norm):
    torch.manual_seed(0)
    b = Block(D, H, placement="reordered", norm=norm)
    perturb(b)
    x = torch.randn(3, 8, D) * 2
    h = x + b.norm_attn_out(b.attn(x))      # Team OLMo 2024: h = x + Norm(A(x))
    want = h + b.norm_mlp_out(b.mlp(h))     #                 y = h + Norm(M(h))
    torch.testing.assert_close(b(x), want, rtol=0, atol=0)
    assert b.norm_attn_out is not b.norm_mlp_out
    assert not hasattr(b, "norm_attn") and not hasattr(b, "norm_attn_in"), "the input is not normalized"


def test_reordered_model_gets_a_final_norm_and_unknown_names_list_the_new_ones():
    m = TinyGPT(small_config(placement="reordered"))
    assert m.norm_final is not None
    assert TinyGPT(small_config(placement=["pre", "reordered"])).blocks[1].placement == "reordered"
    with pytest.raises(ValueError, match="reordered, ngpt"):
        small_config(placement="olmo2")
    with pytest.raises(ValueError, match="reordered, ngpt"):
        Block(D, H, placement="olmo2")


# ---------------------------------------------------------------------- Derf

def test_derf_is_the_papers_erf_with_learnable_scale_and_shift():
    from normcourse.blocks import Derf, make_norm
    d = Derf(6)
    # start values of the authors' code: alpha 0.5, shift 0, weight 1, bias 0
    assert d.alpha.item() == 0.5 and d.shift.item() == 0.0
    assert torch.equal(d.weight, torch.ones(6)) and torch.equal(d.bias, torch.zeros(6))
    perturb(d, names=("alpha", "shift", "weight", "bias"), scale=0.5)
    x = torch.randn(4, 6, dtype=torch.float64) * 3
    d = d.double()
    a, s = d.alpha.item(), d.shift.item()
    want = torch.tensor([[d.weight[j].item() * math.erf(a * x[i, j].item() + s) + d.bias[j].item()
                          for j in range(6)] for i in range(4)], dtype=torch.float64)
    torch.testing.assert_close(d(x), want, rtol=1e-12, atol=1e-12)
    assert d.alpha.shape == d.shift.shape == (1,), "alpha and s are scalars, not per channel"
    assert make_norm("derf", 6, derf_alpha=1.0).alpha.item() == 1.0


def test_derf_is_bounded_where_layernorm_is_not():
    from normcourse.blocks import Derf
    x = torch.tensor([[1e4, -1e4, 0.0, 3.0]])
    assert Derf(4)(x).abs().max() <= 1.0


def test_a_derf_model_uses_derf_in_every_norm_slot():
    from normcourse.blocks import Derf
    m = TinyGPT(small_config(norm="derf", derf_alpha=0.8))
    norms = [mod for mod in m.modules() if isinstance(mod, Derf)]
    assert len(norms) == 2 * 2 + 1          # two per pre-LN block, plus the final norm
    assert all(n.alpha.item() == pytest.approx(0.8) for n in norms)
    with pytest.raises(ValueError, match="derf"):
        small_config(norm="erf")


# ------------------------------------------------- hyper-connections and mHC

from normcourse.residual_streams import (HyperConnection, ManifoldHyperConnection, amax_gain,  # noqa: E402
                                         composite_gains, gains, is_doubly_stochastic, sinkhorn_knopp)

N = 4


def branch():
    torch.manual_seed(3)
    lin = torch.nn.Linear(D, D)
    return lambda h: torch.tanh(lin(h))


def perturb_all(module, scale=0.3, seed=2):
    perturb(module, names=("",), scale=scale, seed=seed)


def test_sinkhorn_matches_the_closed_form_for_two_by_two():
    # a positive 2 x 2 matrix scales to [[p, 1-p], [1-p, p]] with p / (1-p) = sqrt(ad / bc)
    a, b, c, d = 2.0, 0.5, 1.0, 3.0
    m = sinkhorn_knopp(torch.tensor([[a, b], [c, d]], dtype=torch.float64).log(), iters=200)
    p = math.sqrt(a * d) / (math.sqrt(a * d) + math.sqrt(b * c))
    torch.testing.assert_close(m, torch.tensor([[p, 1 - p], [1 - p, p]], dtype=torch.float64))


def test_sinkhorn_is_doubly_stochastic_not_only_row_stochastic():
    torch.manual_seed(0)
    logits = torch.randn(5, 4, 4)
    m = sinkhorn_knopp(logits)
    assert is_doubly_stochastic(m, atol=1e-5)
    # 20 rounds are not always enough: sharper logits leave the rows off (mHC-lite's point)
    sharp = sinkhorn_knopp(2 * logits)
    assert (sharp.sum(-1) - 1).abs().max() > 1e-4 and is_doubly_stochastic(sinkhorn_knopp(2 * logits, 100))
    row_only = logits.softmax(-1)          # rows sum to 1, columns do not: the missing column step
    assert not is_doubly_stochastic(row_only, atol=1e-4)
    torch.testing.assert_close(m.sum(-2), torch.ones(5, 4))   # the last step is the column step


def test_hyper_connection_is_zhu_et_als_formula():
    torch.manual_seed(0)
    hc = HyperConnection(D, N, index=5)
    perturb_all(hc)
    X, f = torch.randn(2, 3, N, D), branch()
    Y = hc(X, f)
    Hn = hc.norm(X)
    for b in range(2):
        for t in range(3):
            H = Hn[b, t]
            A_m = [hc.read0[i] + hc.s_alpha * torch.tanh(H[i] @ hc.w_read[:, 0]) for i in range(N)]
            A_r = [[hc.mix0[i, j] + hc.s_alpha * torch.tanh(H[i] @ hc.w_mix[:, j]) for j in range(N)]
                   for i in range(N)]
            B = [hc.write0[j] + hc.s_beta * torch.tanh(H[j] @ hc.w_write[:, 0]) for j in range(N)]
            h0 = sum(A_m[i] * X[b, t, i] for i in range(N))              # h0 = A_m^T H
            out = f(h0)
            for j in range(N):                                           # H' = A_r^T H + B^T T(h0)
                want = sum(A_r[i][j] * X[b, t, i] for i in range(N)) + B[j] * out
                torch.testing.assert_close(Y[b, t, j], want.squeeze(), rtol=1e-5, atol=1e-6)
            mixing = torch.stack([torch.stack([A_r[i][j].squeeze() for i in range(N)]) for j in range(N)])
            torch.testing.assert_close(hc.residual_mixing()[b, t], mixing.detach())


def test_hyper_connection_starts_as_the_papers_pre_norm_equivalent():
    hc = HyperConnection(D, N, index=6)
    assert torch.equal(hc.read0, torch.tensor([0.0, 0, 1, 0])), "sub-layer 6 reads stream 6 mod 4"
    assert torch.equal(hc.mix0, torch.eye(N)) and torch.equal(hc.write0, torch.ones(N))
    assert hc.s_alpha.item() == pytest.approx(0.01) and hc.s_beta.item() == pytest.approx(0.01)
    static = HyperConnection(D, N, dynamic=False)
    static(torch.randn(2, 3, N, D), branch())
    assert static.residual_mixing().shape == (N, N), "static mixing is one matrix for every position"


def test_mhc_is_xie_et_als_formula_with_sinkhorn():
    torch.manual_seed(0)
    mh = ManifoldHyperConnection(D, N, index=1)
    perturb_all(mh)
    X, f = torch.randn(2, 3, N, D), branch()
    Y = mh(X, f)
    for b in range(2):
        for t in range(3):
            x = mh.norm(X[b, t].reshape(N * D))                                   # RMSNorm(vec(x_l))
            pre = torch.sigmoid(mh.alpha_pre * (x @ mh.phi_pre) + mh.b_pre)        # sigma(H~pre)
            post = 2 * torch.sigmoid(mh.alpha_post * (x @ mh.phi_post) + mh.b_post)  # 2 sigma(H~post)
            M = (mh.alpha_res * (x @ mh.phi_res).view(N, N) + mh.b_res).exp()     # M(0) = exp(H~res)
            for _ in range(20):                                                   # t_max = 20
                M = torch.stack([M[i] / M[i].sum() for i in range(N)])            # rows
                M = torch.stack([M[:, j] / M[:, j].sum() for j in range(N)], dim=1)  # columns
            out = f(sum(pre[i] * X[b, t, i] for i in range(N)))                   # F(H_pre x_l)
            for j in range(N):                                                    # H_res x_l + H_post^T F
                want = sum(M[j, i] * X[b, t, i] for i in range(N)) + post[j] * out
                torch.testing.assert_close(Y[b, t, j], want, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(mh.residual_mixing()[b, t], M.detach(), rtol=1e-5, atol=1e-6)
    M = mh.residual_mixing()
    torch.testing.assert_close(M.sum(-2), torch.ones(2, 3, N))      # columns exactly, rows nearly
    assert (M >= 0).all() and (M.sum(-1) - 1).abs().max() < 1e-2


def test_mhc_start_values():
    mh = ManifoldHyperConnection(D, N, index=2)
    assert mh.alpha_pre.item() == mh.alpha_post.item() == mh.alpha_res.item() == pytest.approx(0.01)
    assert int(mh.b_pre.argmax()) == 2 and float(mh.phi_res.detach().abs().sum()) == 0.0
    with pytest.raises(RuntimeError, match="no forward"):
        mh.residual_mixing()


def test_gains_by_hand():
    A = torch.tensor([[0.5, -1.0], [2.0, 0.25]])
    Bm = torch.tensor([[1.0, 0.5], [0.0, -3.0]])
    C = Bm @ A                                              # depth order: A first, then B
    rows = max(sum(abs(C[i, j].item()) for j in range(2)) for i in range(2))
    cols = max(sum(abs(C[i, j].item()) for i in range(2)) for j in range(2))
    assert composite_gains([A, Bm])[1] == pytest.approx((rows, cols))
    assert gains(A) == pytest.approx((2.25, 2.5))
    assert amax_gain([torch.eye(1)] * 12) == {"forward": 1.0, "backward": 1.0}
    grow = [1.1 * torch.eye(3)] * 10                        # an amplifying stack compounds
    assert amax_gain(grow)["forward"] == pytest.approx(1.1 ** 10)
    with pytest.raises(ValueError, match="empty"):
        composite_gains([])


def test_doubly_stochastic_stacks_never_amplify():
    torch.manual_seed(0)
    mixings = [sinkhorn_knopp(torch.randn(8, N, N)) for _ in range(30)]
    for forward, backward in composite_gains(mixings):
        assert forward == pytest.approx(1.0, abs=1e-4) and backward == pytest.approx(1.0, abs=1e-4)


def test_hyper_model_starts_equal_to_the_plain_pre_ln_model():
    torch.manual_seed(0)
    # unit-scale embeddings: LN(n x) = LN(x) up to eps, which matters for GPT-2's tiny embeddings
    plain = TinyGPT(small_config(embed_scale=50.0))
    hyper = TinyGPT(small_config(residual="hyper", embed_scale=50.0))
    hyper.load_state_dict(plain.state_dict(), strict=False)   # same attention, MLP, norms, embeddings
    x = torch.randint(0, plain.config.vocab_size, (2, 16))
    # n identical streams, each updated as a Pre-LN stream; their sum n*x is normalized by the final LN
    torch.testing.assert_close(hyper(x)[0], plain(x)[0], rtol=1e-4, atol=1e-4)
    assert len(hyper.residual_mixings()) == 4 and hyper.residual_mixings()[0].shape == (2, 16, N, N)
    assert amax_gain(plain.residual_mixings()) == {"forward": 1.0, "backward": 1.0}


@pytest.mark.parametrize("residual", ["hyper", "mhc"])
def test_stream_models_train_and_report_their_gain(residual):
    tc = TrainConfig(steps=20, batch_size=8, lr=3e-3, warmup_steps=2, threads=1)
    r = train(small_config(residual=residual, n_streams=3), tc, progress=False, keep_model=True)
    assert not r.diverged and r.history["loss"][-1] < r.history["loss"][0] - 0.3
    m = r.model
    m(torch.randint(0, m.config.vocab_size, (2, 16)))
    g = amax_gain(m.residual_mixings())
    if residual == "mhc":
        assert g["backward"] == pytest.approx(1.0, abs=1e-4) and g["forward"] == pytest.approx(1.0, abs=1e-3)
    assert all(M.shape == (2, 16, 3, 3) for M in m.residual_mixings())


def test_start_maps_are_not_weight_decayed():
    from normcourse.train import make_optimizer
    m = TinyGPT(small_config(residual="mhc"))
    opt = make_optimizer(m, TrainConfig())
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    assert id(m.blocks[0].streams_attn.b_res) not in decayed
    assert id(m.blocks[0].streams_attn.phi_res) in decayed
    hc = TinyGPT(small_config(residual="hyper"))
    assert id(hc.blocks[1].streams_mlp.mix0) not in {id(p) for p in make_optimizer(hc, TrainConfig())
                                                     .param_groups[0]["params"]}


def test_residual_names_and_combinations_are_checked():
    with pytest.raises(ValueError, match="plain, hyper, mhc"):
        small_config(residual="hc")
    with pytest.raises(ValueError, match="additive placement"):
        small_config(residual="mhc", placement="post")
    with pytest.raises(ValueError, match="n_streams"):
        small_config(residual="hyper", n_streams=0)
    c = small_config(residual="mhc", n_streams=2, placement="reordered")
    assert GPTConfig(**c.to_dict()) == c


# ---------------------------------------------------------------------- nGPT

from normcourse.blocks import NGPTBlock, unit  # noqa: E402


def ngpt_config(**kw):
    return small_config(placement="ngpt", **kw)


def test_ngpt_block_is_loshchilov_et_als_update_on_the_sphere():
    torch.manual_seed(0)
    b = NGPTBlock(D, H)
    perturb(b, names=("param",), scale=0.05)   # move every learned scale off its start
    x = unit(torch.randn(2, 6, D))
    C, hs = D, D // H
    norm = lambda v: v / v.norm(dim=-1, keepdim=True)               # noqa: E731
    # attention: q, k on the sphere per head, scaled by s_qk; scores times sqrt(hs)
    q, k, v = (heads(t, H) for t in b.attn.c_attn(x).split(C, dim=2))
    s_qk = (b.attn.s_qk.param * (1.0 / C ** -0.5)).view(1, H, 1, hs)
    q, k = s_qk * norm(q), s_qk * norm(k)
    h_A = b.attn.c_proj(causal_softmax_attention(q, k, v, math.sqrt(hs)).transpose(1, 2).reshape(2, 6, C))
    alpha_A = (b.alpha_attn.param * (0.05 / C ** -0.5)).abs()
    h = norm(x + alpha_A * (norm(h_A) - x))                           # h <- Norm(h + a_A (Norm(h_A) - h))
    # MLP: u, v = s_uv sqrt(C) W_uv h;  h_M = W_o (u SiLU(v))
    uv = b.mlp.s_uv.param * 1.0 * math.sqrt(C) * b.mlp.c_fc(h)
    u, gate = uv.chunk(2, dim=-1)
    h_M = b.mlp.c_proj(u * F.silu(gate))
    alpha_M = (b.alpha_mlp.param * (0.05 / C ** -0.5)).abs()
    want = norm(h + alpha_M * (norm(h_M) - h))
    torch.testing.assert_close(b(x), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(want.norm(dim=-1), torch.ones(2, 6))


def test_ngpt_scales_start_at_the_reference_codes_values():
    b = NGPTBlock(D, H)
    assert torch.allclose(b.alpha_attn(), torch.full((D,), 0.05)) and torch.allclose(b.alpha_mlp(), torch.full((D,), 0.05))
    assert torch.allclose(b.alpha_attn.param, torch.full((D,), D ** -0.5)), "stored at s_scale = 1/sqrt(C)"
    assert torch.allclose(b.attn.s_qk(), torch.ones(D)) and torch.allclose(b.mlp.s_uv(), torch.ones(8 * D))
    m = TinyGPT(ngpt_config())
    assert torch.allclose(m.s_z(), torch.ones(m.config.vocab_size))
    assert all(p.bias is None for p in m.modules() if isinstance(p, torch.nn.Linear)), "no biases"


def test_ngpt_model_has_no_norm_layers_an_untied_head_and_unit_hidden_states():
    torch.manual_seed(0)
    m = TinyGPT(ngpt_config())
    assert not any(isinstance(mod, (torch.nn.LayerNorm, torch.nn.RMSNorm)) for mod in m.modules())
    assert m.lm_head.weight is not m.wte.weight and m.norm_final is None
    x = torch.randint(0, m.config.vocab_size, (2, 16))
    h = unit(m.wte(x) + m.wpe(torch.arange(16)))
    for blk in m.blocks:
        h = blk(h)
        torch.testing.assert_close(h.norm(dim=-1), torch.ones(2, 16))
    torch.testing.assert_close(m(x)[0], m.s_z() * m.lm_head(h))


def weight_vectors_are_unit(m):
    vecs = [m.wte.weight, m.wpe.weight, m.lm_head.weight]
    vecs += [w for b in m.blocks for w in (b.attn.c_attn.weight, b.mlp.c_fc.weight)]
    cols = [w.T for b in m.blocks for w in (b.attn.c_proj.weight, b.mlp.c_proj.weight)]
    return all(torch.allclose(v.norm(dim=1), torch.ones(v.shape[0]), atol=1e-5) for v in vecs + cols)


def test_train_puts_the_ngpt_weights_back_on_the_sphere_after_every_step():
    m = TinyGPT(ngpt_config())
    assert weight_vectors_are_unit(m), "normalized at init"
    tc = TrainConfig(steps=3, batch_size=4, lr=1e-2, warmup_steps=0, threads=1, record_attn_logits=True)
    r = train(ngpt_config(), tc, progress=False, keep_model=True)
    assert weight_vectors_are_unit(r.model) and not r.diverged
    # with s_qk near 1, a cosine times sqrt(hs) bounds every logit
    assert max(max(v) for v in r.history["layer_max_attn_logit"]) <= math.sqrt(16) * 1.1
    # without the re-normalization the weights leave the sphere
    m2 = TinyGPT(ngpt_config())
    opt = torch.optim.AdamW(m2.parameters(), lr=1e-2)
    x = torch.randint(0, m2.config.vocab_size, (4, 16))
    m2(x, x)[1].backward()
    opt.step()
    assert not weight_vectors_are_unit(m2)
    m2.normalize_weights()
    assert weight_vectors_are_unit(m2)


def test_ngpt_learns():
    tc = TrainConfig(steps=40, batch_size=8, lr=1e-2, warmup_steps=0, threads=1)
    r = train(ngpt_config(), tc, progress=False)
    assert not r.diverged and r.history["loss"][-1] < r.history["loss"][0] - 0.3


def test_normalize_weights_is_only_for_ngpt():
    with pytest.raises(ValueError, match="nGPT"):
        TinyGPT(small_config()).normalize_weights()


@pytest.mark.parametrize("kw, reason", [
    (dict(residual="mhc"), "own residual update"),
    (dict(residual="hyper"), "own residual update"),
    (dict(qk_norm=True), "normalizes q and k itself"),
    (dict(norm="rmsnorm"), "no norm layers"),
    (dict(norm="derf"), "no norm layers"),
    (dict(embed_norm=True), "sphere itself"),
    (dict(final_norm=True), "already unit length"),
    (dict(embed_scale=50.0), "no effect"),
])
def test_ngpt_refuses_what_it_replaces(kw, reason):
    with pytest.raises(ValueError, match=reason):
        ngpt_config(**kw)


def test_ngpt_is_every_layer_or_none():
    with pytest.raises(ValueError, match="every layer"):
        small_config(placement=["ngpt", "pre"])
    with pytest.raises(ValueError, match="NGPTBlock"):
        Block(D, H, placement="ngpt")
    assert TinyGPT(small_config(placement=["ngpt", "ngpt"])).ngpt
