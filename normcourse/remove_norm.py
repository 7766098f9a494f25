"""Taking LayerNorm out of a trained model: at once, or one norm at a time.

LayerNorm divides each token's row by its own standard deviation sigma.  That
division is the only non-linear part: the mean subtraction, the weight and the
bias are linear maps.  Two ways to remove it from a *trained* model:

- **Swap** every LayerNorm for the identity (weight and bias go too) and
  evaluate.  Nothing adapts: the blocks now see rows of a different scale.
- **Fine-tune it out** (Heimersheim 2024; Baroni et al. 2025 at GPT-2 XL
  scale): replace one LayerNorm at a time by :class:`FixedScaleLayerNorm`,
  which keeps the centring, the weight and the bias but divides by a *fixed*
  number (that norm's average sigma, measured on training batches), fine-tune
  a few steps so the model adapts, and move on to the next.  A fixed divisor
  is a linear map, so the result has no normalization left: it can be folded
  into the neighbouring weights.

:func:`removal_experiment` runs both (and two controls) for experiment E7.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from normcourse.data import TokenData, cached
from normcourse.model import GPTConfig, TinyGPT
from normcourse.train import TrainConfig, evaluate, train


class FixedScaleLayerNorm(nn.Module):
    """LayerNorm whose per-token sigma is replaced by one frozen number.

    y = (x - mean(x)) / scale * weight + bias, with ``scale`` a buffer (not
    trained).  Starting from a trained ``nn.LayerNorm`` keeps its weight and bias.
    """

    def __init__(self, norm: nn.LayerNorm, scale: float):
        super().__init__()
        self.weight = nn.Parameter(norm.weight.detach().clone())
        self.bias = nn.Parameter(norm.bias.detach().clone()) if norm.bias is not None else None
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, x):
        y = (x - x.mean(-1, keepdim=True)) / self.scale * self.weight
        return y if self.bias is None else y + self.bias


def layer_norm_names(model: nn.Module) -> list[str]:
    """Names of the ``nn.LayerNorm`` modules of ``model``, in registration order."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.LayerNorm)]


def removal_order(model: TinyGPT) -> list[str]:
    """The order used here: every MLP norm, then every attention norm, then the rest.

    The schedules in Baroni et al.'s code (github.com/submarat/removing-layer-norm)
    remove GPT-2's MLP LayerNorms (ln_2) first, then the attention ones (ln_1,
    its query/key and value paths separately), then the final one (ln_f).
    """
    names = layer_norm_names(model)
    mlp = [n for n in names if n.endswith("norm_mlp")]
    attn = [n for n in names if n.endswith("norm_attn")]
    return mlp + attn + [n for n in names if n not in mlp and n not in attn]


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the sub-module called ``name`` (dotted path) by ``new``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def strip_layer_norms(model: nn.Module) -> nn.Module:
    """Replace every ``nn.LayerNorm`` of ``model`` by ``nn.Identity`` (in place); return it."""
    for name in layer_norm_names(model):
        set_module(model, name, nn.Identity())
    return model


@torch.no_grad()
def norm_input_stats(model: nn.Module, data: TokenData, names: list[str], *, batches: int = 4,
                     batch_size: int = 16, seed: int = 0) -> dict:
    """Per named norm: mean and coefficient of variation of the per-token sigma of its input.

    A small coefficient of variation means every token has about the same
    sigma: then dividing by one fixed number changes little.
    """
    block_size = model.config.block_size
    sigmas = {n: [] for n in names}
    hooks = []
    for n in names:
        def hook(_m, inputs, _out, n=n):
            x = inputs[0]
            sigmas[n].append(x.var(-1, unbiased=False).add(1e-5).sqrt().flatten())
        hooks.append(model.get_submodule(n).register_forward_hook(hook))
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    try:
        for _ in range(batches):
            x, _ = data.batch("train", batch_size, block_size, g)
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    out = {}
    for n, parts in sigmas.items():
        s = torch.cat(parts)
        out[n] = {"mean_sigma": s.mean().item(), "cv_sigma": (s.std() / s.mean()).item()}
    return out


def freeze_norm(model: nn.Module, name: str, data: TokenData, seed: int = 0) -> float:
    """Replace LayerNorm ``name`` by a FixedScaleLayerNorm with its average sigma; return the scale."""
    scale = norm_input_stats(model, data, [name], seed=seed)[name]["mean_sigma"]
    set_module(model, name, FixedScaleLayerNorm(model.get_submodule(name), scale))
    return scale


def _finetune(model, data, tc: TrainConfig, steps: int, seed: int) -> list[float]:
    """``steps`` steps of AdamW at a constant learning rate; returns the losses."""
    if steps <= 0:
        return []
    ft = TrainConfig(**{**tc.to_dict(), "steps": steps, "warmup_steps": 0, "min_lr_ratio": 1.0,
                        "seed": seed, "diverge_loss": 1e9})
    r = train(model.config, ft, data=data, model=model, progress=False)
    return r.history["loss"]


def remove_gradually(model: TinyGPT, data: TokenData, tc: TrainConfig, *, steps_per_norm: int,
                     final_steps: int, seed: int = 0) -> dict:
    """Freeze the LayerNorms one at a time (see :func:`removal_order`), fine-tuning after each.

    Returns the scales used, the fine-tuning losses and the validation loss
    after each removal.  ``model`` ends with no ``nn.LayerNorm`` left.
    """
    scales, losses, val_after = {}, [], []
    for i, name in enumerate(removal_order(model)):
        scales[name] = freeze_norm(model, name, data, seed=seed + i)
        losses += _finetune(model, data, tc, steps_per_norm, seed=1000 * (seed + 1) + i)
        val_after.append(evaluate(model, data, tc, model.config.block_size))
    losses += _finetune(model, data, tc, final_steps, seed=1000 * (seed + 1) + 999)
    return {"scales": scales, "ft_loss": losses, "val_after_each": val_after,
            "val": evaluate(model, data, tc, model.config.block_size)}


def _copy(model: TinyGPT) -> TinyGPT:
    clone = TinyGPT(model.config)
    clone.load_state_dict(model.state_dict())
    return clone


def removal_experiment(spec: dict) -> dict:
    """E7: train a pre-LN TinyGPT, then remove its LayerNorms four ways.

    ``spec["removal"]`` holds ``steps_per_norm``, ``final_steps`` and
    ``ft_lr``.  Every variant starts from the same trained weights; the ones
    that fine-tune get the same number of steps at the same learning rate.
    """
    d = cached(spec["train"].get("data", "python_docs"))
    mc = GPTConfig(vocab_size=d.vocab_size, **spec["model"])
    tc = TrainConfig(**spec["train"])
    rm = spec["removal"]
    ft_tc = TrainConfig(**{**tc.to_dict(), "lr": rm["ft_lr"]})
    old = torch.get_num_threads()
    torch.set_num_threads(tc.threads or old)
    try:
        r = train(mc, tc, data=d, progress=False, keep_model=True)
        trained = r.model
        names = removal_order(trained)
        ft_steps = rm["steps_per_norm"] * len(names) + rm["final_steps"]
        val = lambda m: evaluate(m, d, tc, mc.block_size)
        out = {"val_loss": r.val_loss, "loss": r.history["loss"], "norms": names,
               "sigma": norm_input_stats(trained, d, names, seed=tc.seed)}

        swapped = strip_layer_norms(_copy(trained))            # 1. swap to identity, no fine-tuning
        out["val_identity"] = val(swapped)
        frozen = _copy(trained)                                # 2. freeze all sigmas at once, no fine-tuning
        for i, n in enumerate(names):
            freeze_norm(frozen, n, d, seed=tc.seed + i)
        out["val_frozen_all"] = val(frozen)
        gradual = remove_gradually(_copy(trained), d, ft_tc, steps_per_norm=rm["steps_per_norm"],
                                   final_steps=rm["final_steps"], seed=tc.seed)
        out["gradual"] = gradual
        out["val_gradual"] = gradual["val"]
        # controls: the same fine-tuning budget with LayerNorm kept, and after the identity swap
        ctl = _copy(trained)
        out["ft_loss_kept"] = _finetune(ctl, d, ft_tc, ft_steps, seed=1000 * (tc.seed + 1) + 500)
        out["val_kept_ft"] = val(ctl)
        swapped_ft = strip_layer_norms(_copy(trained))
        out["ft_loss_identity"] = _finetune(swapped_ft, d, ft_tc, ft_steps, seed=1000 * (tc.seed + 1) + 500)
        out["val_identity_ft"] = val(swapped_ft)
        out["ft_steps"] = ft_steps
        return out
    finally:
        torch.set_num_threads(old)
