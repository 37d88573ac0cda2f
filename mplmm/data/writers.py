"""Writers: :func:`save_dataset` in every layout the readers accept, so each reader is tested by round trip.

Writes are atomic: files through :func:`mplmm.utils.atomic_write`; a folder is written under a temporary name beside
the target, then ``os.replace``-d. Both get the user's usual permissions (``0666`` / ``0777`` minus the umask).
Pickle files carry an extra top-level ``meta`` dict (task, class names, label range, metric family); MulT/MMSA code
that indexes ``data[split]`` ignores it. A split with absent modalities gets a ``present`` entry ``(N, 3)`` (bool).
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..constants import MODALITIES
from ..utils import atomic_write, temp_sibling
from .schema import SPLITS, DataError, MultimodalDataset, Split

WRITE_FORMATS = ("mult_pickle", "mmsa_pickle", "npz", "iemocap_mmin")


def _meta(ds: MultimodalDataset) -> dict:
    return {"name": ds.name, "task": ds.task, "class_names": ds.class_names, "metric_family": ds.metric_family,
            "label_range": list(ds.label_range) if ds.label_range and not ds.label_range_inferred else None,
            "threshold": ds.threshold,
            "features": json.dumps(ds.features, sort_keys=True) if ds.features else None,
            "writer": "mplmm"}


def _lengths(sp: Split, m: str) -> np.ndarray:
    """Valid lengths of modality ``m`` (full length when the split has none; 0 where it is absent)."""
    if sp.lengths and m in sp.lengths:
        return np.asarray(sp.lengths[m], dtype=np.int64)
    return np.where(sp.present[:, MODALITIES.index(m)], sp.modality(m).shape[1], 0).astype(np.int64)


def _one_hot_pairs(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Class index -> MulT IEMOCAP per-emotion binary layout ``(N, C, 2)``."""
    out = np.zeros((labels.shape[0], n_classes, 2), dtype=np.float32)
    out[:, :, 0] = 1.0
    out[np.arange(labels.shape[0]), labels, 0] = 0.0
    out[np.arange(labels.shape[0]), labels, 1] = 1.0
    return out


def _split_dict(ds: MultimodalDataset, sp: Split, fmt: str) -> dict[str, np.ndarray]:
    """One split as a MulT or MMSA key dict."""
    d: dict[str, Any] = {m: sp.modality(m) for m in MODALITIES}
    d["id"] = np.array(sp.ids, dtype=object) if fmt != "npz" else np.asarray(sp.ids, dtype=str)
    if not sp.present.all():
        d["present"] = np.asarray(sp.present, dtype=bool)
    if fmt == "mult_pickle":
        d["labels"] = (sp.labels.reshape(-1, 1, 1).astype(np.float32) if ds.task == "regression"
                       else _one_hot_pairs(sp.labels, len(ds.class_names or [])))
        return d
    if ds.task == "regression":
        d["regression_labels"] = sp.labels.astype(np.float32)
    else:
        d["classification_labels"] = sp.labels.astype(np.int64)
    for m in MODALITIES:
        if m != "text" or (sp.lengths and "text" in sp.lengths):
            d[f"{m}_lengths"] = _lengths(sp, m)
    return d


def _write_pickle(ds: MultimodalDataset, path: Path, fmt: str) -> None:
    data: dict[str, Any] = {s: _split_dict(ds, ds[s], fmt) for s in ds.split_names}
    data["meta"] = _meta(ds)
    atomic_write(path, lambda fh: pickle.dump(data, fh, protocol=4))


def _write_npz(ds: MultimodalDataset, path: Path) -> None:
    arrays = {f"{s}__{k}": v for s in ds.split_names for k, v in _split_dict(ds, ds[s], "npz").items()}
    for k, v in _meta(ds).items():
        if v is not None:
            arrays[f"meta__{k}"] = np.asarray(v, dtype=float if k in ("label_range", "threshold") else str)
    atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))


def _write_iemocap(ds: MultimodalDataset, root: Path, fold: int,
                   mean_std: Optional[tuple[np.ndarray, np.ndarray]]) -> None:
    """MMIN folder layout (see :mod:`readers_iemocap`)."""
    from .readers_iemocap import FEATURE_FILES, SET_NAMES, import_h5py

    h5py = import_h5py()
    if ds.task != "classification":
        raise DataError(f"{root}: the iemocap_mmin layout needs a classification dataset, got {ds.task}")
    all_ids = np.concatenate([ds[s].ids for s in SPLITS])
    if len(set(all_ids.tolist())) != len(all_ids) or any("/" in i for i in all_ids.tolist()):
        raise DataError(f"{root}: iemocap_mmin needs unique ids without '/' across all splits")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(root, os.mkdir)  # 0777 minus the umask, like any new folder
    try:
        for m, (sub, stem) in FEATURE_FILES.items():
            (tmp / sub).mkdir()
            with h5py.File(tmp / sub / f"{stem}.h5", "w") as f:
                for s in SPLITS:
                    sp, lens = ds[s], _lengths(ds[s], m)
                    for i, uid in enumerate(sp.ids.tolist()):
                        f.create_dataset(uid, data=sp.modality(m)[i, : int(lens[i])])  # absent: 0 frames
        if mean_std is not None:
            with h5py.File(tmp / "A" / "comparE_mean_std.h5", "w") as f:
                g = f.create_group(str(fold))
                g.create_dataset("mean", data=np.asarray(mean_std[0], dtype=np.float32))
                g.create_dataset("std", data=np.asarray(mean_std[1], dtype=np.float32))
        tdir = tmp / "target" / str(fold)
        tdir.mkdir(parents=True)
        n_cls = len(ds.class_names or [])
        for s in SPLITS:
            np.save(tdir / f"{SET_NAMES[s]}_label.npy", np.eye(n_cls, dtype=np.float32)[ds[s].labels])
            names = np.char.encode(ds[s].ids.astype(str), "utf-8").reshape(-1, 1)  # MMIN: (N, 1) bytes
            np.save(tdir / f"{SET_NAMES[s]}_int2name.npy", names)
        (tmp / "target" / "class_names.txt").write_text("\n".join(ds.class_names or []) + "\n")
        _replace_dir(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_dir(tmp: Path, root: Path) -> None:
    """Move folder ``tmp`` onto ``root`` (an existing folder is set aside and removed afterwards)."""
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: exists and is not a folder")
    old = None
    if root.exists():
        old = root.parent / f".{root.name}.old-{os.getpid()}"
        os.replace(root, old)
    os.replace(tmp, root)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_dataset(ds: MultimodalDataset, path: str | os.PathLike, format: str = "npz", *, fold: int = 1,
                 mean_std: Optional[tuple[np.ndarray, np.ndarray]] = None) -> Path:
    """Write ``ds`` as ``format`` (``mult_pickle``, ``mmsa_pickle``, ``npz`` or ``iemocap_mmin``); returns the path.

    ``fold`` and ``mean_std`` (audio statistics written to ``A/comparE_mean_std.h5``) apply to ``iemocap_mmin``.
    """
    path = Path(path)
    if format in ("mult_pickle", "mmsa_pickle"):
        _write_pickle(ds, path, format)
    elif format == "npz":
        _write_npz(ds, path)
    elif format == "iemocap_mmin":
        _write_iemocap(ds, path, fold, mean_std)
    else:
        raise DataError(f"unknown write format {format!r}; expected one of {list(WRITE_FORMATS)}")
    return path
