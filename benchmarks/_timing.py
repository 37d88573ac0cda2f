"""Timing and device helpers shared by the benchmark scripts (CUDA work is synchronised before a timer is read)."""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path
from typing import Callable, Optional

import torch


def add_device_flags(ap: argparse.ArgumentParser, amp: bool = True) -> None:
    """``--device`` (auto/cpu/cuda[:N]) and, where meaningful, ``--amp`` (bfloat16 autocast on CUDA)."""
    ap.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda[:N]")
    if amp:
        ap.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA only)")


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def synchronize(device: Optional[torch.device]) -> None:
    """Wait for queued work on ``device`` (a no-op off CUDA)."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(fn: Callable[[], object], reps: int, warmup: int = 0,
                 device: Optional[torch.device] = None) -> float:
    """Fastest of ``reps`` wall-clock timings of ``fn()``, after ``warmup`` untimed calls (synchronised on CUDA)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(reps):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def peak_gpu_mb(device: torch.device) -> Optional[float]:
    """Peak memory allocated by torch on a CUDA ``device`` since the last reset, in MiB (None off CUDA)."""
    return torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    """Start a new peak-memory window on a CUDA ``device``."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"

