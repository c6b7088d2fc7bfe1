"""The book on disk and on a local web server: its TOC pages, its build, HTTP fetches."""

from __future__ import annotations

import contextlib
import functools
import html.parser
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SOURCE_SUFFIXES = (".ipynb", ".md")


def book_root() -> Path:
    """The repository whose book is checked: `UDM_BOOK_ROOT`, else the repo holding this file."""
    override = os.environ.get("UDM_BOOK_ROOT")
    return Path(override).resolve() if override else Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class TocPage:
    """One page of `_toc.yml`: `name` is its `file:` entry without a suffix."""

    name: str
    source: str

    @property
    def html(self) -> str:
        return f"{self.name}.html"

    @property
    def is_chapter(self) -> bool:
        return self.name.startswith("chapters/")

    @property
    def screenshot_name(self) -> str:
        return self.name.replace("/", "-") + ".png"


def toc_pages(root: Path) -> list[TocPage]:
    """Every page of `_toc.yml` in reading order (root, then `file:` entries depth first)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    names = [toc["root"]]

    def walk(node: object) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            if "glob" in node:
                raise ValueError("_toc.yml: `glob:` entries are not supported by the browser suite")
            if "file" in node:
                names.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                walk(node.get(key))

    walk(toc)
    return [_toc_page(root, name) for name in names]


def _toc_page(root: Path, entry: str) -> TocPage:
    stem = entry.removesuffix(".md").removesuffix(".ipynb")
    for suffix in SOURCE_SUFFIXES:
        if (root / f"{stem}{suffix}").is_file():
            return TocPage(name=stem, source=f"{stem}{suffix}")
    raise FileNotFoundError(f"_toc.yml names {entry!r} but no {stem}.ipynb or {stem}.md exists")


def ensure_built(root: Path, pages: list[TocPage]) -> Path:
    """`_build/html`, reused when every TOC page is there, else built with `make book`'s command.

    Returns the HTML folder; raises RuntimeError with the build's last lines if it fails.
    """
    html_dir = root / "_build" / "html"
    if all((html_dir / page.html).is_file() for page in pages):
        return html_dir
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    # Without MPLBACKEND the kernels use matplotlib's inline backend; with the Makefile's
    # MPLBACKEND=Agg, every `plt.show()` figure would be left out of the pages.
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
    result = subprocess.run(
        [str(jupyter_book), "build", str(root), "-W", "-n", "--keep-going"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        raise RuntimeError(f"jupyter-book build failed (exit {result.returncode}):\n{tail}")
    return html_dir


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 (a free port) from a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _AnchorCollector(html.parser.HTMLParser):
    """Fragment targets of a page: every `id`, and `name` on `<a>` elements."""

    def __init__(self) -> None:
        super().__init__()
        self.anchors: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if value and (key == "id" or (key == "name" and tag == "a")):
                self.anchors.add(value)


@dataclass
class Fetched:
    """A URL as the local server answers it: status, body, fragment targets if HTML."""

    status: int
    body: bytes = b""
    anchors: set[str] = field(default_factory=set)


class Fetcher:
    """GETs URLs from the local server, each URL (fragment dropped) once."""

    def __init__(self) -> None:
        self._cache: dict[str, Fetched] = {}

    def get(self, url: str) -> Fetched:
        url = url.partition("#")[0]
        if url not in self._cache:
            self._cache[url] = self._fetch(url)
        return self._cache[url]

    @staticmethod
    def _fetch(url: str) -> Fetched:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = response.read()
                is_html = response.headers.get_content_type() == "text/html"
                status = response.status
        except urllib.error.HTTPError as error:
            return Fetched(status=error.code)
        fetched = Fetched(status=status, body=body)
        if is_html:
            collector = _AnchorCollector()
            collector.feed(body.decode("utf-8", errors="replace"))
            fetched.anchors = collector.anchors
        return fetched


def is_notebook(body: bytes) -> bool:
    """Whether `body` is a Jupyter notebook (JSON with a `cells` list)."""
    try:
        return isinstance(json.loads(body).get("cells"), list)
    except (ValueError, AttributeError):
        return False


class _ProseCollector(html.parser.HTMLParser):
    """Words of an article's prose: text in `<article>` outside code, math and generated labels."""

    SKIP_TAGS = {"pre", "code", "script", "style"}
    # Math, and words Sphinx extensions write only into the HTML (numbered titles such as
    # "Theorem 2", reference texts): those are not in the search index.
    SKIP_CLASSES = {"math", "admonition-title", "caption-number", "reference", "headerlink"}
    VOID_TAGS = {"area", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, bool, bool]] = []  # (tag, in article, skipped)
        self.words: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID_TAGS:
            return
        in_article, skipped = self.stack[-1][1:] if self.stack else (False, False)
        classes = (dict(attrs).get("class") or "").split()
        skipped = skipped or tag in self.SKIP_TAGS or not self.SKIP_CLASSES.isdisjoint(classes)
        self.stack.append((tag, in_article or tag == "article", skipped))

    def handle_endtag(self, tag: str) -> None:
        # Close `tag` and anything left open inside it; a stray end tag changes nothing.
        if any(open_tag == tag for open_tag, _, _ in self.stack):
            while self.stack.pop()[0] != tag:
                pass

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1][1] and not self.stack[-1][2]:
            self.words += re.findall(r"[A-Za-z]{6,}", data)


def prose_words(page_html: str) -> Counter[str]:
    """How often each word of six or more letters occurs in a page's prose (lower case)."""
    collector = _ProseCollector()
    collector.feed(page_html)
    return Counter(word.lower() for word in collector.words)


def chapter_only_term(chapters: list[str], other_pages: list[str]) -> str | None:
    """The most frequent prose word of the chapters that no other page contains at all.

    The other pages (front and back matter) are searched as whole HTML, code and markup
    included, so the word is surely absent from their part of the search index. Ties break
    alphabetically; None if there is no such word.
    """
    counts: Counter[str] = Counter()
    for page_html in chapters:
        counts += prose_words(page_html)
    elsewhere = " ".join(other_pages).lower()
    candidates = [word for word in counts if word not in elsewhere]
    return min(candidates, key=lambda word: (-counts[word], word), default=None)
