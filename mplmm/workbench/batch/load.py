"""Loading a grid before anything runs: parse it (:mod:`.grid`), validate its tuning stages (:mod:`.tune`), its
``slurm:`` block (:mod:`.executors`), every reference between stages (:mod:`.references`) and the runs' model
configurations.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

from ...errors import UserError
from .executors import check_slurm
from .grid import (
    Grid,
    GridError,
    Run,
    Stage,
    check_best_config,
    check_defaults,
    check_report,
    make_runs,
    parse_stage,
    parse_top,
    read_spec,
)
from .references import resolve_params
from .tune import parse_tune


def load_grid(grid: Union[str, os.PathLike, dict], root: Union[str, os.PathLike, None] = None) -> Grid:
    """Read and validate a grid (a YAML file or an equivalent dict) before anything runs."""
    root = Path(root or os.getcwd()).resolve()
    where, default_name, spec = read_spec(grid, root)
    name, out_root, defaults, stages_spec = parse_top(spec, where, default_name, root)
    stages: list[Stage] = []
    for i, st in enumerate(stages_spec):
        stage = parse_stage(st, i, stages, spec, defaults, root, where)
        swhere = f"{where}: stage '{stage.name}'"
        if st.get("tune") is not None:  # merged over the grid's tune: block (the settings every tuning stage shares)
            stage.tune = parse_tune({**(spec.get("tune") or {}), **st["tune"]}, stage, swhere)
        if st.get("best_config") is not None:
            stage.best_config = check_best_config(st["best_config"], swhere)
        stages.append(stage)
    check_defaults(defaults, stages, where)
    g = Grid(where, name, root, out_root, stages, make_runs(stages, out_root), check_slurm(spec.get("slurm"), where),
             (spec.get("reference") or "").strip() or None, check_report(spec.get("report"), where))
    for run in g.all_runs():  # dry resolution: every reference must name an earlier stage and fit its runs
        resolve_params(g, run, status=None)
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
    from ...models import model_class, validate_model_config

    if "model_config" not in run.stage.accepted or "model" not in run.stage.accepted:
        return
    params = run.given
    model = params.get("model", _notebook_default(run.stage, "model"))
    cfg = params.get("model_config", _notebook_default(run.stage, "model_config")) or {}
    if not isinstance(model, str) or "{" in model or not isinstance(cfg, dict):
        return
    where = f"{g.path}: stage '{run.stage.name}' run {run.name}"
    try:
        model_class(model)
        validate_model_config(model, cfg)
    except UserError as exc:
        raise GridError(f"{where}: {exc}") from None
