"""A pre-norm residual MLP stack with the common ways of scaling its residual branches.

Every block adds a branch to the residual stream ``h``::

    branch(h) = W_2 tanh(W_1 LN(h))                      # LN optional (norm=False)
    "none"        h <- h + branch(h)
    "gpt2"        h <- h + branch(h),  W_2 initialized with std / sqrt(N)   (Radford et al. 2019)
    "rezero"      h <- h + alpha * branch(h),  scalar alpha = 0 at init     (Bachlechner et al. 2020;
                                                                              SkipInit, De & Smith 2020)
    "layerscale"  h <- h + diag(lambda) branch(h),  lambda_i = eps at init  (Touvron et al. 2021)
    "sqrt_half"   h <- sqrt(0.5) * (h + branch(h))                            (Gehring et al. 2017)

``N`` is the number of residual branches: one per block here, two per block in GPT-2
(attention and MLP), hence GPT-2's ``1/sqrt(2 * n_layer)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["SCHEMES", "ResidualStack", "gpt2_residual_std"]

SCHEMES = ("none", "gpt2", "rezero", "layerscale", "sqrt_half")


def gpt2_residual_std(base_std: float, n_branches: int) -> float:
    """GPT-2's init for a layer that writes into the residual stream: base_std / sqrt(N)."""
    return base_std / math.sqrt(n_branches)


class Block(nn.Module):
    def __init__(self, width: int, scheme: str, n_branches: int, norm: bool,
                 layerscale_init: float):
        super().__init__()
        self.scheme = scheme
        self.norm = nn.LayerNorm(width) if norm else nn.Identity()
        self.fc1 = nn.Linear(width, width, bias=False)
        self.fc2 = nn.Linear(width, width, bias=False)
        std = 1.0 / math.sqrt(width)
        with torch.no_grad():
            self.fc1.weight.normal_(0.0, std * 5 / 3)   # tanh gain
            self.fc2.weight.normal_(0.0, gpt2_residual_std(std, n_branches) if scheme == "gpt2" else std)
        if scheme == "rezero":
            self.alpha = nn.Parameter(torch.zeros(()))
        elif scheme == "layerscale":
            self.gamma = nn.Parameter(torch.full((width,), layerscale_init))

    def branch(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(self.norm(h))))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        f = self.branch(h)
        if self.scheme == "rezero":
            return h + self.alpha * f
        if self.scheme == "layerscale":
            return h + self.gamma * f
        if self.scheme == "sqrt_half":
            return math.sqrt(0.5) * (h + f)
        return h + f


class ResidualStack(nn.Module):
    """Input projection, ``depth`` residual blocks, final LayerNorm and a linear read-out.

    After a forward pass ``self.stream`` holds the residual stream after the input projection and
    after every block (``depth + 1`` tensors).
    """

    def __init__(self, n_in: int = 16, width: int = 64, depth: int = 32, n_out: int = 1,
                 scheme: str = "none", norm: bool = True, layerscale_init: float = 0.1):
        super().__init__()
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
        self.scheme = scheme
        self.inp = nn.Linear(n_in, width, bias=False)
        with torch.no_grad():
            self.inp.weight.normal_(0.0, 1.0 / math.sqrt(n_in))
        self.blocks = nn.ModuleList(Block(width, scheme, depth, norm, layerscale_init)
                                    for _ in range(depth))
        self.norm_f = nn.LayerNorm(width)
        self.out = nn.Linear(width, n_out)
        self.stream: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        self.stream = [h.detach()]
        for block in self.blocks:
            h = block(h)
            self.stream.append(h.detach())
        return self.out(self.norm_f(h))

    def stream_std(self) -> list[float]:
        """Standard deviation of the residual stream after the input and after each block."""
        return [float(h.std()) for h in self.stream]
