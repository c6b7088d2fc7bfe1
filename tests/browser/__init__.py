"""Browser checks of the rendered book: headless Chromium against the built HTML.

Run with `pytest tests/browser -m browser`. Every page listed in `_toc.yml` is checked;
`UDM_BOOK_ROOT` points the suite at another copy of the repository.
"""
