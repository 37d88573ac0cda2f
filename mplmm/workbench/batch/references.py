"""References between stages: ``{stage}``, ``{stage[0]}``, ``{stage[key=value]}``, ``{stage[key]}`` (the run whose
``key`` equals the referring run's: runs of an earlier stage),
``{stage[selector].best}`` (the best trial of a tuning stage's studies) and a stage's ``best_config``.

:func:`resolve_params` gives a run its parameters with every reference replaced by a folder (relative to the grid's
root) and ``output_dir`` injected; with ``status=None`` it only checks them (a dry resolution, when the grid loads).
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..tuning import apply_values
from .grid import INJECTED, REFERENCE, DependencyError, Grid, Run, grid_error, rel_path
from .tune import best_run, best_values, model_of, set_elsewhere, studies_of


@dataclass
class _BestOf:
    """A resolved ``.best`` reference: stands in for a run (only its folder is used)."""

    folder: Path


def _wanted(where: str, run: Run, stage_name: str, selector: str) -> dict[str, str]:
    """The grid values a ``key=value[,key]`` selector asks for; a bare ``key`` means the referring run's own value
    (``{pretrain[seed]}``: the pre-training run with this run's seed)."""
    mine = run.given
    wanted = {}
    for part in selector.split(","):
        k, eq, v = (x.strip() for x in part.partition("="))
        if not k or (eq and not v):
            raise grid_error(where, f"reference {{{stage_name}[{selector}]}}: use an index or key=value / key[,...]")
        if not eq:
            if k not in mine or REFERENCE.search(str(mine[k])):
                raise grid_error(where, f"reference {{{stage_name}[{selector}]}}: '{k}' (this run's own value) is "
                                        f"not a plain parameter of stage '{run.stage.name}'")
            v = str(mine[k])
        wanted[k] = v
    return wanted


def _select(g: Grid, run: Run, stage_name: str, selector: Optional[str]) -> list[Run]:
    where = f"{g.path}: stage '{run.stage.name}'"
    order = [s.name for s in g.stages]
    if stage_name not in g.runs:
        raise grid_error(where, f"reference {{{stage_name}}} names no stage; stages: {order}")
    if order.index(stage_name) >= order.index(run.stage.name):
        raise grid_error(where, f"reference {{{stage_name}}} must name an EARLIER stage")
    targets = g.runs[stage_name]
    if selector is None:
        return targets
    selector = selector.strip()
    if selector.lstrip("-").isdigit():
        i = int(selector)
        if not -len(targets) <= i < len(targets):
            raise grid_error(where, f"reference {{{stage_name}[{i}]}}: stage '{stage_name}' has {len(targets)} run(s)")
        return [targets[i]]
    wanted = _wanted(where, run, stage_name, selector)
    hits = [t for t in targets if all(k in t.keys and str(t.keys[k]) == v for k, v in wanted.items())]
    if len(hits) != 1 and not (hits and hits[0].stage.tune is not None):  # a study's trials may be several
        raise grid_error(where, f"reference {{{stage_name}[{selector}]}} matches {len(hits)} runs of '{stage_name}' "
                                f"(grid points: {[t.point for t in targets]})")
    return hits


def _studies(g: Grid, run: Run, m: "re.Match", match_point: bool = False) -> list[list[Run]]:
    """The studies (trial runs grouped by grid point) a ``{stage[selector].best}`` reference names; with
    ``match_point`` and no selector, the one whose grid point agrees with ``run``'s on the keys they share."""
    where = f"{g.path}: stage '{run.stage.name}'"
    targets = _select(g, run, m.group(1), m.group(2))
    stage = targets[0].stage
    if stage.tune is None:
        raise grid_error(where, f"{m.group(0)}: stage '{stage.name}' is not a tuning stage (it has no 'tune:' block)")
    names = {t.name for t in targets}
    groups = [grp for grp in studies_of(g, stage) if names & {r.name for r in grp}]
    if match_point and m.group(2) is None:
        mine = run.given
        groups = [grp for grp in groups
                  if all(str(v) == str(mine[k]) for k, v in grp[0].point.items() if k in mine)]
        if len(groups) != 1:
            raise grid_error(where, f"best_config {m.group(0)}: run {run.name} matches {len(groups)} studies of "
                                    f"'{stage.name}' on the grid keys they share; name one, e.g. "
                                    f"{{{stage.name}[model=...].best}}")
    return groups


def _best_folder(g: Grid, study: list[Run], status: Optional[dict]) -> Path:
    """The folder of a study's best trial run (the first trial's folder in a dry resolution)."""
    if status is None:
        return study[0].folder
    return best_run(g, study[0]).folder


def best_config_values(g: Grid, run: Run, status: Optional[dict]) -> dict:
    """The tuned values ``run`` takes from its stage's ``best_config`` study (``{}`` in a dry resolution)."""
    m = REFERENCE.fullmatch(run.stage.best_config)
    study = _studies(g, run, m, match_point=True)
    if len(study) != 1:
        raise grid_error(f"{g.path}: stage '{run.stage.name}'",
                         f"best_config {m.group(0)} names {len(study)} studies; pick one with a selector")
    clash = set_elsewhere(study[0][0].stage.tune.space_for(model_of(study[0][0])).values(), run.stage)
    if clash:
        raise grid_error(f"{g.path}: stage '{run.stage.name}'",
                         f"{clash} come from best_config {m.group(0)}; remove them from this stage's params/grid")
    if status is None:
        return {}
    return best_values(g, study[0][0])


def _resolve_string(g: Grid, run: Run, text: str, status: Optional[dict], expand: bool) -> list[str]:
    """Substitute references in ``text``; with ``expand`` a multi-run reference yields one string per run."""
    refs = list(REFERENCE.finditer(text))
    if not refs:
        return [text]
    choices = []
    for m in refs:
        if m.group(3):  # {stage[selector].best}: the folder of each named study's best trial
            studies = _studies(g, run, m)
            if len(studies) > 1 and not expand:
                raise grid_error(f"{g.path}: stage '{run.stage.name}'",
                                 f"{m.group(0)} names {len(studies)} studies; pick one with a selector, or use it "
                                 "inside a list parameter")
            choices.append([_BestOf(_best_folder(g, st, status)) for st in studies])
            continue
        targets = _select(g, run, m.group(1), m.group(2))
        if len(targets) > 1 and not expand:
            raise grid_error(f"{g.path}: stage '{run.stage.name}'",
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
        raise grid_error(f"{g.path}: stage '{run.stage.name}'", f"{text!r}: at most one multi-run reference per string")
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
    params = run.given
    resolved = {k: _resolve_value(g, run, v, status) for k, v in params.items()}
    if run.stage.best_config:
        resolved = apply_values(resolved, best_config_values(g, run, status))
    if run.stage.tune is not None and "evaluate_test" in run.stage.accepted:
        resolved["evaluate_test"] = False  # tuning never evaluates the test split
    resolved[INJECTED] = rel_path(g, run.folder)
    return resolved
