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

from normcourse.blocks import (ALL_PLACEMENTS, NORMS, Block, NGPTBlock, Scaling, check_residual,
                               deepnorm_constants, make_norm, qk_norm_kind, unit)
from normcourse.checks import check_bool, check_int, check_number, check_token_batch
from normcourse.residual_streams import identity_mixings


@dataclass
class GPTConfig:
    """Everything that defines a TinyGPT.

    ``placement`` is one name for every layer, or a list or tuple with one name
    per layer (mixed schemes, e.g. post-norm below and pre-norm above); a list
    is stored as a tuple.  Every field is checked when the config is made.
    """

    vocab_size: int = 65
    block_size: int = 64          # longest sequence the position table covers
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 64
    placement: str | tuple = "pre"
    norm: str = "layernorm"       # layernorm, rmsnorm, dyt, identity, derf
    norm_eps: float = 1e-5
    dyt_alpha: float = 0.5        # DyT's initial alpha
    derf_alpha: float = 0.5       # Derf's initial alpha (its shift starts at 0)
    bias: bool = True
    mlp_ratio: int = 4
    init_std: float = 0.02        # N(0, 0.02) for every weight, as nanoGPT (GPT-2's own code
                                  # draws wte from 0.02 but wpe from 0.01)
    embed_scale: float = 1.0      # multiplies token + position embeddings in forward; 50
                                  # (= 1/init_std) makes each of the two unit-scale (their sum
                                  # has RMS ~1.4), an order-one input like the sqrt(d)-scaled
                                  # embeddings of Vaswani et al. and fairseq; the tied output
                                  # head is unaffected
    scaled_residual_init: bool = True   # GPT-2: branch outputs get std/sqrt(2L)
    depth_scaled_norm: bool = False     # LayerNorm scaling: norm output * 1/sqrt(l)
    embed_norm: bool = False      # a norm on the embeddings before the first block
    final_norm: bool | None = None  # None: only when the last layer is pre, peri or reordered
    qk_norm: bool = False         # QK-norm: the model's norm on each head's q and k
    residual: str = "plain"       # plain, hyper (hyper-connections) or mhc
    n_streams: int = 4            # residual streams of hyper / mhc (unused by plain)
    # DyT's LLaMA recipe (Zhu et al. 2025, the DyT repository's other_tasks/LLaMA):
    embed_scale_learned: bool = False   # a learned scalar times the embeddings, from sqrt(d_model)
    dyt_alpha_attn: float | None = None  # the attention norms' initial alpha (None: dyt_alpha)
    dyt_bias: bool = True         # False: DyT without beta, gamma * tanh(alpha x)
    norm_affine: bool = True      # False: LayerNorm/RMSNorm without gamma and beta (E9)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Check every field; raise a ValueError/TypeError naming the field and its limits.

        Runs when the config is made (and again when a TinyGPT is built from it,
        in case a field was changed in between).  A list placement becomes a tuple.
        """
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "d_model", "mlp_ratio", "n_streams"):
            check_int(f"GPTConfig.{name}", getattr(self, name), low=1)
        if self.d_model % self.n_head != 0:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_head={self.n_head}")
        # checked even when no layer uses a norm (placement "none"), so a typo never hides
        if self.norm not in NORMS:
            raise ValueError(f"unknown norm {self.norm!r}; choose one of {', '.join(NORMS)}")
        check_number("GPTConfig.norm_eps", self.norm_eps, gt=0)   # eps <= 0 or NaN: NaN logits
        check_number("GPTConfig.init_std", self.init_std, gt=0)
        check_number("GPTConfig.embed_scale", self.embed_scale, gt=0)
        check_number("GPTConfig.dyt_alpha", self.dyt_alpha)
        check_number("GPTConfig.derf_alpha", self.derf_alpha)
        if self.dyt_alpha_attn is not None:
            check_number("GPTConfig.dyt_alpha_attn", self.dyt_alpha_attn)
        for name in ("embed_scale_learned", "dyt_bias", "norm_affine"):
            check_bool(f"GPTConfig.{name}", getattr(self, name))
        if not self.norm_affine and self.norm in ("dyt", "derf"):
            raise ValueError(f"GPTConfig.norm_affine=False removes the gamma and beta of a LayerNorm or "
                             f"RMSNorm; norm {self.norm!r} keeps its own parameters")
        for name in ("bias", "scaled_residual_init", "depth_scaled_norm", "embed_norm", "qk_norm"):
            check_bool(f"GPTConfig.{name}", getattr(self, name))
        check_bool("GPTConfig.final_norm", self.final_norm, allow_none=True)
        if isinstance(self.placement, list):
            self.placement = tuple(self.placement)   # hashable, and to_dict stores this order
        elif not isinstance(self.placement, (str, tuple)):
            # a set has no order (layers would not match to_dict) and a generator is used up
            # by the first call to placements(): only ordered, reusable sequences are accepted
            raise TypeError(f"GPTConfig.placement must be one name (str) or a list/tuple of names, one "
                            f"per layer, got {type(self.placement).__name__} {self.placement!r}; "
                            f"names: {', '.join(ALL_PLACEMENTS)}")
        for p in self.placements():
            check_residual(self.residual, p)
        qk_norm_kind(self.norm, self.qk_norm)   # QK-norm needs a real norm
        if "ngpt" in self.placements():
            self._check_ngpt()

    def _check_ngpt(self) -> None:
        """nGPT is a whole model on the unit sphere: refuse the options it replaces or cannot use."""
        if set(self.placements()) != {"ngpt"}:
            raise ValueError("placement 'ngpt' must be every layer's: nGPT keeps each hidden state on the "
                             "unit sphere, which no other placement's output is")
        why = {"qk_norm": (self.qk_norm, "nGPT normalizes q and k itself (s_qk * q / |q|)"),
               "norm": (self.norm not in ("layernorm", "identity"),
                        "nGPT has no norm layers (its Norm is v / |v|); leave norm at its default"),
               "embed_norm": (self.embed_norm, "nGPT puts the input on the sphere itself"),
               "final_norm": (bool(self.final_norm), "nGPT's last hidden state is already unit length"),
               "depth_scaled_norm": (self.depth_scaled_norm, "nGPT has no norm outputs to scale"),
               "embed_scale": (self.embed_scale != 1.0, "nGPT normalizes the embeddings, so a scale "
                                                        "would have no effect"),
               "embed_scale_learned": (self.embed_scale_learned, "nGPT normalizes the embeddings, so a "
                                                                 "scale would have no effect")}
        for name, (bad, reason) in why.items():
            if bad:
                raise ValueError(f"GPTConfig.{name}={getattr(self, name)!r} cannot be used with "
                                 f"placement 'ngpt': {reason}")

    def placements(self) -> list[str]:
        """The placement of each layer, validated."""
        if isinstance(self.placement, str):
            per_layer = [self.placement] * self.n_layer
        else:
            per_layer = list(self.placement)
            if len(per_layer) != self.n_layer:
                raise ValueError(f"placement lists {len(per_layer)} layers but n_layer={self.n_layer}")
        for p in per_layer:
            if p not in ALL_PLACEMENTS:
                raise ValueError(f"unknown placement {p!r}; choose one of {', '.join(ALL_PLACEMENTS)}")
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
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        config.validate()
        self.config = config
        per_layer = config.placements()
        norm_kw = dict(eps=config.norm_eps, dyt_alpha=config.dyt_alpha, derf_alpha=config.derf_alpha,
                       device=device, dyt_bias=config.dyt_bias, affine=config.norm_affine)
        self.ngpt = per_layer[0] == "ngpt"   # GPTConfig allows nGPT only in every layer
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        self.wpe = nn.Embedding(config.block_size, config.d_model)
        self.norm_embed = make_norm(config.norm, config.d_model, **norm_kw) if config.embed_norm else None
        self.blocks = nn.ModuleList(
            NGPTBlock(config.d_model, config.n_head, config.mlp_ratio) if p == "ngpt" else
            Block(config.d_model, config.n_head, placement=p, norm=config.norm,
                  n_layer=config.n_layer, layer_index=i, eps=config.norm_eps,
                  dyt_alpha=config.dyt_alpha, derf_alpha=config.derf_alpha, bias=config.bias,
                  mlp_ratio=config.mlp_ratio,
                  depth_scaled_norm=config.depth_scaled_norm, qk_norm=config.qk_norm,
                  residual=config.residual, n_streams=config.n_streams, device=device,
                  dyt_alpha_attn=config.dyt_alpha_attn, dyt_bias=config.dyt_bias,
                  norm_affine=config.norm_affine)
            for i, p in enumerate(per_layer)
        )
        # DyT's LLaMA code: x = embedding(ids) * s, s learned and starting at sqrt(d_model)
        self.embed_gain = (nn.Parameter(torch.full((1,), math.sqrt(config.d_model)))
                           if config.embed_scale_learned else None)
        # Pre, peri and reordered leave the residual stream un-normalised; the head needs it normalised.
        final = (config.final_norm if config.final_norm is not None
                 else per_layer[-1] in ("pre", "peri", "reordered"))
        self.norm_final = make_norm(config.norm, config.d_model, **norm_kw) if final else None
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if self.ngpt:   # nGPT: an untied head, its logits scaled by s_z
            self.s_z = Scaling(config.vocab_size, 1.0, config.d_model ** -0.5)
        else:
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
        if self.ngpt:   # every weight vector on the unit sphere from the start
            self.normalize_weights()
            return
        for block in self.blocks:
            if block.placement == "deepnorm":
                _deepnorm_init(block, c.n_layer)
            elif c.scaled_residual_init:
                # each of the 2L branches adds to the stream: keep its sum's variance O(1)
                std = c.init_std / math.sqrt(2 * c.n_layer)
                nn.init.normal_(block.attn.c_proj.weight, 0.0, std)
                nn.init.normal_(block.mlp.c_proj.weight, 0.0, std)

    @torch.no_grad()
    def normalize_weights(self) -> None:
        """nGPT: put every weight vector along d_model back on the unit sphere.

        ``train`` calls this after each optimizer step (and the model once at
        init): embedding and head rows, and each block's matrices (see
        :meth:`normcourse.blocks.NGPTBlock.normalize_weights`).
        """
        if not self.ngpt:
            raise ValueError("normalize_weights() is nGPT's step (placement='ngpt'); on this model it "
                             "would change what the weights compute")
        for emb in (self.wte.weight, self.wpe.weight, self.lm_head.weight):
            emb.copy_(unit(emb, dim=1))
        for block in self.blocks:
            block.normalize_weights()

    def record_max_attention_logits(self, on: bool = True) -> None:
        """From the next forward on, each attention keeps its largest logit (one extra matmul)."""
        for block in self.blocks:
            block.attn.record_max_logit = on

    def max_attention_logits(self) -> list[float]:
        """Each layer's largest attention logit in the last forward (after recording was turned on)."""
        if any(b.attn.max_logit is None for b in self.blocks):
            raise RuntimeError("no attention logits recorded yet: call record_max_attention_logits() "
                               "and run a forward first")
        return [float(b.attn.max_logit) for b in self.blocks]

    def residual_mixings(self) -> list[torch.Tensor]:
        """The stream-mixing matrix of every sub-layer in depth order (attn 1, MLP 1, attn 2, ...).

        Hyper-connections and mHC: the matrices of the last forward, (B, T, n, n);
        a plain residual: the 1 x 1 identity.  Feed them to
        :func:`normcourse.residual_streams.composite_gains`.
        """
        if self.config.residual == "plain":
            return identity_mixings(2 * len(self.blocks))
        return [m for b in self.blocks for m in (b.streams_attn.residual_mixing(),
                                                 b.streams_mlp.residual_mixing())]

    def forward(self, idx, targets=None):
        """Logits (B, T, vocab) and, given targets, the mean cross-entropy.

        ``idx`` and ``targets`` are (B, T) integer token ids in [0, vocab_size).
        """
        check_token_batch(idx, targets, vocab_size=self.config.vocab_size,
                          block_size=self.config.block_size, device=self.wte.weight.device)
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x)
        return self.head(x, targets)

    def embed(self, idx):
        """The first block's input for token ids ``idx`` (B, T): (B, T, C), or (B, T, n, C) with streams.

        ``embed``, the blocks in turn, then ``head`` is the whole forward; a
        diagnostic that wants each layer's output reads :meth:`residual_streams`.
        """
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        if self.ngpt:   # the paper uses rotary positions; we keep our learned table, on the sphere
            return unit(x)
        if self.config.embed_scale != 1.0:
            x = x * self.config.embed_scale
        if self.embed_gain is not None:
            x = x * self.embed_gain
        if self.norm_embed is not None:
            x = self.norm_embed(x)
        if self.config.residual != "plain":   # n copies of the embedding, one per residual stream
            x = x.unsqueeze(2).repeat(1, 1, self.config.n_streams, 1)
        return x

    def residual_streams(self, idx) -> list[torch.Tensor]:
        """[h_0, h_1, ..., h_L]: the hidden state entering the first block, then each block's output.

        h_0 is :meth:`embed`'s output and h_l block l's, so h_{l-1} and h_l are
        what enters and leaves block l; ``head(h_L)`` gives the logits.  Wrap the
        call in ``torch.no_grad()`` when only the values are wanted.
        """
        hs = [self.embed(idx)]
        for block in self.blocks:
            hs.append(block(hs[-1]))
        return hs

    def head(self, x, targets=None):
        """Logits (and the loss, given targets) from the last block's output ``x``."""
        if self.config.residual != "plain":
            x = x.sum(dim=2)
        if self.norm_final is not None:
            x = self.norm_final(x)
        logits = self.lm_head(x)
        if self.ngpt:
            logits = self.s_z() * logits
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1).long())
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
