"""Checks of the book's PDF against the single-page HTML it was printed from.

`expectations` reads the single page (what the PDF must hold: the chapters listed in the
theme's printed contents with their numbers, every raster image, every equation number and
every numbered cross-reference); `pdf_problems` reads the PDF with pypdf and lists what is
missing, and any raw TeX that is not in a code block.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bs4 import BeautifulSoup
from pypdf import PdfReader

# Text that only a formula left un-typeset puts on a page (code cells may hold it legitimately).
RAW_TEX = ("$$", "\\begin{", "\\end{", "\\frac", "\\(", "\\[")
RASTER = re.compile(r"\.(png|jpe?g|gif|webp)$|^data:image/(png|jpeg|gif|webp)", re.I)


def squeeze(text: str) -> str:
    """Text without whitespace or soft hyphens, ligatures spelled out (NFKC): PDF text
    extraction splits and joins words and keeps the font's "fi" glyph."""
    return re.sub(r"[\s\u00ad]+", "", unicodedata.normalize("NFKC", text))


@dataclass
class Expected:
    chapters: list[str] = field(default_factory=list)  # "1. Autoencoders", "A. ..."
    images: set[str] = field(default_factory=set)  # distinct raster image sources
    equation_numbers: list[str] = field(default_factory=list)  # "(1.1)", "(A.2)"
    references: list[str] = field(default_factory=list)  # texts of numbered references
    raw_tex_in_code: Counter[str] = field(default_factory=Counter)


def single_page(folder: Path) -> Path:
    """The single page's file (index.html redirects to the root document's page)."""
    index = (folder / "index.html").read_text(encoding="utf-8")
    redirect = re.search(r'url=([^"\']+)["\']', index)
    return folder / (redirect[1] if redirect else "index.html")


def expectations(folder: Path) -> Expected:
    """What the PDF printed from the single-page build in `folder` must contain."""
    soup = BeautifulSoup(single_page(folder).read_text(encoding="utf-8"), "html.parser")
    for link in soup.select("a.headerlink"):
        link.decompose()
    expected = Expected()
    expected.chapters = [a.get_text(" ", strip=True) for a in soup.select("#jb-print-toc a")]
    article = soup.select_one("article.bd-article")
    assert article is not None, f"{folder}: no article in the single page"
    expected.images = {
        img["src"] for img in article.select("img") if RASTER.search(img.get("src", ""))
    }
    expected.equation_numbers = [e.get_text(strip=True) for e in article.select(".eqno")]
    expected.references = [
        a.get_text(" ", strip=True)
        for a in article.select("a.reference.internal")
        if re.fullmatch(r"(\(\w+\.\d+\)|\w+\.? \w+\.\d+)", a.get_text(" ", strip=True))
    ]
    for block in article.select("pre"):
        text = block.get_text()
        for needle in RAW_TEX:
            expected.raw_tex_in_code[needle] += text.count(needle)
    return expected


def _internal_links(reader: PdfReader) -> int:
    count = 0
    for page in reader.pages:
        for annotation in page.get("/Annots") or []:
            annotation = annotation.get_object()
            action = annotation.get("/A")
            is_goto = action is not None and action.get_object().get("/S") == "/GoTo"
            if annotation.get("/Subtype") == "/Link" and ("/Dest" in annotation or is_goto):
                count += 1
    return count


def _outline_titles(outline: list) -> list[str]:
    titles = []
    for item in outline:
        if isinstance(item, list):
            titles += _outline_titles(item)
        else:
            titles.append(item.title)
    return titles


def pdf_problems(pdf: Path, expected: Expected) -> list[str]:
    """Everything `expected` names that the PDF lacks, and raw TeX outside code."""
    reader = PdfReader(pdf)
    text = "\n".join(page.extract_text() or "" for page in reader.pages)
    flat = squeeze(text)
    problems = []
    if not expected.chapters:
        problems.append("the single page lists no chapters (#jb-print-toc)")
    for title in expected.chapters:
        found = flat.count(squeeze(title))
        if found < 2:
            problems.append(f"chapter {title!r} appears {found} times (contents and heading: 2)")
    for needle in RAW_TEX:
        extra = text.count(needle) - expected.raw_tex_in_code[needle]
        if extra > 0:
            problems.append(f"raw TeX: {needle!r} {extra} more times than in the code blocks")
    images = sum(len(page.images) for page in reader.pages)
    if images < len(expected.images):
        problems.append(f"{images} images in the PDF, the book has {len(expected.images)}")
    missing = [n for n in expected.equation_numbers if squeeze(n) not in flat]
    if missing:
        problems.append(f"equation numbers missing: {missing[:10]}")
    missing = [r for r in dict.fromkeys(expected.references) if squeeze(r) not in flat]
    if missing:
        problems.append(f"cross-references missing: {missing[:10]}")
    if "??" in text:
        problems.append("an unresolved reference (??) in the text")
    links = _internal_links(reader)
    if links < len(expected.references):
        problems.append(
            f"{links} internal links in the PDF, fewer than the {len(expected.references)} "
            "numbered cross-references"
        )
    outline = _outline_titles(reader.outline)
    lost = [t for t in expected.chapters if not any(squeeze(t) == squeeze(o) for o in outline)]
    if lost:
        problems.append(f"chapters missing from the PDF outline (bookmarks): {lost[:5]}")
    return problems
