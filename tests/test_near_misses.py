"""Every exercise checker against its near misses and its unusual right answers.

The attempts are data, one module per chapter in ``tests/near_misses/`` (see its
docstring).  A near miss must be rejected with feedback that names what is wrong,
under several random seeds: the checker's inputs must separate it from the
reference whatever the draw, not by luck.  A right answer must be accepted, also
under every seed.
"""

from __future__ import annotations

import importlib
import pathlib

import pytest
import torch

import near_misses
from checker_run import run

SEEDS = (0, 1, 2)
_HERE = pathlib.Path(near_misses.__file__).parent
CHAPTERS = sorted(p.stem for p in _HERE.glob("ch[0-9]*.py"))


def _exercises():
    for chapter in CHAPTERS:
        for exercise in importlib.import_module(f"near_misses.{chapter}").CASES:
            yield chapter, exercise


def _params(kind):
    for chapter, exercise in _exercises():
        for attempt in getattr(exercise, kind):
            name = getattr(exercise.checker, "__name__", "checker")
            yield pytest.param(exercise, attempt, id=f"{chapter}-{name}-{attempt.label}")


def test_every_chapter_module_has_cases():
    for chapter, exercise in _exercises():
        assert exercise.near_misses, f"{chapter}: {exercise.checker.__name__} lists no near miss"
        assert exercise.right_answers, f"{chapter}: {exercise.checker.__name__} lists no right answer"


def _verdicts(exercise, attempt, capsys, seeds=SEEDS):
    """(seed, passed, printed feedback) of the checker on ``attempt``, seed by seed."""
    for seed in seeds:
        torch.manual_seed(seed)
        yield (seed, *run(exercise.checker, attempt.fn, capsys))


@pytest.mark.parametrize("exercise, attempt", list(_params("near_misses")))
def test_near_miss_is_rejected_and_named(exercise, attempt, capsys):
    for seed, ok, out in _verdicts(exercise, attempt, capsys):
        assert ok is False, f"seed {seed}: near miss {attempt.label!r} was accepted:\n{out}"
        assert "Traceback" not in out, out
        for word in attempt.names:
            assert word.lower() in out.lower(), f"seed {seed}: feedback does not name {word!r}:\n{out}"


@pytest.mark.parametrize("exercise, attempt", list(_params("right_answers")))
def test_right_answer_is_accepted(exercise, attempt, capsys):
    for seed, ok, out in _verdicts(exercise, attempt, capsys):
        assert ok is True, f"seed {seed}: right answer {attempt.label!r} was rejected:\n{out}"


# Every chapter's checkers are proven to separate their near misses: every near miss is
# still rejected when every tolerance is ten times wider, so no near miss is rejected by
# a hair (on the checker's own, fixed inputs).
SEPARATED = {f"ch{n:02d}" for n in range(1, 15)}
LOOSER = 10.0


def _loose_close(close):
    def loose(out, ref, atol, rtol=0.0):
        return close(out, ref, LOOSER * atol, LOOSER * rtol)
    return loose


@pytest.mark.parametrize("exercise, attempt", [
    p for p in _params("near_misses") if p.id.split("-")[0] in SEPARATED])
def test_near_miss_is_separated_by_far_more_than_the_tolerance(exercise, attempt, capsys,
                                                               monkeypatch):
    import sys

    from normcourse.exercises import feedback

    loose = _loose_close(feedback.close)
    for name, module in list(sys.modules.items()):
        if name.startswith("normcourse.exercises") and getattr(module, "close", None) is \
                feedback.close:
            monkeypatch.setattr(module, "close", loose)
    (_, ok, out), = _verdicts(exercise, attempt, capsys, seeds=(0,))
    assert ok is False, (f"near miss {attempt.label!r} passes with tolerances {LOOSER:g} times "
                         f"wider: the checker's inputs barely separate it:\n{out}")


def test_every_checker_the_chapters_call_has_its_lists():
    """Every ``check_*(...)`` call in a chapter's code has an Exercise here, and no other."""
    import json
    import re
    from pathlib import Path

    called = set()
    for path in sorted(Path(__file__).parent.parent.glob("notebooks/[0-9]*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                called |= set(re.findall(r"\b(check_\w+)\(", "".join(cell["source"])))
    listed = {exercise.checker.__name__ for _, exercise in _exercises()}
    assert called, "no checker call found in the chapters"
    assert called == listed, (f"called but not listed: {sorted(called - listed)}; "
                              f"listed but not called: {sorted(listed - called)}")
