"""Residual paths with n streams: hyper-connections, mHC, and their gain across depth.

A plain residual carries one stream and adds each sub-layer's output, x' = x + f(x).
Hyper-connections carry n streams X, an (n, C) matrix per position, and learn
three small maps per sub-layer: a *read* r (1 x n) that mixes the streams into
the sub-layer's input, a *mixing* matrix M (n x n) that mixes the streams among
themselves, and a *write* w (1 x n) that adds the output back to each stream:

    X' = M X + w^T f(r X)

The formulas for r, M and w (the table in :mod:`normcourse.blocks`):

- ``HyperConnection`` (Zhu et al. 2024, arXiv 2409.19606), with H the per-stream
  LayerNorm of X: r = A_m^T, M = A_r^T, w = B where A_m = A_m0 + s_a tanh(H W_m),
  A_r = A_r0 + s_a tanh(H W_r), B = B0 + s_b tanh(H W_b)^T.  Static HC keeps
  only A_m0, A_r0, B0.  Start values as in the paper: A_m0 = e_(k mod n) for
  sub-layer k (layer k reads stream k mod n), A_r0 = I, B0 = 1, every W = 0,
  s_a = s_b = 0.01: the streams start as n copies of a Pre-LN residual.
- ``ManifoldHyperConnection``, mHC (Xie et al. 2025, DeepSeek, arXiv 2512.24880):
  x = RMSNorm(vec X) (1 x nC), r = sigmoid(a_pre x P_pre + b_pre),
  w = 2 sigmoid(a_post x P_post + b_post), M = SinkhornKnopp(a_res mat(x P_res) + b_res):
  r, w >= 0 and M doubly stochastic, so that no product of M's across depth can
  amplify a signal.  Sinkhorn-Knopp starts from exp(.) and alternates row and
  column normalization, 20 iterations (the paper's t_max); the gates a start at
  0.01, P at 0.  The paper does not give the biases' start values that we could
  find; ours mirror HC's start: b_pre = +3 on stream k mod n and -3 elsewhere
  (r ~ e_(k mod n)), b_post = 0 (w = 1), b_res = 3 I (M near the identity,
  diagonal 0.87 for n = 4).

The gain of a stack (mHC's "Amax Gain Magnitude") is read off the product of
the mixing matrices across depth, C = M_L ... M_2 M_1: its largest absolute row
sum bounds how much a signal can grow going forward, its largest absolute
column sum how much a gradient can grow going back.  For a plain residual every
M is the 1 x 1 identity and both gains are 1; for doubly stochastic M's both
are exactly 1 at any depth; unconstrained HC matrices can compound.
"""

from __future__ import annotations

import torch
import torch.nn as nn

RESIDUALS = ("plain", "hyper", "mhc")
SINKHORN_ITERS = 20   # mHC's t_max


def sinkhorn_knopp(logits: torch.Tensor, iters: int = SINKHORN_ITERS) -> torch.Tensor:
    """Project (..., n, n) logits to a doubly stochastic matrix: exp, then rows, columns, repeated.

    Each iteration divides every row by its sum, then every column by its sum,
    so the result's columns sum to 1 exactly and its rows to 1 within the
    convergence of ``iters`` rounds.  Subtracting the max first changes nothing
    (each normalization undoes a common factor) but keeps exp from overflowing.
    """
    m = (logits - logits.amax(dim=(-2, -1), keepdim=True)).exp()
    for _ in range(iters):
        m = m / m.sum(dim=-1, keepdim=True)   # rows
        m = m / m.sum(dim=-2, keepdim=True)   # columns
    return m


def _no_decay(p: nn.Parameter) -> nn.Parameter:
    """Mark a matrix-shaped parameter that weight decay must not pull towards 0 (a start map)."""
    p.no_weight_decay = True
    return p


class _Streams(nn.Module):
    """X' = M X + w^T f(r X) on streams X of shape (..., n, C); subclasses say how r, M, w are made."""

    def __init__(self, n_streams: int):
        super().__init__()
        self.n_streams = n_streams
        self._mixing = None

    def forward(self, X, f):
        r, M, w = self.maps(X)
        h = (r.unsqueeze(-1) * X).sum(dim=-2)        # read:  r X, one (..., C) input for f
        out = f(h)
        self._mixing = M.detach()
        return M @ X + w.unsqueeze(-1) * out.unsqueeze(-2)   # mix, and write w^T f(r X)

    def residual_mixing(self) -> torch.Tensor:
        """The stream-mixing matrices M of the most recent forward: (..., n, n), one per position
        when the maps depend on the input, else (n, n)."""
        if self._mixing is None:
            raise RuntimeError("no forward has run yet: residual_mixing() reads the last forward's M")
        return self._mixing


class HyperConnection(_Streams):
    """Hyper-connections (Zhu et al. 2024), dynamic (DHC, the default) or static (SHC).

    ``index`` is the sub-layer's position k in the whole stack (attention of
    layer l is 2l, its MLP 2l + 1): sub-layer k starts by reading stream k mod n.
    """

    def __init__(self, d_model: int, n_streams: int, index: int = 0, dynamic: bool = True):
        super().__init__(n_streams)
        n = n_streams
        self.dynamic = dynamic
        self.read0 = nn.Parameter(nn.functional.one_hot(torch.tensor(index % n), n).float())  # A_m0
        self.mix0 = _no_decay(nn.Parameter(torch.eye(n)))                                     # A_r0
        self.write0 = nn.Parameter(torch.ones(n))                                             # B0
        if dynamic:
            self.norm = nn.LayerNorm(d_model)
            self.w_read = nn.Parameter(torch.zeros(d_model, 1))    # W_m
            self.w_mix = nn.Parameter(torch.zeros(d_model, n))     # W_r
            self.w_write = nn.Parameter(torch.zeros(d_model, 1))   # W_b
            self.s_alpha = nn.Parameter(torch.full((1,), 0.01))
            self.s_beta = nn.Parameter(torch.full((1,), 0.01))

    def maps(self, X):
        if not self.dynamic:
            return self.read0, self.mix0.T, self.write0
        H = self.norm(X)                                                       # (..., n, C)
        A_m = self.read0 + self.s_alpha * torch.tanh(H @ self.w_read).squeeze(-1)
        A_r = self.mix0 + self.s_alpha * torch.tanh(H @ self.w_mix)
        B = self.write0 + self.s_beta * torch.tanh(H @ self.w_write).squeeze(-1)
        return A_m, A_r.transpose(-2, -1), B      # r = A_m^T, M = A_r^T, w = B


class ManifoldHyperConnection(_Streams):
    """mHC (Xie et al. 2025): read and write gates in (0, 1) and (0, 2), mixing doubly stochastic."""

    def __init__(self, d_model: int, n_streams: int, index: int = 0, sinkhorn_iters: int = SINKHORN_ITERS):
        super().__init__(n_streams)
        n, nC = n_streams, n_streams * d_model
        self.sinkhorn_iters = sinkhorn_iters
        self.norm = nn.RMSNorm(nC)
        self.phi_pre = nn.Parameter(torch.zeros(nC, n))
        self.phi_post = nn.Parameter(torch.zeros(nC, n))
        self.phi_res = nn.Parameter(torch.zeros(nC, n * n))
        self.alpha_pre = nn.Parameter(torch.full((1,), 0.01))
        self.alpha_post = nn.Parameter(torch.full((1,), 0.01))
        self.alpha_res = nn.Parameter(torch.full((1,), 0.01))
        self.b_pre = nn.Parameter(torch.where(torch.arange(n) == index % n, 3.0, -3.0))
        self.b_post = nn.Parameter(torch.zeros(n))
        self.b_res = _no_decay(nn.Parameter(3.0 * torch.eye(n)))

    def maps(self, X):
        n = self.n_streams
        x = self.norm(X.flatten(-2))                                           # (..., nC)
        r = torch.sigmoid(self.alpha_pre * (x @ self.phi_pre) + self.b_pre)
        w = 2 * torch.sigmoid(self.alpha_post * (x @ self.phi_post) + self.b_post)
        logits = self.alpha_res * (x @ self.phi_res).unflatten(-1, (n, n)) + self.b_res
        return r, sinkhorn_knopp(logits, self.sinkhorn_iters), w


def make_streams(kind: str, d_model: int, n_streams: int, index: int) -> _Streams:
    """The module for ``residual`` = "hyper" or "mhc" (a plain residual needs none)."""
    if kind == "hyper":
        return HyperConnection(d_model, n_streams, index)
    if kind == "mhc":
        return ManifoldHyperConnection(d_model, n_streams, index)
    raise ValueError(f"unknown residual {kind!r} for a stream module; choose hyper or mhc")


# ---------------------------------------------------------------- gain across depth

def gains(matrix: torch.Tensor) -> tuple[float, float]:
    """(largest absolute row sum, largest absolute column sum) of (..., n, n), over every position.

    The forward gain bounds |C x|_inf / |x|_inf, the backward gain |C^T g|_1 / |g|_1.
    """
    a = matrix.detach().abs().double()
    return a.sum(dim=-1).max().item(), a.sum(dim=-2).max().item()


def composite_gains(mixings: list[torch.Tensor]) -> list[tuple[float, float]]:
    """Gains of the products M_1, M_2 M_1, ..., M_L ... M_1 of the mixing matrices in depth order.

    Matrices with one per position (..., n, n) multiply position by position;
    the gain reported for each depth is the worst position's.
    """
    if not mixings:
        raise ValueError("mixings is empty: give one (..., n, n) matrix per sub-layer, in depth order")
    out, C = [], None
    for M in mixings:
        M = M.detach().double()
        C = M if C is None else M @ C
        out.append(gains(C))
    return out


def amax_gain(mixings: list[torch.Tensor]) -> dict:
    """mHC's Amax gain of the whole stack: forward and backward gain of M_L ... M_1."""
    forward, backward = composite_gains(mixings)[-1]
    return {"forward": forward, "backward": backward}


def identity_mixings(n_sublayers: int) -> list[torch.Tensor]:
    """A plain residual's mixing matrices: the 1 x 1 identity for every sub-layer."""
    return [torch.eye(1) for _ in range(n_sublayers)]


def is_doubly_stochastic(mixing: torch.Tensor, atol: float = 1e-5) -> bool:
    """True when ``mixing`` is doubly stochastic (non-negative, rows and columns sum to 1)."""
    m = mixing.detach()
    ones = torch.ones(m.shape[:-1], dtype=m.dtype)
    return bool((m >= 0).all() and torch.allclose(m.sum(-1), ones, atol=atol)
                and torch.allclose(m.sum(-2), ones, atol=atol))


__all__ = ["RESIDUALS", "SINKHORN_ITERS", "sinkhorn_knopp", "HyperConnection", "ManifoldHyperConnection",
           "make_streams", "gains", "composite_gains", "amax_gain", "identity_mixings",
           "is_doubly_stochastic"]
