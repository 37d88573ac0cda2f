"""Evaluation of trained models under fixed, seeded masks: single points, missing-rate curves, per-mode tables.

Under the ``modality`` and ``entry`` protocols a mask is one missing mode per sample (no frame masks), so a
per-sample model's prediction is a function of (sample, mode): :class:`ModePredictions` runs at most seven forward
passes (every sample forced into one mode) and answers every rate and mask seed by gathering each sample's
prediction from the pass of its mode. The ``frame`` protocol drops time steps per sample and keeps one pass per mask.
Every function takes ``amp`` (bfloat16 autocast on CUDA, passed down to :func:`mplmm.train.predict`).
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from .constants import MODE_NAMES, N_MODES
from .data.schema import MultimodalDataset
from .missing import MissingMasks, MissingSpec, eval_masks
from .models.base import MissingModalityModel
from .train import SplitTensors, predict, score_predictions
from .utils import resolve_device

DEFAULT_RATES: tuple[float, ...] = tuple(round(r, 1) for r in np.linspace(0, 1, 11))


def _scored(ds: MultimodalDataset, pred: np.ndarray, data: SplitTensors, masks: MissingMasks) -> dict:
    """Loss and metrics of ``pred`` (via :func:`mplmm.train.score_predictions`) + the masks' missing fractions."""
    result = score_predictions(ds, pred, data.y.cpu())
    result["missing_sample_fraction"] = float(np.mean(masks.modes != 6))
    result["missing_entry_fraction"] = masks.missing_fraction()
    return result


def evaluate_model(model: MissingModalityModel, ds: MultimodalDataset, spec: MissingSpec, split: str = "test",
                   device: str = "auto", data: Optional[SplitTensors] = None, amp: bool = False) -> dict:
    """Metrics of ``model`` on ``split`` under the fixed masks of ``spec`` (+ implied missing fractions)."""
    dev = resolve_device(device)
    model.to(dev)
    data = data or SplitTensors(ds[split], dev)
    masks = eval_masks(spec, ds[split].ids, split, ds.seq_lens)
    return _scored(ds, predict(model, data, masks, amp=amp), data, masks)


class ModePredictions:
    """A model's eval-mode predictions on one split with every sample forced into one mode, one pass per mode on
    first use (at most seven). Valid while the model's weights stay unchanged.

    :meth:`predict` gathers from these passes when the masks are modes only (``modality``/``entry`` protocols, or a
    forced mode) and the model predicts per sample (:attr:`MissingModalityModel.predicts_per_sample`); otherwise
    (frame masks, ``enabled=False``) it runs a forward pass under the masks, as :func:`evaluate_model` does.
    """

    def __init__(self, model: MissingModalityModel, ds: MultimodalDataset, split: str = "test",
                 device: str = "auto", data: Optional[SplitTensors] = None, enabled: bool = True,
                 amp: bool = False) -> None:
        dev = resolve_device(device)
        self.amp = bool(amp)
        self.model, self.ds, self.split = model.to(dev), ds, split
        self.data = data if data is not None else SplitTensors(ds[split], dev)
        self.enabled = bool(enabled) and bool(getattr(model, "predicts_per_sample", True))
        self.passes: dict[int, np.ndarray] = {}

    def mode(self, k: int) -> np.ndarray:
        """Predictions ``(N, output_dim)`` with every sample in mode ``k`` (one forward pass, then cached)."""
        k = int(k)
        if k not in self.passes:
            masks = eval_masks(MissingSpec(force_mode=k), self.data.ids, self.split)
            self.passes[k] = predict(self.model, self.data, masks, amp=self.amp)
        return self.passes[k]

    def covers(self, masks: MissingMasks) -> bool:
        """Whether ``masks`` are answered from the per-mode passes (modes only, per-sample model, enabled)."""
        return self.enabled and masks.frame_masks is None and len(masks) == self.data.n > 0

    def predict(self, masks: MissingMasks) -> np.ndarray:
        """Predictions ``(N, output_dim)`` under ``masks``: row i from the pass of sample i's mode when covered."""
        if not self.covers(masks):
            return predict(self.model, self.data, masks, amp=self.amp)
        modes = np.asarray(masks.modes)
        needed = np.unique(modes)
        out = np.empty_like(self.mode(needed[0]))
        for k in needed:
            rows = modes == k
            out[rows] = self.mode(k)[rows]
        return out

    def evaluate(self, spec: MissingSpec) -> dict:
        """As :func:`evaluate_model` for this model and split."""
        masks = eval_masks(spec, self.data.ids, self.split, self.ds.seq_lens)
        return _scored(self.ds, self.predict(masks), self.data, masks)


def predict_all_modes(model: MissingModalityModel, ds: MultimodalDataset, split: str = "test",
                      device: str = "auto", amp: bool = False) -> np.ndarray:
    """Predictions ``(7, N, output_dim)``: entry k with every sample of ``split`` forced into mode k."""
    cache = ModePredictions(model, ds, split, device, amp=amp)
    return np.stack([cache.mode(k) for k in range(N_MODES)])


def _cache_for(model: MissingModalityModel, ds: MultimodalDataset, split: str, device: str, cached: bool,
               cache: Optional[ModePredictions], amp: bool = False) -> ModePredictions:
    """``cache`` (checked to match), a fresh one, or one that runs a pass per mask (``cached=False``)."""
    if cache is None:
        return ModePredictions(model, ds, split, device, enabled=cached, amp=amp)
    if cache.model is not model or cache.ds is not ds or cache.split != split or cache.amp != bool(amp):
        raise ValueError("cache: a ModePredictions of another model, dataset, split or precision")
    return cache if cached else ModePredictions(model, ds, split, device, cache.data, enabled=False, amp=amp)


def robustness_curve(model: MissingModalityModel, ds: MultimodalDataset, rates: Iterable[float] = DEFAULT_RATES,
                     seeds: Sequence[int] = (0,), protocol: str = "modality", split: str = "test",
                     device: str = "auto", progress: bool = False, amp: bool = False, *, cached: bool = True,
                     cache: Optional[ModePredictions] = None) -> pd.DataFrame:
    """One row per (rate, mask seed): the split's metrics at that test missing rate.

    ``modality``/``entry`` with a per-sample model: at most seven forward passes for the whole curve (``cache``, e.g.
    shared with :func:`per_mode_table`, may hold them already); ``frame``, a batch-coupled model or ``cached=False``:
    one pass per (rate, seed), as before.
    """
    from tqdm.auto import tqdm

    evaluator = _cache_for(model, ds, split, device, cached, cache, amp)
    rows = []
    grid = [(float(r), int(s)) for r in rates for s in seeds]
    for rate, seed in tqdm(grid, desc="curve", disable=not progress):
        res = evaluator.evaluate(MissingSpec(protocol, rate, seed))
        rows.append({"rate": rate, "mask_seed": seed, "protocol": protocol, "split": split, **res})
    return pd.DataFrame(rows)


def per_mode_table(model: MissingModalityModel, ds: MultimodalDataset, split: str = "test",
                   device: str = "auto", amp: bool = False, *, cached: bool = True,
                   cache: Optional[ModePredictions] = None) -> pd.DataFrame:
    """One row per missing mode 0..6 (every sample forced into that mode); ``cache`` as in :func:`robustness_curve`."""
    evaluator = _cache_for(model, ds, split, device, cached, cache, amp)
    rows = []
    for mode in range(N_MODES):
        res = evaluator.evaluate(MissingSpec("modality", 1.0 if mode < 6 else 0.0, 0, force_mode=mode))
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
