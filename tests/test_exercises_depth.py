"""Chapter 10's checkers accept right answers (also equivalent formulations) and reject typical
wrong ones with a specific message."""

import pytest
import torch
import torch.nn.functional as F

from checker_run import run, _not_implemented

from normcourse import ablations
from normcourse.exercises import depth
from normcourse.exercises.feedback import PASS


# ------------------------------------------------------------------ adjacent cosine

def _cos_by_hand(hiddens):
    out = []
    for a, b in zip(hiddens, hiddens[1:]):
        c = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
        out.append(c.mean())
    return torch.stack(out)          # a 1-D tensor is accepted as well as a list


@pytest.mark.parametrize("fn", [
    ablations.adjacent_cosine,
    _cos_by_hand,
    lambda hs: [F.cosine_similarity(hs[i], hs[i + 1], dim=-1).mean().item() for i in range(len(hs) - 1)],
    lambda hs: tuple(F.normalize(a, dim=-1).mul(F.normalize(b, dim=-1)).sum(-1).mean()
                     for a, b in zip(hs[:-1], hs[1:])),
])
def test_adjacent_cosine_accepts(fn, capsys):
    ok, out = run(depth.check_adjacent_cosine, fn, capsys)
    assert ok, out
    assert PASS in out


def _centred_in_place(hs):
    # a Pearson correlation, computed by centring the caller's hidden states in place
    for h in hs:
        h.sub_(h.mean(-1, keepdim=True))
    return [F.cosine_similarity(a, b, dim=-1).mean().item() for a, b in zip(hs[:-1], hs[1:])]


def _normalized_in_place(hs):
    # the right answer, but the caller's hidden states are rescaled on the way
    for h in hs:
        h.div_(h.norm(dim=-1, keepdim=True))
    return [(a * b).sum(-1).mean().item() for a, b in zip(hs[:-1], hs[1:])]


@pytest.mark.parametrize("fn, message", [
    (lambda hs: [F.cosine_similarity(a.flatten(), b.flatten(), dim=0).item() for a, b in zip(hs, hs[1:])],
     "whole flattened"),
    (lambda hs: [F.cosine_similarity(hs[0], b, dim=-1).mean().item() for b in hs[1:]], "embeddings h_0"),
    (lambda hs: [F.cosine_similarity(a, b, dim=0).mean().item() for a, b in zip(hs, hs[1:])], "dimension 0"),
    (lambda hs: [F.cosine_similarity(a, b, dim=1).mean().item() for a, b in zip(hs, hs[1:])], "dimension 1"),
    (lambda hs: [(a * b).sum(-1).mean().item() for a, b in zip(hs, hs[1:])], "dot product"),
    (lambda hs: [1 - F.cosine_similarity(a, b, dim=-1).mean().item() for a, b in zip(hs, hs[1:])],
     "1 - cosine"),
    (lambda hs: [F.cosine_similarity(a, b, dim=-1).mean().item() for a, b in zip(hs, hs[1:])][::-1],
     "reverse order"),
    (lambda hs: [F.cosine_similarity(a, b, dim=-1).mean().item() for a, b in zip(hs, hs)], "expected"),
    (lambda hs: [1.0] + [F.cosine_similarity(a, b, dim=-1).mean().item() for a, b in zip(hs, hs[1:])],
     "len(hiddens) - 1"),
    (lambda hs: torch.stack([F.cosine_similarity(a, b, dim=-1) for a, b in zip(hs, hs[1:])]),
     "one number per layer"),
    (lambda hs: None, "NoneType"),
    (_not_implemented, "not implemented"),
    (_centred_in_place, "modified its argument number 1 (the tensor at [0]) in place"),
    (_normalized_in_place, "in place"),
])
def test_adjacent_cosine_rejects(fn, message, capsys):
    ok, out = run(depth.check_adjacent_cosine, fn, capsys)
    assert not ok
    assert message in out, out


# ------------------------------------------------------------------ skip one block

def _skip_loop(x, blocks, skip):
    for i, block in enumerate(blocks):
        if i == skip:
            continue
        x = block(x)
    return x


def _skip_slices(x, blocks, skip):
    for block in blocks[:skip] + blocks[skip + 1:]:
        x = block(x)
    return x


def _skip_wasteful(x, blocks, skip):
    for i, block in enumerate(blocks):
        y = block(x)
        if i != skip:
            x = y
    return x


@pytest.mark.parametrize("fn", [_skip_loop, _skip_slices])
def test_forward_skipping_accepts(fn, capsys):
    ok, out = run(depth.check_forward_skipping, fn, capsys)
    assert ok, out
    assert PASS in out


def _all(x, blocks, skip):
    for b in blocks:
        x = b(x)
    return x


def _one_based(x, blocks, skip):
    return _skip_loop(x, blocks, skip - 1)


def _stop(x, blocks, skip):
    for b in blocks[:skip]:
        x = b(x)
    return x


def _reverse(x, blocks, skip):
    for i in reversed(range(len(blocks))):
        if i != skip:
            x = blocks[i](x)
    return x


def _zeros(x, blocks, skip):
    for i, b in enumerate(blocks):
        x = torch.zeros_like(x) if i == skip else b(x)
    return x


@pytest.mark.parametrize("fn, message", [
    (_all, "applied every block"),
    (_one_based, "0-based"),
    (_stop, "stopped at the skipped block"),
    (_reverse, "reverse order"),
    (_zeros, "zeros"),
    (_skip_wasteful, "threw its result away"),
    (lambda x, blocks, skip: _skip_loop(x, blocks, skip).float(), "dtype"),
    (lambda x, blocks, skip: 2 * _skip_loop(x, blocks, skip), "largest error"),
    (_not_implemented, "not implemented"),
])
def test_forward_skipping_rejects(fn, message, capsys):
    ok, out = run(depth.check_forward_skipping, fn, capsys)
    assert not ok
    assert message in out, out


# ------------------------------------------------------------------ issue 13, items 7 and 8

def test_forward_skipping_accepts_an_nn_sequential_of_the_kept_blocks(capsys):
    # the chapter passes nn.Module blocks (list(model.blocks)); so does the checker
    def sequential(x, blocks, skip):
        return torch.nn.Sequential(*[b for i, b in enumerate(blocks) if i != skip])(x)
    ok, out = run(depth.check_forward_skipping, sequential, capsys)
    assert ok, out


def test_forward_skipping_rejects_deleting_from_the_callers_list(capsys):
    def delete(x, blocks, skip):
        del blocks[skip]
        for block in blocks:
            x = block(x)
        return x
    ok, out = run(depth.check_forward_skipping, delete, capsys)
    assert not ok and "changed the list `blocks`" in out and "del blocks[skip]" in out, out


def test_adjacent_cosine_rejects_abs(capsys):
    ok, out = run(depth.check_adjacent_cosine,
                  lambda hs: [F.cosine_similarity(a, b, dim=-1).abs().mean().item()
                              for a, b in zip(hs, hs[1:])], capsys)
    assert not ok and "absolute value" in out and "negative cosine" in out, out
