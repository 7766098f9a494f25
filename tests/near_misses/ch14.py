"""Chapter 14, "Residual paths on the sphere and in many streams": Sinkhorn-Knopp,
nGPT's update on the sphere and the composite gain of the mixing matrices."""

import functools

import torch
import torch.nn.functional as F

import dataclasses

from checker_run import _not_implemented
from near_misses import Attempt, Exercise
from normcourse.exercises.residual_streams import (
    sinkhorn, ngpt_update, composite_gain,
    check_composite_gain, check_ngpt_update, check_sinkhorn,
)

NOTEBOOK = "notebooks/14_residual_streams.ipynb"


def _sk(logits, iters, rows=True, cols=True, first="rows", start=torch.exp):
    m = start(logits)
    for _ in range(iters):
        for step in ((("rows", "cols") if first == "rows" else ("cols", "rows"))):
            if step == "rows" and rows:
                m = m / m.sum(-1, keepdim=True)
            if step == "cols" and cols:
                m = m / m.sum(-2, keepdim=True)
    return m


def _sk_log_domain(logits, iters):
    """Log-domain Sinkhorn (stable for large logits): right."""
    log_m = logits
    for _ in range(iters):
        log_m = log_m - torch.logsumexp(log_m, -1, keepdim=True)
        log_m = log_m - torch.logsumexp(log_m, -2, keepdim=True)
    return log_m.exp()


def _sk_shifted(logits, iters):
    """exp(logits - max): Sinkhorn ignores a common scale, so this is right."""
    return _sk(logits - logits.amax((-2, -1), keepdim=True), iters)


def _unit(v):
    return v / v.norm(dim=-1, keepdim=True)


def _product(mats, reverse=False):
    total = torch.eye(mats[0].shape[-1], dtype=mats[0].dtype)
    for m in mats:
        total = total @ m if reverse else m @ total
    return total


def _gains(t):
    return float(t.abs().sum(-1).max()), float(t.abs().sum(-2).max())


CASES = [
    Exercise(
        check_sinkhorn, NOTEBOOK, "my_sinkhorn",
        near_misses=(
            Attempt("no column step", functools.partial(_sk, cols=False),
                    ("no column step", "row-stochastic")),
            Attempt("no row step", functools.partial(_sk, rows=False), ("no row step",)),
            Attempt("columns first", functools.partial(_sk, first="cols"),
                    ("columns first",)),
            Attempt("no exp", functools.partial(_sk, start=lambda z: z),
                    ("exponential",)),
            Attempt("row softmax", lambda z, n: z.softmax(-1), ("row-stochastic",)),
            Attempt("one round too many", lambda z, n: _sk(z, n + 1), ("rounds",)),
            Attempt("one round too few", lambda z, n: _sk(z, n - 1), ("rounds instead of",)),
        ),
        right_answers=(
            Attempt("log domain", _sk_log_domain),
            Attempt("max subtracted", _sk_shifted),
            Attempt("a row softmax as the first row step", lambda z, n: _sk(
                z.softmax(-1), n, start=lambda t: t)),
        ),
    ),
    Exercise(
        check_ngpt_update, NOTEBOOK, "my_ngpt_update",
        near_misses=(
            Attempt("branch not normalized", lambda h, b, a: _unit(h + a * (b - h)),
                    ("branch output is not normalized",)),
            Attempt("result not normalized", lambda h, b, a: h + a * (_unit(b) - h),
                    ("result is not normalized",)),
            Attempt("plain residual", lambda h, b, a: _unit(h + a * _unit(b)),
                    ("plain residual",)),
            Attempt("alpha swapped", lambda h, b, a: _unit((1 - a) * _unit(b) + a * h),
                    ("wrong end",)),
            Attempt("RMS instead of L2", lambda h, b, a: F.rms_norm(
                h + a * (F.rms_norm(b, b.shape[-1:]) - h), h.shape[-1:]), ("RMS 1",)),
            Attempt("nothing normalized", lambda h, b, a: h + a * (b - h), ("neither",)),
        ),
        right_answers=(
            Attempt("F.normalize", lambda h, b, a: F.normalize(
                torch.lerp(h, F.normalize(b, dim=-1), a), dim=-1)),
            Attempt("(1 - a) h + a b", lambda h, b, a: _unit((1 - a) * h + a * _unit(b))),
            Attempt("torch.lerp, own unit", lambda h, b, a: _unit(torch.lerp(h, _unit(b), a))),
        ),
    ),
    Exercise(
        check_composite_gain, NOTEBOOK, "my_composite_gain",
        near_misses=(
            Attempt("wrong order", lambda ms: _gains(_product(ms, reverse=True)),
                    ("wrong order",)),
            Attempt("sum", lambda ms: _gains(sum(ms)), ("added",)),
            Attempt("last layer", lambda ms: _gains(ms[-1]), ("last layer",)),
            Attempt("swapped", lambda ms: tuple(reversed(_gains(_product(ms)))),
                    ("swapped",)),
            Attempt("abs of the sums", lambda ms: (
                float(_product(ms).sum(-1).abs().max()),
                float(_product(ms).sum(-2).abs().max())), ("negative entries cancel",)),
            Attempt("linalg.multi_dot without one layer", lambda ms: _gains(
                torch.linalg.multi_dot(list(reversed(ms)))), ("raised RuntimeError",)),
            Attempt("product of the layers' gains", lambda ms: tuple(
                torch.tensor([_gains(m) for m in ms]).prod(0).tolist()), ("layers' own gains",)),
            Attempt("spectral norm", lambda ms: (float(torch.linalg.matrix_norm(
                _product(ms), ord=2)),) * 2, ("spectral norm",)),
            Attempt("a single number", lambda ms: _gains(_product(ms))[0], ("a pair",)),
        ),
        right_answers=(
            Attempt("linalg.multi_dot", lambda ms: _gains(
                torch.linalg.multi_dot(list(reversed(ms))) if len(ms) > 1 else ms[0])),
            Attempt("matrix_norm inf and 1", lambda ms: tuple(float(torch.linalg.matrix_norm(
                _product(ms), ord=o)) for o in (float("inf"), 1))),
            Attempt("a list", lambda ms: list(_gains(_product(ms)))),
            Attempt("tensors out", lambda ms: tuple(
                torch.tensor(v) for v in _gains(_product(ms)))),
        ),
    ),
]

# Every exercise: the package's reference is a right answer, the untouched stub a near miss.
CASES = [dataclasses.replace(
    e, near_misses=e.near_misses + (Attempt("the stub", _not_implemented, ("not implemented",)),),
    right_answers=e.right_answers + (Attempt("the package's reference", ref),))
    for e, ref in zip(CASES, (sinkhorn, ngpt_update, composite_gain))]
