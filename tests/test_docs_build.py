"""The documentation site builds offline with no warning, loads nothing from the network, and the README stays short."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250
#: a resource the browser would fetch from another host: <script src>, <link href>, <img src>, ... (not <a href>)
REMOTE_TAG = re.compile(r"<(?:script|link|img|iframe|source|video|audio|embed)\b[^>]*\b(?:src|href)\s*=\s*[\"']"
                        r"(?:https?:)?//", re.I)
REMOTE_CSS = re.compile(r"(?:@import\s+(?:url\()?|url\()\s*[\"']?(?:https?:)?//", re.I)


def test_readme_is_at_most_250_lines():
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES}): move details into docs/"


def test_docs_build_without_warnings_and_offline(tmp_path):
    for module in ("sphinx", "myst_nb", "furo"):
        pytest.importorskip(module, reason="the docs extra is not installed (pip install -e '.[docs]')")
    out = tmp_path / "html"
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-d", str(tmp_path / "doctrees"),
           str(ROOT / "docs"), str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"make docs failed:\n{proc.stderr[-6000:]}"
    assert not proc.stderr.strip(), f"the docs build warned:\n{proc.stderr[-6000:]}"
    pages = sorted(out.rglob("*.html"))
    names = {p.relative_to(out).as_posix() for p in pages}
    assert {"index.html", "models.html", "results.html", "notebooks/01_train.html",
            "api_reference/training.html"} <= names
    remote = [f"{p.relative_to(out)}: {m.group(0)[:120]}" for p in pages
              for m in REMOTE_TAG.finditer(p.read_text(encoding="utf-8"))]
    remote += [f"{p.relative_to(out)}: {m.group(0)[:120]}" for p in sorted(out.rglob("*.css"))
               for m in REMOTE_CSS.finditer(p.read_text(encoding="utf-8", errors="replace"))]
    assert not remote, "the site loads resources from the network:\n" + "\n".join(remote[:20])
    # the notebooks are shown from notebooks/ (code and markdown), and autodoc documented the API
    assert "load_dataset" in (out / "notebooks" / "01_train.html").read_text(encoding="utf-8")
    assert 'id="mplmm.train.train"' in (out / "api_reference" / "training.html").read_text(encoding="utf-8")
