"""docs/api.md runs: its Python code blocks, in order, in one namespace, in a fresh folder."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

API = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def code_blocks(path: Path) -> list[str]:
    """The ```python blocks of a markdown file, in order."""
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def test_api_page_examples_run(tmp_path, monkeypatch, capsys):
    blocks = code_blocks(API)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_api"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"{API}:block{i}", "exec"), namespace)
        except Exception as exc:  # noqa: BLE001 - name the block that broke
            pytest.fail(f"docs/api.md block {i} failed: {type(exc).__name__}: {exc}")
    assert (tmp_path / "runs" / "new_predictions.csv").is_file()
    assert (tmp_path / "runs" / "explain_new" / "explain.html").is_file()
