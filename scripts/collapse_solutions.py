"""Collapse every solution cell of the chapters for JupyterLab, and no other cell (`make strip`).

JupyterLab 4 hides a cell's input, markdown and code cells alike, when the cell's metadata
holds `jupyter.source_hidden: true`, and shows in its place a bar with the source's first line
(for a solution's markdown, the `{solution-start}` fence); a click opens it. A solution's code
would show its first line there, which may be the whole answer, so each solution code cell
starts with an empty line (the rendered book drops it: Pygments strips leading blank lines).
Outputs stay visible: a student who runs a solution sees its results. (Code cells' outputs
would be hidden by the top-level `collapsed` key, which nbstripout removes; JupyterLab 4 does
not read `jupyter.outputs_hidden`.) The rendered book ignores this metadata: there the
solutions fold under sphinx-exercise's dropdown.

Usage: python scripts/collapse_solutions.py NOTEBOOK... (rewrites only notebooks that change).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import nbformat
from exercise_spans import scan


def hidden(cell: dict[str, Any]) -> bool:
    return cell.get("metadata", {}).get("jupyter", {}).get("source_hidden") is True


def _source(cell: dict[str, Any]) -> str:
    text = cell.get("source", "")
    return "".join(text) if isinstance(text, list) else text


def first_line_hidden(cell: dict[str, Any]) -> bool:
    """A code cell whose collapsed bar shows nothing of its code (its first line is empty)."""
    return cell["cell_type"] != "code" or _source(cell).startswith("\n")


def misplaced(notebook: dict[str, Any]) -> list[int]:
    """Cells whose collapse state is wrong: solution cells not hidden (or showing their first
    line of code when collapsed), other cells hidden."""
    chapter = scan(notebook)
    wrong = []
    for index, cell in enumerate(notebook["cells"]):
        in_solution = chapter.span_of(index) is not None
        if hidden(cell) != in_solution or (in_solution and not first_line_hidden(cell)):
            wrong.append(index)
    return wrong


def collapse(notebook: dict[str, Any]) -> bool:
    """Set `jupyter.source_hidden` on solution cells (and an empty first line on their code)
    and remove it elsewhere; True if anything changed."""
    chapter = scan(notebook)
    changed = False
    for index, cell in enumerate(notebook["cells"]):
        want = chapter.span_of(index) is not None
        if want and not first_line_hidden(cell):
            cell["source"] = "\n" + _source(cell)
            changed = True
        if hidden(cell) == want:
            continue
        metadata = cell.setdefault("metadata", {})
        jupyter = dict(metadata.get("jupyter", {}))
        if want:
            jupyter["source_hidden"] = True
        else:
            jupyter.pop("source_hidden", None)
        if jupyter:
            metadata["jupyter"] = jupyter
        else:
            metadata.pop("jupyter", None)
        changed = True
    return changed


def main(paths: list[str]) -> int:
    for name in paths:
        path = Path(name)
        notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        if collapse(notebook):
            nbformat.write(notebook, path)
            print(f"{path}: solution cells collapsed for JupyterLab")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
