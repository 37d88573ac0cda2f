"""A tiny random MultimodalDataset (three modalities, three splits) shared by the interpretation and widget tests."""
from __future__ import annotations

import numpy as np

from mplmm.data.schema import MultimodalDataset, Split

DIMS, SEQS = (6, 5, 4), (5, 6, 7)


def tiny_dataset(n: int = 10, task: str = "regression", seed: int = 0) -> MultimodalDataset:
    """``n`` samples per split of Gaussian features at ``DIMS``/``SEQS``; regression labels or 3 classes."""
    rng = np.random.default_rng(seed)

    def split(name: str) -> Split:
        x = [rng.normal(size=(n, t, d)).astype(np.float32) for d, t in zip(DIMS, SEQS)]
        y = (rng.normal(size=n).astype(np.float32) if task == "regression"
             else rng.integers(0, 3, size=n).astype(np.int64))
        return Split(*x, y, np.array([f"{name}{i}" for i in range(n)]))

    cls = dict(task="classification", class_names=["a", "b", "c"], metric_family="iemocap") \
        if task == "classification" else dict(label_range=(-3.0, 3.0))
    return MultimodalDataset("tiny", {s: split(s) for s in ("train", "valid", "test")}, **cls)
