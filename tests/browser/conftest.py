"""Fixtures: the built book served from 127.0.0.1, one Chromium per session, one context per page.

A test that asks for `book_page` runs once per page of `_toc.yml`; the page is loaded once per
test module and shared by that module's tests, in file order. `_build/html` is reused when it
holds every TOC page, else built. Environment: UDM_BOOK_ROOT (check another copy of the repo),
UDM_REQUIRE_BROWSER=1 (fail instead of skip when Chromium is missing; CI sets it).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from .book import Fetcher, TocPage, book_root, ensure_built, serve, toc_pages
from .chrome import MISSING_CHROMIUM, BookPage, find_chromium, launch, open_page


@functools.cache
def _pages() -> list[TocPage]:
    return toc_pages(book_root())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "book_page" in metafunc.fixturenames:
        pages = _pages()
        ids = [page.name for page in pages]
        metafunc.parametrize("book_page", pages, ids=ids, indirect=True, scope="module")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of Debian's Chromium; skips the suite without it (fails if UDM_REQUIRE_BROWSER=1)."""
    executable = find_chromium()
    if executable is None:
        if os.environ.get("UDM_REQUIRE_BROWSER") == "1":
            pytest.fail(f"UDM_REQUIRE_BROWSER=1: {MISSING_CHROMIUM}", pytrace=False)
        pytest.skip(MISSING_CHROMIUM)
    return executable


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = launch(playwright, chromium)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def pages() -> list[TocPage]:
    return _pages()


@pytest.fixture(scope="session")
def html_dir(pages: list[TocPage]) -> Path:
    try:
        return ensure_built(book_root(), pages)
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def book_url(html_dir: Path) -> Iterator[str]:
    """Base URL of the built book on a local server, e.g. http://127.0.0.1:40123/."""
    with serve(html_dir) as url:
        yield url


@pytest.fixture(scope="session")
def fetcher() -> Fetcher:
    return Fetcher()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    directory = book_root() / "_build" / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(scope="module")
def book_page(
    request: pytest.FixtureRequest, browser: Browser, book_url: str
) -> Iterator[BookPage]:
    """One TOC page, loaded with its math typeset, shared by the tests of a module."""
    toc: TocPage = request.param
    visit = open_page(browser, book_url + toc.html, origin=book_url)
    if visit.status != 200:
        visit.close()
        pytest.fail(f"{toc.html} answers {visit.status}: rebuild the book", pytrace=False)
    yield BookPage(toc, visit)
    visit.close()
