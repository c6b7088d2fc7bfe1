"""Every page of `_toc.yml`, as a reader's browser shows it."""

from __future__ import annotations

from pathlib import Path

import pytest

from .book import Fetcher, book_root
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
from .chrome import BookPage

pytestmark = pytest.mark.browser


def _report(problems: list[str]) -> str:
    return "\n".join(problems)


def test_screenshot(book_page: BookPage, screenshot_dir: Path) -> None:
    """A full-page PNG per page in _build/screenshots (taken first: before any toggle is opened)."""
    path = screenshot_dir / book_page.toc.screenshot_name
    path.unlink(missing_ok=True)
    book_page.visit.page.screenshot(path=path, full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_math_is_typeset(book_page: BookPage) -> None:
    problems = math_problems(book_page.visit.page)
    assert not problems, _report(problems)


def test_images_load_and_are_described(book_page: BookPage) -> None:
    problems = image_problems(book_page.visit.page)
    assert not problems, _report(problems)


def test_no_console_errors(book_page: BookPage) -> None:
    problems = console_problems(book_page.visit.log)
    assert not problems, _report(problems)


def test_no_request_leaves_the_machine(book_page: BookPage) -> None:
    problems = external_request_problems(book_page.visit.log)
    assert not problems, _report(problems)


def test_internal_links_resolve(book_page: BookPage, book_url: str, fetcher: Fetcher) -> None:
    problems = link_problems(book_page.visit.page, book_url, fetcher)
    assert not problems, _report(problems)


def test_source_is_offered_for_download(book_page: BookPage, fetcher: Fetcher) -> None:
    """Chapters offer their notebook; front matter its Markdown: same download menu."""
    problems = download_problems(book_page.visit.page, book_page.toc, fetcher)
    assert not problems, _report(problems)


def test_interactive_figures_move(book_page: BookPage) -> None:
    """Every interactive figure: keyboard, a set value and play change the image and the value
    shown; a page whose source draws one (udm.interactive) shows at least one."""
    page = book_page.visit.page
    problems = interactive_problems(page)
    source = (book_root() / book_page.toc.source).read_text(encoding="utf-8")
    if "interactive.slider(" in source or "InteractiveFigure(" in source:
        if page.locator(".udm-interactive").count() == 0:
            problems.append("the source draws an interactive figure, the page shows none")
    assert not problems, _report(problems)


def test_solutions_open_on_click(book_page: BookPage) -> None:
    """Last: it opens the first solution."""
    problems = solution_problems(book_page.visit.page)
    assert not problems, _report(problems)
