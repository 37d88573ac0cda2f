"""A checkpoint's robustness curve + per-mode table: one forward pass per (rate, mask seed) vs at most seven.

MPLMM at MOSI-unaligned shapes (L/A/V lengths 50/375/500, dims 300/5/20, d=30, P=16, 5 layers) on the synthetic
MOSI test split (``load_dataset("synthetic-mosi", size=0.1)``: 69 samples). Times 11 rates × 3 mask seeds of the
``modality`` protocol plus the seven-row per-mode table, first the per-rate path (``cached=False``), then the cached
one (one :class:`mplmm.evaluate.ModePredictions` shared by both), and prints the machine, both times, their ratio
(target ≥ 5×), the largest absolute difference between the two results and, as its last line,
``old_s=… new_s=… speedup=… max_abs_diff=…``.

    python benchmarks/bench_curve.py [--device auto|cpu|cuda] [--threads 2] [--quick]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import cpu_name  # noqa: E402  (benchmarks/, the script's folder)
from bench_train import build  # noqa: E402

from mplmm.data import load_dataset  # noqa: E402
from mplmm.evaluate import DEFAULT_RATES, ModePredictions, per_mode_table, robustness_curve  # noqa: E402
from mplmm.utils import resolve_device  # noqa: E402

T = TypeVar("T")
TARGET_SPEEDUP = 5.0


def timed(fn: Callable[[], T], device: torch.device) -> tuple[float, T]:
    """Wall-clock seconds of ``fn()`` and its result (CUDA synchronised before and after)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t0, out


def max_abs_diff(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """Largest |a − b| over the numeric columns (the frames must agree in columns and text)."""
    num = a.select_dtypes("number").columns
    if list(a.columns) != list(b.columns) or not a.drop(columns=num).equals(b.drop(columns=num)):
        raise AssertionError("the two paths returned different columns or labels")
    return float(np.abs(a[num].to_numpy(float) - b[num].to_numpy(float)).max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=3, help="mask seeds per rate")
    ap.add_argument("--quick", action="store_true", help="1 layer, 3 rates, 12 test samples: checks the script runs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = resolve_device(args.device)
    ds = load_dataset("synthetic-mosi", verbose=False, **({"sizes": (8, 4, 12)} if args.quick else {"size": 0.1}))
    rates, seeds = (DEFAULT_RATES[::5] if args.quick else DEFAULT_RATES), list(range(args.seeds))
    model = build(30, 1 if args.quick else 5, 16).to(dev).eval()
    ModePredictions(model, ds, device=dev).mode(6)  # warm-up pass (allocator, kernels), untimed

    def old() -> tuple[pd.DataFrame, pd.DataFrame]:
        return (robustness_curve(model, ds, rates, seeds, device=dev, cached=False),
                per_mode_table(model, ds, device=dev, cached=False))

    def new() -> tuple[pd.DataFrame, pd.DataFrame, int]:
        cache = ModePredictions(model, ds, device=dev)
        curve = robustness_curve(model, ds, rates, seeds, device=dev, cache=cache)
        return curve, per_mode_table(model, ds, device=dev, cache=cache), len(cache.passes)

    old_s, (old_curve, old_modes) = timed(old, dev)
    new_s, (new_curve, new_modes, passes) = timed(new, dev)
    diff = max(max_abs_diff(new_curve, old_curve), max_abs_diff(new_modes, old_modes))
    machine = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name()
    print(f"machine: {machine}, device {dev}, {os.cpu_count()} CPUs, torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads")
    print(f"{len(ds['test'])} test samples, {len(rates)} rates × {len(seeds)} mask seeds + 7 modes "
          f"= {len(old_curve) + len(old_modes)} evaluations")
    print(f"per-rate path: {old_s:.2f} s ({len(old_curve) + len(old_modes)} forward passes)")
    print(f"cached path:   {new_s:.2f} s ({passes} forward passes)")
    print(f"speedup {old_s / new_s:.1f}× (target ≥ {TARGET_SPEEDUP:.0f}×), max |difference| {diff:.3g}")
    print(f"old_s={old_s:.3f} new_s={new_s:.3f} speedup={old_s / new_s:.2f} max_abs_diff={diff:.3g}")


if __name__ == "__main__":
    main()
