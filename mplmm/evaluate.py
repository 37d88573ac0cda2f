"""Evaluation of trained models under fixed, seeded masks: single points, missing-rate curves, per-mode tables.

Every function takes ``amp`` (bfloat16 autocast on CUDA, passed down to :func:`mplmm.train.predict`)."""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from .constants import MODE_NAMES
from .data.schema import MultimodalDataset
from .missing import MissingSpec, eval_masks
from .models.base import MissingModalityModel
from .train import SplitTensors, evaluate_split
from .utils import resolve_device

DEFAULT_RATES: tuple[float, ...] = tuple(round(r, 1) for r in np.linspace(0, 1, 11))


def evaluate_model(model: MissingModalityModel, ds: MultimodalDataset, spec: MissingSpec, split: str = "test",
                   device: str = "auto", data: Optional[SplitTensors] = None, amp: bool = False) -> dict:
    """Metrics of ``model`` on ``split`` under the fixed masks of ``spec`` (+ implied missing fractions)."""
    dev = resolve_device(device)
    model.to(dev)
    data = data or SplitTensors(ds[split], dev)
    masks = eval_masks(spec, ds[split].ids, split, ds.seq_lens)
    result = evaluate_split(model, ds, data, masks, amp=amp)
    result["missing_sample_fraction"] = float(np.mean(masks.modes != 6))
    result["missing_entry_fraction"] = masks.missing_fraction()
    return result


def robustness_curve(model: MissingModalityModel, ds: MultimodalDataset, rates: Iterable[float] = DEFAULT_RATES,
                     seeds: Sequence[int] = (0,), protocol: str = "modality", split: str = "test",
                     device: str = "auto", progress: bool = False, amp: bool = False) -> pd.DataFrame:
    """One row per (rate, mask seed): the split's metrics at that test missing rate."""
    from tqdm.auto import tqdm

    dev = resolve_device(device)
    model.to(dev)
    data = SplitTensors(ds[split], dev)
    rows = []
    grid = [(float(r), int(s)) for r in rates for s in seeds]
    for rate, seed in tqdm(grid, desc="curve", disable=not progress):
        res = evaluate_model(model, ds, MissingSpec(protocol, rate, seed), split, device, data, amp)
        rows.append({"rate": rate, "mask_seed": seed, "protocol": protocol, "split": split, **res})
    return pd.DataFrame(rows)


def per_mode_table(model: MissingModalityModel, ds: MultimodalDataset, split: str = "test",
                   device: str = "auto", amp: bool = False) -> pd.DataFrame:
    """One row per missing mode 0..6 (every sample forced into that mode)."""
    dev = resolve_device(device)
    model.to(dev)
    data = SplitTensors(ds[split], dev)
    rows = []
    for mode in range(7):
        res = evaluate_model(model, ds, MissingSpec("modality", 1.0 if mode < 6 else 0.0, 0, force_mode=mode),
                             split, device, data, amp)
        rows.append({"mode": mode, "mode_name": MODE_NAMES[mode], "split": split, **res})
    return pd.DataFrame(rows)


def area_under_curve(curve: pd.DataFrame, metric: str) -> float:
    """Trapezoidal area under ``metric`` over rate ∈ [0, 1] (mean over mask seeds first), normalised by the range."""
    g = curve.groupby("rate")[metric].mean().sort_index()
    x, y = g.index.to_numpy(dtype=float), g.to_numpy(dtype=float)
    if len(x) < 2:
        return float(y[0]) if len(y) else float("nan")
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


@torch.no_grad()
def predictions_frame(model: MissingModalityModel, ds: MultimodalDataset, spec: MissingSpec, split: str = "test",
                      device: str = "auto", amp: bool = False) -> pd.DataFrame:
    """Per-sample predictions with id, mode and truth (for error analysis)."""
    from .train import predict

    dev = resolve_device(device)
    model.to(dev)
    data = SplitTensors(ds[split], dev)
    masks = eval_masks(spec, ds[split].ids, split, ds.seq_lens)
    pred = predict(model, data, masks, amp=amp)
    frame = pd.DataFrame({"id": ds[split].ids, "mode": masks.modes, "truth": ds[split].labels})
    if ds.task == "regression":
        frame["pred"] = pred[:, 0]
    else:
        frame["pred"] = pred.argmax(1)
    return frame
