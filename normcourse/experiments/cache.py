"""The results cache: one file per run, merged into one JSON per experiment.

Layout under a results folder (``--results DIR``)::

    DIR/E2.json                       preview runs on the CPU, merged (what chapters read)
    DIR/runs/E2/<key>.json            one file per finished run
    DIR/full-cuda-nvidia-h100/E2.json another tier or device: its own folder, same layout
    DIR/full-cpu/runs/E2/<key>.json

A run is written by the process that computed it, to a temporary name in
the same folder and then renamed (atomic on POSIX and Windows): a run killed
halfway leaves at most a ``.tmp`` file, which never counts as done.  Two
processes filling the same grid write different keys, or the same key with
the same numbers; merging takes a lock and reads every run file, so the last
merge sees every run.  A file that is not valid JSON, has another format
version, belongs to another experiment or whose key does not match its spec
is reported by name (a :class:`SkippedFile` warning) and skipped.

Where results go: in a source checkout (a clone of the repository, as for
the course's own previews) the package's ``normcourse/results/``; in an
installed package (site-packages is nobody's to write) the folder named by
``$NORMCOURSE_RESULTS``, else ``$XDG_DATA_HOME/normcourse/results``
(``~/.local/share/normcourse/results``).  Reading without ``results_dir``
looks in both: the shipped previews and what you ran.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import torch

from normcourse.experiments.grids import EXPERIMENTS, check_scale, spec_key

FORMAT_VERSION = 1
PACKAGE_DIR = Path(__file__).resolve().parent.parent
RESULTS_DIR = PACKAGE_DIR / "results"     # the shipped previews

# Every module whose code computes a run's numbers, relative to normcourse/ (a pattern may
# be a glob; kernels/ runs on CUDA): their hash is the code version stored with each run.
# tests/test_experiments_cache.py checks it against the imports of measures.py, followed
# transitively (the cache, executors and command line around a run are not in it).
ENGINE_FILES = ("__init__.py", "runtime.py", "_triton_probe.py", "tolerance.py", "norms.py", "blocks.py", "model.py",
                "checks.py", "data.py", "train.py", "ablations.py", "remove_norm.py", "kernels/*.py",
                "residual_streams.py", "frontier_measures.py", "memorization.py",
                "experiments/measures.py")
RUN_FIELDS = ("spec", "result", "seconds", "code", "env", "corpus_sha256", "finished")


class SkippedFile(UserWarning):
    """A results file that was not read (corrupt, foreign, another format); the message names it."""


class IncompleteGrid(LookupError):
    """A chapter asked for a grid whose runs are not all in the cache; the message says how to fill it."""


# ------------------------------------------------------------------- provenance

def engine_paths() -> list[Path]:
    out = []
    for pattern in ENGINE_FILES:
        out += sorted(PACKAGE_DIR.glob(pattern))
    return out


def code_version() -> dict:
    """A hash of every engine file, and the git commit (and whether they differ from it)."""
    h = hashlib.sha256()
    paths = engine_paths()
    for f in paths:
        h.update(f.read_bytes())
    info = {"engine_sha256": h.hexdigest()[:16], "git_commit": None, "git_dirty": None}
    try:
        git = dict(cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=10)
        root = subprocess.run(["git", "rev-parse", "--show-toplevel"], **git).stdout.strip()
        if root:
            info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], **git).stdout.strip() or None
            status = subprocess.run(["git", "status", "--porcelain", "--", *map(str, paths)], **git).stdout
            info["git_dirty"] = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str = "cpu") -> str:
    """``"cpu: <CPU model>"`` or ``"cuda: <GPU name>"``: the machine a run's numbers come from."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(dev)}"
    return f"cpu: {cpu_name()}"


def numerics_fingerprint(device: str = "cpu") -> str:
    """What decides the last bits of a float result on this machine.

    The same code, data and seed give the same numbers bit for bit only on the
    same processor model and kernel family (BLAS blocks its sums by the cache
    sizes and vector width it finds) with the same thread count.  Training
    amplifies a difference in the last bit step by step, so runs are only
    comparable to the bit when their fingerprints are equal.
    """
    return " | ".join([device_name(device), f"kernels {torch.backends.cpu.get_cpu_capability()}",
                       f"torch {torch.__version__}", f"threads {torch.get_num_threads()}"])


def environment(device: str = "cpu") -> dict:
    """Library versions and machine facts that can change a number."""
    import numpy
    env = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
           "platform": platform.platform(), "machine": platform.machine(), "device": device_name(device),
           "numerics": numerics_fingerprint(device)}
    if torch.device(device).type == "cuda":
        env["cuda"] = torch.version.cuda
    return env


# ---------------------------------------------------------------------- folders

def in_source_checkout() -> bool:
    """True when the package runs from a clone of the repository (not from site-packages)."""
    root = PACKAGE_DIR.parent
    return (root / ".git").exists() and (root / "pyproject.toml").exists()


def default_results_root() -> Path:
    """Where new runs go when no ``--results`` is given (see the module docstring)."""
    if os.environ.get("NORMCOURSE_RESULTS"):
        return Path(os.environ["NORMCOURSE_RESULTS"]).expanduser()
    if in_source_checkout():
        return RESULTS_DIR
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "normcourse" / "results"


def device_slug(device: str = "cpu") -> str:
    """``cpu`` or ``cuda-<gpu-name>``: a folder name for the machine."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return "cpu"
    return "cuda-" + re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(dev).lower()).strip("-")


def tier_folder(scale: str = "preview", device: str = "cpu") -> str:
    """"" for the preview on the CPU (the shipped layout), else ``<scale>-<device>``."""
    check_scale(scale)
    slug = device_slug(device)
    return "" if (scale, slug) == ("preview", "cpu") else f"{scale}-{slug}"


def cache_path(name: str, results_dir: Path | None = None) -> Path:
    """The merged JSON of ``name`` in ``results_dir`` (default: the shipped previews)."""
    return Path(results_dir or RESULTS_DIR) / f"{name}.json"


def runs_dir(name: str, folder: Path) -> Path:
    return Path(folder) / "runs" / name


# ---------------------------------------------------------------- writing runs

def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()   # what open() would give; mkstemp's 0o600 would hide runs from co-workers


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        os.chmod(tmp, _FILE_MODE)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)   # atomic: readers see the old file or the whole new one
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def make_entry(spec: dict, result: dict, seconds: float, device: str = "cpu") -> dict:
    """A stored run: its spec, its numbers, and where they came from."""
    from normcourse.data import cached
    return {"spec": spec, "result": result, "seconds": round(seconds, 3), "code": code_version(),
            "env": environment(device), "corpus_sha256": cached(spec["train"].get("data", "python_docs")).sha256,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def write_run(name: str, folder: Path, entry: dict) -> Path:
    """Store one finished run as its own file (atomically); return the path."""
    key = spec_key(entry["spec"])
    path = runs_dir(name, folder) / f"{key}.json"
    _atomic_write(path, json.dumps({"format_version": FORMAT_VERSION, "experiment": name, **entry},
                                   indent=1, sort_keys=True))
    return path


# ---------------------------------------------------------------- reading runs

def _skip(path, why) -> None:
    warnings.warn(f"skipped {path}: {why}", SkippedFile, stacklevel=3)


def _check_run(entry, key: str) -> str:
    """Why ``entry`` is not a valid run stored under ``key`` ("" when it is)."""
    if not isinstance(entry, dict):
        return "not a JSON object"
    missing = [f for f in RUN_FIELDS if f not in entry]
    if missing:
        return f"missing {', '.join(missing)}"
    if not isinstance(entry["spec"], dict) or spec_key(entry["spec"]) != key:
        return f"its spec does not hash to its key {key}"
    return ""


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        _skip(path, f"not readable JSON ({err})")
        return None


def _read_merged(name: str, folder: Path):
    """Runs of the merged file in ``folder`` ({} if absent), and whether the file is ours to overwrite."""
    path = cache_path(name, folder)
    if not path.exists():
        return {}, True
    cache = _read_json(path)
    if cache is None:
        return {}, False
    if not isinstance(cache, dict) or cache.get("format_version") != FORMAT_VERSION:
        version = cache.get("format_version") if isinstance(cache, dict) else None
        _skip(path, f"format {version!r}; this code reads {FORMAT_VERSION}")
        return {}, False
    if cache.get("experiment", name) != name:
        _skip(path, f"holds experiment {cache.get('experiment')!r}, not {name!r}")
        return {}, False
    runs = {}
    for key, entry in (cache.get("runs") or {}).items():
        why = _check_run(entry, key)
        if why:
            _skip(path, f"run {key}: {why}")
        else:
            runs[key] = entry
    return runs, True


def _read_run_files(name: str, folder: Path) -> dict:
    runs = {}
    for path in sorted(runs_dir(name, folder).glob("*.json")):
        entry = _read_json(path)
        if entry is None:
            continue
        if isinstance(entry, dict) and entry.get("format_version") != FORMAT_VERSION:
            _skip(path, f"format {entry.get('format_version')!r}; this code reads {FORMAT_VERSION}")
            continue
        if isinstance(entry, dict) and entry.get("experiment") != name:
            _skip(path, f"a run of {entry.get('experiment')!r}, not of {name!r}")
            continue
        why = _check_run(entry, path.stem)
        if why:
            _skip(path, why)
            continue
        runs[path.stem] = {f: entry[f] for f in RUN_FIELDS}
    return runs


def read_folder(name: str, folder: Path) -> dict:
    """Every valid run of ``name`` in one folder: the merged file's, then the run files'."""
    merged, _ = _read_merged(name, folder)
    return {**merged, **_read_run_files(name, folder)}


def read_folders(scale: str = "preview", device: str = "cpu", results_dir: Path | None = None) -> list[Path]:
    """The folders read for a tier: ``results_dir``'s, or the shipped one and the default write one."""
    sub = tier_folder(scale, device)
    if results_dir is not None:
        return [Path(results_dir) / sub]
    folders = [RESULTS_DIR / sub, default_results_root() / sub]
    return list(dict.fromkeys(f.resolve() for f in folders))


def header(name: str) -> dict:
    exp = EXPERIMENTS.get(name)
    return {"format_version": FORMAT_VERSION, "experiment": name,
            "question": exp.question if exp else ""}


def read_cache(name: str, results_dir: Path | None = None, *, scale: str = "preview",
               device: str = "cpu") -> dict:
    """Every stored run of one experiment, in the merged file's format (no runs: ``"runs": {}``).

    Without ``results_dir``: the shipped previews and the default write folder
    together (see the module docstring).
    """
    runs = {}
    for folder in read_folders(scale, device, results_dir):
        runs.update(read_folder(name, folder))
    return {**header(name), "runs": runs}


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive lock on ``path`` (POSIX flock; where there is none, no lock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            import fcntl
        except ImportError:   # Windows: merges from one process at a time, please
            yield
            return
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def merge(name: str, folder: Path) -> Path:
    """Rewrite ``folder/<name>.json`` from the merged file and every run file (under a lock)."""
    path = cache_path(name, folder)
    with _lock(Path(folder) / "runs" / f".{name}.lock"):
        merged, ours = _read_merged(name, folder)
        runs = {**merged, **_read_run_files(name, folder)}
        if not ours:
            _skip(path, "left untouched, not merged into; move it away to rebuild it from runs/")
            return path
        if runs != merged or not path.exists():
            _atomic_write(path, json.dumps({**header(name), "runs": runs}, indent=1, sort_keys=True))
    return path


# ---------------------------------------------------------------- for chapters

def missing_specs(name: str, runs: dict, scale: str = "preview") -> list[dict]:
    """The grid points of ``name`` whose keys are not in ``runs``."""
    return [s for s in EXPERIMENTS[name].specs(scale) if spec_key(s) not in runs]


def describe_spec(spec: dict) -> str:
    """The fields a grid varies, as ``field=value`` (the rest is the experiment's base)."""
    fields = {**spec["model"], **spec["train"]}
    exp = EXPERIMENTS.get(spec.get("experiment"))
    axes = [k for t in ((exp.preview, exp.full) if exp else ()) for p in t.parts for k in p.axes]
    shown = list(dict.fromkeys(axes)) or list(fields)
    return " ".join(f"{k}={fields[k]}" for k in shown if k in fields)


def fill_command(name: str, scale: str = "preview") -> str:
    return f"python -m normcourse experiment {name}" + ("" if scale == "preview" else f" --scale {scale}")


def check_complete(name: str, runs: dict, scale: str = "preview", where: str = "") -> None:
    """Raise :class:`IncompleteGrid` naming the missing runs and the command that fills them."""
    missing = missing_specs(name, runs, scale)
    if missing:
        shown = "; ".join(describe_spec(s) for s in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        total = len(EXPERIMENTS[name].specs(scale))
        raise IncompleteGrid(f"{name} ({scale}) has {total - len(missing)} of {total} runs{where}; missing: "
                             f"{shown}{more}. Fill them with: {fill_command(name, scale)}")


def rows_of(runs: dict) -> list[dict]:
    """Stored runs as flat rows (spec fields first, then results), for plots and tables."""
    return [{"key": key, **e["spec"]["model"], **e["spec"]["train"], **e["result"],
             "corpus_sha256": e["corpus_sha256"], "code": e["code"], "env": e["env"]}
            for key, e in runs.items()]


def load_results(name: str, results_dir: Path | None = None, *, scale: str = "preview",
                 device: str = "cpu", complete: bool | None = None) -> list[dict]:
    """Cached runs as flat rows, for plots and tables.

    ``complete`` (default: True for a named experiment of the table) raises
    :class:`IncompleteGrid` when a grid point is missing, with the command
    that fills it, instead of a chapter failing later on a missing row.
    """
    runs = read_cache(name, results_dir, scale=scale, device=device).get("runs", {})
    if complete is None:
        complete = name in EXPERIMENTS
    if complete:
        where = f" in {', '.join(map(str, read_folders(scale, device, results_dir)))}"
        check_complete(name, runs, scale, where)
    return rows_of(runs)
