"""Make the learner's version of every chapter: solutions replaced by stubs.

In a solved notebook, each exercise's solution body sits between a line
``# BEGIN SOLUTION`` and a line ``# END SOLUTION``.  The learner's version
(``notebooks/learner/<same name>.ipynb``) keeps everything else, replaces the
marked lines with ``raise NotImplementedError("your code here")`` at the same
indentation, and drops all outputs, so a learner starts from a clean page.

    python tools/learner_notebooks.py          # write notebooks/learner/*.ipynb
    python tools/learner_notebooks.py --check  # exit 1 if any is out of date

The test suite runs ``--check``, so a solved chapter and its learner's version
cannot drift apart.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOLVED = ROOT / "notebooks"
LEARNER = SOLVED / "learner"
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
STUB = 'raise NotImplementedError("your code here")'


def strip_solution(source: str) -> str:
    """Replace each BEGIN/END SOLUTION block of a cell's source with a stub."""
    out, inside = [], False
    for line in source.splitlines():
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ValueError(f"nested {BEGIN!r}")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}{STUB}")
        elif marker == END:
            if not inside:
                raise ValueError(f"{END!r} without {BEGIN!r}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN!r} without {END!r}")
    return "\n".join(out)


def learner_version(notebook: dict) -> dict:
    """The learner's notebook: stubs for solutions, no outputs, no execution counts."""
    nb = json.loads(json.dumps(notebook))  # deep copy
    for cell in nb["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "code":
            cell["source"] = strip_solution(source)
            cell["outputs"] = []
            cell["execution_count"] = None
        else:
            cell["source"] = source
    return nb


def has_exercises(notebook: dict) -> bool:
    return any(BEGIN in "".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")


def render(notebook: dict) -> str:
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def expected_files() -> dict[pathlib.Path, str]:
    """Learner file -> its expected text, for every solved chapter with exercises."""
    files = {}
    for path in sorted(SOLVED.glob("*.ipynb")):
        nb = json.loads(path.read_text())
        if has_exercises(nb):
            files[LEARNER / path.name] = render(learner_version(nb))
    return files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; write nothing")
    args = parser.parse_args(argv)
    expected = expected_files()
    stale = [p for p, text in expected.items() if not p.exists() or p.read_text() != text]
    orphans = [p for p in LEARNER.glob("*.ipynb") if p not in expected]
    if args.check:
        for p in stale:
            print(f"out of date: {p.relative_to(ROOT)} (run: python tools/learner_notebooks.py)")
        for p in orphans:
            print(f"no solved chapter for: {p.relative_to(ROOT)}")
        return 1 if stale or orphans else 0
    LEARNER.mkdir(exist_ok=True)
    for p in stale:
        p.write_text(expected[p])
        print(f"wrote {p.relative_to(ROOT)}")
    for p in orphans:
        p.unlink()
        print(f"removed {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
