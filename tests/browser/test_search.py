"""Site search reaches into the chapters, not just the front matter."""

from __future__ import annotations

import urllib.parse

import pytest
from playwright.sync_api import Browser

from .book import Fetcher, TocPage, chapter_only_term
from .checks import console_problems, external_request_problems
from .chrome import open_page

pytestmark = pytest.mark.browser

# Sphinx's searchtools.js ends a search by writing one of these into p.search-summary.
SEARCH_DONE = """() => {
  const summary = document.querySelector("#search-results p.search-summary");
  return summary && /Search finished|did not match/.test(summary.textContent);
}"""
RESULT_LINKS = (
    "() => Array.from(document.querySelectorAll('#search-results ul.search a'), a => a.href)"
)


def test_search_finds_a_chapter_only_term(
    browser: Browser, book_url: str, pages: list[TocPage], fetcher: Fetcher
) -> None:
    chapters = [page for page in pages if page.is_chapter]
    if not chapters:
        pytest.skip("no chapter in _toc.yml yet: site search is checked once one exists")
    others = [page for page in pages if not page.is_chapter]

    def text(page: TocPage) -> str:
        return fetcher.get(book_url + page.html).body.decode("utf-8")

    term = chapter_only_term([text(page) for page in chapters], [text(page) for page in others])
    assert term, "every prose word of the chapters also appears in the front or back matter"

    visit = open_page(browser, f"{book_url}search.html?q={urllib.parse.quote(term)}", book_url)
    try:
        visit.page.wait_for_function(SEARCH_DONE)
        hits = {url.split("?")[0].split("#")[0] for url in visit.page.evaluate(RESULT_LINKS)}
        problems = console_problems(visit.log) + external_request_problems(visit.log)
    finally:
        visit.close()
    found = sorted(page.html for page in chapters if book_url + page.html in hits)
    assert found, f"searching {term!r} (only in chapters) found no chapter; hits: {sorted(hits)}"
    assert not problems, "\n".join(problems)
