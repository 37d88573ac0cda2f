"""Batch executors: the GPU pool on one machine and Slurm job arrays through submitit.

Tested on CPU only: GPUs are faked (``CUDA_VISIBLE_DEVICES`` and an explicit ``gpus``), the Slurm path runs through
submitit's local executor (``executor="slurm-local"``), a fake ``AutoExecutor`` or a fake ``sbatch`` on ``PATH``.
"""
from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from mplmm.workbench.batch import GridError, ensure_kernel, executors, load_grid, run_grid
from mplmm.workbench.batch.executors import GpuPool, LocalExecutor, SubmititExecutor, make_executor, parse_gpus

ROOT = Path(__file__).resolve().parents[1]
ENV_NB = {
    "cells": [
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": None, "outputs": [], "id": "p",
         "source": 'value: int = 1  # a number\nsrc: str = ""  # a file of an earlier run\n'
                   'pause: float = 0.0  # seconds to sleep\noutput_dir: str = "."  # run folder'},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "id": "w",
         "source": "import json, os, pathlib, time\n"
                   "t0 = time.time()\n"
                   "time.sleep(pause)\n"
                   "seen = {'value': value, 'cuda': os.environ.get('CUDA_VISIBLE_DEVICES'), 't0': t0, 't1': time.time(),\n"
                   "        'omp': os.environ.get('OMP_NUM_THREADS'), 'src_seen': pathlib.Path(src).is_file() if src else None}\n"
                   "pathlib.Path(output_dir, 'metrics.json').write_text(json.dumps(seen))"},
    ],
    "metadata": {"kernelspec": {"name": "mplmm", "display_name": "Python (mplmm)", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def _grid(tmp_path: Path, stages: list[dict], **top) -> Path:
    nb = tmp_path / "env.ipynb"
    nb.write_text(json.dumps(ENV_NB))
    spec = {"name": "g", "output_root": str(tmp_path / "out"), **top,
            "stages": [{"notebook": str(nb), **s} for s in stages]}
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


TWO_STAGES = [{"name": "first", "grid": {"value": [1, 2]}},
              {"name": "second", "params": {"src": "{first[value=1]}/metrics.json"}}]


def _status(folder: Path) -> dict:
    return json.loads((folder / "status.json").read_text())


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one instant."""
    events = sorted([(t0, 1) for t0, _ in intervals] + [(t1, -1) for _, t1 in intervals])
    best = now = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


# ------------------------------------------------------------------------------------------------------- GPU pool
def test_parse_gpus_follows_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,3")
    assert parse_gpus(None) == ["0", "1", "3"] and parse_gpus("3,0") == ["3", "0"] and parse_gpus([1]) == ["1"]
    assert parse_gpus("none") == [] and parse_gpus([]) == []
    with pytest.raises(GridError, match=r"unknown GPU '2'; visible GPUs: 0, 1, 3"):
        parse_gpus("0,2")
    with pytest.raises(GridError, match="listed twice; use --jobs-per-gpu"):
        parse_gpus("1,1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,-1,2")  # CUDA stops at an invalid entry
    assert parse_gpus(None) == ["1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert parse_gpus(None) == []
    with pytest.raises(GridError, match="unknown GPU '0'; visible GPUs: none"):
        parse_gpus("0")


def test_gpu_pool_is_thread_safe_and_returns_slots():
    fresh = GpuPool(["a", "b", "c"], 2)
    assert [fresh._free.get() for _ in range(6)] == ["a", "b", "c"] * 2  # round robin over the GPUs
    pool, lock = GpuPool(["a", "b", "c"], 2), threading.Lock()
    held, peak = dict.fromkeys("abc", 0), dict.fromkeys("abc", 0)

    def worker():
        for _ in range(15):
            with pool.take() as gpu:
                with lock:
                    held[gpu] += 1
                    peak[gpu] = max(peak[gpu], held[gpu])
                time.sleep(0.002)
                with lock:
                    held[gpu] -= 1

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(peak.values()) == 2 and set(held.values()) == {0}
    with pytest.raises(RuntimeError):
        with pool.take():
            raise RuntimeError("a failed run")
    assert pool._free.qsize() == pool.size == 6  # every slot came back


def _fake_run(job: dict) -> dict:
    """Stands in for execute_run in the worker processes: records its GPU and when it ran."""
    t0 = time.time()
    time.sleep(0.4)
    rec = {"status": "ok", "gpu": job.get("gpu"), "cuda": job["env"].get("CUDA_VISIBLE_DEVICES"), "t0": t0,
           "t1": time.time(), "omp": job["env"].get("OMP_NUM_THREADS")}
    Path(job["folder"]).mkdir(parents=True, exist_ok=True)
    return rec


def test_local_executor_never_exceeds_k_runs_per_gpu(tmp_path):
    ex = LocalExecutor(jobs=8, gpus=GpuPool(["0", "1"], per_gpu=2), run_fn=_fake_run)
    assert ex.jobs == 4  # capped at the pool's slots
    items = [(f"r{i}", {"folder": str(tmp_path / f"r{i}")}) for i in range(10)]
    try:
        results = dict(ex.run(items))
    finally:
        ex.close()
    assert sorted(results) == sorted(name for name, _ in items)
    assert all(st["gpu"] == st["cuda"] and st["gpu"] in ("0", "1") for st in results.values())
    assert {st["gpu"] for st in results.values()} == {"0", "1"}
    for gpu in ("0", "1"):
        assert _max_overlap([(st["t0"], st["t1"]) for st in results.values() if st["gpu"] == gpu]) <= 2
    assert 2 <= _max_overlap([(st["t0"], st["t1"]) for st in results.values()]) <= 4


def test_executor_options_are_checked_before_running(tmp_path, monkeypatch, capsys):
    from mplmm.cli import main  # imported here: worker processes importing this module stay light (no torch)

    g = load_grid(_grid(tmp_path, TWO_STAGES), root=ROOT)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    ex = make_executor("local", g)
    assert ex.jobs == 2 and ex.gpus.gpus == ["0", "1"] and ex.gpus.per_gpu == 1  # --jobs: GPUs × k
    assert make_executor("local", g, jobs_per_gpu=3).jobs == 6 and make_executor("local", g, jobs=1).jobs == 1
    assert make_executor("local", g, gpus="none").gpus is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    ex = make_executor("local", g)
    assert ex.jobs == 1 and ex.gpus is None  # no GPUs: as before
    for kwargs, pattern in [({"jobs_per_gpu": 0}, r"--jobs-per-gpu must be an integer >= 1, got 0"),
                            ({"jobs": 0}, r"--jobs must be an integer >= 1"),
                            ({"gpus": "0"}, r"unknown GPU '0'"),
                            ({"slurm": {"partition": "gpu"}}, r"--slurm-\* options \(partition\) need --executor slurm"),
                            ({"slurm": {"tiem": 5}}, r"--slurm-\* options: slurm: unknown key 'tiem' \(did you mean "
                                                     r"'time'\?\)")]:
        with pytest.raises(GridError, match=pattern):
            make_executor("local", g, **kwargs)
    with pytest.raises(GridError, match="choose one of local, slurm, slurm-local"):
        make_executor("pbs", g)
    with pytest.raises(GridError, match="apply to --executor local"):
        make_executor("slurm-local", g, gpus="0")
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun here
    with pytest.raises(GridError, match="--executor slurm: .*srun"):
        make_executor("slurm", g)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    grid = str(tmp_path / "g.yaml")
    for argv, pattern in [(["--gpus", "7"], "unknown GPU '7'"), (["--jobs-per-gpu", "0"], "--jobs-per-gpu"),
                          (["--executor", "slurm-local", "--jobs", "2"], "apply to --executor local")]:
        assert main(["batch", grid, *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and pattern in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.notebook
def test_gpu_pool_with_real_kernels(tmp_path, monkeypatch):
    """Four runs on two faked GPUs, one run per GPU at a time: each kernel saw only its GPU."""
    ensure_kernel()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    grid = _grid(tmp_path, [{"name": "s", "params": {"pause": 1.0}, "grid": {"value": [1, 2, 3, 4]}}])
    run_grid(grid, root=ROOT, progress=False, gpus="0,1", jobs_per_gpu=1)
    seen = []
    for v in (1, 2, 3, 4):
        folder = tmp_path / "out" / f"s__value={v}"
        st, met = _status(folder), json.loads((folder / "metrics.json").read_text())
        assert st["status"] == "ok" and st["gpu"] in ("0", "1") and met["cuda"] == st["gpu"], (st, met)
        assert met["omp"] == str(max(1, (os.cpu_count() or 1) // 2))
        seen.append(met)
    assert {m["cuda"] for m in seen} == {"0", "1"}
    for gpu in ("0", "1"):
        assert _max_overlap([(m["t0"], m["t1"]) for m in seen if m["cuda"] == gpu]) == 1


# ---------------------------------------------------------------------------------------------------------- Slurm
@pytest.mark.parametrize("block, pattern", [
    ({"partion": "gpu"}, r"g\.yaml: slurm: unknown key 'partion' \(did you mean 'partition'\?\); accepted: account, "
                         r"array_parallelism, constraint, cpus_per_task, gpus_per_run, mem_gb, partition, qos, setup, time"),
    ({"time": "4:00:00"}, r"slurm: key 'time': expected an integer >= 1 or None \(minutes per run\), got '4:00:00'"),
    ({"mem_gb": 0}, r"slurm: key 'mem_gb': expected a number >= 1 or None, got 0"),
    ({"setup": "module load cuda"}, r"slurm: key 'setup': expected a list of strings or None, got 'module load cuda'"),
    (["partition"], r"g\.yaml: key 'slurm': expected a mapping or None, got \['partition'\]"),
])
def test_slurm_block_is_validated(tmp_path, block, pattern):
    with pytest.raises(GridError, match=pattern):
        load_grid(_grid(tmp_path, TWO_STAGES, slurm=block), root=ROOT)


class _FakeAutoExecutor:
    """Records what the runner asks of submitit; runs each array's tasks in this process."""
    made: list["_FakeAutoExecutor"] = []

    def __init__(self, folder, cluster=None):
        self.folder, self.cluster, self.updates, self.arrays = Path(folder), cluster, [], []
        _FakeAutoExecutor.made.append(self)

    def update_parameters(self, **kwargs):
        self.updates.append(kwargs)

    def map_array(self, fn, jobs):
        self.arrays.append([Path(j["folder"]).name for j in jobs])
        return [_FakeJob(fn, job, f"7_{i}") for i, job in enumerate(jobs)]


class _FakeJob:
    def __init__(self, fn, job, job_id):
        self.job_id, self.paths = job_id, SimpleNamespace(stderr=Path(f"/logs/{job_id}_0_log.err"))
        self.value = RuntimeError(f"Job {job_id} has state TIMEOUT\nlong details") if job["point"].get("value") == 2 \
            else fn(job)

    def done(self):
        return True

    def result(self):
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


def test_slurm_arrays_per_stage_with_fake_submitit(tmp_path, monkeypatch):
    """YAML settings and CLI flags reach update_parameters; one array per stage, in order; status.json, index,
    skip-done."""
    import nbformat
    import submitit

    from mplmm.workbench import runs

    def fake_execute_run(job):  # what execute_run leaves behind, without a kernel
        folder = Path(job["folder"])
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nbformat.v4.new_notebook(), folder / "notebook.ipynb")
        (folder / "report.html").write_text("<html></html>")
        status = {"run": folder.name, "stage": job["stage"], "params": job["params"], "status": "ok",
                  "no_input": job["no_input"], "standalone": not job["static"], "gpu": job["gpu"],
                  "slurm": job["slurm"], "env": job["env"]}
        runs.write_status(folder, status)
        return status

    monkeypatch.setattr(submitit, "AutoExecutor", _FakeAutoExecutor)
    monkeypatch.setattr(executors, "execute_run", fake_execute_run)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # what Slurm would give the job
    _FakeAutoExecutor.made.clear()
    block = {"partition": "small", "mem_gb": 16, "cpus_per_task": 4, "array_parallelism": 2,
             "setup": ["module load cuda"], "account": "proj"}
    stages = [*TWO_STAGES, {"name": "third", "params": {"src": "{first[value=2]}/metrics.json"}}]
    grid = _grid(tmp_path, stages, slurm=block)
    monkeypatch.chdir(ROOT)
    from mplmm.cli import main

    assert main(["batch", str(grid), "--executor", "slurm", "--slurm-partition", "big", "--slurm-time", "30",
                 "--slurm-mem", "20"]) == 0
    (ex,) = _FakeAutoExecutor.made
    assert ex.cluster == "slurm" and ex.folder == tmp_path / "out" / "_submitit"
    assert ex.updates[0] == {"timeout_min": 30, "gpus_per_node": 1, "nodes": 1, "tasks_per_node": 1, "mem_gb": 20.0,
                             "cpus_per_task": 4, "slurm_partition": "big", "slurm_array_parallelism": 2,
                             "slurm_account": "proj", "slurm_setup": ["module load cuda"]}
    assert ex.updates[1:] == [{"name": "g:first"}, {"name": "g:second"}]  # third never ran: its dependency failed
    assert ex.arrays == [["first__value=1", "first__value=2"], ["second"]]
    out = tmp_path / "out"
    ok = _status(out / "first__value=1")
    assert ok["status"] == "ok" and ok["gpu"] == "3" and ok["slurm"]["host"] and ok["env"]["OMP_NUM_THREADS"] == "4"
    died = _status(out / "first__value=2")
    assert died["status"] == "failed" and died["error"] == {"name": "RuntimeError", "message": "Job 7_1 has state TIMEOUT"}
    assert died["slurm"] == {"job_id": "7_1", "log": "/logs/7_1_0_log.err"}
    assert _status(out / "third")["error"]["name"] == "DependencyError"
    assert "TIMEOUT" in (out / "index.html").read_text()
    run_grid(grid, root=ROOT, progress=False, executor="slurm", slurm={"partition": "big", "time": 30})
    assert _FakeAutoExecutor.made[1].arrays == [["first__value=2"]]  # finished runs are skipped, the failed one re-runs


def test_sbatch_script_carries_the_settings(tmp_path, monkeypatch):
    """The real submitit SlurmExecutor renders the array's sbatch script; a fake sbatch keeps it."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bindir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" "{tmp_path}/submitted.sh"\necho "Submitted batch job 4242"\n')
    for tool in ("srun", "sbatch"):
        (bindir / tool).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    block = {"partition": "gpu", "mem_gb": 16, "cpus_per_task": 4, "array_parallelism": 2, "qos": "normal",
             "setup": ["module load cuda/12"]}
    g = load_grid(_grid(tmp_path, [{"name": "first", "grid": {"value": [1, 2, 3]}}], slurm=block), root=ROOT)
    ex = make_executor("slurm", g, slurm={"time": 45})
    assert isinstance(ex, SubmititExecutor)
    items = [(run, {"folder": str(run.folder), "stage": "first", "params": {}, "point": run.point, "kernel": "mplmm",
                    "root": str(ROOT), "no_input": False, "notebook": "x"}) for run in g.runs["first"]]
    jobs = ex.submit(items)
    assert [j.job_id for j in jobs] == ["4242_0", "4242_1", "4242_2"]
    script = (tmp_path / "submitted.sh").read_text()
    for line in ("#SBATCH --array=0-2%2", "#SBATCH --partition=gpu", "#SBATCH --time=45", "#SBATCH --mem=16GB",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=4", "#SBATCH --qos=normal",
                 "#SBATCH --job-name=g:first", "#SBATCH --nodes=1", "module load cuda/12"):
        assert line in script.splitlines(), (line, script)
    assert "-m submitit.core._submit" in script and str(tmp_path / "out" / "_submitit") in script


@pytest.mark.notebook
def test_slurm_path_through_submitit_local_executor(tmp_path, monkeypatch):
    """--executor slurm-local: the real submission code (an array per stage, waiting, status.json, index) on CPU."""
    ensure_kernel()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    grid = _grid(tmp_path, TWO_STAGES, slurm={"time": 10, "cpus_per_task": 1})
    index = run_grid(grid, root=ROOT, progress=False, executor="slurm-local")
    out = tmp_path / "out"
    firsts = [out / "first__value=1", out / "first__value=2"]
    for folder in [*firsts, out / "second"]:
        st, met = _status(folder), json.loads((folder / "metrics.json").read_text())
        assert st["status"] == "ok" and st["attempts"] == 1, st
        assert st["gpu"] == "0" and met["cuda"] == "0" and met["omp"] == "1"  # submitit's local executor: GPU 0
        assert st["slurm"]["job_id"] and st["slurm"]["host"] and (folder / "report.html").is_file()
    second = json.loads((out / "second" / "metrics.json").read_text())
    assert second["src_seen"] is True  # the second stage waited for the first
    assert second["t0"] > max(json.loads((f / "metrics.json").read_text())["t1"] for f in firsts)
    assert index == out / "index.html" and index.read_text().count("<tr") == 4  # header + 3 runs
    logs = sorted(p.name for p in (out / "_submitit").glob("*_log.out"))
    assert len(logs) == 3  # one submitit job per run
    before = {f: (f / "notebook.ipynb").stat().st_mtime_ns for f in [*firsts, out / "second"]}
    run_grid(grid, root=ROOT, progress=False, executor="slurm-local")  # finished runs: nothing submitted
    assert sorted(p.name for p in (out / "_submitit").glob("*_log.out")) == logs
    assert {f: (f / "notebook.ipynb").stat().st_mtime_ns for f in before} == before
