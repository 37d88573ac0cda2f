"""How labels are read: task, metric family, label range and threshold (regression), class names (classification).

Regression (documented in ``docs/data.md``): the family is the one given, else the file's ``meta``, else
``sims`` / ``mosi`` when the path names CH-SIMS or CMU-MOSI/MOSEI, else the MMSA scale the training labels fit
(negative labels within [-1, 1] → ``sims``, within [-3, 3] → ``mosi``), else the generic ``regression`` family.
The label range is the one given, else the file's, else the family's canonical scale (MOSI [-3, 3], SIMS [-1, 1]),
else inferred from the training split. The threshold (generic family only) is the one given, else 0 for a range
symmetric around 0, else its midpoint.

Classification: integer, one-hot, MulT per-emotion ``(N, C, 2)`` or **string** labels; string labels become class
indices in the order of ``class_names`` (given or from the file), else sorted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .. import metrics as M
from ..errors import ConfigError
from .schema import DataError
from .validate import RANGE_TOL

#: the MMSA scales recognised by name or by the labels
CANONICAL_RANGES = {"mosi": (-3.0, 3.0), "sims": (-1.0, 1.0)}


@dataclass
class LabelChoice:
    """The outcome for a regression dataset: family, range, threshold, and whether the range was inferred."""

    family: str
    label_range: tuple[float, float]
    threshold: Optional[float]
    inferred: bool
    notes: list[str] = field(default_factory=list)


def check_label_range_option(label_range: Optional[Sequence[float]], what: str = "label_range") -> Optional[tuple]:
    """``(lo, hi)`` floats with lo < hi, or None; anything else is a one-line :class:`ConfigError`."""
    if label_range is None:
        return None
    try:
        lo, hi = (float(v) for v in label_range)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: expected two numbers LO HI, got {label_range!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo >= hi:
        raise ConfigError(f"{what}: expected finite LO < HI, got ({lo:g}, {hi:g})")
    return lo, hi


def _family_by_name(source: str) -> Optional[tuple[str, str]]:
    parts = [p.lower() for p in Path(source).parts[-3:]]
    if any("sims" in p for p in parts):
        return "sims", "'sims' in the path"
    if any("mosi" in p or "mosei" in p for p in parts):
        return "mosi", "'mosi'/'mosei' in the path"
    return None


def _family_by_labels(train: np.ndarray) -> tuple[str, str]:
    lo, top = float(train.min()), float(np.abs(train).max())
    if lo < 0 and top <= 1.0 + RANGE_TOL:
        return "sims", f"negative labels within [-1, 1] (max |y| = {top:.3g})"
    if lo < 0 and top <= 3.0 + RANGE_TOL:
        return "mosi", f"negative labels within [-3, 3] and beyond [-1, 1] (max |y| = {top:.3g})"
    return "regression", (f"labels in [{lo:.4g}, {float(train.max()):.4g}] fit no MMSA scale: generic "
                          "regression family")


def choose_regression(source: str, train: np.ndarray, *, family: Optional[str] = None,
                      label_range: Optional[Sequence[float]] = None, threshold: Optional[float] = None,
                      meta: Optional[dict] = None) -> LabelChoice:
    """Family, label range and threshold of a regression dataset (see the module docstring for the order)."""
    meta = meta or {}
    given_range = check_label_range_option(label_range)
    if family is not None and family not in M.REGRESSION_FAMILIES:
        raise ConfigError(f"metric_family: expected one of {list(M.REGRESSION_FAMILIES)} for regression labels, "
                          f"got {family!r}")
    if family:
        fam, why = family, "metric_family given"
    elif meta.get("metric_family") in M.REGRESSION_FAMILIES:
        fam, why = meta["metric_family"], "from the file's meta"
    else:
        fam, why = _family_by_name(source) or _family_by_labels(train)
    inferred = False
    if given_range is not None:
        rng, rwhy = given_range, "given"
    elif meta.get("label_range") is not None:
        rng, rwhy = tuple(float(v) for v in meta["label_range"]), "from the file's meta"
    elif fam in CANONICAL_RANGES:
        rng, rwhy = CANONICAL_RANGES[fam], f"the {fam.upper()} scale"
    else:
        lo, hi = float(train.min()), float(train.max())
        if lo == hi:
            raise DataError(f"{source}: every training label is {lo:g}; cannot infer a label range — pass "
                            "label_range=(LO, HI) (--label_range LO HI)")
        rng, rwhy, inferred = (lo, hi), "inferred from the training split", True
    if threshold is not None:
        if fam != "regression":
            raise ConfigError(f"threshold applies to the generic 'regression' metric family, but {source} uses "
                              f"{fam!r} (fixed by its definition); pass metric_family='regression' to set one")
        thr, twhy = float(threshold), "given"
    elif fam == "regression" and meta.get("threshold") is not None:
        thr, twhy = float(meta["threshold"]), "from the file's meta"
    elif fam == "regression":
        thr, twhy = M.default_threshold(rng), "0 for a symmetric range, else the midpoint"
    else:
        thr, twhy = None, ""
    if thr is not None and not (rng[0] <= thr <= rng[1]):
        raise ConfigError(f"threshold {thr:g} lies outside the label range ({rng[0]:g}, {rng[1]:g})")
    note = f"metric family {fam} ({why}); label range ({rng[0]:g}, {rng[1]:g}) {rwhy}"
    if thr is not None:
        k = M.integer_levels(rng)
        note += f"; threshold {thr:g} ({twhy})" + (f"; Acc_{k} on the {k} integer levels" if k else "")
    return LabelChoice(fam, (float(rng[0]), float(rng[1])), thr, inferred, [note])


def is_string_labels(y: np.ndarray) -> bool:
    """True for arrays of str / bytes (or objects holding them): class names, not numbers."""
    arr = np.asarray(y)
    if arr.dtype.kind in "US":
        return True
    if arr.dtype == object and arr.size:
        return isinstance(arr.reshape(-1)[0], (str, bytes))
    return False


def _as_names(y: np.ndarray) -> np.ndarray:
    flat = np.asarray(y, dtype=object).reshape(-1)
    return np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in flat], dtype=object)


def encode_string_labels(by_split: dict[str, np.ndarray], class_names: Optional[Sequence[str]], source: str,
                         key: str) -> tuple[dict[str, np.ndarray], list[str], str]:
    """String labels per split → int64 class indices, the class names, and a note. An empty string is "no label"
    (-1; only data read for prediction accepts it)."""
    names = {s: _as_names(y) for s, y in by_split.items()}
    seen = sorted(set().union(*(set(v.tolist()) for v in names.values())) - {""})
    if class_names:
        order = [str(c) for c in class_names]
        unknown = [c for c in seen if c not in order]
        if unknown:
            raise DataError(f"{source} key '{key}': labels {unknown[:5]} are not among the class names {order}")
        why = "in the given order"
    else:
        order, why = seen, "sorted"
    index = {"": -1, **{c: i for i, c in enumerate(order)}}
    out = {s: np.array([index[c] for c in v.tolist()], dtype=np.int64) for s, v in names.items()}
    return out, order, f"string labels -> {len(order)} classes {order} ({why})"


def describe_labels(ds: "MultimodalDataset") -> str:  # noqa: F821
    """``regression, family regression, label range (1, 5), threshold 3`` / ``classification, ... 6 classes (...)``."""
    if ds.task == "classification":
        names = ", ".join(ds.class_names or [])
        return f"classification, family {ds.metric_family}, {len(ds.class_names or [])} classes ({names})"
    lo, hi = ds.label_range or (float("nan"), float("nan"))
    how = " inferred from train" if ds.label_range_inferred else ""
    thr = "" if ds.threshold is None else f", threshold {ds.threshold:g}"
    return f"regression, family {ds.metric_family}, label range ({lo:g}, {hi:g}){how}{thr}"


def label_options(label_range: Optional[Sequence[float]] = None, threshold: Optional[float] = None) -> dict:
    """Notebook/grid parameters → ``load_dataset`` keywords: an empty ``label_range`` and a NaN/None ``threshold``
    mean "not given"."""
    out: dict = {}
    if label_range is not None and len(label_range):
        out["label_range"] = check_label_range_option(label_range)
    if threshold is not None:
        value = parse_threshold(threshold, " (nan for the default)")
        if not np.isnan(value):
            out["threshold"] = value
    return out


def parse_threshold(value: Any, hint: str = "") -> float:
    """``value`` as a float, else a one-line :class:`ConfigError` (``hint`` is added to the message)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"threshold: expected a number{hint}, got {value!r}") from None
