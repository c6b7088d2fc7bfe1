"""The page checks fail when they should: a small hand-written site with known faults.

`good.html` holds one of everything done right (and the harmless console errors the
allow-list names); `bad.html` and `untypeset.html` hold the faults each check must report.
Both MathJax pages load the offline MathJax the book serves, configured as the book configures
it; no book build is needed.
"""

from __future__ import annotations

import importlib.util
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser

from udm import interactive

from .book import Fetcher, TocPage, serve
from .checks import (
    console_problems,
    download_problems,
    external_request_problems,
    image_problems,
    interactive_problems,
    link_problems,
    math_problems,
    solution_problems,
)
from .chrome import Visit, open_page

pytestmark = pytest.mark.browser

HEAD = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>{extra}</head>
<body><section class="tex2jax_ignore mathjax_ignore">{body}</section></body></html>
"""
MATHJAX = """<script>window.MathJax = {options: {processHtmlClass:
  "tex2jax_process|mathjax_process|math|output_area"}}</script>
<script defer src="_static/mathjax/tex-chtml.js"></script>"""
DOT_SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><circle r="2"/></svg>'

GOOD = """
<p id="here">Inline <span class="math">\\(\\frac{1}{2}\\)</span> and display math:</p>
<div class="math">\\[\\begin{aligned} a &amp;= b \\end{aligned}\\]</div>
<pre>label = r"$$\\frac{1}{2}$$"  # TeX inside code is fine</pre>
<figure><img src="dot.svg"><figcaption>A dot with a caption.</figcaption></figure>
<img src="dot.svg" alt="a dot">
<a href="#here">here</a> <a href="good.html#here">again</a> <a href="#">top</a>
<a class="reference internal" href="#here"><span class="xref std std-term">a term</span></a>
<a name="old"></a><a href="#old">old anchor</a> <a href="https://example.org/">elsewhere</a>
<a href="_sources/good.ipynb">download</a>
<details class="solution" id="sol-good"><summary>Solution</summary><p>Forty-two.</p></details>
"""
# The thebe settings script twice, as Jupyter Book writes it: an allowed console error.
THEBE_TWICE = '<script>const THEBE_JS_URL = "x";</script>' * 2

# The dead toggle's content is folded the way sphinx-togglebutton folds it.
BAD = """
<p>Raw display math $$x^2$$ left as text.</p>
<p>A raw \\frac{1}{2} too.</p>
<div class="math">\\[\\badmacro{x}\\]</div>
<div class="math">\\[x^2}\\]</div>
<img src="missing.png" alt="a missing image">
<img src="dot.svg">
<img src="http://cdn.example.invalid/logo.png" alt="an external image">
<a href="good.html#missing">missing anchor</a> <a href="nowhere.html">missing page</a>
<span class="xref std std-ref">sec-nowhere</span>
<a href="_sources/bad.ipynb">download</a>
<div class="solution admonition" id="sol-dead-toggle">
  <p class="admonition-title">Solution <button class="toggle-button">show</button></p>
  <section style="visibility: hidden; opacity: 0; height: 0"><p>Folded for good.</p></section>
</div>
<div class="solution admonition" id="sol-unfolded">
  <p class="admonition-title">Solution</p><section><p>Shown at once.</p></section>
</div>
<script>notDefined();</script>
"""
CDN_SCRIPT = '<script src="https://cdn.example.invalid/tex-chtml.js"></script>'

UNTYPESET = '<p>Math with no MathJax: <span class="math">\\(y\\)</span></p>'


def _swatch(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 20), (shade, 90, 160)).save(buffer, "PNG")
    return buffer.getvalue()


def moving_figure(**changes: str) -> str:
    """A udm.interactive figure of four frames, its HTML edited by `changes` (old -> new)."""
    page = interactive.InteractiveFigure(
        [_swatch(shade) for shade in (0, 80, 160, 240)],
        [0.0, 0.25, 0.5, 1.0],
        label="guidance scale w",
        alt="a coloured swatch",
        interval_ms=50,
    ).html
    for old, new in changes.items():
        assert old in page, old
        page = page.replace(old, new)
    return page


# One of each control done right, on the good page.
GOOD += moving_figure()

# Four broken controls: no script at all, a value label that never updates, a play button that
# does nothing, and a slider without a label.
STUCK = "".join(
    (
        moving_figure(**{interactive.SCRIPT: ""}),
        moving_figure(**{"out.textContent = data.values[i];": ""}),
        moving_figure(**{"timer = setInterval(": "timer = 0 && setInterval("}),
        moving_figure(**{">guidance scale w</label>": "></label>"}),
    )
)


def offline_mathjax() -> Path:
    """MathJax 3 as the sphinx-mathjax-offline extension ships it: the copy the book serves."""
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    assert spec and spec.submodule_search_locations, "sphinx-mathjax-offline is not installed"
    return Path(spec.submodule_search_locations[0]) / "static" / "mathjax"


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    site = tmp_path_factory.mktemp("broken_site")
    (site / "_static").mkdir()
    (site / "_static" / "mathjax").symlink_to(offline_mathjax())
    (site / "_sources").mkdir()
    (site / "_sources" / "good.ipynb").write_text(json.dumps({"cells": [], "nbformat": 4}))
    (site / "dot.svg").write_text(DOT_SVG)
    pages = {
        "good.html": HEAD.format(title="Good", extra=MATHJAX + THEBE_TWICE, body=GOOD),
        "bad.html": HEAD.format(title="Bad", extra=MATHJAX + CDN_SCRIPT, body=BAD),
        "untypeset.html": HEAD.format(title="Untypeset", extra="", body=UNTYPESET),
        "stuck.html": HEAD.format(title="Stuck", extra="", body=STUCK),
    }
    for name, text in pages.items():
        (site / name).write_text(text)
    with serve(site) as url:
        yield url


@pytest.fixture(scope="module")
def visits(browser: Browser, broken_site: str) -> Iterator[dict[str, Visit]]:
    opened = {
        name: open_page(browser, f"{broken_site}{name}.html", origin=broken_site)
        for name in ("good", "bad", "untypeset", "stuck")
    }
    yield opened
    for visit in opened.values():
        visit.close()


def _has(problems: list[str], *fragments: str) -> bool:
    return any(all(fragment in problem for fragment in fragments) for problem in problems)


def test_math_check(visits: dict[str, Visit]) -> None:
    assert math_problems(visits["good"].page) == []
    bad = math_problems(visits["bad"].page)
    assert _has(bad, "raw TeX", "$$x^2$$")
    assert _has(bad, "raw TeX", "\\frac{1}{2} too")
    assert _has(bad, "MathJax error", "\\badmacro{x}", "undefined macro")
    assert _has(bad, "MathJax error", "x^2}", "Extra close brace")
    assert len(bad) == 4, bad
    untypeset = math_problems(visits["untypeset"].page)
    assert _has(untypeset, "raw TeX", "\\(y\\)")
    assert _has(untypeset, "1 formulas", "only 0 typeset")
    assert len(untypeset) == 2, untypeset


def test_image_check(visits: dict[str, Visit]) -> None:
    assert image_problems(visits["good"].page) == []
    bad = image_problems(visits["bad"].page)
    assert _has(bad, "did not load", "missing.png")
    assert _has(bad, "no alt text and no figure caption", "dot.svg")
    assert _has(bad, "did not load", "cdn.example.invalid/logo.png")
    assert len(bad) == 3, bad


def test_console_check(visits: dict[str, Visit]) -> None:
    """The good page's errors (thebe's double script, the favicon) are the allowed ones."""
    assert visits["good"].log.errors, "the good page should raise the allowed errors"
    assert console_problems(visits["good"].log) == []
    bad = console_problems(visits["bad"].log)
    assert _has(bad, "uncaught", "notDefined")
    assert _has(bad, "404", "missing.png")


def test_external_request_check(visits: dict[str, Visit]) -> None:
    assert external_request_problems(visits["good"].log) == []
    bad = external_request_problems(visits["bad"].log)
    assert _has(bad, "https://cdn.example.invalid/tex-chtml.js")
    assert _has(bad, "http://cdn.example.invalid/logo.png")
    assert len(bad) == 2, bad


def test_link_check(visits: dict[str, Visit], broken_site: str) -> None:
    assert link_problems(visits["good"].page, broken_site, Fetcher()) == []
    bad = link_problems(visits["bad"].page, broken_site, Fetcher())
    assert _has(bad, "good.html#missing", "no element with id or name 'missing'")
    assert _has(bad, "nowhere.html", "answers 404")
    assert _has(bad, "unresolved cross-reference: 'sec-nowhere'")
    assert _has(bad, "_sources/bad.ipynb", "answers 404")
    assert len(bad) == 4, bad


def test_download_check(visits: dict[str, Visit]) -> None:
    good = TocPage(name="good", source="good.ipynb")
    assert download_problems(visits["good"].page, good, Fetcher()) == []
    bad = TocPage(name="bad", source="bad.ipynb")
    assert _has(download_problems(visits["bad"].page, bad, Fetcher()), "bad.ipynb answers 404")
    no_link = TocPage(name="chapters/other", source="chapters/other.ipynb")
    assert _has(download_problems(visits["good"].page, no_link, Fetcher()), "no download link")


def test_interactive_check(visits: dict[str, Visit]) -> None:
    assert visits["good"].page.locator(".udm-interactive").count() == 1
    assert interactive_problems(visits["good"].page) == []
    stuck = interactive_problems(visits["stuck"].page)
    # No script: nothing moves, whichever way it is moved.
    for how in ("keyboard (End)", "value set to 1 (input event)", "play: the frames did not"):
        assert _has(stuck, "figure 1 ", how), stuck
    # The value label never updates; the image does.
    assert _has(stuck, "figure 2 ", "keyboard (End): the value shown did not change")
    assert not _has(stuck, "figure 2 ", "the image did not change")
    # Play does nothing; the slider works.
    assert _has(stuck, "figure 3 ", "play: the frames did not advance")
    assert not _has(stuck, "figure 3 ", "keyboard")
    # No label.
    assert _has(stuck, "figure 4 ", "the slider has no <label>")
    assert not _has(stuck, "figure 4 ", "did not")


def test_solution_check(visits: dict[str, Visit]) -> None:
    assert solution_problems(visits["good"].page) == []
    bad = solution_problems(visits["bad"].page)
    assert _has(bad, "'sol-unfolded' is visible before its toggle is clicked")
    assert _has(bad, "toggle of solution 'sol-dead-toggle' did not show it")
    assert len(bad) == 2, bad
