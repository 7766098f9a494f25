"""Chapter 13, "Norms inside attention and after the branch": QK-norm logits,
z-loss and OLMo 2's reordered block."""

import math

import torch
import torch.nn.functional as F

import dataclasses

from checker_run import _not_implemented
from near_misses import Attempt, Exercise
from normcourse.exercises.attention_norms import (
    qk_norm_logits, z_loss, reordered_block,
    check_qk_norm_logits, check_reordered_block, check_z_loss,
)

NOTEBOOK = "notebooks/13_norms_inside_attention.ipynb"


def _rms(x, eps, dim=-1):
    return x * torch.rsqrt(x.pow(2).mean(dim, keepdim=True) + eps)


def _scores(q, k):
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


def _qk_float32(q, k, wq, wk, eps):
    """Computes in float32 inside and casts back: right, within tolerance."""
    out = _scores(_rms(q.float(), eps) * wq.float(), _rms(k.float(), eps) * wk.float())
    return out.to(q.dtype)


def _qk_rms_norm_module(q, k, wq, wk, eps):
    """torch's own F.rms_norm over the head dimension."""
    d = q.shape[-1]
    return _scores(F.rms_norm(q, (d,), wq, eps), F.rms_norm(k, (d,), wk, eps))


def _qk_einsum(q, k, wq, wk, eps):
    qn, kn = _rms(q, eps) * wq, _rms(k, eps) * wk
    return torch.einsum("bhtd,bhsd->bhts", qn, kn) / q.shape[-1] ** 0.5


def _z_manual(logits, c):
    """logsumexp written out with the max subtracted: right."""
    m = logits.max(-1, keepdim=True).values
    lse = (logits - m).exp().sum(-1).log() + m.squeeze(-1)
    return c * (lse * lse).mean()


def _z_naive(logits, c):
    """log(sum(exp)) without the max: overflows on large float32 logits."""
    return c * logits.exp().sum(-1).log().pow(2).mean()


def _reordered_loop(x, attn, mlp, na, nm):
    for sub, norm in ((attn, na), (mlp, nm)):
        x = x + norm(sub(x))
    return x


CASES = [
    Exercise(
        check_qk_norm_logits, NOTEBOOK, "my_qk_norm_logits",
        near_misses=(
            Attempt("norm over time", lambda q, k, wq, wk, eps: _scores(
                _rms(q, eps, -2) * wq, _rms(k, eps, -2) * wk), ("time axis",)),
            Attempt("norm over heads", lambda q, k, wq, wk, eps: _scores(
                _rms(q, eps, 1) * wq, _rms(k, eps, 1) * wk), ("heads axis",)),
            Attempt("norm after the scores", lambda q, k, wq, wk, eps: _rms(
                _scores(q, k), eps), ("after the dot product",)),
            Attempt("only q", lambda q, k, wq, wk, eps: _scores(
                _rms(q, eps) * wq, k), ("only the queries",)),
            Attempt("no scale", lambda q, k, wq, wk, eps: (_rms(q, eps) * wq) @ (
                _rms(k, eps) * wk).transpose(-2, -1), ("sqrt(head_dim)",)),
            Attempt("no gains", lambda q, k, wq, wk, eps: _scores(
                _rms(q, eps), _rms(k, eps)), ("gains",)),
            Attempt("layer norm", lambda q, k, wq, wk, eps: _scores(
                F.layer_norm(q, q.shape[-1:], eps=eps) * wq,
                F.layer_norm(k, k.shape[-1:], eps=eps) * wk), ("mean",)),
            Attempt("L2 normalize", lambda q, k, wq, wk, eps: _scores(
                F.normalize(q, dim=-1) * wq, F.normalize(k, dim=-1) * wk),
                ("L2 norm",)),
            Attempt("only k", lambda q, k, wq, wk, eps: _scores(q, _rms(k, eps) * wk),
                    ("only the keys",)),
            Attempt("all heads together", lambda q, k, wq, wk, eps: _scores(
                _rms(q, eps, (1, 3)) * wq, _rms(k, eps, (1, 3)) * wk), ("across all heads",)),
            Attempt("LayerNorm of the scores", lambda q, k, wq, wk, eps: F.layer_norm(
                _scores(q, k), (k.shape[-2],), eps=eps), ("LayerNorm to the scores",)),
            Attempt("divided by head_dim", lambda q, k, wq, wk, eps: (_rms(q, eps) * wq) @ (
                _rms(k, eps) * wk).transpose(-2, -1) / q.shape[-1], ("by head_dim",)),
            Attempt("gains before the norm", lambda q, k, wq, wk, eps: _scores(
                _rms(q * wq, eps), _rms(k * wk, eps)), ("before normalizing",)),
            Attempt("eps after the root", lambda q, k, wq, wk, eps: _scores(
                q / (q.pow(2).mean(-1, keepdim=True).sqrt() + eps) * wq,
                k / (k.pow(2).mean(-1, keepdim=True).sqrt() + eps) * wk),
                ("after the square root",)),
            Attempt("softmax applied", lambda q, k, wq, wk, eps: _scores(
                _rms(q, eps) * wq, _rms(k, eps) * wk).softmax(-1), ("softmax",)),
            Attempt("no eps", lambda q, k, wq, wk, eps: _scores(
                _rms(q, 0.0) * wq, _rms(k, 0.0) * wk), ("ignores its eps",)),
            Attempt("eps fixed at 1e-6", lambda q, k, wq, wk, eps: _scores(
                _rms(q, 1e-6) * wq, _rms(k, 1e-6) * wk), ("ignores its eps",)),
        ),
        right_answers=(
            Attempt("F.rms_norm", _qk_rms_norm_module),
            Attempt("float32 inside", _qk_float32),
            Attempt("einsum", _qk_einsum),
            Attempt("both gains on the queries (the same logits)", lambda q, k, wq, wk, eps:
                    _scores(_rms(q, eps) * wq * wk, _rms(k, eps))),
            Attempt("scale on q before the product", lambda q, k, wq, wk, eps: (
                _rms(q, eps) * wq * q.shape[-1] ** -0.5) @ (_rms(k, eps) * wk).mT),
            # sum_i q_i wq_i k_i wk_i does not care which side carries which gain
            Attempt("the gains on the other side (the same logits)",
                    lambda q, k, wq, wk, eps: _scores(_rms(q, eps) * wk, _rms(k, eps) * wq)),
        ),
    ),
    Exercise(
        check_z_loss, NOTEBOOK, "my_z_loss",
        near_misses=(
            Attempt("max logit", lambda z, c: c * z.max(-1).values.pow(2).mean(),
                    ("largest logit",)),
            Attempt("not squared", lambda z, c: c * torch.logsumexp(z, -1).mean(),
                    ("not squared",)),
            Attempt("summed", lambda z, c: c * torch.logsumexp(z, -1).pow(2).sum(),
                    ("summed",)),
            Attempt("no coefficient", lambda z, c: torch.logsumexp(z, -1).pow(2).mean(),
                    ("coefficient",)),
            Attempt("wrong axis", lambda z, c: c * torch.logsumexp(z, 1).pow(2).mean(),
                    ("time axis",)),
            Attempt("overflow", _z_naive, ("overflow",)),
            Attempt("mean, then squared", lambda z, c: c * torch.logsumexp(z, -1).mean() ** 2,
                    ("squared the mean",)),
            Attempt("squared logits", lambda z, c: c * z.pow(2).mean(), ("squared logits",)),
            Attempt("|log Z|", lambda z, c: c * torch.logsumexp(z, -1).abs().mean(),
                    ("not squared",)),
            Attempt("batch axis", lambda z, c: c * torch.logsumexp(z, 0).pow(2).mean(),
                    ("batch axis",)),
        ),
        right_answers=(
            Attempt("max subtracted by hand", _z_manual),
            Attempt("returns a tensor", lambda z, c: (c * torch.logsumexp(z, -1) ** 2).mean()),
            Attempt("log Z from log_softmax", lambda z, c: c * (z - F.log_softmax(z, -1))[..., 0]
                    .pow(2).mean()),
            Attempt("a Python float", lambda z, c: (
                c * torch.logsumexp(z, -1).pow(2).mean()).item()),
        ),
    ),
    Exercise(
        check_reordered_block, NOTEBOOK, "my_reordered_block",
        near_misses=(
            Attempt("pre-LN", lambda x, a, m, na, nm: (lambda h: h + m(nm(h)))(x + a(na(x))),
                    ("Pre-LN",)),
            Attempt("peri-LN", lambda x, a, m, na, nm: (lambda h: h + nm(m(nm(h))))(
                x + na(a(na(x)))), ("Peri-LN",)),
            Attempt("post-LN", lambda x, a, m, na, nm: (lambda h: nm(h + m(h)))(na(x + a(x))),
                    ("Post-LN",)),
            Attempt("one norm twice", lambda x, a, m, na, nm: (lambda h: h + na(m(h)))(
                x + na(a(x))), ("its own norm",)),
            Attempt("parallel", lambda x, a, m, na, nm: x + na(a(x)) + nm(m(x)),
                    ("parallel",)),
            Attempt("norms swapped", lambda x, a, m, na, nm: (lambda h: h + na(m(h)))(
                x + nm(a(x))), ("swapped the two norms",)),
            Attempt("MLP first", lambda x, a, m, na, nm: (lambda h: h + na(a(h)))(
                x + nm(m(x))), ("MLP before attention",)),
            Attempt("output normalized", lambda x, a, m, na, nm: nm((lambda h: h + nm(m(h)))(
                x + na(a(x)))), ("block's output",)),
            Attempt("no skips", lambda x, a, m, na, nm: nm(m(na(a(x)))), ("residual",)),
            Attempt("no norm after the MLP", lambda x, a, m, na, nm: (lambda h: h + m(h))(
                x + na(a(x))), ("no norm after the MLP",)),
            Attempt("no norm after attention", lambda x, a, m, na, nm: (lambda h: h + nm(m(h)))(
                x + a(x)), ("no norm after attention",)),
            Attempt("adds into x in place", lambda x, a, m, na, nm: (lambda h: h.add_(nm(m(h))))(
                x.add_(na(a(x)))), ("in place",)),
        ),
        right_answers=(
            Attempt("loop", _reordered_loop),
            Attempt("in place on its own copy", lambda x, a, m, na, nm: (
                lambda h: h.add_(nm(m(h))))(x + na(a(x)))),
        ),
    ),
]

# Every exercise: the package's reference is a right answer, the untouched stub a near miss.
CASES = [dataclasses.replace(
    e, near_misses=e.near_misses + (Attempt("the stub", _not_implemented, ("not implemented",)),),
    right_answers=e.right_answers + (Attempt("the package's reference", ref),))
    for e, ref in zip(CASES, (qk_norm_logits, z_loss, reordered_block))]
