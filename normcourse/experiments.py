"""Named experiments, a results cache, and the command line that fills it.

An experiment is a grid (placements x depths x learning rates x warmups x
seeds) over one small model and one measurement.  Each grid point is a *run*
with a stable key; its result is written to ``normcourse/results/<NAME>.json``
as soon as it finishes, so an interrupted sweep resumes where it stopped.
Every run stores its full spec (model and training configs, seed), the
corpus sha256, the library versions and the code version it ran with.

Notebooks read the cache with :func:`load_results` (cheap) and can re-run a
grid point with :func:`run_one`.  Command line::

    python -m normcourse experiment list
    python -m normcourse experiment E3 [--workers 2] [--fresh] [--limit N]

The CPU-sized grids here (d_model 64, context 32) are the previews stored in
the repository; the chapters' claims are checked against them.

E1 and E2 also vary ``embed_scale``: with GPT-2's N(0, 0.02) embeddings the
first block sees an input of RMS ~0.03, and a post-norm block's LayerNorm
divides by that, multiplying its Jacobian by ~30.  Vaswani et al. scale the
embeddings by sqrt(d_model) so that the input has unit scale; ``embed_scale=50``
reproduces that scale.  Which one a chapter uses changes the picture at layer 1.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from normcourse import data as data_mod
from normcourse.blocks import PLACEMENTS
from normcourse.model import GPTConfig, TinyGPT, check_int
from normcourse.train import TrainConfig, train

FORMAT_VERSION = 1
RESULTS_DIR = Path(__file__).parent / "results"
ENGINE_FILES = ("blocks.py", "model.py", "train.py", "data.py", "experiments.py")

# The CPU-size model every grid starts from; a grid overrides what it varies.
BASE_MODEL = dict(block_size=32, n_head=4, d_model=64, norm="layernorm")
BASE_TRAIN = dict(steps=150, batch_size=16, lr=1e-3, warmup_steps=20, grad_clip=1.0,
                  threads=1, eval_batches=4)


@dataclass
class Experiment:
    """A named grid: ``axes`` maps a config field to the values it takes."""

    name: str
    question: str
    measure: str                 # "init" (statistics at initialisation) or "train"
    axes: dict
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)

    def specs(self) -> list[dict]:
        """One spec per grid point, in a fixed order."""
        keys = list(self.axes)
        out = []
        for values in itertools.product(*(self.axes[k] for k in keys)):
            point = dict(zip(keys, values))
            model = {**BASE_MODEL, **self.model}
            tr = {**BASE_TRAIN, **self.train}
            for k, v in point.items():
                if k in GPTConfig.__dataclass_fields__:
                    model[k] = v
                else:
                    tr[k] = v
            out.append({"experiment": self.name, "measure": self.measure, "model": model, "train": tr})
        return out


EXPERIMENTS = {e.name: e for e in [
    Experiment("E1", "hidden-state RMS per layer, at init and after training, per placement",
               "train", {"placement": list(PLACEMENTS), "n_layer": [6], "embed_scale": [1.0, 50.0],
                         "seed": [0]}),
    Experiment("E2", "per-layer gradient norms at initialisation across depth",
               "init", {"placement": list(PLACEMENTS), "n_layer": [3, 6, 12, 24], "embed_scale": [1.0, 50.0],
                        "seed": [0, 1, 2]}),
    Experiment("E3", "learning rate x warmup: where do Post-LN and Pre-LN diverge?",
               "train", {"placement": ["post", "pre"], "n_layer": [6],
                         "lr": [3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1], "warmup_steps": [0, 50], "seed": [0]},
               train={"grad_clip": None}),
    Experiment("E4", "deep stacks: divergence, final loss and loss spikes per placement",
               "train", {"placement": list(PLACEMENTS), "n_layer": [12], "seed": [0, 1]},
               train={"lr": 3e-3, "warmup_steps": 10}),
]}


# ------------------------------------------------------------------------- running

def spec_key(spec: dict) -> str:
    """A stable short key for a spec: sha256 of its canonical JSON."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _configs(spec):
    d = data_mod.cached(spec["train"].get("data", "python_docs"))
    mc = GPTConfig(vocab_size=d.vocab_size, **spec["model"])
    tc = TrainConfig(**spec["train"])
    return d, mc, tc


@torch.no_grad()
def _layer_rms(model, x) -> list[float]:
    out, h = [], (model.wte(x) + model.wpe(torch.arange(x.shape[1]))) * model.config.embed_scale
    if model.norm_embed is not None:
        h = model.norm_embed(h)
    for block in model.blocks:
        h = block(h)
        out.append(h.pow(2).mean().sqrt().item())
    return out


def init_stats(model, d, mc, tc) -> dict:
    """Per-layer output RMS and per-layer gradient norm on one fixed batch."""
    x, y = d.batch("train", tc.batch_size, mc.block_size, torch.Generator().manual_seed(tc.seed))
    model.zero_grad(set_to_none=True)
    _, loss = model(x, y)
    loss.backward()
    grads = [torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in b.parameters()])).item()
             for b in model.blocks]
    model.zero_grad(set_to_none=True)
    return {"loss": loss.item(), "layer_rms": _layer_rms(model, x), "layer_grad_norm": grads}


def _measure_train(spec: dict, d, mc, tc) -> dict:
    """Measure "train": statistics at init, the training history, statistics after."""
    model = TinyGPT(mc)
    result = {"init": init_stats(model, d, mc, tc)}
    r = train(mc, tc, data=d, progress=False, keep_model=True)
    result.update(final_train_loss=r.final_train_loss, val_loss=r.val_loss,
                  diverged=r.diverged, diverged_at=r.diverged_at, spikes=r.spikes,
                  loss=r.history["loss"], grad_norm=r.history["grad_norm"])
    if not r.diverged:
        result["trained"] = init_stats(r.model, d, mc, tc)
    return result


def _measure_init(spec: dict, d, mc, tc) -> dict:
    """Measure "init": statistics of a freshly initialized model only."""
    return {"init": init_stats(TinyGPT(mc), d, mc, tc)}


# What a grid point measures, by name.  Chapters add their own measures below
# (each a function (spec, data, model_config, train_config) -> JSON-ready dict).
MEASURES = {"train": _measure_train, "init": _measure_init}


def run_one(spec: dict) -> dict:
    """Run one grid point and return its result (numbers only, JSON-ready)."""
    measure = MEASURES.get(spec["measure"])
    if measure is None:
        raise ValueError(f"unknown measure {spec['measure']!r}; choose one of {sorted(MEASURES)}")
    d, mc, tc = _configs(spec)
    old = torch.get_num_threads()
    torch.set_num_threads(tc.threads or old)
    try:
        torch.manual_seed(tc.seed)
        return measure(spec, d, mc, tc)
    finally:
        torch.set_num_threads(old)


def _run_keyed(item):
    key, spec = item
    t0 = time.perf_counter()
    return key, run_one(spec), time.perf_counter() - t0


# --------------------------------------------------------------------------- cache

def code_version() -> dict:
    """git commit (and whether the engine files differ from it) plus a hash of their source."""
    here = Path(__file__).parent
    h = hashlib.sha256()
    for f in ENGINE_FILES:
        h.update((here / f).read_bytes())
    info = {"engine_sha256": h.hexdigest()[:16], "git_commit": None, "git_dirty": None}
    try:
        root = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=here, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        if root:
            info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                                text=True, timeout=10).stdout.strip() or None
            status = subprocess.run(["git", "status", "--porcelain", "--", *[str(here / f) for f in ENGINE_FILES]],
                                    cwd=root, capture_output=True, text=True, timeout=10).stdout
            info["git_dirty"] = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def environment() -> dict:
    """Library versions and machine facts that can change a number."""
    import numpy
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "platform": platform.platform(), "machine": platform.machine()}


def cache_path(name: str, results_dir: Path | None = None) -> Path:
    return Path(results_dir or RESULTS_DIR) / f"{name}.json"


def read_cache(name: str, results_dir: Path | None = None) -> dict:
    """The cache file of one experiment ({} if it was never run)."""
    path = cache_path(name, results_dir)
    if not path.exists():
        return {}
    cache = json.loads(path.read_text())
    if cache.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} has format {cache.get('format_version')}; this code reads {FORMAT_VERSION}")
    return cache


def _write_cache(path: Path, cache: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
    os.replace(tmp, path)  # atomic: an interrupted write never leaves half a file


def run(name: str, *, workers: int = 1, fresh: bool = False, limit: int | None = None,
        progress: bool = True, results_dir: Path | None = None) -> dict:
    """Run (or resume) an experiment, writing each finished run to its cache file."""
    from tqdm.auto import tqdm

    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")
    check_int("workers", workers, low=1)
    if limit is not None:   # a negative limit would slice [:limit] and drop the last points
        check_int("limit (None: no limit)", limit, low=0)
    exp = EXPERIMENTS[name]
    path = cache_path(name, results_dir)
    cache = {} if fresh else read_cache(name, results_dir)
    cache.setdefault("format_version", FORMAT_VERSION)
    cache.update(experiment=name, question=exp.question)
    runs = cache.setdefault("runs", {})
    todo = [(spec_key(s), s) for s in exp.specs()]
    todo = [(k, s) for k, s in todo if k not in runs][:limit]
    meta = {"code": code_version(), "env": environment(),
            "corpus_sha256": data_mod.cached("python_docs").sha256}
    bar = tqdm(total=len(todo), disable=not progress, desc=name)
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(workers) as pool:
            done = pool.map(_run_keyed, todo)
            for key, result, secs in done:
                _store(runs, key, dict(todo)[key], result, secs, meta, path, cache, bar)
    else:
        for item in todo:
            key, result, secs = _run_keyed(item)
            _store(runs, key, item[1], result, secs, meta, path, cache, bar)
    bar.close()
    return cache


def _store(runs, key, spec, result, secs, meta, path, cache, bar):
    runs[key] = {"spec": spec, "result": result, "seconds": round(secs, 3), **meta,
                 "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _write_cache(path, cache)
    bar.update(1)


def load_results(name: str, results_dir: Path | None = None) -> list[dict]:
    """Cached runs as flat rows (spec fields first, then results), for plots and tables."""
    cache = read_cache(name, results_dir)
    rows = []
    for key, entry in cache.get("runs", {}).items():
        spec = entry["spec"]
        row = {"key": key, **spec["model"], **spec["train"], **entry["result"],
               "corpus_sha256": entry["corpus_sha256"], "code": entry["code"], "env": entry["env"]}
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------- CLI

def _int_at_least(low: int):
    """An argparse type: an integer >= ``low``, else a usage error (exit status 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
        return value
    return parse


def main(argv: list[str] | None = None) -> int:
    """``python -m normcourse experiment NAME``: run or resume a named experiment."""
    parser = argparse.ArgumentParser(prog="python -m normcourse experiment",
                                     description="Run a named experiment grid into the results cache.")
    parser.add_argument("name", help="experiment name, or 'list'")
    parser.add_argument("--workers", type=_int_at_least(1), default=1,
                        help="processes in parallel (one thread each)")
    parser.add_argument("--fresh", action="store_true", help="ignore cached runs and start over")
    # a negative N would slice [:N] and silently drop the last grid points
    parser.add_argument("--limit", type=_int_at_least(0), default=None,
                        help="run at most N missing grid points")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.name == "list":
        for e in EXPERIMENTS.values():
            n = len(e.specs())
            done = len(read_cache(e.name).get("runs", {}))
            print(f"{e.name}: {e.question} ({done}/{n} runs cached)")
        return 0
    if args.name not in EXPERIMENTS:
        print(f"unknown experiment {args.name!r}; choose one of: {', '.join(EXPERIMENTS)}, list",
              file=sys.stderr)
        return 2
    cache = run(args.name, workers=args.workers, fresh=args.fresh, limit=args.limit,
                progress=not args.quiet)
    print(f"{args.name}: {len(cache['runs'])}/{len(EXPERIMENTS[args.name].specs())} runs in "
          f"{cache_path(args.name)}")
    return 0


# ------------------------------------------- chapter 5: RMSNorm and DyT (appended)
# The same 6-layer pre-norm TinyGPT, only the norm module changes (every norm of
# the model: both per block and the final one).  300 steps instead of 150 so
# the slower starters get a fair chance.
EXPERIMENTS["E5"] = Experiment(
    "E5", "LayerNorm vs RMSNorm vs DyT: loss and best learning rate on the same model",
    "train", {"norm": ["layernorm", "rmsnorm", "dyt"], "n_layer": [6],
              "lr": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1], "seed": [0, 1]},
    model={"placement": "pre"}, train={"steps": 300})


@dataclass
class ExperimentUnion(Experiment):
    """A grid made of several products (e.g. a DyT sweep plus its LayerNorm baseline)."""

    parts: tuple = ()

    def specs(self) -> list[dict]:
        return [{**s, "experiment": self.name} for p in self.parts for s in p.specs()]


# E8: DyT's initial alpha, at the learning rate that is best for LayerNorm in E5 (3e-3),
# with GPT-2's small embeddings (embed_scale 1: the residual stream starts at RMS ~0.03)
# and with unit-scale ones (embed_scale 50), each against LayerNorm on the same model.
_E8_COMMON = dict(model={"placement": "pre", "n_layer": 6}, train={"steps": 300, "lr": 3e-3})
EXPERIMENTS["E8"] = ExperimentUnion(
    "E8", "DyT initial alpha sweep vs LayerNorm, with small and unit-scale embeddings",
    "train", {}, parts=(
        Experiment("E8", "", "train", {"norm": ["dyt"], "dyt_alpha": [0.1, 0.5, 2.0, 8.0, 32.0],
                                        "embed_scale": [1.0, 50.0], "seed": [0, 1]}, **_E8_COMMON),
        Experiment("E8", "", "train", {"norm": ["layernorm"], "embed_scale": [1.0, 50.0],
                                        "seed": [0, 1]}, **_E8_COMMON),
    ))


# ------------------------------------------------------- grids added for chapter 9
# Appended (the grids above and their cache files are unchanged).  E3D repeats E3's
# learning-rate x warmup grid at depths 3 and 12 and adds DeepNorm; E4S adds three
# seeds to E4's settings so that chapter 9 can show seed-to-seed spread over five seeds;
# E4U runs the same five seeds with unit-scale embeddings (embed_scale 50).
EXPERIMENTS.update({e.name: e for e in [
    Experiment("E3D", "depth x learning rate x warmup: Post-LN, Pre-LN and DeepNorm at 3 and 12 layers",
               "train", {"placement": ["post", "pre", "deepnorm"], "n_layer": [3, 12],
                         "lr": [1e-3, 3e-3, 1e-2, 3e-2], "warmup_steps": [0, 50], "seed": [0]},
               train={"grad_clip": None}),
    Experiment("E4S", "deep stacks, more seeds: E4's settings with seeds 2-4",
               "train", {"placement": ["post", "pre", "b2t", "deepnorm"], "n_layer": [12],
                         "seed": [2, 3, 4]},
               train={"lr": 3e-3, "warmup_steps": 10}),
    Experiment("E4U", "deep stacks with unit-scale embeddings: E4's settings, embed_scale 50, seeds 0-4",
               "train", {"placement": ["post", "pre", "b2t", "deepnorm"], "n_layer": [12],
                         "embed_scale": [50.0], "seed": [0, 1, 2, 3, 4]},
               train={"lr": 3e-3, "warmup_steps": 10}),
]})


# ------------------------------------------------------ chapter 10 (appended)
# E6: how much does each layer of a trained 12-layer model still do?  After training,
# normcourse.ablations.depth_report measures on fixed validation batches the cosine
# between the stream before and after each layer and the loss change when that one
# layer is skipped; the same report at initialisation comes with it.  Variants: Post-LN,
# Pre-LN, Peri-LN, Pre-LN with LayerNorm scaling (norm outputs of layer l times
# 1/sqrt(l), Sun et al. 2025) and Mix-LN (Post-LN in the first quarter of the layers,
# Pre-LN above, Li et al. 2024).  Measure "depth" is _measure_depth below.
_E6_LAYERS = 12
_E6_MIX = tuple(["post"] * (_E6_LAYERS // 4) + ["pre"] * (_E6_LAYERS - _E6_LAYERS // 4))
_E6_COMMON = dict(model={"n_layer": _E6_LAYERS}, train={"steps": 300, "lr": 3e-3, "warmup_steps": 10})
EXPERIMENTS["E6"] = ExperimentUnion(
    "E6", "adjacent-layer cosine and the loss change when one layer is skipped, per placement",
    "depth", {}, parts=(
        Experiment("E6", "", "depth", {"placement": ["post", "pre", "peri"], "seed": [0, 1]}, **_E6_COMMON),
        Experiment("E6", "", "depth", {"placement": ["pre"], "depth_scaled_norm": [True], "seed": [0, 1]},
                   **_E6_COMMON),
        Experiment("E6", "", "depth", {"placement": [_E6_MIX], "seed": [0, 1]}, **_E6_COMMON),
        # Sun et al. (2025) advise against combining LN scaling with GPT-2's 1/sqrt(2L)
        # residual init; these runs leave it out, with and without LN scaling.
        Experiment("E6", "", "depth", {"placement": ["pre"], "depth_scaled_norm": [False, True],
                                       "scaled_residual_init": [False], "seed": [0, 1]}, **_E6_COMMON),
        # Mix-LN's paper builds on a LLaMA setup without that init either.
        Experiment("E6", "", "depth", {"placement": [_E6_MIX], "scaled_residual_init": [False],
                                       "seed": [0, 1]}, **_E6_COMMON),
    ))

def _measure_depth(spec: dict, d, mc, tc) -> dict:
    """Measure "depth": train, then chapter 10's layer ablations at init and after training."""
    from normcourse.ablations import depth_report

    result = {"init": depth_report(TinyGPT(mc), d, tc.batch_size, mc.block_size)}
    r = train(mc, tc, data=d, progress=False, keep_model=True)
    result.update(final_train_loss=r.final_train_loss, val_loss=r.val_loss, diverged=r.diverged,
                  diverged_at=r.diverged_at, spikes=r.spikes, loss=r.history["loss"])
    if not r.diverged:
        result["trained"] = depth_report(r.model, d, tc.batch_size, mc.block_size)
    return result


MEASURES["depth"] = _measure_depth


# ------------------------------------------------------ chapter 11 (appended)
# E7: remove LayerNorm from a trained 4-layer pre-LN model (300 steps at lr 3e-3):
# swap every LayerNorm for the identity, freeze every sigma at its average, or freeze
# them one at a time with fine-tuning in between (Heimersheim 2024); controls get the
# same fine-tuning budget with LayerNorm kept, and after the identity swap.  Measure
# "remove_norm" is handled by normcourse.remove_norm.removal_experiment.
@dataclass
class RemovalExperiment(Experiment):
    """A grid whose specs also carry the removal schedule (``removal``)."""

    removal: dict = field(default_factory=dict)

    def specs(self) -> list[dict]:
        return [{**s, "removal": dict(self.removal)} for s in super().specs()]


EXPERIMENTS["E7"] = RemovalExperiment(
    "E7", "removing LayerNorm from a trained model: identity swap vs fine-tuning it out",
    "remove_norm", {"seed": [0, 1, 2]}, model={"placement": "pre", "n_layer": 4},
    train={"steps": 300, "lr": 3e-3, "eval_batches": 8},
    removal={"steps_per_norm": 20, "final_steps": 60, "ft_lr": 1e-3})

def _measure_remove_norm(spec: dict, d, mc, tc) -> dict:
    """Measure "remove_norm": chapter 11's LayerNorm removal (normcourse.remove_norm)."""
    from normcourse.remove_norm import removal_experiment

    return removal_experiment(spec)


MEASURES["remove_norm"] = _measure_remove_norm


# ------------------------------------------------- chapters 13-14 (appended)
# Measure "train_records": training plus the max attention logit per step, the
# trained hidden-state RMS per layer and, for several residual streams, the gain of
# the composite mixing map (normcourse.frontier_measures).  Five seeds per compared
# configuration (the verdict rule of normcourse.verdicts).
def _measure_train_records(spec: dict, d, mc, tc) -> dict:
    from normcourse.frontier_measures import measure_train_records

    return measure_train_records(spec, d, mc, tc)


MEASURES["train_records"] = _measure_train_records
_SEEDS5 = [0, 1, 2, 3, 4]

# E13Q: Wortsman et al. 2023's small-scale proxy: attention-logit growth and final
# loss against the learning rate, with and without QK-norm (qk-layernorm) and z-loss.
EXPERIMENTS["E13Q"] = Experiment(
    "E13Q", "max attention logit and final loss vs learning rate, with/without QK-norm and z-loss",
    "train_records", {"qk_norm": [False, True], "z_loss": [0.0, 1e-4],
                      "lr": [3e-3, 3e-2, 1e-1, 3e-1], "seed": _SEEDS5},
    model={"placement": "pre", "n_layer": 4}, train={"record_attn_logits": True})

# E13R: OLMo 2's reordered norm and Peri-LN (Gemma 2/3's "sandwich") on E13Q's
# 4-layer model at a moderate and a high learning rate: stream growth across depth,
# the final loss and the attention logits.  The Pre-LN arm is E13Q's (QK-norm off,
# z-loss off) at the same two learning rates: the same specs but for the placement.
EXPERIMENTS["E13R"] = Experiment(
    "E13R", "reordered (OLMo 2) and Peri-LN at two learning rates (Pre-LN: E13Q's runs)",
    "train_records", {"placement": ["reordered", "peri"], "lr": [3e-3, 3e-2],
                      "seed": _SEEDS5},
    model={"placement": "pre", "n_layer": 4}, train={"record_attn_logits": True})

# E13D: Derf next to DyT and LayerNorm on E13Q's 4-layer model with E8's unit-scale
# embeddings (embed_scale 50), where DyT learns (chapter 5); 150 steps at lr 3e-3.
EXPERIMENTS["E13D"] = Experiment(
    "E13D", "Derf vs DyT vs LayerNorm, unit-scale embeddings (as E8), 5 seeds",
    "train_records", {"norm": ["layernorm", "dyt", "derf"], "seed": _SEEDS5},
    model={"placement": "pre", "n_layer": 4, "embed_scale": 50.0},
    train={"lr": 3e-3})

# E14H: hyper-connections (Zhu et al. 2024) and mHC (Xie et al. 2025) against a plain
# residual, four streams, 4-layer Pre-LN: the gain of the composite mixing map after
# every sub-layer, after training, and the loss.
EXPERIMENTS["E14H"] = Experiment(
    "E14H", "plain residual vs hyper-connections vs mHC: composite-map gain across depth, loss",
    "train_records", {"residual": ["plain", "hyper", "mhc"], "seed": _SEEDS5},
    model={"placement": "pre", "n_layer": 4, "n_streams": 4}, train={"lr": 3e-3})

# E14N: nGPT (Loshchilov et al. 2024) on E13Q's 4-layer model, 150 steps, at E13Q's
# two lower learning rates, five seeds: steps to reach a target loss.  The Pre-LN arm
# is E13Q's (QK-norm off, z-loss off).  nGPT runs without warmup and without weight
# decay (its recipe); train re-normalizes its weights after every step.
EXPERIMENTS["E14N"] = Experiment(
    "E14N", "nGPT at two learning rates: training steps to a target loss (Pre-LN: E13Q's runs)",
    "train_records", {"placement": ["ngpt"], "lr": [3e-3, 3e-2], "seed": _SEEDS5},
    model={"n_layer": 4}, train={"warmup_steps": 0, "weight_decay": 0.0})
