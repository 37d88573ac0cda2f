"""What a committed notebook must be (the notebooks are the source, edited and saved in JupyterLab).

:func:`source_problems` lists what breaks the house rules; an empty list means the notebook may be committed:
outputs cleared, one ``parameters``-tagged cell right after the title, every parameter with a type annotation and a
comment (``papermill --help-notebook`` shows them), an ``output_dir`` parameter and a ``setup_notebook`` call.
Metadata that JupyterLab adds or changes on save (language_info, widget state, cell metadata such as
``collapsed`` / ``scrolled`` / ``trusted``) and added cells do not matter.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import papermill as pm


def source_problems(path: Path) -> list[str]:
    """Rule violations of the notebook at ``path`` (empty when it is fine to commit)."""
    nb = nbformat.read(path, as_version=4)
    problems = []
    if nb.metadata.get("kernelspec", {}).get("name") != "mplmm":
        problems.append("kernelspec name is not 'mplmm' (the kernel `make install` registers)")
    if not nb.cells or nb.cells[0].cell_type != "markdown":
        problems.append("the first cell must be a markdown title")
    with_outputs = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    if with_outputs:
        problems.append(f"cells {with_outputs} hold outputs: clear them before committing (make strip-notebooks)")
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    if tagged != [1]:
        problems.append(f"exactly one cell tagged 'parameters', the second one; found tagged cells {tagged}")
        return problems
    declared = [ln.split(":")[0].split("=")[0].strip() for ln in nb.cells[1].source.splitlines()
                if ln.strip() and not ln.lstrip().startswith(("#", "from ", "import "))]  # typing imports allowed
    params = pm.inspect_notebook(str(path))
    if list(params) != declared:
        problems.append(f"parameters cell: papermill reads {list(params)} but the cell declares {declared} "
                        "(one 'name: type = value  # comment' per line; no '=' inside a comment)")
    for name, p in params.items():
        if p["inferred_type_name"] in (None, "None"):
            problems.append(f"parameter {name!r} has no type annotation")
        if not p["help"]:
            problems.append(f"parameter {name!r} has no comment")
    if "output_dir" not in params:
        problems.append("no 'output_dir' parameter (the batch runner sets it to the run folder)")
    if "setup_notebook(" not in "".join(c.source for c in nb.cells):
        problems.append("no setup_notebook(...) call")
    return problems
