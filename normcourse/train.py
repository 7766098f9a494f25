"""Training that survives blowing up.

Half of the course's experiments are about runs that diverge, so a diverging
run must end cleanly, be recorded, and never crash a sweep or a notebook.

Rules, in one place:

- **Divergence.**  A run has diverged at step t if its training loss is NaN
  or infinite, or exceeds ``TrainConfig.diverge_loss`` (default: 2 ln V, twice
  the loss of guessing uniformly among V tokens; no learning run comes back
  from there in our settings).  Training stops at that step;
  ``TrainResult.diverged_at`` records it.
- **Loss spike.**  Step t starts a spike if its loss exceeds ``spike_ratio``
  (default 1.2) times the median loss of the previous ``spike_window``
  (default 20) steps, and step t-1 was not itself in a spike.  A spike
  lasting several steps counts once.
- **Reproducibility.**  Weights come from ``torch.manual_seed(seed)``, batches
  from a separate ``torch.Generator`` seeded with ``seed``; with
  ``threads`` fixed, a CPU run is bit-for-bit repeatable.
- **z-loss.**  With ``z_loss = c > 0`` the optimised objective is the
  cross-entropy plus c * mean(log Z)^2, log Z the log-sum-exp of each
  position's logits (PaLM, Chowdhery et al. 2022; Wortsman et al. 2023 use
  c = 1e-4).  The recorded ``loss`` stays the cross-entropy alone.
- **Attention logits.**  With ``record_attn_logits`` each step records every
  layer's largest attention logit in ``history["layer_max_attn_logit"]``.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

from normcourse.checks import check_bool, check_device, check_int, check_number
from normcourse.data import TokenData, cached
from normcourse.model import GPTConfig, TinyGPT


@dataclass
class TrainConfig:
    """How to train: optimiser, schedule, run length, safety rules."""

    steps: int = 200
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1      # cosine decays to lr * min_lr_ratio
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float | None = 1.0  # None: no clipping
    seed: int = 0
    threads: int | None = None     # torch.set_num_threads during the run
    eval_interval: int = 0         # 0: only evaluate at the end
    eval_batches: int = 4
    diverge_loss: float | None = None   # None: 2 ln(vocab_size)
    spike_ratio: float = 1.2
    spike_window: int = 20
    data: str = "python_docs"
    device: str = "cpu"
    z_loss: float = 0.0            # coefficient of the z-loss; 0: plain cross-entropy
    record_attn_logits: bool = False   # history["layer_max_attn_logit"], one list per step

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Check every field; raise a ValueError/TypeError naming the field and its limits.

        Without this, ``steps=0`` returns an untrained model that looks fine,
        ``grad_clip=-1`` climbs the loss, and ``batch_size=0`` is recorded as a divergence.
        """
        for name, low in (("steps", 1), ("batch_size", 1), ("warmup_steps", 0), ("eval_interval", 0),
                          ("eval_batches", 1), ("spike_window", 1)):
            check_int(f"TrainConfig.{name}", getattr(self, name), low=low)
        check_int("TrainConfig.seed", self.seed)
        if self.threads is not None:
            check_int("TrainConfig.threads (None: leave torch's setting)", self.threads, low=1)
        check_number("TrainConfig.lr", self.lr, gt=0)
        check_number("TrainConfig.min_lr_ratio", self.min_lr_ratio, ge=0, le=1)
        check_number("TrainConfig.weight_decay", self.weight_decay, ge=0)
        check_number("TrainConfig.beta1", self.beta1, ge=0, lt=1)
        check_number("TrainConfig.beta2", self.beta2, ge=0, lt=1)
        if self.grad_clip is not None:   # 0 would zero every gradient, < 0 reverse it
            check_number("TrainConfig.grad_clip (None: no clipping)", self.grad_clip, gt=0)
        if self.diverge_loss is not None:   # inf is allowed: never stop on the loss value
            check_number("TrainConfig.diverge_loss (None: 2 ln V)", self.diverge_loss, gt=0, finite=False)
        check_number("TrainConfig.spike_ratio", self.spike_ratio, gt=0)
        check_number("TrainConfig.z_loss", self.z_loss, ge=0)
        check_bool("TrainConfig.record_attn_logits", self.record_attn_logits)
        if not isinstance(self.data, (str, os.PathLike)):
            raise TypeError(f"TrainConfig.data must be 'python_docs', 'markov' or a path to a text file, "
                            f"got {type(self.data).__name__} {self.data!r}")
        check_device("TrainConfig.device", self.device)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    """What a run did: per-step history, final losses, divergence."""

    history: dict                   # name -> list, one entry per completed step
    final_train_loss: float
    val_loss: float | None
    diverged: bool
    diverged_at: int | None
    spikes: int
    seconds: float
    corpus_sha256: str
    evals: list = field(default_factory=list)   # (step, val_loss)
    model: TinyGPT | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("model")
        return d


def lr_at(step: int, tc: TrainConfig) -> float:
    """Linear warmup to ``lr`` over ``warmup_steps``, then cosine down to ``lr * min_lr_ratio``."""
    if step < tc.warmup_steps:
        return tc.lr * (step + 1) / tc.warmup_steps
    span = max(1, tc.steps - tc.warmup_steps)
    progress = min(1.0, (step - tc.warmup_steps) / span)
    low = tc.lr * tc.min_lr_ratio
    return low + 0.5 * (tc.lr - low) * (1 + math.cos(math.pi * progress))


def count_spikes(losses, ratio: float = 1.2, window: int = 20) -> int:
    """Number of loss spikes by the rule in the module docstring."""
    spikes, in_spike = 0, False
    for t in range(1, len(losses)):
        ref = statistics.median(losses[max(0, t - window):t])
        now = losses[t] > ratio * ref
        if now and not in_spike:
            spikes += 1
        in_spike = now
    return spikes


def make_optimizer(model: torch.nn.Module, tc: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay only on matrices (not on norms, biases, or start maps marked no_weight_decay)."""
    def decays(p):
        return p.dim() >= 2 and not getattr(p, "no_weight_decay", False)
    decay = [p for p in model.parameters() if decays(p)]
    no_decay = [p for p in model.parameters() if not decays(p)]
    groups = [{"params": decay, "weight_decay": tc.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=tc.lr, betas=(tc.beta1, tc.beta2))


VAL_SEED = 1234   # every run is evaluated on the same validation batches


def validation_batches(data: TokenData, batch_size: int, block_size: int, n_batches: int):
    """The fixed validation batches ``[(x, y), ...]`` that :func:`evaluate` averages over."""
    g = torch.Generator().manual_seed(VAL_SEED)
    return [data.batch("val", batch_size, block_size, g) for _ in range(n_batches)]


@torch.no_grad()
def evaluate(model, data: TokenData, tc: TrainConfig, block_size: int) -> float:
    """Mean validation loss over ``eval_batches`` fixed batches."""
    was_training = model.training
    model.eval()
    losses = [model(x.to(tc.device), y.to(tc.device))[1].item()
              for x, y in validation_batches(data, tc.batch_size, block_size, tc.eval_batches)]
    model.train(was_training)
    return sum(losses) / len(losses)


def unigram_loss(data: TokenData, tc: TrainConfig | None = None, block_size: int = 32) -> float:
    """Loss of predicting every character from its training-set frequency alone.

    Computed on the same validation batches as :func:`evaluate`, so a run whose
    ``val_loss`` sits at this value has learned character frequencies and nothing more.
    """
    tc = tc or TrainConfig()
    freq = torch.bincount(data.train, minlength=data.vocab_size).double()
    log_p = torch.log(freq / freq.sum())
    targets = torch.cat([y.flatten() for _, y in
                         validation_batches(data, tc.batch_size, block_size, tc.eval_batches)])
    return -log_p[targets].mean().item()


def _block_rms_hooks(model, store: list):
    """Forward hooks writing each block's output RMS into ``store`` (one float per block)."""
    def hook(i):
        def fn(_module, _inputs, out):
            store[i] = out.detach().float().pow(2).mean().sqrt()
        return fn
    return [b.register_forward_hook(hook(i)) for i, b in enumerate(model.blocks)]


def train(model_config: GPTConfig, train_config: TrainConfig | None = None, *,
          data: TokenData | None = None, progress: bool = True,
          keep_model: bool = False, model: TinyGPT | None = None) -> TrainResult:
    """Train a TinyGPT and return its history; divergence ends the run cleanly.

    ``data`` defaults to ``train_config.data`` (the embedded corpus);
    ``model_config.vocab_size`` must match it.  ``progress=False`` silences
    the tqdm bar (tests, notebooks with stored outputs).
    """
    if not isinstance(model_config, GPTConfig):
        raise TypeError(f"model_config must be a GPTConfig, got {type(model_config).__name__}")
    if train_config is not None and not isinstance(train_config, TrainConfig):
        raise TypeError(f"train_config must be a TrainConfig or None, got {type(train_config).__name__}")
    tc = train_config or TrainConfig()
    tc.validate()   # again: a field may have been changed since the config was made
    model_config.validate()
    data = data or cached(tc.data)
    if model_config.vocab_size != data.vocab_size:
        raise ValueError(f"model vocab_size={model_config.vocab_size} but the data has {data.vocab_size} tokens")
    check_fits(data, model_config.block_size)
    old_threads = torch.get_num_threads()
    if tc.threads:
        torch.set_num_threads(tc.threads)
    try:
        return _train(model_config, tc, data, progress, keep_model, model)
    finally:
        torch.set_num_threads(old_threads)


def check_fits(data: TokenData, block_size: int) -> None:
    """Raise now, not at the first batch or the final evaluation, if a split is too short.

    A batch is a window of ``block_size + 1`` tokens, so each split needs more
    than ``block_size`` of them.
    """
    for split, ids in (("train", data.train), ("validation", data.val)):
        if len(ids) <= block_size:
            raise ValueError(
                f"the {split} split of data {data.name!r} has {len(ids)} tokens but block_size="
                f"{block_size} needs more than {block_size}; use more text, a smaller block_size"
                + (" or a larger val_fraction" if split == "validation" else ""))


def _train(mc, tc, data, progress, keep_model, model):
    from tqdm.auto import tqdm

    torch.manual_seed(tc.seed)
    model = model or TinyGPT(mc, device=tc.device)
    opt = make_optimizer(model, tc)
    gen = torch.Generator().manual_seed(tc.seed)
    limit = tc.diverge_loss if tc.diverge_loss is not None else 2 * math.log(data.vocab_size)
    L = len(model.blocks)
    hist = {k: [] for k in ("loss", "lr", "grad_norm", "layer_grad_norm", "layer_rms")}
    rms = [None] * L
    hooks = _block_rms_hooks(model, rms)
    if tc.record_attn_logits:
        model.record_max_attention_logits()
        hist["layer_max_attn_logit"] = []
    diverged_at, evals = None, []
    t0 = time.perf_counter()
    bar = tqdm(range(tc.steps), disable=not progress, desc=_describe(mc), leave=False)
    try:
        for step in bar:
            lr = lr_at(step, tc)
            for group in opt.param_groups:
                group["lr"] = lr
            x, y = data.batch("train", tc.batch_size, mc.block_size, gen)
            logits, loss = model(x.to(tc.device), y.to(tc.device))
            loss_value = loss.item()
            if not math.isfinite(loss_value) or loss_value > limit:
                diverged_at = step
                break
            if tc.z_loss:   # push log Z towards 0 so that the output logits cannot drift up
                loss = loss + tc.z_loss * logits.float().logsumexp(-1).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            layer_norms = [_grad_norm(b.parameters()) for b in model.blocks]
            if tc.grad_clip is not None:
                total = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            else:
                total = _grad_norm(model.parameters())
            total = float(total)
            if not math.isfinite(total):  # a NaN gradient would poison the weights
                diverged_at = step
                break
            opt.step()
            if model.ngpt:   # nGPT: weights back on the unit sphere after every step
                model.normalize_weights()
            hist["loss"].append(loss_value)
            hist["lr"].append(lr)
            hist["grad_norm"].append(total)
            hist["layer_grad_norm"].append([float(v) for v in layer_norms])
            hist["layer_rms"].append([float(v) for v in rms])
            if tc.record_attn_logits:
                hist["layer_max_attn_logit"].append(model.max_attention_logits())
            if tc.eval_interval and (step + 1) % tc.eval_interval == 0 and step + 1 < tc.steps:
                evals.append((step + 1, evaluate(model, data, tc, mc.block_size)))
            if progress and step % 10 == 0:
                bar.set_postfix(loss=f"{loss_value:.3f}")
    finally:
        bar.close()
        for h in hooks:
            h.remove()
        if tc.record_attn_logits:
            model.record_max_attention_logits(False)
    diverged = diverged_at is not None
    val = None if diverged else evaluate(model, data, tc, mc.block_size)
    if val is not None:
        evals.append((len(hist["loss"]), val))
    losses = hist["loss"]
    tail = losses[-10:]
    return TrainResult(
        history=hist,
        final_train_loss=(sum(tail) / len(tail)) if tail else float("nan"),
        val_loss=val, diverged=diverged, diverged_at=diverged_at,
        spikes=count_spikes(losses, tc.spike_ratio, tc.spike_window),
        seconds=time.perf_counter() - t0, corpus_sha256=data.sha256, evals=evals,
        model=model if keep_model else None)


def _grad_norm(params) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def _describe(mc: GPTConfig) -> str:
    p = mc.placement if isinstance(mc.placement, str) else "mixed"
    return f"{p}/{mc.norm} L={mc.n_layer}"
