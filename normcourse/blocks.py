"""Transformer blocks: every place the norm can go.

A block is attention (A) then an MLP (M), each on a residual path.  What
changes between the schemes of the literature is only *where* the norm N sits
and how the residual is weighted.  With x the block input and each N its own
module (its own parameters):

=========  ==============================================  =====================
placement  computes                                        source
=========  ==============================================  =====================
post       h = N(x + A(x));          y = N(h + M(h))       Vaswani et al. 2017
pre        h = x + A(N(x));          y = h + M(N(h))       Xiong et al. 2020
peri       h = x + N(A(N(x)));       y = h + N(M(N(h)))    Kim et al. 2025
b2t        h = N(x + A(x));          y = N(h + M(h) + x)   Takase et al. 2022
deepnorm   h = N(a*x + A(x));        y = N(a*h + M(h))     Wang et al. 2022
none       h = x + A(x);             y = h + M(h)
reordered  h = x + N(A(x));          y = h + N(M(h))       Team OLMo 2024
=========  ==============================================  =====================

N is one of ``NORMS``: LayerNorm, RMSNorm, the point-wise DyT, gamma*tanh(alpha*x) + beta
(Zhu et al. 2025), and Derf, gamma*erf(alpha*x + s) + beta (Chen et al. 2025), or identity.

Pre, peri, reordered and none are *additive*: y = h + f_M(h) with h = x + f_A(x),
and only the branch f differs (``Block.f_attn``, ``Block.f_mlp``).  Reordered
is OLMo 2's norm (Team OLMo 2024, arXiv 2501.00656): each sub-layer's output is
normalized before the add, its input is not.  Gemma 2/3's "sandwich" norm is
peri: a norm before and one after each sub-layer.

DeepNorm up-weights the *skip* (a*x), not the branch: LN(a*x + F(x)), with
a = (2L)^(1/4) for a decoder-only model of L layers, and initialises the value
and output projections and both MLP weights with Xavier-normal gain
b = (8L)^(-1/4) (q and k with gain 1), as in the paper's Figure 2.
Pre, peri and reordered need a final norm before the output head; the model adds it.

``residual`` replaces the add of an additive placement by n residual streams X
(B, T, n, C) with a learned read r, mixing M and write w around each branch f
(``normcourse.residual_streams`` has the modules and the gain metric):

========  ================================================================  ===============
residual  each sub-layer, f = f_A or f_M:  X' = M X + w^T f(r X)            source
========  ================================================================  ===============
plain     n = 1, r = M = w = 1: the table above                             He et al. 2016
hyper     r = A_m^T, M = A_r^T, w = B; A = A0 + s tanh(LN(X) W)             Zhu et al. 2024
mhc       x = RMSNorm(vec X); r = sig(a_pre x P_pre + b_pre),               Xie et al. 2025
          w = 2 sig(a_post x P_post + b_post),
          M = SinkhornKnopp(a_res mat(x P_res) + b_res)
========  ================================================================  ===============

The model copies the embedding into the n streams and sums them before the head.

nGPT (Loshchilov et al. 2024, arXiv 2410.01131) has no norm layers: with
Norm(v) = ``v / |v|``, every hidden state h and every weight vector along d_model
lies on the unit sphere, and each sub-layer moves h towards its output:

=========  ========================================================  ===========
placement  computes (alpha_A, alpha_M learned per dimension)         source
=========  ========================================================  ===========
ngpt       h = Norm(x + alpha_A (Norm(A(x)) - x));                   Loshchilov
           y = Norm(h + alpha_M (Norm(M(h)) - h))                    et al. 2024
           A: q, k <- s_qk Norm(q), s_qk Norm(k) per head;
           scores = sqrt(hs) q k^T
           M: u, v = s_uv sqrt(C) W_uv h;  M(h) = W_o (u SiLU(v))
=========  ========================================================  ===========

Each learned scale s (alpha_A, alpha_M, s_qk, s_uv, and the logits' s_z) is
stored as a parameter starting at s_scale and used as param * s_init / s_scale,
the paper's way to give it its own effective learning rate; the values are the
reference code's (NVIDIA/ngpt): alpha s_init 0.05, s_scale 1/sqrt(C); s_qk 1,
1/sqrt(C); s_uv 1, 1 (times sqrt(C) in use); s_z 1, 1/sqrt(C).  The code takes
the absolute value of alpha.  After every optimizer step ``train`` calls
``TinyGPT.normalize_weights()``, which puts each weight vector along d_model
back on the sphere.  The paper trains nGPT without weight decay and without
learning-rate warmup; ``TrainConfig`` leaves both to the caller.  Where the
paper uses rotary position embeddings, our nGPT keeps TinyGPT's learned
position table and puts the summed input embedding on the sphere.

Inside the attention, with q, k the (B, nh, T, hs) queries and keys:

==========  =================================================  ======================
option      computes                                           source
==========  =================================================  ======================
(default)   scores = q k^T / sqrt(hs)
qk_norm     scores = N_q(q) N_k(k)^T / sqrt(hs), N over hs,    Henry et al. 2020;
            one N_q and one N_k shared by the heads            Dehghani et al. 2023
==========  =================================================  ======================
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from normcourse.residual_streams import RESIDUALS, make_streams

PLACEMENTS = ("post", "pre", "peri", "b2t", "deepnorm", "none")   # the seed articles' placements
NEW_PLACEMENTS = ("reordered", "ngpt")        # 2024-2025: OLMo 2's, and nGPT's (its own block)
ALL_PLACEMENTS = PLACEMENTS + NEW_PLACEMENTS
ADDITIVE = ("pre", "peri", "reordered", "none")   # y = h + f_M(h), h = x + f_A(x)
NORMS = ("layernorm", "rmsnorm", "dyt", "identity", "derf")


# --------------------------------------------------------------------------- norms

class DyT(nn.Module):
    """Dynamic Tanh (Zhu et al. 2025): gamma * tanh(alpha * x) + beta.

    alpha is one learnable scalar (initial value ``alpha_init``, 0.5 in the
    paper's default); gamma and beta are per-channel like LayerNorm's affine.
    """

    def __init__(self, dim: int, alpha_init: float = 0.5, bias: bool = True):
        super().__init__()
        self.alpha = nn.Parameter(torch.full((1,), float(alpha_init)))
        self.weight = nn.Parameter(torch.ones(dim))
        # bias=False: gamma * tanh(alpha x), as in the DyT repository's LLaMA code
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x):
        y = self.weight * torch.tanh(self.alpha * x)
        return y if self.bias is None else y + self.bias


class Derf(nn.Module):
    """Dynamic erf (Chen et al. 2025, arXiv 2512.10938): gamma * erf(alpha * x + s) + beta.

    Like DyT with the error function in place of tanh and a learnable shift:
    alpha and s are one learnable scalar each, gamma and beta per channel.
    Start values as in the authors' code (zlab-princeton/Derf): alpha = 0.5
    unless ``alpha_init`` says otherwise (their GPT-2 runs set 1.0), s = 0,
    gamma = 1, beta = 0.
    """

    def __init__(self, dim: int, alpha_init: float = 0.5, shift_init: float = 0.0):
        super().__init__()
        self.alpha = nn.Parameter(torch.full((1,), float(alpha_init)))
        self.shift = nn.Parameter(torch.full((1,), float(shift_init)))
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        return self.weight * torch.erf(self.alpha * x + self.shift) + self.bias


class ScaledNorm(nn.Module):
    """A norm whose output is multiplied by a constant (LayerNorm scaling).

    Sun et al. 2025 ("The Curse of Depth") scale the output of the norm in
    layer l by 1/sqrt(l) so that the variance of a deep pre-norm stack stops
    growing with depth.
    """

    def __init__(self, norm: nn.Module, scale: float):
        super().__init__()
        self.norm = norm
        self.scale = scale

    def forward(self, x):
        return self.norm(x) * self.scale


def _kernel_norm(kind: str, dim: int, eps: float):
    """The fast Triton norm from ``normcourse.kernels``, or None if that package is missing.

    Without triton the package still imports (its ``backend="auto"`` then runs
    torch's op); any other error inside it is a bug and is raised, not hidden.
    """
    try:  # imported lazily: the kernels package is optional here
        from normcourse import kernels
    except ImportError:   # a trimmed install without normcourse.kernels: use torch's
        return None
    cls = {"layernorm": kernels.LayerNorm, "rmsnorm": kernels.RMSNorm}[kind]
    return cls(dim, eps=eps)


def make_norm(kind: str, dim: int, *, eps: float = 1e-5, dyt_alpha: float = 0.5,
              derf_alpha: float = 0.5, device: str | torch.device | None = None,
              dyt_bias: bool = True, affine: bool = True) -> nn.Module:
    """Build one norm module: ``layernorm``, ``rmsnorm``, ``dyt``, ``derf`` or ``identity``.

    Every affine weight starts at 1 and every bias at 0 (``dyt_bias=False``: a
    DyT without beta; ``affine=False``: a LayerNorm or RMSNorm without gamma and
    beta, torch's own module).  On CUDA the Triton
    kernels of ``normcourse.kernels`` are used when they import; on the CPU
    torch's own fused ``nn.LayerNorm`` / ``nn.RMSNorm`` are the fast choice.
    """
    if kind not in NORMS:
        raise ValueError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")
    if kind == "identity":
        return nn.Identity()
    if kind == "dyt":
        return DyT(dim, dyt_alpha, bias=dyt_bias)
    if kind == "derf":
        return Derf(dim, derf_alpha)
    if not affine:   # Singhal and Kim 2025's LayerNorm without its learnable parameters
        cls = nn.LayerNorm if kind == "layernorm" else nn.RMSNorm
        return cls(dim, eps=eps, elementwise_affine=False)
    if device is not None and torch.device(device).type == "cuda":
        fast = _kernel_norm(kind, dim, eps)
        if fast is not None:
            return fast
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps)
    return nn.RMSNorm(dim, eps=eps)


# ------------------------------------------------------------------ attention, MLP

QK_NORMS = ("layernorm", "rmsnorm")   # what QK-norm may use: a real norm over each head


@torch.no_grad()
def max_causal_logit(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """Largest attention logit scale * q.k over every head and allowed (causal) pair.

    q, k are (B, nh, T, hs).  One extra (T x T) matmul per head, so it is only
    computed when asked for (``CausalSelfAttention.record_max_logit``).
    """
    scores = (q @ k.transpose(-2, -1)).float() * scale
    T = q.shape[-2]
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    return scores.masked_fill(future, float("-inf")).amax()


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention on (B, T, C) tensors.

    ``qk_norm`` ("layernorm" or "rmsnorm", default None) puts QK-norm between
    the projections and the scores: one norm over the hs = C / nh features of
    each head, shared by the heads, on q and another on k (Henry et al. 2020;
    Dehghani et al. 2023; Wortsman et al. 2023).  With ``record_max_logit``
    set, each forward stores the largest attention logit in ``max_logit``.
    """

    def __init__(self, d_model: int, n_head: int, bias: bool = True, qk_norm: str | None = None,
                 eps: float = 1e-5):
        super().__init__()
        if d_model % n_head != 0:
            raise ValueError(f"d_model={d_model} must be divisible by n_head={n_head}")
        self.n_head = n_head
        self.c_attn = nn.Linear(d_model, 3 * d_model, bias=bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(d_model, d_model, bias=bias)
        if qk_norm is not None and qk_norm not in QK_NORMS:
            raise ValueError(f"unknown qk_norm {qk_norm!r}; choose one of {', '.join(QK_NORMS)} or None")
        self.q_norm = make_norm(qk_norm, d_model // n_head, eps=eps) if qk_norm else None
        self.k_norm = make_norm(qk_norm, d_model // n_head, eps=eps) if qk_norm else None
        self.record_max_logit = False
        self.max_logit = None

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, nh, T, hs): heads become a batch dimension
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if self.q_norm is not None:   # QK-norm: normalize each head's q and k before q.k
            q, k = self.q_norm(q), self.k_norm(k)
        if self.record_max_logit:
            self.max_logit = max_causal_logit(q, k, 1.0 / math.sqrt(C // self.n_head))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    """Position-wise feed-forward: Linear, GELU, Linear (4x wider inside)."""

    def __init__(self, d_model: int, ratio: int = 4, bias: bool = True):
        super().__init__()
        self.c_fc = nn.Linear(d_model, ratio * d_model, bias=bias)
        self.c_proj = nn.Linear(ratio * d_model, d_model, bias=bias)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))


# --------------------------------------------------------------------------- nGPT

def unit(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """nGPT's Norm: x / |x| along ``dim``, a point on the unit sphere."""
    return x / x.norm(dim=dim, keepdim=True)


class Scaling(nn.Module):
    """A learned per-dimension scale: a parameter starting at ``scale``, used as param * init / scale.

    nGPT's parameterization: Adam moves every parameter by about lr per step,
    so storing s at ``scale`` and multiplying by init / scale sets how fast s
    itself can change while it still starts at ``init``.
    """

    def __init__(self, dim: int, init: float, scale: float):
        super().__init__()
        self.param = nn.Parameter(torch.full((dim,), float(scale)))
        self.factor = init / scale

    def forward(self):
        return self.param * self.factor


class NGPTAttention(nn.Module):
    """Causal attention on the sphere: q, k unit per head, scaled by s_qk; scores times sqrt(hs)."""

    def __init__(self, d_model: int, n_head: int):
        super().__init__()
        if d_model % n_head != 0:
            raise ValueError(f"d_model={d_model} must be divisible by n_head={n_head}")
        self.n_head = n_head
        self.c_attn = nn.Linear(d_model, 3 * d_model, bias=False)
        self.c_proj = nn.Linear(d_model, d_model, bias=False)
        self.s_qk = Scaling(d_model, 1.0, d_model ** -0.5)
        self.record_max_logit = False
        self.max_logit = None

    def forward(self, x):
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, nh, hs).transpose(1, 2) for t in (q, k, v))
        s_qk = self.s_qk().view(1, nh, 1, hs)
        q, k = s_qk * unit(q), s_qk * unit(k)
        # unit q, k make q.k a cosine, in [-1, 1]: the softmax needs it scaled *up* by sqrt(hs)
        if self.record_max_logit:
            self.max_logit = max_causal_logit(q, k, math.sqrt(hs))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=math.sqrt(hs))
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class NGPTMLP(nn.Module):
    """SwiGLU with nGPT's scales: u, v = s_uv sqrt(C) W_uv h, output W_o (u * SiLU(v))."""

    def __init__(self, d_model: int, ratio: int = 4):
        super().__init__()
        self.c_fc = nn.Linear(d_model, 2 * ratio * d_model, bias=False)
        self.c_proj = nn.Linear(ratio * d_model, d_model, bias=False)
        self.s_uv = Scaling(2 * ratio * d_model, 1.0, 1.0)
        self.sqrt_d = math.sqrt(d_model)   # W_uv h of unit vectors is small: bring it to SiLU's range

    def forward(self, h):
        u, v = (self.s_uv() * self.sqrt_d * self.c_fc(h)).chunk(2, dim=-1)
        return self.c_proj(u * F.silu(v))


class NGPTBlock(nn.Module):
    """nGPT's layer: h = Norm(h + alpha (Norm(F(h)) - h)) for F = attention, then MLP."""

    placement = "ngpt"
    residual = "plain"

    def __init__(self, d_model: int, n_head: int, mlp_ratio: int = 4):
        super().__init__()
        self.attn = NGPTAttention(d_model, n_head)
        self.mlp = NGPTMLP(d_model, mlp_ratio)
        self.alpha_attn = Scaling(d_model, 0.05, d_model ** -0.5)   # eigen learning rates
        self.alpha_mlp = Scaling(d_model, 0.05, d_model ** -0.5)

    def forward(self, x):
        a = self.alpha_attn().abs()
        h = unit(x + a * (unit(self.attn(x)) - x))
        a = self.alpha_mlp().abs()
        return unit(h + a * (unit(self.mlp(h)) - h))

    @torch.no_grad()
    def normalize_weights(self):
        """Every weight vector along d_model back to unit length: rows of the input
        projections (d_model is their input), columns of the output projections."""
        for w in (self.attn.c_attn.weight, self.mlp.c_fc.weight):
            w.copy_(unit(w, dim=1))
        for w in (self.attn.c_proj.weight, self.mlp.c_proj.weight):
            w.copy_(unit(w, dim=0))


# --------------------------------------------------------------------------- block

# How many norm modules each placement holds, by name, in data-flow order.
NORM_SLOTS = {
    "post": ("norm_attn", "norm_mlp"),
    "pre": ("norm_attn", "norm_mlp"),
    "peri": ("norm_attn_in", "norm_attn_out", "norm_mlp_in", "norm_mlp_out"),
    "b2t": ("norm_attn", "norm_mlp"),
    "deepnorm": ("norm_attn", "norm_mlp"),
    "none": (),
    "reordered": ("norm_attn_out", "norm_mlp_out"),
}


def deepnorm_constants(n_layer: int) -> tuple[float, float]:
    """DeepNet's decoder-only (alpha, beta) = ((2L)^(1/4), (8L)^(-1/4))."""
    return (2.0 * n_layer) ** 0.25, (8.0 * n_layer) ** -0.25


def qk_norm_kind(norm: str, qk_norm: bool) -> str | None:
    """The norm QK-norm uses: the model's own, which must be a real norm (not point-wise)."""
    if not qk_norm:
        return None
    if norm not in QK_NORMS:
        raise ValueError(f"qk_norm=True normalizes q and k with the model's norm, which must be one of "
                         f"{', '.join(QK_NORMS)}; got norm={norm!r} (DyT, Derf and identity do not "
                         f"bound q.k)")
    return norm


def check_residual(residual: str, placement: str) -> None:
    """Raise unless ``residual`` is known and fits ``placement`` (streams replace an additive skip)."""
    if residual not in RESIDUALS:
        raise ValueError(f"unknown residual {residual!r}; choose one of {', '.join(RESIDUALS)}")
    if residual != "plain" and placement == "ngpt":
        raise ValueError(f"residual={residual!r} cannot be used with placement 'ngpt': nGPT has its own "
                         f"residual update, h <- Norm(h + alpha (Norm(F(h)) - h)), on the unit sphere")
    if residual != "plain" and placement not in ADDITIVE:
        raise ValueError(f"residual={residual!r} replaces the add x + f(x) of an additive placement "
                         f"({', '.join(ADDITIVE)}); placement {placement!r} has no such add")


class Block(nn.Module):
    """One transformer layer; ``placement`` decides where its norms sit.

    ``layer_index`` counts from 0; with ``depth_scaled_norm`` every norm output
    in this layer is multiplied by 1/sqrt(layer_index + 1).  ``n_layer`` is
    the depth L of the whole model (DeepNorm's constants depend on it).
    ``qk_norm`` adds QK-norm (of kind ``norm``) inside the attention.
    ``residual`` "hyper" or "mhc" makes the block map n streams (B, T, n, C)
    to n streams, with ``n_streams`` = n.  ``dyt_alpha_attn`` (None: ``dyt_alpha``)
    is the initial alpha of the norms in front of or around the attention, and
    ``dyt_bias=False`` drops DyT's beta (Zhu et al. 2025's LLaMA recipe).
    """

    def __init__(self, d_model: int, n_head: int, *, placement: str = "pre",
                 norm: str = "layernorm", n_layer: int = 1, layer_index: int = 0,
                 eps: float = 1e-5, dyt_alpha: float = 0.5, derf_alpha: float = 0.5, bias: bool = True,
                 mlp_ratio: int = 4, depth_scaled_norm: bool = False, qk_norm: bool = False,
                 residual: str = "plain", n_streams: int = 4, device=None,
                 dyt_alpha_attn: float | None = None, dyt_bias: bool = True, norm_affine: bool = True):
        super().__init__()
        if placement == "ngpt":
            raise ValueError("placement 'ngpt' has its own block without norm layers: use NGPTBlock, "
                             "or GPTConfig(placement='ngpt') for a whole model")
        if placement not in ALL_PLACEMENTS:
            raise ValueError(f"unknown placement {placement!r}; choose one of {', '.join(ALL_PLACEMENTS)}")
        check_residual(residual, placement)
        self.placement = placement
        self.residual = residual
        self.alpha = deepnorm_constants(n_layer)[0] if placement == "deepnorm" else 1.0
        self.attn = CausalSelfAttention(d_model, n_head, bias, qk_norm=qk_norm_kind(norm, qk_norm), eps=eps)
        self.mlp = MLP(d_model, mlp_ratio, bias)
        scale = 1.0 / math.sqrt(layer_index + 1) if depth_scaled_norm else 1.0
        for name in NORM_SLOTS[placement]:
            # DyT's LLaMA recipe: the attention norms start at their own alpha
            alpha = (dyt_alpha_attn if dyt_alpha_attn is not None and name.startswith("norm_attn")
                     else dyt_alpha)
            n = make_norm(norm, d_model, eps=eps, dyt_alpha=alpha, derf_alpha=derf_alpha, device=device,
                          dyt_bias=dyt_bias, affine=norm_affine)
            setattr(self, name, ScaledNorm(n, scale) if scale != 1.0 else n)
        if residual != "plain":   # sub-layer k = 2 * layer_index (attention), + 1 (MLP)
            self.streams_attn = make_streams(residual, d_model, n_streams, 2 * layer_index)
            self.streams_mlp = make_streams(residual, d_model, n_streams, 2 * layer_index + 1)

    def f_attn(self, x):
        """The attention branch f_A of an additive placement: h = x + f_A(x)."""
        return self._branch("attn", x)

    def f_mlp(self, h):
        """The MLP branch f_M of an additive placement: y = h + f_M(h)."""
        return self._branch("mlp", h)

    def _branch(self, sub: str, x):
        """f_A (``sub="attn"``) or f_M (``"mlp"``): the sub-layer with this placement's norms."""
        p, layer = self.placement, getattr(self, sub)
        if p == "pre":
            return layer(getattr(self, f"norm_{sub}")(x))
        if p == "peri":
            return getattr(self, f"norm_{sub}_out")(layer(getattr(self, f"norm_{sub}_in")(x)))
        if p == "reordered":
            return getattr(self, f"norm_{sub}_out")(layer(x))
        return layer(x)  # none

    def forward(self, x):
        p = self.placement
        if self.residual != "plain":   # x holds n streams, (B, T, n, C)
            x = self.streams_attn(x, self.f_attn)
            return self.streams_mlp(x, self.f_mlp)
        if p in ADDITIVE:
            h = x + self.f_attn(x)
            return h + self.f_mlp(h)
        if p == "post":
            x = self.norm_attn(x + self.attn(x))
            return self.norm_mlp(x + self.mlp(x))
        if p == "b2t":
            # the bottom-to-top skip carries the block input past both post-norms
            h = self.norm_attn(x + self.attn(x))
            return self.norm_mlp(h + self.mlp(h) + x)
        h = self.norm_attn(self.alpha * x + self.attn(x))  # deepnorm
        return self.norm_mlp(self.alpha * h + self.mlp(h))
