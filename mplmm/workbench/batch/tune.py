"""Tuning stages: an Optuna study per grid point (method), the same number of trials for each, every trial an
ordinary run.

A stage with a ``tune:`` block runs ``trials`` runs per grid point. Before each one the runner asks the point's study
(Optuna, seeded sampler) for values of the search space, runs the notebook with them, and tells the study the
**validation** metric ``objective`` read from the run's ``metrics.json`` (``valid`` section; the runner also sets the
notebook's ``evaluate_test`` to false, so the test split is never evaluated while tuning)::

    - name: tune
      notebook: notebooks/01_train.ipynb
      params: {stage: train, train_rate: 0.7}
      grid: {model: [mult_dropout, comp]}
      tune:
        trials: 8                 # per grid point: the same budget for every method
        objective: Non0_acc_2     # a validation metric; direction from the metric (or give direction:)
        sampler: tpe              # tpe (default), random or grid (categorical dimensions only)
        seed: 0                   # trial k is drawn by a sampler seeded with seed + k
        space:                    # every run: notebook parameters or model keys (model_config.<key>)
          lr: {log_uniform: [1.0e-4, 3.0e-3]}
          batch_size: {categorical: [32, 64, 128]}
        spaces:                   # per value of the run's `model`: more dimensions
          comp: {model_config.d: {categorical: [16, 32]}}

Studies live in ``<output_root>/optuna_journal.log`` (Optuna's file journal: no database server; processes on other
machines that see the same folder share it). Trial runs are ``<stage>__<grid point>__trial=<k>/``; each holds
``trial.json`` (study, trial number, values). Runs take turns in waves: wave ``k`` runs trial ``k`` of every study,
in parallel across studies, so each sampler sees all earlier trials of its study. Re-running the grid skips finished
trials, re-runs an interrupted one with the same values (resuming from ``last.pt``) and a failed one with the same
values as a new trial; a changed search space is refused (``--force`` starts the studies again).

Later stages use the result: ``{tune[model=comp].best}`` (or ``{tune.best}`` in a list: one per study) is the folder
of a study's best trial, and the stage key ``best_config: "{tune.best}"`` gives each run the tuned values of the
study whose grid point it shares (``"{tune[model=comp].best}"`` names one).

Search spaces, samplers, objective directions and the journal are :mod:`mplmm.workbench.tuning`'s; this module drives
a grid's tuning stage (its trials as run folders, in waves) and finds each study's best run.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional

from ... import metrics_file
from ...config import from_dict, option
from ...errors import UserError
from .. import runs
from ..tuning import (
    DIRECTIONS,
    JOURNAL,
    MODEL_PREFIX,
    SAMPLERS,
    Dimension,
    TuneSpec,
    draw,
    objective_direction,
    open_journal_for_writing,
    parse_dimension,
)
from .grid import DependencyError, Grid, GridError, Run, Stage, declared_type, grid_error

if TYPE_CHECKING:  # pragma: no cover
    import optuna

TRIAL_FILE = "trial.json"  # in each trial's run folder
TRIAL_KEY = "trial"  # folder-name part of a trial run
TEST_SWITCH = "evaluate_test"  # notebook parameter the runner sets to false in trial runs


def _check_dimension(dim: Dimension, stage: Stage, models: Iterable[Any], where: str) -> None:
    """The dimension names a notebook parameter of a fitting type, or a model key every model of the stage accepts
    with every value of the range."""
    from ...models import validate_model_config

    w = f"{where}: dimension '{dim.name}'"
    key = dim.model_key
    if key is None:
        if dim.name not in stage.accepted or dim.name in ("output_dir", "model", "model_config", TEST_SWITCH):
            tunable = [k for k in stage.accepted if k not in ("output_dir", "model", "model_config", TEST_SWITCH)]
            raise grid_error(w, f"not a tunable parameter of {stage.notebook.name}; use one of {tunable} or "
                                f"{MODEL_PREFIX}<model key>")
        declared = stage.accepted[dim.name]["inferred_type_name"]
        numeric = {"float": ("uniform", "log_uniform", "int", "log_int"), "int": ("int", "log_int")}
        if dim.kind != "categorical" and dim.kind not in numeric.get(declared_type(declared)[0], ()):
            raise grid_error(w, f"{dim.kind} does not fit the {declared} parameter {dim.name}; use categorical")
        return
    for model in models:
        for value in dim.samples():
            try:
                validate_model_config(str(model), {key: value})
            except UserError as exc:
                raise grid_error(w, str(exc)) from None


def parse_tune(block: Any, stage: Stage, where: str) -> TuneSpec:
    """Validate a stage's ``tune:`` block against the stage's notebook, models, params and grid."""
    w = f"{where}: tune"
    trials, objective, direction, sampler, seed, startup = _settings(block, w)
    space, spaces = _spaces(block, stage, w)
    if not space and not spaces:
        raise grid_error(w, "space: nothing to search (give space: or spaces:)")
    for name in set_elsewhere([*space.values(), *(d for s in spaces.values() for d in s.values())], stage):
        raise grid_error(w, f"'{name}' is both searched and set in the stage's params/grid (or params.model_config); "
                            "remove one")
    if sampler == "grid":
        bad = [d.name for s in [space, *spaces.values()] for d in s.values() if d.kind != "categorical"]
        if bad:
            raise grid_error(w, f"sampler grid searches categorical dimensions only; {bad} are not")
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise grid_error(w, "tuning stages need optuna: pip install 'mplmm[tune]'") from None
    if TEST_SWITCH in stage.params or TEST_SWITCH in stage.grid:
        raise grid_error(w, f"'{TEST_SWITCH}' is set by the tuner (false: the test split is never evaluated while "
                            "tuning)")
    return TuneSpec(trials, objective, DIRECTIONS[direction], sampler, seed, startup, space, spaces)


@dataclass
class TuneSettings:
    """The keys of a ``tune:`` block (the grid's, shared by every tuning stage, merged under a stage's own)."""

    trials: int = option(help="trials per grid point: the same budget for every method", low=1)
    objective: str = option(help="a validation metric of the runs' metrics.json, e.g. Non0_acc_2 or loss")
    direction: Optional[str] = option(None, "maximize or minimize (default: from the metric)",
                                      choices=tuple(DIRECTIONS))
    sampler: str = option("tpe", "the Optuna sampler (grid: categorical dimensions only)", choices=SAMPLERS)
    seed: int = option(0, "trial k is drawn by a sampler seeded with seed + k")
    startup_trials: Optional[int] = option(None, "random trials before TPE (default max(2, trials // 3))", low=1)
    space: Optional[dict] = option(None, "searched for every run: parameter or model_config.<key> → distribution")
    spaces: Optional[dict] = option(None, "per value of the runs' model: more dimensions")


def _settings(block: Any, w: str) -> tuple[int, str, str, str, int, int]:
    """``trials``, ``objective``, ``direction``, ``sampler``, ``seed`` and ``startup_trials`` of a ``tune:`` block."""
    t = from_dict(TuneSettings, block, w, error=GridError)
    try:
        direction = objective_direction(t.objective, t.direction)
    except UserError as exc:
        raise grid_error(w, str(exc)) from None
    startup = t.startup_trials if t.startup_trials is not None else max(2, t.trials // 3)
    return t.trials, t.objective, direction, t.sampler, t.seed, startup


def _spaces(block: dict, stage: Stage, w: str) -> tuple[dict[str, Dimension], dict[str, dict[str, Dimension]]]:
    """The ``space`` (every run) and ``spaces`` (per model) of a ``tune:`` block, each dimension checked against the
    stage."""
    models = sorted({str(p) for p in stage.grid.get("model", [stage.params.get("model")])} - {"None"})
    space_spec = block.get("space") or {}
    if not isinstance(space_spec, dict):
        raise grid_error(w, "space: expected a mapping of parameter → distribution")
    space = {str(k): parse_dimension(str(k), v, w, GridError) for k, v in space_spec.items()}
    for dim in space.values():
        _check_dimension(dim, stage, models, w)
    spaces_spec = block.get("spaces") or {}
    if not isinstance(spaces_spec, dict):
        raise grid_error(w, "spaces: expected a mapping of model name → {parameter: distribution}")
    spaces: dict[str, dict[str, Dimension]] = {}
    for model, sub in spaces_spec.items():
        if str(model) not in models:
            raise grid_error(w, f"spaces: {model!r} is not a model of this stage (its runs use {models})")
        if not isinstance(sub, dict):
            raise grid_error(w, f"spaces: {model}: expected a mapping of parameter → distribution")
        where = f"{w}: spaces: {model}"
        spaces[str(model)] = {str(k): parse_dimension(str(k), v, where, GridError) for k, v in sub.items()}
        for dim in spaces[str(model)].values():
            _check_dimension(dim, stage, [model], where)
    return space, spaces


def set_elsewhere(dims: Iterable[Dimension], stage: Stage) -> list[str]:
    """The searched dimensions that ``stage`` also sets: a notebook parameter in its own params or grid, or a model
    key in its ``model_config``."""
    fixed_cfg = stage.params.get("model_config")
    fixed_cfg = fixed_cfg if isinstance(fixed_cfg, dict) else {}
    return [d.name for d in dims
            if (d.model_key is None and (d.name in stage.grid or d.name in stage.explicit))
            or (d.model_key is not None and d.model_key in fixed_cfg)]


# -------------------------------------------------------------------------------------------------- studies
def journal_path(g: Grid) -> Path:
    return g.output_root / JOURNAL


def study_name(g: Grid, run: Run) -> str:
    """One study per grid point of a tuning stage: ``<grid name>/<run folder without the trial part>``."""
    return f"{g.name}/{base_name(run)}"


def base_name(run: Run) -> str:
    return re.sub(rf"__{TRIAL_KEY}=\d+$", "", run.name)


def study_of(g: Grid, run: Run, create: bool = False) -> Optional["optuna.Study"]:
    """The study of ``run``'s grid point (None when it does not exist and ``create`` is false)."""
    import optuna

    if not (create or journal_path(g).is_file()):
        return None
    storage = open_journal_for_writing(journal_path(g))
    name = study_name(g, run)
    if create:
        return optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                   direction=run.stage.tune.direction)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def model_of(run: Run) -> Any:
    return run.given.get("model")


def _trial_record(run: Run) -> Optional[dict]:
    path = run.folder / TRIAL_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


@dataclass
class Prepared:
    """A trial run ready to execute (or to skip): its Optuna trial number and the values it runs with."""

    run: Run
    number: int
    values: dict
    state: str  # the Optuna trial's state: RUNNING, COMPLETE, FAIL, ...


def open_study(g: Grid, run: Run) -> "optuna.Study":
    """The study of ``run``'s grid point, created if new; a study whose tuning setup changed is refused."""
    study = study_of(g, run, create=True)
    _check_fingerprint(g, study, run)
    return study


def reset_studies(g: Grid, groups: list[list[Run]]) -> None:
    """Delete these studies and their trial folders (``--force``)."""
    import shutil

    import optuna

    for grp in groups:
        if study_of(g, grp[0]) is not None:
            optuna.delete_study(study_name=study_name(g, grp[0]), storage=open_journal_for_writing(journal_path(g)))
        for run in grp:
            if run.folder.is_dir() and g.output_root in run.folder.parents:
                shutil.rmtree(run.folder)


def _check_fingerprint(g: Grid, study: "optuna.Study", run: Run) -> None:
    wanted = run.stage.tune.fingerprint(model_of(run))
    have = study.user_attrs.get("fingerprint")
    if have is None:
        study.set_user_attr("fingerprint", wanted)
        study.set_user_attr("trials", run.stage.tune.trials)
    elif have != wanted:
        raise GridError(f"{g.path}: stage '{run.stage.name}': the tuning setup of study {study.study_name!r} changed "
                        f"since it began (objective, sampler, seed or search space); run with --force to start it "
                        f"again, or use another output_root")


def prepare_trial(g: Grid, study: "optuna.Study", run: Run) -> Prepared:
    """The trial ``run`` stands for: the recorded one (``trial.json``) when it exists and has not failed, a re-ask
    with the same values when it failed, else a new one drawn by the seeded sampler."""
    import optuna

    spec: TuneSpec = run.stage.tune
    space = spec.space_for(model_of(run))
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    rec = _trial_record(run)
    if rec is not None and rec.get("study") == study.study_name and rec.get("number") in by_number:
        trial = by_number[rec["number"]]
        if trial.state != optuna.trial.TrialState.FAIL:
            return Prepared(run, trial.number, dict(rec["values"]), trial.state.name)
        study.enqueue_trial(dict(rec["values"]), skip_if_exists=False)
    trial, values = draw(study, spec, space)
    trial.set_user_attr("run", run.name)
    runs.write_text(run.folder / TRIAL_FILE, json.dumps(
        {"study": study.study_name, "number": trial.number, "values": values, "objective": spec.objective,
         "direction": spec.direction}, indent=1))
    return Prepared(run, trial.number, values, "RUNNING")


def objective_value(run: Run) -> float:
    """The run's validation ``objective`` (its ``metrics.json`` ``valid`` section); never reads ``test``."""
    spec: TuneSpec = run.stage.tune
    metrics = metrics_file.read_metrics(run.folder)
    valid = metrics.get("valid") or {}
    if spec.objective not in valid:
        raise UserError(f"{run.folder / metrics_file.METRICS}: no validation metric {spec.objective!r}; it has "
                        f"{sorted(valid)}")
    value = float(valid[spec.objective])
    if not math.isfinite(value):
        raise UserError(f"{run.folder / metrics_file.METRICS}: validation {spec.objective} is {value}")
    return value


def tell(study: "optuna.Study", prep: Prepared, status: dict) -> Optional[str]:
    """Report a finished trial run to its study; returns an error line when the trial failed."""
    import optuna

    state = optuna.trial.TrialState
    if status.get("status") != "ok":
        study.tell(prep.number, state=state.FAIL, skip_if_finished=True)
        return None
    try:
        value = objective_value(prep.run)
    except (UserError, OSError) as exc:
        study.tell(prep.number, state=state.FAIL, skip_if_finished=True)
        return str(exc)
    study.tell(prep.number, value, skip_if_finished=True)
    return None


# -------------------------------------------------------------------------------------------------- best trials
def best_trial(g: Grid, run: Run) -> "optuna.trial.FrozenTrial":
    """The best finished trial of ``run``'s study; DependencyError when there is none yet."""
    import optuna

    study = study_of(g, run)
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))] if study else []
    if not done:
        raise DependencyError(f"study {study_name(g, run)!r} has no finished trial")
    return study.best_trial


def best_run(g: Grid, run: Run) -> Run:
    """The trial run of ``run``'s study that holds its best trial."""
    name = best_trial(g, run).user_attrs.get("run")
    for other in g.runs[run.stage.name]:
        if other.name == name:
            return other
    raise DependencyError(f"study {study_name(g, run)!r}: its best trial's run {name!r} is not in the grid")


def best_values(g: Grid, run: Run) -> dict:
    """The tuned values of the best trial of ``run``'s study (``{parameter or model_config.<key>: value}``)."""
    return dict(best_trial(g, run).params)


def studies_of(g: Grid, stage: Stage) -> list[list[Run]]:
    """The trial runs of a tuning stage grouped by study (grid point), in grid order."""
    groups: dict[str, list[Run]] = {}
    for run in g.runs[stage.name]:
        groups.setdefault(base_name(run), []).append(run)
    return list(groups.values())
