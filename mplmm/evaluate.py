"""Prediction and scoring of trained models under fixed, seeded masks: the one place models are evaluated.

* Prediction — :class:`SplitTensors` (a split on the device), :func:`predict` (eval-mode outputs under masks),
  :func:`score_predictions` (loss + the dataset's metrics: the one place predictions become numbers),
  :func:`evaluate_split` / :func:`evaluate_model` (both at once; training validates with the first).
* Per-mode passes — under the ``modality`` and ``entry`` protocols a mask is one missing mode per sample (no frame
  masks), so a per-sample model's prediction is a function of (sample, mode): :class:`ModePredictions` runs at most
  seven forward passes (every sample forced into one mode) and answers every rate and mask seed by gathering each
  sample's prediction from the pass of its mode. The frame-level protocols (``frame``, ``block``, ``temporal``,
  ``temporal_block``: :data:`mplmm.missing.FRAME_PROTOCOLS`) drop time steps per sample, so a prediction depends on
  which steps are kept: they cannot use the cache and keep one pass per (rate, mask seed).
* Noise — :func:`noise_curve`: metrics over Gaussian feature-noise levels (:mod:`mplmm.noise`), a corruption recorded
  in its own ``noise`` column, never as a missing rate; one pass per (level, noise seed) (the modes are cached
  within one noise draw).
* Curves and tables — :func:`robustness_curve`, :func:`per_mode_table`, :func:`area_under_curve`.
* Per-sample — :func:`predictions_frame` and :func:`evaluate_missing` (the live missing-rate / mode explorer).

Every function that runs the model takes ``amp`` (bfloat16 autocast on CUDA, and on CPUs with native bfloat16:
:func:`mplmm.utils.amp_active`) or runs in fp32.
"""
from __future__ import annotations

import copy
import warnings
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from . import metrics as M
from .constants import COMPLETE_MODE, MODALITIES, MODE_NAMES, N_MODES, PRESENT_ROWS, present_to_mode
from .data.schema import MultimodalDataset, Split
from .errors import ConfigError
from .losses import criterion_for, loss_target
from .missing import MissingMasks, MissingSpec, eval_masks, mode_counts
from .models.base import MissingModalityModel
from .noise import NoiseSpec, draw_noise, noise_scales
from .summaries import area_under_curve  # the workbench's AUC (re-exported here; every summary: mplmm.summaries)
from .utils import autocast_for, model_device, resolve_device

DEFAULT_RATES: tuple[float, ...] = tuple(round(r, 1) for r in np.linspace(0, 1, 11))


# ----------------------------------------------------------------------------------------------------------------------
# prediction and scoring
# ----------------------------------------------------------------------------------------------------------------------
class SplitTensors:
    """A split's arrays as tensors on one device, batched by index: features, labels, per-sample lengths ``(N, 3)``
    (None when the split records none: models then read every step, as the reference does) and, on the host, what
    is really recorded (``present`` ``(N, 3)``, ``observed`` modes)."""

    def __init__(self, split: Split, device: torch.device) -> None:
        self.x = [torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)
                  for a in (split.text, split.audio, split.vision)]
        self.y = torch.as_tensor(split.labels, device=device)
        self.ids = split.ids
        self.n = len(split)
        self.present = np.asarray(split.present, dtype=bool)
        self.observed = split.observed_modes()
        mat = split.length_matrix()
        self.host_lengths = mat  # (N, 3) recorded steps on the host (the frame-level masks act on them), or None
        self.lengths = None if mat is None else torch.as_tensor(mat, device=device)

    def batch(self, idx: torch.Tensor | slice) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Features and labels of rows ``idx`` (a device index tensor, or a slice: views, no copies)."""
        return [x[idx] for x in self.x], self.y[idx]

    def lengths_of(self, idx: torch.Tensor | slice) -> Optional[torch.Tensor]:
        """Lengths ``(B, 3)`` of rows ``idx`` (None when the split records none)."""
        return None if self.lengths is None else self.lengths[idx]

    @property
    def all_present(self) -> bool:
        """True when every sample has every modality."""
        return bool(self.present.all())


def run_model(model: MissingModalityModel, x: Sequence[torch.Tensor], modes: torch.Tensor,
              frames: Optional[dict] = None, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``model(text, audio, vision, modes, frame_masks, lengths=...)``: the one way batches enter a model (``lengths``
    is passed only when the data records lengths, so a user's own module without the argument still runs)."""
    if lengths is None:
        return model(*x, modes, frames)
    return model(*x, modes, frames, lengths=lengths)


def frames_on(frame: Optional[dict], device: torch.device) -> Optional[dict]:
    """Frame masks ``{modality: (N, T) bool}`` as device tensors, once per split or epoch (batches index them there)."""
    return None if frame is None else {k: torch.as_tensor(v, device=device) for k, v in frame.items()}


def frame_rows(frames: Optional[dict], idx: torch.Tensor | slice) -> Optional[dict]:
    """Rows ``idx`` of device frame masks (None stays None)."""
    return None if frames is None else {k: v[idx] for k, v in frames.items()}


def predict(model: MissingModalityModel, data: SplitTensors, masks: MissingMasks, batch_size: int = 256,
            amp: bool = False) -> np.ndarray:
    """Eval-mode predictions ``(N, output_dim)`` under fixed ``masks``."""
    model.eval()
    device = data.y.device
    modes = torch.as_tensor(masks.modes, device=device)
    frames = frames_on(masks.frame_masks, device)
    out = []
    with torch.no_grad(), autocast_for(device, amp):
        for start in range(0, data.n, batch_size):
            rows = slice(start, min(start + batch_size, data.n))
            x, _ = data.batch(rows)
            out.append(run_model(model, x, modes[rows], frame_rows(frames, rows), data.lengths_of(rows)).float())
    return torch.cat(out).cpu().numpy()  # one copy to the host


def labelled_rows(ds: MultimodalDataset, labels: Any) -> np.ndarray:
    """bool ``(N,)``: rows that have a label (NaN regression labels and class -1 mean none: data for prediction)."""
    y = np.asarray(labels)
    return np.isfinite(y) if ds.task == "regression" else y >= 0


def score_predictions(ds: MultimodalDataset, pred: np.ndarray, labels: Any) -> dict[str, float]:
    """Loss and the dataset's metrics for raw model outputs ``pred`` ``(N, output_dim)`` against ``labels`` ``(N,)``
    (rows without a label are left out; none at all: an empty dict).

    The one place where predictions become numbers: training, evaluation, curves and widgets all call it.
    """
    keep = labelled_rows(ds, labels)
    if not keep.all():
        if not keep.any():
            return {}
        pred, labels = np.asarray(pred)[keep], np.asarray(labels)[keep]
    y = torch.as_tensor(np.asarray(labels))
    loss = float(criterion_for(ds)(torch.as_tensor(pred), loss_target(y, ds.task)))
    return {"loss": loss, **M.dataset_metrics(ds, pred, y.numpy())}


def evaluate_split(model: MissingModalityModel, ds: MultimodalDataset, data: SplitTensors, masks: MissingMasks,
                   batch_size: int = 256, amp: bool = False) -> dict[str, float]:
    """Loss and the dataset's metrics on one split under fixed masks."""
    return score_predictions(ds, predict(model, data, masks, batch_size, amp), data.y.cpu())


def _scored(ds: MultimodalDataset, pred: np.ndarray, data: SplitTensors, masks: MissingMasks) -> dict:
    """Loss and metrics of ``pred`` (via :func:`score_predictions`) + the masks' missing fractions."""
    result = score_predictions(ds, pred, data.y.cpu())
    result["missing_sample_fraction"] = float(np.mean(masks.modes != COMPLETE_MODE))
    result["missing_entry_fraction"] = masks.missing_fraction()
    return result


def evaluate_model(model: MissingModalityModel, ds: MultimodalDataset, spec: MissingSpec, split: str = "test",
                   device: str = "auto", data: Optional[SplitTensors] = None, amp: bool = False,
                   by_pattern: bool = False) -> dict:
    """Metrics of ``model`` on ``split`` under the fixed masks of ``spec`` (+ implied missing fractions); with
    ``by_pattern`` also ``"by_pattern"``: the records of :func:`pattern_table` (metrics per observed pattern)."""
    dev = resolve_device(device)
    model.to(dev)
    data = data or SplitTensors(ds[split], dev)
    masks = eval_masks(spec, ds[split], split, ds.seq_lens)
    pred = predict(model, data, masks, amp=amp)
    result = _scored(ds, pred, data, masks)
    if by_pattern:
        result["by_pattern"] = pattern_table(ds, pred, data.y.cpu().numpy(), masks).to_dict("records")
    return result


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
        if k not in self.passes:  # every sample in mode k, or in what it has of mode k (effective_modes)
            masks = eval_masks(MissingSpec(force_mode=k), self.data.ids, self.split, present=self.data.present)
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
        masks = eval_masks(spec, self.data.ids, self.split, self.ds.seq_lens, present=self.data.present,
                           lengths=self.data.host_lengths)
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
    shared with :func:`per_mode_table`, may hold them already); a frame-level protocol (``frame``, ``block``,
    ``temporal``, ``temporal_block``: predictions depend on the kept steps, not only on the mode), a batch-coupled
    model or ``cached=False``: one pass per (rate, seed). Summaries: :mod:`mplmm.summaries`.
    """
    from tqdm.auto import tqdm

    evaluator = _cache_for(model, ds, split, device, cached, cache, amp)
    rows = []
    grid = [(float(r), int(s)) for r in rates for s in seeds]
    for rate, seed in tqdm(grid, desc="curve", disable=not progress):
        res = evaluator.evaluate(MissingSpec(protocol, rate, seed))
        rows.append({"rate": rate, "mask_seed": seed, "protocol": protocol, "split": split, **res})
    return pd.DataFrame(rows)


def noisy_tensors(data: SplitTensors, ds: MultimodalDataset, split: str, spec: NoiseSpec) -> SplitTensors:
    """A copy of ``data`` whose features carry the seeded noise of ``spec`` (:func:`mplmm.noise.draw_noise`, scales
    from the training split); labels, lengths and what is recorded are shared, nothing is marked absent."""
    noisy = copy.copy(data)
    if spec.level == 0:
        return noisy
    shapes = {m: tuple(x.shape[1:]) for m, x in zip(MODALITIES, data.x)}
    added = draw_noise(spec, data.ids, split, shapes, noise_scales(ds["train"]), data.present)
    noisy.x = [x + torch.as_tensor(added[m], device=x.device) for m, x in zip(MODALITIES, data.x)]
    return noisy


def noise_curve(model: MissingModalityModel, ds: MultimodalDataset, levels: Iterable[float],
                seeds: Sequence[int] = (0,), split: str = "test", device: str = "auto", rate: float = 0.0,
                protocol: str = "modality", progress: bool = False, amp: bool = False) -> pd.DataFrame:
    """One row per (noise level, noise seed): the split's metrics with Gaussian feature noise of that level
    (:class:`mplmm.noise.NoiseSpec`) added to what each sample has, under the ``protocol`` masks at missing ``rate``
    (default 0: noise only; mask seed 0). Columns ``noise``, ``noise_seed``, ``corruption`` (gaussian), ``rate``,
    ``mask_seed``, ``protocol``, ``split`` and the metrics: noise is recorded apart from missingness."""
    from tqdm.auto import tqdm

    specs = [NoiseSpec(level, seed) for level in levels for seed in seeds]  # validates every level first
    MissingSpec(protocol, rate, 0)
    dev = resolve_device(device)
    model.to(dev)
    clean = SplitTensors(ds[split], dev)
    rows = []
    for spec in tqdm(specs, desc="noise", disable=not progress):
        data = noisy_tensors(clean, ds, split, spec)
        res = ModePredictions(model, ds, split, device, data=data, amp=amp).evaluate(MissingSpec(protocol, rate, 0))
        rows.append({"noise": spec.level, "noise_seed": spec.seed, "corruption": "gaussian", "rate": float(rate),
                     "mask_seed": 0, "protocol": protocol, "split": split, **res})
    return pd.DataFrame(rows)


def per_mode_table(model: MissingModalityModel, ds: MultimodalDataset, split: str = "test",
                   device: str = "auto", amp: bool = False, *, cached: bool = True,
                   cache: Optional[ModePredictions] = None) -> pd.DataFrame:
    """One row per missing mode 0..6: every sample that has the mode's modalities, forced into it (``n_in_mode``
    of them; a sample lacking one of them is left out of that row, never scored as if it had it); ``cache`` as in
    :func:`robustness_curve`. With fully recorded data every sample counts in every row."""
    evaluator = _cache_for(model, ds, split, device, cached, cache, amp)
    labels = evaluator.data.y.cpu().numpy()
    rows = []
    for mode in range(N_MODES):
        spec = MissingSpec("modality", 1.0 if mode < 6 else 0.0, 0, force_mode=mode)
        masks = eval_masks(spec, evaluator.data.ids, split, ds.seq_lens, present=evaluator.data.present)
        keep = masks.modes == mode
        pred = evaluator.predict(masks)
        res = score_predictions(ds, pred[keep], labels[keep]) if keep.any() else {}
        res["missing_sample_fraction"] = float(mode != COMPLETE_MODE) if keep.any() else float("nan")
        res["missing_entry_fraction"] = float(1 - np.mean(PRESENT_ROWS[mode])) if keep.any() else float("nan")
        rows.append({"mode": mode, "mode_name": MODE_NAMES[mode], "split": split, "n_in_mode": int(keep.sum()),
                     **res})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------------------
# per-sample predictions and the live explorer
# ----------------------------------------------------------------------------------------------------------------------
def pattern_table(ds: MultimodalDataset, pred: np.ndarray, labels: Any, masks: MissingMasks) -> pd.DataFrame:
    """Metrics for each **observed** missing pattern (what the samples really have, before any simulated drop):
    ``pattern`` (mode name), ``observed_mode``, ``n`` (samples), ``n_labelled`` and the dataset's metrics
    (groups of fewer than two labelled samples get counts only)."""
    observed = np.full(len(masks), COMPLETE_MODE) if masks.observed is None else np.asarray(masks.observed)
    keep = labelled_rows(ds, labels)
    rows = []
    for k in sorted(set(observed.tolist()), key=lambda m: (m != COMPLETE_MODE, m)):
        sel = observed == k
        row = {"pattern": MODE_NAMES[k], "observed_mode": int(k), "n": int(sel.sum()),
               "n_labelled": int((sel & keep).sum())}
        if row["n_labelled"] >= 2:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row.update(score_predictions(ds, np.asarray(pred)[sel], np.asarray(labels)[sel]))
        rows.append(row)
    return pd.DataFrame(rows)


def prediction_table(ds: MultimodalDataset, split: str, masks: MissingMasks, pred: np.ndarray) -> pd.DataFrame:
    """id, mode, truth and pred (output 0 for regression, the arg-max class otherwise) per sample of ``split``."""
    frame = pd.DataFrame({"id": ds[split].ids, "mode": masks.modes, "truth": ds[split].labels})
    frame["pred"] = pred[:, 0] if ds.task == "regression" else pred.argmax(1)
    return frame


@torch.no_grad()
def predictions_frame(model: MissingModalityModel, ds: MultimodalDataset, spec: MissingSpec, split: str = "test",
                      device: str = "auto", amp: bool = False) -> pd.DataFrame:
    """Per-sample predictions with id, mode and truth (for error analysis)."""
    dev = resolve_device(device)
    model.to(dev)
    data = SplitTensors(ds[split], dev)
    masks = eval_masks(spec, ds[split], split, ds.seq_lens)
    return prediction_table(ds, split, masks, predict(model, data, masks, amp=amp))


def evaluate_missing(model: MissingModalityModel, ds: MultimodalDataset, split: str = "test", rate: float = 0.0,
                     present: Sequence[bool] = (True, True, True), seed: int = 0, protocol: str = "modality",
                     data: Optional[SplitTensors] = None, cache: Optional[ModePredictions] = None) -> dict:
    """Evaluate ``model`` on ``split`` at missing ``rate``, or with the modalities switched off in ``present``.

    All three present: the seeded ``protocol`` masks at ``rate`` (as :func:`evaluate_model`). Some switched off: every
    sample is forced into the corresponding mode (the rate is then ignored). All three off: ``ConfigError``. ``data``
    may be a cached :class:`SplitTensors`; ``cache`` a :class:`ModePredictions` of this model and split (no forward
    pass once the masks' modes are cached, except under frame masks). Returns ``spec``, ``forced_mode``,
    ``mode_counts``, ``missing_entry_fraction``, ``metrics`` (loss + the dataset's metrics), ``predictions``
    (DataFrame id, mode, truth, pred), ``task`` and ``primary_metric``.
    """
    flags = tuple(bool(p) for p in present)
    if len(flags) != 3:
        raise ConfigError(f"present must give three flags (text, audio, vision), got {present!r}")
    if not any(flags):
        raise ConfigError("all three modalities switched off: MPLMM has no such mode (keep at least one)")
    forced = None if all(flags) else present_to_mode(*flags)
    spec = MissingSpec(protocol, float(rate), int(seed), force_mode=forced)
    if cache is None:  # one forward pass under the masks, in fp32 on the model's device
        cache = ModePredictions(model, ds, split, model_device(model), data, enabled=False)
    elif cache.model is not model or cache.split != split:
        raise ValueError("evaluate_missing: cache holds another model's or split's predictions")
    masks = eval_masks(spec, ds[split], split, ds.seq_lens)
    pred = cache.predict(masks)
    return {"spec": spec.to_dict(), "forced_mode": forced, "mode_counts": mode_counts(masks.modes),
            "missing_entry_fraction": masks.missing_fraction(),
            "metrics": score_predictions(ds, pred, cache.data.y.cpu()),
            "predictions": prediction_table(ds, split, masks, pred), "task": ds.task,
            "primary_metric": M.headline_metric(ds)}


__all__ = [
    "DEFAULT_RATES", "ModePredictions", "SplitTensors", "area_under_curve", "evaluate_missing", "evaluate_model",
    "evaluate_split", "frame_rows", "frames_on", "labelled_rows", "noise_curve", "noisy_tensors", "pattern_table",
    "per_mode_table", "predict", "predict_all_modes", "prediction_table", "predictions_frame", "robustness_curve",
    "run_model", "score_predictions",
]
