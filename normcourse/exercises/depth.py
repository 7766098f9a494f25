"""Checkers for the chapter "Depth that does not pay".

- :func:`check_adjacent_cosine`: the cosine between the residual stream before and
  after each layer, from a list of hidden states (reference:
  :func:`normcourse.ablations.adjacent_cosine`).
- :func:`check_forward_skipping`: a forward pass through a stack of blocks with one
  block left out (the layer-skip ablation of :func:`normcourse.ablations.loss_skipping`).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from normcourse.exercises.containers import call_keeping_inputs
from normcourse.exercises.feedback import (
    Mistake, Wrong, checker, close, compare, expect_tensor, generator,
)

__all__ = ["check_adjacent_cosine", "check_forward_skipping", "forward_skipping"]


# ------------------------------------------------------------------ adjacent cosine

def _streams(n_layer: int, shape, seed: int) -> list[torch.Tensor]:
    """A residual stream h_0..h_L whose positions differ in scale and whose layers differ in strength.

    Two layers turn the stream backwards, so that cosines of both signs occur (a
    stray ``abs()`` must show): layer 2 flips a random half of the positions
    (per-position cosines of both signs), layer 3 flips every position (a
    negative mean).
    """
    g = generator(seed)
    d = shape[-1]
    scale = torch.rand(*shape[:-1], 1, generator=g, dtype=torch.float64) * 3 + 0.2
    h = (torch.randn(*shape, generator=g, dtype=torch.float64) + 0.7) * scale
    hs = [h]
    for layer in range(n_layer):
        w = torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
        strength = 0.2 + 1.5 * layer / n_layer       # later layers turn the stream more
        if layer == 1:
            flip = torch.where(torch.rand(*shape[:-1], 1, generator=g) < 0.5, -1.0, 1.0)
            h = h * flip.double()
        elif layer == 2:
            h = -h
        h = h + strength * torch.tanh(h @ w) * scale.flip(0)
        hs.append(h)
    return hs


def _as_values(out, n_layer: int) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        if out.dim() > 1:
            raise Mistake(f"your function returned a tensor of shape {tuple(out.shape)}; expected one "
                          f"number per layer ({n_layer} numbers).",
                          "average the per-position cosines with .mean() for each layer.")
        values = out.detach().double().flatten()
    else:
        big = [v for v in out if isinstance(v, torch.Tensor) and v.numel() > 1] \
            if isinstance(out, (list, tuple)) else []
        if big:
            raise Mistake(f"each value of your list should be one number; one is a tensor of "
                          f"shape {tuple(big[0].shape)}.",
                          "average each layer's per-position cosines over batch and positions: "
                          ".mean() with no dim.")
        try:
            values = torch.tensor([float(v) for v in out], dtype=torch.float64)
        except Exception:  # whatever the returned object does when iterated or converted
            raise Mistake(f"your function returned {type(out).__name__}; expected a list of "
                          f"{n_layer} numbers (or a 1-D tensor).", "return a list of floats.") from None
    if values.numel() != n_layer:
        hint = ("there are len(hiddens) - 1 adjacent pairs (h_0, h_1), ..., (h_{L-1}, h_L)."
                if values.numel() in (n_layer - 1, n_layer + 1) else
                "compare each hidden state with the next one: zip(hiddens[:-1], hiddens[1:]).")
        raise Mistake(f"for {n_layer + 1} hidden states you returned {values.numel()} values; "
                      f"expected {n_layer}, one per layer.", hint)
    return values


def _check_float32_result(fn) -> None:
    """The chapter's use of the result works: it calls ``torch.tensor(result)`` on float32
    hidden states and compares that with a float32 tensor (``torch.allclose`` refuses to
    compare float64 with float32)."""
    hs = [h.float() for h in _streams(3, (2, 3, 8), 5)]
    out = call_keeping_inputs(fn, hs, name="adjacent_cosine", labels=("hiddens",))
    try:
        with warnings.catch_warnings():   # torch.tensor(a tensor) warns; it still works
            warnings.simplefilter("ignore")
            values = out if isinstance(out, torch.Tensor) else torch.tensor(out)
    except Exception as err:  # whatever torch.tensor makes of the returned object
        raise Mistake(f"for float32 hidden states your function returned {type(out).__name__}, "
                      f"which torch.tensor(...) cannot turn into a tensor ({err}); the chapter "
                      "does that with your result.", "return a list of Python floats.") from None
    if values.dtype == torch.float64:
        raise Mistake("for float32 hidden states your function returns float64 numbers (a "
                      "NumPy array, NumPy float64 scalars or .double() values); the chapter "
                      "compares your result with float32 values, and torch.allclose refuses "
                      "to compare float64 with float32.",
                      "return Python floats: .item() or float(...) on each cosine.")


_COSINE_HINT = "F.cosine_similarity(a, b, dim=-1).mean() for each adjacent pair."


def _values(cosines) -> torch.Tensor:
    return torch.tensor(cosines, dtype=torch.float64)


@checker
def check_adjacent_cosine(fn) -> str:
    """``fn(hiddens)`` returns, per layer l, the mean over positions of cos(h_{l-1}, h_l)."""
    for n_layer, shape, seed in ((4, (3, 5, 8), 0), (6, (2, 7, 16), 1)):
        hs = _streams(n_layer, shape, seed)
        pairs = list(zip(hs[:-1], hs[1:]))
        # The reference comes first, and the learner gets copies: what it does to its
        # argument cannot change the answer it is compared with (call_learner still
        # reports an in-place edit).
        ref = torch.tensor([F.cosine_similarity(a, b, dim=-1).mean().item() for a, b in pairs],
                           dtype=torch.float64)
        given = [h.clone() for h in hs]
        out = call_keeping_inputs(fn, given, name="adjacent_cosine", labels=("hiddens",),
                                  hint="read the list, do not edit it: zip(hiddens[:-1], "
                                       "hiddens[1:]) gives the adjacent pairs.")
        got = _as_values(out, n_layer)
        per_position = [F.cosine_similarity(a, b, dim=-1) for a, b in pairs]
        wrong = [
            Wrong("your values are in reverse order: the first should be layer 1's "
                  "cos(h_0, h_1).", "iterate from the input towards the output.",
                  lambda: ref.flip(0)),
            Wrong("you took the absolute value of the cosines; a layer that turns the stream "
                  "backwards has a negative cosine, and its sign is part of the answer.",
                  _COSINE_HINT,
                  lambda: _values([c.abs().mean().item() for c in per_position])),
            Wrong("you took the absolute value of the mean cosine; a layer that turns the stream "
                  "backwards has a negative cosine, and its sign is part of the answer.",
                  _COSINE_HINT,
                  lambda: _values([abs(c.mean().item()) for c in per_position])),
            Wrong("you took one cosine of the whole flattened tensors; the stream has one vector per "
                  "position (the last dimension), so compute a cosine per position and average them.",
                  _COSINE_HINT,
                  lambda: _values([F.cosine_similarity(a.flatten(), b.flatten(), dim=0).item() for a, b in pairs])),
            Wrong("you averaged the vectors over batch and positions first and took one cosine of the "
                  "averages; compute a cosine per position, then average the cosines.",
                  _COSINE_HINT,
                  lambda: _values([F.cosine_similarity(a.mean((0, 1)), b.mean((0, 1)), dim=0).item()
                          for a, b in pairs])),
            Wrong("you compared every layer with the embeddings h_0; compare each layer's input with its "
                  "output (h_{l-1} with h_l).",
                  _COSINE_HINT,
                  lambda: _values([F.cosine_similarity(hs[0], b, dim=-1).mean().item() for b in hs[1:]])),
            Wrong("you took the cosine along dimension 0 (across the batch); the features are the last "
                  "dimension: dim=-1.",
                  _COSINE_HINT,
                  lambda: _values([F.cosine_similarity(a, b, dim=0).mean().item() for a, b in pairs])),
            Wrong("you took the cosine along dimension 1 (across positions; F.cosine_similarity's "
                  "default is dim=1); the features are the last dimension: dim=-1.",
                  _COSINE_HINT,
                  lambda: _values([F.cosine_similarity(a, b, dim=1).mean().item() for a, b in pairs])),
            Wrong("you returned the mean dot product; a cosine divides by both vectors' norms.",
                  _COSINE_HINT,
                  lambda: _values([(a * b).sum(-1).mean().item() for a, b in pairs])),
            Wrong("you returned 1 - cosine (a distance); the exercise asks for the similarity itself.",
                  _COSINE_HINT,
                  lambda: _values([1 - c.mean().item() for c in per_position])),
            Wrong("you divided the mean dot product by the mean norms; average the per-position "
                  "cosines instead (the positions have different scales).",
                  _COSINE_HINT,
                  lambda: _values([((a * b).sum(-1).mean() / (a.norm(dim=-1).mean() * b.norm(dim=-1).mean())).item()
                          for a, b in pairs])),
            Wrong("you divided by the norms of the whole tensors; divide each position's dot "
                  "product by that position's norms (a.norm(dim=-1)).",
                  _COSINE_HINT,
                  lambda: _values([((a * b).sum(-1) / (a.norm() * b.norm())).mean().item() for a, b in pairs])),
            Wrong("you centred each vector first (a correlation, not a cosine); the cosine uses the "
                  "vectors as they are.",
                  _COSINE_HINT,
                  lambda: _values([F.cosine_similarity(a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True),
                          dim=-1).mean().item() for a, b in pairs])),
        ]
        worst = int((got - ref).abs().argmax())
        compare(got, ref, 1e-6, wrong, otherwise=Mistake(
            f"layer {worst + 1}: you returned {got[worst]:.4f}, expected {ref[worst]:.4f}.",
            "F.cosine_similarity(a, b, dim=-1).mean() for each adjacent pair (a, b)."))
    _check_float32_result(fn)
    return ("adjacent_cosine is correct: one cosine per position between the stream before and "
            "after each layer, averaged over positions.")


# ------------------------------------------------------------------ skip one block

class _Block(nn.Module):
    """A residual block ``h + s * tanh(linear(h))`` that logs its calls: a real nn.Module,
    as the chapter passes (so ``nn.Sequential(*kept)`` and ``block.forward`` work)."""

    def __init__(self, i: int, d: int, g: torch.Generator, calls: list):
        super().__init__()
        self.linear = nn.Linear(d, d, dtype=torch.float64)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(d, d, generator=g, dtype=torch.float64)
                                     / math.sqrt(d))
            self.linear.bias.copy_(torch.randn(d, generator=g, dtype=torch.float64))
        self.index, self.strength, self.calls = i, 0.5 + 0.25 * i, calls

    def forward(self, h):
        self.calls.append(self.index)
        return h + self.strength * torch.tanh(self.linear(h))


def _blocks(n: int, d: int, seed: int, shared=None):
    """``n`` nonlinear residual blocks (nn.Modules), and a log of which ones ran.

    With ``shared = (i, j)`` position ``j`` holds the same module object as position
    ``i`` (a model may reuse a layer): skipping is by position, not by object.
    """
    g = generator(seed)
    calls: list[int] = []
    blocks = [_Block(i, d, g, calls) for i in range(n)]
    if shared is not None:
        blocks[shared[1]] = blocks[shared[0]]
    return blocks, calls


@torch.no_grad()
def _apply(x, blocks, order, residual_again=False):
    for i in order:
        x = x + blocks[i](x) if residual_again else blocks[i](x)
    return x


def forward_skipping(x, blocks, skip):
    """The reference: apply ``blocks`` in order to ``x``, leaving out ``blocks[skip]``."""
    for i, block in enumerate(blocks):
        if i != skip:
            x = block(x)
    return x


_SKIP_HINT = "for i, block in enumerate(blocks): skip i == skip, otherwise x = block(x)."


def _skip_mistakes(x, blocks, skip, shared: bool) -> list[Wrong]:
    """Known wrong ways to skip ``blocks[skip]``, each as the order of blocks it runs."""
    n = len(blocks)
    keep = [i for i in range(n) if i != skip]

    def runs(order, what, hint=_SKIP_HINT):
        return Wrong(what, hint, lambda: _apply(x, blocks, order))

    wrongs = []
    if shared:   # one module object at two positions: skipped by object, not by position
        same = [i for i in range(n) if blocks[i] is blocks[skip]]
        for what, order in (
                ("you left out every position that holds the block object blocks[skip]",
                 [i for i in range(n) if i not in same]),
                ("you left out nothing", [i for i in range(n) if blocks.index(blocks[i]) != skip])):
            wrongs.append(runs(order, f"with skip={skip}, where blocks[{same[0]}] and "
                               f"blocks[{same[1]}] are the same module object (a model may reuse "
                               f"a layer), {what}: you skipped by the block (`block is "
                               "blocks[skip]` or `blocks.index(block) == skip`), not by its "
                               "position.", "compare positions: for i, block in "
                                            "enumerate(blocks), skip i == skip."))
    wrongs.append(runs(list(range(n)),
                       f"with skip={skip} you applied every block: nothing was left out."))
    if skip > 0:
        wrongs.append(runs([i for i in range(n) if i != skip - 1],
                           f"with skip={skip} you left out blocks[{skip - 1}]: skip is a 0-based "
                           "index."))
    if skip < n - 1:
        wrongs.append(runs([i for i in range(n) if i != skip + 1],
                           f"with skip={skip} you left out blocks[{skip + 1}]: skip is a 0-based "
                           "index."))
    wrongs.append(runs(list(range(skip)), f"with skip={skip} you stopped at the skipped block; "
                                          "the blocks after it must still run."))
    if skip > 0:
        wrongs.append(runs(list(range(skip + 1, n)),
                           f"with skip={skip} you started after the skipped block; the blocks "
                           "before it must run too."))
    wrongs += [
        runs(keep[::-1], "you applied the blocks in reverse order; the stream flows from "
                         "blocks[0] upwards."),
        Wrong("you added x to each block's output (x = x + block(x)); a block already contains "
              "its residual connection and returns the new stream.",
              "x = block(x) for every block but the skipped one.",
              lambda: _apply(x, blocks, keep, residual_again=True)),
        Wrong(f"with skip={skip} you replaced the stream by zeros at the skipped layer; "
              "skipping passes the block's input through unchanged.",
              "leave x as it is for the skipped block.",
              lambda: _apply(torch.zeros_like(x), blocks, keep[skip:]) if skip < n - 1
              else torch.zeros_like(x)),
    ]
    return wrongs


@checker
def check_forward_skipping(fn) -> str:
    """``fn(x, blocks, skip)`` applies ``blocks`` in order, leaving out ``blocks[skip]``."""
    # the middle first: its mistakes are the clearest; then a list that holds one block
    # object at positions 1 and 3, skipped at each of them
    for n, d, seed, shared, skips in ((5, 8, 3, None, (2, 4, 0)), (7, 16, 4, None, (3, 6, 0)),
                                      (5, 8, 5, (1, 3), (3, 1))):
        for skip in skips:
            blocks, calls = _blocks(n, d, seed, shared)
            x = torch.randn(2, 3, d, generator=generator(seed + skip),
                            dtype=torch.float64)
            keep = [i for i in range(n) if i != skip]
            ref = _apply(x, blocks, keep)
            calls.clear()
            given = list(blocks)
            out = call_keeping_inputs(
                fn, x, given, skip, name="forward_skipping", labels=("x", "blocks", "skip"),
                hint="leave the list as it is and build a new one, e.g. blocks[:skip] + "
                     "blocks[skip + 1:], or test `if i == skip: continue` in the loop; "
                     "del blocks[skip] and blocks.pop(skip) change the caller's list.")
            out = expect_tensor(out, x, name="the output",
                                shape_hint="return the stream after the last block.")
            learner_calls = list(calls)
            calls.clear()
            with torch.no_grad():
                compare(out, ref, 1e-9, _skip_mistakes(x, blocks, skip, shared is not None),
                           rtol=1e-9,
                           otherwise=Mistake(f"with {n} blocks and skip={skip} the largest error "
                                             f"is {(out - ref).abs().max():.3g}.", _SKIP_HINT))
            calls.clear()
            if skip in learner_calls if shared is None else len(learner_calls) > len(keep):
                raise Mistake(f"the output is right, but you called blocks[{skip}] and threw its "
                              "result away; a skipped layer should cost nothing.",
                              "test `if i == skip: continue` before calling the block.")
    return ("forward_skipping is correct: every block but the skipped one runs, in order, "
            "and the skipped one passes its input straight on.")
