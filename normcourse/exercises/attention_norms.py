"""Checkers for chapter 13, "Norms inside attention and after the branch".

- :func:`check_qk_norm_logits`: ``fn(q, k, q_weight, k_weight, eps) -> logits``,
  the attention logits of QK-norm: each head's queries and keys RMS-normalized
  over the head dimension (with their own learned gains) *before* the dot
  product, then the usual ``1/sqrt(head_dim)`` scale.
- :func:`check_z_loss`: ``fn(logits, coefficient) -> loss``, PaLM's auxiliary
  z-loss ``coefficient * mean(log Z ** 2)`` with ``log Z = logsumexp(logits)``
  over the vocabulary.
- :func:`check_reordered_block`: ``fn(x, attn, mlp, norm_attn, norm_mlp)``,
  OLMo 2's reordered block ``h = x + N(A(x)); y = h + N(M(h))``.

Each wrong answer is compared with a list of known wrong formulas (the norm
over the wrong axis, the norm applied to the scores, a Pre-LN block...), so
the learner hears which mistake it is.  The public ``qk_norm_logits``,
``z_loss`` and ``reordered_block`` are the references.
"""

from __future__ import annotations

import math

import torch

from normcourse.exercises.feedback import (
    Mistake, Wrong, as_number, call_learner, checker, compare, expect_tensor, generator,
    ignores_eps,
)
from normcourse.exercises.placements import check_block, order_mistakes

__all__ = ["check_qk_norm_logits", "check_z_loss", "check_reordered_block",
           "qk_norm_logits", "z_loss", "reordered_block"]


def _rms(x, eps, dim=-1):
    return x * (x.pow(2).mean(dim, keepdim=True) + eps).rsqrt()


def qk_norm_logits(q, k, q_weight, k_weight, eps):
    """The reference: RMSNorm q and k per head over head_dim, then q k^T / sqrt(head_dim).

    ``q``, ``k``: (batch, heads, time, head_dim); ``q_weight``, ``k_weight``: (head_dim,).
    """
    q = _rms(q, eps) * q_weight
    k = _rms(k, eps) * k_weight
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


def z_loss(logits, coefficient):
    """The reference: ``coefficient * mean over tokens of logsumexp(logits, -1) ** 2``."""
    return coefficient * torch.logsumexp(logits, dim=-1).pow(2).mean()


def reordered_block(x, attn, mlp, norm_attn, norm_mlp):
    """The reference OLMo 2 block: h = x + norm_attn(attn(x)); y = h + norm_mlp(mlp(h))."""
    h = x + norm_attn(attn(x))
    return h + norm_mlp(mlp(h))


# ------------------------------------------------------------------------ QK-norm

def _qk_variants(q, k, wq, wk, eps):
    d = q.shape[-1]
    s = math.sqrt(d)
    B, H, T, _ = q.shape

    def logits(qq, kk, scale=s):
        return qq @ kk.transpose(-2, -1) / scale

    def across_heads(x):
        # each token's vector of all heads together, (B, T, H*d), normalized at once
        flat = x.transpose(1, 2).reshape(B, T, H * d)
        flat = _rms(flat, eps)
        return flat.reshape(B, T, H, d).transpose(1, 2)

    def layer_norm(x):
        return torch.nn.functional.layer_norm(x, (d,), eps=eps)

    hint = ("normalize q and k over their last dimension (head_dim): "
            "q * rsqrt(mean(q**2, dim=-1, keepdim=True) + eps) * q_weight.")
    raw = logits(q, k)
    return [
        Wrong("you normalized over the time axis (dim=-2): each query and key vector "
              "is normalized on its own, over the head dimension (dim=-1).", hint,
              lambda: logits(_rms(q, eps, dim=-2) * wq, _rms(k, eps, dim=-2) * wk)),
        Wrong("you normalized over the heads axis (dim=1): QK-norm normalizes each head's "
              "vector over head_dim.", hint,
              lambda: logits(_rms(q, eps, dim=1) * wq, _rms(k, eps, dim=1) * wk)),
        Wrong("you normalized each token's queries across all heads together (the whole "
              "d_model vector); this exercise normalizes each head separately, over "
              "head_dim.", hint,
              lambda: logits(across_heads(q) * wq, across_heads(k) * wk)),
        Wrong("you normalized the scores after the dot product: QK-norm normalizes q and "
              "k *before* it, which caps how large a logit can grow whatever the "
              "weights do; normalizing the scores does not.",
              "normalize q and k first, then take q @ k.transpose(-2, -1) / sqrt(head_dim).",
              lambda: _rms(raw, eps)),
        Wrong("you applied a LayerNorm to the scores after the dot product: QK-norm "
              "normalizes q and k before it.",
              "normalize q and k first, then take q @ k.transpose(-2, -1) / sqrt(head_dim).",
              lambda: torch.nn.functional.layer_norm(raw, raw.shape[-1:], eps=eps)),
        Wrong("only the queries are normalized: normalize the keys too (with k_weight).", hint,
              lambda: logits(_rms(q, eps) * wq, k)),
        Wrong("only the keys are normalized: normalize the queries too (with q_weight).", hint,
              lambda: logits(q, _rms(k, eps) * wk)),
        Wrong("the 1/sqrt(head_dim) scale is missing: QK-norm keeps the usual scaled "
              "dot product after normalizing.", "divide q @ k^T by math.sqrt(head_dim).",
              lambda: logits(_rms(q, eps) * wq, _rms(k, eps) * wk, scale=1.0)),
        Wrong("the learned gains q_weight and k_weight are missing.",
              "multiply the normalized q by q_weight and the normalized k by k_weight.",
              lambda: logits(_rms(q, eps), _rms(k, eps))),
        Wrong("you subtracted the mean (a LayerNorm): this exercise uses RMSNorm, which "
              "only divides by the root mean square.", hint,
              lambda: logits(layer_norm(q) * wq, layer_norm(k) * wk)),
        Wrong("you divided by the L2 norm, which makes the vectors length 1 instead of RMS 1 "
              "(a factor sqrt(head_dim) smaller).",
              "divide by sqrt(mean(q**2) + eps), the root *mean* square.",
              lambda: logits(q / q.norm(dim=-1, keepdim=True) * wq,
                             k / k.norm(dim=-1, keepdim=True) * wk)),
        Wrong("you divided the scores by head_dim; the scaled dot product divides by "
              "sqrt(head_dim).", "divide q @ k^T by math.sqrt(head_dim).",
              lambda: logits(_rms(q, eps) * wq, _rms(k, eps) * wk, scale=d)),
        Wrong("you multiplied by the gains before normalizing, which the normalization "
              "then undoes; the gains scale the normalized vectors.",
              "normalize first, then multiply: rms_normalize(q) * q_weight.",
              lambda: logits(_rms(q * wq, eps), _rms(k * wk, eps))),
        Wrong("you added eps after the square root, sqrt(mean(q**2)) + eps; RMSNorm adds "
              "it under the root.", hint,
              lambda: logits(q / (q.pow(2).mean(-1, keepdim=True).sqrt() + eps) * wq,
                             k / (k.pow(2).mean(-1, keepdim=True).sqrt() + eps) * wk)),
        Wrong("you applied the softmax: the function returns the logits, before any "
              "softmax (the chapter looks at how large they grow).",
              "return q @ k.transpose(-2, -1) / sqrt(head_dim), without the softmax.",
              lambda: logits(_rms(q, eps) * wq, _rms(k, eps) * wk).softmax(-1)),
    ]


@checker
def check_qk_norm_logits(fn) -> str:
    """``fn(q, k, q_weight, k_weight, eps)`` returns QK-norm's attention logits."""
    g = generator(2023)
    for B, H, T, d, eps in ((2, 3, 5, 8, 1e-6), (1, 4, 7, 16, 1e-5)):
        # a mean far from 0 and scales that differ per vector separate every variant
        q = (torch.randn(B, H, T, d, generator=g, dtype=torch.float64) + 0.7) \
            * torch.rand(B, H, T, 1, generator=g, dtype=torch.float64).mul(4).add(0.5)
        k = (torch.randn(B, H, T, d, generator=g, dtype=torch.float64) - 0.4) \
            * torch.rand(B, H, T, 1, generator=g, dtype=torch.float64).mul(3).add(0.5)
        wq = 1 + 0.5 * torch.randn(d, generator=g, dtype=torch.float64)
        wk = 1 + 0.5 * torch.randn(d, generator=g, dtype=torch.float64)
        # one quiet query per head, mean square near eps: where eps goes then matters
        q[:, :, 0] *= 1e-3
        label = f"q and k of shape {(B, H, T, d)}"
        ref = qk_norm_logits(q, k, wq, wk, eps)
        out = call_learner(fn, q, k, wq, wk, eps, name="your qk_norm_logits")
        expect_tensor(out, ref, name=f"the logits ({label})",
                      shape_hint="the logits have shape (batch, heads, time, time): "
                                 "q @ k.transpose(-2, -1).")
        tol = 1e-6 * (1 + float(ref.abs().max()))
        eps_wrong = ignores_eps(
            lambda e: call_learner(fn, q, k, wq, wk, e, name="your qk_norm_logits"), out, ref,
            qk_norm_logits(q, k, wq, wk, 1.0), eps, tol, name="your qk_norm_logits")
        compare(out, ref, tol, _qk_variants(q, k, wq, wk, eps) + [eps_wrong],
                name=f"the logits ({label})")
    return ("check_qk_norm_logits: q and k are RMS-normalized per head before the "
            "dot product, on two shapes.")


# ------------------------------------------------------------------------- z-loss

def _z_variants(logits, c):
    lse = torch.logsumexp(logits, dim=-1)
    hint = "coefficient * torch.logsumexp(logits, dim=-1).pow(2).mean()."
    return [
        Wrong("you used the largest logit instead of log Z: log Z = logsumexp(logits), "
              "which is at least the max.", hint,
              lambda: c * logits.max(-1).values.pow(2).mean()),
        Wrong("log Z is not squared: z-loss pushes log Z towards 0 from both sides, "
              "so it penalizes (log Z)^2.", hint,
              lambda: c * lse.mean()),
        Wrong("you squared the mean of log Z; z-loss is the mean of the squares (a "
              "positive and a negative log Z must not cancel).", hint,
              lambda: c * lse.mean().pow(2)),
        Wrong("you summed over the tokens: z-loss is a mean over tokens, like the "
              "cross-entropy it is added to.", hint,
              lambda: c * lse.pow(2).sum()),
        Wrong("the coefficient is missing: multiply by `coefficient` (1e-4 in PaLM).", hint,
              lambda: lse.pow(2).mean()),
        Wrong("logsumexp runs over the time axis (dim=1): Z sums over the vocabulary, "
              "the last axis.", hint,
              lambda: c * torch.logsumexp(logits, dim=1).pow(2).mean()),
        Wrong("logsumexp runs over the batch axis (dim=0): Z sums over the vocabulary, "
              "the last axis.", hint,
              lambda: c * torch.logsumexp(logits, dim=0).pow(2).mean()),
        Wrong("you penalized the squared logits themselves: z-loss penalizes the squared "
              "log normalizer log Z of each softmax.", hint,
              lambda: c * logits.pow(2).mean()),
    ]


@checker
def check_z_loss(fn) -> str:
    """``fn(logits, coefficient)`` returns ``coefficient * mean(logsumexp(logits) ** 2)``."""
    g = generator(2022)
    cases = [
        ("logits of shape (2, 6, 11)",
         torch.randn(2, 6, 11, generator=g, dtype=torch.float64) * 2 + 1.5, 1e-4),
        ("logits of shape (3, 4, 9) shifted negative",
         torch.randn(3, 4, 9, generator=g, dtype=torch.float64) * 3 - 2.0, 0.5),
    ]
    for label, logits, c in cases:
        out = as_number(call_learner(fn, logits, c, name="your z_loss"),
                        f"your z_loss ({label})")
        ref = float(z_loss(logits, c))
        tol = 1e-9 * (1 + abs(ref))
        compare(torch.tensor(out, dtype=torch.float64), torch.tensor(ref, dtype=torch.float64),
                tol, _z_variants(logits, c), name=f"your z_loss ({label})")
    # large logits: exp overflows in float32, logsumexp does not
    big = (torch.randn(2, 3, 7, generator=g) * 5 + 120.0).float()
    out = as_number(call_learner(fn, big, 1e-4, name="your z_loss"),
                    "your z_loss (float32 logits near 120)")
    ref = float(z_loss(big.double(), 1e-4))
    if not math.isfinite(out):
        raise Mistake(f"on float32 logits near 120 your z_loss is {out}: exp(logits) "
                      "overflowed.",
                      "use torch.logsumexp, which subtracts the max before exp.")
    if abs(out - ref) > 1e-4 * abs(ref):
        raise Mistake(f"on float32 logits near 120 your z_loss is {out:.6g}, expected "
                      f"{ref:.6g}.", "use torch.logsumexp(logits, dim=-1).")
    return ("check_z_loss: coefficient * mean((log Z)^2), stable on large logits "
            "too.")


# ------------------------------------------------------------------ reordered block

_REORDERED_HINT = "h = x + norm_attn(attn(x)); y = h + norm_mlp(mlp(h))."


def _reordered_mistakes(x, attn, mlp, na, nm) -> list[Wrong]:
    """Known wrong reordered blocks: the other placements, and a piece left out."""
    hint = _REORDERED_HINT
    return [
        Wrong("you computed a Pre-LN block: the norm sits on the sub-layer's input. "
              "The reordered norm normalizes the sub-layer's *output*, before the add.",
              hint,
              lambda: (lambda h: h + mlp(nm(h)))(x + attn(na(x)))),
        Wrong("you computed a Post-LN block, N(x + F(x)): the norm sits on the residual "
              "stream. The reordered norm normalizes only the branch: x + N(F(x)).",
              hint,
              lambda: (lambda h: nm(h + mlp(h)))(na(x + attn(x)))),
        Wrong("you normalized both the input and the output of each sub-layer: that is "
              "Peri-LN (Gemma 2's sandwich). The reordered norm leaves the input alone.",
              hint,
              lambda: (lambda h: h + nm(mlp(nm(h))))(x + na(attn(na(x))))),
        Wrong("the MLP sees the block input x, not h = x + norm_attn(attn(x)): the "
              "sub-layers run in parallel instead of one after the other.",
              hint,
              lambda: x + na(attn(x)) + nm(mlp(x))),
        Wrong("you used norm_attn after the MLP too: each sub-layer has its own norm.",
              hint,
              lambda: (lambda h: h + na(mlp(h)))(x + na(attn(x)))),
        Wrong("the residual (skip) connections are missing.",
              hint,
              lambda: nm(mlp(na(attn(x))))),
        Wrong("there is no norm after the MLP.",
              hint,
              lambda: (lambda h: h + mlp(h))(x + na(attn(x)))),
        Wrong("there is no norm after attention.",
              hint,
              lambda: (lambda h: h + nm(mlp(h)))(x + attn(x))),
        *order_mistakes(reordered_block, x, attn, mlp, na, nm, "after", hint),
        Wrong("you normalized the block's output: the reordered block leaves the residual "
              "stream un-normalized (only each branch is normalized).",
              hint,
              lambda: nm(reordered_block(x, attn, mlp, na, nm))),
    ]


@checker
def check_reordered_block(fn) -> str:
    """``fn(x, attn, mlp, norm_attn, norm_mlp)`` returns OLMo 2's reordered block."""
    summary = ("reordered_block is correct: each sub-layer's output is normalized before it is "
               "added, and the stream itself never is.")
    return check_block(fn, reordered_block, _reordered_mistakes, _REORDERED_HINT,
                       "reordered_block", ((8, 5, (3, 8)), (16, 6, (2, 5, 16))), 20, summary)
