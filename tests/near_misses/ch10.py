"""Chapter 10, "Depth that does not pay": adjacent cosine and forward skipping."""

import functools

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from checker_run import _not_implemented
from near_misses import Attempt, Exercise
from normcourse import ablations
from normcourse.exercises.depth import check_adjacent_cosine, check_forward_skipping

NOTEBOOK = "notebooks/10_depth_that_does_not_pay.ipynb"


def _pairs(hs):
    return zip(hs[:-1], hs[1:])


def _cos(a, b):
    return F.cosine_similarity(a, b, dim=-1).mean().item()


# ------------------------------------------------------------------ adjacent cosine: right

def _by_hand(hs):
    return [((a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))).mean().item()
            for a, b in _pairs(hs)]


def _stacked(hs):
    h = torch.stack(hs)                                  # (L + 1, B, T, d)
    return F.cosine_similarity(h[:-1], h[1:], dim=-1).mean(dim=(1, 2))


def _numpy(hs):
    out = []
    for a, b in _pairs(hs):
        a, b = a.numpy(), b.numpy()
        c = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
        out.append(float(c.mean()))
    return out


def _numpy_array(hs):
    # right values, but a float64 array: the chapter's torch.allclose with its float32
    # reference then refuses to compare
    return np.array(_numpy(hs))


def _loop_per_position(hs):
    out = []
    for a, b in _pairs(hs):
        flat_a, flat_b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
        total = 0.0
        for u, v in zip(flat_a, flat_b):
            total += float(u @ v / (u.norm() * v.norm()))
        out.append(total / len(flat_a))
    return out


def _normalize_then_dot(hs):
    return tuple(F.normalize(a, dim=-1).mul(F.normalize(b, dim=-1)).sum(-1).mean()
                 for a, b in _pairs(hs))


def _in_float32(hs):
    return [F.cosine_similarity(a.float(), b.float(), dim=-1).mean().item() for a, b in _pairs(hs)]


# ------------------------------------------------------------------ adjacent cosine: near misses

def _abs_per_position(hs):
    return [F.cosine_similarity(a, b, dim=-1).abs().mean().item() for a, b in _pairs(hs)]


def _abs_of_mean(hs):
    return [abs(_cos(a, b)) for a, b in _pairs(hs)]


def _abs_dot(hs):
    # |a . b| / (|a| |b|): the abs() hidden in the formula
    return [((a * b).sum(-1).abs() / (a.norm(dim=-1) * b.norm(dim=-1))).mean().item()
            for a, b in _pairs(hs)]


def _default_dim(hs):
    return [F.cosine_similarity(a, b).mean().item() for a, b in _pairs(hs)]


def _averaged_first(hs):
    return [F.cosine_similarity(a.mean((0, 1)), b.mean((0, 1)), dim=0).item() for a, b in _pairs(hs)]


def _centred(hs):
    return [F.cosine_similarity(a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True),
                                dim=-1).mean().item() for a, b in _pairs(hs)]


def _popped(hs):
    first = hs.pop(0)                                    # changes the caller's list
    out, prev = [], first
    for h in hs:
        out.append(_cos(prev, h))
        prev = h
    return out


def _normalized_in_place(hs):
    for h in hs:
        h.div_(h.norm(dim=-1, keepdim=True))
    return [(a * b).sum(-1).mean().item() for a, b in _pairs(hs)]


def _off_by_one(hs):
    return [_cos(a, b) for a, b in zip(hs[1:-1], hs[2:])]


def _with_self(hs):
    return [_cos(a, b) for a, b in zip(hs, hs)]


def _per_position_tensor(hs):
    return torch.stack([F.cosine_similarity(a, b, dim=-1) for a, b in _pairs(hs)])


# ------------------------------------------------------------------ forward skipping: right

def _loop(x, blocks, skip):
    for i, block in enumerate(blocks):
        if i == skip:
            continue
        x = block(x)
    return x


def _sequential(x, blocks, skip):
    kept = [b for i, b in enumerate(blocks) if i != skip]
    return nn.Sequential(*kept)(x)


def _slices(x, blocks, skip):
    for block in blocks[:skip] + blocks[skip + 1:]:
        x = block(x)
    return x


def _reduce(x, blocks, skip):
    kept = [b for i, b in enumerate(blocks) if i != skip]
    return functools.reduce(lambda h, block: block(h), kept, x)


def _copy_then_pop(x, blocks, skip):
    kept = list(blocks)
    kept.pop(skip)                                       # a copy: the caller's list is intact
    for block in kept:
        x = block.forward(x)
    return x


def _module_list(x, blocks, skip):
    stack = nn.ModuleList(blocks)
    for i in range(len(stack)):
        if i != skip:
            x = stack[i](x)
    return x


def _no_grad(x, blocks, skip):
    with torch.no_grad():
        return _loop(x, blocks, skip)


# ------------------------------------------------------------------ forward skipping: near misses

def _del(x, blocks, skip):
    del blocks[skip]
    for block in blocks:
        x = block(x)
    return x


def _pop(x, blocks, skip):
    blocks.pop(skip)
    return nn.Sequential(*blocks)(x)


def _identity_in_place(x, blocks, skip):
    blocks[skip] = nn.Identity()
    for block in blocks:
        x = block(x)
    return x


def _all(x, blocks, skip):
    for block in blocks:
        x = block(x)
    return x


def _forgot_plus_one(x, blocks, skip):
    for block in blocks[:skip] + blocks[skip:]:
        x = block(x)
    return x


def _one_based(x, blocks, skip):
    return _loop(x, blocks, skip - 1)


def _stop(x, blocks, skip):
    for block in blocks[:skip]:
        x = block(x)
    return x


def _start_after(x, blocks, skip):
    for block in blocks[skip + 1:]:
        x = block(x)
    return x


def _reverse(x, blocks, skip):
    for i in reversed(range(len(blocks))):
        if i != skip:
            x = blocks[i](x)
    return x


def _residual_again(x, blocks, skip):
    for i, block in enumerate(blocks):
        if i != skip:
            x = x + block(x)
    return x


def _zeros(x, blocks, skip):
    for i, block in enumerate(blocks):
        x = torch.zeros_like(x) if i == skip else block(x)
    return x


def _wasteful(x, blocks, skip):
    for i, block in enumerate(blocks):
        y = block(x)
        if i != skip:
            x = y
    return x


def _in_place(x, blocks, skip):
    for i, block in enumerate(blocks):
        if i != skip:
            x.copy_(block(x))
    return x


def _by_identity(x, blocks, skip):
    skipped = blocks[skip]
    for block in blocks:
        if block is not skipped:                         # a reused block goes at every position
            x = block(x)
    return x


def _by_index(x, blocks, skip):
    for block in blocks:
        if blocks.index(block) != skip:                  # index() finds the first position only
            x = block(x)
    return x


def _float32(x, blocks, skip):
    return _loop(x, blocks, skip).float()


CASES = [
    Exercise(
        checker=check_adjacent_cosine, notebook=NOTEBOOK, function="my_adjacent_cosine",
        near_misses=(
            Attempt("abs() of each cosine", _abs_per_position, ("absolute value", "negative")),
            Attempt("abs() of the mean cosine", _abs_of_mean, ("absolute value", "negative")),
            Attempt("abs() of the dot product", _abs_dot, ("absolute value",)),
            Attempt("F.cosine_similarity's default dim=1", _default_dim, ("dimension 1",)),
            Attempt("dim=0", lambda hs: [F.cosine_similarity(a, b, dim=0).mean().item()
                                         for a, b in _pairs(hs)], ("dimension 0",)),
            Attempt("one cosine of the flattened tensors",
                    lambda hs: [F.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()
                                for a, b in _pairs(hs)], ("flattened",)),
            Attempt("cosine of the averaged vectors", _averaged_first, ("averaged the vectors",)),
            Attempt("compared with h_0",
                    lambda hs: [_cos(hs[0], b) for b in hs[1:]], ("embeddings h_0",)),
            Attempt("mean dot product", lambda hs: [(a * b).sum(-1).mean().item() for a, b in _pairs(hs)],
                    ("dot product",)),
            Attempt("1 - cosine", lambda hs: [1 - _cos(a, b) for a, b in _pairs(hs)], ("1 - cosine",)),
            Attempt("dot over mean norms",
                    lambda hs: [((a * b).sum(-1).mean() / (a.norm(dim=-1).mean()
                                                           * b.norm(dim=-1).mean())).item()
                                for a, b in _pairs(hs)], ("mean norms",)),
            Attempt("centred (a correlation)", _centred, ("centred",)),
            Attempt("whole-tensor norms", lambda hs: [((a * b).sum(-1) / (a.norm() * b.norm())).mean().item()
                                                      for a, b in _pairs(hs)], ("whole tensors",)),
            Attempt("averaged over the batch only", lambda hs: [F.cosine_similarity(a, b, dim=-1).mean(0)
                                                                for a, b in _pairs(hs)], ("one number",)),
            Attempt("reverse order", lambda hs: [_cos(a, b) for a, b in _pairs(hs)][::-1],
                    ("reverse order",)),
            Attempt("off by one: skips layer 1", _off_by_one, ("len(hiddens) - 1",)),
            Attempt("a leading 1 for h_0", lambda hs: [1.0] + [_cos(a, b) for a, b in _pairs(hs)],
                    ("len(hiddens) - 1",)),
            Attempt("each state with itself", _with_self, ("expected",)),
            Attempt("per-position cosines, not averaged", _per_position_tensor,
                    ("one number per layer",)),
            Attempt("pops h_0 off the caller's list", _popped, ("changed the list", "hiddens")),
            Attempt("normalizes the hidden states in place", _normalized_in_place, ("in place",)),
            Attempt("a float64 NumPy array", _numpy_array, ("float64", "float32")),
            Attempt("returns None", lambda hs: None, ("NoneType",)),
            Attempt("the stub", _not_implemented, ("not implemented",)),
            Attempt("float64 values", lambda hs: [F.cosine_similarity(a.double(), b.double(), dim=-1).mean()
                                                  for a, b in _pairs(hs)], ("float64",)),
        ),
        right_answers=(
            Attempt("F.cosine_similarity per pair", lambda hs: [_cos(a, b) for a, b in _pairs(hs)]),
            Attempt("by hand, dot over norms", _by_hand),
            Attempt("stacked, vectorized, a 1-D tensor", _stacked),
            Attempt("NumPy, then floats", _numpy),
            Attempt("a loop over positions", _loop_per_position),
            Attempt("normalize then dot, a tuple of 0-d tensors", _normalize_then_dot),
            Attempt("computed in float32", _in_float32),
            Attempt("normcourse.ablations.adjacent_cosine", ablations.adjacent_cosine),
            Attempt("indices", lambda hs: [_cos(hs[i], hs[i + 1]) for i in range(len(hs) - 1)]),
        ),
    ),
    Exercise(
        checker=check_forward_skipping, notebook=NOTEBOOK, function="my_forward_skipping",
        near_misses=(
            Attempt("del blocks[skip]", _del, ("changed the list", "blocks")),
            Attempt("blocks.pop(skip)", _pop, ("changed the list", "blocks")),
            Attempt("blocks[skip] = nn.Identity()", _identity_in_place, ("changed the list", "replaced")),
            Attempt("nothing left out", _all, ("applied every block",)),
            Attempt("blocks[:skip] + blocks[skip:]", _forgot_plus_one, ("applied every block",)),
            Attempt("1-based skip", _one_based, ("0-based",)),
            Attempt("stops at the skipped block", _stop, ("stopped at the skipped block",)),
            Attempt("starts after the skipped block", _start_after, ("started after",)),
            Attempt("reverse order", _reverse, ("reverse order",)),
            Attempt("x = x + block(x)", _residual_again, ("already contains its residual",)),
            Attempt("zeros at the skipped layer", _zeros, ("zeros",)),
            Attempt("calls the skipped block", _wasteful, ("threw its result away",)),
            Attempt("updates x in place", _in_place, ("in place",)),
            Attempt("returns float32", _float32, ("dtype",)),
            Attempt("twice the stream", lambda x, blocks, skip: 2 * _loop(x, blocks, skip),
                    ("largest error",)),
            Attempt("the stub", _not_implemented, ("not implemented",)),
            Attempt("skips by identity, `block is blocks[skip]`", _by_identity,
                    ("same module object", "position")),
            Attempt("skips by blocks.index(block)", _by_index, ("same module object", "position")),
        ),
        right_answers=(
            Attempt("loop with continue", _loop),
            Attempt("nn.Sequential(*kept)(x)", _sequential),
            Attempt("slices", _slices),
            Attempt("functools.reduce", _reduce),
            Attempt("pop from a copy, block.forward", _copy_then_pop),
            Attempt("nn.ModuleList", _module_list),
            Attempt("under torch.no_grad()", _no_grad),
        ),
    ),
]
