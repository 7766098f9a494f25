"""Filling a grid: choose the runs, hand them to an executor, merge what came back.

Nothing is ever dropped: without ``fresh`` only missing runs are chosen; with
``fresh`` the chosen runs are computed again and replace their own files,
and every other stored run stays.  ``limit`` and ``where`` narrow the choice
only.  The merged JSON is rebuilt from the run files at the end, also when
the sweep is interrupted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from normcourse.experiments import cache
from normcourse.experiments.executors import EXECUTORS, Failure, SlurmOptions, run_local, run_slurm
from normcourse.experiments.grids import EXPERIMENTS, check_scale, spec_key
from normcourse.checks import check_int


class RunsFailed(RuntimeError):
    """Some runs raised; the others are stored.  ``failures`` lists them."""

    def __init__(self, failures):
        self.failures = failures
        lines = "\n".join(f"  {cache.describe_spec(f.spec)}: {f.error}" for f in failures[:10])
        super().__init__(f"{len(failures)} run(s) failed (the others are stored):\n{lines}")


def check_name(name: str) -> None:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)}")


def resolve_device(device: str | None, scale: str) -> str:
    """``None``: the CPU for previews (their numbers are CPU numbers), a GPU when there is one otherwise."""
    if device is None:
        return "cuda" if scale != "preview" and torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return device


def matches(spec: dict, where: dict | None) -> bool:
    """True if every ``field: value`` of ``where`` equals the spec's model or train field."""
    fields = {**spec["model"], **spec["train"]}
    return all(f in fields and fields[f] == v for f, v in (where or {}).items())


def check_where(name: str, scale: str, where: dict | None) -> None:
    specs = EXPERIMENTS[name].specs(scale)
    known = {f for s in specs for f in (*s["model"], *s["train"])}
    for f in where or {}:
        if f not in known:
            raise ValueError(f"where: {name} has no field {f!r}; fields: {', '.join(sorted(known))}")


def stored_runs(name: str, root: Path, scale: str, device: str) -> dict:
    """Runs of ``name`` already stored for this tier and kind of device (any GPU name for cuda)."""
    runs = {}
    for folder in tier_folders(root, scale, device):
        runs.update(cache.read_folder(name, folder))
    return runs


def tier_folders(root: Path, scale: str, device: str) -> list[Path]:
    """The folders under ``root`` of this tier on this kind of device."""
    if torch.device(device).type == "cpu":
        return [Path(root) / cache.tier_folder(scale, "cpu")]
    return sorted(p for p in Path(root).glob(f"{scale}-cuda-*") if p.is_dir())


SMOKE_FOLDER = "smoke"


def shorten(spec: dict, steps: int) -> dict:
    """``spec`` with at most ``steps`` training (and fine-tuning) steps: a smoke test of its sizes."""
    train = {**spec["train"], "steps": min(spec["train"]["steps"], steps),
             "warmup_steps": min(spec["train"]["warmup_steps"], steps)}
    out = {**spec, "train": train}
    if "removal" in spec:
        out["removal"] = {**spec["removal"], "steps_per_norm": min(spec["removal"]["steps_per_norm"], steps),
                          "final_steps": min(spec["removal"]["final_steps"], steps)}
    return out


def choose(name: str, *, scale: str = "preview", fresh: bool = False, limit: int | None = None,
           where: dict | None = None, done: dict | None = None) -> list[dict]:
    """The specs a sweep will run, in grid order."""
    specs = [s for s in EXPERIMENTS[name].specs(scale) if matches(s, where)]
    if not fresh:
        specs = [s for s in specs if spec_key(s) not in (done or {})]
    return specs[:limit]


def run(name: str, *, scale: str = "preview", executor: str = "local", workers: int = 1, fresh: bool = False,
        limit: int | None = None, where: dict | None = None, progress: bool = True,
        results_dir: Path | None = None, device: str | None = None,
        slurm: SlurmOptions | None = None, smoke_steps: int | None = None) -> dict:
    """Run (or resume) an experiment; every finished run is written at once.  Returns the merged cache.

    ``smoke_steps``: run the chosen points with at most that many steps, into
    ``<results>/smoke/`` (never read as the grid's runs): a check that a tier's
    sizes build, fit in memory, train and store, before the long runs.
    """
    from tqdm.auto import tqdm

    check_name(name)
    check_scale(scale)
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    check_int("workers", workers, low=1)
    if limit is not None:   # a negative limit would slice [:limit] and drop the last points
        check_int("limit (None: no limit)", limit, low=0)
    check_where(name, scale, where)
    device = resolve_device(device, scale)
    if executor == "local" and device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' but this machine has no CUDA GPU; use device 'cpu' (--device cpu) "
                         "or the slurm executor with --slurm-gpus-per-task")
    root = Path(results_dir) if results_dir is not None else cache.default_results_root()
    if smoke_steps is None:
        todo = choose(name, scale=scale, fresh=fresh, limit=limit, where=where,
                      done=stored_runs(name, root, scale, device))
    else:
        check_int("smoke_steps", smoke_steps, low=1)
        root = root / SMOKE_FOLDER
        done = stored_runs(name, root, scale, device)
        todo = [shorten(s, smoke_steps) for s in choose(name, scale=scale, fresh=True, where=where)]
        todo = [s for s in todo if fresh or spec_key(s) not in done][:limit]
    failures = []
    if todo:
        if executor == "local":
            finished = run_local(name, todo, root, scale, device, workers)
        else:
            finished = run_slurm(name, todo, root, scale, device, slurm or SlurmOptions())
        bar = tqdm(total=len(todo), disable=not progress, desc=f"{name} ({scale})", file=sys.stderr)
        try:
            for out in finished:
                if isinstance(out, Failure):
                    failures.append(out)
                    bar.write(f"{name}: a run failed: {cache.describe_spec(out.spec)}: {out.error}")
                bar.update(1)
        finally:
            bar.close()
            for folder in tier_folders(root, scale, device):
                if cache.runs_dir(name, folder).exists():
                    cache.merge(name, folder)
    if failures:
        raise RunsFailed(failures)
    return {**cache.header(name), "runs": stored_runs(name, root, scale, device)}
