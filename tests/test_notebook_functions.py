"""One definition per helper: no function or class is defined in two chapters.

A helper two chapters need lives in the package (``normcourse.summaries``,
``normcourse.plots``, ``normcourse.timing``, ...) and both import it; two
chapter-level definitions of one name drift apart, and a reader cannot tell
which one a later chapter means.  The check reads every chapter's code cells
with :mod:`ast` and collects the names a cell binds with ``def`` or
``class`` at chapter level (inside ``if``/``for``/``with``/``try`` too, but not
methods or functions local to another function).  No name is exempt: the
learners' exercise functions are named per chapter (``my_layer_norm``,
``my_dyt``, ...) and pass as they are.
"""

from __future__ import annotations

import ast
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
_COMPOUND = (ast.If, ast.For, ast.While, ast.With, ast.Try, ast.AsyncFor, ast.AsyncWith)


def _code(cell) -> str:
    source = cell["source"]
    source = "".join(source) if isinstance(source, list) else source
    # IPython magics and shell escapes are not Python: keep the line count.
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in source.splitlines())


def definitions(source: str) -> list[str]:
    """Names that ``def``/``class`` statements bind at the top level of ``source``."""
    names = []
    todo = list(ast.parse(source).body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, _COMPOUND):
            for field in ("body", "orelse", "finalbody"):
                todo.extend(getattr(node, field, []))
            for handler in getattr(node, "handlers", []):
                todo.extend(handler.body)
    return names


def chapter_definitions(path: pathlib.Path) -> set[str]:
    cells = json.loads(path.read_text())["cells"]
    return {name for cell in cells if cell["cell_type"] == "code"
            for name in definitions(_code(cell))}


def repeated(defined: dict[str, set[str]]) -> list[str]:
    """One message per name that more than one chapter defines, naming the chapters."""
    where: dict[str, list[str]] = {}
    for chapter, names in sorted(defined.items()):
        for name in names:
            where.setdefault(name, []).append(chapter)
    return [f"{name!r} is defined in {' and '.join(chapters)}: move it into the "
            f"package and import it in each chapter (or give each its own name)"
            for name, chapters in sorted(where.items()) if len(chapters) > 1]


def test_definitions_sees_chapter_level_defs_only():
    source = (
        "def helper(x):\n"
        "    def local(y):\n"
        "        return y\n"
        "    return local(x)\n"
        "class Model:\n"
        "    def forward(self):\n"
        "        pass\n"
        "if True:\n"
        "    def in_if():\n"
        "        pass\n"
        "try:\n"
        "    pass\n"
        "except ValueError:\n"
        "    def in_handler():\n"
        "        pass\n"
    )
    assert definitions(source) == ["helper", "Model", "in_if", "in_handler"]


def test_repeated_names_both_chapters():
    messages = repeated({"05_a.ipynb": {"smooth", "my_dyt"},
                         "11_b.ipynb": {"smooth", "e8_runs"},
                         "13_c.ipynb": {"pick"}})
    assert len(messages) == 1
    assert "'smooth'" in messages[0]
    assert "05_a.ipynb and 11_b.ipynb" in messages[0]
    assert repeated({"05_a.ipynb": {"f"}, "11_b.ipynb": {"g"}}) == []


def test_magics_do_not_break_the_parse():
    cell = {"cell_type": "code", "source": ["%matplotlib inline\n", "def f():\n", "    pass"]}
    assert definitions(_code(cell)) == ["f"]


def test_chapters_found():
    assert len(CHAPTERS) >= 14, [p.name for p in CHAPTERS]


def test_no_function_is_defined_in_two_chapters():
    messages = repeated({p.name: chapter_definitions(p) for p in CHAPTERS})
    if messages:
        pytest.fail("\n".join(messages))
