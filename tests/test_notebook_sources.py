"""The committed notebooks are the source: clean, parameterised, linted — and still so after a JupyterLab save."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

sys.path.insert(0, str(Path(__file__).parent))
from notebook_source import source_problems  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_all_five_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == ["01_train.ipynb", "02_robustness.ipynb", "03_prompt_attention.ipynb",
                                           "04_attributions.ipynb", "05_tuning.ipynb", "06_extract.ipynb",
                                           "07_predict.ipynb"]
    assert not list((ROOT / "notebooks").glob("_build*.py")), "notebooks are edited as .ipynb, not generated"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_follows_the_house_rules(path):
    assert source_problems(path) == []


def test_notebooks_pass_ruff():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff not installed (pip install -e '.[test]')")
    res = subprocess.run([ruff, "check", "--output-format", "concise", *map(str, NOTEBOOKS)], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def _jupyterlab_save(src: Path, dst: Path, add_cell: bool = True) -> Path:
    """What JupyterLab does to a notebook a user opens, edits and saves (without running it)."""
    nb = nbformat.read(src, as_version=4)
    nb.metadata["language_info"] = {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
                                    "mimetype": "text/x-python", "name": "python", "version": "3.11.7"}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2}}
    for cell in nb.cells:
        cell.metadata["trusted"] = True
        if cell.cell_type == "code":
            cell.metadata["scrolled"] = False
    if add_cell:
        nb.cells.insert(5, new_code_cell("# my own look at the data\nds.summary()"))
    nbformat.write(nb, dst)
    return dst


@pytest.mark.parametrize("path", NOTEBOOKS[:1] + NOTEBOOKS[2:3], ids=lambda p: p.stem)
def test_a_jupyterlab_save_with_a_new_cell_stays_green(path, tmp_path):
    saved = _jupyterlab_save(path, tmp_path / path.name)
    assert source_problems(saved) == []


def test_the_checks_can_fail(tmp_path):
    nb = nbformat.read(NOTEBOOKS[0], as_version=4)
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", text="hi")]
    nb.cells[1].source += "\nextra = 3\nuntyped: int = 1\n"
    nbformat.write(nb, tmp_path / "bad.ipynb")
    problems = source_problems(tmp_path / "bad.ipynb")
    assert any("hold outputs" in p for p in problems)
    assert any("'extra' has no type annotation" in p for p in problems)
    assert any("'untyped' has no comment" in p for p in problems)
    nb.cells[1].metadata["tags"] = []
    nbformat.write(nb, tmp_path / "untagged.ipynb")
    assert any("exactly one cell tagged 'parameters'" in p for p in source_problems(tmp_path / "untagged.ipynb"))
