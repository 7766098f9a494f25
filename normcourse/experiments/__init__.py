"""Named experiments, at two scales, with a results cache many workers can fill.

An experiment is a grid (placements x depths x learning rates x warmups x
seeds, ...) over one small model and one measurement.  Each grid point is a
*run* with a stable key (the sha256 of its spec); its result is stored as its
own file as soon as it finishes, so an interrupted sweep resumes where it
stopped, and several processes or cluster jobs can fill one grid at once.
Every run stores its full spec, the corpus sha256, the library versions, the
device it ran on and the code version.

Modules, one concept each:

- :mod:`~normcourse.experiments.grids`: the table of every experiment and its
  ``preview`` and ``full`` tiers (why each full-tier size was chosen is
  written beside it);
- :mod:`~normcourse.experiments.measures`: what one run computes (the
  registry ``MEASURES``) and :func:`run_one`;
- :mod:`~normcourse.experiments.cache`: run files, the merged JSON, where
  results live, :func:`load_results` / :func:`read_cache`;
- :mod:`~normcourse.experiments.executors`: local processes, or Slurm
  through submitit;
- :mod:`~normcourse.experiments.sweep`: :func:`run`, which chooses the runs
  and never drops a stored one;
- :mod:`~normcourse.experiments.estimate`: ``--dry-run``;
- :mod:`~normcourse.experiments.side_by_side`: a chapter's full-tier note or
  side-by-side table;
- :mod:`~normcourse.experiments.cli`: the command line.

Command line::

    python -m normcourse experiment list [--dry-run]
    python -m normcourse experiment E3 [--scale preview|full] [--executor local|slurm]
        [--workers N] [--results DIR] [--limit N] [--fresh] [--dry-run] [--quiet]

Adding an experiment is one entry in the table ``EXPERIMENTS`` of
``grids.py``: ``Experiment(name, question, measure, preview(Part(...)),
full(Part(...), why=...), chapter=N)``.  Its preview results go to
``normcourse/results/<name>.json`` (``python -m normcourse experiment
<name>``), and a test (tests/test_experiments.py) re-runs a slice of every
stored preview.  A new *kind* of measurement is one entry in
``measures.MEASURES``: a function ``(spec, data, model_config,
train_config) -> dict`` and its cost in FLOPs.

Changing a preview spec changes its key: the stored run then no longer
belongs to the grid (a chapter says which runs are missing and how to fill
them).  Changing the code changes the code version stored with new runs;
stored runs keep the version that produced them, and the reproduction tests
check that today's code still computes their numbers.
"""

from normcourse.experiments.cache import (ENGINE_FILES, FORMAT_VERSION, RESULTS_DIR, IncompleteGrid,
                                          SkippedFile, cache_path, code_version, environment, load_results,
                                          read_cache)
from normcourse.experiments.cli import main
from normcourse.experiments.grids import (EXPERIMENTS, FULL_MODEL, FULL_TRAIN, PREVIEW_MODEL, PREVIEW_TRAIN,
                                          SCALES, Experiment, Part, Tier, full, preview, spec_key)
from normcourse.experiments.measures import MEASURES, Measure, init_stats, run_one
from normcourse.experiments.side_by_side import beside_preview, full_results, full_tier_comparison, full_tier_note
from normcourse.experiments.sweep import RunsFailed, run

__all__ = ["EXPERIMENTS", "Experiment", "Part", "Tier", "preview", "full", "SCALES", "spec_key", "run_one",
           "run", "read_cache", "load_results", "cache_path", "code_version", "environment", "init_stats",
           "MEASURES", "Measure", "ENGINE_FILES", "FORMAT_VERSION", "RESULTS_DIR", "IncompleteGrid",
           "SkippedFile", "RunsFailed", "beside_preview", "full_tier_comparison", "full_tier_note", "main"]
