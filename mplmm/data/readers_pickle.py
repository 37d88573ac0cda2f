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
from .labels import LabelChoice, choose_regression, encode_string_labels, is_string_labels
from .provenance import parse_features
from .safe_pickle import PickleRefused, unpickle
from .schema import ALL_SPLITS, SPLITS, TASKS, DataError, MultimodalDataset
from .validate import RANGE_TOL, as_numeric, build_dataset, chosen_splits, shape_str, where

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


def check_top(data: Any, source: str, required: Sequence[str] = SPLITS) -> list[str]:
    """The top level must be a dict holding the ``required`` splits (any of :data:`ALL_SPLITS` when none is
    required), each a dict; returns the split names found."""
    if not isinstance(data, Mapping):
        raise DataError(f"{source}: expected a dict with keys {list(required or ALL_SPLITS)}, got "
                        f"{type(data).__name__}")
    missing = [s for s in required if s not in data]
    found = list(required) or [s for s in ALL_SPLITS if s in data]
    if missing or not found:
        raise DataError(f"{source}: expected top-level keys {list(required or ALL_SPLITS)}, found "
                        f"{sorted(map(str, data))}" + (f" (missing {missing})" if missing else ""))
    for s in found:
        if not isinstance(data[s], Mapping):
            raise DataError(f"{where(source, s)}: expected a dict of arrays, got {type(data[s]).__name__}")
    return found


def pickle_flavor(data: Any, source: str, required: Sequence[str] = SPLITS) -> tuple[str, str]:
    """``("mmsa_pickle" | "mult_pickle", reason)`` from the keys of the first split."""
    first = check_top(data, source, required)[0]
    keys = set(map(str, data[first]))
    marks = [k for k in MMSA_MARKERS if k in keys]
    if marks:
        return "mmsa_pickle", f"keys {', '.join(marks)}"
    if "labels" in keys or not required:
        return "mult_pickle", "keys text/audio/vision" + ("/labels" if "labels" in keys else "")
    raise DataError(f"{where(source, first)}: cannot tell MulT from MMSA layout: expected 'labels' (MulT) or "
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


def _classes(raw: dict, y0: Optional[np.ndarray], label_key: Optional[str], source: str, meta: dict,
             family: Optional[str], class_names: Optional[Sequence[str]], allow_multilabel: bool,
             notes: list[str]) -> tuple[str, list[str]]:
    """Turn every split's labels into class indices (in place); returns ``(family, class_names)``."""
    names = [str(c) for c in class_names] if class_names else meta.get("class_names")
    labelled = [s for s in raw if raw[s]["labels"] is not None]
    first = labelled[0] if labelled else None
    if first is not None and is_string_labels(raw[first]["labels"]):
        coded, names, note = encode_string_labels({s: raw[s]["labels"] for s in labelled}, names, source,
                                                  str(label_key))
        for s in labelled:
            raw[s]["labels"] = coded[s]
        notes.append(note)
        default_family = "classification"
    elif first is None:
        if not names:
            raise ConfigError(f"{source}: unlabeled classification data needs class_names (from the checkpoint)")
        default_family = "classification"
    else:
        mult_layout = y0.ndim == 3 and y0.shape[1] > 1 and y0.shape[2] == 2
        for s in labelled:
            y = as_numeric(raw[s]["labels"], where(source, s, label_key))
            if y.ndim == 3 and y.shape[2] == 2:
                raw[s]["labels"] = mult_iemocap_labels(y, where(source, s, label_key), allow_multilabel, notes)
        n_cls = y0.shape[1] if y0.ndim >= 2 and y0.shape[1] > 1 else int(max(
            np.nanmax(as_numeric(raw[s]["labels"], source), initial=-1) for s in labelled)) + 1
        default_family = "iemocap_mult" if mult_layout and n_cls == len(MULT_IEMOCAP_CLASSES) else "classification"
        if not names:
            names = _default_class_names(default_family, n_cls, notes)
    if family is not None and family not in M.CLASSIFICATION_FAMILIES:
        raise ConfigError(f"metric_family: expected one of {list(M.CLASSIFICATION_FAMILIES)} for class labels, "
                          f"got {family!r}")
    chosen = family or (meta.get("metric_family") if meta.get("metric_family") in M.CLASSIFICATION_FAMILIES
                        else default_family)
    return chosen, list(names)


def _default_class_names(family: str, n_cls: int, notes: list[str]) -> list[str]:
    """Class names when neither the file nor the caller gives any."""
    if family == "iemocap_mult":
        notes.append("MulT IEMOCAP (N, 4, 2) labels -> class = emotion with the positive column; order "
                     "neutral, happy, sad, angry as in MulT's eval_iemocap (per-emotion binary metrics too)")
        return list(MULT_IEMOCAP_CLASSES)
    notes.append(f"no class names in the file; using class_0..class_{n_cls - 1}")
    return [f"class_{i}" for i in range(n_cls)]


def _check_modality_keys(d: Mapping[str, Any], loc: str) -> None:
    """A ``<modality>_lengths`` key must name one of the three modalities (a typo would otherwise be ignored)."""
    for key in map(str, d):
        if key.endswith("_lengths") and key[: -len("_lengths")] not in MODALITIES:
            raise DataError(f"{loc} key '{key}': unknown modality {key[: -len('_lengths')]!r}; expected "
                            f"<modality>_lengths with modality one of {list(MODALITIES)}")


def _raw_split(d: Mapping[str, Any], label_key: Optional[str]) -> dict[str, Any]:
    """One split's entries under the roles :func:`mplmm.data.validate.build_dataset` reads."""
    lengths = {m: d[f"{m}_lengths"] for m in MODALITIES if f"{m}_lengths" in d}
    return {"text": d["text"], "audio": d["audio"], "vision": d["vision"],
            "labels": d[label_key] if label_key and label_key in d else None,
            "ids": d.get("id", d.get("ids")), "lengths": lengths or None, "present": d.get("present")}


def _task_of(task: Optional[str], meta: dict, strings: bool, label_key: Optional[str],
             y0: Optional[np.ndarray]) -> str:
    """The task: given, else the file's meta, else classification for string / classification / MulT IEMOCAP
    labels, else regression."""
    task = task or meta.get("task")
    if task is not None:
        return task
    mult_iemocap = y0 is not None and y0.ndim == 3 and y0.shape[1] > 1 and y0.shape[2] == 2
    return "classification" if (strings or label_key == "classification_labels" or mult_iemocap) else "regression"


def _regression_choice(raw: dict, source: str, label_key: Optional[str], meta: dict, unlabeled_ok: bool,
                       **options: Any) -> Optional[LabelChoice]:
    """Family, range and threshold of regression labels (None: no label anywhere and nothing given)."""
    first = next((s for s in raw if raw[s]["labels"] is not None), None)
    if first is not None and is_string_labels(raw[first]["labels"]):
        raise DataError(f"{where(source, first, label_key)}: string labels cannot be regression targets; "
                        "use task='classification' (--task classification)")
    sources = ["train"] if "train" in raw and raw["train"]["labels"] is not None else \
        [s for s in raw if raw[s]["labels"] is not None]  # inferred from train; for prediction from what is there
    ys = [as_numeric(raw[s]["labels"], where(source, s, label_key)).reshape(-1) for s in sources]
    finite = np.concatenate(ys)[np.isfinite(np.concatenate(ys))] if ys else np.zeros(0, dtype=np.float32)
    if finite.size == 0 and not unlabeled_ok:
        raise DataError(f"{where(source, first or 'train', label_key)}: no finite labels")
    if finite.size == 0:
        family = options.get("metric_family") or meta.get("metric_family") or "regression"
        rng = options.get("label_range") or meta.get("label_range")
        if rng is None:
            return None
        finite = np.asarray(rng, dtype=np.float32)  # only the given range decides (nothing is inferred)
        options = {**options, "metric_family": family}
    return choose_regression(source, finite, family=options.get("metric_family"),
                             label_range=options.get("label_range"), threshold=options.get("threshold"), meta=meta)


def _label_key(first: Any, source: str, split: str, fmt: str, task: Optional[str],
               for_prediction: bool) -> Optional[str]:
    """The labels' key in the first split's dict (None: no labels, data for prediction); its keys checked."""
    if not isinstance(first, Mapping):
        raise DataError(f"{where(source, split)}: expected a dict of arrays, got {type(first).__name__}")
    if "text" not in first and "text_bert" in first:
        raise DataError(f"{where(source, split, 'text_bert')}: only BERT token ids (N, 3, T) are present; they "
                        "need a text encoder — mplmm requires precomputed 'text' features")
    label_key = "classification_labels" if task == "classification" and "classification_labels" in first \
        else _pick(first, LABEL_ORDER[fmt])
    missing = [k for k in MODALITIES if k not in first] + ([] if label_key or for_prediction
                                                             else ["labels|regression_labels"])
    if missing:
        raise DataError(f"{where(source, split)}: missing keys {missing}; expected text, audio, vision and one "
                        f"of {list(LABEL_ORDER[fmt])}; found {sorted(map(str, first))}")
    return label_key


def _checked_raw_split(d: Any, source: str, split: str, label_key: Optional[str],
                       for_prediction: bool) -> dict[str, Any]:
    """One split's arrays (:func:`_raw_split`) once its dict has the modalities and the labels."""
    if not isinstance(d, Mapping):
        raise DataError(f"{where(source, split)}: expected a dict of arrays, got {type(d).__name__}")
    absent = [k for k in list(MODALITIES) + ([label_key] if label_key and not for_prediction else [])
              if k not in d]
    if absent:
        raise DataError(f"{where(source, split)}: missing keys {absent}; found {sorted(map(str, d))}")
    _check_modality_keys(d, where(source, split))
    return _raw_split(d, label_key)


def interpret_splits(data: Mapping[str, Any], *, source: str, fmt: str, strict: bool = False,
                     meta: Optional[dict] = None, metric_family: Optional[str] = None,
                     allow_multilabel: bool = False, name: Optional[str] = None, task: Optional[str] = None,
                     label_range: Optional[Sequence[float]] = None, threshold: Optional[float] = None,
                     class_names: Optional[Sequence[str]] = None, for_prediction: bool = False,
                     drop_empty: bool = False) -> MultimodalDataset:
    """Turn a ``{split: {key: array}}`` dict (MulT, MMSA or npz key names) into a validated dataset.

    ``task``, ``metric_family``, ``label_range``, ``threshold`` and ``class_names`` override what the file says
    and what would be inferred (see :mod:`mplmm.data.labels`). ``for_prediction``: any subset of the splits (or
    ``unsplit``), and labels are optional. ``drop_empty``: drop samples without any modality instead of refusing.
    """
    names = chosen_splits(data, source, () if for_prediction else SPLITS)
    meta = dict(meta or {})
    notes: list[str] = []
    if task is not None and task not in TASKS:
        raise ConfigError(f"task: expected one of {list(TASKS)}, got {task!r}")
    task = task or meta.get("task")
    label_key = _label_key(data[names[0]], source, names[0], fmt, task, for_prediction)
    raw: dict[str, dict[str, Any]] = {s: _checked_raw_split(data[s], source, s, label_key, for_prediction)
                                      for s in names}
    labelled = [s for s in names if raw[s]["labels"] is not None]
    strings = bool(labelled) and is_string_labels(raw[labelled[0]]["labels"])
    y0 = None if strings or not labelled else as_numeric(raw[labelled[0]]["labels"],
                                                         where(source, labelled[0], label_key))
    task = _task_of(task, meta, strings, label_key, y0)
    choice = None  # the regression labels' family, range and threshold
    if task == "classification":
        if label_range is not None or threshold is not None:
            raise ConfigError(f"{source}: label_range/threshold apply to regression, but the labels are classes "
                              "(task classification)")
        family, class_names = _classes(raw, y0, label_key, source, meta, metric_family, class_names,
                                       allow_multilabel, notes)
        hint = ""
    else:
        choice = _regression_choice(raw, source, label_key, meta, for_prediction, metric_family=metric_family,
                                    label_range=label_range, threshold=threshold)
        family = choice.family if choice else (metric_family or meta.get("metric_family") or "regression")
        class_names = None
        if choice:
            notes.extend(choice.notes)
            if choice.inferred:
                _note_beyond(raw, choice.label_range, source, label_key, notes)
        hint = ("; pass metric_family='mosi' if this is MOSI/MOSEI, or label_range=(LO, HI) (--label_range LO HI) "
                "for another scale" if family == "sims" else
                "; pass label_range=(LO, HI) (--label_range LO HI) or metric_family='regression' for another scale")
    ds = build_dataset(
        raw, name=str(meta.get("name") or name or Path(source).stem), source=source, fmt=fmt, task=task,
        metric_family=family, class_names=class_names, label_range=choice.label_range if choice else None,
        strict=strict, keys={"labels": label_key or "labels", "ids": "id"}, notes=notes, range_hint=hint,
        check_range=not (choice and choice.inferred) and not for_prediction, required=() if for_prediction
        else SPLITS, allow_unlabeled=for_prediction, drop_empty=drop_empty,
    )
    if choice is not None:
        ds.threshold, ds.label_range_inferred = choice.threshold, choice.inferred
    ds.features = parse_features(meta.get("features"), source)
    return ds


def _note_beyond(raw: dict, rng: tuple[float, float], source: str, key: str, notes: list[str]) -> None:
    """Valid/test labels outside a range inferred from train are kept, with a note."""
    for s in [s for s in raw if s != "train" and raw[s]["labels"] is not None]:
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
    ``class_names``, ``for_prediction``, ``drop_empty`` (see :func:`interpret_splits`).
    """
    obj = load_pickle(path, trust_pickle) if data is None else data
    check_top(obj, str(path), () if label_opts.get("for_prediction") else SPLITS)
    meta = parse_meta(obj.get("meta"), str(path))
    return interpret_splits(obj, source=str(path), fmt="mult_pickle", strict=strict, meta=meta, **label_opts)


def read_mmsa_pickle(path: Path, *, strict: bool = False, data: Any = None, trust_pickle: bool = False,
                     **label_opts: Any) -> MultimodalDataset:
    """Read an MMSA pickle (``unaligned_50.pkl``, SIMS ``unaligned_39.pkl``, the shared ``mosi_bclstm`` pkl);
    options as for :func:`read_mult_pickle`."""
    obj = load_pickle(path, trust_pickle) if data is None else data
    check_top(obj, str(path), () if label_opts.get("for_prediction") else SPLITS)
    meta = parse_meta(obj.get("meta"), str(path))
    return interpret_splits(obj, source=str(path), fmt="mmsa_pickle", strict=strict, meta=meta, **label_opts)
