"""Checkers for the chapter "BatchNorm vs LayerNorm".

- :func:`check_batch_norm_train`: BatchNorm's training-mode normalization of a (B, C) batch.
- :func:`check_masked_batch_norm`: BatchNorm statistics over the real tokens of a padded batch.
"""

from __future__ import annotations

import dataclasses

import torch

from normcourse.exercises.feedback import (
    Mistake, Wrong, call_learner, checker, close, compare, expect_tensor, float32_error, generator,
    max_error,
)

__all__ = ["check_batch_norm_train", "check_masked_batch_norm"]

EPS = 1e-5


def _bn_ref(x, dims, eps=EPS, unbiased=False):
    """BatchNorm's normalization in the input's dtype (float64 for the references)."""
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=unbiased)
    return (x - mean) / torch.sqrt(var + eps)


def _batch_cases():
    gen = generator(31)
    a = torch.randn(8, 5, generator=gen, dtype=torch.float64) * 3 + 2
    b = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    b[:, 2] = 0.7 + 1e-4 * torch.randn(4, generator=gen, dtype=torch.float64)  # almost constant
    # a feature whose variance is about eps: clamp(var, eps), eps ** 2 and a wrong eps show
    b[:, 4] = -0.3 + 3e-3 * torch.randn(4, generator=gen, dtype=torch.float64)
    c = torch.randn(32, 3, generator=gen, dtype=torch.float32) * 0.5 - 1
    # float32 features with a large mean: E[x^2] - E[x]^2 cancels catastrophically
    d = (torch.randn(16, 4, generator=gen, dtype=torch.float64) * 0.05 + 300).float()
    return [b, a, c, d]  # b first: only there do the eps mistakes differ from each other


def _float32_tolerance(reference, *args) -> float:
    """What computing in float32 inside costs on these inputs, with room to spare.

    The reference is computed in float64 from the very same input, so the bar is
    a few times the error of the float32 computation on that input (an almost
    constant feature, or one with a large mean, loses more), plus a floor.
    """
    floor = 1e-5 if args[0].dtype == torch.float32 else 1e-9
    wide = [a.double() if isinstance(a, torch.Tensor) and a.is_floating_point() else a
            for a in args]
    return 4 * float32_error(reference, *wide) + floor


def _effective_eps(out, x):
    """The eps that ``out`` implies on the feature where eps matters most, or None.

    There out = (x - mean) / sqrt(var + e), so e = ((x - mean) / out)^2 - var.
    """
    x64, out64 = x.double(), out.detach().double()
    var = x64.var(0, unbiased=False)
    c = int(torch.argmin((var - EPS).abs()))  # the feature whose variance is closest to eps
    dev = x64[:, c] - x64[:, c].mean()
    usable = (dev.abs() > 1e-3 * dev.abs().max()) & (out64[:, c] != 0)
    if not usable.any():
        return None
    used = float(((dev[usable] / out64[usable, c]) ** 2).median() - var[c])
    return used if used > 0 and used == used else None


def _one_pass_float32(x):
    """BatchNorm with the variance as E[x^2] - E[x]^2, computed in float32 as a learner would."""
    xf = x.float()
    mean = xf.mean(0, keepdim=True)
    var = (xf * xf).mean(0, keepdim=True) - mean * mean
    return ((xf - mean) / torch.sqrt(var + EPS)).double()


def _bn_mistakes(x):
    """The known wrong BatchNorms on this input, in float64."""
    x64 = x.double()
    mean, var = x64.mean(0, keepdim=True), x64.var(0, unbiased=False, keepdim=True)
    biased_std = var.sqrt()
    sqrt_hint = "divide by torch.sqrt(var + eps) with eps = 1e-5."
    return [
        Wrong("you normalized each row (one example over its features): that is LayerNorm.",
              "BatchNorm takes the mean and variance of each feature over the batch: dim=0.",
              lambda: _bn_ref(x64, -1)),
        Wrong("you used one mean and one variance for the whole batch (all features together); "
              "BatchNorm keeps per-feature statistics.",
              "reduce over dim=0 only, with keepdim=True: one mean and variance per column.",
              lambda: _bn_ref(x64, (0, 1))),
        Wrong("you used the unbiased variance (divide by B - 1).",
              "normalization uses the biased variance: x.var(dim=0, unbiased=False).",
              lambda: _bn_ref(x64, 0, unbiased=True)),
        Wrong("you divided by x.std() + eps: std() is unbiased by default (divides by B - 1), "
              "and eps belongs inside the square root.", sqrt_hint + " Use the biased variance.",
              lambda: (x64 - mean) / (x64.std(0, keepdim=True) + EPS)),
        Wrong("you clamped the variance at eps (clamp(var, eps)): that only acts when var < eps, "
              "where BatchNorm adds eps to every variance.", sqrt_hint,
              lambda: (x64 - mean) / torch.sqrt(var.clamp(min=EPS))),
        Wrong("you added eps ** 2 (1e-10), not eps (1e-5), to the variance.", sqrt_hint,
              lambda: _bn_ref(x64, 0, eps=EPS ** 2)),
        Wrong("a feature that is (almost) constant over the batch is blown up: eps is missing.",
              sqrt_hint, lambda: _bn_ref(x64, 0, eps=0.0)),
        Wrong("eps is added outside the square root: BatchNorm divides by sqrt(var + eps), not "
              "sqrt(var) + eps.", sqrt_hint, lambda: (x64 - mean) / (biased_std + EPS)),
        Wrong("you divided by the variance: normalization divides by the standard deviation, "
              "sqrt(var + eps).", sqrt_hint, lambda: (x64 - mean) / (var + EPS)),
        Wrong("your variance loses precision: E[x^2] - E[x]^2 in float32 subtracts two nearly "
              "equal numbers on a feature whose spread is small next to its mean.",
              "compute the mean first, then the mean of (x - mean) ** 2 (two passes).",
              lambda: _one_pass_float32(x)),
        Wrong("you did not subtract the mean: every feature must end up with mean 0.",
              "(x - mean) / sqrt(var + eps), with mean = x.mean(dim=0, keepdim=True).",
              lambda: x64 / torch.sqrt(var + EPS)),
    ]


def _lost_precision(fn, x, out, name) -> Wrong:
    """A wrong float32 answer that is right on the same numbers in float64 lost precision."""
    def value():
        x64 = x.double()
        if x.dtype != torch.float32 or not close(
                call_learner(fn, x64, name=name), _bn_ref(x64, 0),
                atol=_float32_tolerance(lambda v: _bn_ref(v, 0), x64)):
            raise ValueError("not a loss of precision")
        return out

    return Wrong(
        f"your answer is right on these numbers in float64, but loses precision on float32 "
        f"features with a large mean ({float(x.mean()):.0f} +- {float(x.std()):.2g}): "
        "E[x^2] - E[x]^2 subtracts two numbers near 1e5 and cancels catastrophically.",
        "compute the mean first, then the mean of (x - mean) ** 2 (two passes).", value)


def _other_eps(out, x) -> list[Wrong]:
    """The BatchNorm with the eps ``out`` implies, when that is not the exercise's."""
    used = _effective_eps(out, x)
    if used is None or abs(used - EPS) <= 0.5 * EPS:
        return []
    return [Wrong(f"your BatchNorm behaves as if eps were {used:.2g}; the exercise's eps "
                  f"is {EPS:g}.", "divide by torch.sqrt(var + 1e-5).",
                  lambda: _bn_ref(x.double(), 0, eps=used))]


@checker
def check_batch_norm_train(fn) -> str:
    """``fn(x)`` normalizes each column (feature) of a (B, C) batch over the batch, eps=1e-5."""
    for x in _batch_cases():
        out = expect_tensor(call_learner(fn, x, name="batch_norm_train"), x)
        ref = _bn_ref(x.double(), 0)
        tol = _float32_tolerance(lambda v: _bn_ref(v, 0), x)
        if close(out, ref, atol=tol, rtol=tol):
            continue
        compare(out, ref, tol, _bn_mistakes(x) + [_lost_precision(fn, x, out, "batch_norm_train")]
                + _other_eps(out, x), rtol=tol, otherwise=Mistake(
                    f"for a batch of shape {tuple(x.shape)} the largest error is "
                    f"{max_error(out, ref):.3g}.",
                    "compute mean and biased variance over dim=0 with keepdim=True, then "
                    "(x - mean) / sqrt(var + 1e-5); no affine parameters."))
    return "batch_norm_train is correct: each feature normalized over the batch."


def _padded_cases():
    gen = generator(32)
    cases = []
    for lengths, c in (([3, 7, 5], 4), ([2, 9], 6), ([4, 4, 1, 6], 3)):
        t = max(lengths)
        x = torch.randn(len(lengths), t, c, generator=gen, dtype=torch.float64) * 2 + 1
        mask = torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]
        x = x.masked_fill(~mask[..., None], 0.0)   # zero padding, as a collate function makes it
        cases.append((x, mask))
    # After a layer that is not masked the padded positions no longer hold zeros: an answer
    # that relied on the padding being 0 reads them here.
    lengths, c = [5, 2, 8], 5
    x = torch.randn(len(lengths), max(lengths), c, generator=gen, dtype=torch.float64) - 0.5
    x[..., 3] = 0.2 + 3e-3 * x[..., 3]  # a channel whose variance is about eps: eps shows
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    pads = torch.randn(x.shape, generator=gen, dtype=torch.float64) * 3 + 4
    cases.append((torch.where(mask[..., None], x, pads), mask))
    return cases


def _masked_ref(x, mask, count=None, unbiased=False, include_pads=False):
    m = torch.ones_like(mask) if include_pads else mask
    w = m[..., None].to(x.dtype)
    n = w.sum(dim=(0, 1), keepdim=True) if count is None else count
    mean = (x * w).sum(dim=(0, 1), keepdim=True) / n
    var = (((x - mean) * w) ** 2).sum(dim=(0, 1), keepdim=True) / (n - 1 if unbiased else n)
    return ((x - mean) / torch.sqrt(var + EPS)) * mask[..., None].to(x.dtype)


def _masked_mistakes(x, mask, out, real) -> list[Wrong]:
    """The known wrong masked BatchNorms, each as its values on the real tokens."""
    w = mask[..., None].to(x.dtype)
    n = w.sum(dim=(0, 1))
    bt = torch.tensor(float(mask.numel()), dtype=x.dtype)
    mean = (x * w).sum(dim=(0, 1)) / n
    var = (((x - mean) * w) ** 2).sum(dim=(0, 1)) / n
    pads_in_var = Wrong("the mean is right, but the padded positions entered the variance: "
                        "(x - mean) ** 2 at a pad is not 0.",
                        "multiply the deviations by the mask before squaring and summing, and "
                        "divide by the number of real tokens.", None)

    def normalized(denom):
        return lambda: ((x - mean) / denom)[real]

    def per_sequence():
        per_seq = torch.zeros_like(x)
        for b in range(x.shape[0]):
            length = int(mask[b].sum())
            per_seq[b, :length] = _bn_ref(x[b, :length], 0)
        return per_seq[real]

    def reads_pads():
        if (x[~real] == 0).all():   # the earlier, zero-padded batches passed
            raise ValueError("the pads hold zeros here")
        return out[real]

    eps_hint = "(x - mean) / torch.sqrt(var + 1e-5)."
    eps_shows = (": BatchNorm divides by sqrt(var + eps), and a channel whose variance is about "
                 "eps shows the difference.")
    return [
        Wrong("the padding tokens were counted in the mean and variance.",
              "sum only over positions where mask is True, and divide by the number of real "
              "tokens, mask.sum().", lambda: _masked_ref(x, mask, include_pads=True)[real]),
        Wrong("you summed over the real tokens but divided by B * T, padding included.",
              "divide by the number of real tokens, mask.sum().",
              lambda: _masked_ref(x, mask, count=bt)[real]),
        *(dataclasses.replace(pads_in_var, value=normalized(torch.sqrt(
            ((x - mean) ** 2).sum(dim=(0, 1)) / count + EPS))) for count in (n, bt)),
        Wrong("eps is missing" + eps_shows, eps_hint, normalized(var.sqrt())),
        Wrong("eps is added outside the square root" + eps_shows, eps_hint,
              normalized(var.sqrt() + EPS)),
        Wrong("you used the unbiased variance (divide by n - 1).",
              "divide the sum of squared deviations by n, the number of real tokens.",
              lambda: _masked_ref(x, mask, unbiased=True)[real]),
        Wrong("you normalized each sequence over its own tokens.",
              "BatchNorm pools the real tokens of *all* sequences in the batch, per channel.",
              per_sequence),
        Wrong("your statistics read the padded positions: right when they hold zeros, as in "
              "the batches before, but here they hold other numbers (as after a layer that "
              "does not mask its output).",
              "weight every sum by the mask (x * mask[..., None]) or select the real tokens "
              "with x[mask], in the mean and in the variance.", reads_pads),
    ]


@checker
def check_masked_batch_norm(fn) -> str:
    """``fn(x, mask)``: per-channel statistics over real tokens only; padded positions set to 0."""
    for x, mask in _padded_cases():
        out = expect_tensor(call_learner(fn, x, mask, name="masked_batch_norm"), x)
        ref = _masked_ref(x, mask)
        tol = _float32_tolerance(_masked_ref, x, mask)
        if close(out, ref, atol=tol):
            continue
        real = mask[..., None].expand_as(x)
        if close(out[real], ref[real], atol=tol):
            raise Mistake("the real tokens are right, but padded positions are not zero.",
                          "multiply the result by the mask (mask[..., None]) or use masked_fill.")
        generic = Mistake(f"for a batch of shape {tuple(x.shape)} with lengths "
                          f"{mask.sum(1).tolist()} the largest error on real tokens is "
                          f"{(out - ref)[real].abs().max():.3g}.",
                          "per channel: mean and biased variance over the real tokens of every "
                          "sequence, (x - mean) / sqrt(var + 1e-5), then zero the padded "
                          "positions.")
        # the wrong formulas are off by far more than this on the real tokens
        compare(out[real], ref[real], max(tol, 1e-6), _masked_mistakes(x, mask, out, real),
                rtol=1e-6, otherwise=generic)
        raise generic  # within the looser bar, but not within the tolerance
    return "masked_batch_norm is correct: statistics over real tokens only, padding ignored."
