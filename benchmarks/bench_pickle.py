"""Reading a MOSEI-size MulT pickle: plain ``pickle.load`` (the reader before the restricted one) vs the restricted
:class:`mplmm.data.safe_pickle.DatasetUnpickler` vs the full ``load_dataset`` (restricted, and with
``trust_pickle=True``, which is the loader as it was).

(a) Writes the file once with ``python -m mplmm synth --kind mosei --size SIZE --format mult_pickle`` (at ``--size 1``:
16,326 / 1,871 / 4,659 utterances, lengths 50/500/500, about 6.4 GB) and reuses it when it exists. (b) Reads it in a
fresh process per measurement (every process imports the same modules first), ``--reps`` times per reader, interleaved:
wall time (best) and peak RSS (VmHWM, largest). Target: the restricted reader within 10 % of plain ``pickle.load`` in
both. Prints the machine, a table with the absolute figures and the ratios, and as its last line
``plain_s=… restricted_s=… load_dataset_s=… wall_ratio=… rss_ratio=… plain_rss_mb=… restricted_rss_mb=…``.

    python benchmarks/bench_pickle.py [--size 1.0] [--path FILE] [--reps 3] [--delete]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import cpu_name  # noqa: E402  (benchmarks/, the script's folder)

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.10
READERS = {  # name -> (label, statement that reads PATH)
    "plain": ("pickle.load (before)", "with open(PATH, 'rb') as fh:\n    obj = pickle.load(fh)"),
    "restricted": ("restricted unpickler", "with open(PATH, 'rb') as fh:\n    obj = unpickle(fh)"),
    "load_dataset": ("load_dataset", "obj = load_dataset(PATH, verbose=False)"),
    "trusted": ("load_dataset(trust_pickle=True)", "obj = load_dataset(PATH, verbose=False, trust_pickle=True)"),
}
CHILD = """
import json, pickle, resource, sys, time
from mplmm.data import load_dataset
from mplmm.data.safe_pickle import unpickle
PATH = sys.argv[1]

def status_mb(field):
    try:
        for line in open('/proc/self/status'):
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != 'darwin' else 2 ** 20)

base = status_mb('VmRSS')
t0 = time.perf_counter()
{read}
wall = time.perf_counter() - t0
print(json.dumps({{'wall_s': wall, 'peak_mb': status_mb('VmHWM'), 'base_mb': base}}))
"""


def machine() -> str:
    try:
        mem = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal:")) / 2 ** 20
    except (OSError, StopIteration):
        mem = float("nan")
    return (f"{cpu_name()}, {os.cpu_count()} CPUs, {mem:.1f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, numpy {np.__version__}")


def write_once(path: Path, size: float) -> None:
    """``python -m mplmm synth`` writes the MulT pickle unless it is already there."""
    if path.exists():
        print(f"reusing {path}")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mplmm", "synth", "--kind", "mosei", "--size", str(size), "--format", "mult_pickle",
           "--out", str(path)]
    print("$ " + " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def read_through(path: Path) -> None:
    """Read the file once so that every measurement starts from the same page cache."""
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass


def measure(name: str, path: Path) -> dict:
    code = CHILD.format(read=READERS[name][1])
    out = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, check=True, capture_output=True,
                         text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=float, default=1.0, help="synthetic MOSEI split-size scale (1.0: full size)")
    ap.add_argument("--path", default=None, help="the pickle (default: <tmp>/mplmm_bench_pickle/mosei_size<SIZE>.pkl)")
    ap.add_argument("--reps", type=int, default=3, help="reads per reader (best wall time, largest peak RSS)")
    ap.add_argument("--delete", action="store_true", help="remove the pickle afterwards")
    args = ap.parse_args(argv)
    path = Path(args.path or Path(tempfile.gettempdir()) / "mplmm_bench_pickle" / f"mosei_size{args.size:g}.pkl")
    write_once(path, args.size)
    gigabytes = path.stat().st_size / 1e9
    try:
        read_through(path)
        runs: dict[str, list[dict]] = {name: [] for name in READERS}
        for _ in range(args.reps):
            for name in READERS:
                runs[name].append(measure(name, path))
    finally:
        if args.delete:
            path.unlink(missing_ok=True)
    best = {name: {"wall_s": min(r["wall_s"] for r in rs), "peak_mb": max(r["peak_mb"] for r in rs),
                   "base_mb": min(r["base_mb"] for r in rs)} for name, rs in runs.items()}
    plain = best["plain"]
    print(f"machine: {machine()}")
    print(f"file: {path} ({gigabytes:.2f} GB{', deleted' if args.delete else ''}); fresh process per read, best wall "
          f"/ largest peak RSS of {args.reps}; RSS after imports {plain['base_mb']:.0f} MB")
    print(f"{'reader':34s} {'wall s':>8s} {'peak RSS MB':>12s} {'wall/plain':>11s} {'RSS/plain':>10s}")
    for name, (label, _) in READERS.items():
        b = best[name]
        print(f"{label:34s} {b['wall_s']:8.2f} {b['peak_mb']:12.0f} {b['wall_s'] / plain['wall_s']:10.3f}x "
              f"{b['peak_mb'] / plain['peak_mb']:9.3f}x")
    wall_ratio = best["restricted"]["wall_s"] / plain["wall_s"]
    rss_ratio = best["restricted"]["peak_mb"] / plain["peak_mb"]
    ok = wall_ratio <= TARGET and rss_ratio <= TARGET
    full, trusted = best["load_dataset"], best["trusted"]
    print(f"load_dataset restricted vs trust_pickle=True: wall {full['wall_s'] / trusted['wall_s']:.3f}x, "
          f"peak RSS {full['peak_mb'] / trusted['peak_mb']:.3f}x")
    print(f"target: restricted within 10 % of pickle.load in wall time and peak RSS: {'met' if ok else 'MISSED'}")
    print(f"plain_s={plain['wall_s']:.3f} restricted_s={best['restricted']['wall_s']:.3f} "
          f"load_dataset_s={best['load_dataset']['wall_s']:.3f} wall_ratio={wall_ratio:.3f} rss_ratio={rss_ratio:.3f} "
          f"plain_rss_mb={plain['peak_mb']:.0f} restricted_rss_mb={best['restricted']['peak_mb']:.0f}")


if __name__ == "__main__":
    main()
