"""How the book shows exercises: per-chapter numbers, clean solutions.

A small Sphinx extension (loaded through ``local_extensions`` in _config.yml)
for three things sphinx-exercise does not do the way a course needs:

- **Per-chapter exercise numbers.**  sphinx-exercise numbers exercises once
  through the whole book ("Exercise 7" for chapter 4's first).  Each exercise
  in ``notebooks/NN_*.ipynb`` is renumbered ``NN.k`` (``4.1``, ``4.2``...),
  in the order the chapter shows them; titles and ``{ref}`` links follow.
- **No solution markers.**  ``# BEGIN SOLUTION`` / ``# END SOLUTION`` lines
  exist for ``tools/learner_notebooks.py``; the rendered code hides them.
- **A solution's title opens the solution.**  sphinx-exercise makes "Exercise
  4.1" in "Solution to Exercise 4.1" a link back to the exercise, so a click
  on the dropdown's title jumps away instead of opening it.  The link is
  replaced by its text.
"""

from __future__ import annotations

import re

from docutils import nodes

CHAPTER = re.compile(r"^notebooks/(\d+)_")
MARKERS = {"# BEGIN SOLUTION", "# END SOLUTION"}


def chapter_of(docname: str) -> int | None:
    """The chapter number of a notebook page (``notebooks/04_x`` -> 4)."""
    match = CHAPTER.match(docname)
    return int(match.group(1)) if match else None


def renumber_exercises(app, env):
    """Give the exercises of chapter NN the numbers (NN, 1), (NN, 2), ..."""
    for docname, fignumbers in env.toc_fignumbers.items():
        chapter = chapter_of(docname)
        exercises = fignumbers.get("exercise")
        if chapter is None or not exercises:
            continue
        in_order = sorted(exercises, key=exercises.get)
        fignumbers["exercise"] = {
            ids: (chapter, k) for k, ids in enumerate(in_order, start=1)}
    return []


def without_markers(text: str) -> str:
    return "\n".join(line for line in text.split("\n")
                     if line.strip() not in MARKERS)


def clean_doctree(app, doctree, docname):
    """Drop solution markers from code; unlink the solution titles."""
    for block in list(doctree.findall(nodes.literal_block)):
        text = block.astext()
        if any(marker in text for marker in MARKERS):
            block.children = [nodes.Text(without_markers(text))]
            block.rawsource = without_markers(block.rawsource)
    for solution in doctree.findall(
            lambda n: n.__class__.__name__ == "solution_node"):
        title = solution.children[0] if solution.children else None
        if not isinstance(title, nodes.title):
            continue
        for ref in list(title.findall(nodes.reference)):
            ref.replace_self(ref.children)


def setup(app):
    # after the toctree collector has numbered the figures (priority 500)
    app.connect("env-get-updated", renumber_exercises, priority=900)
    app.connect("doctree-resolved", clean_doctree)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
