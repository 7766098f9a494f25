"""``python -m normcourse experiment``: list, estimate and run the named grids."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from normcourse.checks import int_at_least, positive_float
from normcourse.experiments import cache, estimate, sweep
from normcourse.experiments.executors import EXECUTORS, SlurmOptions
from normcourse.experiments.grids import EXPERIMENTS, SCALES

EPILOG = """examples:
  python -m normcourse experiment list                      tiers, run counts, runs stored
  python -m normcourse experiment list --dry-run            estimates for every grid, both tiers
  python -m normcourse experiment E3 --workers 2            fill (or resume) the preview grid
  python -m normcourse experiment E3 --scale full --dry-run
  python -m normcourse experiment E3 --scale full --device cuda --results ~/nc-results
  python -m normcourse experiment E3 --scale full --executor slurm --slurm-partition gpu \\
      --slurm-gpus-per-task 1 --slurm-time 4:00:00 --results /shared/nc-results
"""


def _minutes(text: str) -> int:
    """Slurm's time limit: minutes, or [D-]HH:MM[:SS]."""
    try:
        days, _, clock = text.rpartition("-")
        parts = [int(p) for p in clock.split(":")]
        if len(parts) == 1:
            minutes = parts[0]
        elif len(parts) in (2, 3):
            minutes = parts[0] * 60 + parts[1] + (parts[2] > 0 if len(parts) == 3 else 0)
        else:
            raise ValueError
        minutes += int(days or 0) * 24 * 60
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be minutes or [D-]HH:MM[:SS], got {text!r}") from None
    if minutes < 1:
        raise argparse.ArgumentTypeError(f"must be at least one minute, got {text!r}")
    return minutes


def _where(text: str) -> tuple:
    field, sep, value = text.partition("=")
    if not sep or not field:
        raise argparse.ArgumentTypeError(f"must be FIELD=VALUE (e.g. lr=0.03), got {text!r}")
    try:
        return field, json.loads(value)
    except json.JSONDecodeError:
        return field, value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m normcourse experiment", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Run a named experiment grid into the results cache.")
    p.add_argument("name", help="experiment name, or 'list'")
    p.add_argument("--scale", choices=SCALES, default=None,
                   help="preview (CPU grids stored in the repository; default) or full (GPU-sized)")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: processes on this machine (default); slurm: a job array through submitit")
    p.add_argument("--workers", type=int_at_least(1), default=1, help="local processes in parallel")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="default: cpu for the preview, cuda for the full tier when there is a GPU")
    p.add_argument("--results", type=Path, default=None, metavar="DIR",
                   help="results folder (default: normcourse/results in a clone of the repository, "
                        "$NORMCOURSE_RESULTS or ~/.local/share/normcourse/results for an installed package)")
    # a negative N would slice [:N] and silently drop the last grid points
    p.add_argument("--limit", type=int_at_least(0), default=None, help="run at most N of the chosen points")
    p.add_argument("--where", type=_where, action="append", default=[], metavar="FIELD=VALUE",
                   help="only grid points with this field value (repeatable), e.g. --where n_layer=12")
    p.add_argument("--fresh", action="store_true",
                   help="recompute the chosen points even if stored (other stored runs are kept)")
    p.add_argument("--dry-run", action="store_true",
                   help="print run counts and estimated FLOPs and hours, then stop")
    p.add_argument("--gpu-tflops", type=positive_float, default=None, metavar="R",
                   help="with --dry-run: convert FLOPs to GPU-hours at R sustained TFLOP/s (your assumption)")
    p.add_argument("--smoke-steps", type=int_at_least(1), default=None, metavar="N",
                   help="run the chosen points with at most N steps into DIR/smoke/ (never counted as the "
                        "grid's runs): checks that a tier's sizes build, fit and train")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    g = p.add_argument_group("slurm (with --executor slurm; needs pip install 'normcourse[cluster]')")
    g.add_argument("--slurm-partition", default=None)
    g.add_argument("--slurm-gpus-per-task", type=int_at_least(0), default=None,
                   help="GPUs per run (default 1 for the full tier, 0 for the preview)")
    g.add_argument("--slurm-time", type=_minutes, default=60, metavar="TIME",
                   help="time limit per run: minutes or [D-]HH:MM[:SS] (default 60)")
    g.add_argument("--slurm-array-parallelism", type=int_at_least(1), default=64,
                   help="at most this many runs at once (default 64)")
    g.add_argument("--slurm-cpus-per-task", type=int_at_least(1), default=1)
    g.add_argument("--slurm-cluster", choices=("slurm", "local", "debug"), default=None,
                   help="submitit's executor (default: Slurm when sbatch is there); local and debug run the "
                        "same job array on this machine, to try a submission first")
    return p


def _stored(name: str, scale: str) -> str:
    """How many runs of a tier are stored, per device, in the shipped and the default folder."""
    per_device = {}
    for root in dict.fromkeys((cache.RESULTS_DIR, cache.default_results_root())):
        for device in ("cpu", "cuda"):
            for folder in sweep.tier_folders(root, scale, device):
                label = folder.name if folder != root else "cpu"
                per_device.setdefault(label or "cpu", set()).update(cache.read_folder(name, folder))
    found = {k: len(v) for k, v in per_device.items() if v}
    if not found:
        return "0 stored"
    return ", ".join(f"{n} stored" + ("" if label == "cpu" and scale == "preview" else f" in {label}")
                     for label, n in found.items())


def list_experiments(dry_run: bool = False, gpu_tflops: float | None = None, workers: int = 1) -> None:
    for e in EXPERIMENTS.values():
        counts = []
        for scale in SCALES:
            counts.append(f"{scale} {len(e.specs(scale))} runs ({_stored(e.name, scale)})")
        print(f"{e.name:4} {e.question}\n     " + "; ".join(counts))
        if dry_run:
            for scale in SCALES:
                specs = e.specs(scale)
                print("     " + estimate.report(e.name, scale, specs, len(specs), workers=workers,
                                                gpu_tflops=gpu_tflops).replace("\n", "\n     "))


def _print_skipped(message, category, *_args, **_kwargs):
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """``python -m normcourse experiment NAME``: run or resume a named experiment."""
    args = parser().parse_args(argv)
    with warnings.catch_warnings():   # a skipped file is one line naming it, not a warning with a source line
        warnings.simplefilter("always", cache.SkippedFile)
        warnings.showwarning = _print_skipped
        return _main(args)


def _main(args) -> int:
    if args.name == "list":
        list_experiments(args.dry_run, args.gpu_tflops, args.workers)
        return 0
    if args.name not in EXPERIMENTS:
        print(f"unknown experiment {args.name!r}; choose one of: {', '.join(EXPERIMENTS)}, list", file=sys.stderr)
        return 2
    where = dict(args.where)
    try:
        if args.dry_run:
            for scale in ([args.scale] if args.scale else SCALES):
                sweep.check_where(args.name, scale, where)
                device = sweep.resolve_device(args.device, scale)
                root = args.results if args.results is not None else cache.default_results_root()
                done = sweep.stored_runs(args.name, root, scale, device)
                specs = sweep.choose(args.name, scale=scale, fresh=args.fresh, limit=args.limit, where=where,
                                     done=done)
                print(estimate.report(args.name, scale, specs, len(EXPERIMENTS[args.name].specs(scale)),
                                      workers=args.workers, gpu_tflops=args.gpu_tflops))
            return 0
        scale = args.scale or "preview"
        gpus = args.slurm_gpus_per_task
        if gpus is None:
            gpus = 1 if scale == "full" else 0
        slurm = SlurmOptions(partition=args.slurm_partition, gpus_per_task=gpus, time_min=args.slurm_time,
                             array_parallelism=args.slurm_array_parallelism,
                             cpus_per_task=args.slurm_cpus_per_task, cluster=args.slurm_cluster)
        device = args.device
        if args.executor == "slurm" and device is None:   # the workers' device, not this login node's
            device = "cuda" if gpus else "cpu"
        cache_ = sweep.run(args.name, scale=scale, executor=args.executor, workers=args.workers,
                           fresh=args.fresh, limit=args.limit, where=where, progress=not args.quiet,
                           results_dir=args.results, device=device, slurm=slurm,
                           smoke_steps=args.smoke_steps)
    except sweep.RunsFailed as err:
        print(err, file=sys.stderr)
        return 1
    except (ValueError, ImportError) as err:
        print(f"experiment {args.name}: {err}", file=sys.stderr)
        return 2
    root = args.results if args.results is not None else cache.default_results_root()
    if args.smoke_steps:
        print(f"{args.name}: {len(cache_['runs'])} smoke runs (at most {args.smoke_steps} steps, not the grid's "
              f"runs) stored under {root / sweep.SMOKE_FOLDER}")
        return 0
    # what the chapters will read: with no --results, the shipped runs and the default folder's together
    device = sweep.resolve_device(device, scale)
    readable = {}
    for folder_root in ([args.results] if args.results is not None else [cache.RESULTS_DIR, root]):
        readable.update(sweep.stored_runs(args.name, folder_root, scale, device))
    print(f"{args.name}: {len(readable)}/{len(EXPERIMENTS[args.name].specs(scale))} runs stored "
          f"(new runs go to {root})")
    return 0
