"""Let the single-page HTML build (`make pdf`) write every node the HTML build writes.

Sphinx looks a node's visitors up under the builder's name and falls back to its format
("html") only when no extension registered anything for that name. Some extensions register
visitors for `singlehtml`, so the fallback is off, and nodes whose extension registered only
"html" (sphinx-proof's theorems, for one) stop the build with "unknown node type". Before the
build writes anything, this copies every HTML visitor that `singlehtml` lacks.
"""

from __future__ import annotations

from typing import Any

from sphinx.application import Sphinx


def share_html_visitors(app: Sphinx) -> None:
    if app.builder.name != "singlehtml":
        return
    handlers = app.registry.translation_handlers
    single = handlers.setdefault("singlehtml", {})
    for node_name, visitors in handlers.get("html", {}).items():
        single.setdefault(node_name, visitors)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", share_html_visitors)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
