"""Readers for split dicts: MulT pickles, MMSA pickles (and, via :mod:`readers_npz`, ``.npz`` files).

Both pickle layouts are ``{"train"|"valid"|"test": {key: array}}``; they differ in the key names:

* MulT (``mosi_data[_noalign].pkl``, ``mosei_senti_data*.pkl``, ``iemocap_data*.pkl``): ``text``, ``audio``,
  ``vision``, ``labels`` (``(N, 1, 1)`` sentiment, or ``(N, 4, 2)`` per-emotion binary for IEMOCAP), optional ``id``.
* MMSA (``unaligned_50.pkl``, ``aligned_50.pkl``, SIMS ``unaligned_39.pkl``): ``text`` / ``text_bert``, ``audio``,
  ``vision``, ``regression_labels``, ``audio_lengths``, ``vision_lengths``, ``id``.

A file written by :func:`mplmm.data.save_dataset` also carries a top-level ``meta`` dict (task, class names, ...).
Pickles are read by :mod:`mplmm.data.safe_pickle`, which loads arrays, strings, numbers and containers and refuses
anything else (``trust_pickle=True``: plain ``pickle``, for files you trust).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .. import metrics as M
from ..constants import MODALITIES
from ..errors import ConfigError
from .labels import choose_regression, encode_string_labels, is_string_labels
from .safe_pickle import PickleRefused, unpickle
from .schema import SPLITS, TASKS, DataError, MultimodalDataset
from .validate import RANGE_TOL, as_numeric, build_dataset, shape_str, where

#: MulT's IEMOCAP emotion order (``Neutral, Happy, Sad, Angry`` in MulT's ``eval_iemocap``).
MULT_IEMOCAP_CLASSES = ["neutral", "happy", "sad", "angry"]
MMSA_MARKERS = ("regression_labels", "audio_lengths", "vision_lengths", "text_bert")
LABEL_ORDER = {
    "mult_pickle": ("labels", "regression_labels", "classification_labels"),
    "mmsa_pickle": ("regression_labels", "labels", "classification_labels"),
    "npz": ("regression_labels", "labels", "classification_labels"),
    "arrays": ("labels",),
}


def load_pickle(path: Path, trust_pickle: bool = False) -> Any:
    """Unpickle ``path`` with the restricted reader (plain ``pickle`` when ``trust_pickle``); any failure (missing,
    truncated, not a pickle, a global or dtype the layouts do not need) becomes a one-line DataError."""
    try:
        with open(path, "rb") as fh:
            return unpickle(fh, trusted=trust_pickle)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such file") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot open ({exc.strerror or exc})") from exc
    except PickleRefused as exc:
        raise DataError(f"{path}: refusing {exc} (not needed by any supported dataset layout); if you trust this "
                        "file, pass --trust_pickle / load_dataset(..., trust_pickle=True)") from exc
    except Exception as exc:  # noqa: BLE001 — any unpickling failure is a bad file
        hint = "; if it was written with a newer numpy, use the .npz twin" if isinstance(exc, ImportError) else ""
        raise DataError(f"{path}: unreadable or truncated pickle ({type(exc).__name__}: {exc}){hint}") from exc


def check_top(data: Any, source: str) -> None:
    """The top level must be a dict holding the three splits, each a dict."""
    if not isinstance(data, Mapping):
        raise DataError(f"{source}: expected a dict with keys {list(SPLITS)}, got {type(data).__name__}")
    missing = [s for s in SPLITS if s not in data]
    if missing:
        raise DataError(f"{source}: expected top-level keys {list(SPLITS)}, found {sorted(map(str, data))} "
                        f"(missing {missing})")
    for s in SPLITS:
        if not isinstance(data[s], Mapping):
            raise DataError(f"{where(source, s)}: expected a dict of arrays, got {type(data[s]).__name__}")


def pickle_flavor(data: Any, source: str) -> tuple[str, str]:
    """``("mmsa_pickle" | "mult_pickle", reason)`` from the keys of the train split."""
    check_top(data, source)
    keys = set(map(str, data["train"]))
    marks = [k for k in MMSA_MARKERS if k in keys]
    if marks:
        return "mmsa_pickle", f"keys {', '.join(marks)}"
    if "labels" in keys:
        return "mult_pickle", "keys text/audio/vision/labels"
    raise DataError(f"{where(source, 'train')}: cannot tell MulT from MMSA layout: expected 'labels' (MulT) or "
                    f"'regression_labels' (MMSA), found keys {sorted(keys)}")


def mult_iemocap_labels(y: np.ndarray, loc: str, allow_multilabel: bool, notes: list[str]) -> np.ndarray:
    """MulT IEMOCAP ``(N, C, 2)`` per-emotion binary labels -> class index (the emotion whose column 1 is set)."""
    positive = y.argmax(axis=2) == 1
    count = positive.sum(axis=1)
    bad = int((count != 1).sum())
    if bad and not allow_multilabel:
        raise DataError(
            f"{loc}: MulT IEMOCAP labels {shape_str(y.shape)}: {bad} rows do not have exactly one positive emotion "
            f"({int((count == 0).sum())} none, {int((count > 1).sum())} several); pass allow_multilabel=True to "
            "take the first positive emotion"
        )
    if bad:
        notes.append(f"{loc}: {bad} rows without exactly one positive emotion; took the first positive")
    return positive.argmax(axis=1).astype(np.int64)


def _pick(d: Mapping[str, Any], options: tuple[str, ...]) -> Optional[str]:
    return next((k for k in options if k in d), None)


def parse_meta(meta: Any, source: str) -> dict:
    """Validate the optional ``meta`` dict written by :func:`save_dataset`."""
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise DataError(f"{source} key 'meta': expected a dict, got {type(meta).__name__}")
    out = {str(k): v for k, v in meta.items()}
    if out.get("class_names") is not None:
        out["class_names"] = [str(c) for c in out["class_names"]]
    if out.get("label_range") is not None:
        out["label_range"] = tuple(float(v) for v in out["label_range"])
    if out.get("threshold") is not None:
        out["threshold"] = float(out["threshold"])
    return out


def _classes(raw: dict, y0: np.ndarray, label_key: str, source: str, meta: dict, family: Optional[str],
             class_names: Optional[Sequence[str]], allow_multilabel: bool, notes: list[str]) -> tuple[str, list[str]]:
    """Turn every split's labels into class indices (in place); returns ``(family, class_names)``."""
    names = [str(c) for c in class_names] if class_names else meta.get("class_names")
    if is_string_labels(raw["train"]["labels"]):
        coded, names, note = encode_string_labels({s: raw[s]["labels"] for s in SPLITS}, names, source, label_key)
        for s in SPLITS:
            raw[s]["labels"] = coded[s]
        notes.append(note)
        default_family = "classification"
    else:
        mult_layout = y0.ndim == 3 and y0.shape[1] > 1 and y0.shape[2] == 2
        for s in SPLITS:
            y = as_numeric(raw[s]["labels"], where(source, s, label_key))
            if y.ndim == 3 and y.shape[2] == 2:
                raw[s]["labels"] = mult_iemocap_labels(y, where(source, s, label_key), allow_multilabel, notes)
        n_cls = y0.shape[1] if y0.ndim >= 2 and y0.shape[1] > 1 else int(max(
            as_numeric(raw[s]["labels"], source).max() for s in SPLITS)) + 1
        default_family = "iemocap_mult" if mult_layout and n_cls == len(MULT_IEMOCAP_CLASSES) else "classification"
        if not names:
            if default_family == "iemocap_mult":
                names = list(MULT_IEMOCAP_CLASSES)
                notes.append("MulT IEMOCAP (N, 4, 2) labels -> class = emotion with the positive column; order "
                             "neutral, happy, sad, angry as in MulT's eval_iemocap (per-emotion binary metrics too)")
            else:
                names = [f"class_{i}" for i in range(n_cls)]
                notes.append(f"no class names in the file; using class_0..class_{n_cls - 1}")
    if family is not None and family not in M.CLASSIFICATION_FAMILIES:
        raise ConfigError(f"metric_family: expected one of {list(M.CLASSIFICATION_FAMILIES)} for class labels, "
                          f"got {family!r}")
    chosen = family or (meta.get("metric_family") if meta.get("metric_family") in M.CLASSIFICATION_FAMILIES
                        else default_family)
    return chosen, list(names)


def interpret_splits(data: Mapping[str, Any], *, source: str, fmt: str, strict: bool = False,
                     meta: Optional[dict] = None, metric_family: Optional[str] = None,
                     allow_multilabel: bool = False, name: Optional[str] = None, task: Optional[str] = None,
                     label_range: Optional[Sequence[float]] = None, threshold: Optional[float] = None,
                     class_names: Optional[Sequence[str]] = None) -> MultimodalDataset:
    """Turn a ``{split: {key: array}}`` dict (MulT, MMSA or npz key names) into a validated dataset.

    ``task``, ``metric_family``, ``label_range``, ``threshold`` and ``class_names`` override what the file says
    and what would be inferred (see :mod:`mplmm.data.labels`).
    """
    check_top(data, source)
    meta = dict(meta or {})
    notes: list[str] = []
    if task is not None and task not in TASKS:
        raise ConfigError(f"task: expected one of {list(TASKS)}, got {task!r}")
    train = data["train"]
    if "text" not in train and "text_bert" in train:
        raise DataError(f"{where(source, 'train', 'text_bert')}: only BERT token ids (N, 3, T) are present; they need "
                        "a text encoder — mplmm requires precomputed 'text' features")
    task = task or meta.get("task")
    label_key = "classification_labels" if task == "classification" and "classification_labels" in train \
        else _pick(train, LABEL_ORDER[fmt])
    required = list(MODALITIES)
    missing = [k for k in required if k not in train] + ([] if label_key else ["labels|regression_labels"])
    if missing:
        raise DataError(f"{where(source, 'train')}: missing keys {missing}; expected text, audio, vision and one of "
                        f"{list(LABEL_ORDER[fmt])}; found {sorted(map(str, train))}")
    raw: dict[str, dict[str, Any]] = {}
    for s in SPLITS:
        d = data[s]
        absent = [k for k in required + [label_key] if k not in d]
        if absent:
            raise DataError(f"{where(source, s)}: missing keys {absent}; found {sorted(map(str, d))}")
        lengths = {m: d[f"{m}_lengths"] for m in MODALITIES if f"{m}_lengths" in d}
        raw[s] = {"text": d["text"], "audio": d["audio"], "vision": d["vision"], "labels": d[label_key],
                  "ids": d.get("id", d.get("ids")), "lengths": lengths or None}
    strings = is_string_labels(raw["train"]["labels"])
    y0 = None if strings else as_numeric(raw["train"]["labels"], where(source, "train", label_key))
    if task is None:
        mult_iemocap = y0 is not None and y0.ndim == 3 and y0.shape[1] > 1 and y0.shape[2] == 2
        task = "classification" if (strings or label_key == "classification_labels" or mult_iemocap) \
            else "regression"
    choice = None  # the regression labels' family, range and threshold
    if task == "classification":
        if label_range is not None or threshold is not None:
            raise ConfigError(f"{source}: label_range/threshold apply to regression, but the labels are classes "
                              "(task classification)")
        family, class_names = _classes(raw, y0, label_key, source, meta, metric_family, class_names,
                                       allow_multilabel, notes)
        hint = ""
    else:
        if strings:
            raise DataError(f"{where(source, 'train', label_key)}: string labels cannot be regression targets; "
                            "use task='classification' (--task classification)")
        train_y = as_numeric(raw["train"]["labels"], where(source, "train", label_key)).reshape(-1)
        finite = train_y[np.isfinite(train_y)]
        if finite.size == 0:
            raise DataError(f"{where(source, 'train', label_key)}: no finite labels")
        choice = choose_regression(source, finite, family=metric_family, label_range=label_range,
                                   threshold=threshold, meta=meta)
        family, class_names = choice.family, None
        notes.extend(choice.notes)
        if choice.inferred:
            _note_beyond(raw, choice.label_range, source, label_key, notes)
        hint = ("; pass metric_family='mosi' if this is MOSI/MOSEI, or label_range=(LO, HI) (--label_range LO HI) "
                "for another scale" if family == "sims" else
                "; pass label_range=(LO, HI) (--label_range LO HI) or metric_family='regression' for another scale")
    ds = build_dataset(
        raw, name=str(meta.get("name") or name or Path(source).stem), source=source, fmt=fmt, task=task,
        metric_family=family, class_names=class_names, label_range=choice.label_range if choice else None,
        strict=strict, keys={"labels": label_key, "ids": "id"}, notes=notes, range_hint=hint,
        check_range=not (choice and choice.inferred),
    )
    if choice is not None:
        ds.threshold, ds.label_range_inferred = choice.threshold, choice.inferred
    return ds


def _note_beyond(raw: dict, rng: tuple[float, float], source: str, key: str, notes: list[str]) -> None:
    """Valid/test labels outside a range inferred from train are kept, with a note."""
    for s in SPLITS[1:]:
        y = as_numeric(raw[s]["labels"], where(source, s, key)).reshape(-1)
        out = int(((y < rng[0] - RANGE_TOL) | (y > rng[1] + RANGE_TOL)).sum())
        if out:
            notes.append(f"{s}: {out} labels outside the training range ({rng[0]:g}, {rng[1]:g}) inferred from "
                         "train; pass label_range to fix the scale")


def read_mult_pickle(path: Path, *, strict: bool = False, data: Any = None, trust_pickle: bool = False,
                     **label_opts: Any) -> MultimodalDataset:
    """Read a MulT pickle (``data`` = an already unpickled object, to avoid reading twice; ``trust_pickle``: read it
    with plain ``pickle``, see :func:`load_pickle`).

    ``label_opts``: ``metric_family``, ``allow_multilabel``, ``task``, ``label_range``, ``threshold``,
    ``class_names`` (see :func:`interpret_splits`).
    """
    obj = load_pickle(path, trust_pickle) if data is None else data
    check_top(obj, str(path))
    meta = parse_meta(obj.get("meta"), str(path))
    return interpret_splits(obj, source=str(path), fmt="mult_pickle", strict=strict, meta=meta, **label_opts)


def read_mmsa_pickle(path: Path, *, strict: bool = False, data: Any = None, trust_pickle: bool = False,
                     **label_opts: Any) -> MultimodalDataset:
    """Read an MMSA pickle (``unaligned_50.pkl``, SIMS ``unaligned_39.pkl``, the shared ``mosi_bclstm`` pkl);
    options as for :func:`read_mult_pickle`."""
    obj = load_pickle(path, trust_pickle) if data is None else data
    check_top(obj, str(path))
    meta = parse_meta(obj.get("meta"), str(path))
    return interpret_splits(obj, source=str(path), fmt="mmsa_pickle", strict=strict, meta=meta, **label_opts)
