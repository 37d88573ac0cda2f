"""Tuning with Optuna: search spaces and seeded samplers, studies in journal files, their tables and figures, and
tuning a model on your own data in this process. The grids' ``tune:`` stages (:mod:`mplmm.workbench.batch.tune`,
where every trial is a run folder) use the same spaces, samplers and journal.

* :class:`Dimension` / :func:`parse_dimension` — one searched parameter in the grid syntax
  (``{log_uniform: [1.0e-4, 1.0e-2]}``); :class:`TuneSpec` — trials, objective, direction, sampler, seed and space;
  :func:`objective_direction`, :func:`make_sampler`, :func:`draw` and :func:`apply_values`;
* :func:`open_journal` / :func:`study_names` / :func:`load_study` — the studies of a journal file (a grid's
  ``<output_root>/optuna_journal.log``: one study per method of each tuning stage);
* :func:`study_table` — one row per study: trials complete / failed, best value, best trial's run and values;
* :func:`trials_frame` — one row per trial (number, state, value, values, run);
* :func:`history_figure`, :func:`importance_figure`, :func:`slice_figure`, :func:`parallel_figure` — Optuna's
  plotly figures with our titles (offline: plain ``plotly.graph_objects.Figure``);
* :func:`tune` — an Optuna study over :func:`mplmm.train.train` on a dataset in memory (validation objective; the
  test split is never evaluated), for a notebook or a script on your own data.

Parameter importances use Optuna's PED-ANOVA evaluator (numpy only; fANOVA would need scikit-learn).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Union

import pandas as pd

from ..errors import ConfigError, UserError, closest

if TYPE_CHECKING:  # pragma: no cover
    import optuna
    import plotly.graph_objects as go

    from ..data import MultimodalDataset

PathLike = Union[str, os.PathLike]
JOURNAL = "optuna_journal.log"  # a grid keeps its studies in <output_root>/optuna_journal.log
#: distribution name → what its value must be
DISTRIBUTIONS = {"uniform": "[low, high]", "log_uniform": "[low, high] with low > 0", "int": "[low, high] integers",
                 "log_int": "[low, high] integers >= 1", "categorical": "a non-empty list of choices"}
SAMPLERS = ("tpe", "random", "grid")
MODEL_PREFIX = "model_config."
DIRECTIONS = {"maximize": "maximize", "minimize": "minimize", "higher": "maximize", "lower": "minimize"}


class StudyError(UserError):
    """A journal file or study that is not there (or not readable)."""


def _optuna():
    try:
        import optuna
    except ImportError as exc:  # pragma: no cover - optuna is in the [tune] extra, which [all] includes
        raise UserError("tuning needs optuna: pip install 'mplmm[tune]'") from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# ------------------------------------------------------------------------------------------ journals and studies
def open_journal(path: PathLike):
    """The Optuna storage of a journal file, or of ``<folder>/optuna_journal.log`` for a grid's output root."""
    _optuna()
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = Path(path)
    if path.is_dir():
        path = path / JOURNAL
    if not path.is_file():
        raise StudyError(f"{path}: no Optuna journal here (a grid with a tune: stage writes "
                         f"<output_root>/{JOURNAL})")
    return JournalStorage(JournalFileBackend(str(path)))


def open_journal_for_writing(path: PathLike):
    """A journal storage at ``path`` (created with its folder if new)."""
    _optuna()
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def study_names(path: PathLike) -> list[str]:
    """The names of the studies in a journal file (or a grid's output root), in creation order."""
    storage = open_journal(path)
    return [s.study_name for s in _optuna().get_all_study_summaries(storage=storage, include_best_trial=False)]


def load_study(path: PathLike, name: Optional[str] = None) -> "optuna.Study":
    """One study of a journal file; ``name`` may be the full name, its part after ``/`` (the run folder, e.g.
    ``tune_scratch__model=comp``) or a unique substring (``model=comp``); the only study when omitted."""
    names = study_names(path)
    if name is None:
        if len(names) != 1:
            raise StudyError(f"{path}: {len(names)} studies; name one of {names}")
        chosen = names[0]
    else:
        hits = [n for n in names if n == name] or [n for n in names if n.split("/", 1)[-1] == name] or \
            [n for n in names if name in n]
        if len(hits) != 1:
            raise StudyError(f"{path}: study {name!r} matches {len(hits)} of {names}")
        chosen = hits[0]
    return _optuna().load_study(study_name=chosen, storage=open_journal(path))


def short_name(study: "optuna.Study") -> str:
    """A study's name without the grid prefix (``tune_scratch__model=comp``)."""
    return study.study_name.split("/", 1)[-1]


def trials_frame(study: "optuna.Study") -> pd.DataFrame:
    """One row per trial: number, state, value, run (the trial's run folder, when it came from a grid) and one
    column per searched parameter."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"number": t.number, "state": t.state.name, "value": t.value, "run": t.user_attrs.get("run", ""),
                     **t.params})
    return pd.DataFrame(rows)


def study_table(studies: list["optuna.Study"]) -> pd.DataFrame:
    """One row per study: study, direction, trials, complete, failed, best value, best trial, its run and values
    (``best_params`` as JSON)."""
    optuna = _optuna()
    rows = []
    for st in studies:
        trials = st.get_trials(deepcopy=False)
        done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = st.best_trial if done else None
        rows.append({"study": short_name(st), "direction": st.direction.name.lower(), "trials": len(trials),
                     "complete": len(done),
                     "failed": sum(t.state == optuna.trial.TrialState.FAIL for t in trials),
                     "best_value": best.value if best else math.nan, "best_trial": best.number if best else None,
                     "best_run": best.user_attrs.get("run", "") if best else "",
                     "best_params": json.dumps(best.params if best else {}, sort_keys=True)})
    return pd.DataFrame(rows)


def _done(study: "optuna.Study") -> int:
    optuna = _optuna()
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


# ------------------------------------------------------------------------------- search spaces and sampling
@dataclass
class Dimension:
    """One searched parameter: a notebook parameter or ``model_config.<key>``."""

    name: str
    kind: str  # a key of DISTRIBUTIONS
    values: list

    @property
    def model_key(self) -> Optional[str]:
        return self.name[len(MODEL_PREFIX):] if self.name.startswith(MODEL_PREFIX) else None

    def suggest(self, trial: "optuna.Trial") -> Any:
        lo, hi = (self.values + [None, None])[:2]
        if self.kind == "uniform":
            return trial.suggest_float(self.name, lo, hi)
        if self.kind == "log_uniform":
            return trial.suggest_float(self.name, lo, hi, log=True)
        if self.kind in ("int", "log_int"):
            return trial.suggest_int(self.name, lo, hi, log=self.kind == "log_int")
        return trial.suggest_categorical(self.name, self.values)

    def samples(self) -> list:
        """Values to validate the dimension with (its bounds, or every choice)."""
        return list(self.values)

    def spec(self) -> dict:
        return {self.kind: list(self.values)}


@dataclass
class TuneSpec:
    """A stage's validated ``tune:`` block."""

    trials: int
    objective: str
    direction: str  # "maximize" or "minimize"
    sampler: str
    seed: int
    startup_trials: int
    space: dict[str, Dimension]
    spaces: dict[str, dict[str, Dimension]] = field(default_factory=dict)  # by model name

    def space_for(self, model: Any) -> dict[str, Dimension]:
        """The dimensions searched for a run of ``model``: the common space plus that model's own."""
        return {**self.space, **self.spaces.get(str(model), {})}

    def fingerprint(self, model: Any) -> str:
        """What must not change while a study runs (JSON): objective, direction, sampler, seed and the space."""
        return json.dumps({"objective": self.objective, "direction": self.direction, "sampler": self.sampler,
                           "seed": self.seed, "startup_trials": self.startup_trials,
                           "space": {k: d.spec() for k, d in sorted(self.space_for(model).items())}},
                          sort_keys=True)


def hint(name: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the choice closest to ``name``, or ``""``."""
    found = closest(name, choices)
    return f" (did you mean '{found}'?)" if found else ""


def parse_dimension(name: str, spec: Any, where: str, error: Callable[[str], Exception] = ConfigError) -> Dimension:
    """One searched parameter from its grid syntax (``{log_uniform: [1.0e-4, 1.0e-2]}``); a mistake raises ``error``
    with a message starting ``<where>: dimension '<name>'``."""
    w = f"{where}: dimension '{name}'"

    def _err(where: str, msg: str) -> Exception:
        return error(f"{where}: {msg}")

    if not isinstance(spec, dict) or len(spec) != 1:
        raise _err(w, f"write one distribution, e.g. {{log_uniform: [1.0e-4, 1.0e-2]}}; "
                      f"distributions: {', '.join(DISTRIBUTIONS)}")
    kind, values = next(iter(spec.items()))
    if kind not in DISTRIBUTIONS:
        raise _err(w, f"unknown distribution {kind!r}{hint(kind, DISTRIBUTIONS)}; "
                      f"accepted: {', '.join(DISTRIBUTIONS)}")
    if not isinstance(values, list) or not values:
        raise _err(w, f"{kind} needs {DISTRIBUTIONS[kind]}, got {values!r}")
    if kind == "categorical":
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise _err(w, f"categorical choices must differ, got {values!r}")
        return Dimension(name, kind, list(values))
    if len(values) != 2:
        raise _err(w, f"{kind} needs {DISTRIBUTIONS[kind]}, got {values!r}")
    if kind in ("int", "log_int"):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise _err(w, f"{kind} needs {DISTRIBUTIONS[kind]}, got {values!r}")
    else:
        try:
            values = [float(v) for v in values]  # PyYAML reads 1e-3 as a string
        except (TypeError, ValueError):
            raise _err(w, f"{kind} needs {DISTRIBUTIONS[kind]}, got {values!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise _err(w, f"{kind} bounds must be finite, got {values!r}")
    lo, hi = values
    if not lo < hi:
        raise _err(w, f"{kind} needs low < high, got {values!r}")
    if kind.startswith("log") and lo <= 0:
        raise _err(w, f"{kind} needs low > 0 (log scale), got {values!r}")
    return Dimension(name, kind, list(values))


def objective_direction(objective: str, direction: Optional[str] = None) -> str:
    """``"maximize"`` / ``"minimize"`` for ``objective``: ``direction`` when given (checked), else from the metric
    (``loss`` is minimised); an unknown metric without a direction is a :class:`~mplmm.errors.UserError`."""
    from ..metrics import METRIC_DIRECTION, metric_direction

    if direction is not None:
        if direction not in DIRECTIONS:
            raise UserError(f"direction: expected maximize or minimize, got {direction!r}")
        return DIRECTIONS[direction]
    if objective == "loss":
        return "minimize"
    try:
        return "maximize" if metric_direction(objective) == "higher" else "minimize"
    except KeyError:
        raise UserError(f"objective {objective!r} is not a known metric{hint(objective, METRIC_DIRECTION)}; "
                        "give direction: maximize or minimize for a metric of your own") from None


def make_sampler(spec: TuneSpec, space: dict[str, Dimension], number: int):
    """The sampler that draws trial ``number``: seeded with ``seed + number``, so a study resumed after an
    interruption draws what it would have drawn."""
    import optuna

    seed = spec.seed + number
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "grid":
        return optuna.samplers.GridSampler({d.name: d.values for d in space.values()}, seed=spec.seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.startup_trials)


def draw(study: "optuna.Study", spec: TuneSpec, space: dict[str, Dimension]) -> tuple["optuna.Trial", dict]:
    """Ask ``study`` for its next trial with the sampler seeded for that trial number; returns the trial and its
    values (an enqueued trial's values when one is waiting)."""
    study.sampler = make_sampler(spec, space, len(study.get_trials(deepcopy=False)))
    trial = study.ask()
    return trial, {name: dim.suggest(trial) for name, dim in space.items()}


def apply_values(params: dict, values: dict) -> dict:
    """``params`` with tuned ``values`` set: notebook parameters replaced, ``model_config.<key>`` merged into
    ``model_config``."""
    out = dict(params)
    cfg = dict(out.get("model_config") or {})
    for name, value in values.items():
        if name.startswith(MODEL_PREFIX):
            cfg[name[len(MODEL_PREFIX):]] = value
        else:
            out[name] = value
    if cfg or "model_config" in out:
        out["model_config"] = cfg
    return out


# ---------------------------------------------------------------------------------------------------- figures
def history_figure(study: "optuna.Study", objective: str = "objective") -> "go.Figure":
    """Objective value per trial and the best so far (Optuna's optimisation history)."""
    fig = _optuna().visualization.plot_optimization_history(study, target_name=objective)
    fig.update_layout(title=f"{short_name(study)} · {objective} per trial", height=360)
    return fig


def importance_figure(study: "optuna.Study", objective: str = "objective") -> Optional["go.Figure"]:
    """Parameter importances (PED-ANOVA) — None with fewer than 3 finished trials or nothing that varied."""
    optuna = _optuna()
    if _done(study) < 3 or not study.best_trial.params:
        return None
    from optuna.importance import PedAnovaImportanceEvaluator

    try:
        # target_quantile 0.5: "good" = the better half of the trials (the default 0.1 needs dozens of trials)
        fig = optuna.visualization.plot_param_importances(
            study, evaluator=PedAnovaImportanceEvaluator(target_quantile=0.5), target_name=objective)
    except (ValueError, RuntimeError, ZeroDivisionError):
        return None
    fig.update_layout(title=f"{short_name(study)} · parameter importance (PED-ANOVA)", height=320)
    return fig


def slice_figure(study: "optuna.Study", objective: str = "objective") -> "go.Figure":
    """Objective value against each parameter (one panel per parameter)."""
    fig = _optuna().visualization.plot_slice(study, target_name=objective)
    fig.update_layout(title=f"{short_name(study)} · {objective} against each parameter")
    return fig


def parallel_figure(study: "optuna.Study", objective: str = "objective") -> "go.Figure":
    """All trials across all parameters (parallel coordinates)."""
    fig = _optuna().visualization.plot_parallel_coordinate(study, target_name=objective)
    fig.update_layout(title=f"{short_name(study)} · trials across parameters")
    return fig


# ---------------------------------------------------------------------------------------------- tuning in process
#: one regularisation or size key per registered model, searched by :func:`default_space` (as in tune_mosi.yaml)
OWN_KEY: dict[str, tuple[str, dict]] = {
    "mult": ("out_dropout", {"uniform": [0.0, 0.4]}),
    "mult_zero": ("out_dropout", {"uniform": [0.0, 0.4]}),
    "mult_dropout": ("out_dropout", {"uniform": [0.0, 0.4]}),
    "mplmm": ("prompt_length", {"int": [4, 32]}),
    "dcp": ("n_prompt", {"int": [2, 8]}),
    "emt_dlfr": ("post_fusion_dropout", {"uniform": [0.0, 0.4]}),
    "mmml": ("head_dropout", {"uniform": [0.0, 0.5]}),
    "comp": ("drop_rate", {"uniform": [0.0, 0.4]}),
}


def default_space(model: str) -> dict:
    """A small search space for ``model`` in the grid syntax: ``lr`` (log-uniform 1e-4–1e-2), batch size (16, 32,
    64) and the model's own key from :data:`OWN_KEY` (none for a model not listed)."""
    from ..models import model_class

    model_class(model)  # an unknown model: one line naming the registered ones
    space: dict = {"lr": {"log_uniform": [1.0e-4, 1.0e-2]}, "batch_size": {"categorical": [16, 32, 64]}}
    if model in OWN_KEY:
        key, dist = OWN_KEY[model]
        space[f"model_config.{key}"] = dist
    return space


def tune(ds: "MultimodalDataset", space: dict, *, model: str, trials: int, objective: str = "MAE",
         direction: Optional[str] = None, seed: int = 0, startup_trials: Optional[int] = None,
         storage: Optional[PathLike] = None, study_name: str = "tune", **fields: Any) -> "optuna.Study":
    """Tune ``model`` on ``ds`` in this process: ``trials`` Optuna trials (TPE, trial k seeded ``seed + k``), each a
    :func:`mplmm.train.train` run with the sampled values and ``evaluate_test=False``, scored by its **validation**
    ``objective``. ``space`` uses the grid syntax (``{"lr": {"log_uniform": [1e-4, 3e-3]},
    "model_config.d": {"categorical": [16, 32]}}``); ``fields`` are fixed TrainConfig fields (``epochs``,
    ``train_rate``, ``model_config``...). ``storage``: a journal file to keep the study in (default: memory)."""
    optuna = _optuna()
    from ..models import validate_model_config
    from ..train import TrainConfig, train
    from .batch.grid import GridError  # the space is in the grid syntax: its mistakes read as a grid's

    if not isinstance(space, dict) or not space:
        raise ConfigError("tune: space must be a non-empty mapping of parameter → distribution")
    dims = {str(k): parse_dimension(str(k), v, "tune: space", GridError) for k, v in space.items()}
    fixed_cfg = dict(fields.pop("model_config", {}) or {})
    known = set(TrainConfig.__dataclass_fields__) - {"model", "model_config", "evaluate_test"}
    for name, dim in dims.items():
        if dim.model_key is not None:
            for value in dim.samples():
                validate_model_config(model, {dim.model_key: value})
        elif name not in known:
            raise ConfigError(f"tune: space: {name!r} is not a TrainConfig field or {MODEL_PREFIX}<model key>")
    try:
        direction = objective_direction(objective, direction)
    except UserError as exc:
        raise ConfigError(f"tune: {exc}") from None
    spec = TuneSpec(trials, objective, direction, "tpe", seed, startup_trials or max(2, trials // 3), dims)
    store = open_journal_for_writing(storage) if storage else None
    study = optuna.create_study(study_name=study_name, storage=store, direction=spec.direction, load_if_exists=True)
    fields = {"progress": False, **fields}
    while _done(study) < trials:
        trial, values = draw(study, spec, dims)
        cfg = TrainConfig(model=model, evaluate_test=False,
                          **apply_values({**fields, "model_config": fixed_cfg}, values)).validate()
        result = train(cfg, ds, None)
        value = float(result.metrics["valid"].get(objective, math.nan))
        if math.isfinite(value):
            study.tell(trial, value)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        if len(study.trials) >= 3 * trials:  # every trial failing: stop instead of looping forever
            raise UserError(f"tune: {len(study.trials)} trials, {_done(study)} finished; objective {objective!r} "
                            f"not in the validation metrics {sorted(result.metrics['valid'])}?")
    return study
