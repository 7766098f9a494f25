"""TinyGPT: a small character-level GPT whose norm placement is a setting.

Read top-down like nanoGPT's model.py: the config, then the model.  The blocks
themselves (and the table of placements) live in :mod:`normcourse.blocks`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from normcourse.blocks import PLACEMENTS, Block, deepnorm_constants, make_norm


@dataclass
class GPTConfig:
    """Everything that defines a TinyGPT.

    ``placement`` is one name for every layer, or a sequence with one name per
    layer (mixed schemes, e.g. post-norm below and pre-norm above).
    """

    vocab_size: int = 65
    block_size: int = 64          # longest sequence the position table covers
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 64
    placement: str | tuple = "pre"
    norm: str = "layernorm"       # layernorm, rmsnorm, dyt, identity
    norm_eps: float = 1e-5
    dyt_alpha: float = 0.5        # DyT's initial alpha
    bias: bool = True
    mlp_ratio: int = 4
    init_std: float = 0.02        # GPT-2's N(0, 0.02) for every weight
    embed_scale: float = 1.0      # multiplies token + position embeddings in forward; 50
                                  # (= 1/init_std) makes each of the two unit-scale (their sum
                                  # has RMS ~1.4), an order-one input like the sqrt(d)-scaled
                                  # embeddings of Vaswani et al. and fairseq; the tied output
                                  # head is unaffected
    scaled_residual_init: bool = True   # GPT-2: branch outputs get std/sqrt(2L)
    depth_scaled_norm: bool = False     # LayerNorm scaling: norm output * 1/sqrt(l)
    embed_norm: bool = False      # a norm on the embeddings before the first block
    final_norm: bool | None = None  # None: only when the last layer is pre or peri

    def placements(self) -> list[str]:
        """The placement of each layer, validated."""
        if isinstance(self.placement, str):
            per_layer = [self.placement] * self.n_layer
        else:
            per_layer = list(self.placement)
            if len(per_layer) != self.n_layer:
                raise ValueError(f"placement lists {len(per_layer)} layers but n_layer={self.n_layer}")
        for p in per_layer:
            if p not in PLACEMENTS:
                raise ValueError(f"unknown placement {p!r}; choose one of {', '.join(PLACEMENTS)}")
        return per_layer

    def to_dict(self) -> dict:
        d = asdict(self)
        if not isinstance(d["placement"], str):
            d["placement"] = list(d["placement"])
        return d


class TinyGPT(nn.Module):
    """Token + position embeddings, ``n_layer`` blocks, (final norm), tied head."""

    def __init__(self, config: GPTConfig, device=None):
        super().__init__()
        if config.d_model % config.n_head != 0:
            raise ValueError(f"d_model={config.d_model} must be divisible by n_head={config.n_head}")
        self.config = config
        per_layer = config.placements()
        norm_kw = dict(eps=config.norm_eps, dyt_alpha=config.dyt_alpha, device=device)
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        self.wpe = nn.Embedding(config.block_size, config.d_model)
        self.norm_embed = make_norm(config.norm, config.d_model, **norm_kw) if config.embed_norm else None
        self.blocks = nn.ModuleList(
            Block(config.d_model, config.n_head, placement=p, norm=config.norm,
                  n_layer=config.n_layer, layer_index=i, eps=config.norm_eps,
                  dyt_alpha=config.dyt_alpha, bias=config.bias, mlp_ratio=config.mlp_ratio,
                  depth_scaled_norm=config.depth_scaled_norm, device=device)
            for i, p in enumerate(per_layer)
        )
        # Pre and peri leave the residual stream un-normalised; the head needs it normalised.
        final = config.final_norm if config.final_norm is not None else per_layer[-1] in ("pre", "peri")
        self.norm_final = make_norm(config.norm, config.d_model, **norm_kw) if final else None
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying, as in GPT-2
        self.reset_parameters()
        if device is not None:
            self.to(device)

    @torch.no_grad()
    def reset_parameters(self):
        """GPT-2 init; DeepNorm layers get the DeepNet paper's init instead."""
        c = self.config
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, c.init_std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, 0.0, c.init_std)
        for block in self.blocks:
            if block.placement == "deepnorm":
                _deepnorm_init(block, c.n_layer)
            elif c.scaled_residual_init:
                # each of the 2L branches adds to the stream: keep its sum's variance O(1)
                std = c.init_std / math.sqrt(2 * c.n_layer)
                nn.init.normal_(block.attn.c_proj.weight, 0.0, std)
                nn.init.normal_(block.mlp.c_proj.weight, 0.0, std)

    def forward(self, idx, targets=None):
        """Logits (B, T, vocab) and, given targets, the mean cross-entropy."""
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size={self.config.block_size}")
        pos = torch.arange(T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        if self.config.embed_scale != 1.0:
            x = x * self.config.embed_scale
        if self.norm_embed is not None:
            x = self.norm_embed(x)
        for block in self.blocks:
            x = block(x)
        if self.norm_final is not None:
            x = self.norm_final(x)
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss


def _xavier_normal_rows(w: torch.Tensor, fan_in: int, fan_out: int, gain: float):
    nn.init.normal_(w, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


@torch.no_grad()
def _deepnorm_init(block: Block, n_layer: int):
    """DeepNet Figure 2: Xavier-normal, gain beta on v, out and the MLP, 1 on q, k."""
    _, beta = deepnorm_constants(n_layer)
    d = block.attn.c_proj.weight.shape[0]
    w = block.attn.c_attn.weight  # rows: q, k, v stacked
    _xavier_normal_rows(w[:d], d, d, 1.0)
    _xavier_normal_rows(w[d:2 * d], d, d, 1.0)
    _xavier_normal_rows(w[2 * d:], d, d, beta)
    nn.init.xavier_normal_(block.attn.c_proj.weight, gain=beta)
    nn.init.xavier_normal_(block.mlp.c_fc.weight, gain=beta)
    nn.init.xavier_normal_(block.mlp.c_proj.weight, gain=beta)
