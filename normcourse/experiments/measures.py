"""What one grid point computes: the measures, in one registry, and :func:`run_one`.

A measure is a function ``(spec, data, model_config, train_config) -> dict``
(numbers only, JSON-ready) plus an estimate of its cost in floating-point
operations, used by ``--dry-run``.  :data:`MEASURES` is the only place
measures are registered.

A run's device is not part of its spec (the spec is the question, the device
the machine that answers it): :func:`run_one` puts it into the training
config.  On the CPU, with ``threads`` fixed, a run is bit-for-bit repeatable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from normcourse import data as data_mod
from normcourse.model import GPTConfig, TinyGPT
from normcourse.train import TrainConfig, train


def configs(spec: dict, device: str = "cpu"):
    """The corpus, model config and training config of ``spec``, on ``device``."""
    d = data_mod.cached(spec["train"].get("data", "python_docs"))
    mc = GPTConfig(vocab_size=d.vocab_size, **spec["model"])
    tc = TrainConfig(**{**spec["train"], "device": device})
    return d, mc, tc


@torch.no_grad()
def _layer_rms(model, x) -> list[float]:
    return [h.pow(2).mean().sqrt().item() for h in model.residual_streams(x)[1:]]


def init_stats(model, d, mc, tc) -> dict:
    """Per-layer output RMS and per-layer gradient norm on one fixed batch."""
    x, y = d.batch("train", tc.batch_size, mc.block_size, torch.Generator().manual_seed(tc.seed))
    x, y = x.to(tc.device), y.to(tc.device)
    model.zero_grad(set_to_none=True)
    _, loss = model(x, y)
    loss.backward()
    grads = [torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in b.parameters()])).item()
             for b in model.blocks]
    model.zero_grad(set_to_none=True)
    return {"loss": loss.item(), "layer_rms": _layer_rms(model, x), "layer_grad_norm": grads}


def _training(r) -> dict:
    return dict(final_train_loss=r.final_train_loss, val_loss=r.val_loss, diverged=r.diverged,
                diverged_at=r.diverged_at, spikes=r.spikes, loss=r.history["loss"])


def measure_train(spec: dict, d, mc, tc) -> dict:
    """Statistics at init, the training history, statistics after training."""
    model = TinyGPT(mc, device=tc.device)
    result = {"init": init_stats(model, d, mc, tc)}
    r = train(mc, tc, data=d, progress=False, keep_model=True)
    result.update(_training(r), grad_norm=r.history["grad_norm"])
    if not r.diverged:
        result["trained"] = init_stats(r.model, d, mc, tc)
    return result


def measure_init(spec: dict, d, mc, tc) -> dict:
    """Statistics of a freshly initialized model only."""
    return {"init": init_stats(TinyGPT(mc, device=tc.device), d, mc, tc)}


def measure_depth(spec: dict, d, mc, tc) -> dict:
    """Train, then chapter 10's layer ablations (normcourse.ablations) at init and after training."""
    from normcourse.ablations import depth_report

    result = {"init": depth_report(TinyGPT(mc, device=tc.device), d, tc.batch_size, mc.block_size)}
    r = train(mc, tc, data=d, progress=False, keep_model=True)
    result.update(_training(r))
    if not r.diverged:
        result["trained"] = depth_report(r.model, d, tc.batch_size, mc.block_size)
    return result


def measure_train_records(spec: dict, d, mc, tc) -> dict:
    """Chapters 13-14: training plus the max attention logit per step, the trained
    stream's RMS per layer and, for several streams, the composite mixing-map gain
    (normcourse.frontier_measures)."""
    from normcourse.frontier_measures import measure_train_records as measure

    return measure(spec, d, mc, tc)


def measure_remove_norm(spec: dict, d, mc, tc) -> dict:
    """Chapter 11's LayerNorm removal (normcourse.remove_norm.removal_experiment)."""
    from normcourse.remove_norm import removal_experiment

    return removal_experiment(spec)


# ----------------------------------------------------------------- cost in FLOPs

def forward_flops(mc: GPTConfig, tokens: int) -> float:
    """Forward FLOPs for ``tokens`` tokens: 2 per weight (matmuls) plus attention.

    Kaplan et al. 2020 (arXiv 2001.08361, Table 1): 2N + 2 n_layer n_ctx d per
    token, N the non-embedding weights (12 n_layer d^2 at mlp_ratio 4); the
    tied head adds 2 d V.  Norms and element-wise work are left out.
    """
    d, L = mc.d_model, mc.n_layer
    per_token = 2 * (4 + 2 * mc.mlp_ratio) * L * d * d + 2 * L * mc.block_size * d + 2 * d * mc.vocab_size
    return per_token * tokens


def _train_flops(mc, tc) -> float:
    # backward ~ 2 forwards; plus the final evaluation
    return 3 * forward_flops(mc, tc.steps * tc.batch_size * mc.block_size) + _eval_flops(mc, tc)


def _eval_flops(mc, tc) -> float:
    return forward_flops(mc, tc.eval_batches * tc.batch_size * mc.block_size)


def _init_stats_flops(mc, tc) -> float:
    return 4 * forward_flops(mc, tc.batch_size * mc.block_size)   # forward + backward, one more forward


def _depth_report_flops(mc, tc, n_batches: int = 4) -> float:
    # one full forward per skipped layer and the base, plus the streams
    return (mc.n_layer + 2) * forward_flops(mc, n_batches * tc.batch_size * mc.block_size)


def _remove_norm_flops(spec, mc, tc) -> float:
    rm = spec["removal"]
    n_norms = 2 * mc.n_layer + 1          # pre-LN: two per block and the final one
    ft = rm["steps_per_norm"] * n_norms + rm["final_steps"]
    ft_tc = TrainConfig(**{**tc.to_dict(), "steps": ft})
    return _train_flops(mc, tc) + 3 * _train_flops(mc, ft_tc) + (n_norms + 6) * _eval_flops(mc, tc)


@dataclass(frozen=True)
class Measure:
    """One kind of grid point: the function, and its cost in FLOPs per run."""

    run: Callable
    flops: Callable          # (spec, model_config, train_config) -> float
    description: str
    cpu_only: str = ""       # why this measure cannot run on a GPU ("" when it can)


MEASURES = {
    "train": Measure(measure_train, lambda s, mc, tc: _train_flops(mc, tc) + 2 * _init_stats_flops(mc, tc),
                     "train, with statistics at init and after"),
    "init": Measure(measure_init, lambda s, mc, tc: _init_stats_flops(mc, tc),
                    "statistics at initialisation only"),
    "depth": Measure(measure_depth, lambda s, mc, tc: _train_flops(mc, tc) + 2 * _depth_report_flops(mc, tc),
                     "train, then layer ablations at init and after"),
    "train_records": Measure(measure_train_records,
                             lambda s, mc, tc: _train_flops(mc, tc) + _eval_flops(mc, tc),
                             "train, then attention logits, stream RMS and mixing gains"),
    "remove_norm": Measure(measure_remove_norm, lambda s, mc, tc: _remove_norm_flops(s, mc, tc),
                           "train, then remove LayerNorm four ways",
                           cpu_only="normcourse.remove_norm builds and finds torch.nn.LayerNorm modules on "
                                    "the CPU, and on CUDA a TinyGPT uses the Triton kernels' LayerNorm"),
}


def measure_of(spec: dict) -> Measure:
    measure = MEASURES.get(spec.get("measure"))
    if measure is None:
        raise ValueError(f"unknown measure {spec.get('measure')!r}; choose one of {', '.join(MEASURES)}")
    return measure


def run_flops(spec: dict) -> float:
    """Estimated FLOPs of one run of ``spec`` (see :func:`forward_flops`)."""
    _, mc, tc = configs(spec)
    return measure_of(spec).flops(spec, mc, tc)


def run_one(spec: dict, device: str = "cpu") -> dict:
    """Run one grid point on ``device`` and return its result (numbers only, JSON-ready)."""
    measure = measure_of(spec)
    if measure.cpu_only and torch.device(device).type != "cpu":
        raise ValueError(f"measure {spec['measure']!r} runs on the CPU only ({measure.cpu_only}); "
                         f"use device='cpu'")
    d, mc, tc = configs(spec, device)
    old = torch.get_num_threads()
    torch.set_num_threads(tc.threads or old)
    try:
        torch.manual_seed(tc.seed)
        return measure.run(spec, d, mc, tc)
    finally:
        torch.set_num_threads(old)


# ------------------------------------------------ E9: memorization of noisy labels

def measure_memorization(spec: dict, d, mc, tc) -> dict:
    """Chapter 4's E9: train a TinyGPT classifier on partly flipped labels
    (normcourse.memorization); memorization, recovery and clean accuracies."""
    from normcourse.memorization import memorization_run

    return memorization_run(spec["task"], mc, tc, checkpoints=spec["task"].get("checkpoints", 4))


def _memorization_flops(spec, mc, tc) -> float:
    task = spec["task"]
    evals = task.get("checkpoints", 4) * (task["n_train"] + task["n_test"]) * task["seq_len"]
    return 3 * forward_flops(mc, tc.steps * tc.batch_size * task["seq_len"]) + forward_flops(mc, evals)


MEASURES["memorization"] = Measure(measure_memorization, _memorization_flops,
                                   "train a classifier on partly flipped labels, then score memorization")
