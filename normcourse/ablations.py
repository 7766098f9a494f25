"""Layer ablations of a trained TinyGPT: how much does each layer still do?

Two measurements on fixed validation batches, both from the residual stream
h_0 (the embeddings) -> h_1 -> ... -> h_L (the block outputs):

- :func:`adjacent_cosine`: for each layer l, the cosine similarity between
  the stream before and after it, cos(h_{l-1}, h_l), averaged over positions.
  A value near 1 means the layer barely turned the stream.
- :func:`skip_loss_deltas`: for each layer l, the validation loss of the model
  with block l left out (its input passed straight to the next block) minus
  the loss of the full model.  A delta near 0 means the layer could go.

Sun et al. 2025 ("The Curse of Depth") and Gromov et al. report both
quantities for large Pre-LN models; :func:`depth_report` computes them for
ours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from normcourse.train import validation_batches


@torch.no_grad()
def residual_streams(model, idx) -> list[torch.Tensor]:
    """[h_0, h_1, ..., h_L]: the embeddings, then each block's output (no gradients)."""
    return model.residual_streams(idx)


def adjacent_cosine(hiddens) -> list[float]:
    """cos(h_{l-1}, h_l) per position, averaged: one value per layer (len(hiddens) - 1)."""
    return [F.cosine_similarity(a.float(), b.float(), dim=-1).mean().item()
            for a, b in zip(hiddens[:-1], hiddens[1:])]


@torch.no_grad()
def loss_skipping(model, idx, targets, skip=()) -> float:
    """Mean cross-entropy of ``model`` with the blocks whose indices are in ``skip`` left out."""
    skip = set(skip)
    h = model.embed(idx)
    for i, block in enumerate(model.blocks):
        if i not in skip:
            h = block(h)
    return model.head(h, targets)[1].item()


def skip_loss_deltas(model, batches) -> tuple[float, list[float]]:
    """(full-model loss, [loss without layer l - full loss for each l]) averaged over ``batches``."""
    def mean_loss(skip):
        return sum(loss_skipping(model, x, y, skip) for x, y in batches) / len(batches)
    base = mean_loss(())
    return base, [mean_loss((i,)) - base for i in range(len(model.blocks))]


@torch.no_grad()
def depth_report(model, data, batch_size: int, block_size: int, n_batches: int = 4) -> dict:
    """Everything chapter 10 plots for one model, on fixed validation batches.

    ``loss``: the full model's validation loss; ``skip_delta[l]``: the loss
    change when layer l+1 is skipped; ``adjacent_cosine[l]``: cos between the
    stream before and after layer l+1; ``stream_rms[l]``: RMS of h_l
    (l = 0 is the embedding).
    """
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device   # a GPU model gets its batches on the GPU
        batches = [(x.to(device), y.to(device))
                   for x, y in validation_batches(data, batch_size, block_size, n_batches)]
        base, deltas = skip_loss_deltas(model, batches)
        cos = [0.0] * len(model.blocks)
        rms = [0.0] * (len(model.blocks) + 1)
        for x, _ in batches:
            hs = residual_streams(model, x)
            cos = [c + v / len(batches) for c, v in zip(cos, adjacent_cosine(hs))]
            rms = [r + h.float().pow(2).mean().sqrt().item() / len(batches) for r, h in zip(rms, hs)]
        return {"loss": base, "skip_delta": deltas, "adjacent_cosine": cos, "stream_rms": rms}
    finally:
        model.train(was_training)
