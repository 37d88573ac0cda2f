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
from .schema import ALL_SPLITS, SPLITS, DataError, MultimodalDataset, Split

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


def item_array(item: Any, loc: str, i: int) -> Optional[np.ndarray]:
    """One sample of a per-sample sequence (object array or list): ``(T, D)`` float32, or None when absent (``None``,
    an empty array, a zero-length sequence, no finite value at all)."""
    if item is None:
        return None
    try:
        a = np.asarray(item, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{loc} sample {i}: not a numeric array ({exc})") from exc
    if a.size == 0 or not np.isfinite(a).any():
        return None
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise DataError(f"{loc} sample {i}: expected (T, D) or (D,), got shape {shape_str(a.shape)}")
    return a


def _pad_items(x: Sequence[Any], loc: str) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Per-sample items → ``(N, T_max, D)`` zero-padded, present flags, and lengths (None when all are equal)."""
    items = [item_array(v, loc, i) for i, v in enumerate(x)]
    real = [a for a in items if a is not None]
    if not real:
        raise DataError(f"{loc}: every sample is absent (None, empty or all-NaN); cannot tell the feature dim")
    dim = real[0].shape[1]
    for i, a in enumerate(items):
        if a is not None and a.shape[1] != dim:
            raise DataError(f"{loc}: feature dims differ: the first recorded sample has D={dim} but sample {i} has "
                            f"shape {shape_str(a.shape)}")
    lens = np.array([0 if a is None else a.shape[0] for a in items], dtype=np.int64)
    out = np.zeros((len(items), int(lens.max()), dim), dtype=np.float32)
    for i, a in enumerate(items):
        if a is not None:
            out[i, : a.shape[0]] = a
    present = lens > 0
    ragged = len(set(lens[present].tolist())) > 1
    return out, present, (lens if ragged else None)


def to_features(x: Any, loc: str) -> np.ndarray:
    """float32 ``(N, T, D)``; utterance-level ``(N, D)`` becomes ``(N, 1, D)``."""
    arr = as_numeric(x, loc)
    if arr.ndim == 2:
        arr = arr[:, None, :]
    if arr.ndim != 3:
        raise DataError(f"{loc}: expected (N, T, D) or (N, D) features, got shape {shape_str(arr.shape)} "
                        f"(ndim {arr.ndim})")
    if arr.shape[1] == 0:
        raise DataError(f"{loc}: zero-length sequences (T=0) for every sample, shape {shape_str(arr.shape)}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _per_sample_items(x: Any) -> Optional[list]:
    """The items of ``x`` when it holds one array per sample (a list/tuple, or a 1-D object array), else None."""
    if isinstance(x, (list, tuple)):
        return list(x)
    if isinstance(x, np.ndarray) and x.dtype == object and x.ndim == 1:
        return list(x)
    return None


def read_features(x: Any, loc: str) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """A modality's features as float32 ``(N, T, D)``, per-sample present flags (False: ``None`` or an empty
    sequence) and lengths (only for ragged per-sample items, which are zero-padded at the end)."""
    items = _per_sample_items(x)
    if items is not None and (any(v is None or np.size(v) == 0 for v in items)
                              or len({np.shape(v) for v in items}) > 1):
        return _pad_items(items, loc)
    arr = to_features(x, loc)
    return arr, np.ones(arr.shape[0], dtype=bool), None


#: samples per chunk when scanning features for non-finite values (bounds the temporary boolean arrays)
SCAN_CHUNK = 1024


def sanitize(x: np.ndarray, loc: str, strict: bool = False,
             lengths: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Scan ``(N, T, D)`` features for non-finite values, a chunk of samples at a time.

    A sample whose real frames (the first ``lengths[i]``, all when None) are all non-finite (all-NaN) is **absent**:
    its row becomes zeros and its flag False. Other non-finite values become 0 with one counted warning (or a
    :class:`DataError` if ``strict``). Returns the (possibly copied) array and the per-sample "has finite values"
    flags.
    """
    n = x.shape[0]
    finite_any = np.ones(n, dtype=bool)
    count, kinds = 0, set()
    for a in range(0, n, SCAN_CHUNK):
        chunk = x[a:a + SCAN_CHUNK]
        fin = np.isfinite(chunk)
        if fin.all():
            continue
        real = fin if lengths is None else \
            fin & (np.arange(x.shape[1])[None, :] < lengths[a:a + SCAN_CHUNK, None])[:, :, None]
        has = real.reshape(fin.shape[0], -1).any(axis=1)
        finite_any[a:a + SCAN_CHUNK] = has
        partial = chunk[has][~fin[has]]
        count += int(partial.size)
        kinds |= {name for name, test in (("-inf", np.isneginf), ("+inf", np.isposinf), ("nan", np.isnan))
                  if partial.size and test(partial).any()}
        if strict and partial.size:
            continue
        if not x.flags.writeable:
            x = x.copy()
            chunk = x[a:a + SCAN_CHUNK]
        chunk[~fin] = 0.0
    kind_text = "/".join(k for k in ("-inf", "+inf", "nan") if k in kinds)
    if count and strict:
        raise DataError(f"{loc}: {count} non-finite values ({kind_text}) in features (strict=True)")
    if count:
        warnings.warn(f"mplmm: {loc}: replaced {count} non-finite values ({kind_text}) with 0", stacklevel=3)
    return x, finite_any


def to_regression_labels(y: Any, loc: str, allow_unlabeled: bool = False) -> np.ndarray:
    """float32 ``(N,)`` from ``(N,)``, ``(N, 1)`` or ``(N, 1, 1)``; NaN/inf is an error unless ``allow_unlabeled``
    (data read for prediction: NaN = no label)."""
    arr = as_numeric(y, loc)
    if arr.ndim >= 1 and all(s == 1 for s in arr.shape[1:]):
        arr = arr.reshape(arr.shape[0])
    else:
        raise DataError(f"{loc}: expected regression labels (N,), (N, 1) or (N, 1, 1), "
                        f"got shape {shape_str(arr.shape)}")
    arr = arr.astype(np.float32)
    bad = int((~np.isfinite(arr)).sum())
    if bad and not allow_unlabeled:
        raise DataError(f"{loc}: {bad} labels are NaN or infinite")
    if bad:
        arr[~np.isfinite(arr)] = np.nan
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


def to_lengths(lengths: Any, n: int, t_max: int, loc: str, ids: Optional[np.ndarray] = None) -> np.ndarray:
    """int64 ``(N,)`` lengths in ``[0, t_max]``; a length beyond the array's ``t_max`` steps is a one-line
    :class:`DataError` naming the first such sample."""
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
    over = np.flatnonzero(arr > t_max)
    if over.size:
        who = f"id {str(ids[over[0]])!r}" if ids is not None else f"sample {over[0]}"
        raise DataError(f"{loc}: {over.size} lengths exceed the array's T={t_max} steps, e.g. {who} has length "
                        f"{arr[over[0]]}; lengths count the real steps of the padded array")
    return arr


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


def _labels(raw: Mapping[str, Any], loc: str, task: str, n_classes: Optional[int], n: Optional[int],
            allow_unlabeled: bool) -> np.ndarray:
    """One split's labels; without any (``allow_unlabeled``), NaN (regression) or -1 (classification) per sample."""
    if raw.get("labels") is None:
        if not allow_unlabeled or n is None:
            raise DataError(f"{loc}: missing labels")
        return np.full(n, np.nan, dtype=np.float32) if task == "regression" else np.full(n, -1, dtype=np.int64)
    if task == "regression":
        return to_regression_labels(raw["labels"], loc, allow_unlabeled)
    return to_class_labels(raw["labels"], loc, n_classes)


def _explicit_presence(raw: Mapping[str, Any], n: int, loc: str) -> np.ndarray:
    """The split's ``present`` entry ``(N, 3)`` (True = recorded), all True when there is none."""
    if raw.get("present") is None:
        return np.ones((n, 3), dtype=bool)
    arr = np.asarray(raw["present"])
    if arr.shape != (n, 3) or not (arr.dtype == bool or np.issubdtype(arr.dtype, np.integer)):
        raise DataError(f"{loc}: expected a ({n}, 3) boolean presence mask (samples x text/audio/vision, True = "
                        f"recorded), got {arr.dtype} with shape {shape_str(arr.shape)}")
    if np.issubdtype(arr.dtype, np.integer) and not np.isin(arr, (0, 1)).all():
        raise DataError(f"{loc}: presence mask values must be 0/1 or true/false")
    return arr.astype(bool)


def _modality(raw: Mapping[str, Any], m: str, source: str, split: str, keys: Mapping[str, str], n: int,
              strict: bool, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Features ``(N, T, D)``, per-sample "recorded" flags and lengths (the file's, or those of ragged per-sample
    items) of modality ``m`` in one split."""
    mloc = where(source, split, keys.get(m, m))
    if raw.get(m) is None:
        raise DataError(f"{mloc}: missing {m} features")
    x, recorded, lengths = read_features(raw[m], mloc)
    if x.shape[0] != n:
        raise DataError(f"{mloc}: expected (N, T, D) with N={n} like '{keys.get('labels', 'labels')}', "
                        f"got shape {shape_str(np.shape(raw[m]))}")
    given = (raw.get("lengths") or {}).get(m)
    if given is not None:
        lk = keys.get(f"{m}_lengths", f"{m}_lengths")
        lengths = to_lengths(given, n, x.shape[1], where(source, split, lk), ids)
    x, finite = sanitize(x, where(source, split) + f" {keys.get(m, m)}", strict, lengths)
    return x, recorded & finite, lengths


def _zero_absent(x: np.ndarray, absent: np.ndarray) -> np.ndarray:
    """``x`` with the rows of absent samples set to exactly 0 (copied first when read-only)."""
    if absent.any() and np.any(x[absent]):
        x = x if x.flags.writeable else x.copy()
        x[absent] = 0.0
    return x


def _drop_empty(sp: Split, split: str, source: str, drop_empty: bool, notes: list[str]) -> Split:
    """Samples with no modality at all: a one-line DataError naming the first, or dropped with a count."""
    empty = ~sp.present.any(axis=1)
    if not empty.any():
        return sp
    if not drop_empty:
        first = str(sp.ids[np.flatnonzero(empty)[0]])
        raise DataError(f"{where(source, split)}: {int(empty.sum())} samples have no modality at all, e.g. id "
                        f"{first!r}; remove them or pass drop_empty=True (--drop_empty)")
    notes.append(f"{split}: dropped {int(empty.sum())} samples without any modality (drop_empty)")
    return sp.subset(np.flatnonzero(~empty))


def _build_split(raw: Mapping[str, Any], source: str, split: str, task: str, n_classes: Optional[int],
                 keys: Mapping[str, str], strict: bool, notes: list[str], allow_unlabeled: bool = False,
                 drop_empty: bool = False) -> Split:
    """Validate one split's raw arrays; absence (None, empty, all-NaN, length 0, ``present``) becomes data."""
    lkey = keys.get("labels", "labels")
    n_guess = None if raw.get("labels") is not None or raw.get("text") is None else len(raw["text"])
    labels = _labels(raw, where(source, split, lkey), task, n_classes, n_guess, allow_unlabeled)
    n = labels.shape[0]
    if n == 0:
        raise DataError(f"{where(source, split)}: split is empty (0 samples in '{lkey}')")
    present = _explicit_presence(raw, n, where(source, split, keys.get("present", "present")))
    ids = _split_ids(raw, n, source, split, keys, notes)
    feats, lengths = {}, {}
    for j, m in enumerate(MODALITIES):
        feats[m], recorded, mlen = _modality(raw, m, source, split, keys, n, strict, ids)
        present[:, j] &= recorded
        if mlen is not None:
            lengths[m] = mlen
    for j, m in enumerate(MODALITIES):
        if m in lengths:
            present[:, j] &= lengths[m] > 0
            lengths[m] = np.where(present[:, j], lengths[m], 0)
        feats[m] = _zero_absent(feats[m], ~present[:, j])
    sp = Split(feats["text"], feats["audio"], feats["vision"], labels, ids, lengths or None, present)
    return _drop_empty(sp, split, source, drop_empty, notes)


def _split_ids(raw: Mapping[str, Any], n: int, source: str, split: str, keys: Mapping[str, str],
               notes: list[str]) -> np.ndarray:
    """The split's ids, or synthesised ones (with a note) when the file has none."""
    if raw.get("ids") is None:
        notes.append(f"{split}: no ids in the file; synthesised ids '{split}_000000'...")
        return np.array([f"{split}_{i:06d}" for i in range(n)], dtype=str)
    return to_ids(raw["ids"], n, where(source, split, keys.get("ids", "id")))


def _align_time(splits: dict[str, Split], source: str, notes: list[str]) -> None:
    """Check feature dims agree across splits; zero-pad shorter sequences to the longest split's length."""
    first = next(iter(splits))
    for m in MODALITIES:
        ref = splits[first].modality(m).shape
        for name, s in splits.items():
            shp = s.modality(m).shape
            if shp[2] != ref[2]:
                raise DataError(
                    f"{where(source, name, m)}: feature dim {shp[2]} differs from {first}'s {ref[2]} "
                    f"({first} {shape_str(ref)}, {name} {shape_str(shp)})"
                )
        t_max = max(s.modality(m).shape[1] for s in splits.values())
        for name, s in splits.items():
            if s.modality(m).shape[1] != t_max:
                notes.append(f"{name}: {m} zero-padded from T={s.modality(m).shape[1]} to T={t_max} "
                             "to match the other splits")
                if s.lengths is not None and m not in s.lengths:
                    s.lengths[m] = np.where(s.present[:, MODALITIES.index(m)], s.modality(m).shape[1], 0)
                setattr(s, m, fit_length(s.modality(m), t_max))


def _fill_lengths(splits: dict[str, Split]) -> None:
    """When any split records lengths, every split records them for the same modalities (full length where the file
    had none, 0 where a modality is absent): one convention per dataset."""
    names = sorted({m for sp in splits.values() for m in (sp.lengths or {})}, key=MODALITIES.index)
    for sp in splits.values() if names else ():
        sp.lengths = dict(sp.lengths or {})
        for m in names:
            if m not in sp.lengths:
                full = sp.modality(m).shape[1]
                sp.lengths[m] = np.where(sp.present[:, MODALITIES.index(m)], full, 0).astype(np.int64)


def chosen_splits(raw: Any, source: str, required: Sequence[str]) -> list[str]:
    """The splits of ``raw`` to read: all of ``required`` must be there; with none required (data read for
    prediction), every split of :data:`ALL_SPLITS` present, at least one."""
    if not isinstance(raw, Mapping):
        raise DataError(f"{source}: expected a dict of splits {list(required or ALL_SPLITS)}, got "
                        f"{type(raw).__name__}")
    if required:
        missing = [s for s in required if s not in raw]
        if missing:
            raise DataError(f"{source}: expected splits {list(required)}, found {sorted(map(str, raw))} "
                            f"(missing {missing})")
        return list(required)
    found = [s for s in ALL_SPLITS if s in raw]
    if not found:
        raise DataError(f"{source}: no split found; expected one or more of {list(ALL_SPLITS)}, found "
                        f"{sorted(map(str, raw))}")
    return found


def build_dataset(raw: Mapping[str, Mapping[str, Any]], *, name: str, source: str, fmt: str, task: str,
                  metric_family: str, class_names: Optional[list[str]] = None,
                  label_range: Optional[tuple[float, float]] = None, strict: bool = False,
                  keys: Optional[Mapping[str, str]] = None, notes: Optional[list[str]] = None,
                  range_hint: str = "", check_range: bool = True, required: Sequence[str] = SPLITS,
                  allow_unlabeled: bool = False, drop_empty: bool = False) -> MultimodalDataset:
    """Validate raw per-split arrays (``text, audio, vision, labels[, ids, lengths, present]``) into a dataset.

    ``keys`` maps roles to the key names used in the file (for messages), e.g. ``{"labels": "regression_labels"}``.
    ``check_range=False`` skips the label-range check (a range inferred from the training split). ``required``: the
    splits that must be there (empty: any of :data:`ALL_SPLITS`, for prediction); ``allow_unlabeled``: missing or
    NaN labels are "no label" (prediction); ``drop_empty``: drop samples without any modality (else an error).
    """
    keys = dict(keys or {})
    notes = list(notes or [])
    names = chosen_splits(raw, source, required)
    if task not in ("regression", "classification"):
        raise DataError(f"{source}: unknown task {task!r}")
    n_classes = len(class_names) if (task == "classification" and class_names) else None
    splits = {s: _build_split(raw[s], source, s, task, n_classes, keys, strict, notes, allow_unlabeled, drop_empty)
              for s in names}
    _fill_lengths(splits)
    _align_time(splits, source, notes)
    lkey = keys.get("labels", "labels")
    for s, sp in splits.items():
        labelled = np.isfinite(sp.labels) if task == "regression" else sp.labels >= 0
        if task == "regression" and label_range is not None and check_range and labelled.any():
            check_label_range(sp.labels[labelled], label_range, where(source, s, lkey), range_hint)
        if task == "classification":
            if not class_names:
                raise DataError(f"{source}: classification dataset without class names")
            check_class_range(sp.labels[labelled] if allow_unlabeled else sp.labels, len(class_names),
                              where(source, s, lkey))
    return MultimodalDataset(
        name=name, splits=splits, task=task, class_names=list(class_names) if class_names else None,
        label_range=tuple(float(v) for v in label_range) if label_range else None,  # type: ignore[arg-type]
        metric_family=metric_family, source=str(source), format=fmt, notes=notes,
    )
