"""Debian's Chromium driven by Playwright, offline: one browser, a fresh context per page."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright, Route

from .book import TocPage

MISSING_CHROMIUM = (
    "browser tests skipped: Debian's chromium is not installed "
    "(apt-get install chromium enables them)"
)
# Offline headless Chromium: no GPU, no QUIC, none of the browser's own background traffic.
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}
TIMEOUT_MS = 15_000
# Resolves when MathJax 3 has typeset the page (a page without math has no MathJax), and
# the web fonts are in, so that a screenshot shows the page as a reader sees it.
WAIT_FOR_TYPESETTING = """async () => {
  await window.MathJax?.startup?.promise;
  await document.fonts.ready;
}"""


def find_chromium() -> str | None:
    """Debian's Chromium: /usr/bin/chromium, else `chromium` on PATH, else None."""
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def launch(playwright: Playwright, executable: str) -> Browser:
    """Start Chromium headless with a fresh temporary profile (Playwright's default)."""
    return playwright.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)


@dataclass
class PageLog:
    """What a page did while it was open: console errors, uncaught errors, requests elsewhere.

    `errors` holds (text, url of the script or resource) pairs; `external` the URLs of
    requests that would have left the local server (they are aborted).
    """

    origin: str
    errors: list[tuple[str, str]] = field(default_factory=list)
    external: list[str] = field(default_factory=list)

    def is_local(self, url: str) -> bool:
        return url.startswith((self.origin, "data:", "blob:", "about:"))

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append((message.text, message.location.get("url", "")))

    def on_page_error(self, error: Exception) -> None:
        self.errors.append((f"uncaught: {error}", ""))

    def on_request_url(self, url: str) -> None:
        if not self.is_local(url) and url not in self.external:
            self.external.append(url)

    def abort_external(self, route: Route) -> None:
        self.on_request_url(route.request.url)
        route.abort()


@dataclass
class Visit:
    """A page loaded in its own browser context, with its log; `close()` ends the context."""

    url: str
    page: Page
    log: PageLog
    status: int
    context: BrowserContext

    def close(self) -> None:
        self.context.close()

    def __repr__(self) -> str:
        return f"Visit({self.url!r})"


def open_page(browser: Browser, url: str, origin: str, timeout_ms: int = TIMEOUT_MS) -> Visit:
    """Load `url` in a fresh context and wait until its math is typeset (each step at most
    `timeout_ms`).

    Every request outside `origin` (the local server) is recorded and aborted before it leaves.
    """
    context = browser.new_context(viewport=VIEWPORT, service_workers="block")
    context.set_default_timeout(timeout_ms)
    log = PageLog(origin=origin)
    context.route(lambda request_url: not log.is_local(request_url), log.abort_external)
    page = context.new_page()
    page.on("console", log.on_console)
    page.on("pageerror", log.on_page_error)
    page.on("request", lambda request: log.on_request_url(request.url))
    page.on("websocket", lambda socket: log.on_request_url(socket.url))
    response = page.goto(url, wait_until="load")
    page.evaluate(WAIT_FOR_TYPESETTING)
    status = response.status if response else 0
    return Visit(url=url, page=page, log=log, status=status, context=context)


class BookPage(NamedTuple):
    """A page of the TOC and its visit."""

    toc: TocPage
    visit: Visit

    def __repr__(self) -> str:
        return f"BookPage({self.toc.name!r})"
