"""Where a grid's runs execute: on this machine (optionally one GPU per run) or as Slurm job arrays via submitit.

An executor takes one stage's ``(run, job)`` pairs (``job``: the picklable dict
:func:`mplmm.workbench.batch.execute_run` takes) and yields ``(run, status)`` as runs finish.
:func:`mplmm.workbench.batch.run_grid` does everything else: stage order, references, skip-done, the progress bar and
the index.

* :class:`LocalExecutor` — this process, or ``jobs`` worker processes. With a :class:`GpuPool` each run holds one of
  ``per_gpu`` slots of one GPU while it runs, and its kernel sees only that GPU (``CUDA_VISIBLE_DEVICES``).
* :class:`SubmititExecutor` — one submitit job array per stage (Slurm, or submitit's local executor for tests),
  waited for before the next stage is submitted. Each array task calls :func:`run_job`, i.e. ``execute_run``.
"""
from __future__ import annotations

import contextlib
import os
import queue
import socket
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union

from ...config import from_dict, option
from .execute import ensure_kernel, execute_run, failed_status, shorten
from .grid import Grid, GridError, Run

Items = list[tuple[Run, dict]]
EXECUTORS = ("local", "slurm", "slurm-local")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


@dataclass
class SlurmSettings:
    """The keys of a grid's ``slurm:`` block (and of the ``--slurm-*`` flags); None: not set."""

    partition: Optional[str] = option(None, "partition name")
    time: Optional[int] = option(None, "minutes per run (default 240)", low=1, unit="minutes per run")
    mem_gb: Optional[float] = option(None, "memory per run in GB", low=1)
    cpus_per_task: Optional[int] = option(None, "CPU cores per run", low=1)
    gpus_per_run: Optional[int] = option(None, "GPUs per run (default 1)", low=0)
    array_parallelism: Optional[int] = option(None, "runs of one array at once", low=1)
    account: Optional[str] = option(None, "account to charge")
    qos: Optional[str] = option(None, "quality of service")
    constraint: Optional[str] = option(None, "node features")
    setup: Optional[list[str]] = option(None, "shell lines run before each run")


SLURM_DEFAULTS = {"time": 240, "gpus_per_run": 1}


def thread_env(threads: int) -> dict[str, str]:
    """``OMP_NUM_THREADS`` and friends set to ``threads`` (empty for ``threads`` <= 0)."""
    return {k: str(threads) for k in THREAD_VARS} if threads > 0 else {}


# ------------------------------------------------------------------------------------------------------------- GPUs
def visible_gpus() -> list[str]:
    """The GPUs this process may use, named as ``CUDA_VISIBLE_DEVICES`` names them: its entries when it is set,
    else ``0 .. torch.cuda.device_count()-1``."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        out = []
        for entry in (e.strip() for e in env.split(",")):
            if not entry or entry.startswith("-"):  # CUDA ignores an invalid entry and everything after it
                break
            out.append(entry)
        return out
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no usable torch/CUDA: no GPUs
        return []


def parse_gpus(gpus: Union[str, Sequence[Union[int, str]], None]) -> list[str]:
    """The GPUs to use: ``None`` → every visible GPU; ``"none"``, ``""`` or ``[]`` → none; else ``"0,2"`` or a list,
    each one visible (see :func:`visible_gpus`) and listed once."""
    visible = visible_gpus()
    if gpus is None:
        return visible
    if isinstance(gpus, str):
        gpus = [] if gpus.strip().lower() in ("", "none") else gpus.split(",")
    wanted = [str(g).strip() for g in gpus]
    for i, gpu in enumerate(wanted):
        if gpu not in visible:
            seen = ", ".join(visible) if visible else "none"
            raise GridError(f"--gpus: unknown GPU {gpu!r}; visible GPUs: {seen} "
                            "(CUDA_VISIBLE_DEVICES if set, else torch.cuda.device_count())")
        if gpu in wanted[:i]:
            raise GridError(f"--gpus: GPU {gpu!r} listed twice; use --jobs-per-gpu to run several jobs on one GPU")
    return wanted


class GpuPool:
    """``per_gpu`` slots for each GPU in a thread-safe queue; a run holds one slot while it executes."""

    def __init__(self, gpus: Sequence[str], per_gpu: int = 1) -> None:
        if isinstance(per_gpu, bool) or not isinstance(per_gpu, int) or per_gpu < 1:
            raise GridError(f"--jobs-per-gpu must be an integer >= 1, got {per_gpu!r}")
        self.gpus, self.per_gpu = list(gpus), per_gpu
        self._free: queue.Queue[str] = queue.Queue()
        for _ in range(per_gpu):
            for gpu in self.gpus:  # round robin: the first runs spread over the GPUs
                self._free.put(gpu)

    @property
    def size(self) -> int:
        return len(self.gpus) * self.per_gpu

    @contextlib.contextmanager
    def take(self) -> Iterator[str]:
        """Wait for a free slot; yields its GPU and gives the slot back afterwards (also after an error)."""
        gpu = self._free.get()
        try:
            yield gpu
        finally:
            self._free.put(gpu)


# ------------------------------------------------------------------------------------------------------------ local
class LocalExecutor:
    """Runs on this machine: one at a time in this process, or ``jobs`` at a time in worker processes (each run gets
    ``cores // parallel runs`` threads); with a GPU pool, at most ``pool.size`` at a time, each on its own slot."""

    def __init__(self, jobs: int = 1, gpus: Optional[GpuPool] = None,
                 run_fn: Callable[[dict], dict] = execute_run) -> None:
        self.jobs = min(jobs, gpus.size) if gpus is not None else jobs
        self.gpus, self.run_fn = gpus, run_fn
        self._procs: Optional[ProcessPoolExecutor] = None
        self._threads: Optional[ThreadPoolExecutor] = None

    def run(self, items: Items) -> Iterator[tuple[Run, dict]]:
        parallel = min(self.jobs, len(items))
        threads = thread_env(max(1, (os.cpu_count() or 1) // parallel) if parallel > 1 else 0)
        for _, job in items:
            job["env"] = {**job.get("env", {}), **threads}
        if parallel <= 1:
            for run, job in items:
                yield run, self._call(job, in_process=True)
            return
        if self._procs is None:
            import multiprocessing as mp

            self._procs = ProcessPoolExecutor(max_workers=self.jobs, mp_context=mp.get_context("spawn"))
            self._threads = ThreadPoolExecutor(max_workers=self.jobs)  # each waits for a slot, then for its process
        futures: dict[Future, Run] = {self._threads.submit(self._call, job, False): run for run, job in items}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()

    def _call(self, job: dict, in_process: bool) -> dict:
        if self.gpus is None:
            return self._execute(job, in_process)
        with self.gpus.take() as gpu:
            return self._execute({**job, "gpu": gpu, "env": {**job["env"], "CUDA_VISIBLE_DEVICES": gpu}}, in_process)

    def _execute(self, job: dict, in_process: bool) -> dict:
        return self.run_fn(job) if in_process else self._procs.submit(self.run_fn, job).result()

    def close(self) -> None:
        for pool in (self._threads, self._procs):
            if pool is not None:
                pool.shutdown(cancel_futures=True)


# ------------------------------------------------------------------------------------------------------------ slurm
def check_slurm(block: Any, where: str) -> dict:
    """Validate a ``slurm:`` block (or the ``--slurm-*`` flags) as :class:`SlurmSettings`; returns its set keys."""
    if block is None:
        return {}
    settings = from_dict(SlurmSettings, block, f"{where}: slurm", error=GridError)
    return {k: v for k, v in vars(settings).items() if v is not None}


def submitit_parameters(settings: dict) -> dict:
    """``submitit.AutoExecutor.update_parameters`` arguments for validated Slurm settings."""
    s = {**SLURM_DEFAULTS, **settings}
    params: dict[str, Any] = {"timeout_min": s["time"], "gpus_per_node": s["gpus_per_run"], "nodes": 1,
                              "tasks_per_node": 1}
    for key in ("mem_gb", "cpus_per_task"):
        if key in s:
            params[key] = s[key]
    for key in ("partition", "array_parallelism", "account", "qos", "constraint", "setup"):
        if key in s:
            params[f"slurm_{key}"] = s[key]
    return params


def run_job(job: dict) -> dict:
    """One array task (module level: submitit pickles it by reference): :func:`execute_run` on the GPU(s) the
    cluster gave this job; records them (``gpu``) and the job id and host (``slurm``) in ``status.json``."""
    import submitit

    try:
        job_id: Optional[str] = submitit.JobEnvironment().job_id
    except RuntimeError:  # not inside a submitit job (a test calling it directly)
        job_id = None
    placement = {"job_id": job_id, "host": socket.gethostname()}
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES") or None
    return execute_run({**job, "kernel": ensure_kernel(job["kernel"]), "gpu": gpu, "slurm": placement})


class SubmititExecutor:
    """Submits each stage's runs as one job array through submitit (``map_array``) and yields them as they finish;
    ``cluster="local"`` uses submitit's local executor (same code path, jobs are processes on this machine)."""

    def __init__(self, folder: Path, name: str, settings: dict, cluster: str = "slurm",
                 poll_s: Optional[float] = None) -> None:
        try:
            import submitit
        except ImportError:
            raise GridError("--executor slurm needs submitit: pip install 'mplmm[cluster]'") from None
        try:
            self.executor = submitit.AutoExecutor(folder=folder, cluster=cluster)  # logs: <job id>_0_log.*
        except RuntimeError as exc:  # e.g. no srun on PATH: not on a Slurm cluster
            raise GridError(f"--executor {cluster}: {exc}") from None
        self.executor.update_parameters(**submitit_parameters(settings))
        self.name, self.settings = name, settings
        self.poll_s = poll_s if poll_s is not None else (10.0 if cluster == "slurm" else 0.5)

    def submit(self, items: Items) -> list:
        """Submit one stage's runs as one array (a single run: one job); returns submitit's jobs."""
        threads = thread_env(self.settings.get("cpus_per_task", 0))
        for _, job in items:
            job["env"] = {**job.get("env", {}), **threads}
        self.executor.update_parameters(name=f"{self.name}:{items[0][1]['stage']}")
        return self.executor.map_array(run_job, [job for _, job in items])

    def run(self, items: Items) -> Iterator[tuple[Run, dict]]:
        if not items:
            return
        from submitit.helpers import as_completed as jobs_completed

        jobs = self.submit(items)
        pairs = {id(j): pair for j, pair in zip(jobs, items)}
        try:
            for sjob in jobs_completed(jobs, poll_frequency=self.poll_s):
                run, job = pairs[id(sjob)]
                try:
                    status = sjob.result()
                except Exception as exc:  # noqa: BLE001 - the job died (time limit, cancelled, node failure, ...)
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    status = failed_status(run, job["params"], exc, job["no_input"],
                                           error={"name": type(exc).__name__, "message": shorten(first)},
                                           slurm={"job_id": sjob.job_id, "log": str(sjob.paths.stderr)})
                yield run, status
        except BaseException:  # stopped while waiting (Ctrl-C): cancel this stage's unfinished jobs
            for sjob in jobs:
                with contextlib.suppress(Exception):
                    if not sjob.done():
                        sjob.cancel(check=False)
            raise

    def close(self) -> None:
        pass


def make_executor(kind: str, g: Grid, jobs: Optional[int] = None,
                  gpus: Union[str, Sequence[Union[int, str]], None] = None, jobs_per_gpu: int = 1,
                  slurm: Optional[dict] = None) -> Union[LocalExecutor, SubmititExecutor]:
    """The executor for ``run_grid``'s options; every option is checked here, before anything runs."""
    if kind not in EXECUTORS:
        raise GridError(f"--executor {kind!r}: choose one of {', '.join(EXECUTORS)}")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise GridError(f"--jobs must be an integer >= 1, got {jobs!r}")
    flags = check_slurm(slurm, "--slurm-* options")
    if kind == "local":
        if flags:
            raise GridError(f"--slurm-* options ({', '.join(flags)}) need --executor slurm")
        pool = GpuPool(parse_gpus(gpus), jobs_per_gpu)  # checks --jobs-per-gpu even without GPUs
        pool = pool if pool.gpus else None
        return LocalExecutor(jobs if jobs is not None else (pool.size if pool else 1), pool)
    if gpus is not None or jobs_per_gpu != 1 or jobs is not None:
        raise GridError("--jobs, --gpus and --jobs-per-gpu apply to --executor local; on Slurm every run gets its own "
                        "GPU(s) (slurm: gpus_per_run) and slurm: array_parallelism caps the runs at once")
    cluster = "slurm" if kind == "slurm" else "local"
    return SubmititExecutor(g.output_root / "_submitit", g.name, {**g.slurm, **flags}, cluster=cluster)
