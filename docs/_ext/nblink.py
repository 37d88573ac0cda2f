"""Render the repository's notebooks in the docs without copying them into ``docs/``.

A ``docs/notebooks/<name>.nblink`` file holds one JSON object, ``{"notebook": "notebooks/<name>.ipynb"}``, a path
relative to the repository root. MyST-NB reads ``.nblink`` files through :func:`read` (registered in ``conf.py`` as
a custom notebook format), which returns the notebook itself; execution is off, so the committed cells (code and
markdown, no outputs) are what the page shows. :func:`outdated` makes an incremental build re-read a page whose
notebook changed.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]


def target(text: str) -> Path:
    """The notebook a ``.nblink`` file's text points at."""
    link = json.loads(text)
    path = (ROOT / link["notebook"]).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"nblink: {link['notebook']} does not exist (paths are relative to {ROOT})")
    return path


def read(text: str) -> nbformat.NotebookNode:
    """MyST-NB reader: the linked notebook, as nbformat 4."""
    return nbformat.read(target(text), as_version=4)


def outdated(app, env, added, changed, removed):
    """Sphinx ``env-get-outdated`` hook: the pages whose linked notebook is newer than the last read."""
    stale = []
    for docname in env.found_docs:
        source = Path(env.doc2path(docname))
        if source.suffix != ".nblink" or docname not in env.all_docs:
            continue
        read_at = env.all_docs[docname] / 1e6 if env.all_docs[docname] > 1e12 else env.all_docs[docname]
        if target(source.read_text(encoding="utf-8")).stat().st_mtime > read_at:
            stale.append(docname)
    return stale
