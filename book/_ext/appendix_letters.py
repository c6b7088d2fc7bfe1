"""Letter the appendices A, B, C while the chapters stay numbered 1, 2, 3 (a Sphinx extension).

Jupyter Book numbers every numbered part of `_toc.yml` in one sequence (sphinx-multitoc-
numbering), so the appendices would be chapters 11, 12, 13. After Sphinx has assigned section
and figure numbers (the `env-get-updated` event), this extension replaces the leading number
of every document under the toctree captioned `appendix_caption` with a letter, in order: the
section numbers (`env.toc_secnumbers`, page titles, the sidebar and the previous/next links),
and the numbers of figures, tables, equations, theorems and exercises (`env.toc_fignumbers`),
and so every cross-reference to them. Sphinx joins number parts with `'.'.join(map(str, ...))`,
so "A.2" and "(A.3)" come out as written; the single-page build assembles the same tables.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment


def letter(index: int) -> str:
    """0 -> A, 1 -> B, ..., 25 -> Z, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = string.ascii_uppercase[remainder] + letters
    return letters


def appendix_docs(env: BuildEnvironment, caption: str) -> list[str]:
    """Documents under the root document's toctree(s) captioned `caption`, with their children."""
    root = env.get_doctree(env.config.root_doc)
    found: list[str] = []

    def include(docname: str) -> None:
        if docname not in found:
            found.append(docname)
            for child in env.toctree_includes.get(docname, []):
                include(child)

    for toctree in root.findall(addnodes.toctree):
        if toctree.get("caption") == caption:
            for _title, docname in toctree["entries"]:
                include(docname)
    return found


def _relabel(number: Any, letters: dict[int, str]) -> Any:
    """`number` (a tuple or list of ints, or None) with its leading chapter number lettered."""
    if not number or not isinstance(number[0], int) or number[0] not in letters:
        return number
    relabelled = [letters[number[0]], *number[1:]]
    return type(number)(relabelled)


def _numbered_references(toc: nodes.Node) -> Iterator[nodes.Element]:
    for reference in toc.findall(nodes.reference):
        if reference.get("secnumber"):
            yield reference


def letter_appendices(app: Sphinx, env: BuildEnvironment) -> list[str]:
    """Replace the appendices' chapter numbers by letters; the appendices are rewritten."""
    docs = [doc for doc in appendix_docs(env, app.config.appendix_caption) if doc in env.tocs]
    firsts = sorted(
        {
            number[0]
            for doc in docs
            for number in env.toc_secnumbers.get(doc, {}).values()
            if number and isinstance(number[0], int)
        }
    )
    letters = {number: letter(index) for index, number in enumerate(firsts)}
    if not letters:
        return []
    for doc in docs:
        secnumbers = env.toc_secnumbers.get(doc, {})
        for anchor, number in secnumbers.items():
            secnumbers[anchor] = _relabel(number, letters)
        for reference in _numbered_references(env.tocs[doc]):
            reference["secnumber"] = _relabel(reference["secnumber"], letters)
        title = env.titles.get(doc)
        if title is not None and title.get("secnumber"):
            title["secnumber"] = _relabel(title["secnumber"], letters)
        if app.config.numfig_secnum_depth >= 1:
            for numbers in env.toc_fignumbers.get(doc, {}).values():
                for node_id, number in numbers.items():
                    numbers[node_id] = _relabel(number, letters)
    return docs


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("appendix_caption", "Appendices", "env", types=[str])
    # After Sphinx's own numbering (priority 500) and sphinx-multitoc-numbering's.
    app.connect("env-get-updated", letter_appendices, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
