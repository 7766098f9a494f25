"""E9: LayerNorm's affine parameters and the memorization of noisy labels.

Singhal and Kim 2025 (NeurIPS; arXiv 2511.10566) flip a small fraction of the
training labels and compare models with and without LayerNorm's learnable
parameters (gamma and beta; the normalization itself stays): in Pre-LN models
removing them "exacerbates memorization and destabilizes learning", in Post-LN
models it "mitigates memorization by restoring genuine labels".  Their scores,
on the flipped training examples: *memorization* (the model predicts the flipped
label), *recovery* (it predicts the true one) and *random* (neither); learning
is the accuracy on held-out data.

The CPU-scale version here needs no download: a TinyGPT reads a sequence of
``seq_len`` tokens drawn uniformly from ``n_class`` symbols and predicts, at the
last position (which attends to the whole sequence), the symbol that occurs most
often (ties go to the smallest).  ``noise`` of the training labels are replaced
by another class, uniformly.  Training is many epochs over a fixed training set
(the preview's 800 steps are about 26 epochs; there memorization is still rising,
while the paper trains to 100% training accuracy: see chapter 4).  The classes are the first
``n_class`` token ids; the logits of the other ids are ignored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from normcourse.model import GPTConfig, TinyGPT
from normcourse.train import TrainConfig, lr_at, make_optimizer

DATA_SEED = 9   # the task's data do not change with the model's seed: one data set per grid


def majority_task(n: int, seq_len: int, n_class: int, generator: torch.Generator):
    """``(x, y)``: n sequences of token ids in [0, n_class) and each one's most frequent id."""
    x = torch.randint(0, n_class, (n, seq_len), generator=generator)
    counts = F.one_hot(x, n_class).sum(1)
    return x, counts.argmax(1)   # argmax returns the first maximum: ties go to the smallest id


def flip_labels(y: torch.Tensor, fraction: float, n_class: int, generator: torch.Generator):
    """``(y_noisy, flipped)``: ``round(fraction * n)`` labels moved to another class, uniformly."""
    n = len(y)
    flipped = torch.zeros(n, dtype=torch.bool)
    flipped[torch.randperm(n, generator=generator)[:round(fraction * n)]] = True
    shift = torch.randint(1, n_class, (n,), generator=generator)   # never 0: always another class
    return torch.where(flipped, (y + shift) % n_class, y), flipped


def task_data(task: dict):
    """The train and test sets of ``task`` (n_train, n_test, n_class, noise, seq_len)."""
    g = torch.Generator().manual_seed(DATA_SEED)
    x, y = majority_task(task["n_train"] + task["n_test"], task["seq_len"], task["n_class"], g)
    x_train, y_true = x[:task["n_train"]], y[:task["n_train"]]
    y_noisy, flipped = flip_labels(y_true, task["noise"], task["n_class"], g)
    return dict(x_train=x_train, y_true=y_true, y_noisy=y_noisy, flipped=flipped,
                x_test=x[task["n_train"]:], y_test=y[task["n_train"]:])


@torch.no_grad()
def predict(model: TinyGPT, x: torch.Tensor, n_class: int, batch: int = 500) -> torch.Tensor:
    """The predicted class of every sequence in ``x`` (eval mode, in batches)."""
    model.eval()
    out = [model(x[i:i + batch])[0][:, -1, :n_class].argmax(-1) for i in range(0, len(x), batch)]
    model.train()
    return torch.cat(out)


def scores(model: TinyGPT, data: dict, n_class: int) -> dict:
    """Singhal and Kim's scores (fractions, not percent) and the clean accuracies."""
    train_pred = predict(model, data["x_train"], n_class)
    flipped, clean = data["flipped"], ~data["flipped"]
    on_flipped = train_pred[flipped]
    memorized = (on_flipped == data["y_noisy"][flipped]).float().mean().item()
    recovered = (on_flipped == data["y_true"][flipped]).float().mean().item()
    return dict(memorization=memorized, recovery=recovered, random=1.0 - memorized - recovered,
                clean_train_acc=(train_pred[clean] == data["y_true"][clean]).float().mean().item(),
                test_acc=(predict(model, data["x_test"], n_class) == data["y_test"]).float().mean().item())


def memorization_run(task: dict, mc: GPTConfig, tc: TrainConfig, checkpoints: int = 10) -> dict:
    """Train on the noisy labels; the scores at ``checkpoints`` evenly spaced steps and at the end."""
    data = task_data(task)
    if mc.block_size < task["seq_len"]:
        raise ValueError(f"block_size={mc.block_size} is shorter than the task's seq_len={task['seq_len']}")
    torch.manual_seed(tc.seed)
    model = TinyGPT(mc)
    opt = make_optimizer(model, tc)
    g = torch.Generator().manual_seed(tc.seed)
    n = len(data["y_noisy"])
    order, at = torch.randperm(n, generator=g), 0
    every = max(1, tc.steps // checkpoints)
    history, losses = [], []
    for step in range(tc.steps):
        if at + tc.batch_size > n:   # next epoch: a new order
            order, at = torch.randperm(n, generator=g), 0
        idx = order[at:at + tc.batch_size]
        at += tc.batch_size
        for group in opt.param_groups:
            group["lr"] = lr_at(step, tc)
        logits = model(data["x_train"][idx])[0][:, -1, :task["n_class"]]
        loss = F.cross_entropy(logits, data["y_noisy"][idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % every == 0 or step + 1 == tc.steps:
            history.append({"step": step + 1, **scores(model, data, task["n_class"])})
    return {**history[-1], "history": history, "loss": losses, "n_flipped": int(data["flipped"].sum()),
            "epochs": tc.steps * tc.batch_size / n}
