"""Checkers for chapter 14, "Residual paths on the sphere and in many streams".

- :func:`check_sinkhorn`: ``fn(logits, iters) -> matrix``, Sinkhorn-Knopp:
  ``exp(logits)``, then ``iters`` rounds of "divide every row by its sum, then
  every column by its sum", on (..., n, n) inputs.  mHC (Xie et al. 2025)
  projects its stream-mixing matrices this way onto the doubly stochastic ones.
- :func:`check_ngpt_update`: ``fn(h, branch, alpha) -> h_new``, nGPT's step on
  the sphere ``Norm(h + alpha * (Norm(branch) - h))``, Norm = unit L2 norm
  over the last axis (Loshchilov et al. 2024).
- :func:`check_composite_gain`: ``fn(mixings) -> (forward, backward)``, the
  gain of the composite residual map across depth: the product
  ``H_L @ ... @ H_1`` of the per-layer mixing matrices, its maximum absolute
  row sum (forward) and maximum absolute column sum (backward): the matrix
  infinity-norm and 1-norm, sums of the entries' absolute values.

The public ``sinkhorn``, ``ngpt_update`` and ``composite_gain`` are the
references; the known wrong formulas are named when a learner's answer
matches one.
"""

from __future__ import annotations

import torch

from normcourse.exercises.feedback import (
    Mistake, Wrong, as_number, call_learner, checker, close, compare, expect_tensor, generator,
)

__all__ = ["check_sinkhorn", "check_ngpt_update", "check_composite_gain",
           "sinkhorn", "ngpt_update", "composite_gain"]


def sinkhorn(logits, iters):
    """The reference Sinkhorn-Knopp: exp, then ``iters`` x (rows, then columns)."""
    m = logits.exp()
    for _ in range(iters):
        m = m / m.sum(-1, keepdim=True)   # every row sums to 1...
        m = m / m.sum(-2, keepdim=True)   # ...then every column
    return m


def _unit(x, dim=-1):
    return x / x.norm(dim=dim, keepdim=True)


def ngpt_update(h, branch, alpha):
    """The reference nGPT step: ``unit(h + alpha * (unit(branch) - h))``."""
    return _unit(h + alpha * (_unit(branch) - h))


def composite_gain(mixings):
    """The reference gain of H_L @ ... @ H_1: (max_i sum_j |C_ij|, max_j sum_i |C_ij|).

    ``mixings`` is a sequence of (n, n) matrices, the first layer's first.
    """
    total = torch.eye(mixings[0].shape[-1], dtype=mixings[0].dtype)
    for m in mixings:
        total = m @ total     # layer l acts after layers 1..l-1
    return (float(total.abs().sum(-1).max()), float(total.abs().sum(-2).max()))


# ------------------------------------------------------------------ Sinkhorn-Knopp

def _sinkhorn_variants(logits, iters):
    def run(m, n, rows=True, cols=True, cols_first=False, dims=(-1, -2)):
        for _ in range(n):
            steps = [(dims[0], rows), (dims[1], cols)]
            if cols_first:
                steps.reverse()
            for dim, on in steps:
                if on:
                    m = m / m.sum(dim, keepdim=True)
        return m

    e = logits.exp()
    hint = ("start from m = logits.exp(); then `iters` times: "
            "m = m / m.sum(-1, keepdim=True); m = m / m.sum(-2, keepdim=True).")
    variants = [
        Wrong("there is no column step: every row sums to 1 but the columns do not, so "
              "the matrix is only row-stochastic, not doubly stochastic.", hint,
              lambda: run(e, iters, cols=False)),
        Wrong("there is no row step: the columns sum to 1 but the rows do not.", hint,
              lambda: run(e, iters, rows=False)),
        Wrong("a softmax over each row is one row step only: the matrix is row-stochastic, "
              "not doubly stochastic.", hint,
              lambda: e.softmax(-1)),
        Wrong("you normalized the columns first: each round divides the rows, then the "
              "columns (so the columns are exact at the end).", hint,
              lambda: run(e, iters, cols_first=True)),
        Wrong("you skipped the exponential: Sinkhorn-Knopp needs positive entries, so it "
              "starts from exp(logits).", hint,
              lambda: run(logits, iters)),
        Wrong("you took |logits| instead of exp(logits): the entries must be exp(logits) "
              "so that large logits dominate smoothly.", hint,
              lambda: run(logits.abs(), iters)),
        Wrong(f"you ran {iters + 1} rounds instead of iters={iters}.",
              "loop `for _ in range(iters)`, one row step and one column step each.",
              lambda: run(e, iters + 1)),
        Wrong(f"you ran {iters - 1} rounds instead of iters={iters}.",
              "loop `for _ in range(iters)`, one row step and one column step each.",
              lambda: run(e, iters - 1)),
    ]
    if e.dim() == 3:
        variants.append(Wrong("on a batch of matrices, shape (batch, n, n), you summed over "
                              "the batch axis: rows are dim=-1 and columns dim=-2.", hint,
                              lambda: run(e, iters, dims=(1, 0))))
    return variants


@checker
def check_sinkhorn(fn) -> str:
    """``fn(logits, iters)`` returns Sinkhorn-Knopp's matrix after ``iters`` rounds."""
    g = generator(1967)
    cases = [("a 4 x 4 matrix, iters=1",
              torch.randn(4, 4, generator=g, dtype=torch.float64) * 1.5, 1),
             ("a batch of three 3 x 3 matrices, iters=3",
              torch.randn(3, 3, 3, generator=g, dtype=torch.float64) * 2, 3),
             ("a 5 x 5 matrix, iters=2",
              torch.randn(5, 5, generator=g, dtype=torch.float64) + 1.0, 2)]
    for label, logits, iters in cases:
        ref = sinkhorn(logits, iters)
        out = expect_tensor(call_learner(fn, logits, iters, name="your sinkhorn"), ref,
                            name=f"the matrix ({label})",
                            shape_hint="the result has the shape of logits.")
        compare(out, ref, 1e-9, _sinkhorn_variants(logits, iters), name=f"the matrix ({label})")
    # with many rounds the result is doubly stochastic: the property mHC relies on
    # (logits of spread 1.5 converge to 1e-12 within 50 rounds)
    logits = torch.randn(2, 4, 4, generator=g, dtype=torch.float64) * 1.5
    out = call_learner(fn, logits, 50, name="your sinkhorn")
    rows, cols = out.sum(-1), out.sum(-2)
    if not (close(rows, torch.ones_like(rows), 1e-6) and close(cols, torch.ones_like(cols), 1e-6)):
        raise Mistake("after 50 rounds the rows and columns should all sum to 1; "
                      f"they range over [{float(rows.min()):.4f}, {float(rows.max()):.4f}] "
                      f"and [{float(cols.min()):.4f}, {float(cols.max()):.4f}].",
                      "check that each round normalizes the rows and then the columns.")
    return ("check_sinkhorn: exp, then rows and columns in turn; 50 rounds give a "
            "doubly stochastic matrix.")


# --------------------------------------------------------------------- nGPT update

def _ngpt_variants(h, b, a):
    hint = "unit = lambda v: v / v.norm(dim=-1, keepdim=True); " \
           "return unit(h + alpha * (unit(branch) - h))."

    def rms(v):
        return v / v.pow(2).mean(-1, keepdim=True).sqrt()

    return [
        Wrong("the branch output is not normalized: nGPT first puts it on the sphere, "
              "Norm(branch), and then moves h towards it.", hint,
              lambda: _unit(h + a * (b - h))),
        Wrong("the result is not normalized: after the step h leaves the sphere, so nGPT "
              "normalizes it again.", hint,
              lambda: h + a * (_unit(b) - h)),
        Wrong("you added alpha * Norm(branch) to h like a plain residual: nGPT moves h "
              "*towards* the branch, h + alpha * (Norm(branch) - h) (a linear "
              "interpolation).", hint,
              lambda: _unit(h + a * _unit(b))),
        Wrong("alpha weights the wrong end: alpha = 0 must leave h unchanged, alpha = 1 "
              "jump to Norm(branch).", hint,
              lambda: _unit((1 - a) * _unit(b) + a * h)),
        Wrong("you normalized to RMS 1 (an RMSNorm): nGPT puts vectors on the unit sphere, "
              "L2 norm 1, which is sqrt(d) times smaller.", hint,
              lambda: rms(h + a * (rms(b) - h))),
        Wrong("you normalized over the first axis (dim=0): every token's vector is "
              "normalized on its own, over the last axis.", hint,
              lambda: _unit(h + a * (_unit(b, 0) - h), 0)),
        Wrong("neither the branch output nor the result is normalized: nGPT keeps h on "
              "the unit sphere, Norm(h + alpha * (Norm(branch) - h)).", hint,
              lambda: h + a * (b - h)),
    ]


@checker
def check_ngpt_update(fn) -> str:
    """``fn(h, branch, alpha)`` returns nGPT's ``Norm(h + alpha (Norm(branch) - h))``."""
    g = generator(2410)
    for shape in ((4, 8), (2, 3, 16)):
        d = shape[-1]
        h = _unit(torch.randn(*shape, generator=g, dtype=torch.float64))
        branch = torch.randn(*shape, generator=g, dtype=torch.float64) * 3 + 0.5
        alpha = torch.rand(d, generator=g, dtype=torch.float64) * 0.4 + 0.05
        label = f"h of shape {shape}"
        ref = ngpt_update(h, branch, alpha)
        out = expect_tensor(call_learner(fn, h, branch, alpha, name="your ngpt_update"),
                            h, name=f"the new h ({label})")
        compare(out, ref, 1e-9, _ngpt_variants(h, branch, alpha), name=f"the new h ({label})")
    return ("check_ngpt_update: h moves towards Norm(branch) by alpha and returns to "
            "the unit sphere.")


# ------------------------------------------------------------------ composite gain

_GAIN_HINT = ("multiply total = H @ total layer by layer from the identity, then take "
              "total.abs().sum(-1).max() and total.abs().sum(-2).max().")


def _gain_variants(mats, label):
    """Known wrong (forward, backward) gains of ``mats``, as float64 pairs."""
    total = torch.eye(mats[0].shape[-1], dtype=mats[0].dtype)
    backwards = total
    for m in mats:
        total = m @ total
        backwards = backwards @ m

    def gains(t):
        return torch.stack([t.abs().sum(-1).max(), t.abs().sum(-2).max()])

    def wrong(what, value):
        return Wrong(f"{what} ({label})", _GAIN_HINT, value)

    return [
        wrong("you multiplied in the wrong order, H_1 @ ... @ H_L: layer l acts on what layers "
              "1..l-1 produced, so the product is H_L @ ... @ H_1.", lambda: gains(backwards)),
        wrong("you added the matrices: the residual maps compose, so the composite map is "
              "their product H_L @ ... @ H_1.", lambda: gains(sum(mats))),
        wrong("you measured the last layer's matrix only: the gain is of the product of every "
              "layer's matrix.", lambda: gains(mats[-1])),
        wrong("forward and backward are swapped: the forward gain is the largest row sum, the "
              "backward gain the largest column sum.", lambda: gains(total).flip(0)),
        wrong("you summed each row's (column's) entries with their signs (then perhaps took "
              "the absolute value of the sum), so negative entries cancel positive ones; the "
              "absolute row sum adds the entries' absolute values (the matrix infinity-norm), "
              "the worst case for any signal.",
              lambda: torch.stack([total.sum(-1).abs().max(), total.sum(-2).abs().max()])),
        wrong("you multiplied the layers' own gains: that product bounds the composite "
              "gain from above but is not it (the signs of the entries can cancel in the "
              "product of the matrices); multiply the matrices, then measure.",
              lambda: torch.stack([gains(m) for m in mats]).prod(0)),
        wrong("you took the spectral norm (the largest singular value) for both gains: "
              "the forward gain is the largest absolute row sum, the backward gain the "
              "largest absolute column sum.",
              lambda: torch.linalg.matrix_norm(total, ord=2).repeat(2)),
    ]


@checker
def check_composite_gain(fn) -> str:
    """``fn(mixings) -> (forward_gain, backward_gain)`` of the composite residual map."""
    g = generator(2512)
    # one layer last: the chapter's table starts at depth 1, where a product of one
    # matrix is that matrix (torch.linalg.multi_dot, for one, needs two or more)
    for n, L in ((4, 6), (3, 9), (4, 1)):
        # unconstrained hyper-connection-like matrices: near identity, some negative
        mats = [torch.eye(n, dtype=torch.float64)
                + 0.35 * torch.randn(n, n, generator=g, dtype=torch.float64)
                for _ in range(L)]
        label = f"{L} mixing matrices of size {n} x {n}"
        out = call_learner(fn, list(mats), name="your composite_gain")
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise Mistake("your function should return a pair (forward_gain, "
                          f"backward_gain), got {type(out).__name__}.",
                          "end with `return forward, backward`.")
        got = (as_number(out[0], f"the forward gain ({label})"),
               as_number(out[1], f"the backward gain ({label})"))
        ref = composite_gain(mats)
        # float32 arithmetic on the learner's side is fine: 1e-6 relative
        compare(torch.tensor(got, dtype=torch.float64), torch.tensor(ref, dtype=torch.float64),
                   1e-6, _gain_variants(mats, label), rtol=1e-6, otherwise=Mistake(
                       f"for {label} you returned ({got[0]:.6g}, {got[1]:.6g}); expected "
                       f"({ref[0]:.6g}, {ref[1]:.6g}).",
                       "multiply total = H @ total layer by layer from the identity, then take "
                       "the largest sum of |entries| over a row and over a column."))
    # doubly stochastic matrices compose to a doubly stochastic one: gain exactly 1
    ds = [sinkhorn(torch.randn(4, 4, generator=g, dtype=torch.float64), 200)
          for _ in range(12)]
    out = call_learner(fn, ds, name="your composite_gain")
    got = tuple(as_number(v, "the gain of doubly stochastic matrices") for v in out)
    if any(abs(v - 1) > 1e-6 for v in got):
        raise Mistake(f"12 doubly stochastic matrices should give gains (1, 1); you "
                      f"returned ({got[0]:.6g}, {got[1]:.6g}).",
                      "a product of doubly stochastic matrices is doubly stochastic.")
    return ("check_composite_gain: the product H_L @ ... @ H_1, its maximum absolute "
            "row and column sums; doubly stochastic layers give exactly 1.")
