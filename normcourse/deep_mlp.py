"""A deep MLP for signal-propagation experiments, and the statistics to read it with.

The network is the one Karpathy's makemore lectures look at, made configurable::

    h_0 = x
    z_l = W_l h_{l-1}                      # Linear, no bias
    z_l = Norm(z_l)                        # optional: LayerNorm or BatchNorm
    a_l = act(z_l)                         # tanh by default
    h_l = a_l            (plain)           or   h_l = h_{l-1} + a_l   (residual)

followed by a linear read-out to ``n_classes`` logits.  Weights are drawn from
N(0, (gain^2 / fan_in)): ``gain = 1`` is LeCun/Glorot-style scaling, ``gain = 5/3``
is what ``torch.nn.init.calculate_gain("tanh")`` recommends.

The functions below collect what a practitioner looks at: per-layer activation
and gradient statistics, the fraction of saturated tanh units, and the
update:data ratio ``std(lr * grad) / std(weight)`` during training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DeepMLP",
    "LayerStats",
    "fraction_saturated",
    "layer_stats",
    "update_to_data_ratio",
    "train_and_track_updates",
    "make_teacher_data",
]

_ACTIVATIONS = {"tanh": torch.tanh, "relu": F.relu, "identity": lambda z: z}


class DeepMLP(nn.Module):
    """``depth`` hidden layers of width ``width``, with optional residuals and norms.

    ``norm`` is None, "layernorm" or "batchnorm" (applied to the pre-activation,
    before the nonlinearity, as in Ioffe & Szegedy 2015).  After every forward
    pass, ``self.activations`` holds the post-nonlinearity output of each hidden
    layer (``a_l`` above), with gradients retained so that their ``.grad`` can be
    read after ``loss.backward()``.
    """

    def __init__(self, n_in: int = 32, width: int = 100, depth: int = 50, n_classes: int = 10,
                 activation: str = "tanh", gain: float = 5 / 3, residual: bool = False,
                 norm: str | None = None):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if norm not in (None, "layernorm", "batchnorm"):
            raise ValueError(f"norm must be None, 'layernorm' or 'batchnorm', got {norm!r}")
        self.activation, self.gain, self.residual, self.norm_kind = activation, gain, residual, norm
        self.inp = nn.Linear(n_in, width, bias=False)
        self.hidden = nn.ModuleList(nn.Linear(width, width, bias=False) for _ in range(depth))
        if norm == "layernorm":
            self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(depth))
        elif norm == "batchnorm":
            self.norms = nn.ModuleList(nn.BatchNorm1d(width) for _ in range(depth))
        else:
            self.norms = None
        self.out = nn.Linear(width, n_classes, bias=False)
        with torch.no_grad():
            # The input projection is linear and unit-gain so every config sees the same h_0.
            self.inp.weight.normal_(0.0, 1.0 / n_in ** 0.5)
            for lin in self.hidden:
                lin.weight.normal_(0.0, gain / width ** 0.5)
            self.out.weight.normal_(0.0, 0.1 / width ** 0.5)  # small logits at init
        self.activations: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = _ACTIVATIONS[self.activation]
        h = self.inp(x)
        self.activations = []
        for i, lin in enumerate(self.hidden):
            z = lin(h)
            if self.norms is not None:
                z = self.norms[i](z)
            a = act(z)
            if a.requires_grad:
                a.retain_grad()
            self.activations.append(a)
            h = h + a if self.residual else a
        return self.out(h)


def fraction_saturated(a: torch.Tensor, threshold: float = 0.97) -> float:
    """Fraction of tanh outputs with ``|a| > threshold`` (their local gradient 1 - a^2 is tiny)."""
    return float((a.detach().abs() > threshold).float().mean())


@dataclass
class LayerStats:
    """Statistics of one hidden layer's output ``a_l`` and of the gradient reaching it."""

    layer: int
    act_mean: float
    act_std: float
    saturated: float
    grad_std: float


def layer_stats(model: DeepMLP, x: torch.Tensor, y: torch.Tensor,
                threshold: float = 0.97) -> list[LayerStats]:
    """One forward and backward pass (cross-entropy on ``y``); statistics per hidden layer.

    Parameter gradients are zeroed first and left in place afterwards.
    """
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    stats = []
    for i, a in enumerate(model.activations):
        g = a.grad if a.grad is not None else torch.zeros_like(a)
        a = a.detach()
        stats.append(LayerStats(i + 1, float(a.mean()), float(a.std()),
                                fraction_saturated(a, threshold), float(g.std())))
    return stats


def update_to_data_ratio(param: torch.Tensor, grad: torch.Tensor, lr: float) -> float:
    """log10 of ``std(lr * grad) / std(param)``: how big one SGD step is relative to the weights."""
    return float(torch.log10((lr * grad).std() / param.std()))


def make_teacher_data(n: int = 512, n_in: int = 32, n_classes: int = 10,
                      generator: torch.Generator | None = None, device=None):
    """Gaussian inputs labelled by a random linear teacher: a learnable toy task."""
    x = torch.randn(n, n_in, generator=generator)
    teacher = torch.randn(n_in, n_classes, generator=generator)
    y = (x @ teacher).argmax(dim=1)
    return x.to(device), y.to(device)


def train_and_track_updates(model: DeepMLP, x: torch.Tensor, y: torch.Tensor, lr: float = 0.1,
                            steps: int = 100, batch_size: int = 64,
                            generator: torch.Generator | None = None):
    """Plain SGD on minibatches; record losses and per-layer update:data ratios each step.

    Returns ``(losses, ratios)``: a list of ``steps`` floats and a tensor of shape
    ``(steps, depth)`` holding ``log10(std(lr * grad) / std(W_l))`` for each hidden weight.
    """
    losses, ratios = [], []
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=generator).to(x.device)
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        with torch.no_grad():
            ratios.append([update_to_data_ratio(lin.weight, lin.weight.grad, lr)
                           for lin in model.hidden])
            for p in model.parameters():
                if p.grad is not None:
                    p -= lr * p.grad
        losses.append(float(loss.detach()))
    return losses, torch.tensor(ratios)
