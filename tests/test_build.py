"""The build machinery on a small fixture book (tests/fixtures/book) with the real _config.yml:
appendices lettered A, B, C; the execution cache (a rebuild executes nothing, a changed chapter
only itself; `make book` empties the cache when lib/udm changed); the PDF and its checks.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

import pdf  # noqa: E402
from pdf_checks import expectations, pdf_problems  # noqa: E402

pytestmark = pytest.mark.build

FIXTURE = ROOT / "tests" / "fixtures" / "book"
JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"
EXECUTED = re.compile(r"(\S+\.ipynb): Executing notebook")


def assemble(folder: Path) -> Path:
    """The fixture book in `folder`, with the repository's configuration and extensions."""
    shutil.copytree(FIXTURE, folder)
    shutil.copy2(ROOT / "_config.yml", folder / "_config.yml")
    (folder / "book").mkdir()
    for part in ("_ext", "_static", "references.bib"):
        source = ROOT / "book" / part
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, folder / "book" / part)
    return folder


def build(book: Path, *extra: str) -> list[str]:
    """Build with `make book`'s command; the notebooks it executed (names)."""
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    result = subprocess.run(
        [str(JUPYTER_BOOK), "build", str(book), "-W", "-n", "--keep-going", *extra],
        cwd=book,
        env=env,
        capture_output=True,
        text=True,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return [Path(name).name for name in EXECUTED.findall(output)]


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = assemble(tmp_path_factory.mktemp("fixture") / "book")
    assert sorted(build(folder)) == ["02_second.ipynb", "a2_more.ipynb"]
    return folder


def _page(book: Path, name: str) -> BeautifulSoup:
    return BeautifulSoup((book / "_build" / "html" / name).read_text(), "html.parser")


def _texts(soup: BeautifulSoup, selector: str) -> list[str]:
    return [
        element.get_text(" ", strip=True).rstrip("#").strip() for element in soup.select(selector)
    ]


def test_appendices_are_lettered_and_chapters_numbered(book: Path) -> None:
    first = _page(book, "chapters/01_first.html")
    appendix = _page(book, "chapters/a1_extra.html")
    second = _page(book, "chapters/a2_more.html")
    assert _texts(first, "nav.bd-links a") == [
        "A fixture book",
        "1. The first chapter",
        "2. The second chapter",
        "A. The first appendix",
        "B. The second appendix",
    ]
    assert _texts(appendix, "article h1") == ["A. The first appendix"]
    assert _texts(appendix, "article h2") == ["A.1. Details"]
    assert _texts(second, "article h1") == ["B. The second appendix"]
    assert _texts(first, "article h1") == ["1. The first chapter"]
    assert appendix.title.get_text().startswith("A. The first appendix")
    # Numbers of figures, theorems and equations inside an appendix, and references to them.
    assert _texts(appendix, ".caption-number") == ["Fig. A.1", "Theorem A.1"]
    assert _texts(appendix, ".eqno") == ["(A.1)"]
    assert _texts(second, ".eqno") == ["(B.1)"]
    assert _texts(first, "article a.reference.internal")[:3] == ["(A.1)", "Fig. A.1", "Section A.1"]
    assert _texts(appendix, "article a.reference.internal") == ["(1.1)", "Fig. 1.1", "Theorem A.1"]
    assert _texts(first, ".caption-number") == ["Fig. 1.1", "Theorem 1.1"]
    assert "next A. The first appendix" in _texts(
        _page(book, "chapters/02_second.html"), ".prev-next-area a"
    )


def test_rebuild_executes_only_what_changed(book: Path) -> None:
    start = time.perf_counter()
    assert build(book) == [], "nothing changed: nothing runs"
    assert time.perf_counter() - start < 60
    notebook = book / "chapters" / "02_second.ipynb"
    notebook.write_text(
        notebook.read_text().replace("np.linspace(-3, 3, 100)", "np.linspace(-3, 3, 101)")
    )
    assert build(book) == ["02_second.ipynb"], "only the changed chapter runs"
    prose = book / "chapters" / "a2_more.ipynb"
    prose.write_text(prose.read_text().replace("Compare eq.", "Now compare eq."))
    assert build(book) == [], "a change to the prose alone runs nothing"


def _dry_run(sandbox: Path) -> str:
    result = subprocess.run(["make", "-n", "book"], cwd=sandbox, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_book_empties_the_cache_when_the_library_changed(tmp_path: Path) -> None:
    """`make -n book` in a sandbox holding the Makefile: the cache is emptied exactly when a
    file of lib/udm (or the installed environment) is newer than the last build."""
    shutil.copy2(ROOT / "Makefile", tmp_path / "Makefile")
    for name in (
        "requirements.txt",
        "pyproject.toml",
        "lib/udm/a.py",
        ".venv/.installed",
        "_build/.lib-stamp",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    now = time.time()

    def age(name: str, seconds_ago: float) -> None:
        os.utime(tmp_path / name, (now - seconds_ago, now - seconds_ago))

    for name, ago in (("requirements.txt", 50), ("pyproject.toml", 50), (".venv/.installed", 40)):
        age(name, ago)
    age("lib/udm/a.py", 30)
    age("_build/.lib-stamp", 20)
    assert "rm -rf _build/.jupyter_cache _build/.doctrees" not in _dry_run(tmp_path)
    age("lib/udm/a.py", 10)
    assert "rm -rf _build/.jupyter_cache _build/.doctrees" in _dry_run(tmp_path)
    age("lib/udm/a.py", 30)
    age(".venv/.installed", 10)
    assert "rm -rf _build/.jupyter_cache _build/.doctrees" in _dry_run(tmp_path)


def _chromium_or_skip() -> None:
    sys.path.insert(0, str(ROOT))
    from tests.browser.chrome import MISSING_CHROMIUM, find_chromium

    if find_chromium() is None:
        if os.environ.get("UDM_REQUIRE_BROWSER") == "1":
            pytest.fail(f"UDM_REQUIRE_BROWSER=1: {MISSING_CHROMIUM}", pytrace=False)
        pytest.skip(MISSING_CHROMIUM)


@pytest.fixture(scope="module")
def printed(book: Path) -> Path:
    _chromium_or_skip()
    assert build(book, "--builder", "singlehtml") == [], "the single page comes from the cache"
    assert pdf.main([str(book)]) == 0
    return book


def test_pdf_holds_chapters_math_figures_and_references(printed: Path) -> None:
    expected = expectations(printed / "_build" / "singlehtml")
    assert expected.chapters == [
        "1. The first chapter",
        "2. The second chapter",
        "A. The first appendix",
        "B. The second appendix",
    ]
    assert expected.equation_numbers == ["(1.1)", "(A.1)", "(B.1)"]
    assert len(expected.images) == 3  # the dot, the bell curve, the interactive figure's frame
    assert pdf_problems(printed / "_build" / "pdf" / "book.pdf", expected) == []


def _broken_print(printed: Path, tmp_path: Path, edit) -> list[str]:
    """Print a copy of the single page edited by `edit(folder)`; the problems found in it."""
    copy = tmp_path / "broken"
    shutil.copytree(
        printed / "_build" / "singlehtml", copy / "_build" / "singlehtml", symlinks=True
    )
    expected = expectations(copy / "_build" / "singlehtml")
    edit(copy / "_build" / "singlehtml")
    pdf.main([str(copy)])
    return pdf_problems(copy / "_build" / "pdf" / "book.pdf", expected)


def _rewrite(folder: Path, old: str, new: str) -> None:
    page = pdf.start_page(folder)
    text = (folder / page).read_text()
    assert old in text
    (folder / page).write_text(text.replace(old, new, 1))


def test_pdf_check_catches_untypeset_math(printed: Path, tmp_path: Path) -> None:
    problems = _broken_print(printed, tmp_path, lambda f: shutil.rmtree(f / "_static" / "mathjax"))
    assert any("raw TeX: '\\\\['" in problem for problem in problems), problems


def test_pdf_check_catches_missing_images(printed: Path, tmp_path: Path) -> None:
    problems = _broken_print(
        printed,
        tmp_path,
        lambda f: _rewrite(f, "</head>", "<style>img { display: none !important }</style></head>"),
    )
    assert any("0 images in the PDF, the book has 3" in problem for problem in problems), problems


def test_pdf_check_catches_a_missing_chapter(printed: Path, tmp_path: Path) -> None:
    def drop_appendix(folder: Path) -> None:
        page = folder / pdf.start_page(folder)
        soup = BeautifulSoup(page.read_text(), "html.parser")
        soup.select_one("span#document-chapters\\/a2_more + section").decompose()
        page.write_text(str(soup))

    problems = _broken_print(printed, tmp_path, drop_appendix)
    assert any("'B. The second appendix' appears 1 times" in problem for problem in problems), (
        problems
    )
    assert any("equation numbers missing: ['(B.1)']" in problem for problem in problems), problems
