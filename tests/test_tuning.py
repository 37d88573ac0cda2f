"""Tuning stages (Optuna): the grid's ``tune:`` block, equal trials per method, validation objective only, seeded and
resumable studies in the grid's journal file, ``{stage.best}`` references and ``best_config``.

Most tests replace the notebook run by a fake ``execute_run`` (a function of the parameters writes ``metrics.json``),
so they take seconds; one test runs notebook 01 for real and checks that a trial never evaluates the test split.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from mplmm import metrics_file
from mplmm.workbench import runs, tuning
from mplmm.workbench.batch import GridError, executors, load_grid, run_grid
from mplmm.workbench.batch import tune as T

ROOT = Path(__file__).resolve().parents[1]
PARAMS_NB = {
    "cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": None, "outputs": [],
               "id": "p",
               "source": 'model: str = "mult"  # model\nlr: float = 1e-3  # learning rate\n'
                         'batch_size: int = 64  # batch size\nseed: int = 0  # seed\n'
                         'model_config: dict = {}  # model keys\nsrc: str = ""  # a folder of an earlier run\n'
                         'evaluate_test: bool = True  # test split\noutput_dir: str = "."  # run folder'}],
    "metadata": {"kernelspec": {"name": "mplmm", "display_name": "Python (mplmm)", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}
SPACE = {"lr": {"log_uniform": [1.0e-4, 1.0e-1]}, "batch_size": {"categorical": [16, 32, 64]}}


def score(params: dict) -> float:
    """The fake run's validation objective: best at lr = 10^-2.5, batch 32; mplmm gains with prompt_length."""
    lr, batch = params.get("lr", 1e-3), params.get("batch_size", 64)  # the notebook defaults when not given
    value = 0.9 - 0.05 * (math.log10(lr) + 2.5) ** 2 - (0.02 if batch != 32 else 0.0)
    return value + 0.001 * (params.get("model_config") or {}).get("prompt_length", 0)


class FakeRuns:
    """``execute_run`` without a kernel: writes the run folder from the parameters; can fail or stop chosen runs."""

    def __init__(self, fail: tuple = (), interrupt: tuple = ()) -> None:
        self.fail, self.interrupt, self.calls = set(fail), set(interrupt), []

    def __call__(self, job: dict) -> dict:
        folder = Path(job["folder"])
        folder.mkdir(parents=True, exist_ok=True)
        self.calls.append((folder.name, job["params"]))
        status = {"run": folder.name, "stage": job["stage"], "params": job["params"], "point": job["point"],
                  "status": "running", "no_input": job["no_input"], "standalone": not job["static"]}
        runs.write_status(folder, status)
        if folder.name in self.interrupt:
            self.interrupt.discard(folder.name)
            raise KeyboardInterrupt  # the batch stops here: the trial stays RUNNING in the study
        import nbformat

        nbformat.write(nbformat.v4.new_notebook(), folder / "notebook.ipynb")
        if folder.name in self.fail:
            self.fail.discard(folder.name)
            status.update(status="failed", error={"name": "RuntimeError", "message": "boom", "cell": 1})
        else:
            test = {} if job["params"].get("evaluate_test") is False else {"Non0_acc_2": 99.0}
            metrics_file.write_metrics(folder, {"model": job["params"]["model"],
                                                "valid": {"Non0_acc_2": score(job["params"])},
                                                "test": test, "primary_metric": "Non0_acc_2"})
            status["status"] = "ok"
        runs.write_status(folder, status)
        return status


@pytest.fixture
def fake(monkeypatch):
    holder = {"runs": FakeRuns()}
    real = executors.make_executor

    def make(kind, g, jobs=None, gpus=None, jobs_per_gpu=1, slurm=None):
        real(kind, g, jobs, gpus, jobs_per_gpu, slurm)  # still checks the options
        return executors.LocalExecutor(1, None, run_fn=lambda job: holder["runs"](job))

    monkeypatch.setattr(executors, "make_executor", make)
    return holder


def _grid(tmp_path: Path, tune: dict, extra_stages: list | None = None, models=("mult_zero", "comp")) -> Path:
    nb = tmp_path / "params.ipynb"
    nb.write_text(json.dumps(PARAMS_NB))
    stages = [{"name": "tune", "notebook": str(nb), "grid": {"model": list(models)}, "tune": tune}]
    for st in extra_stages or []:
        stages.append({"notebook": str(nb), **st})
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"name": "g", "output_root": str(tmp_path / "out"), "stages": stages},
                                   sort_keys=False))
    return path


def _study(tmp_path: Path, name: str):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "out" / tuning.JOURNAL)))
    return optuna.load_study(study_name=f"g/{name}", storage=storage)


def _complete(study) -> list:
    import optuna

    return study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))


# ------------------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("tune, pattern", [
    ({"objective": "Non0_acc_2", "space": SPACE}, r"tune: key 'trials': expected an integer >= 1, got nothing"),
    ({"trials": 2, "space": SPACE}, r"tune: key 'objective': expected a string, got nothing"),
    ({"trials": 2, "objective": "Non0_acc2", "space": SPACE}, "did you mean 'Non0_acc_2'"),
    ({"trials": 2, "objective": "Non0_acc_2", "space": SPACE, "sampler": "cma"},
     r"tune: key 'sampler': expected one of 'tpe', 'random', 'grid', got 'cma'"),
    ({"trials": 2, "objective": "Non0_acc_2", "space": SPACE, "trails": 3},
     r"tune: unknown key 'trails' \(did you mean 'trials'\?\); accepted: direction, objective, "),
    ({"trials": 2, "objective": "Non0_acc_2", "space": {"lr": {"loguniform": [1e-4, 1e-2]}}},
     "did you mean 'log_uniform'"),
    ({"trials": 2, "objective": "Non0_acc_2", "space": {"lr": {"log_uniform": [0.0, 1.0e-2]}}}, "needs low > 0"),
    ({"trials": 2, "objective": "Non0_acc_2", "space": {"lr": {"uniform": [0.1, 0.01]}}}, "needs low < high"),
    ({"trials": 2, "objective": "Non0_acc_2", "space": {"batch_size": {"uniform": [8, 64]}}},
     "does not fit the int parameter"),
    ({"trials": 2, "objective": "Non0_acc_2", "space": {"epochs": {"int": [1, 5]}}}, "not a tunable parameter"),
    ({"trials": 2, "objective": "Non0_acc_2", "space": {"model_config.dropout": {"uniform": [0.0, 0.5]}}},
     "model 'comp': unknown key 'dropout'"),
    ({"trials": 2, "objective": "Non0_acc_2", "space": {"model_config.out_dropout": {"uniform": [0.0, 1.5]}}},
     "out_dropout"),
    ({"trials": 2, "objective": "Non0_acc_2", "space": SPACE, "spaces": {"mplmm": {"lr": {"uniform": [0, 1]}}}},
     "'mplmm' is not a model of this stage"),
    ({"trials": 2, "objective": "Non0_acc_2", "space": {"model": {"categorical": ["comp"]}}},
     "not a tunable parameter"),
    ({"trials": 2, "objective": "my_score", "space": SPACE}, "give direction: maximize or minimize"),
    ({"trials": 2, "objective": "Non0_acc_2", "space": SPACE, "sampler": "grid"}, "categorical dimensions only"),
])
def test_tune_block_is_validated_before_anything_runs(tmp_path, tune, pattern):
    with pytest.raises(GridError, match=pattern) as info:
        load_grid(_grid(tmp_path, tune))
    assert "stage 'tune': tune" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_searched_and_fixed_at_once_is_refused(tmp_path):
    path = _grid(tmp_path, {"trials": 2, "objective": "Non0_acc_2", "space": SPACE})
    spec = yaml.safe_load(path.read_text())
    spec["stages"][0]["params"] = {"lr": 0.01}
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(GridError, match="'lr' is both searched and set"):
        load_grid(path)
    spec["stages"][0]["params"] = {"evaluate_test": True}
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(GridError, match="evaluate_test' is set by the tuner"):
        load_grid(path)


def test_trial_runs_and_their_folders(tmp_path):
    g = load_grid(_grid(tmp_path, {"trials": 3, "objective": "Non0_acc_2", "space": SPACE}))
    names = [r.name for r in g.runs["tune"]]
    assert names == [f"tune__model={m}__trial={k}" for m in ("mult_zero", "comp") for k in range(3)]
    assert [len(s) for s in T.studies_of(g, g.stages[0])] == [3, 3]
    spec = g.stages[0].tune
    assert (spec.direction, spec.sampler, spec.startup_trials) == ("maximize", "tpe", 2)


# ------------------------------------------------------------------------------------------------------ running
def test_equal_trials_validation_objective_and_best_config(tmp_path, fake):
    later = [{"name": "retrain", "best_config": "{tune.best}",
              "grid": {"model": ["mult_zero", "comp"], "seed": [0, 1]}},
             {"name": "use", "params": {"model": "comp", "src": "{tune[model=comp].best}"}}]
    tune = {"trials": 4, "objective": "Non0_acc_2", "seed": 3, "space": SPACE,
            "spaces": {"comp": {"model_config.hidden": {"categorical": [16, 32]}}}}
    run_grid(_grid(tmp_path, tune, later), root=ROOT, progress=False)
    out = tmp_path / "out"
    for model in ("mult_zero", "comp"):
        study = _study(tmp_path, f"tune__model={model}")
        done = _complete(study)
        assert len(done) == 4  # the same budget for every method
        for t in done:  # the objective is the validation metric of that trial's run, never its test metric
            folder = out / t.user_attrs["run"]
            assert t.value == pytest.approx(metrics_file.read_metrics(folder)["valid"]["Non0_acc_2"])
            assert metrics_file.read_metrics(folder)["test"] == {}  # evaluate_test=false reached the notebook
            rec = json.loads((folder / T.TRIAL_FILE).read_text())
            assert rec["number"] == t.number and rec["values"] == t.params
        assert ("model_config.hidden" in study.best_params) == (model == "comp")
    calls = dict(fake["runs"].calls)
    best = _study(tmp_path, "tune__model=comp").best_trial
    retrain = calls["retrain__model=comp__seed=1"]
    assert retrain["lr"] == best.params["lr"] and retrain["batch_size"] == best.params["batch_size"]
    assert retrain["model_config"] == {"hidden": best.params["model_config.hidden"]} and retrain["seed"] == 1
    assert "evaluate_test" not in retrain  # only trials skip the test split
    assert calls["use"]["src"] == str(out / best.user_attrs["run"])
    index = (out / "index.html").read_text()  # history and importance per study, the chosen values, trials used
    assert "<h2>Tuning</h2>" in index
    assert all(f'id="tuning-tune-{i}-{kind}"' in index for i in (0, 1) for kind in ("history", "importance"))
    assert "model_config.hidden=" in index and "4 trials per study" in index
    assert "cdn.plot.ly" not in index and "_static/plotly.min.js" in index  # offline: the shared plotly.js
    # re-running skips everything: no new trials, no runs
    fake["runs"].calls.clear()
    run_grid(_grid(tmp_path, tune, later), root=ROOT, progress=False)
    assert fake["runs"].calls == [] and len(_complete(_study(tmp_path, "tune__model=comp"))) == 4


def test_interrupted_and_failed_trials_resume_with_the_same_values(tmp_path, fake):
    tune = {"trials": 3, "objective": "Non0_acc_2", "space": SPACE}
    path = _grid(tmp_path, tune, models=("comp",))
    fake["runs"] = FakeRuns(fail=("tune__model=comp__trial=0",), interrupt=("tune__model=comp__trial=1",))
    with pytest.raises(KeyboardInterrupt):
        run_grid(path, root=ROOT, progress=False)
    out = tmp_path / "out"
    first = {name: json.loads((out / name / T.TRIAL_FILE).read_text()) for name in
             ("tune__model=comp__trial=0", "tune__model=comp__trial=1")}
    run_grid(path, root=ROOT, progress=False)
    study = _study(tmp_path, "tune__model=comp")
    states = sorted(t.state.name for t in study.trials)
    assert states == ["COMPLETE", "COMPLETE", "COMPLETE", "FAIL"]  # the failed one was asked again as a new trial
    for name, before in first.items():
        after = json.loads((out / name / T.TRIAL_FILE).read_text())
        assert after["values"] == before["values"]  # the same values, run again
    assert json.loads((out / "tune__model=comp__trial=1" / T.TRIAL_FILE).read_text())["number"] == 1


def test_seeded_study_is_the_same_when_continued_later(tmp_path, fake):
    """Trial k is drawn by a sampler seeded with seed + k from the trials before it: 2 trials, then 2 more, give the
    same values as 4 in one go; raising trials continues the study."""
    tune = {"trials": 4, "objective": "Non0_acc_2", "seed": 5, "space": SPACE}
    whole = tmp_path / "whole"
    whole.mkdir()
    run_grid(_grid(whole, tune, models=("comp",)), root=ROOT, progress=False)
    parts = tmp_path / "parts"
    parts.mkdir()
    run_grid(_grid(parts, {**tune, "trials": 2}, models=("comp",)), root=ROOT, progress=False)
    fake["runs"].calls.clear()
    run_grid(_grid(parts, tune, models=("comp",)), root=ROOT, progress=False)
    assert [c[0] for c in fake["runs"].calls] == ["tune__model=comp__trial=2", "tune__model=comp__trial=3"]
    a = [t.params for t in _study(whole, "tune__model=comp").trials]
    b = [t.params for t in _study(parts, "tune__model=comp").trials]
    assert a == b and len({json.dumps(p, sort_keys=True) for p in a}) == 4


def test_changed_search_space_is_refused_and_force_starts_again(tmp_path, fake):
    tune = {"trials": 2, "objective": "Non0_acc_2", "space": SPACE}
    run_grid(_grid(tmp_path, tune, models=("comp",)), root=ROOT, progress=False)
    changed = {**tune, "space": {"lr": {"log_uniform": [1.0e-3, 1.0e-1]}}}
    with pytest.raises(GridError, match="tuning setup of study 'g/tune__model=comp' changed"):
        run_grid(_grid(tmp_path, changed, models=("comp",)), root=ROOT, progress=False)
    run_grid(_grid(tmp_path, changed, models=("comp",)), root=ROOT, progress=False, force=True)
    study = _study(tmp_path, "tune__model=comp")
    assert len(study.trials) == 2 and all(1.0e-3 <= t.params["lr"] <= 1.0e-1 for t in study.trials)


def test_best_reference_before_tuning_finished_is_a_dependency_error(tmp_path, fake):
    later = [{"name": "use", "params": {"model": "comp", "src": "{tune[model=comp].best}"}}]
    fake["runs"] = FakeRuns(fail=("tune__model=comp__trial=0", "tune__model=comp__trial=1"))
    run_grid(_grid(tmp_path, {"trials": 2, "objective": "Non0_acc_2", "space": SPACE}, later, models=("comp",)),
             root=ROOT, progress=False)
    st = runs.read_status(tmp_path / "out" / "use")
    assert st["status"] == "failed" and st["error"]["name"] == "DependencyError"
    assert "has no finished trial" in st["error"]["message"]


def test_best_config_needs_one_matching_study(tmp_path):
    later = [{"name": "retrain", "best_config": "{tune.best}", "params": {"seed": 1}}]
    with pytest.raises(GridError, match="matches 2 studies"):
        load_grid(_grid(tmp_path, {"trials": 2, "objective": "Non0_acc_2", "space": SPACE}, later))
    later = [{"name": "retrain", "best_config": "{tune[model=comp].best}", "params": {"lr": 0.01}}]
    with pytest.raises(GridError, match=r"\['lr'\] come from best_config"):
        load_grid(_grid(tmp_path, {"trials": 2, "objective": "Non0_acc_2", "space": SPACE}, later))
    later = [{"name": "retrain", "best_config": "tune"}]
    with pytest.raises(GridError, match="best_config must be one reference"):
        load_grid(_grid(tmp_path, {"trials": 2, "objective": "Non0_acc_2", "space": SPACE}, later))


def test_default_space_fits_every_registered_model():
    """notebook 05's space for a model: lr, batch size and one key of its own, each valid for that model."""
    from mplmm.models import available_models, validate_model_config
    from mplmm.workbench.tuning import OWN_KEY, default_space

    for model in available_models():
        space = default_space(model)
        assert {"lr", "batch_size"} <= set(space)
        own = [k for k in space if k.startswith("model_config.")]
        assert len(own) == (model in OWN_KEY)
        for key in own:
            for bound in next(iter(space[key].values())):
                validate_model_config(model, {key.split(".", 1)[1]: bound})
    with pytest.raises(Exception, match="unknown model"):
        default_space("mplm")


class _Arrays:
    """A stand-in for submitit.AutoExecutor: records each job array and runs its tasks in this process."""
    made: list = []

    def __init__(self, folder, cluster=None):
        self.arrays = []
        _Arrays.made.append(self)

    def update_parameters(self, **kwargs):
        pass

    def map_array(self, fn, jobs):
        from types import SimpleNamespace

        self.arrays.append(sorted(Path(j["folder"]).name for j in jobs))
        return [SimpleNamespace(job_id=f"9_{i}", done=lambda: True, result=lambda v=fn(j): v,
                                paths=SimpleNamespace(stderr=Path("/logs/x"))) for i, j in enumerate(jobs)]


def test_tuning_on_slurm_one_array_per_wave(tmp_path, monkeypatch):
    """On Slurm every wave is one job array (trial k of every study); the driver asks and tells the studies."""
    import submitit

    monkeypatch.setattr(submitit, "AutoExecutor", _Arrays)
    monkeypatch.setattr(executors, "execute_run", FakeRuns())
    _Arrays.made.clear()
    run_grid(_grid(tmp_path, {"trials": 3, "objective": "Non0_acc_2", "space": SPACE}), root=ROOT, progress=False,
             executor="slurm")
    (ex,) = _Arrays.made
    assert ex.arrays == [[f"tune__model={m}__trial={k}" for m in ("comp", "mult_zero")] for k in range(3)]
    assert all(len(_complete(_study(tmp_path, f"tune__model={m}"))) == 3 for m in ("comp", "mult_zero"))
