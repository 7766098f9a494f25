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

from normcourse.experiments import cache
from normcourse.experiments.grids import EXPERIMENTS


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
        return (f"No full-tier result of {name} is recorded yet: `{cache.fill_command(name, 'full')}` on a "
                f"GPU produces it (setup page, \"Running the experiments at full scale\").")
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
