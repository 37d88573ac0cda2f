"""Grid files: the data types (stages, runs, the grid), parsing the YAML into them, run folders.

Tuning stages (:mod:`.tune`), the ``slurm:`` block (:mod:`.executors`) and references between stages
(:mod:`.references`) are checked above this module, by :func:`mplmm.workbench.batch.load.load_grid`.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from ...errors import UserError

GRID_KEYS = {"name", "description", "output_root", "defaults", "stages", "timeout", "slurm", "reference", "report",
             "tune"}
STAGE_KEYS = {"name", "description", "notebook", "params", "grid", "timeout", "tune", "best_config"}
#: the grid's ``report:`` block: accepted keys (all booleans, default false)
REPORT_KEYS = {"no_input": "hide code cells and prompts in the HTML reports",
               "standalone": "every report and the index embed plotly.js instead of loading the shared copy"}
DEFAULT_CELL_TIMEOUT = 3600.0  # seconds per cell: a hung kernel fails its run instead of blocking the batch
INJECTED = "output_dir"
PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # the checkout holding mplmm/ (has notebooks/ when editable)
#: a reference to earlier runs: ``{stage}``, ``{stage[selector]}``, ``{stage[selector].best}``
REFERENCE = re.compile(r"\{([A-Za-z_][\w-]*)(?:\[([^\]{}]*)\])?(\.best)?\}")


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
    explicit: frozenset = frozenset()  # keys of the stage's own params (not from defaults)
    tune: Any = None  # a tuning stage's validated spec (mplmm.workbench.tuning.TuneSpec)
    best_config: Optional[str] = None  # "{stage[selector].best}": runs take that study's tuned values


@dataclass
class Run:
    stage: Stage
    index: int
    point: dict  # this run's grid values
    folder: Path
    params: dict = field(default_factory=dict)  # resolved parameters (after references), set when it runs
    trial: Optional[int] = None  # a tuning stage's trial index (0 .. trials-1) within its grid point

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def keys(self) -> dict:
        """The run's grid values, with ``trial`` for a tuning stage's runs (selectors, status, index columns)."""
        return self.point if self.trial is None else {**self.point, "trial": self.trial}


@dataclass
class _BestOf:
    """A resolved ``.best`` reference: stands in for a run (only its folder is used)."""

    folder: Path


@dataclass
class Grid:
    path: str  # the grid file (for messages)
    name: str
    root: Path
    output_root: Path
    stages: list[Stage]
    runs: dict[str, list[Run]]  # stage name → its runs, in grid order
    slurm: dict = field(default_factory=dict)  # the grid's validated ``slurm:`` block (see .executors)
    reference: Optional[str] = None  # the method the index's leaderboard compares every other method with
    report: dict = field(default_factory=dict)  # the validated ``report:`` block (REPORT_KEYS)

    def all_runs(self) -> list[Run]:
        return [r for s in self.stages for r in self.runs[s.name]]


def grid_error(where: str, msg: str) -> GridError:
    """``GridError("<where>: <msg>")``."""
    return GridError(f"{where}: {msg}")


def _safe(value: Any, limit: int = 40) -> str:
    """A folder-name-safe rendering of a grid value (long or odd values get a short hash)."""
    if isinstance(value, dict) and not value:
        return "default"  # e.g. model_config: {} beside ablated variants
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
    raise grid_error(where, f"notebook {nb!r} not found (looked in {', '.join(str(c) for c in candidates)})")


def _coerce(value: Any, declared: str, where: str) -> Any:
    """Check a YAML value against the notebook's declared type (``float`` accepts ints and '1e-3' strings, ``list``
    accepts a single value)."""
    if declared.startswith("Optional[") and declared.endswith("]"):  # None means "not given"; else the inner type
        if value is None:
            return None
        declared = declared[len("Optional["):-1]
    if isinstance(value, str) and REFERENCE.search(value) and declared not in ("list", "str"):
        raise grid_error(where, f"a run reference fits only str or list parameters, this one is {declared}")
    if declared == "float":
        if isinstance(value, bool):
            raise grid_error(where, f"expected a float, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # PyYAML reads 1e-3 as a string
            except ValueError:
                pass
        raise grid_error(where, f"expected a float, got {value!r}")
    if declared == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise grid_error(where, f"expected an int, got {value!r}")
    if declared == "bool" and not isinstance(value, bool):
        raise grid_error(where, f"expected true/false, got {value!r}")
    if declared == "str" and not isinstance(value, str):
        raise grid_error(where, f"expected a string, got {value!r} (quote it in the YAML)")
    if declared == "list" and not isinstance(value, list):
        return [value]
    if declared == "dict" and not isinstance(value, dict):
        raise grid_error(where, f"expected a mapping, got {value!r}")
    return value


def read_spec(grid: Union[str, os.PathLike, dict], root: Path) -> tuple[str, str, Any]:
    """``(where, default name, spec)`` of a grid: a YAML file (relative paths also tried under ``root``) or a dict."""
    if isinstance(grid, dict):
        return "<grid>", "grid", grid
    gpath = Path(grid)
    if not gpath.is_file() and not gpath.is_absolute() and (root / gpath).is_file():
        gpath = root / gpath
    if not gpath.is_file():
        raise GridError(f"{grid}: grid file not found")
    try:
        spec = yaml.safe_load(gpath.read_text())
    except yaml.YAMLError as exc:
        raise GridError(f"{grid}: not valid YAML ({exc})") from exc
    return str(grid), gpath.stem, spec


def parse_top(spec: Any, where: str, default_name: str, root: Path) -> tuple[str, Path, dict, list]:
    """The grid's name, output root, ``defaults`` and list of stage mappings (top-level keys checked)."""
    if not isinstance(spec, dict):
        raise grid_error(where, "expected a mapping with 'stages'")
    unknown = set(spec) - GRID_KEYS
    if unknown:
        raise grid_error(where, f"unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(GRID_KEYS)}")
    name = str(spec.get("name") or default_name)
    out_root = Path(spec.get("output_root") or f"papermill_runs/{_safe(name)}").expanduser()
    out_root = (out_root if out_root.is_absolute() else root / out_root).resolve()
    defaults = spec.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise grid_error(where, "'defaults' must be a mapping")
    stages_spec = spec.get("stages")
    if not isinstance(stages_spec, list) or not stages_spec:
        raise grid_error(where, "'stages' must be a non-empty list")
    return name, out_root, defaults, stages_spec


def parse_stage(st: Any, i: int, stages: list[Stage], spec: dict, defaults: dict, root: Path, where: str) -> Stage:
    """Stage ``i`` of the grid (``st``: its mapping; ``stages``: the ones before it) checked against its notebook's
    parameters; its ``tune:`` and ``best_config`` are left to :func:`~mplmm.workbench.batch.load.load_grid`."""
    import papermill as pm

    if not isinstance(st, dict) or "name" not in st or "notebook" not in st:
        raise grid_error(where, f"stage #{i + 1} needs at least 'name' and 'notebook'")
    sname = str(st["name"])
    swhere = f"{where}: stage '{sname}'"
    if not re.fullmatch(r"[A-Za-z_][\w-]*", sname):
        raise grid_error(swhere, "stage names may hold letters, digits, '_' and '-' (start with a letter)")
    if sname in {s.name for s in stages}:
        raise grid_error(swhere, "duplicate stage name")
    unknown = set(st) - STAGE_KEYS
    if unknown:
        raise grid_error(swhere, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(STAGE_KEYS)}")
    nb = _find_notebook(str(st["notebook"]), root, swhere)
    accepted = pm.inspect_notebook(str(nb))
    params, sgrid = dict(st.get("params") or {}), dict(st.get("grid") or {})
    for key in [*params, *sgrid]:
        if key == INJECTED:
            raise grid_error(swhere, f"'{INJECTED}' is set by the runner (the run folder); remove it")
        if key not in accepted:
            raise grid_error(swhere, f"unknown parameter '{key}' for notebook {st['notebook']}; "
                                     f"it accepts: {', '.join(k for k in accepted if k != INJECTED)}")
    both = set(params) & set(sgrid)
    if both:
        raise grid_error(swhere, f"parameter(s) {sorted(both)} both in 'params' and 'grid'")
    for key, values in sgrid.items():
        if not isinstance(values, list) or not values:
            raise grid_error(swhere, f"grid '{key}' must be a non-empty list of values")
        sgrid[key] = [_coerce(v, accepted[key]["inferred_type_name"], f"{swhere}: grid '{key}'") for v in values]
    merged = {k: v for k, v in defaults.items() if k in accepted and k != INJECTED}
    merged.update(params)
    for key in merged:
        merged[key] = _coerce(merged[key], accepted[key]["inferred_type_name"], f"{swhere}: parameter '{key}'")
    if INJECTED not in accepted:
        raise grid_error(swhere, f"notebook {st['notebook']} has no '{INJECTED}' parameter (needed for run folders)")
    timeout = st.get("timeout", spec.get("timeout", DEFAULT_CELL_TIMEOUT))
    try:
        timeout = float(timeout) if timeout else None
    except (TypeError, ValueError):
        raise grid_error(swhere, f"timeout must be seconds per cell, got {timeout!r}") from None
    return Stage(sname, nb, merged, sgrid, timeout, accepted, frozenset(params))


def check_defaults(defaults: dict, stages: list[Stage], where: str) -> None:
    """Every key of ``defaults`` is a parameter of some stage's notebook."""
    for key in defaults:
        if not any(key in s.accepted for s in stages):
            raise grid_error(where, f"defaults: unknown parameter '{key}' (no stage's notebook has it)")


def make_runs(stages: list[Stage], out_root: Path) -> dict[str, list[Run]]:
    """Each stage's runs in grid order (a tuning stage: ``trials`` runs per grid point), folders under ``out_root``."""
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
            if stage.tune is None:
                stage_runs.append(Run(stage, len(stage_runs), point, out_root / fname))
                continue
            for trial in range(stage.tune.trials):  # a tuning stage: `trials` runs per grid point
                stage_runs.append(Run(stage, len(stage_runs), point, out_root / f"{fname}__trial={trial}", trial=trial))
        runs[stage.name] = stage_runs
    return runs


def check_best_config(value: Any, where: str) -> str:
    """A stage's ``best_config``: exactly one ``{stage[selector].best}`` reference."""
    m = REFERENCE.fullmatch(value.strip()) if isinstance(value, str) else None
    if m is None or not m.group(3):
        raise grid_error(where, f"best_config must be one reference like \"{{tune.best}}\" or "
                                f"\"{{tune[model=mplmm].best}}\", got {value!r}")
    return value.strip()


def check_reference(value: Any, where: str) -> Optional[str]:
    """The grid's ``reference`` (a method name as notebook 02 labels it, e.g. ``mplmm``), or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise grid_error(where, f"'reference' must be a method name (e.g. mplmm), got {value!r}")
    return value.strip()


def check_report(block: Any, where: str) -> dict:
    """The grid's ``report:`` block: a mapping of REPORT_KEYS to true/false."""
    if block is None:
        return {}
    if not isinstance(block, dict):
        raise grid_error(where, f"'report' must be a mapping of {sorted(REPORT_KEYS)}")
    unknown = sorted(set(block) - set(REPORT_KEYS))
    if unknown:
        raise grid_error(where, f"report: unknown key(s) {unknown}; accepted: {', '.join(sorted(REPORT_KEYS))}")
    for key, value in block.items():
        if not isinstance(value, bool):
            raise grid_error(where, f"report: {key} must be true or false, got {value!r}")
    return dict(block)


def rel_path(g: Grid, path: Path) -> str:
    """``path`` relative to the grid's root (POSIX), or absolute when outside it."""
    try:
        return path.relative_to(g.root).as_posix()
    except ValueError:
        return str(path)
