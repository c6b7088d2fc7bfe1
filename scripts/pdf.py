"""`make pdf`: the single-page HTML build printed to one PDF by Debian's Chromium, offline.

`make pdf` first runs `jupyter-book build . --builder singlehtml` (from the same execution
cache as `make book`); this script serves that folder on 127.0.0.1, opens it in headless
Chromium (the browser suite's launcher, every request off the machine refused), waits until
MathJax has typeset every formula and every image is decoded, and prints it:

- the theme's printed contents first (the parts, chapters and appendices with their numbers,
  linked), and the PDF's outline (bookmarks) from the headings;
- the solutions unfolded (a reader of paper cannot click), interactive figures at their first
  frame, long code lines wrapped, the web page's navigation left out;
- A4 at 80 % (wide equations fit), with page numbers.

Usage: python scripts/pdf.py [BOOK_ROOT]  (reads BOOK_ROOT/_build/singlehtml, writes
BOOK_ROOT/_build/pdf/book.pdf; BOOK_ROOT defaults to this repository)
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright
from pypdf import PdfReader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser.book import serve  # noqa: E402
from tests.browser.chrome import MISSING_CHROMIUM, find_chromium, launch, open_page  # noqa: E402

TYPESET_TIMEOUT_MS = 300_000

PRINT_CSS = """
@media print {
  .bd-header, .bd-sidebar-primary, .bd-sidebar-secondary, .bd-footer, .bd-footer-article,
  .prev-next-area, .header-article, .headerlink, button.copybtn, .toggle-button,
  #pst-back-to-top, .skip-link { display: none !important; }
  .bd-main .bd-content .bd-article-container { max-width: 100% !important; }
  .bd-page-width { max-width: 100% !important; }
  pre, pre code { white-space: pre-wrap !important; word-break: break-word; }
  #jb-print-docs-body { break-after: page; }
  span[id^="document-"] + section { break-before: page; }
  figure, img, .math, mjx-container[display="true"] { break-inside: avoid; }
  #udm-contents li { list-style: none; margin: 0.15em 0; }
  #udm-contents a { text-decoration: none; color: inherit; }
}
"""

# Everything folded is opened: a reader of paper cannot click. Links to places on the single
# page (written as "intro.html#x") become "#x", so the PDF links them inside the document.
PREPARE = """(page) => {
  document.querySelectorAll(".toggle-hidden").forEach(el => el.classList.remove("toggle-hidden"));
  document.querySelectorAll("details").forEach(el => { el.open = true; });
  for (const link of document.querySelectorAll("a[href]")) {
    const url = new URL(link.getAttribute("href"), location.href);
    const name = url.pathname.split("/").pop();
    const here = name === page || url.pathname === location.pathname;
    if (url.origin === location.origin && url.hash && here) link.setAttribute("href", url.hash);
  }
}"""
PRINTED_PAGE = "pdf-source.html"
# A display formula wider than the printed column is set in a smaller font until it fits (on
# screen it scrolls; on paper it would be cut off).
FIT_MATH = """() => {
  let shrunk = 0;
  for (const math of document.querySelectorAll("mjx-container[display='true']")) {
    const room = math.parentElement.clientWidth - 60;  // leave the equation number its place
    const width = math.firstElementChild?.getBoundingClientRect().width || 0;
    if (room > 0 && width > room) {
      math.style.fontSize = Math.floor(100 * room / width) + "%";
      shrunk += 1;
    }
  }
  return shrunk;
}"""
SCALE = 0.8
# The printed column in CSS pixels: A4's 210 mm less two 16 mm margins, at SCALE, 96 px/inch.
COLUMN_PX = round((210 - 2 * 16) / SCALE / 25.4 * 96)
# The theme prints its own contents (#jb-print-docs-body: the parts of _toc.yml and their
# chapters, numbered and linked); these are the chapters it lists.
LISTED = """() => document.querySelectorAll("#jb-print-toc a[href^='#document-']").length"""

WAIT_FOR_IMAGES = """async () => {
  const images = Array.from(document.images);
  images.forEach(img => { img.loading = "eager"; });
  await Promise.all(images.map(img => img.decode().catch(() => null)));
  return images.filter(img => img.naturalWidth === 0).map(img => img.src);
}"""

FOOTER = (
    '<div style="font-size: 8px; width: 100%; text-align: center; color: #555;">'
    '<span class="pageNumber"></span> / <span class="totalPages"></span></div>'
)


def start_page(folder: Path) -> str:
    """The single page's file: index.html redirects to the root document's page."""
    index = (folder / "index.html").read_text(encoding="utf-8")
    redirect = re.search(r'url=([^"\']+)["\']', index)
    return redirect[1] if redirect else "index.html"


def printable_copy(folder: Path) -> str:
    """A copy of the single page at the top of `folder`, where its relative links point.

    Sphinx writes the single page as the root document (book/intro.html) but computes its
    links to _static/ and _images/ as if it sat at the top; the copy sits there.
    """
    page = start_page(folder)
    (folder / PRINTED_PAGE).write_bytes((folder / page).read_bytes())
    return page


def print_book(folder: Path, pdf: Path) -> int:
    """Print the single-page build in `folder` to `pdf`; returns the number of chapters listed."""
    chromium = find_chromium()
    if chromium is None:
        raise SystemExit(MISSING_CHROMIUM.replace("browser tests skipped", "make pdf needs it"))
    pdf.parent.mkdir(parents=True, exist_ok=True)
    with serve(folder) as url, sync_playwright() as playwright:
        browser = launch(playwright, chromium)
        try:
            root_page = printable_copy(folder)
            visit = open_page(browser, url + PRINTED_PAGE, url, timeout_ms=TYPESET_TIMEOUT_MS)
            page = visit.page
            missing = page.evaluate(WAIT_FOR_IMAGES)
            if missing:
                raise SystemExit(f"images that did not load: {missing[:5]}")
            if visit.log.external:
                raise SystemExit(
                    f"the page asked for resources off the machine: {visit.log.external}"
                )
            page.add_style_tag(content=PRINT_CSS)
            page.evaluate(PREPARE, Path(root_page).name)
            chapters = page.evaluate(LISTED)
            page.emulate_media(media="print")
            page.set_viewport_size({"width": COLUMN_PX, "height": 1200})
            page.evaluate(FIT_MATH)
            page.pdf(
                path=str(pdf),
                format="A4",
                # 80 %: display equations and code as wide as on a laptop screen fit the page.
                scale=SCALE,
                print_background=True,
                margin={"top": "18mm", "bottom": "18mm", "left": "16mm", "right": "16mm"},
                display_header_footer=True,
                header_template="<span></span>",
                footer_template=FOOTER,
                outline=True,
                tagged=True,
            )
            visit.close()
        finally:
            browser.close()
    return chapters


def main(argv: list[str]) -> int:
    book = Path(argv[0]).resolve() if argv else ROOT
    folder, pdf = book / "_build" / "singlehtml", book / "_build" / "pdf" / "book.pdf"
    start = time.perf_counter()
    chapters = print_book(folder, pdf)
    size, pages = pdf.stat().st_size / 1e6, len(PdfReader(pdf).pages)
    print(
        f"wrote {pdf}: {pages} pages, {size:.1f} MB, {chapters} chapters listed "
        f"({time.perf_counter() - start:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
