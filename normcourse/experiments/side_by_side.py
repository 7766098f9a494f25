"""What a chapter shows of the full tier: the result beside the preview, or how to produce it.

A full-tier result counts as present when ``normcourse/results/full-<device>/``
holds runs of the experiment (they are committed like the previews, after
someone runs them on a GPU).  :func:`full_tier_note` is the one sentence a
chapter prints; :func:`beside_preview` puts a chapter's own summary of the
preview and of every full-tier result side by side, each labelled with its
device and date.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from normcourse.blocks import PLACEMENTS
from normcourse.experiments import cache
from normcourse.experiments.grids import EXPERIMENTS
from normcourse.experiments.measures import MEASURES


@dataclass
class TierResult:
    """The stored runs of one experiment in one tier folder."""

    scale: str
    folder: Path
    runs: dict
    total: int

    @property
    def device(self) -> str:
        names = Counter(e["env"].get("device", "CPU (device not recorded)") for e in self.runs.values())
        return names.most_common(1)[0][0] if names else "no runs"

    @property
    def date(self) -> str:
        return max((e["finished"] for e in self.runs.values()), default="")[:10]

    @property
    def label(self) -> str:
        return f"{self.scale}, {self.device}, {self.date} ({len(self.runs)}/{self.total} runs)"

    def rows(self) -> list[dict]:
        return cache.rows_of(self.runs)


def preview_result(name: str, results_dir: Path | None = None) -> TierResult:
    runs = cache.read_cache(name, results_dir)["runs"]
    return TierResult("preview", Path(results_dir or cache.RESULTS_DIR), runs, len(EXPERIMENTS[name].specs()))


def full_results(name: str, results_dir: Path | None = None) -> list[TierResult]:
    """Every full-tier result of ``name`` stored under ``results_dir`` (default: the repository's)."""
    root = Path(results_dir or cache.RESULTS_DIR)
    total = len(EXPERIMENTS[name].specs("full"))
    out = []
    for folder in sorted(p for p in root.glob("full-*") if p.is_dir()):
        runs = cache.read_folder(name, folder)
        if runs:
            out.append(TierResult("full", folder, runs, total))
    return out


def full_tier_note(name: str, results_dir: Path | None = None) -> str:
    """One sentence: which full-tier results exist for ``name``, or the command that produces one."""
    found = full_results(name, results_dir)
    if not found:
        where = "a GPU" if not MEASURES[EXPERIMENTS[name].measure].cpu_only else "a many-core CPU"
        return (f"No full-tier result of {name} is recorded yet: `{cache.fill_command(name, 'full')}` on "
                f"{where} produces it (setup page, \"Running the experiments at full scale\").")
    return f"Full-tier results of {name}: " + "; ".join(r.label for r in found) + "."


def beside_preview(name: str, summarize, results_dir: Path | None = None) -> str:
    """A text table: ``summarize(rows) -> {label: number}`` for the preview and each full-tier result.

    Without a full-tier result, the preview's column and :func:`full_tier_note`.
    """
    tiers = [preview_result(name, results_dir), *full_results(name, results_dir)]
    columns = [summarize(t.rows()) for t in tiers]
    labels = list(dict.fromkeys(k for c in columns for k in c))
    width = max([len(k) for k in labels] + [10])
    lines = []
    for i, t in enumerate(tiers):
        lines.append(f"[{i + 1}] {t.label}")
    lines.append(f"{'':{width}}" + "".join(f"{'[' + str(i + 1) + ']':>12}" for i in range(len(tiers))))
    for k in labels:
        cells = [c.get(k) for c in columns]
        lines.append(f"{k:{width}}" + "".join(f"{_cell(v):>12}" for v in cells))
    if len(tiers) == 1:
        lines.append(full_tier_note(name, results_dir))
    return "\n".join(lines)


def _cell(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# ------------------------------------------------- the chapters' summaries (8-11)
# Each maps a tier's rows to a few numbers that mean the same at both scales
# (the tiers' depths and seeds differ, so nothing is matched run by run).

def _mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs) if xs else None


def _placements(rows):
    """The single-name placements in ``rows``, in the order of blocks.PLACEMENTS."""
    present = {r["placement"] for r in rows if isinstance(r["placement"], str)}
    return [p for p in PLACEMENTS if p in present]


def summary_e1(rows):
    """Growth of the trained stream (last layer's RMS over the first's), unit-scale embeddings."""
    out = {}
    for p in _placements(rows):
        runs = [r for r in rows if r["placement"] == p and r["embed_scale"] == 50.0 and "trained" in r]
        out[f"{p}: stream RMS last/first"] = _mean(r["trained"]["layer_rms"][-1] / r["trained"]["layer_rms"][0]
                                                   for r in runs)
    return out


def summary_e2(rows):
    """At the deepest stack, unit-scale embeddings: last layer's gradient norm over the first's."""
    deepest = max(r["n_layer"] for r in rows)
    out = {"deepest stack (layers)": deepest}
    for p in _placements(rows):
        runs = [r for r in rows if r["placement"] == p and r["n_layer"] == deepest and r["embed_scale"] == 50.0]
        g = [r["init"]["layer_grad_norm"] for r in runs]
        out[f"{p}: grad last/first"] = _mean(x[-1] / x[0] for x in g if x[0] > 0)
    return out


def summary_training(rows):
    """Per placement: share of runs that diverged, and the best validation loss."""
    out = {}
    for p in _placements(rows):
        runs = [r for r in rows if r["placement"] == p]
        out[f"{p}: diverged (share)"] = _mean(float(r["diverged"]) for r in runs)
        out[f"{p}: best val loss"] = min((r["val_loss"] for r in runs if r["val_loss"] is not None), default=None)
    return out


def summary_e6(rows):
    """Per plain placement: mean loss change when one layer of the upper half is skipped, after training."""
    out = {}
    for p in _placements(rows):
        runs = [r for r in rows if r["placement"] == p and not r.get("depth_scaled_norm")
                and r.get("scaled_residual_init", True) and "trained" in r]
        out[f"{p}: skip delta, upper half"] = _mean(
            _mean(r["trained"]["skip_delta"][len(r["trained"]["skip_delta"]) // 2:]) for r in runs)
    return out


def summary_e7(rows):
    """Mean validation loss of the trained model and of each way of removing LayerNorm."""
    keys = ("val_loss", "val_identity", "val_frozen_all", "val_gradual", "val_kept_ft", "val_identity_ft")
    return {k: _mean(r[k] for r in rows) for k in keys}


SUMMARIES = {"E1": summary_e1, "E2": summary_e2, "E3": summary_training, "E4": summary_training,
             "E6": summary_e6, "E7": summary_e7}


def full_tier_comparison(name: str, results_dir: Path | None = None) -> str:
    """:func:`beside_preview` with the chapter's own summary of ``name`` (see ``SUMMARIES``)."""
    if name not in SUMMARIES:
        raise ValueError(f"no chapter summary for {name!r}; choose one of {', '.join(SUMMARIES)}, or call "
                         f"beside_preview(name, summarize) with your own")
    return beside_preview(name, SUMMARIES[name], results_dir)
