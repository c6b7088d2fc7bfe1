"""Appendices are lettered A, B, C in the rendered book; chapters are numbered 1, 2, 3."""

from __future__ import annotations

import re
import string

import pytest
import yaml
from playwright.sync_api import Browser

from .book import TocPage, book_root
from .chrome import open_page

pytestmark = pytest.mark.browser

NUMBERS = """() => ({
  title: document.querySelector("article h1 .section-number")?.textContent.trim() ?? "",
  sidebar: Array.from(document.querySelectorAll("nav.bd-links a"),
                      a => [a.getAttribute("href"), a.textContent.trim()]),
  inside: Array.from(document.querySelectorAll("article .caption-number, article .eqno"),
                     el => el.textContent.replace("#", "").trim()),
  references: Array.from(document.querySelectorAll("article a.reference.internal"),
                         a => [a.href.split("#")[0], a.textContent.trim()])
})"""


def _numbered_parts() -> tuple[list[str], list[str]]:
    """(chapter files, appendix files) of the numbered parts of _toc.yml."""
    root = book_root()
    caption = yaml.safe_load((root / "_config.yml").read_text())["sphinx"]["config"][
        "appendix_caption"
    ]
    chapters, appendices = [], []
    for part in yaml.safe_load((root / "_toc.yml").read_text())["parts"]:
        if part.get("numbered"):
            files = [c["file"] for c in part["chapters"]]
            (appendices if part.get("caption") == caption else chapters).extend(files)
    return chapters, appendices


def test_appendices_are_lettered(browser: Browser, book_url: str, pages: list[TocPage]) -> None:
    chapters, appendices = _numbered_parts()
    if not appendices:
        pytest.skip("the book has no appendices")
    expected = {name: str(n) for n, name in enumerate(chapters, 1)}
    expected |= {name: string.ascii_uppercase[i] for i, name in enumerate(appendices)}
    problems, sidebar_checked = [], False
    for page in pages:
        visit = open_page(browser, book_url + page.html, origin=book_url)
        try:
            found = visit.page.evaluate(NUMBERS)
        finally:
            visit.close()
        label = expected.get(page.name)
        if label and found["title"] != f"{label}.":
            problems.append(f"{page.html}: title numbered {found['title']!r}, expected {label}.")
        if label and label.isalpha():
            wrong = [n for n in found["inside"] if not re.search(rf"\b{label}\.\d", n)]
            problems += [f"{page.html}: {n!r} inside appendix {label}" for n in wrong]
        if not sidebar_checked and found["sidebar"]:
            sidebar_checked = True
            shown = {
                href.split("#")[0].removesuffix(".html"): text for href, text in found["sidebar"]
            }
            for name, label_ in expected.items():
                key = next((k for k in shown if k.endswith(name.split("/")[-1])), None)
                if key is None or not shown[key].startswith(f"{label_}. "):
                    problems.append(f"sidebar: {name} shows {shown.get(key)!r}, expected {label_}.")
        for target, text in found["references"]:
            name = next((a for a in appendices if target.endswith(f"/{a}.html")), None)
            if (
                name
                and re.search(r"\d+\.\d+", text)
                and not re.search(rf"\b{expected[name]}\.\d", text)
            ):
                problems.append(f"{page.html}: reference {text!r} to {name} is not lettered")
    assert sidebar_checked, "no page has a sidebar"
    assert not problems, "\n".join(problems)
