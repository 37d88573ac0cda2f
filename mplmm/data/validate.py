"""Shared validation: every reader hands its arrays to :func:`build_dataset`, which checks them against the schema.

Every problem becomes a one-line :class:`~mplmm.data.schema.DataError` that names the file, the split, the key and
the shapes (found vs expected). Non-finite feature values are replaced by 0 with one counted warning per split/key
(or raise with ``strict=True``); non-finite labels are always an error.
"""
from __future__ import annotations

import warnings
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..constants import MODALITIES
from .schema import SPLITS, DataError, MultimodalDataset, Split

RANGE_TOL = 1e-3


def where(source: Any, split: Optional[str] = None, key: Optional[str] = None) -> str:
    """``"<source> [<split>] key '<key>'"`` — the prefix of every message."""
    text = str(source)
    if split:
        text += f" [{split}]"
    if key:
        text += f" key '{key}'"
    return text


def shape_str(shape: Sequence[int]) -> str:
    """``(1, 2, 3)`` without numpy's trailing comma for 1-tuples."""
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


def _stack_objects(x: np.ndarray, loc: str) -> np.ndarray:
    """Stack an object array of per-sample arrays; a ragged one raises a DataError naming two differing samples."""
    items = [np.asarray(v) for v in x.reshape(-1)]
    if not items:
        return np.zeros((0,), dtype=np.float32)
    first = items[0].shape
    for i, item in enumerate(items):
        if item.shape != first:
            raise DataError(
                f"{loc}: ragged sequences: sample 0 has shape {shape_str(first)} but sample {i} has shape "
                f"{shape_str(item.shape)}; pad them to one length (and store the lengths) before loading"
            )
    try:
        return np.stack(items).reshape(x.shape + first)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{loc}: object array whose items are not numeric arrays ({exc})") from exc


def as_numeric(x: Any, loc: str) -> np.ndarray:
    """``x`` as a numeric ndarray (object arrays of equal-shaped arrays are stacked)."""
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{loc}: cannot be read as an array ({exc}); ragged sequences?") from exc
    if arr.dtype == object:
        arr = _stack_objects(arr, loc)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(f"{loc}: expected a numeric array, got dtype {arr.dtype} with shape {shape_str(arr.shape)}")
    return arr


def to_features(x: Any, loc: str) -> np.ndarray:
    """float32 ``(N, T, D)``; utterance-level ``(N, D)`` becomes ``(N, 1, D)``."""
    arr = as_numeric(x, loc)
    if arr.ndim == 2:
        arr = arr[:, None, :]
    if arr.ndim != 3:
        raise DataError(f"{loc}: expected (N, T, D) or (N, D) features, got shape {shape_str(arr.shape)} "
                        f"(ndim {arr.ndim})")
    return np.ascontiguousarray(arr, dtype=np.float32)


def sanitize(x: np.ndarray, loc: str, strict: bool = False) -> np.ndarray:
    """Replace NaN/±inf by 0 with one counted warning (or raise if ``strict``)."""
    bad = ~np.isfinite(x)
    count = int(bad.sum())
    if count == 0:
        return x
    kinds = [name for name, n in (("-inf", np.isneginf(x).sum()), ("+inf", np.isposinf(x).sum()),
                                  ("nan", np.isnan(x).sum())) if n]
    if strict:
        raise DataError(f"{loc}: {count} non-finite values ({'/'.join(kinds)}) in features (strict=True)")
    if not x.flags.writeable:
        x = x.copy()
    x[bad] = 0.0
    warnings.warn(f"mplmm: {loc}: replaced {count} non-finite values ({'/'.join(kinds)}) with 0", stacklevel=3)
    return x


def to_regression_labels(y: Any, loc: str) -> np.ndarray:
    """float32 ``(N,)`` from ``(N,)``, ``(N, 1)`` or ``(N, 1, 1)``; NaN/inf is always an error."""
    arr = as_numeric(y, loc)
    if arr.ndim >= 1 and all(s == 1 for s in arr.shape[1:]):
        arr = arr.reshape(arr.shape[0])
    else:
        raise DataError(f"{loc}: expected regression labels (N,), (N, 1) or (N, 1, 1), "
                        f"got shape {shape_str(arr.shape)}")
    arr = arr.astype(np.float32)
    bad = int((~np.isfinite(arr)).sum())
    if bad:
        raise DataError(f"{loc}: {bad} labels are NaN or infinite")
    return arr


def to_class_labels(y: Any, loc: str, n_classes: Optional[int] = None) -> np.ndarray:
    """int64 ``(N,)`` from class indices ``(N,)``/``(N, 1)`` or one-hot ``(N, C)``."""
    arr = as_numeric(y, loc)
    if arr.ndim == 2 and arr.shape[1] > 1:
        if n_classes is not None and arr.shape[1] != n_classes:
            raise DataError(f"{loc}: one-hot labels have {arr.shape[1]} columns, expected {n_classes} classes")
        if not np.isfinite(arr).all():
            raise DataError(f"{loc}: labels contain NaN or infinite values")
        return arr.argmax(axis=1).astype(np.int64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"{loc}: expected class labels (N,) or one-hot (N, C), got shape {shape_str(arr.shape)}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise DataError(f"{loc}: {int((~np.isfinite(arr)).sum())} labels are NaN or infinite")
        if not np.all(arr == np.round(arr)):
            example = arr[arr != np.round(arr)][0]
            raise DataError(f"{loc}: class labels must be whole numbers, got values like {example}")
    return arr.astype(np.int64)


def _id_text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def to_ids(ids: Any, n: int, loc: str) -> np.ndarray:
    """str ``(N,)``; bytes are decoded, ``(N, 1)`` is flattened, and MulT's ``(N, K)`` id fields (video id and
    segment fields, read by MulT as ``meta[i][0..2]``) are joined with ``'_'`` into one id per sample."""
    arr = np.asarray(ids)
    if arr.ndim == 2 and arr.shape[0] == n and arr.shape[1] >= 1:
        out = ["_".join(_id_text(f).strip() for f in row) for row in arr.tolist()]
    elif arr.ndim == 1 and arr.shape[0] == n:
        out = [_id_text(v) for v in arr.tolist()]
    else:
        raise DataError(f"{loc}: expected (N,) ids or MulT's (N, K) id fields with N={n} like 'labels', "
                        f"got shape {shape_str(arr.shape)}")
    return np.array(out, dtype=str) if out else np.zeros((0,), dtype="<U1")


def to_lengths(lengths: Any, n: int, t_max: int, loc: str) -> tuple[np.ndarray, int]:
    """int64 ``(N,)`` lengths clipped to ``[0, t_max]``; returns ``(lengths, n_clipped)``."""
    arr = as_numeric(lengths, loc)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1 or arr.shape[0] != n:
        raise DataError(f"{loc}: expected (N,) lengths with N={n} like 'labels', "
                        f"got shape {shape_str(np.shape(lengths))}")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise DataError(f"{loc}: lengths contain NaN or infinite values")
    arr = arr.astype(np.int64)
    if (arr < 0).any():
        raise DataError(f"{loc}: {int((arr < 0).sum())} negative lengths")
    clipped = int((arr > t_max).sum())
    return np.minimum(arr, t_max), clipped


def fit_length(x: np.ndarray, t: int) -> np.ndarray:
    """Zero-pad or truncate ``(N, T, D)`` along time to exactly ``t`` frames."""
    if x.shape[1] == t:
        return x
    if x.shape[1] > t:
        return np.ascontiguousarray(x[:, :t])
    out = np.zeros((x.shape[0], t, x.shape[2]), dtype=x.dtype)
    out[:, : x.shape[1]] = x
    return out


def check_label_range(labels: np.ndarray, label_range: tuple[float, float], loc: str, hint: str = "") -> None:
    """Regression labels must lie in ``label_range`` (tolerance 1e-3)."""
    lo, hi = label_range
    out = (labels < lo - RANGE_TOL) | (labels > hi + RANGE_TOL)
    if out.any():
        raise DataError(
            f"{loc}: {int(out.sum())} labels outside label_range ({lo:g}, {hi:g}) "
            f"(min {labels.min():.4g}, max {labels.max():.4g}){hint}"
        )


def check_class_range(labels: np.ndarray, n_classes: int, loc: str) -> None:
    """Class indices must lie in ``[0, n_classes)``."""
    out = (labels < 0) | (labels >= n_classes)
    if out.any():
        raise DataError(
            f"{loc}: {int(out.sum())} class indices outside [0, {n_classes}) (min {labels.min()}, max {labels.max()})"
        )


def _build_split(raw: Mapping[str, Any], source: str, split: str, task: str, n_classes: Optional[int],
                 keys: Mapping[str, str], strict: bool, notes: list[str]) -> Split:
    """Validate one split's raw arrays."""
    lkey = keys.get("labels", "labels")
    if raw.get("labels") is None:
        raise DataError(f"{where(source, split, lkey)}: missing labels")
    loc = where(source, split, lkey)
    if task == "regression":
        labels = to_regression_labels(raw["labels"], loc)
    else:
        labels = to_class_labels(raw["labels"], loc, n_classes)
    n = labels.shape[0]
    if n == 0:
        raise DataError(f"{where(source, split)}: split is empty (0 samples in '{lkey}')")
    feats = {}
    for m in MODALITIES:
        mloc = where(source, split, keys.get(m, m))
        if raw.get(m) is None:
            raise DataError(f"{mloc}: missing {m} features")
        x = to_features(raw[m], mloc)
        if x.shape[0] != n:
            raise DataError(f"{mloc}: expected (N, T, D) with N={n} like '{lkey}', "
                            f"got shape {shape_str(np.shape(raw[m]))}")
        feats[m] = sanitize(x, where(source, split) + f" {keys.get(m, m)}", strict)
    if raw.get("ids") is None:
        ids = np.array([f"{split}_{i:06d}" for i in range(n)], dtype=str)
        notes.append(f"{split}: no ids in the file; synthesised ids '{split}_000000'...")
    else:
        ids = to_ids(raw["ids"], n, where(source, split, keys.get("ids", "id")))
    lengths = None
    if raw.get("lengths"):
        lengths = {}
        for m, v in raw["lengths"].items():
            lk = keys.get(f"{m}_lengths", f"{m}_lengths")
            lengths[m], clipped = to_lengths(v, n, feats[m].shape[1], where(source, split, lk))
            if clipped:
                notes.append(f"{split}: {clipped} {lk} values exceeded T={feats[m].shape[1]} and were clipped")
    return Split(feats["text"], feats["audio"], feats["vision"], labels, ids, lengths)


def _align_time(splits: dict[str, Split], source: str, notes: list[str]) -> None:
    """Check feature dims agree across splits; zero-pad shorter sequences to the longest split's length."""
    for m in MODALITIES:
        ref = splits["train"].modality(m).shape
        for name, s in splits.items():
            shp = s.modality(m).shape
            if shp[2] != ref[2]:
                raise DataError(
                    f"{where(source, name, m)}: feature dim {shp[2]} differs from train's {ref[2]} "
                    f"(train {shape_str(ref)}, {name} {shape_str(shp)})"
                )
        t_max = max(s.modality(m).shape[1] for s in splits.values())
        for name, s in splits.items():
            if s.modality(m).shape[1] != t_max:
                notes.append(f"{name}: {m} zero-padded from T={s.modality(m).shape[1]} to T={t_max} "
                             "to match the other splits")
                setattr(s, m, fit_length(s.modality(m), t_max))


def build_dataset(raw: Mapping[str, Mapping[str, Any]], *, name: str, source: str, fmt: str, task: str,
                  metric_family: str, class_names: Optional[list[str]] = None,
                  label_range: Optional[tuple[float, float]] = None, strict: bool = False,
                  keys: Optional[Mapping[str, str]] = None, notes: Optional[list[str]] = None,
                  range_hint: str = "", check_range: bool = True) -> MultimodalDataset:
    """Validate raw per-split arrays (``text, audio, vision, labels[, ids, lengths]``) into a dataset.

    ``keys`` maps roles to the key names used in the file (for messages), e.g. ``{"labels": "regression_labels"}``.
    ``check_range=False`` skips the label-range check (a range inferred from the training split).
    """
    keys = dict(keys or {})
    notes = list(notes or [])
    if not isinstance(raw, Mapping) or set(SPLITS) - set(raw):
        found = sorted(map(str, raw)) if isinstance(raw, Mapping) else type(raw).__name__
        raise DataError(f"{source}: expected splits {list(SPLITS)}, found {found}")
    if task not in ("regression", "classification"):
        raise DataError(f"{source}: unknown task {task!r}")
    n_classes = len(class_names) if (task == "classification" and class_names) else None
    splits = {s: _build_split(raw[s], source, s, task, n_classes, keys, strict, notes) for s in SPLITS}
    _align_time(splits, source, notes)
    lkey = keys.get("labels", "labels")
    for s, sp in splits.items():
        if task == "regression" and label_range is not None and check_range:
            check_label_range(sp.labels, label_range, where(source, s, lkey), range_hint)
        if task == "classification":
            if not class_names:
                raise DataError(f"{source}: classification dataset without class names")
            check_class_range(sp.labels, len(class_names), where(source, s, lkey))
    return MultimodalDataset(
        name=name, splits=splits, task=task, class_names=list(class_names) if class_names else None,
        label_range=tuple(float(v) for v in label_range) if label_range else None,  # type: ignore[arg-type]
        metric_family=metric_family, source=str(source), format=fmt, notes=notes,
    )
