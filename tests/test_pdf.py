"""The book's PDF (`make pdf`): every chapter, typeset math, figures, numbered equations and
cross-references, a contents list and bookmarks; appendices lettered. The checks themselves
(tests/pdf_checks.py) are shown to catch faults in tests/test_build.py, on the fixture book.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
import yaml
from pdf_checks import Expected, expectations, pdf_problems
from pypdf import PdfReader

pytestmark = pytest.mark.pdf

ROOT = Path(__file__).resolve().parents[1]
PDF = ROOT / "_build" / "pdf" / "book.pdf"
SINGLE_PAGE = ROOT / "_build" / "singlehtml"


def _parts() -> list[dict]:
    return yaml.safe_load((ROOT / "_toc.yml").read_text())["parts"]


@pytest.fixture(scope="module")
def printed() -> Path:
    if not PDF.is_file():
        pytest.fail("no _build/pdf/book.pdf: run `make pdf`", pytrace=False)
    return PDF


@pytest.fixture(scope="module")
def expected() -> Expected:
    return expectations(SINGLE_PAGE)


def test_pdf_holds_every_chapter_with_math_figures_and_references(
    printed: Path, expected: Expected
) -> None:
    numbered = [c for part in _parts() if part.get("numbered") for c in part["chapters"]]
    assert len(expected.chapters) >= len(numbered), expected.chapters
    assert expected.equation_numbers, "the book has numbered equations"
    assert expected.images, "the book has figures"
    problems = pdf_problems(printed, expected)
    assert not problems, "\n".join(problems)


def test_chapters_are_numbered_and_appendices_lettered(printed: Path, expected: Expected) -> None:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    caption = config["sphinx"]["config"]["appendix_caption"]
    numbered = [part for part in _parts() if part.get("numbered")]
    chapters = sum(len(p["chapters"]) for p in numbered if p.get("caption") != caption)
    appendices = sum(len(p["chapters"]) for p in numbered if p.get("caption") == caption)
    listed = expected.chapters
    labels = [re.match(r"^(\w+)\.", title)[1] for title in listed if re.match(r"^\w+\. ", title)]
    assert labels == [str(n) for n in range(1, chapters + 1)] + list(
        string.ascii_uppercase[:appendices]
    ), listed


def test_pdf_size_is_reasonable(printed: Path) -> None:
    pages, size = len(PdfReader(printed).pages), printed.stat().st_size
    print(f"{printed}: {pages} pages, {size / 1e6:.1f} MB")
    assert 20 <= pages <= 2000 and size < 200e6
