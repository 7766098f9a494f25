"""The cells after every exercise run with every right answer its checker accepts.

For each :class:`near_misses.Exercise` of every ``tests/near_misses/chNN.py``,
the chapter's code cells after the exercise run with each accepted right answer
bound to the name the learner's function has in the notebook
(``Exercise.function``); a cell that raises fails the test.  A checker that
accepts something the chapter cannot use (a normalized string the next cell
compares exactly, a new list where the next cell expects the old one changed)
shows up here.

Running whole chapters once per answer would take minutes, so the notebook is
sliced, statement by statement (top-level statements of its code cells):

- *relevant* statements come after the exercise's solution and read the
  learner's function, or a name a relevant statement bound before (``passed =
  check_x(my_fn)``; ``fn = yours_or_reference(passed, my_fn, ref)``; every use
  of ``fn``);
- *needed* statements are those the relevant ones depend on: for every name a
  needed or relevant statement reads, the last statement before it that binds
  the name, and the statements in between that may change it in place (an
  assignment to an item or attribute, a call whose value is dropped, a loop or
  block that reads it and calls something);
- everything else (plots of other data, training runs nobody reads) is skipped.

The needed statements before the first relevant one run once per exercise; the
rest run for each answer, on a copy of that namespace, after the notebook's
own solution has run the same way (a control: if it fails, the slicing is at
fault, not the answer).  Figures go to matplotlib's Agg backend and are closed.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import dataclasses
import functools
import importlib
import io
import json
import linecache
import pathlib

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

import near_misses  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
_HERE = pathlib.Path(near_misses.__file__).parent
CHAPTERS = sorted(p.stem for p in _HERE.glob("ch[0-9]*.py"))
SKIP_TAGS = {"skip-execution", "nbval-skip"}
FAIL_MARK = "\u2718"  # what a checker prints when it rejects


# --------------------------------------------------------------------------
# What a statement binds, reads and may change
# --------------------------------------------------------------------------

def _target_names(target) -> set[str]:
    """Names bound by an assignment target (tuples and starred unpacked)."""
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, (ast.Tuple, ast.List)):
        return set().union(*(_target_names(t) for t in target.elts)) if target.elts else set()
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return set()


def _root(node) -> str | None:
    """``a`` for ``a``, ``a.b``, ``a[i].c``, ``a.f(x).g``."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


class _Scan(ast.NodeVisitor):
    """Binds, reads and changes of one top-level statement (not inside nested scopes)."""

    def __init__(self):
        self.binds: set[str] = set()
        self.imports: set[str] = set()
        self.reads: set[str] = set()
        self.changes: set[str] = set()
        self.calls_for_effect = False

    # bindings
    def visit_Name(self, node):
        (self.binds if isinstance(node.ctx, (ast.Store, ast.Del)) else self.reads).add(node.id)

    def visit_Import(self, node):
        for alias in node.names:
            self.imports.add(alias.asname or alias.name.split(".")[0])
        self.binds |= self.imports

    visit_ImportFrom = visit_Import

    def _scope(self, node, params=()):
        """A function, lambda or class: its free names are read, its locals are its own."""
        inner = _Scan()
        body = node.body if isinstance(node.body, list) else [node.body]
        for child in body:
            inner.visit(child)
        own = inner.binds | set(params)
        self.reads |= inner.reads - own
        self.changes |= inner.changes - own

    def _params(self, args):
        names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
        names += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
        return names

    def visit_FunctionDef(self, node):
        self.binds.add(node.name)
        for d in node.decorator_list + node.args.defaults + node.args.kw_defaults:
            if d is not None:
                self.visit(d)
        self._scope(node, self._params(node.args))

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self.binds.add(node.name)
        for d in node.decorator_list + node.bases + [k.value for k in node.keywords]:
            self.visit(d)
        self._scope(node)

    def visit_Lambda(self, node):
        for d in node.args.defaults + node.args.kw_defaults:
            if d is not None:
                self.visit(d)
        self._scope(node, self._params(node.args))

    def _comprehension(self, node):
        inner = _Scan()
        for gen in node.generators:
            inner.visit(gen)
        for part in ("elt", "key", "value"):
            if getattr(node, part, None) is not None:
                inner.visit(getattr(node, part))
        self.reads |= inner.reads - inner.binds
        self.changes |= inner.changes

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _comprehension

    # changes in place
    def visit_Assign(self, node):
        for target in node.targets:
            if isinstance(target, (ast.Attribute, ast.Subscript)) and _root(target):
                self.changes.add(_root(target))
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        root = _root(node.target)
        if root:
            self.changes.add(root)
            self.reads.add(root)
        self.generic_visit(node)

    def visit_Expr(self, node):
        if isinstance(node.value, ast.Call):
            self.calls_for_effect = True
            call = node.value
            root = _root(call.func) if isinstance(call.func, ast.Attribute) else None
            if root:
                self.changes.add(root)      # bn.train(), opt.step(), x.grad.zero_()
            for arg in call.args + [k.value for k in call.keywords]:
                if _root(arg):
                    self.changes.add(_root(arg))   # init_(model.proj), train(model, data)
        self.generic_visit(node)


@dataclasses.dataclass
class Statement:
    cell: int
    node: ast.stmt
    filename: str
    binds: set[str]
    imports: set[str]
    reads: set[str]
    changes: set[str]
    compound_with_calls: bool


def _statements(notebook: pathlib.Path) -> list[Statement]:
    """Top-level statements of the notebook's code cells, IPython magics removed."""
    cells = json.loads(notebook.read_text())["cells"]
    found = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "code" or SKIP_TAGS & set(cell.get("metadata", {}).get("tags", [])):
            continue
        lines = "".join(cell["source"]).splitlines(keepends=True)
        lines = ["\n" if line.lstrip().startswith(("%", "!")) else line for line in lines]
        source = "".join(lines)
        filename = f"<{notebook.name} cell {i}>"
        # Triton reads a kernel's source through linecache (inspect.getsource)
        linecache.cache[filename] = (len(source), None, lines, filename)
        for node in ast.parse(source, filename).body:
            scan = _Scan()
            scan.visit(node)
            compound = isinstance(node, (ast.For, ast.While, ast.With, ast.If, ast.Try))
            found.append(Statement(i, node, filename, scan.binds, scan.imports, scan.reads,
                                   scan.changes - scan.imports, compound and scan.calls_for_effect))
    return found


# --------------------------------------------------------------------------
# The slice: relevant statements and what they need
# --------------------------------------------------------------------------

@dataclasses.dataclass
class Slice:
    solution: int               # index of the statement that defines the learner's function
    relevant: list[int]         # statements after it that use the function (or what it made)
    needed: list[int]           # every statement to run, relevant ones included, in order


def _may_change(stmt: Statement, name: str) -> bool:
    return name in stmt.changes or (stmt.compound_with_calls and name in stmt.reads)


def slice_for(statements: list[Statement], function: str) -> Slice:
    """The statements that run the post-exercise uses of ``function`` (module docstring)."""
    solution = next((k for k, s in enumerate(statements) if function in s.binds), None)
    if solution is None:
        raise LookupError(f"no code cell binds {function!r}")
    tainted, modules, relevant = {function}, set(), []
    for k, s in enumerate(statements):
        modules |= s.imports
        if k > solution and s.reads & tainted:
            relevant.append(k)
            tainted |= (s.binds | s.changes) - modules
    keep = set(relevant)
    work = [(name, k) for k in relevant for name in statements[k].reads]
    while work:
        name, before = work.pop()
        binder = next((j for j in range(before - 1, -1, -1) if name in statements[j].binds), None)
        if binder is None:
            continue                                   # a builtin, or never bound
        if name in statements[binder].imports:         # a module: nothing we track changes it
            if binder not in keep:
                keep.add(binder)
            continue
        for j in range(binder, before):
            if j in keep or not (j == binder or _may_change(statements[j], name)):
                continue
            keep.add(j)
            s = statements[j]
            # a function's body reads its globals when it is called, not where it is defined
            at = before if isinstance(s.node, (ast.FunctionDef, ast.ClassDef)) else j
            work.extend((read, at) for read in s.reads)
    keep.add(solution)
    return Slice(solution, relevant, sorted(keep))


# --------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------

# Statements already run before some exercise, by (cell, statement, the objects it read):
# the next exercise of the same chapter gets the very objects they bound, instead of
# running them again (a chapter's training run is needed by both of its exercises).
_MEMO: dict = {}


def _run(statements, indices, ns, out, memo=None):
    """Execute the statements in order; return (cell, error) of the first that raises."""
    for k in indices:
        s = statements[k]
        if memo is not None:
            reads = sorted(s.reads)
            key = (s.filename, k, tuple(id(ns[r]) if r in ns else None for r in reads))
            if key in memo:
                ns.update(memo[key][0])
                continue
        code = compile(ast.Module([s.node], type_ignores=[]), s.filename, "exec")
        try:
            with contextlib.redirect_stdout(out):
                exec(code, ns)
        except Exception as err:  # the cell failed: report it, do not stop the other answers
            return s.cell, f"{type(err).__name__}: {err}"
        finally:
            import matplotlib.pyplot as plt
            plt.close("all")
        if memo is not None:  # keep what it read alive, so that no other object takes its id
            memo[key] = ({b: ns[b] for b in s.binds if b in ns}, [ns.get(r) for r in reads])
    return None


@functools.lru_cache(maxsize=None)
def _prepared(notebook: str, function: str):
    """(statements, slice, namespace after the needed statements before the first use)."""
    statements = _statements(ROOT / notebook)
    sl = slice_for(statements, function)
    first = sl.relevant[0] if sl.relevant else len(statements)
    ns = {"__name__": "__main__", "__builtins__": builtins}
    try:
        from IPython.display import display
        ns["display"] = display
    except ImportError:
        pass
    torch.manual_seed(0)
    failed = _run(statements, [k for k in sl.needed if k < first and k != sl.solution], ns,
                  io.StringIO(), memo=_MEMO)
    return statements, sl, ns, failed


def _exercises():
    for chapter in CHAPTERS:
        for exercise in importlib.import_module(f"near_misses.{chapter}").CASES:
            name = getattr(exercise.checker, "__name__", "checker")
            yield pytest.param(exercise, id=f"{chapter}-{name}")


@pytest.mark.parametrize("exercise", list(_exercises()))
def test_cells_after_the_exercise_run_with_every_right_answer(exercise):
    statements, sl, ns, failed = _prepared(exercise.notebook, exercise.function)
    assert failed is None, f"{exercise.notebook}: a cell before the exercise failed: {failed}"
    after = [k for k in sl.needed if k > sl.solution and (not sl.relevant or k >= sl.relevant[0])]
    cells = sorted({statements[k].cell for k in sl.relevant})

    # the control: the notebook's own solution, through the same slice
    control = dict(ns)
    torch.manual_seed(0)
    out = io.StringIO()
    failed = _run(statements, [sl.solution] + after, control, out)
    assert failed is None, (f"{exercise.notebook}: with the notebook's own solution, cell "
                            f"{failed[0]} raised {failed[1]} (the slice misses something)")
    assert FAIL_MARK not in out.getvalue(), (f"{exercise.notebook}: the checker rejects the "
                                             f"notebook's own solution:\n{out.getvalue()}")

    problems = []
    for attempt in exercise.right_answers:
        run_ns = dict(ns)
        run_ns[exercise.function] = attempt.fn
        torch.manual_seed(0)
        out = io.StringIO()
        failed = _run(statements, after, run_ns, out)
        if failed is not None:
            problems.append(f"{attempt.label!r}: cell {failed[0]} raised {failed[1]}")
        elif FAIL_MARK in out.getvalue():
            problems.append(f"{attempt.label!r}: the checker rejected it in the notebook:\n"
                            f"{out.getvalue()}")
    assert not problems, (f"{exercise.notebook}, cells {cells} after {exercise.function}:\n"
                          + "\n".join(problems))


# --------------------------------------------------------------------------
# The slicer itself
# --------------------------------------------------------------------------

def _toy(tmp_path, cells):
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": c} for c in cells],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "toy.ipynb"
    path.write_text(json.dumps(nb))
    return _statements(path)


def test_slice_keeps_what_the_uses_need_and_skips_the_rest(tmp_path):
    statements = _toy(tmp_path, [
        "import torch\nC = 4\nexpensive = sum(range(10 ** 7))\n",   # 0 1 2
        "def helper(n):\n    return torch.zeros(n, C)\n",           # 3
        "def my_fn(x):\n    return x + 1\n",                         # 4: the solution
        "passed = check(my_fn)\n",                                   # 5
        "x = helper(3)\nx[0] = 1.0\nunused = expensive * 2\n",      # 6 7 8
        "fn = yours_or_reference(passed, my_fn, None)\nprint(fn(x))\n",  # 9 10
        "C = 5\n",                                                   # 11: after every use
    ])
    sl = slice_for(statements, "my_fn")
    assert sl.solution == 4
    assert sl.relevant == [5, 9, 10]
    # helper reads C when called (at statement 6), x[0] = 1.0 changes x in place
    assert sl.needed == [0, 1, 3, 4, 5, 6, 7, 9, 10]


def test_slice_follows_loops_that_change_a_name(tmp_path):
    statements = _toy(tmp_path, [
        "model = make()\nfor _ in range(3):\n    opt.step(model)\n",   # 0 1
        "plot(other)\n",                                              # 2
        "def my_fn(m):\n    return m\n",                              # 3
        "my_fn(model)\n",                                             # 4
    ])
    assert slice_for(statements, "my_fn").needed == [0, 1, 3, 4]


def test_magics_are_removed_and_kernels_find_their_source(tmp_path):
    statements = _toy(tmp_path, ["%matplotlib inline\ndef f():\n    return 1\n"])
    assert [type(s.node).__name__ for s in statements] == ["FunctionDef"]
    assert linecache.getline(statements[0].filename, 2).startswith("def f")
