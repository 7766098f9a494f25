"""Train S seeds of one config at once, as one batched model.

Seed-to-seed variance is half of what a stability experiment measures, and S
tiny models one after another leave a CPU (or a GPU) mostly idle.  Here the S
models' weights are stacked along a new leading dimension
(``torch.func.stack_module_state``), one forward is vectorised over that
dimension with ``torch.vmap`` + ``torch.func.functional_call``, and one AdamW
updates the stacked tensors.  Adam is element-wise, so each slice follows the
same update as a separate run; only gradient clipping couples a model's
parameters, and it is done per seed by hand.

Seed s starts from the same weights and sees the same batches as
``train(model_config, TrainConfig(seed=s))``; the test checks the two agree.

Speed, measured (``python tests/test_multiseed.py``): on one CPU thread the
batched run is *not* faster at d_model 64 (BLAS is already busy with one
model's matmuls, and torch has no vmap rule for the CPU attention kernel, so
attention loops over seeds); it wins only for tiny, overhead-bound models.
The batching pays where one model leaves the device idle, i.e. on a GPU.
"""

from __future__ import annotations

import copy
import math
import time
import warnings

import torch
from torch.func import functional_call, stack_module_state

from normcourse.data import TokenData, cached
from normcourse.model import GPTConfig, TinyGPT
from normcourse.train import TrainConfig, TrainResult, count_spikes, evaluate, lr_at


def train_seeds(model_config: GPTConfig, train_config: TrainConfig, seeds, *,
                data: TokenData | None = None, progress: bool = True) -> list[TrainResult]:
    """Train one model per seed in ``seeds`` together; one :class:`TrainResult` per seed.

    Records loss, learning rate and (pre-clip) global gradient norm per step;
    a seed that diverges (same rule as :func:`normcourse.train.train`) is
    frozen at that step while the others go on.
    """
    from tqdm.auto import tqdm

    tc = train_config
    data = data or cached(tc.data)
    seeds = list(seeds)
    S = len(seeds)
    old_threads = torch.get_num_threads()
    if tc.threads:
        torch.set_num_threads(tc.threads)
    try:
        # torch has no vmap rule for the CPU flash-attention kernel yet: it loops over
        # seeds inside attention only (everything else stays batched) and warns each call
        warnings.filterwarnings("ignore", message=".*batching rule for aten::_scaled_dot_product")
        models = []
        for s in seeds:
            torch.manual_seed(s)  # the same init as a single run with this seed
            models.append(TinyGPT(model_config, device=tc.device))
        params, buffers = stack_module_state(models)
        base = copy.deepcopy(models[0])  # the architecture functional_call runs (ties intact)
        del models
        decay = [p for p in params.values() if p.dim() >= 3]      # stacked matrices
        no_decay = [p for p in params.values() if p.dim() < 3]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": tc.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=tc.lr, betas=(tc.beta1, tc.beta2))

        def one_loss(p, b, x, y):
            return functional_call(base, (p, b), (x, y))[1]

        batched_loss = torch.vmap(one_loss)
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        limit = tc.diverge_loss if tc.diverge_loss is not None else 2 * math.log(data.vocab_size)
        hist = [{"loss": [], "lr": [], "grad_norm": []} for _ in seeds]
        diverged_at = [None] * S
        alive = torch.ones(S, dtype=torch.bool)
        t0 = time.perf_counter()
        for step in tqdm(range(tc.steps), disable=not progress, leave=False, desc=f"{S} seeds"):
            lr = lr_at(step, tc)
            for group in opt.param_groups:
                group["lr"] = lr
            xs, ys = zip(*(data.batch("train", tc.batch_size, model_config.block_size, g) for g in gens))
            losses = batched_loss(params, buffers, torch.stack(xs).to(tc.device), torch.stack(ys).to(tc.device))
            values = losses.tolist()
            for i, v in enumerate(values):
                if alive[i] and (not math.isfinite(v) or v > limit):
                    alive[i] = False
                    diverged_at[i] = step
            if not alive.any():
                break
            opt.zero_grad(set_to_none=True)
            # sum over seeds: d(sum)/d(params of seed s) = d(loss_s)/d(params of seed s)
            losses.sum().backward()
            norms = _per_seed_grad_norm(params.values())
            if tc.grad_clip is not None:
                coef = (tc.grad_clip / (norms + 1e-6)).clamp(max=1.0)   # as clip_grad_norm_
                for p in params.values():
                    p.grad.mul_(coef.view(-1, *([1] * (p.dim() - 1))))
            keep = alive.to(tc.device)
            for p in params.values():   # a diverged seed stops moving
                p.grad.mul_(keep.view(-1, *([1] * (p.dim() - 1))).to(p.dtype))
            frozen = {n: p.detach()[~keep].clone() for n, p in params.items()} if not keep.all() else None
            opt.step()
            if frozen is not None:  # weight decay would still move a frozen seed
                with torch.no_grad():
                    for n, p in params.items():
                        p[~keep] = frozen[n]
            norm_values = norms.tolist()
            for i in range(S):
                if alive[i]:
                    hist[i]["loss"].append(values[i])
                    hist[i]["lr"].append(lr)
                    hist[i]["grad_norm"].append(norm_values[i])
        seconds = time.perf_counter() - t0
        results = []
        for i, s in enumerate(seeds):
            model = TinyGPT(model_config, device=tc.device)
            model.load_state_dict({n: p[i].detach() for n, p in {**params, **buffers}.items()}, strict=False)
            val = None if diverged_at[i] is not None else evaluate(model, data, tc, model_config.block_size)
            tail = hist[i]["loss"][-10:]
            results.append(TrainResult(
                history=hist[i], final_train_loss=sum(tail) / len(tail) if tail else float("nan"),
                val_loss=val, diverged=diverged_at[i] is not None, diverged_at=diverged_at[i],
                spikes=count_spikes(hist[i]["loss"], tc.spike_ratio, tc.spike_window),
                seconds=seconds / S, corpus_sha256=data.sha256))
        return results
    finally:
        torch.set_num_threads(old_threads)


def _per_seed_grad_norm(params) -> torch.Tensor:
    """Global gradient norm of each seed's model: shape (S,)."""
    per_param = [torch.linalg.vector_norm(p.grad.flatten(1), dim=1) for p in params]
    return torch.linalg.vector_norm(torch.stack(per_param, dim=1), dim=1)
