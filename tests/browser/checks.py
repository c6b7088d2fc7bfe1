"""Per-page checks. Each takes a loaded page and returns its problems: an empty list is a pass."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page

from .book import Fetcher, TocPage, is_notebook
from .chrome import PageLog

# Text that only exists on a page when TeX was left un-typeset: display and inline
# delimiters, environments, and the commonest command.
RAW_TEX = ("$$", "\\begin{", "\\end{", "\\frac", "\\(", "\\)", "\\[", "\\]")
# Places with raw TeX listed one by one; past this, a count (a page without MathJax has many).
MAX_LISTED = 10

# Math in the served HTML, before MathJax runs: Sphinx and myst-nb put every formula
# (`$...$`, `$$...$$`, amsmath environments, SymPy's LaTeX outputs) in one div.math or
# span.math, and MathJax replaces each with one mjx-container (assistive MathML sits inside
# it). Raw TeX is looked for in every text node of the body outside code blocks (a code
# cell may rightly hold `\frac` in a plot label), scripts and typeset math; text inside
# folded solutions counts too. MathJax shows a TeX error as an merror element, an undefined
# macro (its `noundefined` extension) as its name in red: both are reported with their TeX.
MATH_SCRIPT = """async (rawTex) => {
  await window.MathJax?.startup?.promise;
  const served = await (await fetch(location.href)).text();
  const source = new DOMParser().parseFromString(served, "text/html");
  const expected = source.querySelectorAll("div.math, span.math").length;
  const typeset = document.querySelectorAll("mjx-container").length;
  const errors = [];
  for (const item of window.MathJax?.startup?.document?.math || []) {
    const bad = item.typesetRoot?.querySelector(
      'mjx-merror, mjx-mtext[style*="color: red"]');
    if (bad) errors.push(`${item.math.trim()}: ${
      bad.getAttribute("data-mjx-error") || "undefined macro (shown in red)"}`);
  }
  const skip = "pre, code, script, style, textarea, mjx-container, .highlight";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const raw = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement.closest(skip)) continue;
    const text = node.textContent;
    const hits = rawTex.map(needle => text.indexOf(needle)).filter(at => at >= 0);
    if (!hits.length) continue;
    const at = Math.min(...hits);
    raw.push(text.slice(Math.max(0, at - 30), at + 40).replace(/\\s+/g, " ").trim());
  }
  return {expected, typeset, errors, raw};
}"""


def math_problems(page: Page) -> list[str]:
    """Raw TeX left in the text, fewer typeset formulas than the source has, MathJax errors."""
    found = page.evaluate(MATH_SCRIPT, list(RAW_TEX))
    raw = list(dict.fromkeys(found["raw"]))
    problems = [f"raw TeX in the text: ...{snippet}..." for snippet in raw[:MAX_LISTED]]
    if len(raw) > MAX_LISTED:
        problems.append(f"raw TeX in {len(raw) - MAX_LISTED} more places")
    if found["typeset"] < found["expected"]:
        problems.append(
            f"{found['expected']} formulas (div.math/span.math) in the served HTML, "
            f"only {found['typeset']} typeset by MathJax (mjx-container)"
        )
    problems += [f"MathJax error: {error}" for error in found["errors"]]
    return problems


IMAGE_SCRIPT = """async () => {
  const images = Array.from(document.images);
  const settle = img => Promise.race([
    img.decode().catch(() => null), new Promise(done => setTimeout(done, 5000))]);
  images.forEach(img => { img.loading = "eager"; });
  await Promise.all(images.map(settle));
  return images.map(img => {
    const caption = img.closest("figure")?.querySelector("figcaption");
    return {src: img.getAttribute("src"), width: img.naturalWidth,
            alt: (img.getAttribute("alt") || "").trim(),
            caption: caption ? caption.textContent.trim() : ""};
  });
}"""


def image_problems(page: Page) -> list[str]:
    """Images that did not load, and images with neither alt text nor a figure caption."""
    problems = []
    for image in page.evaluate(IMAGE_SCRIPT):
        if image["width"] == 0:
            problems.append(f"image did not load: {image['src']}")
        if not image["alt"] and not image["caption"]:
            problems.append(f"image has no alt text and no figure caption: {image['src']}")
    return problems


@dataclass(frozen=True)
class AllowedError:
    """A console error known to be harmless: `text` and `url` are regexes searched for."""

    text: str
    url: str
    why: str

    def matches(self, text: str, url: str) -> bool:
        return bool(re.search(self.text, text) and re.search(self.url, url))


ALLOWED_ERRORS = (
    AllowedError(
        text=r"Identifier 'THEBE_JS_URL' has already been declared",
        url=r"",
        why="sphinx-thebe (always loaded by Jupyter Book 1) writes its settings script twice; "
        "the second copy fails to redeclare a const and the first copy's values are used.",
    ),
    AllowedError(
        text=r"^Failed to load resource: .*\b404\b",
        url=r"^https?://[^/]+/favicon\.ico$",
        why="Chromium asks every site for /favicon.ico; the book declares no icon.",
    ),
)


def console_problems(log: PageLog) -> list[str]:
    """Console errors and uncaught exceptions, except the documented ALLOWED_ERRORS."""
    return [
        f"console error: {text}" + (f" ({url})" if url else "")
        for text, url in log.errors
        if not any(allowed.matches(text, url) for allowed in ALLOWED_ERRORS)
    ]


def external_request_problems(log: PageLog) -> list[str]:
    """Requests that would have left the local server (they were aborted)."""
    return [f"request leaves the machine (aborted): {url}" for url in log.external]


LINKS_SCRIPT = """() => Array.from(document.querySelectorAll("a[href]"),
                                     a => [a.getAttribute("href"), a.href])"""


# Sphinx writes a cross-reference it could not resolve as its bare text in an element of
# class `xref` (`{ref}`, `{eq}`, `{doc}`, ...) outside any link; a resolved one sits in an <a>.
UNRESOLVED_SCRIPT = """() => Array.from(document.querySelectorAll(".xref"))
  .filter(xref => !xref.closest("a")).map(xref => xref.textContent.trim())"""


def link_problems(page: Page, origin: str, fetcher: Fetcher) -> list[str]:
    """Internal links whose file does not answer 200 or whose #fragment names no element,
    and cross-references Sphinx left unresolved.

    Internal means on `origin` (the local server); `#` alone means the top of the page.
    """
    problems = [
        f"unresolved cross-reference: {text!r}"
        for text in dict.fromkeys(page.evaluate(UNRESOLVED_SCRIPT))
    ]
    for href, url in sorted(set(map(tuple, page.evaluate(LINKS_SCRIPT)))):
        if not url.startswith(origin):
            continue
        target, _, fragment = url.partition("#")
        fetched = fetcher.get(target)
        if fetched.status != 200:
            problems.append(f"link {href!r}: {target} answers {fetched.status}")
        elif fragment and urllib.parse.unquote(fragment) not in fetched.anchors:
            problems.append(f"link {href!r}: no element with id or name {fragment!r} in {target}")
    return problems


# Folded solutions: sphinx-exercise's `:class: dropdown` solutions (div.solution, made
# toggles by sphinx-togglebutton, which adds a button.toggle-button to the title) or a
# <details> element. A solution's content is its children other than the title or summary;
# it is shown when one of them is rendered, not `visibility: hidden` and not fully transparent
# (sphinx-togglebutton folds with visibility, opacity and height).
SHOWN = "child => child.checkVisibility({checkVisibilityCSS: true, checkOpacity: true})"
CONTENT = "child => !child.matches('.admonition-title, summary')"
SOLUTIONS_SCRIPT = f"""() => Array.from(document.querySelectorAll(".solution"), solution => {{
  const content = Array.from(solution.children).filter({CONTENT});
  return {{id: solution.id, visible: content.some({SHOWN})}};
}})"""
FIRST_SOLUTION_SHOWN = f"""() => Array.from(document.querySelector(".solution").children)
  .filter({CONTENT}).some({SHOWN})"""


def solution_problems(page: Page) -> list[str]:
    """Solutions shown before they are asked for; a first solution that a click does not open."""
    solutions = page.evaluate(SOLUTIONS_SCRIPT)
    if not solutions:
        return []
    problems = [
        f"solution {solution['id']!r} is visible before its toggle is clicked"
        for solution in solutions
        if solution["visible"]
    ]
    toggle = page.locator(".solution").first.locator(":scope > summary, .toggle-button").first
    if toggle.count() == 0:
        return [*problems, f"solution {solutions[0]['id']!r} has no toggle to click"]
    try:
        toggle.click(timeout=5_000)
        page.wait_for_function(FIRST_SOLUTION_SHOWN, timeout=2_000)
    except PlaywrightError as error:
        problems.append(
            f"clicking the toggle of solution {solutions[0]['id']!r} did not show it: "
            + str(error).splitlines()[0]
        )
    return problems


def download_problems(page: Page, toc_page: TocPage, fetcher: Fetcher) -> list[str]:
    """The page links its source (`_sources/<file>`), that answers 200, a notebook is a notebook."""
    suffix = f"/_sources/{toc_page.source}"
    urls = {url for _, url in page.evaluate(LINKS_SCRIPT) if url.partition("#")[0].endswith(suffix)}
    if not urls:
        return [f"no download link to {toc_page.source} (a link ending in {suffix})"]
    problems = []
    for url in sorted(urls):
        fetched = fetcher.get(url)
        if fetched.status != 200:
            problems.append(f"download {url} answers {fetched.status}")
        elif toc_page.source.endswith(".ipynb") and not is_notebook(fetched.body):
            problems.append(f"download {url} is not a Jupyter notebook")
    return problems


# Interactive figures (udm.interactive): a div.udm-interactive holding an <img>, a range input
# with a <label>, an <output> showing the value, and a play button. Each is moved three ways:
# the keyboard (End, Home on the focused slider), setting the value with an input event, and
# the play button; each move must change the image, its alt text and the value shown.
FIGURE_STATE = """root => {
  const img = root.querySelector("img"), slider = root.querySelector("input[type=range]");
  const label = slider && slider.id &&
    document.querySelector(`label[for="${CSS.escape(slider.id)}"]`);
  return {src: img ? img.src : null, alt: img ? img.alt : "", slider: !!slider,
          index: slider ? Number(slider.value) : null, max: slider ? Number(slider.max) : null,
          shown: root.querySelector("output")?.textContent ?? null,
          label: label ? label.textContent.trim() : (slider?.getAttribute("aria-label") || ""),
          play: !!root.querySelector("button")};
}"""
SET_VALUE = """(slider, value) => {
  slider.value = String(value);
  slider.dispatchEvent(new Event("input", {bubbles: true}));
}"""
PLAY_ADVANCES = """async (root, timeout) => {
  const slider = root.querySelector("input[type=range]");
  const start = performance.now();
  while (performance.now() - start < timeout) {
    if (Number(slider.value) > 0) return true;
    await new Promise(done => setTimeout(done, 25));
  }
  return false;
}"""
PLAY_TIMEOUT_MS = 5_000


def _changed(before: dict, after: dict, how: str) -> list[str]:
    problems = []
    if after["src"] == before["src"]:
        problems.append(f"{how}: the image did not change")
    if after["shown"] == before["shown"]:
        problems.append(f"{how}: the value shown did not change (still {before['shown']!r})")
    if after["alt"] == before["alt"]:
        problems.append(f"{how}: the image's alt text did not change")
    return problems


def interactive_problems(page: Page) -> list[str]:
    """Interactive figures whose controls do not move what is shown, or are not labelled."""
    problems = []
    figures = page.locator(".udm-interactive")
    for number in range(figures.count()):
        root = figures.nth(number)
        name = f"interactive figure {number + 1} ({root.get_attribute('id')})"
        start = root.evaluate(FIGURE_STATE)
        found = []
        if not (start["src"] and start["slider"] and start["play"] and start["shown"] is not None):
            problems.append(
                f"{name}: needs an image, a range slider, a play button and an <output>"
            )
            continue
        if not start["label"]:
            problems.append(f"{name}: the slider has no <label> (or aria-label)")
        if not start["alt"]:
            problems.append(f"{name}: the image has no alt text")
        slider = root.locator("input[type=range]")
        # The keyboard: End goes to the last frame, Home back to the first.
        slider.focus()
        page.keyboard.press("Home")
        home = root.evaluate(FIGURE_STATE)
        page.keyboard.press("End")
        page.wait_for_timeout(100)
        end = root.evaluate(FIGURE_STATE)
        found += _changed(home, end, "keyboard (End)")
        page.keyboard.press("Home")
        page.wait_for_timeout(100)
        back = root.evaluate(FIGURE_STATE)
        if back["src"] != home["src"] or back["shown"] != home["shown"]:
            found.append("keyboard (Home): did not return to the first frame")
        # Setting the value and sending an input event, as a script or assistive tool would.
        middle = max(1, home["max"] // 2)
        slider.evaluate(SET_VALUE, middle)
        page.wait_for_timeout(100)
        found += _changed(home, root.evaluate(FIGURE_STATE), f"value set to {middle} (input event)")
        # Play from the first frame: the frames advance by themselves.
        slider.evaluate(SET_VALUE, 0)
        button = root.locator("button")
        button.click()
        if not root.evaluate(PLAY_ADVANCES, PLAY_TIMEOUT_MS):
            found.append("play: the frames did not advance")
        else:
            found += _changed(home, root.evaluate(FIGURE_STATE), "play")
        if button.get_attribute("aria-pressed") == "true":
            button.click()  # pause
        problems += [f"{name}: {problem}" for problem in found]
    return problems
