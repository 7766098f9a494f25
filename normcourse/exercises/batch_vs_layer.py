"""Checkers for the chapter "BatchNorm vs LayerNorm".

- :func:`check_batch_norm_train`: BatchNorm's training-mode normalization of a (B, C) batch.
- :func:`check_masked_batch_norm`: BatchNorm statistics over the real tokens of a padded batch.
"""

from __future__ import annotations

import torch

from normcourse.exercises.feedback import (
    Mistake, call_learner, checker, close, expect_tensor, float32_error, is_mistake, max_error,
)

__all__ = ["check_batch_norm_train", "check_masked_batch_norm"]

EPS = 1e-5


def _bn_ref(x, dims, eps=EPS, unbiased=False):
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=unbiased)
    return (x - mean) / torch.sqrt(var + eps)


def _batch_cases():
    gen = torch.Generator().manual_seed(31)
    a = torch.randn(8, 5, generator=gen, dtype=torch.float64) * 3 + 2
    b = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    b[:, 2] = 0.7 + 1e-4 * torch.randn(4, generator=gen, dtype=torch.float64)  # almost constant
    c = torch.randn(32, 3, generator=gen, dtype=torch.float32) * 0.5 - 1
    return [a, b, c]


def _tolerance(reference, *args) -> float:
    """What computing in float32 inside costs on these inputs, with room to spare.

    Float32 inputs are compared at 1e-4; float64 ones as tightly as float32 math
    allows, measured on the same input (an almost constant feature loses more).
    """
    if args[0].dtype == torch.float32:
        return 1e-4
    return 4 * float32_error(reference, *args) + 1e-9


@checker
def check_batch_norm_train(fn) -> str:
    """``fn(x)`` normalizes each column (feature) of a (B, C) batch over the batch, eps=1e-5."""
    for x in _batch_cases():
        out = expect_tensor(call_learner(fn, x, name="batch_norm_train"), x)
        ref = _bn_ref(x, 0)
        tol = _tolerance(lambda v: _bn_ref(v, 0), x)
        if close(out, ref, atol=tol, rtol=tol):
            continue
        wrong = [
            (_bn_ref(x, -1),
             "you normalized each row (one example over its features): that is LayerNorm.",
             "BatchNorm takes the mean and variance of each feature over the batch: dim=0."),
            (_bn_ref(x, 0, unbiased=True), "you used the unbiased variance (divide by B - 1).",
             "normalization uses the biased variance: x.var(dim=0, unbiased=False)."),
        ] + [(no_eps, "a feature that is (almost) constant over the batch is blown up: eps is "
                      "missing or outside the square root.",
              "divide by torch.sqrt(var + eps) with eps = 1e-5.")
             for no_eps in (_bn_ref(x, 0, eps=0.0),
                            (x - x.mean(0)) / (x.std(0, unbiased=False) + EPS))]
        for candidate, what, hint in wrong:
            if is_mistake(out, candidate, ref, atol=tol, rtol=tol):
                raise Mistake(what, hint)
        raise Mistake(f"for a batch of shape {tuple(x.shape)} the largest error is "
                      f"{max_error(out, ref):.3g}.",
                      "compute mean and biased variance over dim=0 with keepdim=True, then "
                      "(x - mean) / sqrt(var + 1e-5); no affine parameters.")
    return "batch_norm_train is correct: each feature normalized over the batch."


def _padded_cases():
    gen = torch.Generator().manual_seed(32)
    cases = []
    for lengths, c in (([3, 7, 5], 4), ([2, 9], 6), ([4, 4, 1, 6], 3)):
        t = max(lengths)
        x = torch.randn(len(lengths), t, c, generator=gen, dtype=torch.float64) * 2 + 1
        mask = torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]
        x = x.masked_fill(~mask[..., None], 0.0)   # zero padding, as a collate function makes it
        cases.append((x, mask))
    return cases


def _masked_ref(x, mask, count=None, unbiased=False, include_pads=False):
    m = torch.ones_like(mask) if include_pads else mask
    w = m[..., None].to(x.dtype)
    n = w.sum(dim=(0, 1), keepdim=True) if count is None else count
    mean = (x * w).sum(dim=(0, 1), keepdim=True) / n
    var = (((x - mean) * w) ** 2).sum(dim=(0, 1), keepdim=True) / (n - 1 if unbiased else n)
    return ((x - mean) / torch.sqrt(var + EPS)) * mask[..., None].to(x.dtype)


@checker
def check_masked_batch_norm(fn) -> str:
    """``fn(x, mask)``: per-channel statistics over real tokens only; padded positions set to 0."""
    for x, mask in _padded_cases():
        out = expect_tensor(call_learner(fn, x, mask, name="masked_batch_norm"), x)
        ref = _masked_ref(x, mask)
        tol = _tolerance(_masked_ref, x, mask)
        if close(out, ref, atol=tol):
            continue
        loose = max(tol, 1e-6)  # the wrong formulas below are off by far more than this
        real = mask[..., None].expand_as(x)
        if close(out[real], ref[real], atol=tol):
            raise Mistake("the real tokens are right, but padded positions are not zero.",
                          "multiply the result by the mask (mask[..., None]) or use masked_fill.")
        if close(out, _masked_ref(x, mask, include_pads=True), atol=loose, rtol=1e-6) or close(
                out[real], _bn_ref(x, (0, 1))[real], atol=loose, rtol=1e-6):
            raise Mistake("the padding tokens were counted in the mean and variance.",
                          "sum only over positions where mask is True, and divide by the number "
                          "of real tokens, mask.sum().")
        bt = torch.tensor(float(mask.numel()), dtype=x.dtype)
        if close(out, _masked_ref(x, mask, count=bt), atol=loose, rtol=1e-6) or close(
                out[real], _masked_ref(x, mask, count=bt)[real], atol=loose, rtol=1e-6):
            raise Mistake("you summed over the real tokens but divided by B * T, padding included.",
                          "divide by the number of real tokens, mask.sum().")
        if close(out[real], _masked_ref(x, mask, unbiased=True)[real], atol=loose, rtol=1e-6):
            raise Mistake("you used the unbiased variance (divide by n - 1).",
                          "divide the sum of squared deviations by n, the number of real tokens.")
        per_seq = torch.zeros_like(x)
        for b in range(x.shape[0]):
            n = int(mask[b].sum())
            per_seq[b, :n] = _bn_ref(x[b, :n], 0)
        if close(out[real], per_seq[real], atol=loose, rtol=1e-6):
            raise Mistake("you normalized each sequence over its own tokens.",
                          "BatchNorm pools the real tokens of *all* sequences in the batch, per channel.")
        raise Mistake(f"for a batch of shape {tuple(x.shape)} with lengths "
                      f"{mask.sum(1).tolist()} the largest error on real tokens is "
                      f"{(out - ref)[real].abs().max():.3g}.",
                      "per channel: mean and biased variance over the real tokens of every "
                      "sequence, (x - mean) / sqrt(var + 1e-5), then zero the padded positions.")
    return "masked_batch_norm is correct: statistics over real tokens only, padding ignored."
