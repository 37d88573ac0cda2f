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

from ...config import bad_value, from_dict, option
from ...errors import UserError, unknown_key_message

DEFAULT_CELL_TIMEOUT = 3600.0  # seconds per cell: a hung kernel fails its run instead of blocking the batch
INJECTED = "output_dir"
PACKAGE_ROOT = Path(__file__).resolve().parents[3]  # the checkout holding mplmm/ (has notebooks/ when editable)
#: a reference to earlier runs: ``{stage}``, ``{stage[selector]}``, ``{stage[selector].best}``
REFERENCE = re.compile(r"\{([A-Za-z_][\w-]*)(?:\[([^\]{}]*)\])?(\.best)?\}")


class GridError(UserError):
    """A grid file is invalid (unknown key or parameter, bad reference, missing notebook, ...)."""


class DependencyError(RuntimeError):
    """A run refers to an earlier run that failed or has not run."""


# ------------------------------------------------------------------------------------------------------- grid file
@dataclass
class GridFile:
    """The top-level keys of a grid file (``docs/grids.md``)."""

    stages: list = option(help="the stages, run in order: mappings with name, notebook, params, grid, ...")
    name: Optional[str] = option(None, "the grid's name (default: the file's stem)")
    description: Optional[str] = option(None, "free text")
    output_root: Optional[str] = option(None, "where the run folders go (default papermill_runs/<name>)")
    defaults: Optional[dict] = option(None, "parameters given to every stage whose notebook has them")
    timeout: Optional[float] = option(None, "seconds per cell (default 3600; 0: none)", low=0)
    slurm: Optional[dict] = option(None, "Slurm settings of --executor slurm (SlurmSettings)")
    reference: Optional[str] = option(None, "the method the leaderboard compares every other one with",
                                      unit="a method name, e.g. mplmm")
    report: Optional[dict] = option(None, "the HTML reports' settings (ReportSettings)")
    tune: Optional[dict] = option(None, "tuning settings every tuning stage shares (TuneSettings)")

    def cross_check(self, where: str) -> None:
        """At least one stage; a reference names a method."""
        if not self.stages:
            raise GridError(bad_value(where, "stages", "a non-empty list of stages", self.stages))
        if self.reference is not None and not self.reference.strip():
            raise GridError(bad_value(where, "reference", "a method name, e.g. mplmm", self.reference))


@dataclass
class StageSpec:
    """The keys of one stage of a grid file."""

    name: str = option(help="the stage's name: letters, digits, '_' and '-', starting with a letter")
    notebook: str = option(help="the notebook it runs (relative to the grid's root or the package)")
    description: Optional[str] = option(None, "free text")
    params: Optional[dict] = option(None, "the notebook's parameters, the same for every run")
    grid: Optional[dict] = option(None, "parameter → list of values: one run per combination")
    timeout: Optional[float] = option(None, "seconds per cell (default: the grid's; 0: none)", low=0)
    tune: Optional[dict] = option(None, "makes it a tuning stage (TuneSettings)")
    best_config: Optional[str] = option(None, "a {stage.best} reference: each run takes that study's tuned values")


@dataclass
class ReportSettings:
    """The grid's ``report:`` block."""

    no_input: bool = option(False, "hide code cells and prompts in the HTML reports")
    standalone: bool = option(False, "every report and the index embed plotly.js instead of loading the shared copy")


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
    def given(self) -> dict:
        """The run's parameters as the grid file gives them: its stage's ``params``, then its grid values (references
        not resolved, best_config not applied)."""
        return {**self.stage.params, **self.point}

    @property
    def keys(self) -> dict:
        """The run's grid values, with ``trial`` for a tuning stage's runs (selectors, status, index columns)."""
        return self.point if self.trial is None else {**self.point, "trial": self.trial}


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
    report: dict = field(default_factory=dict)  # the validated ``report:`` block (ReportSettings)

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


def declared_type(declared: Optional[str]) -> tuple[str, bool]:
    """``(type, optional)`` of a notebook parameter's annotation as papermill reads it: ``Optional[float]`` is
    ``("float", True)``, ``float`` is ``("float", False)``."""
    text = str(declared or "").replace(" ", "")
    m = re.fullmatch(r"(?:typing\.)?Optional\[(.+)\]", text)
    return (m.group(1), True) if m else (text, False)


def _coerce(value: Any, declared: str, where: str, key: str) -> Any:
    """Check a YAML value against the notebook's declared type (``float`` accepts ints and '1e-3' strings, ``list``
    accepts a single value, ``Optional[...]`` accepts None and else the inner type)."""
    kind, optional = declared_type(declared)
    if value is None and optional:
        return None
    if isinstance(value, str) and REFERENCE.search(value) and kind not in ("list", "str"):
        raise GridError(bad_value(where, key, f"a {kind} (a run reference fits only str or list parameters)", value))
    if kind == "float" and isinstance(value, str):
        try:
            return float(value)  # PyYAML reads 1e-3 as a string
        except ValueError:
            pass
    if kind == "list" and not isinstance(value, list):
        return [value]
    checks = {"float": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
              "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
              "bool": (lambda v: isinstance(v, bool), "true or false"),
              "str": (lambda v: isinstance(v, str), "a string (quote it in the YAML)"),
              "dict": (lambda v: isinstance(v, dict), "a mapping")}
    ok, what = checks.get(kind, (lambda v: True, ""))
    if not ok(value):
        raise GridError(bad_value(where, key, what + (" or None" if optional else ""), value))
    return float(value) if kind == "float" else value


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
    top = from_dict(GridFile, spec, where, error=GridError)
    name = str(top.name or default_name)
    out_root = Path(top.output_root or f"papermill_runs/{_safe(name)}").expanduser()
    out_root = (out_root if out_root.is_absolute() else root / out_root).resolve()
    return name, out_root, top.defaults or {}, top.stages


def _stage_where(st: Any, i: int, where: str) -> str:
    """``<grid>: stage '<name>'`` (``stage #<i>`` while the stage has no name)."""
    named = isinstance(st, dict) and isinstance(st.get("name"), str)
    return f"{where}: stage '{st['name']}'" if named else f"{where}: stage #{i + 1}"


def _stage_params(st: StageSpec, accepted: dict, spec: dict, defaults: dict, swhere: str) -> tuple[dict, dict]:
    """A stage's ``params`` (the grid's defaults its notebook has, then its own) and ``grid``, each value checked
    against the notebook's parameter types."""
    params, sgrid = dict(st.params or {}), dict(st.grid or {})
    names = sorted(k for k in accepted if k != INJECTED)
    for block, keys in ((f"{swhere}: params", params), (f"{swhere}: grid", sgrid)):
        for key in keys:
            if key == INJECTED:
                raise grid_error(block, f"key '{INJECTED}': expected no value (the runner sets it to the run "
                                        f"folder), got {keys[key]!r}")
            if key not in accepted:
                raise GridError(unknown_key_message(f"{block} (notebook {st.notebook})", [key], names))
    both = sorted(set(params) & set(sgrid))
    if both:
        raise GridError(bad_value(swhere, both[0], "a value in params or in grid, not both",
                                  {"params": params[both[0]], "grid": sgrid[both[0]]}))
    for key, values in sgrid.items():
        if not isinstance(values, list) or not values:
            raise GridError(bad_value(f"{swhere}: grid", key, "a non-empty list of values", values))
        sgrid[key] = [_coerce(v, accepted[key]["inferred_type_name"], f"{swhere}: grid", key) for v in values]
    merged = {k: v for k, v in defaults.items() if k in accepted and k != INJECTED}
    merged.update(params)
    for key in merged:
        merged[key] = _coerce(merged[key], accepted[key]["inferred_type_name"], f"{swhere}: params", key)
    return merged, sgrid


def parse_stage(st: Any, i: int, stages: list[Stage], spec: dict, defaults: dict, root: Path, where: str) -> Stage:
    """Stage ``i`` of the grid (``st``: its mapping; ``stages``: the ones before it) checked against its notebook's
    parameters; its ``tune:`` and ``best_config`` are left to :func:`~mplmm.workbench.batch.load.load_grid`."""
    import papermill as pm

    swhere = _stage_where(st, i, where)
    stage = from_dict(StageSpec, st, swhere, error=GridError)
    if not re.fullmatch(r"[A-Za-z_][\w-]*", stage.name):
        raise grid_error(swhere, "stage names may hold letters, digits, '_' and '-' (start with a letter)")
    if stage.name in {s.name for s in stages}:
        raise grid_error(swhere, "duplicate stage name")
    nb = _find_notebook(stage.notebook, root, swhere)
    accepted = pm.inspect_notebook(str(nb))
    merged, sgrid = _stage_params(stage, accepted, spec, defaults, swhere)
    if INJECTED not in accepted:
        raise grid_error(swhere, f"notebook {stage.notebook} has no '{INJECTED}' parameter (needed for run folders)")
    timeout = stage.timeout if "timeout" in st else spec.get("timeout", DEFAULT_CELL_TIMEOUT)
    return Stage(stage.name, nb, merged, sgrid, float(timeout) if timeout else None, accepted,
                 frozenset(stage.params or {}))


def check_defaults(defaults: dict, stages: list[Stage], where: str) -> None:
    """Every key of ``defaults`` is a parameter of some stage's notebook (accepted: the union of their parameters)."""
    names = sorted({k for s in stages for k in s.accepted if k != INJECTED})
    unknown = [key for key in defaults if key not in names]
    if unknown:
        raise GridError(unknown_key_message(f"{where}: defaults", unknown[:1], names))


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


def check_report(block: Any, where: str) -> dict:
    """The grid's ``report:`` block (:class:`ReportSettings`): the keys it sets."""
    if block is None:
        return {}
    from_dict(ReportSettings, block, f"{where}: report", error=GridError)
    return dict(block)


def rel_path(g: Grid, path: Path) -> str:
    """``path`` relative to the grid's root (POSIX), or absolute when outside it."""
    try:
        return path.relative_to(g.root).as_posix()
    except ValueError:
        return str(path)
