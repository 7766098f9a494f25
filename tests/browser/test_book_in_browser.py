"""Open the built book in headless Chromium, as a reader would.

Run by ``make test`` after the book build (``pytest -m browser tests/browser``).
Every page must load; math must be typeset by the MathJax the build installed
(the browser has no internet, so a CDN would fail); images must decode; a
chapter page must carry the Colab launch button; no page may show an error
output.  A screenshot of every page lands in ``_build/screenshots/``.
"""

import pathlib
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
