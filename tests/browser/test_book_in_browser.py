"""Open the built book in headless Chromium, as a reader would.

Run by ``make test`` after the book build (``pytest -m browser tests/browser``).
Every page must load; math must be typeset by the MathJax the build installed
(the browser has no internet, so a CDN would fail); images must decode; a
chapter page must carry the Colab launch button; no page may show an error
output.  What a reader sees is checked too: no raw ``$`` or ``\\command`` of
TeX outside code and math, nothing wider than the text column on a laptop
(1400 px) or a phone (400 px), exercises numbered per chapter ("4.1"), no
solution markers, and a solution's title that opens the solution.  A
screenshot of every page lands in ``_build/screenshots/`` (and, at both
widths, ``<page>-1400.png`` / ``<page>-400.png`` for the pages in WIDE_SHOTS).
"""

import pathlib
import re
import shutil

import pytest

pytestmark = pytest.mark.browser

ROOT = pathlib.Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
# index.html is only a redirect to the first page (tested on its own below)
SKIP = {"genindex.html", "search.html", "index.html"}


def _pages():
    if not HTML.exists():
        return []
    return sorted(p for p in HTML.rglob("*.html")
                  if p.name not in SKIP and "_static" not in p.parts and "_sources" not in p.parts)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.fail("the browser check needs Debian's chromium and chromium-driver "
                    "(apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic", "--window-size=1280,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_the_book_was_built():
    assert (HTML / "index.html").exists(), "build the book first (make book-strict)"
    assert len(_pages()) >= 3


def test_front_page_redirects_to_the_introduction():
    text = (HTML / "index.html").read_text()
    assert 'http-equiv="Refresh"' in text or 'http-equiv="refresh"' in text
    target = text.split("url=", 1)[1].split('"', 1)[0]
    assert (HTML / target).exists(), f"index.html redirects to a missing page: {target}"


MATH_DONE = """
const done = arguments[arguments.length - 1];
function finish() {
  done({
    math: document.querySelectorAll('.math, div.math, span.math').length,
    typeset: document.querySelectorAll('mjx-container').length,
    errors: document.querySelectorAll('mjx-merror, .MathJax_Error').length,
    mathjax: typeof window.MathJax === 'object' && !!window.MathJax.startup,
  });
}
if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
  MathJax.startup.promise.then(finish, finish);
} else { setTimeout(finish, 3000); }
"""

IMAGES = """
return Array.from(document.images).map(i => ({src: i.getAttribute('src'),
  ok: i.complete && i.naturalWidth > 0}));
"""


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(HTML)))
def test_page_in_browser(browser, page):
    browser.get(page.as_uri())
    browser.set_script_timeout(30)
    SHOTS.mkdir(parents=True, exist_ok=True)
    name = str(page.relative_to(HTML)).replace("/", "__").replace(".html", "")

    title = browser.title
    assert title and "404" not in title, f"{page.name} has no title"
    body = browser.find_element("tag name", "body").text
    assert len(body) > 200, f"{page.name} looks empty"

    math = browser.execute_async_script(MATH_DONE)
    if math["math"]:
        assert math["mathjax"], f"{page.name}: MathJax did not load (is it served locally?)"
        assert math["typeset"] >= math["math"], f"{page.name}: math not typeset: {math}"
        assert math["errors"] == 0, f"{page.name}: MathJax reports errors"

    for image in browser.execute_script(IMAGES):
        assert image["ok"], f"{page.name}: image {image['src']} did not load"

    # myst-nb marks error outputs with the class "traceback"; stored errors are a bug.
    assert not browser.find_elements("css selector", ".output.traceback, .output.error"), \
        f"{page.name} shows an error output"
    assert "Traceback (most recent call last)" not in body

    if "notebooks" in page.parts:
        links = [a.get_attribute("href") or "" for a in browser.find_elements("css selector", "a")]
        colab = [h for h in links if h.startswith("https://colab.research.google.com/github/")]
        assert any(h.endswith(f"notebooks/{page.stem}.ipynb") for h in colab), \
            f"{page.name}: no Colab launch button"
        assert browser.find_elements("css selector", "img"), f"{page.name}: a chapter without figures"
        # exercises' solutions start hidden (a dropdown the reader opens)
        for solution in browser.find_elements("css selector", "div.solution"):
            assert "dropdown" in solution.get_attribute("class"), f"{page.name}: solution not hidden"

    # full-page screenshot, for people to look at
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1280, min(max(height, 800), 12000))
    browser.save_screenshot(str(SHOTS / f"{name}.png"))
    browser.set_window_size(1280, 1600)


# --- what a reader sees -------------------------------------------------

# Text a reader sees outside code, math and scripts: raw TeX there means a
# formula MathJax never typeset (a $$ block glued to a paragraph, say).
VISIBLE_TEXT = """
const skip = 'pre, code, script, style, mjx-container, .math, .MathJax, ' +
             '.highlight, .cell_output, .output, kbd, samp';
const root = document.querySelector('main') || document.body;
const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
const out = [];
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  const el = n.parentElement;
  if (!el || el.closest(skip)) continue;
  if (n.textContent.trim()) out.push(n.textContent);
}
return out;
"""
RAW_TEX = re.compile(r"\$|\\[A-Za-z]+")


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(HTML)))
def test_no_raw_tex_outside_code_and_math(browser, page):
    browser.get(page.as_uri())
    browser.set_script_timeout(30)
    browser.execute_async_script(MATH_DONE)
    raw = [t.strip()[:80] for t in browser.execute_script(VISIBLE_TEXT) if RAW_TEX.search(t)]
    assert not raw, f"{page.name} shows raw TeX (untypeset math?): {raw[:5]}"


# Elements that stick out of the text column.  Code, cell outputs and display
# math may scroll inside their own box on a phone; on a laptop only printed
# outputs may (a table printed by a cell is what the cell printed).
OVERFLOW = """
const phone = arguments[0];
const column = document.querySelector('article.bd-article') || document.querySelector('main');
const right = column.getBoundingClientRect().right + 1;
const allowed = phone ? 'pre, .highlight, .cell_output, .output, mjx-container, .math'
                      : '.cell_output, .output';
const bad = [];
if (document.documentElement.scrollWidth > window.innerWidth + 1)
  bad.push('the page scrolls sideways: ' + document.documentElement.scrollWidth + ' px');
for (const el of column.querySelectorAll('*')) {
  if (el.closest(allowed)) continue;
  const box = el.getBoundingClientRect();
  if (box.width === 0 || box.height === 0) continue;
  const style = getComputedStyle(el);
  if (style.position === 'fixed' || style.visibility === 'hidden') continue;
  const what = el.tagName.toLowerCase() + (el.className ? '.' + String(el.className).split(' ')[0] : '') +
               ' "' + (el.textContent || '').trim().slice(0, 40) + '"';
  if (box.right > right) bad.push(what + ' ends ' + Math.round(box.right - right) + ' px past the column');
  else if (el.scrollWidth > el.clientWidth + 1 && ['auto', 'scroll'].includes(style.overflowX))
    bad.push(what + ' scrolls sideways (' + el.scrollWidth + ' px in ' + el.clientWidth + ')');
  if (bad.length > 8) break;
}
return bad;
"""
WIDE_SHOTS = {"05_rmsnorm_and_dyt", "08_where_the_norm_goes", "09_training_deep_stacks",
              "claims_audit"}


@pytest.mark.parametrize("width", [1400, 400])
@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(HTML)))
def test_content_fits_the_column(browser, page, width):
    browser.set_window_size(width, 1000)
    try:
        browser.get(page.as_uri())
        browser.set_script_timeout(30)
        browser.execute_async_script(MATH_DONE)
        bad = browser.execute_script(OVERFLOW, width < 600)
        if page.stem in WIDE_SHOTS:
            SHOTS.mkdir(parents=True, exist_ok=True)
            height = browser.execute_script("return document.body.scrollHeight")
            browser.set_window_size(width, min(max(height, 800), 16000))
            browser.save_screenshot(str(SHOTS / f"{page.stem}-{width}.png"))
    finally:
        browser.set_window_size(1280, 1600)
    assert not bad, f"{page.name} at {width} px: " + "; ".join(bad)


CHAPTERS = [p for p in _pages() if "notebooks" in p.parts]


@pytest.mark.parametrize("page", CHAPTERS, ids=lambda p: p.name)
def test_exercises_are_numbered_per_chapter_without_solution_markers(browser, page):
    browser.get(page.as_uri())
    chapter = int(page.stem.split("_", 1)[0])
    titles = [t.get_attribute("textContent").strip() for t in
              browser.find_elements("css selector", "div.exercise > .admonition-title")]
    numbers = [re.match(r"Exercise (\d+)\.(\d+)", t) for t in titles]
    assert all(numbers), f"{page.name}: exercise titles {titles}"
    assert [(int(m[1]), int(m[2])) for m in numbers] == \
        [(chapter, k) for k in range(1, len(titles) + 1)], titles
    html = browser.page_source
    assert "BEGIN SOLUTION" not in html and "END SOLUTION" not in html, \
        f"{page.name}: the rendered code shows the solution markers"


@pytest.mark.parametrize("page", CHAPTERS, ids=lambda p: p.name)
def test_clicking_a_solution_title_opens_the_solution(browser, page):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page.as_uri())
    solutions = browser.find_elements("css selector", "div.solution.dropdown")
    if not solutions:
        pytest.skip(f"{page.name} has no solutions")
    for solution in solutions:
        title = solution.find_element("css selector", ".admonition-title")
        assert not title.find_elements("css selector", "a"), \
            f"{page.name}: a link in a solution's title jumps away instead of opening it"
        body = solution.find_element("css selector", "section, div.cell, p:not(.admonition-title)")
        assert not body.is_displayed(), f"{page.name}: a solution starts open"
        url = browser.current_url
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", title)
        title.click()
        assert browser.current_url == url
        try:   # the dropdown opens with a short animation
            WebDriverWait(browser, 5).until(lambda _: body.is_displayed())
        except TimeoutException:
            pytest.fail(f"{page.name}: clicking '{title.text}' did not open it")
