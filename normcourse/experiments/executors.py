"""Where runs execute: processes on this machine, or a Slurm job array through submitit.

Both executors run the same function, :func:`run_and_store`, once per grid
point: it computes the run and writes its file itself (see
:mod:`normcourse.experiments.cache`), so a finished run is on disk whatever
happens to the process that launched it.  Each executor yields the path of
every run file as its job finishes, for the progress bar and the final merge.

submitit (https://github.com/facebookincubator/submitit) is the optional
extra ``cluster``: it is imported only when ``--executor slurm`` is chosen.
Its ``cluster="local"`` and ``cluster="debug"`` executors run the very same
code path without ``sbatch``, which is how the tests exercise it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

EXECUTORS = ("local", "slurm")


def run_and_store(name: str, spec: dict, root: str, scale: str, device: str) -> str:
    """Compute one run on ``device`` and write its file under ``root``; return the file's path.

    The folder is chosen here, on the machine that ran it, because only this
    machine knows its GPU's name.
    """
    from normcourse.experiments import cache
    from normcourse.experiments.measures import run_one

    t0 = time.perf_counter()
    result = run_one(spec, device)
    entry = cache.make_entry(spec, result, time.perf_counter() - t0, device)
    folder = Path(root) / cache.tier_folder(scale, device)
    return str(cache.write_run(name, folder, entry))


@dataclass
class Failure:
    """A run that raised: its spec and the error, reported at the end of the sweep."""

    spec: dict
    error: str


def run_local(name, specs, root, scale, device, workers: int = 1):
    """Run ``specs`` here, in ``workers`` processes (1: in this process); yield paths or Failures."""
    args = [(name, s, str(root), scale, device) for s in specs]
    if workers == 1:
        for a in args:
            try:
                yield run_and_store(*a)
            except Exception as err:   # one broken point must not stop the grid
                yield Failure(a[1], f"{type(err).__name__}: {err}")
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(workers) as pool:
        futures = {pool.submit(run_and_store, *a): a[1] for a in args}
        try:
            for fut in as_completed(futures):
                err = fut.exception()
                yield fut.result() if err is None else Failure(futures[fut], f"{type(err).__name__}: {err}")
        except BaseException:
            for fut in futures:   # Ctrl-C: do not start what has not started; finished runs are on disk
                fut.cancel()
            raise


@dataclass
class SlurmOptions:
    """What ``sbatch`` gets; ``cluster`` None lets submitit pick Slurm ("local"/"debug" for tests)."""

    partition: str | None = None
    gpus_per_task: int = 0
    time_min: int = 60
    array_parallelism: int = 64
    cpus_per_task: int = 1
    cluster: str | None = None
    poll_s: float = 15.0
    log_dir: Path | None = None


def import_submitit():
    try:
        import submitit
    except ImportError as err:
        raise ImportError("--executor slurm needs submitit, the optional extra 'cluster': "
                          "pip install 'normcourse[cluster]' (or: pip install submitit)") from err
    return submitit


def make_executor(name: str, options: SlurmOptions, log_dir: Path):
    """A submitit executor for one grid's job array, with ``options`` as sbatch parameters."""
    submitit = import_submitit()
    executor = submitit.AutoExecutor(folder=Path(log_dir) / "%j", cluster=options.cluster)
    params = dict(name=f"normcourse-{name}", timeout_min=options.time_min, cpus_per_task=options.cpus_per_task,
                  slurm_array_parallelism=options.array_parallelism)
    if options.partition:
        params["slurm_partition"] = options.partition
    if options.gpus_per_task:
        params["slurm_gpus_per_task"] = options.gpus_per_task
    executor.update_parameters(**params)
    return executor


def run_slurm(name, specs, root, scale, device, options: SlurmOptions):
    """Submit ``specs`` as one job array; yield paths or Failures as jobs finish."""
    submitit = import_submitit()
    log_dir = Path(options.log_dir or Path(root) / "slurm-logs" / name)
    executor = make_executor(name, options, log_dir)
    n = len(specs)
    jobs = executor.map_array(run_and_store, [name] * n, list(specs), [str(root)] * n, [scale] * n,
                              [device] * n)
    spec_of = {job.job_id: spec for job, spec in zip(jobs, specs)}
    print(f"{name}: submitted {n} runs as job array {jobs[0].job_id.split('_')[0] if jobs else '-'} "
          f"(logs in {log_dir}); waiting for them to finish (Ctrl-C stops waiting, not the jobs)")
    for job in submitit.helpers.as_completed(jobs, poll_frequency=options.poll_s):
        try:
            yield job.result()
        except Exception as err:   # a failed or cancelled job
            yield Failure(spec_of[job.job_id], f"{type(err).__name__}: {str(err).strip()[-500:]}")
