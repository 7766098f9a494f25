"""What one grid point of chapters 13 and 14 records: training plus three records.

:func:`measure_train_records` trains like the experiments' ``train`` measure
and keeps, besides the loss history and the final losses,

- ``max_attn_logit``: the largest attention logit of the step, over every
  layer and head (only when the spec's train config sets
  ``record_attn_logits``; Wortsman et al. 2023's attention-logit growth);
- ``trained_layer_rms``: the RMS of each block's output on one fixed batch
  after training (how much the residual stream grows with depth);
- ``gain``: for a model with several residual streams (``residual`` "hyper"
  or "mhc"), the forward and backward gain of the composite mixing map
  H_l ... H_1 after each sub-layer l, after training (the mHC paper's
  "Amax Gain Magnitude", Xie et al. 2025), see :func:`token_gains`.

Everything is numbers only (JSON-ready), like every cached result.
"""

from __future__ import annotations

import torch

from normcourse.residual_streams import composite_gains
from normcourse.train import train

__all__ = ["measure_train_records", "layer_rms_after", "token_gains"]


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


def token_gains(model, x) -> dict:
    """Gain of the composite mixing map after each sub-layer, for the tokens of ``x[0]``.

    After a forward on ``x``, every sub-layer's mixing matrices are read with
    ``model.residual_mixings()`` (one per position for input-dependent maps);
    for each token of the first sequence the products H_1, H_2 H_1, ... are
    formed and their gains taken (:func:`normcourse.residual_streams.composite_gains`).
    ``forward``/``backward`` average over the tokens, as the mHC paper does
    over a selected sequence; ``worst_forward``/``worst_backward`` take the
    largest token.
    """
    with torch.no_grad():
        model.eval()
        model(x)
    mats = [m[0] if m.dim() == 4 else m for m in model.residual_mixings()]
    T = x.shape[1]
    per_token = [composite_gains([m[t] if m.dim() == 3 else m for m in mats])
                 for t in range(T)]
    depth = len(mats)
    out = {}
    for i, name in enumerate(("forward", "backward")):
        values = [[per_token[t][l][i] for t in range(T)] for l in range(depth)]
        out[name] = [sum(v) / T for v in values]
        out[f"worst_{name}"] = [max(v) for v in values]
    return out


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
    if mc.residual != "plain" or spec.get("record_gain"):
        result["gain"] = token_gains(r.model, x)
    return result
