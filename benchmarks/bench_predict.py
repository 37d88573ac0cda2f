"""``mplmm predict`` on a MOSEI-size MulT pickle: peak memory against the file size, speed against a bare forward.

The file (16,326 / 1,871 / 4,659 utterances, lengths 50/500/500, dims 300/74/35, about 6.4 GB) is written once by
``python -m mplmm synth --kind mosei --size 1.0 --format mult_pickle`` (reused when it exists; ``--size`` scales it
down for a quick run). A checkpoint of an MPLMM at those shapes (default config, random weights: speed and memory do
not depend on training) is written beside it. Then, in a fresh process each:

1. ``predict``: the whole file is read (a pickle is read whole), then the ``--split`` is predicted in batches and
   written as CSV: peak RSS of the process (target ≤ 1.3× the file size) and the prediction loop's samples/s;
2. ``forward``: the same model on in-memory random tensors of those shapes, same batch size: samples/s (predict must
   stay within 10 % of it).

Prints the machine, a table and, as its last line, ``file_gb=… peak_rss_gb=… rss_ratio=… predict_sps=…
forward_sps=… speed_ratio=…``.

    python benchmarks/bench_predict.py [--pickle /tmp/mplmm_bench/mosei_full.pkl] [--size 1.0] [--split valid]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import cpu_name  # noqa: E402  (benchmarks/, the script's folder)

DEFAULT_PICKLE = Path("/tmp/mplmm_bench/mosei_full.pkl")
RSS_TARGET, SPEED_TARGET = 1.3, 0.9

_CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
mode, ckpt, data, split, batch, out, n_fwd = sys.argv[1:8]
batch, n_fwd = int(batch), int(n_fwd)
torch.set_num_threads(int(__import__("os").environ.get("OMP_NUM_THREADS", "2")))
import mplmm
from mplmm.prediction import predict, write_table
model = mplmm.load_model(ckpt)
res = {}
if mode == "predict":
    t0 = time.perf_counter()
    from mplmm.prediction import prepare_data
    ds = prepare_data(model, data)
    res["load_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    table = predict(model, ds, split, batch_size=batch)
    res["predict_s"] = time.perf_counter() - t1
    res["n"] = len(table)
    write_table(table, out)
else:
    dims, lens = model.config["dims"], model.config["seq_lens"]
    x = [torch.randn(batch, t, d) for d, t in zip(dims, lens)]
    modes = torch.full((batch,), 6)
    with torch.no_grad():
        model(*x, modes)  # warm-up
        t1 = time.perf_counter()
        for _ in range(max(1, n_fwd // batch)):
            model(*x, modes)
        res["predict_s"] = time.perf_counter() - t1
    res["n"] = max(1, n_fwd // batch) * batch
res["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print("RESULT " + json.dumps(res))
"""


def ensure_pickle(path: Path, size: float) -> Path:
    """Write the synthetic MOSEI-layout pickle unless it is there already."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"writing {path} (synthetic MOSEI, size {size}) ...", flush=True)
        subprocess.run([sys.executable, "-m", "mplmm", "synth", "--kind", "mosei", "--size", str(size), "--format",
                        "mult_pickle", "--out", str(path)], check=True)
    return path


def ensure_checkpoint(path: Path, data: Path) -> Path:
    """An MPLMM checkpoint at the file's shapes (random weights), with the data signature prediction checks."""
    if path.is_file():
        return path
    import torch

    from mplmm.checkpoint import save_checkpoint
    from mplmm.data import load_dataset
    from mplmm.models import create_model

    ds = load_dataset("synthetic-mosei", size=0.001, verbose=False)  # same dims and lengths, tiny
    torch.manual_seed(0)
    model = create_model("mplmm", dims=ds.dims, seq_lens=ds.seq_lens, output_dim=1)
    sig = {**ds.signature(), "name": data.stem}
    return save_checkpoint(path, model, data=sig, preprocessing={})


def run_child(mode: str, ckpt: Path, data: Path, split: str, batch: int, out: Path, n_fwd: int) -> dict:
    """One measurement in a fresh interpreter; returns its RESULT dict."""
    proc = subprocess.run([sys.executable, "-c", _CHILD, mode, str(ckpt), str(data), split, str(batch), str(out),
                           str(n_fwd)], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if proc.returncode:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pickle", type=Path, default=DEFAULT_PICKLE, help="the MOSEI-size MulT pickle (made if absent)")
    ap.add_argument("--size", type=float, default=1.0, help="synth size when the pickle is made (1.0 = MOSEI)")
    ap.add_argument("--split", default="valid", help="split predicted (default valid: 1,871 utterances)")
    ap.add_argument("--batch_size", type=int, default=64, help="predict's default")
    ap.add_argument("--forward_samples", type=int, default=512, help="samples timed in the bare forward loop")
    args = ap.parse_args(argv)
    data = ensure_pickle(args.pickle, args.size)
    ckpt = ensure_checkpoint(args.pickle.with_suffix(".mplmm.pt"), data)
    out = args.pickle.with_suffix(".predictions.csv")
    pred = run_child("predict", ckpt, data, args.split, args.batch_size, out, 0)
    fwd = run_child("forward", ckpt, data, args.split, args.batch_size, out, args.forward_samples)
    file_gb = data.stat().st_size / 2**30
    p_sps, f_sps = pred["n"] / pred["predict_s"], fwd["n"] / fwd["predict_s"]
    rss_ratio, speed = pred["peak_rss_gb"] / file_gb, p_sps / f_sps
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print(f"file: {data} {file_gb:.2f} GiB; split {args.split}: {pred['n']} samples, batch {args.batch_size}")
    print(f"predict: load {pred['load_s']:.1f} s, predict {pred['predict_s']:.1f} s = {p_sps:.1f} samples/s, "
          f"peak RSS {pred['peak_rss_gb']:.2f} GiB = {rss_ratio:.2f}x the file (target <= {RSS_TARGET})")
    print(f"forward on in-memory tensors: {f_sps:.1f} samples/s; predict / forward = {speed:.3f} "
          f"(target >= {SPEED_TARGET})")
    print(f"file_gb={file_gb:.3f} peak_rss_gb={pred['peak_rss_gb']:.3f} rss_ratio={rss_ratio:.3f} "
          f"predict_sps={p_sps:.2f} forward_sps={f_sps:.2f} speed_ratio={speed:.3f}")


if __name__ == "__main__":
    main()
