"""Timing helper shared by the benchmark scripts."""
from __future__ import annotations

import time
from typing import Callable


def best_seconds(fn: Callable[[], object], reps: int, warmup: int = 0) -> float:
    """Fastest of ``reps`` wall-clock timings of ``fn()``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
