"""Trained checkpoints on new data: prepare it as the training data was, predict, write one row per sample.

* :func:`prepare_data` loads a file (or takes a dataset) for a model loaded with :func:`mplmm.load_model`: labels and
  splits are optional, the checkpoint's standardization statistics replace the data's own, and sequences are padded
  or truncated to the trained lengths when the model's parameters are sized by them (MPLMM). Padding added here is
  recorded in the lengths, so models mask it.
* :func:`predict` returns a DataFrame: ``id``, ``split``, ``present`` (the modalities the sample has), ``mode`` and
  ``mode_name`` (the missing mode it was run in: what it has, intersected with a what-if ``mode``/``rate``), the
  prediction (``prediction``, or ``predicted_class`` and ``prob_<class>``) and ``label`` when there is one. Batches
  stream through the model (a progress bar on long runs); nothing is copied to the device but the current batch.
* :func:`write_table` writes CSV, Parquet or JSON lines by extension, atomically.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch

from .checkpoint import check_model_fits
from .constants import MODALITIES, MODE_NAMES, PRESENT_ROWS
from .data.registry import apply_statistics, fit_seq_lens, load_dataset
from .data.schema import DataError, MultimodalDataset, Split
from .errors import ConfigError
from .evaluate import run_model
from .missing import MissingSpec, eval_masks
from .models.base import MissingModalityModel
from .utils import PathLike, atomic_write, autocast_for, model_device, resolve_device

#: output formats of :func:`write_table`, by file extension
TABLE_FORMATS = (".csv", ".parquet", ".jsonl")


def _info(model: MissingModalityModel) -> dict:
    """What :func:`mplmm.load_model` stored on the model (empty for a model built in this session)."""
    return getattr(model, "checkpoint", None) or {}


def label_options_of(model: MissingModalityModel) -> dict:
    """``load_dataset`` label keywords that read new data as the training data was read (task, class names, label
    range, threshold, metric family); empty for a model without a checkpoint."""
    sig = _info(model).get("data") or {}
    if not sig.get("task"):
        return {}
    if sig["task"] == "classification":
        return {"task": "classification", "class_names": sig.get("class_names"),
                "metric_family": sig.get("metric_family")}
    out = {"task": "regression", "metric_family": sig.get("metric_family"), "label_range": sig.get("label_range")}
    if sig.get("threshold") is not None and sig.get("metric_family") == "regression":
        out["threshold"] = sig["threshold"]
    return {k: v for k, v in out.items() if v is not None}


def _restore_raw(ds: MultimodalDataset) -> None:
    """Undo the standardization recorded in ``ds.preprocessing`` (real frames only; padding stays 0)."""
    from .data.registry import _frame_mask

    for m, st in ds.preprocessing.pop("standardize", {}).items():
        mean, std = np.asarray(st["mean"]), np.asarray(st["std"])
        for sp in ds.splits.values():
            x = (sp.modality(m) * std + mean).astype(np.float32)
            x[~_frame_mask(sp, m)] = 0.0
            setattr(sp, m, x)


def conform(ds: MultimodalDataset, model: MissingModalityModel, notes: Optional[list[str]] = None) -> None:
    """Bring ``ds`` (in place) to the model's training preprocessing: its standardization statistics, and the
    trained sequence lengths where the model is sized by them (or the training asked for fixed ones)."""
    notes = ds.notes if notes is None else notes
    info = _info(model)
    pre = info.get("preprocessing")
    wanted = (pre or {}).get("standardize") or {}
    have = ds.preprocessing.get("standardize") or {}
    if pre is not None and have != wanted:
        _restore_raw(ds)
        if wanted:
            apply_statistics(ds, wanted)
        notes.append("features standardized with the checkpoint's training statistics" if wanted
                     else "features kept raw, as in training")
    trained = (info.get("data") or {}).get("seq_lens") or model.config.get("seq_lens")
    target = trained if getattr(model, "fixed_seq_lens", False) else (pre or {}).get("seq_lens")
    if target and tuple(ds.seq_lens) != tuple(int(t) for t in target):
        fit_seq_lens(ds, target)
        notes.append(f"sequences padded/truncated to the trained lengths {tuple(int(t) for t in target)} (the "
                     "padding is masked)")


def _shallow_copy(ds: MultimodalDataset) -> MultimodalDataset:
    """A copy of ``ds`` that shares the arrays but not what :func:`conform` replaces (splits, lengths dicts, notes,
    preprocessing): conforming it leaves ``ds`` as it was."""
    import copy
    from dataclasses import replace

    splits = {k: replace(sp, lengths=None if sp.lengths is None else dict(sp.lengths)) for k, sp in ds.splits.items()}
    return replace(ds, splits=splits, notes=list(ds.notes), preprocessing=copy.deepcopy(ds.preprocessing))


def prepare_data(model: MissingModalityModel, data: Union[MultimodalDataset, PathLike], *,
                 for_prediction: bool = True, verbose: bool = False, **options: Any) -> MultimodalDataset:
    """The dataset ``data`` (a path, a synthetic name or a dataset, which is left unchanged) prepared for ``model``,
    checked to fit it.

    A path is read with ``standardize=False`` and, for prediction, the checkpoint's label options (so an unlabeled
    file needs nothing else); ``options`` go to :func:`mplmm.data.load_dataset` (they win over the checkpoint's).
    A checkpoint without stored preprocessing (older files) falls back to the data's own statistics, as before.
    """
    if isinstance(data, MultimodalDataset):
        ds = _shallow_copy(data)  # preparing never changes the caller's dataset
    else:
        synthetic = str(data).startswith("synthetic") and not Path(str(data)).exists()
        labels = {} if synthetic or not for_prediction else label_options_of(model)
        legacy = _info(model).get("preprocessing") is None
        kw = {"standardize": "auto" if legacy else False, "verbose": verbose, **labels, **options}
        if not synthetic:
            kw["for_prediction"] = for_prediction
        ds = load_dataset(data, **kw)
        if legacy and _info(model):
            ds.notes.append("checkpoint without stored preprocessing (older file): standardized by the data's own "
                            "training statistics where the 'auto' rule applies")
    conform(ds, model)
    check_model_fits(model, ds, f"checkpoint {_info(model).get('path', '')}".strip())
    return ds


def _split_batches(sp: Split, batch_size: int, device: torch.device
                   ) -> Iterator[tuple[slice, list[torch.Tensor], Optional[torch.Tensor]]]:
    """``(rows, [text, audio, vision], lengths)`` per batch; only the batch is copied to the device."""
    lengths = sp.length_matrix()
    for start in range(0, len(sp), batch_size):
        rows = slice(start, min(start + batch_size, len(sp)))
        x = [torch.from_numpy(np.ascontiguousarray(sp.modality(m)[rows])).to(device) for m in MODALITIES]
        yield rows, x, None if lengths is None else torch.from_numpy(lengths[rows]).to(device)


def _present_text(present: np.ndarray) -> list[str]:
    return ["+".join(m for m, p in zip(MODALITIES, row) if p) for row in present.tolist()]


def _choose_splits(ds: MultimodalDataset, split: Optional[Union[str, Sequence[str]]]) -> list[str]:
    """``None``/``"all"``: every split of ``ds``; else the named one(s), checked."""
    if split is None or split == "all":
        return ds.split_names
    names = [split] if isinstance(split, str) else list(split)
    bad = [s for s in names if s not in ds.splits]
    if bad:
        raise ConfigError(f"split: {bad[0]!r} is not in {ds.name!r}; it has {ds.split_names} (or 'all')")
    return names


def _prediction_columns(ds: MultimodalDataset, out: np.ndarray) -> dict[str, Any]:
    """The prediction columns: ``prediction`` (regression) or ``predicted_class`` + ``prob_<class>``."""
    if ds.task == "regression":
        return {"prediction": out[:, 0].astype(float)}
    probs = torch.softmax(torch.as_tensor(out, dtype=torch.float32), dim=1).numpy()
    names = ds.class_names or [str(i) for i in range(out.shape[1])]
    cols: dict[str, Any] = {"predicted_class": [names[i] for i in out.argmax(1)]}
    cols.update({f"prob_{c}": probs[:, i].astype(float) for i, c in enumerate(names)})
    return cols


def _label_column(ds: MultimodalDataset, labels: np.ndarray) -> Optional[list]:
    """Labels as values or class names (None where a sample has none); None when no sample has one."""
    if ds.task == "regression":
        has = np.isfinite(labels)
        return [float(v) if h else None for v, h in zip(labels.tolist(), has)] if has.any() else None
    has = labels >= 0
    names = ds.class_names or []
    return [names[v] if h else None for v, h in zip(labels.tolist(), has)] if has.any() else None


@torch.no_grad()
def predict_outputs(model: MissingModalityModel, sp: Split, modes: np.ndarray, batch_size: int = 64,
                    amp: bool = False, progress: Any = None) -> np.ndarray:
    """Raw outputs ``(N, output_dim)`` of ``model`` on one split in the given ``modes``, batch by batch."""
    device = model_device(model)
    model.eval()
    outs = []
    modes_t = torch.as_tensor(modes)
    with autocast_for(device, amp):
        for rows, x, lengths in _split_batches(sp, batch_size, device):
            outs.append(run_model(model, x, modes_t[rows].to(device), None, lengths).float().cpu())
            if progress is not None:
                progress.update(rows.stop - rows.start)
    return torch.cat(outs).numpy()


def predict(model: MissingModalityModel, data: Union[MultimodalDataset, PathLike], split: Optional[str] = "all", *,
            mode: Optional[int] = None, rate: float = 0.0, protocol: str = "modality", eval_seed: int = 0,
            batch_size: int = 64, amp: bool = False, device: Optional[str] = None, progress: bool = False,
            **options: Any) -> pd.DataFrame:
    """One row per sample of ``split`` (``"all"``: every split) with what the model predicts for it.

    ``data``: a dataset or a path (prepared by :func:`prepare_data`; ``options`` go to the loader). Each sample runs
    in the mode of what it really has; ``mode`` (force one missing mode) or ``rate``/``protocol``/``eval_seed`` (the
    seeded protocol's drops) are what-if runs on top, never giving a sample a modality it lacks. ``amp``: bfloat16
    autocast on CUDA and on CPUs with native bfloat16 (see :func:`mplmm.utils.native_bf16`).
    """
    from tqdm.auto import tqdm

    if device is not None:
        model.to(resolve_device(device))
    ds = prepare_data(model, data, **options)
    spec = MissingSpec(protocol, rate, eval_seed, force_mode=mode)
    names = _choose_splits(ds, split)
    frames = []
    bar = tqdm(total=sum(len(ds[s]) for s in names), desc="predict", unit="sample", disable=not progress)
    for s in names:
        sp = ds[s]
        masks = eval_masks(spec, sp, s, ds.seq_lens)
        if masks.frame_masks is not None:
            raise ConfigError(f"predict: the {spec.protocol} protocol drops time steps per sample; use evaluate/curve "
                              "for it")
        out = predict_outputs(model, sp, masks.modes, batch_size, amp, bar)
        cols: dict[str, Any] = {"id": sp.ids.tolist(), "split": s, "present": _present_text(sp.present),
                                "mode": masks.modes.astype(int), "mode_name": [MODE_NAMES[k] for k in masks.modes]}
        cols.update(_prediction_columns(ds, out))
        label = _label_column(ds, sp.labels)
        if label is not None:
            cols["label"] = label
        frames.append(pd.DataFrame(cols))
    bar.close()
    table = pd.concat(frames, ignore_index=True)
    if set(table["split"]) == {"unsplit"}:
        table = table.drop(columns="split")
    table.attrs["notes"] = list(ds.notes)
    return table


def write_table(table: pd.DataFrame, path: PathLike) -> Path:
    """Write ``table`` as CSV, Parquet or JSON lines (by the extension of ``path``), atomically."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in TABLE_FORMATS:
        raise ConfigError(f"--out {path}: expected one of the extensions {list(TABLE_FORMATS)}, got {ext or 'none'!r}")
    if ext == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ConfigError("writing .parquet needs pyarrow: pip install pyarrow (or write .csv / .jsonl)") from None
        return atomic_write(path, lambda fh: table.to_parquet(fh, index=False))
    if ext == ".jsonl":
        text = table.to_json(orient="records", lines=True)
        return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
    return atomic_write(path, lambda fh: fh.write(table.to_csv(index=False).encode("utf-8")))


def modes_of_present(present: Sequence[bool]) -> list[int]:
    """The missing modes a sample with these recorded modalities can run in (each keeps a subset of them)."""
    flags = tuple(bool(p) for p in present)
    return [k for k, row in enumerate(PRESENT_ROWS) if all(p or not r for r, p in zip(row, flags))]


def find_ids(ds: MultimodalDataset, ids: Sequence[str]) -> list[tuple[str, str, int]]:
    """``(id, split, row)`` for each id (in every split); an unknown id is one line naming it and a few known ones."""
    where: dict[str, tuple[str, int]] = {}
    for s in ds.split_names:
        for i, uid in enumerate(ds[s].ids.tolist()):
            where.setdefault(str(uid), (s, i))
    missing = [i for i in ids if str(i) not in where]
    if missing:
        known = ", ".join(list(where)[:3])
        raise DataError(f"{ds.source}: no sample with id {missing[0]!r}" + (f" (and {len(missing) - 1} more)"
                        if len(missing) > 1 else "") + f"; ids look like {known}")
    return [(str(i), *where[str(i)]) for i in ids]


__all__ = ["TABLE_FORMATS", "conform", "find_ids", "label_options_of", "modes_of_present", "predict",
           "predict_outputs", "prepare_data", "write_table"]
