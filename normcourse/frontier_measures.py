"""What one grid point of chapters 13 and 14 records: training plus three records.

:func:`measure_train_records` trains like the experiments' ``train`` measure
and keeps, besides the loss history and the final losses,

- ``max_attn_logit``: the largest attention logit of the step, over every
  layer and head (only when the spec's train config sets
  ``record_attn_logits``; Wortsman et al. 2023's attention-logit growth);
- ``trained_layer_rms``: the RMS of each block's output on one fixed batch
  after training (how much the residual stream grows with depth);
- ``gain``: for a model with several residual streams (``residual`` "hyper"
  or "mhc"), the forward and backward gain of the composite residual map
  H_L ... H_1 after training, and the same for the product of the first
  l layers' matrices, l = 1..L (the mHC paper's gain metric, Xie et al.
  2025), on one fixed batch.

Everything is numbers only (JSON-ready), like every cached result.
"""

from __future__ import annotations

import torch

from normcourse.train import train

__all__ = ["measure_train_records", "layer_rms_after", "composite_gains"]


@torch.no_grad()
def layer_rms_after(model, x) -> list[float]:
    """RMS of each block's output on the batch ``x`` (read with forward hooks)."""
    rms = []
    hooks = [b.register_forward_hook(
        lambda _m, _i, out: rms.append(out.detach().float().pow(2).mean().sqrt().item()))
        for b in model.blocks]
    try:
        model.eval()
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return rms


def _mixing_per_layer(model) -> list[torch.Tensor]:
    """Every block's stream-mixing matrices of the last forward, averaged over positions.

    Input-dependent mixing gives one (n, n) matrix per position; the gain
    metric reads one matrix per layer, so we average over every leading axis.
    """
    mats = []
    for block in model.blocks:
        for module in block.modules():
            if hasattr(module, "residual_mixing") and module is not block:
                m = module.residual_mixing().detach().double()
                mats.append(m.reshape(-1, *m.shape[-2:]).mean(0))
    if not mats:   # the block itself may be the hyper-connection module
        for block in model.blocks:
            m = block.residual_mixing().detach().double()
            mats.append(m.reshape(-1, *m.shape[-2:]).mean(0))
    return mats


def composite_gains(mats) -> dict:
    """Forward (max |row sum|) and backward (max |column sum|) gain of H_l ... H_1, each l."""
    total = torch.eye(mats[0].shape[-1], dtype=torch.float64)
    forward, backward = [], []
    for m in mats:
        total = m @ total
        forward.append(float(total.sum(-1).abs().max()))
        backward.append(float(total.sum(-2).abs().max()))
    return {"forward": forward, "backward": backward}


def measure_train_records(spec: dict, d, mc, tc) -> dict:
    """Train, then the records of the module docstring."""
    r = train(mc, tc, data=d, progress=False, keep_model=True)
    result = dict(final_train_loss=r.final_train_loss, val_loss=r.val_loss,
                  diverged=r.diverged, diverged_at=r.diverged_at, spikes=r.spikes,
                  loss=r.history["loss"], grad_norm=r.history["grad_norm"])
    if "layer_max_attn_logit" in r.history:
        result["max_attn_logit"] = [max(v) for v in r.history["layer_max_attn_logit"]]
    if r.diverged:
        return result
    x, _ = d.batch("train", tc.batch_size, mc.block_size,
                   torch.Generator().manual_seed(tc.seed))
    result["trained_layer_rms"] = layer_rms_after(r.model, x)
    if getattr(mc, "residual", "plain") != "plain":
        result["gain"] = composite_gains(_mixing_per_layer(r.model))
    return result
