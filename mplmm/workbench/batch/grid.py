"""Grid files: parsing and validation (before anything runs), run folders, references between stages."""
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
_REF = re.compile(r"\{([A-Za-z_][\w-]*)(?:\[([^\]{}]*)\])?(\.best)?\}")


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
    tune: Any = None  # a tuning stage's validated spec (mplmm.workbench.batch.tune.TuneSpec)
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


def _err(where: str, msg: str) -> GridError:
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
        stage = Stage(sname, nb, merged, sgrid, timeout, accepted, frozenset(params))
        if st.get("tune") is not None:  # merged over the grid's tune: block (the settings every tuning stage shares)
            from .tune import parse_tune

            shared = spec.get("tune") or {}
            if not isinstance(shared, dict) or not isinstance(st["tune"], dict):
                raise _err(swhere, "tune: expected a mapping (the grid's tune: block too)")
            stage.tune = parse_tune({**shared, **st["tune"]}, stage, swhere)
        if st.get("best_config") is not None:
            stage.best_config = _check_best_config(st["best_config"], swhere)
        stages.append(stage)

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
            if stage.tune is None:
                stage_runs.append(Run(stage, len(stage_runs), point, out_root / fname))
                continue
            for trial in range(stage.tune.trials):  # a tuning stage: `trials` runs per grid point
                stage_runs.append(Run(stage, len(stage_runs), point, out_root / f"{fname}__trial={trial}", trial=trial))
        runs[stage.name] = stage_runs
    from .executors import check_slurm

    g = Grid(where, name, root, out_root, stages, runs, check_slurm(spec.get("slurm"), where),
             _check_reference(spec.get("reference"), where), _check_report(spec.get("report"), where))
    for run in g.all_runs():  # dry resolution: every reference must name an earlier stage and fit its runs
        resolve_params(g, run, status=None)
        _check_model_config(g, run)
    return g


def _check_best_config(value: Any, where: str) -> str:
    """A stage's ``best_config``: exactly one ``{stage[selector].best}`` reference."""
    m = _REF.fullmatch(value.strip()) if isinstance(value, str) else None
    if m is None or not m.group(3):
        raise _err(where, f"best_config must be one reference like \"{{tune.best}}\" or "
                          f"\"{{tune[model=mplmm].best}}\", got {value!r}")
    return value.strip()


def _check_reference(value: Any, where: str) -> Optional[str]:
    """The grid's ``reference`` (a method name as notebook 02 labels it, e.g. ``mplmm``), or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _err(where, f"'reference' must be a method name (e.g. mplmm), got {value!r}")
    return value.strip()


def _check_report(block: Any, where: str) -> dict:
    """The grid's ``report:`` block: a mapping of REPORT_KEYS to true/false."""
    if block is None:
        return {}
    if not isinstance(block, dict):
        raise _err(where, f"'report' must be a mapping of {sorted(REPORT_KEYS)}")
    unknown = sorted(set(block) - set(REPORT_KEYS))
    if unknown:
        raise _err(where, f"report: unknown key(s) {unknown}; accepted: {', '.join(sorted(REPORT_KEYS))}")
    for key, value in block.items():
        if not isinstance(value, bool):
            raise _err(where, f"report: {key} must be true or false, got {value!r}")
    return dict(block)


def _notebook_default(stage: Stage, key: str) -> Any:
    """A notebook parameter's default value (papermill reports it as source text), or None if not a literal."""
    import ast

    try:
        return ast.literal_eval(str(stage.accepted[key]["default"]))
    except (ValueError, SyntaxError):
        return None


def _check_model_config(g: Grid, run: Run) -> None:
    """A typo in a run's ``model_config`` (or an unknown ``model``) fails the grid before anything runs."""
    from ...models import model_class, validate_model_config

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
    hits = [t for t in targets if all(k in t.keys and str(t.keys[k]) == v for k, v in wanted.items())]
    if len(hits) != 1 and not (hits and hits[0].stage.tune is not None):  # a study's trials may be several
        raise _err(where, f"reference {{{stage_name}[{selector}]}} matches {len(hits)} runs of '{stage_name}' "
                          f"(grid points: {[t.point for t in targets]})")
    return hits


def _studies(g: Grid, run: Run, m: "re.Match", match_point: bool = False) -> list[list[Run]]:
    """The studies (trial runs grouped by grid point) a ``{stage[selector].best}`` reference names; with
    ``match_point`` and no selector, the one whose grid point agrees with ``run``'s on the keys they share."""
    from .tune import studies_of

    where = f"{g.path}: stage '{run.stage.name}'"
    targets = _select(g, run, m.group(1), m.group(2))
    stage = targets[0].stage
    if stage.tune is None:
        raise _err(where, f"{m.group(0)}: stage '{stage.name}' is not a tuning stage (it has no 'tune:' block)")
    names = {t.name for t in targets}
    groups = [grp for grp in studies_of(g, stage) if names & {r.name for r in grp}]
    if match_point and m.group(2) is None:
        mine = {**run.stage.params, **run.point}
        groups = [grp for grp in groups
                  if all(str(v) == str(mine[k]) for k, v in grp[0].point.items() if k in mine)]
        if len(groups) != 1:
            raise _err(where, f"best_config {m.group(0)}: run {run.name} matches {len(groups)} studies of "
                              f"'{stage.name}' on the grid keys they share; name one, e.g. "
                              f"{{{stage.name}[model=...].best}}")
    return groups


def _best_folder(g: Grid, study: list[Run], status: Optional[dict]) -> Path:
    """The folder of a study's best trial run (the first trial's folder in a dry resolution)."""
    if status is None:
        return study[0].folder
    from .tune import best_run

    return best_run(g, study[0]).folder


def best_config_values(g: Grid, run: Run, status: Optional[dict]) -> dict:
    """The tuned values ``run`` takes from its stage's ``best_config`` study (``{}`` in a dry resolution)."""
    m = _REF.fullmatch(run.stage.best_config)
    study = _studies(g, run, m, match_point=True)
    if len(study) != 1:
        raise _err(f"{g.path}: stage '{run.stage.name}'", f"best_config {m.group(0)} names {len(study)} studies; "
                                                          "pick one with a selector")
    from .tune import _model_of, set_elsewhere

    clash = set_elsewhere(study[0][0].stage.tune.space_for(_model_of(study[0][0])).values(), run.stage)
    if clash:
        raise _err(f"{g.path}: stage '{run.stage.name}'", f"{clash} come from best_config {m.group(0)}; remove them "
                                                          "from this stage's params/grid")
    if status is None:
        return {}
    from .tune import best_values

    return best_values(g, study[0][0])


def rel_path(g: Grid, path: Path) -> str:
    """``path`` relative to the grid's root (POSIX), or absolute when outside it."""
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
        if m.group(3):  # {stage[selector].best}: the folder of each named study's best trial
            studies = _studies(g, run, m)
            if len(studies) > 1 and not expand:
                raise _err(f"{g.path}: stage '{run.stage.name}'",
                           f"{m.group(0)} names {len(studies)} studies; pick one with a selector, or use it inside a "
                           "list parameter")
            choices.append([_BestOf(_best_folder(g, st, status)) for st in studies])
            continue
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
            s = s[:m.start()] + rel_path(g, target.folder) + s[m.end():]
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


def resolve_params(g: Grid, run: Run, status: Optional[dict]) -> dict:
    """The run's parameters with references replaced and ``output_dir`` injected (``status=None``: dry run)."""
    params = {**run.stage.params, **run.point}
    resolved = {k: _resolve_value(g, run, v, status) for k, v in params.items()}
    if run.stage.best_config:
        from .tune import apply_values

        resolved = apply_values(resolved, best_config_values(g, run, status))
    if run.stage.tune is not None and "evaluate_test" in run.stage.accepted:
        resolved["evaluate_test"] = False  # tuning never evaluates the test split
    resolved[INJECTED] = rel_path(g, run.folder)
    return resolved

