"""Every experiment of the book, in one table, at two scales.

An :class:`Experiment` is a question, a measure (what one grid point computes,
see :mod:`normcourse.experiments.measures`) and two tiers:

- ``preview``: the CPU grids whose results are stored in the repository and
  read by the chapters (d_model 64, context 32, 150-300 steps).  They must
  not change: a changed spec is a new run key, and the stored run no longer
  counts.
- ``full``: the same question sized for GPUs, from the smallest settings of
  the papers the chapter tests that one GPU-day or a small cluster can
  afford.  ``why`` says what each size is for.

A tier is one or more :class:`Part` s (products of axes); an experiment with
several parts (a sweep plus its baseline) lists them, and its runs are the
parts' runs one after the other.  A spec is the JSON-ready dict a run gets:
``{"experiment", "measure", "model", "train"}`` plus a part's ``extra``
top-level fields (E7's removal schedule).

Settings quoted from the papers' own tables:
Vaswani et al. 2017 (arXiv 1706.03762), Table 3: the base Transformer has
6 layers, d_model 512, 8 heads.  Radford et al. 2019 (GPT-2), Table 2: the
four GPT-2 models have 12, 24, 36 and 48 layers (d_model 768 to 1600).
Heimersheim 2024 (arXiv 2409.13710) fine-tunes LayerNorm out of GPT-2 small,
the 12-layer one.  Below, "GPT-2's 12/24/48 layers" means the 117M, 345M and
1542M models of that table.

What no paper fixes for us, and why we chose it:

- d_model 512, 8 heads (the base Transformer's width), context 256 (8 times
  the preview's), batch 16: about 3.2 M parameters per layer, so that 6 to
  48 layers span 19 M to 150 M parameters and a run fits one GPU.
- 2,000 steps (3,000 for E6's layer ablations): 7 to 13 times the preview's
  150 to 300, long enough for the hidden-state growth and the late loss spikes that
  150 steps cannot show.  The embedded corpus has about 418,000 training
  characters, so 2,000 steps of 16 x 256 characters see it about 20 times:
  these grids test trainability (divergence, gradient and activation scale,
  what a layer does), not generalization.  Pass ``data`` in a part's
  ``train`` (a path to a larger text file) for a language-modelling result.
- 5 seeds wherever the chapter compares two settings: the verdict rule of
  :mod:`normcourse.verdicts` needs at least 5 per configuration.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field

from normcourse.blocks import PLACEMENTS
from normcourse.model import GPTConfig

SCALES = ("preview", "full")

# The CPU-size model every preview grid starts from; a part overrides what it varies.
PREVIEW_MODEL = dict(block_size=32, n_head=4, d_model=64, norm="layernorm")
PREVIEW_TRAIN = dict(steps=150, batch_size=16, lr=1e-3, warmup_steps=20, grad_clip=1.0,
                     threads=1, eval_batches=4)
# The GPU-size model every full grid starts from (see the module docstring for why).
FULL_MODEL = dict(block_size=256, n_head=8, d_model=512, norm="layernorm")
FULL_TRAIN = dict(steps=2000, batch_size=16, lr=1e-3, warmup_steps=200, grad_clip=1.0,
                  threads=1, eval_batches=16)
SEEDS5 = [0, 1, 2, 3, 4]


@dataclass(frozen=True)
class Part:
    """One product of axes: ``axes`` maps a config field to the values it takes."""

    axes: dict
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)   # top-level spec fields (E7's "removal")


@dataclass(frozen=True)
class Tier:
    """The parts of one scale, over that scale's base model and training config."""

    parts: tuple
    why: str = ""
    base_model: dict = field(default_factory=lambda: dict(PREVIEW_MODEL))
    base_train: dict = field(default_factory=lambda: dict(PREVIEW_TRAIN))


def preview(*parts: Part) -> Tier:
    return Tier(tuple(parts), "the CPU grid stored in the repository", PREVIEW_MODEL, PREVIEW_TRAIN)


def full(*parts: Part, why: str) -> Tier:
    return Tier(tuple(parts), why, FULL_MODEL, FULL_TRAIN)


@dataclass(frozen=True)
class Experiment:
    """A named question, what each run measures, and its grids per scale."""

    name: str
    question: str
    measure: str
    preview: Tier
    full: Tier
    chapter: int | None = None

    def tier(self, scale: str = "preview") -> Tier:
        check_scale(scale)
        return getattr(self, scale)

    def specs(self, scale: str = "preview") -> list[dict]:
        """One spec per grid point of ``scale``, in a fixed order."""
        tier = self.tier(scale)
        return [spec for part in tier.parts for spec in _part_specs(self, tier, part)]


def _part_specs(exp: Experiment, tier: Tier, part: Part) -> list[dict]:
    keys = list(part.axes)
    out = []
    for values in itertools.product(*(part.axes[k] for k in keys)):
        model = {**tier.base_model, **part.model}
        train = {**tier.base_train, **part.train}
        for k, v in zip(keys, values):
            (model if k in GPTConfig.__dataclass_fields__ else train)[k] = v
        out.append({"experiment": exp.name, "measure": exp.measure, "model": model, "train": train,
                    **{k: dict(v) if isinstance(v, dict) else v for k, v in part.extra.items()}})
    return out


def check_scale(scale) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")


def spec_key(spec: dict) -> str:
    """A stable short key for a spec: sha256 of its canonical JSON."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def mix_ln(n_layer: int) -> tuple:
    """Mix-LN's placements (Li et al. 2024): Post-LN in the first quarter of the layers, Pre-LN above."""
    return tuple(["post"] * (n_layer // 4) + ["pre"] * (n_layer - n_layer // 4))


def _depth_parts(n_layer: int, seeds: list, **common) -> tuple:
    """E6's five variants (see its row in the table) at one depth."""
    common = {**common, "model": {"n_layer": n_layer, **common.get("model", {})}}
    return (
        Part({"placement": ["post", "pre", "peri"], "seed": seeds}, **common),
        Part({"placement": ["pre"], "depth_scaled_norm": [True], "seed": seeds}, **common),
        Part({"placement": [mix_ln(n_layer)], "seed": seeds}, **common),
        # Sun et al. (2025) advise against combining LN scaling with GPT-2's 1/sqrt(2L)
        # residual init; these runs leave it out, with and without LN scaling.
        Part({"placement": ["pre"], "depth_scaled_norm": [False, True], "scaled_residual_init": [False],
              "seed": seeds}, **common),
        # Mix-LN's paper builds on a LLaMA setup without that init either.
        Part({"placement": [mix_ln(n_layer)], "scaled_residual_init": [False], "seed": seeds}, **common),
    )


_E4_TRAIN = {"lr": 3e-3, "warmup_steps": 10}
_E4_FULL_TRAIN = {"lr": 3e-3, "warmup_steps": 100}
_E4_FULL_WHY = ("24 and 48 layers, the depths of GPT-2's 345M and 1542M models; "
                "lr 3e-3 keeps the preview's edge of stability, 100 warm-up steps are the preview's 7% of "
                "the run rounded down")
_E8_PREVIEW = dict(model={"placement": "pre", "n_layer": 6}, train={"steps": 300, "lr": 3e-3})
_E8_FULL = dict(model={"placement": "pre", "n_layer": 12}, train={"lr": 1e-3})
_E7_PREVIEW_TRAIN = {"steps": 300, "lr": 3e-3, "eval_batches": 8}
# E5L: DyT's LLaMA recipe (Zhu et al. 2025, arXiv 2503.10622; the DyT repository's
# other_tasks/LLaMA): embeddings times a learned scalar from sqrt(d_model), DyT without
# beta, one initial alpha for the attention norms and another for the FFN and final
# norms.  The repository's LLaMA-2 runs use 0.8/0.2 (7B, width 4096), 0.6/0.15 (13B,
# 5120) and 0.2/0.05 (34B and 70B, 8192): attention four times the rest, smaller for
# wider models.  No value is given for width 64, so the preview keeps the 4:1 ratio
# and tries the 7B pair and two larger ones.  The paper's baseline is its RMSNorm
# LLaMA (fms-fsdp without the three DyT arguments, so no embedding scalar); LayerNorm
# is E5's and E8's baseline.  LLaMA has no linear biases: bias=False in every arm.
_E5L_RECIPE = {"norm": "dyt", "embed_scale_learned": True, "dyt_bias": False}
_E5L_ALPHAS = ((0.8, 0.2), (2.0, 0.5), (4.0, 1.0))   # (attention, FFN and final)


# sqrt(d_model) = 8 times TinyGPT's N(0, 0.02^2) tables starts the stream at RMS ~0.23,
# not 1: the last parts also multiply by 6.25 (= 1 / (0.02 * 8)), so that the input
# starts at E8's unit scale (6.25 * 8 = 50), with the scalar still learned from 8.
_E5L_UNIT = {"embed_scale": 6.25}


def _e5l_parts(seeds: list, model: dict, train: dict) -> tuple:
    recipe = [Part({"dyt_alpha_attn": [a], "dyt_alpha": [o], "seed": seeds},
                   model={**model, **_E5L_RECIPE, **unit}, train=train)
              for unit in ({}, _E5L_UNIT) for a, o in _E5L_ALPHAS]
    return (*recipe[:3], Part({"norm": ["rmsnorm", "layernorm"], "seed": seeds}, model=model, train=train),
            *recipe[3:])
# Chapters 13-14: the 4-layer preview model of E13Q is the common baseline (E13R and
# E14N read its Pre-LN runs); the full tiers use 12 layers, GPT-2's smallest depth.
_F_PREVIEW = {"placement": "pre", "n_layer": 4}
_F_FULL = {"placement": "pre", "n_layer": 12}
_F_FULL_WHY = ("12 layers at d_model 512 (GPT-2's smallest depth at the base Transformer's width), "
               "2,000 steps instead of 150 so that the effects of long training have time to show; the "
               "preview's axes and 5 seeds")

# The table.  Adding an experiment is one entry here (and, for a new kind of
# measurement, one entry in measures.MEASURES).
EXPERIMENTS = {e.name: e for e in (
    Experiment(
        "E1", "hidden-state RMS per layer, at init and after training, per placement", "train",
        preview(Part({"placement": list(PLACEMENTS), "n_layer": [6], "embed_scale": [1.0, 50.0],
                      "seed": [0]})),
        full(Part({"placement": list(PLACEMENTS), "n_layer": [12], "embed_scale": [1.0, 50.0],
                   "seed": SEEDS5}),
             why="12 layers as GPT-2's smallest model; 2,000 steps so that the growth of a trained stream "
                 "has time to show; 5 seeds for intervals"),
        chapter=8),
    Experiment(
        # E2 also varies embed_scale: with GPT-2's N(0, 0.02) embeddings the first block sees
        # an input of RMS ~0.03, and a post-norm block's LayerNorm divides by that, multiplying
        # its Jacobian by ~30; embed_scale 50 gives the unit-scale input of Vaswani et al.
        "E2", "per-layer gradient norms at initialisation across depth", "init",
        preview(Part({"placement": list(PLACEMENTS), "n_layer": [3, 6, 12, 24],
                      "embed_scale": [1.0, 50.0], "seed": [0, 1, 2]})),
        full(Part({"placement": list(PLACEMENTS), "n_layer": [6, 12, 24, 48],
                   "embed_scale": [1.0, 50.0], "seed": SEEDS5}),
             why="6 layers (the base Transformer) to 48 (GPT-2's largest model) at d_model 512: the question is "
                 "how the gradient profile changes with depth; initialisation only, so cheap"),
        chapter=8),
    Experiment(
        "E3", "learning rate x warmup: where do Post-LN and Pre-LN diverge?", "train",
        preview(Part({"placement": ["post", "pre"], "n_layer": [6],
                      "lr": [3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1], "warmup_steps": [0, 50], "seed": SEEDS5},
                     train={"grad_clip": None})),
        full(Part({"placement": ["post", "pre"], "n_layer": [6],
                   "lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2], "warmup_steps": [0, 500], "seed": SEEDS5},
                  train={"grad_clip": None}),
             why="the base Transformer's 6 layers and width; learning rates one step lower than the "
                 "preview's (a wider model tolerates less); 500 warm-up steps, a quarter of the run (the "
                 "preview's 50 are a third of its 150)"),
        chapter=9),
    Experiment(
        "E4", "deep stacks: divergence, final loss and loss spikes per placement", "train",
        preview(Part({"placement": list(PLACEMENTS), "n_layer": [12], "seed": [0, 1]}, train=_E4_TRAIN)),
        full(Part({"placement": list(PLACEMENTS), "n_layer": [24, 48], "seed": SEEDS5},
                  train=_E4_FULL_TRAIN), why=_E4_FULL_WHY),
        chapter=9),
    Experiment(
        # The same pre-norm TinyGPT, only the norm module changes (every norm of the model).
        "E5", "LayerNorm vs RMSNorm vs DyT: loss and best learning rate on the same model", "train",
        preview(Part({"norm": ["layernorm", "rmsnorm", "dyt"], "n_layer": [6],
                      "lr": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1], "seed": SEEDS5},
                     model={"placement": "pre"}, train={"steps": 300})),
        full(Part({"norm": ["layernorm", "rmsnorm", "dyt"], "n_layer": [12],
                   "lr": [3e-4, 1e-3, 3e-3, 1e-2], "seed": SEEDS5}, model={"placement": "pre"}),
             why="12 layers as GPT-2's smallest model; four learning rates around the preview's best (3e-3), one "
                 "step lower for the wider model; 5 seeds for intervals"),
        chapter=5),
    Experiment(
        # E8: DyT's initial alpha with GPT-2's small embeddings (embed_scale 1: the stream starts
        # at RMS ~0.03) and unit-scale ones (embed_scale 50), each against LayerNorm.
        "E8", "DyT initial alpha sweep vs LayerNorm, with small and unit-scale embeddings", "train",
        preview(Part({"norm": ["dyt"], "dyt_alpha": [0.1, 0.5, 2.0, 8.0, 32.0], "embed_scale": [1.0, 50.0],
                      "seed": SEEDS5}, **_E8_PREVIEW),
                Part({"norm": ["layernorm"], "embed_scale": [1.0, 50.0], "seed": SEEDS5}, **_E8_PREVIEW)),
        full(Part({"norm": ["dyt"], "dyt_alpha": [0.1, 0.5, 2.0, 8.0, 32.0], "embed_scale": [1.0, 50.0],
                   "seed": SEEDS5}, **_E8_FULL),
             Part({"norm": ["layernorm"], "embed_scale": [1.0, 50.0], "seed": SEEDS5}, **_E8_FULL),
             why="the preview's alphas at 12 layers and lr 1e-3 (E5's full-tier middle); 5 seeds for "
                 "intervals"),
        chapter=5),
    Experiment(
        # E3D repeats E3's grid at other depths and adds DeepNorm.
        "E3D", "depth x learning rate x warmup: Post-LN, Pre-LN and DeepNorm at 3 and 12 layers", "train",
        preview(Part({"placement": ["post", "pre", "deepnorm"], "n_layer": [3, 12],
                      "lr": [1e-3, 3e-3, 1e-2, 3e-2], "warmup_steps": [0, 50], "seed": [0]},
                     train={"grad_clip": None}),
                # seeds 1-4 where chapter 9 and the claims audit compare the placements'
                # best runs at 12 layers (the verdict rule needs 5 seeds there)
                Part({"placement": ["post", "pre", "deepnorm"], "n_layer": [12],
                      "lr": [3e-3, 1e-2], "warmup_steps": [0, 50], "seed": [1, 2, 3, 4]},
                     train={"grad_clip": None})),
        full(Part({"placement": ["post", "pre", "deepnorm"], "n_layer": [12, 24],
                   "lr": [3e-4, 1e-3, 3e-3, 1e-2], "warmup_steps": [0, 500], "seed": SEEDS5},
                  train={"grad_clip": None}),
             why="12 and 24 layers (GPT-2's 117M and 345M models) against E3's 6; E3's full-tier "
                 "learning rates and warm-up; 5 seeds for intervals"),
        chapter=9),
    Experiment(
        "E4S", "deep stacks, more seeds: E4's settings with seeds 2-4", "train",
        preview(Part({"placement": ["post", "pre", "b2t", "deepnorm"], "n_layer": [12], "seed": [2, 3, 4]},
                     train=_E4_TRAIN)),
        full(Part({"placement": ["post", "pre", "b2t", "deepnorm"], "n_layer": [24, 48],
                   "seed": [5, 6, 7, 8, 9]}, train=_E4_FULL_TRAIN),
             why="seeds 5-9 on E4's full grid, for ten seeds where a placement trains on some seeds only"),
        chapter=9),
    Experiment(
        "E4U", "deep stacks with unit-scale embeddings: E4's settings, embed_scale 50, seeds 0-4", "train",
        preview(Part({"placement": ["post", "pre", "b2t", "deepnorm"], "n_layer": [12],
                      "embed_scale": [50.0], "seed": SEEDS5}, train=_E4_TRAIN)),
        full(Part({"placement": ["post", "pre", "b2t", "deepnorm"], "n_layer": [24, 48],
                   "embed_scale": [50.0], "seed": SEEDS5}, train=_E4_FULL_TRAIN), why=_E4_FULL_WHY),
        chapter=9),
    Experiment(
        # After training, normcourse.ablations.depth_report measures on fixed validation batches
        # the cosine between the stream before and after each layer and the loss change when that
        # one layer is skipped; the same report at initialisation comes with it.  Variants:
        # Post-LN, Pre-LN, Peri-LN, Pre-LN with LayerNorm scaling (Sun et al. 2025) and Mix-LN.
        "E6", "adjacent-layer cosine and the loss change when one layer is skipped, per placement",
        "depth",
        preview(*_depth_parts(12, [0, 1], train={"steps": 300, "lr": 3e-3, "warmup_steps": 10})),
        full(*_depth_parts(24, SEEDS5, train={"steps": 3000, "lr": 1e-3}),
             why="24 layers (GPT-2's 345M model), twice the preview's, so that a quarter of Mix-LN's "
                 "layers is six; 3,000 steps because what a trained layer does is the question; 5 seeds"),
        chapter=10),
    Experiment(
        # Remove LayerNorm from a trained pre-LN model: swap every LayerNorm for the identity,
        # freeze every sigma at its average, or freeze them one at a time with fine-tuning in
        # between (Heimersheim 2024); controls get the same fine-tuning budget.
        "E7", "removing LayerNorm from a trained model: identity swap vs fine-tuning it out", "remove_norm",
        preview(Part({"seed": [0, 1, 2]}, model={"placement": "pre", "n_layer": 4}, train=_E7_PREVIEW_TRAIN,
                     extra={"removal": {"steps_per_norm": 20, "final_steps": 60, "ft_lr": 1e-3}})),
        full(Part({"seed": SEEDS5}, model={"placement": "pre", "n_layer": 12},
                  train={"eval_batches": 32},
                  extra={"removal": {"steps_per_norm": 100, "final_steps": 500, "ft_lr": 3e-4}}),
             why="12 layers, the depth of the GPT-2 small that Heimersheim (2024) removes LayerNorm from; "
                 "100 fine-tuning steps per norm and 500 at the end (preview: 20 and 60) after a "
                 "2,000-step training run (preview: 300); runs on the CPU only (see measures.py)"),
        chapter=11),
    Experiment(
        # Wortsman et al. 2023's small-scale proxy: attention-logit growth and final loss
        # against the learning rate, with and without QK-norm (qk-layernorm) and z-loss.
        "E13Q", "max attention logit and final loss vs learning rate, with/without QK-norm and z-loss",
        "train_records",
        preview(Part({"qk_norm": [False, True], "z_loss": [0.0, 1e-4], "lr": [3e-3, 3e-2, 1e-1, 3e-1],
                      "seed": SEEDS5}, model=_F_PREVIEW, train={"record_attn_logits": True})),
        full(Part({"qk_norm": [False, True], "z_loss": [0.0, 1e-4], "lr": [1e-3, 1e-2, 3e-2, 1e-1],
                   "seed": SEEDS5}, model=_F_FULL, train={"record_attn_logits": True}),
             why=_F_FULL_WHY + "; learning rates one step lower for the wider model"),
        chapter=13),
    Experiment(
        # OLMo 2's reordered norm and Peri-LN (Gemma 2/3's sandwich) at a moderate and a high
        # learning rate; the Pre-LN arm is E13Q's (QK-norm and z-loss off), same settings.
        "E13R", "reordered (OLMo 2) and Peri-LN at two learning rates (Pre-LN: E13Q's runs)",
        "train_records",
        preview(Part({"placement": ["reordered", "peri"], "lr": [3e-3, 3e-2], "seed": SEEDS5},
                     model=_F_PREVIEW, train={"record_attn_logits": True})),
        full(Part({"placement": ["pre", "reordered", "peri"], "lr": [1e-3, 1e-2], "seed": SEEDS5},
                  model=_F_FULL, train={"record_attn_logits": True}),
             why=_F_FULL_WHY + "; its own Pre-LN arm"),
        chapter=13),
    Experiment(
        # Derf (Chen et al. 2025) next to DyT and LayerNorm with E8's unit-scale embeddings.
        "E13D", "Derf vs DyT vs LayerNorm, unit-scale embeddings (as E8), 5 seeds", "train_records",
        preview(Part({"norm": ["layernorm", "dyt", "derf"], "seed": SEEDS5},
                     model={**_F_PREVIEW, "embed_scale": 50.0}, train={"lr": 3e-3})),
        full(Part({"norm": ["layernorm", "dyt", "derf"], "seed": SEEDS5},
                  model={**_F_FULL, "embed_scale": 50.0}, train={"lr": 1e-3}),
             why=_F_FULL_WHY + "; lr 1e-3, E5's full-tier middle"),
        chapter=13),
    Experiment(
        # Hyper-connections (Zhu et al. 2024) and mHC (Xie et al. 2025) against a plain residual:
        # the gain of the composite mixing map after every sub-layer, after training, and the loss.
        "E14H", "plain residual vs hyper-connections vs mHC: composite-map gain across depth, loss",
        "train_records",
        preview(Part({"residual": ["plain", "hyper", "mhc"], "seed": SEEDS5},
                     model={**_F_PREVIEW, "n_streams": 4}, train={"lr": 3e-3})),
        full(Part({"residual": ["plain", "hyper", "mhc"], "seed": SEEDS5},
                  model={**_F_FULL, "n_streams": 4}, train={"lr": 1e-3}),
             why=_F_FULL_WHY + "; 24 sub-layers for the gain to compound over"),
        chapter=14),
    Experiment(
        # nGPT (Loshchilov et al. 2024) without warmup and weight decay (its recipe); train
        # re-normalizes its weights after every step.  The Pre-LN arm is E13Q's.
        "E14N", "nGPT at two learning rates: training steps to a target loss (Pre-LN: E13Q's runs)",
        "train_records",
        preview(Part({"placement": ["ngpt"], "lr": [3e-3, 3e-2], "seed": SEEDS5}, model={"n_layer": 4},
                     train={"warmup_steps": 0, "weight_decay": 0.0})),
        full(Part({"placement": ["ngpt"], "lr": [1e-3, 1e-2], "seed": SEEDS5}, model={"n_layer": 12},
                  train={"warmup_steps": 0, "weight_decay": 0.0}),
             Part({"placement": ["pre"], "lr": [1e-3, 1e-2], "seed": SEEDS5}, model={"n_layer": 12}),
             why=_F_FULL_WHY + "; its own Pre-LN arm"),
        chapter=14),
    Experiment(
        # DyT with the paper's LLaMA recipe against the paper's RMSNorm baseline and
        # LayerNorm, on E8's preview model (see _E5L_RECIPE above for the recipe).
        "E5L", "DyT with its LLaMA recipe (learned embedding scalar, per-position alpha0, no bias) "
               "vs RMSNorm and LayerNorm", "train",
        preview(*_e5l_parts(SEEDS5, {**_E8_PREVIEW["model"], "bias": False}, _E8_PREVIEW["train"])),
        full(*_e5l_parts(SEEDS5, {**_E8_FULL["model"], "bias": False}, _E8_FULL["train"]),
             why="E8's full tier (12 layers at d_model 512, lr 1e-3, E5's full-tier middle) with the "
                 "preview's three alpha0 pairs; width 512 is still 8 times narrower than the paper's "
                 "smallest LLaMA (4096), so the 4:1 pairs stay above its 0.8/0.2; 5 seeds for intervals"),
        chapter=5),
    Experiment(
        # Singhal and Kim 2025 (arXiv 2511.10566): LayerNorm with and without its gamma and
        # beta, Pre-LN and Post-LN, trained on labels of which a fraction is flipped; what
        # the model does on the flipped examples (normcourse.memorization).
        "E9", "LayerNorm's affine parameters and the memorization of flipped labels, Pre-LN vs Post-LN",
        "memorization",
        preview(Part({"placement": ["pre", "post"], "norm_affine": [True, False], "seed": SEEDS5},
                     model={"n_layer": 2, "block_size": 16},
                     train={"steps": 800, "batch_size": 64, "lr": 1e-3, "warmup_steps": 50,
                            "weight_decay": 0.0},
                     extra={"task": {"n_train": 2000, "n_test": 1000, "n_class": 8, "noise": 0.02,
                                     "seq_len": 16, "checkpoints": 4}})),
        full(Part({"placement": ["pre", "post"], "norm_affine": [True, False], "seed": SEEDS5},
                  model={"n_layer": 12, "block_size": 64},
                  train={"steps": 20000, "batch_size": 64, "lr": 3e-4, "warmup_steps": 500,
                         "weight_decay": 0.0},
                  extra={"task": {"n_train": 50000, "n_test": 10000, "n_class": 8, "noise": 0.01,
                                  "seq_len": 64, "checkpoints": 10}}),
             why="12 layers at d_model 512 (the depth of the paper's BERT, ViT-B and GPT-2-size models), "
                 "50,000 training sequences with 1% of the labels flipped (the rate the paper's reviews "
                 "describe; 500 flipped examples), about 26 epochs; 5 seeds for intervals"),
        chapter=4),
)}
