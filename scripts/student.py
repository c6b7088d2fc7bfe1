"""`make student`: the answer key, then a student copy of every chapter in _build/student/.

1. The answer key. `make notebooks` runs every chapter with UDM_ANSWER_KEY=_build/answer_key,
   so each `exercises.answer(...)` call records its exercise's answer there, and marks the
   key complete. That key is reused when it is newer than every chapter and every file of
   `lib/udm` and holds every recorded exercise; otherwise the chapters that record answers
   are executed again here, two at a time.
2. The copies. Each chapter of `_toc.yml` is written to `_build/student/<chapter>.ipynb` with
   every solution replaced by a "Your answer" cell and a stub generated from its `answer(...)`
   call: one line per answer (`gap = ...  # a number`) and `exercises.check("ex-...", gap=gap)`.
   The key is copied to `_build/student/answer_key/`, where `exercises.check` finds it.

The script stops with a message for an exercise without an `answer(...)` call, a solution that
is not closed, a variable defined in a solution and used after it, and the other departures
from the convention that `exercise_spans.scan` lists. Chapters in NOT_YET_INSTRUMENTED are
being converted to the convention: their problems are listed as warnings, their solutions are
removed all the same, and their exercises get no check yet.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import yaml
from exercise_spans import Chapter, bound_before, scan
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from udm import exercises

ROOT = Path(__file__).resolve().parents[1]
# Chapters whose exercises do not follow the answer-key convention yet (file stems). The lead
# removes each as its chapter lands; tests/test_student.py fails for a listed chapter that
# already follows the convention, so the set cannot go stale.
NOT_YET_INSTRUMENTED: set[str] = set()
COMPLETE = ".complete"  # marks a key that every chapter's run finished writing
STUB_TAG = "udm-answer-stub"  # metadata key of the stub cells: {"udm-answer-stub": label}
CELL_TIMEOUT_S = 600


def toc_chapters(root: Path) -> list[Path]:
    """The notebooks of `_toc.yml` under chapters/, in reading order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    found: list[Path] = []

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            entry = node.get("file", "")
            path = root / f"{entry.removesuffix('.ipynb')}.ipynb"
            if entry.startswith("chapters/") and path.is_file():
                found.append(path)
            for key in ("parts", "chapters", "sections"):
                walk(node.get(key))

    walk(toc)
    return found


def newest_source(chapters: list[Path], library: Path) -> float:
    """The latest modification time among the chapters and the library's files."""
    files = [*chapters, *(p for p in library.rglob("*") if p.is_file() and p.suffix == ".py")]
    return max(path.stat().st_mtime for path in files)


def key_is_fresh(key: Path, chapters: list[Path], library: Path, labels: set[str]) -> bool:
    """Whether `key` was completed after every source last changed and holds every label."""
    stamp = key / COMPLETE
    if not stamp.is_file() or stamp.stat().st_mtime <= newest_source(chapters, library):
        return False
    return labels <= {path.stem for path in key.glob("ex-*.json")}


def _execute(path: Path, key: Path) -> tuple[Path, float, str | None]:
    """Run one chapter in a fresh kernel in its folder; (path, seconds, error or None)."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    try:
        client.execute(env={**os.environ, exercises.KEY_ENV_VAR: str(key.resolve())})
    except CellExecutionError as error:
        return path, time.perf_counter() - start, str(error).strip().splitlines()[-1]
    return path, time.perf_counter() - start, None


def collect_key(chapters: list[Path], key: Path, workers: int) -> None:
    """Execute `chapters` (two at a time by default) so their answers land in `key`."""
    partial = key.with_name(key.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    failures = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for path, seconds, error in pool.map(lambda p: _execute(p, partial), chapters):
            print(
                f"  {path.name}: {'FAILED: ' + error if error else 'answers recorded'} "
                f"({seconds:.0f} s)"
            )
            if error:
                failures.append(f"{path.name}: {error}")
    if failures:
        raise SystemExit("collecting the answer key failed:\n  " + "\n  ".join(failures))
    shutil.rmtree(key, ignore_errors=True)
    partial.rename(key)
    (key / COMPLETE).touch()


def _cell(kind: str, text: str, cell_id: str, label: str | None = None) -> dict[str, Any]:
    make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
    cell = make(text)
    cell["id"] = cell_id[:64]
    if label:
        cell["metadata"][STUB_TAG] = label
    return cell


def stub_cells(label: str, record: dict[str, Any] | None, needs_import: bool) -> list[dict]:
    """The "Your answer" cell and the check stub of one exercise (no stub without a record)."""
    if record is None:
        text = (
            f"**Your answer** to exercise `{label}`: work it out in new cells here. "
            "(This exercise has no automatic check yet; its solution is in the book.)"
        )
        return [_cell("markdown", text, f"{label}-your-answer")]
    names = list(record["values"])
    text = (
        f"**Your answer** to exercise `{label}`: work it out in new cells here, then replace "
        f"each `...` below with your result and run the cell. The check says which values "
        "are right and what is off in the others."
    )
    lines = ["from udm import exercises", ""] if needs_import else []
    lines += [f"{name} = ...  # {exercises.hint(record['values'][name])}" for name in names]
    arguments = ", ".join(f"{name}={name}" for name in names)
    lines.append(f'exercises.check("{label}", {arguments});')
    return [
        _cell("markdown", text, f"{label}-your-answer"),
        _cell("code", "\n".join(lines), f"{label}-check", label=label),
    ]


def student_notebook(
    notebook: dict[str, Any], chapter: Chapter, key: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """`notebook` with each solution replaced by its stub cells (outputs cleared)."""
    student = copy.deepcopy(notebook)
    cells = notebook["cells"]
    starts = {span.start: span for span in chapter.spans}
    ends = {span.end for span in chapter.spans}
    new_cells = []
    for index, cell in enumerate(cells):
        if chapter.span_of(index) is None and index not in ends:
            new_cells.append(copy.deepcopy(cell))
            continue
        kept = chapter.partial_cells.get(index)
        if kept and (index in starts or index in ends):
            new_cells.append(_cell("markdown", kept, f"kept-{index}-{cell.get('id', '')}"))
        if index in starts:
            label = starts[index].label
            call = chapter.answer_for(label)
            needs_import = "exercises" not in bound_before(cells, index, chapter)
            new_cells += stub_cells(label, key.get(label) if call else None, needs_import)
    for cell in new_cells:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cell["metadata"].pop("jupyter", None)
    student["cells"] = new_cells
    return student


def load_key(key: Path) -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(key.glob("ex-*.json"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the book's repository")
    parser.add_argument("--out", type=Path, help="default: ROOT/_build/student")
    parser.add_argument("--key", type=Path, help="default: ROOT/_build/answer_key")
    parser.add_argument("--chapters", type=Path, nargs="*", help="default: those of _toc.yml")
    parser.add_argument("--workers", type=int, default=2, help="chapters executed at a time")
    parser.add_argument(
        "--pending",
        nargs="*",
        default=sorted(NOT_YET_INSTRUMENTED),
        help="chapter stems not converted to the convention yet",
    )
    args = parser.parse_args(argv)
    root = args.root.resolve()
    out, key = args.out or root / "_build" / "student", args.key or root / "_build" / "answer_key"
    chapters = args.chapters or toc_chapters(root)
    pending = set(args.pending)

    scanned, errors = {}, []
    for path in chapters:
        chapter = scan(json.loads(path.read_text()), path.name)
        scanned[path] = chapter
        if chapter.problems and path.stem in pending:
            print(
                f"note: {path.name} is not converted yet ({len(chapter.problems)} problems); "
                "its exercises get no check"
            )
        elif chapter.problems:
            errors += [f"{path.name}: {problem}" for problem in chapter.problems]
    if errors:
        raise SystemExit("the exercises do not follow the convention:\n  " + "\n  ".join(errors))

    recording = [path for path, chapter in scanned.items() if chapter.answers]
    labels = {call.label for path in recording for call in scanned[path].answers}
    if labels and not key_is_fresh(key, chapters, root / "lib" / "udm", labels):
        print(f"collecting the answer key from {len(recording)} chapters into {key}")
        collect_key(recording, key, args.workers)
    elif labels:
        print(f"reusing the answer key in {key} (newer than every chapter and lib/udm)")
    records = load_key(key) if labels else {}
    missing = sorted(labels - set(records))
    if missing:
        raise SystemExit(f"no recorded answer for {', '.join(missing)}: did its cell run?")

    shutil.rmtree(out, ignore_errors=True)
    (out / "answer_key").mkdir(parents=True)
    for label in sorted(labels):
        shutil.copy2(key / f"{label}.json", out / "answer_key" / f"{label}.json")
    for path, chapter in scanned.items():
        notebook = json.loads(path.read_text())
        student = student_notebook(notebook, chapter, records)
        nbformat.write(nbformat.from_dict(student), out / path.name)
    checked = sum(1 for chapter in scanned.values() for _ in chapter.answers)
    print(f"wrote {len(scanned)} student notebooks ({checked} checked exercises) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
