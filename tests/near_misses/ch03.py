"""Chapter 3, "BatchNorm vs LayerNorm": near misses and unusual right answers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from near_misses import Attempt, Exercise
from normcourse.exercises.batch_vs_layer import check_batch_norm_train, check_masked_batch_norm

NOTEBOOK = "notebooks/03_batchnorm_vs_layernorm.ipynb"
EPS = 1e-5


# ---- batch_norm_train(x) ---------------------------------------------------------------

def _bn(dim=0, unbiased=False, denom=lambda var: torch.sqrt(var + EPS), center=True):
    def fn(x):
        mean = x.mean(dim=dim, keepdim=True)
        var = x.var(dim=dim, unbiased=unbiased, keepdim=True)
        return ((x - mean) if center else x) / denom(var)
    return fn


def _bn_one_pass(x):
    mean = x.mean(0, keepdim=True)
    var = (x * x).mean(0, keepdim=True) - mean * mean
    return (x - mean) / torch.sqrt(var + EPS)


def _bn_one_pass_float32(x):
    return _bn_one_pass(x.float()).to(x.dtype)


def _bn_inplace(x):
    x -= x.mean(0, keepdim=True)
    return x / torch.sqrt((x * x).mean(0, keepdim=True) + EPS)


def _bn_functional(x):
    return F.batch_norm(x, None, None, training=True, eps=EPS)


def _bn_module(x):
    return nn.BatchNorm1d(x.shape[1], affine=False, track_running_stats=False,
                          dtype=x.dtype).train()(x)


def _bn_layer_norm_of_transpose(x):
    return F.layer_norm(x.T, x.shape[:1], eps=EPS).T


def _bn_var_mean(x):
    var, mean = torch.var_mean(x, dim=0, keepdim=True, correction=0)
    return (x - mean) * torch.rsqrt(var + EPS)


def _bn_columns(x):
    cols = []
    for c in range(x.shape[1]):
        col = x[:, c]
        cols.append((col - col.mean()) / torch.sqrt(((col - col.mean()) ** 2).mean() + EPS))
    return torch.stack(cols, dim=1)


def _bn_float64(x):
    return _bn()(x.double()).to(x.dtype)


BATCH_NORM_TRAIN = Exercise(
    check_batch_norm_train, NOTEBOOK, "batch_norm_train",
    near_misses=(
        Attempt("over each row: LayerNorm", _bn(dim=-1), ("LayerNorm",)),
        Attempt("global statistics", _bn(dim=(0, 1)), ("whole batch",)),
        Attempt("unbiased variance", _bn(unbiased=True), ("unbiased",)),
        Attempt("no eps", _bn(denom=torch.sqrt), ("eps is missing",)),
        Attempt("eps outside the sqrt", _bn(denom=lambda v: torch.sqrt(v) + EPS),
                ("outside the square root",)),
        Attempt("clamp(var, eps)", _bn(denom=lambda v: torch.sqrt(v.clamp(min=EPS))), ("clamp",)),
        Attempt("eps ** 2", _bn(denom=lambda v: torch.sqrt(v + EPS ** 2)), ("eps ** 2",)),
        Attempt("eps = 1e-3", _bn(denom=lambda v: torch.sqrt(v + 1e-3)), ("1e-05",)),
        Attempt("variance, not std", _bn(denom=lambda v: v + EPS), ("variance",)),
        Attempt("not centred", _bn(center=False), ("mean",)),
        Attempt("x.std() default (unbiased) + eps",
                lambda x: (x - x.mean(0)) / (x.std(0) + EPS), ("unbiased",)),
        Attempt("E[x^2] - E[x]^2 in float32", _bn_one_pass_float32, ("E[x^2] - E[x]^2",)),
        Attempt("in place", _bn_inplace, ("in place",)),
        Attempt("float32 result", lambda x: _bn()(x).float(), ("dtype",)),
    ),
    right_answers=(
        Attempt("F.batch_norm", _bn_functional),
        Attempt("nn.BatchNorm1d, train mode", _bn_module),
        Attempt("LayerNorm of the transpose", _bn_layer_norm_of_transpose),
        Attempt("var_mean + rsqrt", _bn_var_mean),
        Attempt("loop over columns", _bn_columns),
        Attempt("float64 inside", _bn_float64),
        Attempt("E[x^2] - E[x]^2 in float64", lambda x: _bn_one_pass(x.double()).to(x.dtype)),
    ),
)


# ---- masked_batch_norm(x, mask) -----------------------------------------------------------

def _masked(count="real", unbiased=False, zero_pads=True, use_mask_in_sums=True, eps=EPS):
    def fn(x, mask):
        w = mask[..., None].to(x.dtype)
        xs = x * w if use_mask_in_sums else x
        n = {"real": w.sum(dim=(0, 1)), "all": torch.tensor(float(mask.numel()), dtype=x.dtype)}[count]
        mean = xs.sum(dim=(0, 1)) / n
        dev = (x - mean) * w if use_mask_in_sums else (x - mean)
        var = (dev ** 2).sum(dim=(0, 1)) / (n - 1 if unbiased else n)
        y = (x - mean) / torch.sqrt(var + eps)
        return y * w if zero_pads else y
    return fn


def _masked_var(x, mask):
    w = mask[..., None].to(x.dtype)
    mean = (x * w).sum(dim=(0, 1)) / w.sum(dim=(0, 1))
    return (((x - mean) * w) ** 2).sum(dim=(0, 1)) / w.sum(dim=(0, 1))


def _masked_no_mask(x, mask):
    flat = x.reshape(-1, x.shape[-1])
    y = (x - flat.mean(0)) / torch.sqrt(flat.var(0, unbiased=False) + EPS)
    return y * mask[..., None]


def _masked_per_sequence(x, mask):
    out = torch.zeros_like(x)
    for b in range(x.shape[0]):
        real = x[b][mask[b]]
        out[b][mask[b]] = (real - real.mean(0)) / torch.sqrt(real.var(0, unbiased=False) + EPS)
    return out


def _masked_assumes_zero_pads(x, mask):
    # right only while the padded positions hold zeros: x.sum() reads them
    w = mask[..., None].to(x.dtype)
    n = w.sum(dim=(0, 1))
    mean = x.sum(dim=(0, 1)) / n
    var = (x * x).sum(dim=(0, 1)) / n - mean ** 2
    return (x - mean) / torch.sqrt(var + EPS) * w


def _masked_mean_only(x, mask):
    # the mean ignores the pads, the variance does not
    w = mask[..., None].to(x.dtype)
    mean = (x * w).sum(dim=(0, 1)) / w.sum(dim=(0, 1))
    var = ((x - mean) ** 2).mean(dim=(0, 1))
    return (x - mean) / torch.sqrt(var + EPS) * w


def _masked_select(x, mask):
    real = x[mask]                                # (number of real tokens, C)
    out = torch.zeros_like(x)
    out[mask] = (real - real.mean(0)) / torch.sqrt(real.var(0, unbiased=False) + EPS)
    return out


def _masked_where(x, mask):
    m = mask[..., None]
    n = m.sum(dim=(0, 1))
    mean = torch.where(m, x, 0.0).sum(dim=(0, 1)) / n
    var = torch.where(m, (x - mean) ** 2, 0.0).sum(dim=(0, 1)) / n
    return torch.where(m, (x - mean) * torch.rsqrt(var + EPS), 0.0)


def _masked_batch_norm1d(x, mask):
    real = x[mask]
    out = x.new_zeros(x.shape)
    out[mask] = nn.BatchNorm1d(x.shape[-1], affine=False, track_running_stats=False,
                               dtype=x.dtype)(real)
    return out


def _masked_float64(x, mask):
    return _masked()(x.double(), mask).to(x.dtype)


def _masked_inplace(x, mask):
    x[~mask] = 0.0
    return _masked()(x, mask)


MASKED_BATCH_NORM = Exercise(
    check_masked_batch_norm, NOTEBOOK, "masked_batch_norm",
    near_misses=(
        Attempt("pads not zeroed", _masked(zero_pads=False), ("padded positions are not zero",)),
        Attempt("pads counted (no mask)", _masked_no_mask, ("padding tokens were counted",)),
        Attempt("divided by B * T", _masked(count="all"), ("B * T",)),
        Attempt("unbiased variance", _masked(unbiased=True), ("unbiased",)),
        Attempt("each sequence alone", _masked_per_sequence, ("each sequence",)),
        Attempt("relies on zero padding", _masked_assumes_zero_pads, ("padded positions",)),
        Attempt("deviations of the pads counted", _masked(use_mask_in_sums=False),
                ("entered the variance",)),
        Attempt("mask in the mean only", _masked_mean_only, ("entered the variance",)),
        Attempt("no eps", _masked(eps=0.0), ("eps is missing",)),
        Attempt("eps outside the sqrt",
                lambda x, m: _masked(eps=0.0)(x, m) * torch.sqrt(
                    _masked_var(x, m)) / (torch.sqrt(_masked_var(x, m)) + EPS),
                ("outside the square root",)),
        Attempt("pads zeroed in place", _masked_inplace, ("in place",)),
        Attempt("float32 result", lambda x, m: _masked()(x, m).float(), ("dtype",)),
    ),
    right_answers=(
        Attempt("boolean indexing", _masked_select),
        Attempt("torch.where", _masked_where),
        Attempt("nn.BatchNorm1d on the real tokens", _masked_batch_norm1d),
        Attempt("float64 inside", _masked_float64),
    ),
)

CASES = [BATCH_NORM_TRAIN, MASKED_BATCH_NORM]
