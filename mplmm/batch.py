"""Papermill batch runner: a YAML grid of notebook stages → executed notebooks, offline HTML reports, an index.

A grid file lists **stages**, run in order; each stage runs one notebook over the product of its ``grid`` (or once).
Later stages refer to earlier runs' folders with ``{stage}`` (a single run), ``{stage[0]}`` (by position) or
``{stage[seed=1]}`` (by grid values); inside a **list** parameter, ``"{stage}/best.pt"`` expands to one entry per run
of that stage::

    name: demo                                # default: the file name
    output_root: papermill_runs/demo          # default: papermill_runs/<name>
    defaults: {dataset: synthetic, epochs: 4} # given to every stage whose notebook has that parameter
    stages:
      - name: pretrain
        notebook: notebooks/01_train.ipynb
        params: {model: mult, stage: pretrain}
      - name: tune
        notebook: notebooks/01_train.ipynb
        params: {model: mplmm, stage: prompt-tune, pretrained: "{pretrain}/best.pt", train_rate: 0.7}
        grid: {seed: [0, 1]}
      - name: robustness
        notebook: notebooks/02_robustness.ipynb
        params: {checkpoints: ["{pretrain}/best.pt", "{tune}/best.pt"]}

Every run gets ``<output_root>/<stage>[__<key>=<value>...]/`` (grid keys only) holding ``notebook.ipynb`` (executed),
``report.html`` (offline: plotly.js embedded once, no CDN scripts), ``status.json`` (ok/failed, error, duration,
params), ``log.txt`` (kernel output) and whatever the notebook writes to its ``output_dir`` (injected = the run
folder). ``<output_root>/index.html`` and ``index.csv`` list every run. A failed run is recorded and the batch goes
on; runs that depend on it fail with ``DependencyError``. Re-running skips runs whose ``status.json`` says ok with the
same parameters, unless ``force``. Relative paths (notebooks, data, ``output_root``) resolve from ``root`` (default:
the current directory), which is also the kernels' working directory. Runs execute on this machine (one GPU each when
there are GPUs) or as one Slurm job array per stage: see :mod:`mplmm.executors`.
"""
from __future__ import annotations

import contextlib
import hashlib
import html
import itertools
import json
import logging
import os
import re
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import yaml

from .errors import UserError

KERNEL_NAME = "mplmm"
KERNEL_DISPLAY_NAME = "Python (mplmm)"
KERNEL_ENV = {"PLOTLY_RENDERER": "plotly_mimetype+notebook", "TQDM_DISABLE": "1", "PYTHONHASHSEED": "0"}
GRID_KEYS = {"name", "description", "output_root", "defaults", "stages", "timeout", "slurm"}
DEFAULT_CELL_TIMEOUT = 3600.0  # seconds per cell: a hung kernel fails its run instead of blocking the batch
# After a cell's reply, how long its last outputs may take to arrive before the run fails. papermill's default, 4 s,
# is too short on a loaded 2-core machine (the setup cell's output carries plotly.js, ~4 MB).
IOPUB_TIMEOUT_S = 120
TRANSIENT_RETRIES = 1  # a run whose kernel died / did not start / lost outputs is run once more (see is_transient)
STAGE_KEYS = {"name", "description", "notebook", "params", "grid", "timeout"}
INJECTED = "output_dir"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the checkout holding mplmm/ (has notebooks/ when editable)
_REF = re.compile(r"\{([A-Za-z_][\w-]*)(?:\[([^\]{}]*)\])?\}")


class GridError(UserError):
    """A grid file is invalid (unknown key or parameter, bad reference, missing notebook, ...)."""


class DependencyError(RuntimeError):
    """A run refers to an earlier run that failed or has not run."""


# --------------------------------------------------------------------------------------------------------- grid model
@dataclass
class Stage:
    name: str
    notebook: Path
    params: dict
    grid: dict
    timeout: Optional[float]
    accepted: dict  # papermill.inspect_notebook(notebook)


@dataclass
class Run:
    stage: Stage
    index: int
    point: dict  # this run's grid values
    folder: Path
    params: dict = field(default_factory=dict)  # resolved parameters (after references), set when it runs

    @property
    def name(self) -> str:
        return self.folder.name


@dataclass
class Grid:
    path: str  # the grid file (for messages)
    name: str
    root: Path
    output_root: Path
    stages: list[Stage]
    runs: dict[str, list[Run]]  # stage name → its runs, in grid order
    slurm: dict = field(default_factory=dict)  # the grid's validated ``slurm:`` block (see mplmm.executors)

    def all_runs(self) -> list[Run]:
        return [r for s in self.stages for r in self.runs[s.name]]


def _err(where: str, msg: str) -> GridError:
    return GridError(f"{where}: {msg}")


def _safe(value: Any, limit: int = 40) -> str:
    """A folder-name-safe rendering of a grid value (long or odd values get a short hash)."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), sort_keys=True)
    safe = re.sub(r"_{2,}", "_", re.sub(r"[^A-Za-z0-9._+-]+", "-", text)).strip("-_") or "x"
    if len(safe) > limit or (safe != text and not isinstance(value, (int, float))):
        digest = hashlib.sha1(text.encode()).hexdigest()[:6]
        safe = f"{safe[:limit - 7]}-{digest}"
    return safe


def _find_notebook(nb: str, root: Path, where: str) -> Path:
    path = Path(nb).expanduser()
    candidates = [path] if path.is_absolute() else [root / path, PACKAGE_ROOT / path]
    for cand in candidates:
        if cand.is_file():
            return cand.resolve()
    raise _err(where, f"notebook {nb!r} not found (looked in {', '.join(str(c) for c in candidates)})")


def _coerce(value: Any, declared: str, where: str) -> Any:
    """Check a YAML value against the notebook's declared type (``float`` accepts ints and '1e-3' strings, ``list``
    accepts a single value)."""
    if isinstance(value, str) and _REF.search(value) and declared not in ("list", "str"):
        raise _err(where, f"a run reference fits only str or list parameters, this one is {declared}")
    if declared == "float":
        if isinstance(value, bool):
            raise _err(where, f"expected a float, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # PyYAML reads 1e-3 as a string
            except ValueError:
                pass
        raise _err(where, f"expected a float, got {value!r}")
    if declared == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise _err(where, f"expected an int, got {value!r}")
    if declared == "bool" and not isinstance(value, bool):
        raise _err(where, f"expected true/false, got {value!r}")
    if declared == "str" and not isinstance(value, str):
        raise _err(where, f"expected a string, got {value!r} (quote it in the YAML)")
    if declared == "list" and not isinstance(value, list):
        return [value]
    if declared == "dict" and not isinstance(value, dict):
        raise _err(where, f"expected a mapping, got {value!r}")
    return value


def load_grid(grid: Union[str, os.PathLike, dict], root: Union[str, os.PathLike, None] = None) -> Grid:
    """Read and validate a grid (a YAML file or an equivalent dict) before anything runs."""
    import papermill as pm

    root = Path(root or os.getcwd()).resolve()
    if isinstance(grid, dict):
        where, spec = "<grid>", grid
        default_name = "grid"
    else:
        gpath = Path(grid)
        if not gpath.is_file() and not gpath.is_absolute() and (root / gpath).is_file():
            gpath = root / gpath
        if not gpath.is_file():
            raise GridError(f"{grid}: grid file not found")
        where, default_name = str(grid), gpath.stem
        try:
            spec = yaml.safe_load(gpath.read_text())
        except yaml.YAMLError as exc:
            raise GridError(f"{grid}: not valid YAML ({exc})") from exc
    if not isinstance(spec, dict):
        raise _err(where, "expected a mapping with 'stages'")
    unknown = set(spec) - GRID_KEYS
    if unknown:
        raise _err(where, f"unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(GRID_KEYS)}")
    name = str(spec.get("name") or default_name)
    out_root = Path(spec.get("output_root") or f"papermill_runs/{_safe(name)}").expanduser()
    out_root = (out_root if out_root.is_absolute() else root / out_root).resolve()
    defaults = spec.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise _err(where, "'defaults' must be a mapping")
    stages_spec = spec.get("stages")
    if not isinstance(stages_spec, list) or not stages_spec:
        raise _err(where, "'stages' must be a non-empty list")

    stages: list[Stage] = []
    for i, st in enumerate(stages_spec):
        if not isinstance(st, dict) or "name" not in st or "notebook" not in st:
            raise _err(where, f"stage #{i + 1} needs at least 'name' and 'notebook'")
        sname = str(st["name"])
        swhere = f"{where}: stage '{sname}'"
        if not re.fullmatch(r"[A-Za-z_][\w-]*", sname):
            raise _err(swhere, "stage names may hold letters, digits, '_' and '-' (start with a letter)")
        if sname in {s.name for s in stages}:
            raise _err(swhere, "duplicate stage name")
        unknown = set(st) - STAGE_KEYS
        if unknown:
            raise _err(swhere, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(STAGE_KEYS)}")
        nb = _find_notebook(str(st["notebook"]), root, swhere)
        accepted = pm.inspect_notebook(str(nb))
        params, sgrid = dict(st.get("params") or {}), dict(st.get("grid") or {})
        for key in [*params, *sgrid]:
            if key == INJECTED:
                raise _err(swhere, f"'{INJECTED}' is set by the runner (the run folder); remove it")
            if key not in accepted:
                raise _err(swhere, f"unknown parameter '{key}' for notebook {st['notebook']}; "
                                   f"it accepts: {', '.join(k for k in accepted if k != INJECTED)}")
        both = set(params) & set(sgrid)
        if both:
            raise _err(swhere, f"parameter(s) {sorted(both)} both in 'params' and 'grid'")
        for key, values in sgrid.items():
            if not isinstance(values, list) or not values:
                raise _err(swhere, f"grid '{key}' must be a non-empty list of values")
            sgrid[key] = [_coerce(v, accepted[key]["inferred_type_name"], f"{swhere}: grid '{key}'") for v in values]
        merged = {k: v for k, v in defaults.items() if k in accepted and k != INJECTED}
        merged.update(params)
        for key in merged:
            merged[key] = _coerce(merged[key], accepted[key]["inferred_type_name"], f"{swhere}: parameter '{key}'")
        if INJECTED not in accepted:
            raise _err(swhere, f"notebook {st['notebook']} has no '{INJECTED}' parameter (needed for run folders)")
        timeout = st.get("timeout", spec.get("timeout", DEFAULT_CELL_TIMEOUT))
        try:
            timeout = float(timeout) if timeout else None
        except (TypeError, ValueError):
            raise _err(swhere, f"timeout must be seconds per cell, got {timeout!r}") from None
        stages.append(Stage(sname, nb, merged, sgrid, timeout, accepted))

    for key in defaults:
        if not any(key in s.accepted for s in stages):
            raise _err(where, f"defaults: unknown parameter '{key}' (no stage's notebook has it)")

    runs: dict[str, list[Run]] = {}
    for stage in stages:
        keys = list(stage.grid)
        points = [dict(zip(keys, combo)) for combo in itertools.product(*stage.grid.values())] or [{}]
        stage_runs, seen = [], set()
        for k, point in enumerate(points):
            fname = "__".join([stage.name] + [f"{key}={_safe(v)}" for key, v in point.items()])
            if fname in seen:
                fname = f"{fname}__{k}"
            seen.add(fname)
            stage_runs.append(Run(stage, k, point, out_root / fname))
        runs[stage.name] = stage_runs
    from .executors import check_slurm

    g = Grid(where, name, root, out_root, stages, runs, check_slurm(spec.get("slurm"), where))
    for run in g.all_runs():  # dry resolution: every reference must name an earlier stage and fit its runs
        _resolve_params(g, run, status=None)
        _check_model_config(g, run)
    return g


def _notebook_default(stage: Stage, key: str) -> Any:
    """A notebook parameter's default value (papermill reports it as source text), or None if not a literal."""
    import ast

    try:
        return ast.literal_eval(str(stage.accepted[key]["default"]))
    except (ValueError, SyntaxError):
        return None


def _check_model_config(g: Grid, run: Run) -> None:
    """A typo in a run's ``model_config`` (or an unknown ``model``) fails the grid before anything runs."""
    from .models.base import model_class, validate_model_config

    if "model_config" not in run.stage.accepted or "model" not in run.stage.accepted:
        return
    params = {**run.stage.params, **run.point}
    model = params.get("model", _notebook_default(run.stage, "model"))
    cfg = params.get("model_config", _notebook_default(run.stage, "model_config")) or {}
    if not isinstance(model, str) or "{" in model or not isinstance(cfg, dict):
        return
    where = f"{g.path}: stage '{run.stage.name}' run {run.name}"
    try:
        model_class(model)
        validate_model_config(model, cfg)
    except UserError as exc:
        raise _err(where, str(exc)) from None


# --------------------------------------------------------------------------------------------------- references
def _select(g: Grid, run: Run, stage_name: str, selector: Optional[str]) -> list[Run]:
    where = f"{g.path}: stage '{run.stage.name}'"
    order = [s.name for s in g.stages]
    if stage_name not in g.runs:
        raise _err(where, f"reference {{{stage_name}}} names no stage; stages: {order}")
    if order.index(stage_name) >= order.index(run.stage.name):
        raise _err(where, f"reference {{{stage_name}}} must name an EARLIER stage")
    targets = g.runs[stage_name]
    if selector is None:
        return targets
    selector = selector.strip()
    if selector.lstrip("-").isdigit():
        i = int(selector)
        if not -len(targets) <= i < len(targets):
            raise _err(where, f"reference {{{stage_name}[{i}]}}: stage '{stage_name}' has {len(targets)} run(s)")
        return [targets[i]]
    wanted = {}
    for part in selector.split(","):
        if "=" not in part:
            raise _err(where, f"reference {{{stage_name}[{selector}]}}: use an index or key=value[,key=value]")
        k, v = (x.strip() for x in part.split("=", 1))
        wanted[k] = v
    hits = [t for t in targets if all(k in t.point and str(t.point[k]) == v for k, v in wanted.items())]
    if len(hits) != 1:
        raise _err(where, f"reference {{{stage_name}[{selector}]}} matches {len(hits)} runs of '{stage_name}' "
                          f"(grid points: {[t.point for t in targets]})")
    return hits


def _rel(g: Grid, path: Path) -> str:
    try:
        return path.relative_to(g.root).as_posix()
    except ValueError:
        return str(path)


def _resolve_string(g: Grid, run: Run, text: str, status: Optional[dict], expand: bool) -> list[str]:
    """Substitute references in ``text``; with ``expand`` a multi-run reference yields one string per run."""
    refs = list(_REF.finditer(text))
    if not refs:
        return [text]
    choices = []
    for m in refs:
        targets = _select(g, run, m.group(1), m.group(2))
        if len(targets) > 1 and not expand:
            raise _err(f"{g.path}: stage '{run.stage.name}'",
                       f"{m.group(0)} refers to {len(targets)} runs; pick one with {{{m.group(1)}[0]}} or "
                       f"{{{m.group(1)}[key=value]}}, or use it inside a list parameter")
        if status is not None:
            ok = [t for t in targets if status.get(t.name) == "ok"]
            if not ok:
                bad = ", ".join(f"{t.name} ({status.get(t.name) or 'not run'})" for t in targets)
                raise DependencyError(f"needs {m.group(0)}: {bad}")
            targets = ok
        choices.append(targets)
    if sum(len(c) > 1 for c in choices) > 1:
        raise _err(f"{g.path}: stage '{run.stage.name}'", f"{text!r}: at most one multi-run reference per string")
    out = []
    for combo in itertools.product(*choices):
        s = text
        for m, target in sorted(zip(refs, combo), key=lambda mt: -mt[0].start()):
            s = s[:m.start()] + _rel(g, target.folder) + s[m.end():]
        out.append(s)
    return out


def _resolve_value(g: Grid, run: Run, value: Any, status: Optional[dict]) -> Any:
    if isinstance(value, str):
        return _resolve_string(g, run, value, status, expand=False)[0]
    if isinstance(value, list):
        out = []
        for v in value:
            out.extend(_resolve_string(g, run, v, status, expand=True) if isinstance(v, str)
                       else [_resolve_value(g, run, v, status)])
        return out
    if isinstance(value, dict):
        return {k: _resolve_value(g, run, v, status) for k, v in value.items()}
    return value


def _resolve_params(g: Grid, run: Run, status: Optional[dict]) -> dict:
    """The run's parameters with references replaced and ``output_dir`` injected (``status=None``: dry run)."""
    params = {**run.stage.params, **run.point}
    resolved = {k: _resolve_value(g, run, v, status) for k, v in params.items()}
    resolved[INJECTED] = _rel(g, run.folder)
    return resolved


# ------------------------------------------------------------------------------------------------------- kernel
def ensure_kernel(name: str = KERNEL_NAME) -> str:
    """Make sure a kernelspec ``name`` exists (register one for this interpreter if not); returns the name to use.

    Tries ``sys.prefix`` (like ``python -m ipykernel install --sys-prefix``), then a private folder put on
    ``JUPYTER_PATH`` (read-only environments). The kernel gets ``PLOTLY_RENDERER``/``TQDM_DISABLE``/
    ``PYTHONHASHSEED`` in its environment.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
        return name
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install

    try:
        install(kernel_name=name, display_name=KERNEL_DISPLAY_NAME, prefix=sys.prefix, env=dict(KERNEL_ENV))
    except OSError:
        import tempfile

        private = Path(tempfile.gettempdir()) / f"mplmm-jupyter-{os.getuid() if hasattr(os, 'getuid') else 0}"
        install(kernel_name=name, display_name=KERNEL_DISPLAY_NAME, prefix=str(private), env=dict(KERNEL_ENV))
        share = str(private / "share" / "jupyter")
        os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (share, os.environ.get("JUPYTER_PATH")) if p)
    KernelSpecManager().get_kernel_spec(name)
    return name


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _log_warnings_to(stream: Any) -> Iterator[None]:
    """Copy papermill's / nbclient's warnings (e.g. a lost cell output) into the run's ``log.txt``."""
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("[%(name)s] %(levelname)s %(message)s"))
    logger = logging.getLogger("papermill")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


# ------------------------------------------------------------------------------------------------------ execution
_OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
"""


def export_html(notebook: Union[str, os.PathLike], html_path: Union[str, os.PathLike], no_input: bool = False,
                failure: Optional[str] = None) -> Path:
    """Export an executed notebook to a self-contained HTML file that loads nothing from the network.

    Uses the JupyterLab template without its CDN scripts (require.js, MathJax, mermaid, widget manager); plotly
    figures rendered by the ``notebook`` renderer carry plotly.js once. ``no_input`` hides code cells and prompts.
    ``failure`` (the run's error) is shown in a banner above the first cell: a failed run's report says so.
    """
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", template_file="mplmm_offline.html.j2",
                            extra_loaders=[jinja2.DictLoader({"mplmm_offline.html.j2": _OFFLINE_TEMPLATE})],
                            exclude_input=no_input, exclude_input_prompt=no_input, exclude_output_prompt=no_input)
    nb = nbformat.read(str(notebook), as_version=4)
    nb.metadata.pop("widgets", None)
    if failure:
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(
            f"<div style=\"border:2px solid #c62828;background:#fdecea;padding:8px 12px\"><b>This run FAILED</b>: "
            f"{html.escape(failure)}<br>Outputs below stop where it failed; see <code>status.json</code> and "
            f"<code>log.txt</code> beside this report.</div>"))
    body, _ = exporter.from_notebook_node(nb)
    out = Path(html_path)
    out.write_text(body, encoding="utf-8")
    return out


def is_transient(exc: BaseException) -> bool:
    """True for failures of the machinery rather than of the notebook: the kernel died or did not start, or a cell's
    outputs never arrived. ``execute_run`` runs the notebook again after one (a training run resumes from last.pt)."""
    name, text = type(exc).__name__, str(exc)
    if name == "DeadKernelError":
        return True
    if name == "CellTimeoutError":
        return "IOPub" in text  # the per-cell execution timeout (a hung cell) is not retried
    return name == "RuntimeError" and ("Kernel didn't respond" in text or "Kernel died before replying" in text)


def _error_text(err: dict, with_cell: bool = False) -> str:
    """``name: message`` of a status' ``error`` (``name (cell N): message`` with ``with_cell``)."""
    cell = f" (cell {err['cell']})" if with_cell and err.get("cell") is not None else ""
    return f"{err.get('name')}{cell}: {err.get('message')}"


def _failure_text(status: dict) -> Optional[str]:
    """One line naming a failed run's error (None for a run that did not fail)."""
    if status.get("status") != "failed":
        return None
    return _error_text(status.get("error") or {"name": "error", "message": ""}, with_cell=True)


def _read_status(folder: Path) -> dict:
    try:
        return json.loads((folder / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _write_status(folder: Path, status: dict) -> None:
    from .utils import write_json

    write_json(folder / "status.json", status)


def _short(text: str, limit: int = 500) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(text)).strip()
    return text if len(text) <= limit else text[:limit - 3] + "..."


def execute_run(job: dict) -> dict:
    """Execute one run (a picklable ``job`` dict) and return its status; never raises for notebook errors."""
    import papermill as pm

    folder, nb_out = Path(job["folder"]), Path(job["folder"]) / "notebook.ipynb"
    folder.mkdir(parents=True, exist_ok=True)
    status = {"run": folder.name, "stage": job["stage"], "notebook": job["notebook"], "params": job["params"],
              "point": job["point"], "status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "no_input": job["no_input"], "error": None, "gpu": job.get("gpu")}
    if job.get("slurm"):
        status["slurm"] = job["slurm"]
    _write_status(folder, status)
    t0 = time.time()
    env = {**{k: v for k, v in KERNEL_ENV.items() if k not in os.environ}, **job.get("env", {})}
    attempts = 1 + max(int(job.get("retries", TRANSIENT_RETRIES)), 0)
    with _environ(env), open(folder / "log.txt", "w") as log, _log_warnings_to(log):
        for attempt in range(1, attempts + 1):
            status["attempts"] = attempt
            try:
                pm.execute_notebook(job["notebook"], str(nb_out), parameters=job["params"], kernel_name=job["kernel"],
                                    cwd=job["root"], progress_bar=False, log_output=False, stdout_file=log,
                                    stderr_file=log, execution_timeout=job.get("timeout"),
                                    extra_arguments=["--IPKernelApp.log_level=ERROR"],  # no TCP-transport warnings
                                    iopub_timeout=IOPUB_TIMEOUT_S, raise_on_iopub_timeout=True)
                status.update(status="ok", error=None)
                break
            except pm.PapermillExecutionError as exc:  # the notebook's own error: never retried
                status["status"] = "failed"
                status["error"] = {"name": exc.ename, "message": _short(exc.evalue), "cell": exc.exec_count}
                break
            except Exception as exc:  # noqa: BLE001 - kernel death, missing kernel, bad notebook: record and go on
                status["status"] = "failed"
                status["error"] = {"name": type(exc).__name__, "message": _short(exc)}
                log.write(traceback.format_exc())
                if not is_transient(exc) or attempt == attempts:
                    break
                status.setdefault("retried_after", []).append(status["error"])
                log.write(f"\n[mplmm] attempt {attempt} of {attempts} failed ({status['error']['name']}); "
                          "running the notebook again\n")
                log.flush()
    status["duration_s"] = round(time.time() - t0, 2)
    if nb_out.is_file():
        try:
            export_html(nb_out, folder / "report.html", no_input=job["no_input"], failure=_failure_text(status))
        except Exception as exc:  # noqa: BLE001 - a report failure must not hide the run's own status
            status["report_error"] = f"{type(exc).__name__}: {_short(exc, 200)}"
    _write_status(folder, status)
    return status


def _failed_status(run: Run, params: dict, exc: Exception, no_input: bool, **extra: Any) -> dict:
    """Record a run that failed outside its notebook (``extra`` overrides or adds status keys)."""
    run.folder.mkdir(parents=True, exist_ok=True)
    status = {"run": run.name, "stage": run.stage.name, "notebook": str(run.stage.notebook), "params": params,
              "point": run.point, "status": "failed", "no_input": no_input, "duration_s": 0.0,
              "error": {"name": type(exc).__name__, "message": _short(exc)}, **extra}
    _write_status(run.folder, status)
    return status


def _is_done(run: Run, params: dict) -> bool:
    st = _read_status(run.folder)
    return (st.get("status") == "ok" and (run.folder / "notebook.ipynb").is_file()
            and json.loads(json.dumps(st.get("params"))) == json.loads(json.dumps(params)))


def run_grid(grid: Union[str, os.PathLike, dict], jobs: Optional[int] = None, force: bool = False,
             no_input: bool = False, only: Optional[str] = None, root: Union[str, os.PathLike, None] = None,
             progress: bool = True, gpus: Union[str, Sequence[Union[int, str]], None] = None, jobs_per_gpu: int = 1,
             executor: str = "local", slurm: Optional[dict] = None) -> Path:
    """Run every stage of ``grid`` (a YAML path or dict) in order; returns the path of ``<output_root>/index.html``.

    ``jobs``: runs of one stage executed in parallel processes (threads per run = cores // jobs; default: GPUs ×
    ``jobs_per_gpu`` when there are GPUs, else 1). ``gpus``: GPUs the runs take turns on (``"0,1"`` or a list; default
    every visible GPU; ``"none"``: no GPU pool), at most ``jobs_per_gpu`` runs per GPU, each kernel seeing only its
    GPU. ``executor``: ``"local"``, ``"slurm"`` (one submitit job array per stage) or ``"slurm-local"`` (the same
    through submitit's local executor); ``slurm``: settings overriding the grid's ``slurm:`` block (see
    :mod:`mplmm.executors`). ``force``: re-run finished runs (their folders are cleared first). ``no_input``: hide
    code in the HTML reports. ``only``: run just that stage (earlier stages must have finished). ``root``: working
    directory of the kernels and base of relative paths (default: the current directory).
    """
    from tqdm.auto import tqdm

    from .executors import make_executor

    g = load_grid(grid, root)
    if only is not None and only not in g.runs:
        raise GridError(f"{g.path}: --only {only!r}: no such stage; stages: {[s.name for s in g.stages]}")
    runner = make_executor(executor, g, jobs, gpus, jobs_per_gpu, slurm)
    kernel = ensure_kernel()
    g.output_root.mkdir(parents=True, exist_ok=True)
    status: dict[str, str] = {r.name: _read_status(r.folder).get("status", "") for r in g.all_runs()}
    todo_stages = [s for s in g.stages if only is None or s.name == only]
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    bar = tqdm(total=sum(len(g.runs[s.name]) for s in todo_stages), desc=g.name, unit="run",
               disable=not progress, file=sys.stderr)
    try:
        for stage in todo_stages:
            bar.set_description(f"{g.name}:{stage.name}")
            jobs_list: list[tuple[Run, dict]] = []
            for run in g.runs[stage.name]:
                try:
                    params = _resolve_params(g, run, status)
                except DependencyError as exc:
                    _failed_status(run, {}, exc, no_input)
                    status[run.name] = "failed"
                    counts["failed"] += 1
                    bar.update(1)
                    continue
                if not force and _is_done(run, params):
                    prev = _read_status(run.folder)
                    if not (run.folder / "report.html").is_file() or prev.get("no_input") != no_input:
                        export_html(run.folder / "notebook.ipynb", run.folder / "report.html", no_input)
                        prev["no_input"] = no_input
                        _write_status(run.folder, prev)
                    status[run.name] = "ok"
                    counts["skipped"] += 1
                    bar.update(1)
                    continue
                if force and run.folder.is_dir() and g.output_root in run.folder.parents:
                    shutil.rmtree(run.folder)
                job = {"folder": str(run.folder), "stage": stage.name, "notebook": str(stage.notebook),
                       "params": params, "point": run.point, "kernel": kernel, "root": str(g.root),
                       "no_input": no_input, "timeout": stage.timeout}
                jobs_list.append((run, job))
            for run, st in runner.run(jobs_list):
                status[run.name] = st["status"]
                counts[st["status"]] = counts.get(st["status"], 0) + 1
                bar.update(1)
                if st["status"] != "ok":
                    bar.write(f"FAILED {run.name}: {_error_text(st.get('error') or {})}")
    finally:
        bar.close()
        runner.close()
    index = write_index(g)
    print(f"{g.name}: {counts['ok']} ran ok, {counts['failed']} failed, {counts['skipped']} already done "
          f"→ {index}")
    return index


# ---------------------------------------------------------------------------------------------------------- index
def _read_metrics(folder: Path) -> dict:
    try:
        data = json.loads((folder / "metrics.json").read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def key_metrics(metrics: dict, exclude: Iterable[str] = ()) -> dict[str, float]:
    """The headline numbers of a ``metrics.json``: its ``key_metrics`` mapping if it has one; else the test primary
    metric (+ MAE/Acc/F1) and each method's AUC; else the first top-level numbers not named in ``exclude`` (the
    notebook's parameters)."""
    given = metrics.get("key_metrics")
    if isinstance(given, dict):
        return {str(k): float(v) for k, v in given.items() if _is_number(v)}
    out: dict[str, float] = {}
    test = metrics.get("test")
    if isinstance(test, dict):
        prim = metrics.get("primary_metric")
        for k in [prim, "MAE", "Acc", "F1"]:
            if k in test and _is_number(test[k]):
                out[f"test.{k}"] = float(test[k])
    for rec in metrics.get("auc_summary") or []:
        if isinstance(rec, dict) and _is_number(rec.get("auc_mean")):
            out[f"AUC {rec.get('method')}"] = float(rec["auc_mean"])
    if not out:
        skip = set(exclude)
        for k, v in metrics.items():
            if _is_number(v) and k not in skip:
                out[k] = float(v)
            if len(out) >= 4:
                break
    return out


def index_frame(g: Grid) -> "pd.DataFrame":
    """One row per run: run, stage, status, duration, error, parameters (JSON), key and test metrics."""
    import pandas as pd

    rows = []
    for run in g.all_runs():
        st = _read_status(run.folder)
        met = _read_metrics(run.folder) if st.get("status") == "ok" else {}
        params = {k: v for k, v in (st.get("params") or {}).items() if k != INJECTED}
        err = st.get("error") or {}
        row = {"run": run.name, "stage": run.stage.name, "status": st.get("status") or "not run",
               "duration_s": st.get("duration_s"), "error": _error_text(err) if err else "",
               "params": json.dumps(params, sort_keys=True), "folder": _rel(g, run.folder),
               **{f"grid.{k}": v for k, v in run.point.items()}}
        row.update(key_metrics(met, run.stage.accepted))
        if isinstance(met.get("test"), dict):
            row.update({f"test.{k}": float(v) for k, v in met["test"].items() if _is_number(v)})
        rows.append(row)
    return pd.DataFrame(rows)


def _dataset_label(met: dict) -> str:
    ds = met.get("dataset")
    if isinstance(ds, dict):
        return str(ds.get("name") or ds.get("source") or "?")
    return str(ds) if ds else "?"


def robustness_overviews(g: Grid) -> list:
    """Combined robustness figures from every ok run whose ``metrics.json`` has ``curves``: one figure per
    (dataset, protocol, metric), never curves of different datasets or metrics on one axis. Empty if none."""
    import pandas as pd

    from .plots.robustness import robustness_figure

    groups: dict[tuple[str, str, str], list[tuple[Run, dict]]] = {}
    for run in g.all_runs():
        if _read_status(run.folder).get("status") != "ok":
            continue
        met = _read_metrics(run.folder)
        if met.get("curves") and met.get("metric"):
            key = (_dataset_label(met), str(met.get("protocol") or ""), str(met["metric"]))
            groups.setdefault(key, []).append((run, met))
    figures = []
    for (dataset, protocol, metric), found in groups.items():
        parts = []
        for run, met in found:
            curves = pd.DataFrame(met["curves"])
            if "method" not in curves.columns:
                curves["method"] = run.name
            if len(found) > 1:
                curves["method"] = run.name + ": " + curves["method"].astype(str)
            parts.append(curves)
        where = " · ".join(x for x in (g.name, dataset, f"{protocol} protocol" if protocol else "") if x)
        title = f"{metric} vs test missing rate (mean ± std over training seeds) · {where}"
        figures.append(robustness_figure(pd.concat(parts, ignore_index=True), metric, title=title))
    return figures


_INDEX_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ddd;padding:4px 8px;vertical-align:top}
th{background:#f4f4f4;text-align:left}tr.failed td{background:#fdecea}tr.notrun td{color:#888}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}code{font-size:12px}.err{color:#b00020;max-width:30em}
"""


def _fmt_params(params_json: str, limit: int = 60) -> str:
    params = json.loads(params_json) if params_json else {}
    lines = []
    for k, v in params.items():
        text = v if isinstance(v, str) else json.dumps(v)
        text = text if len(text) <= limit else text[:limit - 3] + "..."
        lines.append(f"<code>{html.escape(k)}={html.escape(text)}</code>")
    return "<br>".join(lines)


def write_index(g: Grid) -> Path:
    """Write ``index.csv`` (one row per run) and ``index.html`` (table + a combined robustness figure per dataset)."""
    frame = index_frame(g)
    g.output_root.mkdir(parents=True, exist_ok=True)
    frame.to_csv(g.output_root / "index.csv", index=False)
    rows_html = []
    for row in frame.to_dict("records"):
        folder = Path(row["folder"])
        run_dir = g.root / folder if not folder.is_absolute() else folder
        links = []
        for fname, label in (("report.html", "report"), ("notebook.ipynb", "notebook"), ("log.txt", "log")):
            if (run_dir / fname).is_file():
                href = os.path.relpath(run_dir / fname, g.output_root)
                links.append(f'<a href="{html.escape(Path(href).as_posix())}">{label}</a>')
        stage = next(s for s in g.stages if s.name == row["stage"])
        shown = key_metrics(_read_metrics(run_dir), stage.accepted) if row["status"] == "ok" else {}
        metrics_html = "<br>".join(f"{html.escape(k)} = {v:.4f}" for k, v in shown.items())
        cls = {"failed": "failed", "not run": "notrun"}.get(row["status"], "")
        dur = "" if row["duration_s"] is None or row["duration_s"] != row["duration_s"] else f"{row['duration_s']:.1f}"
        status_html = html.escape(row["status"])
        if row["error"]:
            status_html += f'<div class="err">{html.escape(row["error"])}</div>'
        rows_html.append(
            f'<tr class="{cls}"><td><code>{html.escape(row["run"])}</code></td><td>{html.escape(row["stage"])}</td>'
            f'<td>{_fmt_params(row["params"])}</td><td>{status_html}</td><td class="num">{dur}</td>'
            f'<td class="num">{metrics_html}</td><td>{" · ".join(links)}</td></tr>')
    figures = robustness_overviews(g)
    fig_html = "<h2>Robustness</h2>\n" if figures else ""
    for i, fig in enumerate(figures):  # plotly.js embedded once, with the first figure
        fig_html += fig.to_html(full_html=False, include_plotlyjs=i == 0, default_height=480,
                                div_id="robustness-figure" + (f"-{i + 1}" if i else "")) + "\n"
    ok = int((frame["status"] == "ok").sum()) if len(frame) else 0
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(g.name)} · mplmm batch</title>
<style>{_INDEX_CSS}</style></head><body>
<h1>{html.escape(g.name)}</h1>
<p>Grid <code>{html.escape(g.path)}</code> · {len(frame)} runs, {ok} ok · written {time.strftime('%Y-%m-%d %H:%M')}
· <a href="index.csv">index.csv</a></p>
<table><thead><tr><th>run</th><th>stage</th><th>params</th><th>status</th><th>duration [s]</th>
<th>key metrics</th><th>files</th></tr></thead><tbody>
{chr(10).join(rows_html)}
</tbody></table>
{fig_html}
</body></html>
"""
    path = g.output_root / "index.html"
    path.write_text(doc, encoding="utf-8")
    return path
