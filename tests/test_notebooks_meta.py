"""Notebook hygiene that nbval does not check: structure, links, learner versions."""

import json
import pathlib
import re
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p for p in (ROOT / "notebooks").glob("*.ipynb"))
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPO_URL = CONFIG["repository"]["url"]


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_there_are_chapters():
    assert CHAPTERS, "no notebooks found"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_first_code_cell_installs_normcourse_from_the_configured_repository(path):
    code = [c for c in _cells(path) if c["cell_type"] == "code"]
    first = _source(code[0])
    assert 'find_spec("normcourse") is None' in first, "the install must be a no-op where installed"
    assert f"git+{REPO_URL}" in first, f"install cell must use {REPO_URL} (from _config.yml)"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_learner_links_point_at_the_configured_repository(path):
    for cell in _cells(path):
        for url in re.findall(r"https://colab\.research\.google\.com/github/[^\s)\"]+", _source(cell)):
            slug = REPO_URL.removeprefix("https://github.com/")
            assert url.startswith(f"https://colab.research.google.com/github/{slug}/blob/main/"), url
            target = url.split("/blob/main/", 1)[1]
            assert (ROOT / target).exists(), f"{url} points at a file that does not exist"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_executed_top_to_bottom_without_stored_errors(path):
    code = [c for c in _cells(path) if c["cell_type"] == "code" and _source(c).strip()]
    counts = [c["execution_count"] for c in code]
    assert counts == list(range(1, len(code) + 1)), f"re-run {path.name} top to bottom (make execute)"
    for cell in code:
        tags = cell.get("metadata", {}).get("tags", [])
        for out in cell["outputs"]:
            assert out["output_type"] != "error" or "raises-exception" in tags, _source(cell)[:80]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_structure(path):
    text = "\n".join(_source(c) for c in _cells(path) if c["cell_type"] == "markdown")
    assert "In this chapter you will" in text
    assert "## Summary" in text and "## References" in text
    # every exercise's solution is hidden in the book (sphinx-exercise dropdown)
    for label in re.findall(r"```\{solution-start\}\s+(\S+)", text):
        block = text.split(f"{{solution-start}} {label}", 1)[1].split("```", 1)[0]
        assert ":class: dropdown" in block, f"solution {label} is not hidden"
        assert f":label: {label}" in text, f"no exercise labelled {label}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_is_in_the_table_of_contents(path):
    toc = (ROOT / "_toc.yml").read_text()
    assert f"notebooks/{path.stem}" in toc


def test_volatile_cells_assert_their_results():
    # A cell whose output is not compared must check its claims itself.
    for path in CHAPTERS:
        for cell in _cells(path):
            tags = cell.get("metadata", {}).get("tags", [])
            if "nbval-ignore-output" in tags:
                src = _source(cell)
                following = _cells(path)[_cells(path).index(cell) + 1]
                assert "assert" in src or "assert" in _source(following), \
                    f"{path.name}: an nbval-ignore-output cell must assert its result"


def test_learner_versions_are_in_sync():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "learner_notebooks.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_learner_versions_have_stubs_not_solutions():
    learner = ROOT / "notebooks" / "learner"
    for solved in CHAPTERS:
        if "# BEGIN SOLUTION" not in solved.read_text():
            continue
        text = "\n".join(_source(c) for c in _cells(learner / solved.name))
        assert "BEGIN SOLUTION" not in text
        assert 'raise NotImplementedError("your code here")' in text
        assert all(not c.get("outputs") for c in _cells(learner / solved.name))


# --- what the rendered book needs from the sources ----------------------

LEARNER_NOTEBOOKS = sorted((ROOT / "notebooks" / "learner").glob("*.ipynb"))
PAGES = sorted((ROOT / "book").glob("*.md"))
MAX_CODE_LINE = 80
FENCE = re.compile(r"^(`{3,}|~{3,}|:{3,})")


def display_math_without_blank_lines(text: str) -> list[str]:
    """Lines where a ``$$`` block touches the paragraph before or after it.

    MyST only reads ``$$ ... $$`` as display math when it is a block of its
    own; glued to a line of text it becomes part of that paragraph, and the
    reader sees raw ``$`` and backslash commands.  Code fences and
    directives are skipped.
    """
    lines, problems, in_math, fence = text.splitlines(), [], False, None
    def blank(i):
        return not (0 <= i < len(lines)) or not lines[i].strip()
    for i, line in enumerate(lines):
        stripped = line.strip()
        opening = FENCE.match(stripped)
        if fence is None and opening and not in_math:
            fence = opening.group(1)
            continue
        if fence is not None:
            if stripped.startswith(fence) and not stripped.strip(fence[0]):
                fence = None
            continue
        if not stripped.startswith("$$"):
            continue
        one_line = len(stripped) > 4 and stripped.endswith("$$")
        if not in_math and not blank(i - 1):
            problems.append(f"line {i + 1}: no blank line before {stripped!r}")
        if in_math or one_line:
            if not blank(i + 1):
                problems.append(f"line {i + 1}: no blank line after {stripped!r}")
        if not one_line:
            in_math = not in_math
    return problems


def test_display_math_rule_catches_the_chapter_5_pattern():
    glued = "**The statistic.**\n$$\nx^2\n$$\nwith $x$ real."
    assert len(display_math_without_blank_lines(glued)) == 2
    fine = "Text.\n\n$$\nx^2\n$$\n\nwith $x$.\n\n```python\ny = 1\n$$\n```"
    assert display_math_without_blank_lines(fine) == []


@pytest.mark.parametrize("path", CHAPTERS + PAGES, ids=lambda p: p.name)
def test_display_math_is_a_block_of_its_own(path):
    if path.suffix == ".md":
        texts = [path.read_text()]
    else:
        texts = [_source(c) for c in _cells(path) if c["cell_type"] == "markdown"]
    problems = [p for text in texts for p in display_math_without_blank_lines(text)]
    assert not problems, f"{path.name}: put a blank line around $$ blocks: {problems}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_links_its_learners_version(path):
    slug = REPO_URL.removeprefix("https://github.com/")
    url = (f"https://colab.research.google.com/github/{slug}/blob/main/"
           f"notebooks/learner/{path.name}")
    text = "\n".join(_source(c) for c in _cells(path) if c["cell_type"] == "markdown")
    assert f"[learner's version in Colab]({url})" in text, \
        f"{path.name}: link its learner's version: {url}"
    assert (ROOT / "notebooks" / "learner" / path.name).exists()


@pytest.mark.parametrize("path", CHAPTERS + LEARNER_NOTEBOOKS,
                         ids=lambda p: str(p.relative_to(ROOT / "notebooks")))
def test_code_lines_fit_the_column(path):
    # The book's text column shows about 80 characters of code; longer lines
    # scroll sideways.  Plotting boilerplate belongs in normcourse.plots.
    long = [f"cell {i}: {line[:60]}... ({len(line)} characters)"
            for i, cell in enumerate(_cells(path)) if cell["cell_type"] == "code"
            for line in _source(cell).splitlines() if len(line) > MAX_CODE_LINE]
    assert not long, f"{path.name}: code lines over {MAX_CODE_LINE} characters:\n" + \
        "\n".join(long)


FALLBACK = re.compile(r"(\w+) = yours_or_reference\(\s*passed,\s*(my_\w+)")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_a_fallback_to_the_reference_is_not_credited_to_the_learner(path):
    # After yours_or_reference, the function may be the reference: a printed
    # "my_x matches ...: True" must say which one ran.
    code = [_source(c) for c in _cells(path) if c["cell_type"] == "code"]
    for i, src in enumerate(code):
        for used, mine in FALLBACK.findall(src):
            for later in code[i:i + 2]:
                credits = re.search(rf"""print\(\s*f?["']{mine}\b""", later)
                assert not credits, f"{path.name}: say whether {mine} or the reference ran " \
                                    f"(e.g. `{used} is {mine}`)"


def _png_dpi(png: bytes):
    """The resolution matplotlib stored in a PNG's pHYs chunk (dots per inch)."""
    at = png.find(b"pHYs")
    if at < 0:
        return None
    per_metre = int.from_bytes(png[at + 4:at + 8], "big")
    return per_metre * 0.0254


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_figures_are_stored_at_high_resolution(path):
    # normcourse.plots sets 200 dpi on import: sharp on retina screens, and
    # figures sized in inches for the text column.
    import base64
    low = []
    for i, cell in enumerate(_cells(path)):
        for out in cell.get("outputs", []):
            png = out.get("data", {}).get("image/png")
            if png:
                dpi = _png_dpi(base64.b64decode(png))
                if dpi is None or dpi < 199:
                    low.append(f"cell {i}: {dpi} dpi")
    assert not low, f"{path.name}: figures below 200 dpi (import normcourse.plots): {low}"
