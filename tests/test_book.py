"""Checks of the book's sources: notebook hygiene, the table of contents, pinned tools."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def toc_files() -> list[str]:
    """Every `file:` entry of _toc.yml, in order, without extension."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for chapter in part.get("chapters", []):
            files.append(chapter["file"])
            files.extend(section["file"] for section in chapter.get("sections", []))
    return files


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    notebook = json.loads(path.read_text())
    dirty = [
        i
        for i, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; run `make strip`"


def code_source(path: Path) -> str:
    """The code cells of a notebook, joined."""
    return "\n".join(
        "".join(cell["source"])
        for cell in json.loads(path.read_text())["cells"]
        if cell["cell_type"] == "code"
    )


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_notebook_seeds_and_uses_udm(path: Path) -> None:
    source = code_source(path)
    assert "import udm" in source or "from udm" in source, f"{path.name} does not use udm"
    assert re.search(r"seed", source), f"{path.name} never fixes a random seed"


def test_every_chapter_is_in_the_table_of_contents() -> None:
    listed = set(toc_files())
    for path in CHAPTERS:
        assert f"chapters/{path.stem}" in listed, f"{path.name} is missing from _toc.yml"


def test_every_toc_entry_exists() -> None:
    for entry in toc_files():
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".md", ".ipynb")), entry


def test_chapters_are_numbered_in_reading_order() -> None:
    """Chapters are `NN_name`, appendices `aN_name` after them, each in order."""
    names = [Path(f).name for f in toc_files() if f.startswith("chapters/")]
    keys = []
    for name in names:
        prefix = name.split("_", 1)[0]
        assert re.fullmatch(r"\d\d|a\d", prefix), f"{name}: expected NN_ or aN_ prefix"
        keys.append((prefix.startswith("a"), int(prefix.lstrip("a"))))
    assert keys == sorted(keys), f"chapters out of order in _toc.yml: {names}"


def test_pins_the_tools_the_book_depends_on() -> None:
    pins = dict(
        line.split("==", 1)
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert pins["torch"] == "2.13.0", "torch must stay pinned to the CPU wheel on disk"
    assert pins["jupyter-book"].startswith("1."), "Jupyter Book 2.x ignores _config.yml"
    unpinned = [
        line
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#") and "==" not in line
    ]
    assert not unpinned, f"unpinned requirements: {unpinned}"


def test_config_serves_math_locally_and_fails_on_warnings() -> None:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert "sphinx-mathjax-offline" in config["sphinx"]["extra_extensions"]
    assert config["sphinx"]["config"]["nb_ipywidgets_js"] == {}, "widget JS would come from a CDN"
    makefile = (ROOT / "Makefile").read_text()
    assert "BUILD_CMD := $(BIN)/jupyter-book build . -W -n --keep-going" in makefile


def _recipe(makefile: str, target: str) -> str:
    """The prerequisites line and recipe of `target` in the Makefile."""
    found = re.search(rf"^{re.escape(target)}:(.*\n(?:\t.*\n)*)", makefile, re.M)
    assert found, f"no {target} target in the Makefile"
    return found[1]


def test_rebuilds_use_the_cache_and_make_test_starts_fresh() -> None:
    """execute_notebooks: cache; `make book` empties the cache (and Sphinx's saved environment)
    when lib/udm or the environment is newer than the last build; `make test` builds from an
    empty cache. (tests/test_build.py runs the cache and the Makefile rule for real.)"""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "cache"
    makefile = (ROOT / "Makefile").read_text()
    assert "CACHE := _build/.jupyter_cache _build/.doctrees" in makefile
    guard = _recipe(makefile, "$(LIB_STAMP)")
    assert "$(shell find lib/udm -name '*.py') $(STAMP)" in guard and "rm -rf $(CACHE)" in guard
    assert "$(LIB_STAMP)" in _recipe(makefile, "book") and "$(LIB_STAMP)" in _recipe(
        makefile, "pdf"
    )
    assert "rm -rf $(CACHE)" in _recipe(makefile, "book-fresh")
    test = _recipe(makefile, "test").split()
    assert "book-fresh" in test and "book" not in test
    assert test.index("notebooks") < test.index("test-student"), "the key comes from nbval"
    assert test.index("book-fresh") < test.index("browser") < test.index("test-pdf")


def test_appendices_are_lettered_by_the_local_extension() -> None:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    extensions = config["sphinx"]["local_extensions"]
    assert extensions == {"appendix_letters": "book/_ext", "singlehtml_nodes": "book/_ext"}
    captions = [
        part.get("caption") for part in yaml.safe_load((ROOT / "_toc.yml").read_text())["parts"]
    ]
    assert config["sphinx"]["config"]["appendix_caption"] in captions


def test_bibliography_parses_and_every_key_is_unique() -> None:
    """One unbalanced brace aborts the whole book build; catch it here in a second."""
    from pybtex.database import parse_file

    source = (ROOT / "book" / "references.bib").read_text()
    keys = re.findall(r"^@\w+\{([^,]+),", source, flags=re.M)
    assert len(keys) == len(set(keys)), "duplicate bibliography keys"
    database = parse_file(str(ROOT / "book" / "references.bib"))
    assert sorted(database.entries) == sorted(keys)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_seeds_only_through_udm_seeds(path: Path) -> None:
    """UDM_SEED must move every seed: chapters seed through udm.seeds only."""
    direct = re.findall(
        r"torch\.manual_seed\(|Generator\([^)]*\)\.manual_seed\(|np\.random\.default_rng\("
        r"|np\.random\.seed\(",
        code_source(path),
    )
    assert not direct, f"{path.name} seeds directly ({direct}): use udm.seeds"


def test_only_the_introduction_mentions_the_source_notes() -> None:
    """The book stands on its own: one passage in the introduction says where it comes from."""
    pages = [*CHAPTERS, *(ROOT / "book").glob("*.md")]
    mentions = {
        page.name: count
        for page in pages
        if (count := page.read_text().lower().count("source note"))
    }
    assert mentions == {"intro.md": 1}, mentions
