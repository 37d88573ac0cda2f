"""Evaluation metrics (pure NumPy): CMU-MOSI/MOSEI (MMSA names), CH-SIMS (MMSA bins), IEMOCAP, and generic
regression on any scale / classification with any number of classes.

Conventions (details in ``docs/protocol_metrics.md``):

* MOSI ``Non0_*``: samples with truth != 0 only, binary ``pred > 0`` vs ``truth > 0`` (MulT / MPLMM).
  ``Has0_*``: all samples, ``pred >= 0`` vs ``truth >= 0`` (MMSA).  ``F1`` = support-weighted F1 over the two classes.
* ``Mult_acc_7`` / ``Mult_acc_5``: clip both sides to [-3, 3] / [-2, 2], ``np.round`` (round half to even), equality.
* Generic regression (family ``regression``): ``Acc_2`` / ``F1_score`` = ``pred > threshold`` vs
  ``truth > threshold`` on the samples whose truth is not exactly the threshold (as ``Non0``); ``Acc_k`` for an
  integer scale ``[lo, hi]`` with ``3 <= k = hi - lo + 1 <= 11`` levels: clip both to the scale, ``np.round``, equality.
* MulT IEMOCAP (family ``iemocap_mult``): the 4-class set plus MulT's ``eval_iemocap`` per emotion — one-vs-rest
  ``Binary_acc_<emotion>`` and support-weighted ``Binary_F1_<emotion>``.
* SIMS ``Mult_acc_k``: clip both sides to [-1, 1]; class = index i of the interval ``(edges[i], edges[i+1]]``.
* ``Corr``: Pearson; 0.0 (with a ``RuntimeWarning``) when either side has zero variance — never NaN.
* F1 helpers: per-class F1 = 2TP / (2TP + FP + FN), 0 when that is 0/0.  Macro averages over all ``labels`` given
  (a class absent from truth and prediction counts as 0); weighted uses truth support as weight (such a class has
  weight 0).  UAR averages recall over classes with truth support > 0.
"""
from __future__ import annotations

import warnings
from typing import Any, Optional, Sequence

import numpy as np

#: SIMS bin edges (MMSA ``__eval_sims_regression``): class i ⇔ edges[i] < x <= edges[i+1], after clipping to [-1, 1].
SIMS_BINS: dict[int, tuple[float, ...]] = {
    2: (-1.01, 0.0, 1.01),
    3: (-1.01, -0.1, 0.1, 1.01),
    5: (-1.01, -0.7, -0.1, 0.1, 0.7, 1.01),
}

#: "higher" or "lower" is better, for every fixed metric name (``F1_<class>`` is "higher", see :func:`metric_direction`).
METRIC_DIRECTION: dict[str, str] = {
    "Has0_acc_2": "higher", "Has0_F1_score": "higher", "Non0_acc_2": "higher", "Non0_F1_score": "higher",
    "Mult_acc_2": "higher", "Mult_acc_3": "higher", "Mult_acc_5": "higher", "Mult_acc_7": "higher",
    "F1_score": "higher", "MAE": "lower", "Corr": "higher",
    "Acc": "higher", "F1_weighted": "higher", "F1_macro": "higher", "UAR": "higher", "Acc_2": "higher",
}
#: prefixes of per-class / per-level metric names, all "higher is better"
_HIGHER_PREFIXES = ("F1_", "Acc_", "Binary_acc_", "Binary_F1_")

_PRIMARY = {"mosi": "Non0_acc_2", "sims": "Mult_acc_2", "regression": "Acc_2", "iemocap": "Acc",
            "iemocap_mult": "Acc", "classification": "Acc"}
FAMILIES: tuple[str, ...] = tuple(_PRIMARY)
REGRESSION_FAMILIES: tuple[str, ...] = ("mosi", "sims", "regression")
CLASSIFICATION_FAMILIES: tuple[str, ...] = ("iemocap", "iemocap_mult", "classification")
#: integer scales with more levels than this get no rounded-level accuracy (``Acc_k``)
MAX_LEVELS = 11


# --------------------------------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------------------------------
def _regression_inputs(preds: Any, truths: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(preds, dtype=np.float64).reshape(-1)
    t = np.asarray(truths, dtype=np.float64).reshape(-1)
    if p.shape != t.shape:
        raise ValueError(f"preds and truths differ in size: {p.size} vs {t.size}")
    if p.size == 0:
        raise ValueError("metrics need at least one sample")
    if not np.isfinite(p).all():
        raise ValueError("preds contain NaN or inf")
    if not np.isfinite(t).all():
        raise ValueError("truths contain NaN or inf")
    return p, t


def _labels_1d(y: Any, name: str) -> np.ndarray:
    a = np.asarray(y).reshape(-1)
    if a.size and not np.issubdtype(a.dtype, np.integer) and not np.issubdtype(a.dtype, np.bool_):
        if not np.all(np.equal(np.mod(a, 1), 0)):
            raise ValueError(f"{name} must hold integer class labels")
    return a.astype(np.int64)


def _label_set(y_true: np.ndarray, y_pred: np.ndarray, labels: Optional[Sequence[int]]) -> np.ndarray:
    if labels is None:
        return np.union1d(y_true, y_pred).astype(np.int64)
    return np.asarray(list(labels), dtype=np.int64)


# --------------------------------------------------------------------------------------------------------------------
# classification helpers
# --------------------------------------------------------------------------------------------------------------------
def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of equal entries."""
    t, p = _labels_1d(y_true, "y_true"), _labels_1d(y_pred, "y_pred")
    if t.shape != p.shape or t.size == 0:
        raise ValueError(f"y_true and y_pred must be non-empty and equal in size ({t.size} vs {p.size})")
    return float(np.mean(t == p))


def confusion_counts(y_true: Any, y_pred: Any, labels: Optional[Sequence[int]] = None) -> dict[str, np.ndarray]:
    """Per-class ``tp``, ``fp``, ``fn``, ``support`` (truth count) and the ``labels`` they refer to."""
    t, p = _labels_1d(y_true, "y_true"), _labels_1d(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in size: {t.size} vs {p.size}")
    labs = _label_set(t, p, labels)
    tp = np.array([np.sum((t == c) & (p == c)) for c in labs], dtype=np.int64)
    fp = np.array([np.sum((t != c) & (p == c)) for c in labs], dtype=np.int64)
    fn = np.array([np.sum((t == c) & (p != c)) for c in labs], dtype=np.int64)
    support = np.array([np.sum(t == c) for c in labs], dtype=np.int64)
    return {"labels": labs, "tp": tp, "fp": fp, "fn": fn, "support": support}


def f1_per_class(y_true: Any, y_pred: Any, labels: Optional[Sequence[int]] = None) -> np.ndarray:
    """F1 per class in ``labels`` order: 2TP / (2TP + FP + FN), 0.0 where the denominator is 0."""
    c = confusion_counts(y_true, y_pred, labels)
    den = 2 * c["tp"] + c["fp"] + c["fn"]
    return np.where(den > 0, 2 * c["tp"] / np.maximum(den, 1), 0.0).astype(np.float64)


def weighted_f1(y_true: Any, y_pred: Any, labels: Optional[Sequence[int]] = None) -> float:
    """Support-weighted mean of per-class F1 (sklearn ``average='weighted'``); classes without truth support weigh 0."""
    c = confusion_counts(y_true, y_pred, labels)
    f1 = f1_per_class(y_true, y_pred, labels)
    total = c["support"].sum()
    if total == 0:
        return 0.0
    return float(np.sum(f1 * c["support"]) / total)


def macro_f1(y_true: Any, y_pred: Any, labels: Optional[Sequence[int]] = None) -> float:
    """Unweighted mean of per-class F1 over ``labels`` (absent-from-both classes count as 0)."""
    f1 = f1_per_class(y_true, y_pred, labels)
    return float(f1.mean()) if f1.size else 0.0


def recall_per_class(y_true: Any, y_pred: Any, labels: Optional[Sequence[int]] = None) -> np.ndarray:
    """Recall TP / support per class in ``labels`` order; NaN where the class has no truth support."""
    c = confusion_counts(y_true, y_pred, labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c["support"] > 0, c["tp"] / np.maximum(c["support"], 1), np.nan).astype(np.float64)


def unweighted_average_recall(y_true: Any, y_pred: Any, labels: Optional[Sequence[int]] = None) -> float:
    """UAR: mean recall over classes with truth support > 0 (balanced accuracy)."""
    r = recall_per_class(y_true, y_pred, labels)
    r = r[~np.isnan(r)]
    return float(r.mean()) if r.size else 0.0


# --------------------------------------------------------------------------------------------------------------------
# regression helpers
# --------------------------------------------------------------------------------------------------------------------
def pearson(preds: Any, truths: Any) -> float:
    """Pearson correlation; 0.0 with a ``RuntimeWarning`` if either side is constant (never NaN)."""
    p, t = _regression_inputs(preds, truths)
    pc, tc = p - p.mean(), t - t.mean()
    den = np.sqrt(np.sum(pc * pc) * np.sum(tc * tc))
    if not den > 0:
        warnings.warn("Corr: preds or truths have zero variance; returning 0.0", RuntimeWarning, stacklevel=2)
        return 0.0
    return float(np.clip(np.sum(pc * tc) / den, -1.0, 1.0))


def multiclass_acc_rounded(preds: Any, truths: Any, bound: float) -> float:
    """Accuracy of ``np.round(clip(x, -bound, bound))`` equality (round half to even), as MulT/MMSA Acc-7/Acc-5."""
    p, t = _regression_inputs(preds, truths)
    return float(np.mean(np.round(np.clip(p, -bound, bound)) == np.round(np.clip(t, -bound, bound))))


def sims_bin(x: Any, n_classes: int) -> np.ndarray:
    """SIMS class of each value: clip to [-1, 1], then i such that ``edges[i] < x <= edges[i+1]``."""
    if n_classes not in SIMS_BINS:
        raise ValueError(f"SIMS bins exist for {sorted(SIMS_BINS)} classes, not {n_classes}")
    edges = np.asarray(SIMS_BINS[n_classes])
    v = np.clip(np.asarray(x, dtype=np.float64).reshape(-1), -1.0, 1.0)
    return (np.searchsorted(edges, v, side="left") - 1).astype(np.int64)


def _binary_block(p_bin: np.ndarray, t_bin: np.ndarray, what: str) -> tuple[float, float]:
    if t_bin.size == 0:
        warnings.warn(f"{what}: no samples left after filtering; returning 0.0", RuntimeWarning, stacklevel=3)
        return 0.0, 0.0
    t_i, p_i = t_bin.astype(np.int64), p_bin.astype(np.int64)
    return float(np.mean(t_i == p_i)), weighted_f1(t_i, p_i, labels=[0, 1])


# --------------------------------------------------------------------------------------------------------------------
# metric sets
# --------------------------------------------------------------------------------------------------------------------
def mosi_metrics(preds: Any, truths: Any) -> dict[str, float]:
    """CMU-MOSI / MOSEI regression metrics with MMSA names (see module docstring for the definitions)."""
    p, t = _regression_inputs(preds, truths)
    nz = t != 0
    non0_acc, non0_f1 = _binary_block(p[nz] > 0, t[nz] > 0, "Non0_acc_2")
    has0_acc, has0_f1 = _binary_block(p >= 0, t >= 0, "Has0_acc_2")
    return {
        "Has0_acc_2": has0_acc,
        "Has0_F1_score": has0_f1,
        "Non0_acc_2": non0_acc,
        "Non0_F1_score": non0_f1,
        "Mult_acc_5": multiclass_acc_rounded(p, t, 2.0),
        "Mult_acc_7": multiclass_acc_rounded(p, t, 3.0),
        "MAE": float(np.mean(np.abs(p - t))),
        "Corr": pearson(p, t),
    }


def integer_levels(label_range: Optional[Sequence[float]]) -> Optional[int]:
    """Number of integer levels of a scale ``[lo, hi]`` with whole-number ends (3..MAX_LEVELS), else None."""
    if label_range is None:
        return None
    lo, hi = (float(v) for v in label_range)
    if lo != round(lo) or hi != round(hi):
        return None
    k = int(round(hi - lo)) + 1
    return k if 3 <= k <= MAX_LEVELS else None


def default_threshold(label_range: Sequence[float]) -> float:
    """0 for a range symmetric around 0, else its midpoint."""
    lo, hi = (float(v) for v in label_range)
    return 0.0 if lo == -hi else (lo + hi) / 2.0


def regression_metrics(preds: Any, truths: Any, threshold: float = 0.0,
                       label_range: Optional[Sequence[float]] = None) -> dict[str, float]:
    """Generic regression on any scale: binary accuracy / weighted F1 around ``threshold`` (truths exactly at the
    threshold left out), ``Acc_k`` for integer scales (see :func:`integer_levels`), MAE and Pearson Corr."""
    p, t = _regression_inputs(preds, truths)
    keep = t != threshold
    acc, f1 = _binary_block(p[keep] > threshold, t[keep] > threshold, "Acc_2")
    out = {"Acc_2": acc, "F1_score": f1}
    k = integer_levels(label_range)
    if k is not None:
        lo, hi = (float(v) for v in label_range)  # type: ignore[union-attr]
        out[f"Acc_{k}"] = float(np.mean(np.round(np.clip(p, lo, hi)) == np.round(np.clip(t, lo, hi))))
    out["MAE"] = float(np.mean(np.abs(p - t)))
    out["Corr"] = pearson(p, t)
    return out


def sims_metrics(preds: Any, truths: Any) -> dict[str, float]:
    """CH-SIMS regression metrics with MMSA bins (``SIMS_BINS``); F1 is weighted over the 2-class bins."""
    p, t = _regression_inputs(preds, truths)
    out: dict[str, float] = {}
    for k in (2, 3, 5):
        out[f"Mult_acc_{k}"] = float(np.mean(sims_bin(p, k) == sims_bin(t, k)))
    out["F1_score"] = weighted_f1(sims_bin(t, 2), sims_bin(p, 2), labels=[0, 1])
    out["MAE"] = float(np.mean(np.abs(p - t)))
    out["Corr"] = pearson(p, t)
    return out


def iemocap_metrics(logits_or_preds: Any, labels: Any, class_names: Optional[Sequence[str]] = None) -> dict[str, float]:
    """IEMOCAP classification: ``Acc``, ``F1_weighted``, ``F1_macro``, ``UAR`` and ``F1_<name>`` per class.

    ``logits_or_preds``: (N, C) scores (argmax taken) or (N,) class indices.  Without ``class_names`` the classes are
    0..C-1 (C from the logits, else from the labels and predictions).
    """
    x = np.asarray(logits_or_preds)
    y = _labels_1d(labels, "labels")
    if x.ndim == 2:
        if not np.isfinite(x).all():
            raise ValueError("logits contain NaN or inf")
        pred = np.argmax(x, axis=1).astype(np.int64)
        n_classes = x.shape[1]
    elif x.ndim == 1:
        pred = _labels_1d(x, "preds")
        n_classes = int(max(pred.max(initial=-1), y.max(initial=-1)) + 1)
    else:
        raise ValueError(f"logits_or_preds must be (N, C) or (N,), got shape {x.shape}")
    if pred.shape != y.shape or y.size == 0:
        raise ValueError(f"predictions and labels must be non-empty and equal in size ({pred.size} vs {y.size})")
    if class_names is not None:
        n_classes = len(class_names)
        names = [str(c) for c in class_names]
    else:
        names = [str(i) for i in range(n_classes)]
    if y.min() < 0 or y.max() >= n_classes or pred.min() < 0 or pred.max() >= n_classes:
        raise ValueError(f"class indices must lie in 0..{n_classes - 1}")
    labs = list(range(n_classes))
    out = {
        "Acc": accuracy(y, pred),
        "F1_weighted": weighted_f1(y, pred, labs),
        "F1_macro": macro_f1(y, pred, labs),
        "UAR": unweighted_average_recall(y, pred, labs),
    }
    for name, f in zip(names, f1_per_class(y, pred, labs)):
        out[f"F1_{name}"] = float(f)
    return out


def per_class_binary(logits_or_preds: Any, labels: Any, class_names: Sequence[str]) -> dict[str, float]:
    """MulT's ``eval_iemocap`` on a C-class model: per class, one-vs-rest accuracy and support-weighted F1."""
    x = np.asarray(logits_or_preds)
    pred = np.argmax(x, axis=1) if x.ndim == 2 else _labels_1d(x, "preds")
    y = _labels_1d(labels, "labels")
    out: dict[str, float] = {}
    for c, name in enumerate(class_names):
        t_bin, p_bin = (y == c).astype(np.int64), (pred == c).astype(np.int64)
        out[f"Binary_acc_{name}"] = accuracy(t_bin, p_bin)
        out[f"Binary_F1_{name}"] = weighted_f1(t_bin, p_bin, labels=[0, 1])
    return out


def compute_metrics(family: str, preds: Any, truths: Any, class_names: Optional[Sequence[str]] = None,
                    threshold: Optional[float] = None,
                    label_range: Optional[Sequence[float]] = None) -> dict[str, float]:
    """Dispatch on the dataset's ``metric_family`` (one of :data:`FAMILIES`).

    ``threshold`` and ``label_range`` apply to the generic ``regression`` family (threshold default: see
    :func:`default_threshold`, 0 without a range).
    """
    if family == "mosi":
        return mosi_metrics(preds, truths)
    if family == "sims":
        return sims_metrics(preds, truths)
    if family == "regression":
        if threshold is None:
            threshold = default_threshold(label_range) if label_range is not None else 0.0
        return regression_metrics(preds, truths, threshold, label_range)
    if family in ("iemocap", "classification"):
        return iemocap_metrics(preds, truths, class_names)
    if family == "iemocap_mult":
        names = class_names or [str(i) for i in range(np.asarray(preds).shape[-1])]
        return {**iemocap_metrics(preds, truths, class_names), **per_class_binary(preds, truths, names)}
    raise ValueError(f"unknown metric family {family!r}; expected one of {FAMILIES}")


def dataset_metrics(ds: Any, pred: Any, truths: Any) -> dict[str, float]:
    """The metrics of dataset ``ds``'s family for raw model outputs ``pred`` ``(N, output_dim)``."""
    p = np.asarray(pred)
    if ds.task == "regression":
        p = p.reshape(len(p), -1)[:, 0]
    return compute_metrics(ds.metric_family, p, truths, ds.class_names, ds.threshold,
                           ds.label_range)


def headline_metric(ds: Any) -> str:
    """The headline metric of dataset ``ds`` (follows its metric family)."""
    return primary_metric(ds.metric_family)


def primary_metric(family: str) -> str:
    """The headline metric of a family: mosi → Non0_acc_2, sims → Mult_acc_2, regression → Acc_2,
    classification families → Acc."""
    if family not in _PRIMARY:
        raise ValueError(f"unknown metric family {family!r}; expected one of {FAMILIES}")
    return _PRIMARY[family]


def metric_direction(name: str) -> str:
    """``"higher"`` or ``"lower"`` (is better) for a metric name; ``F1_<class>`` → higher."""
    if name in METRIC_DIRECTION:
        return METRIC_DIRECTION[name]
    if name.startswith(_HIGHER_PREFIXES):
        return "higher"
    raise KeyError(f"unknown metric {name!r}")


def is_better(name: str, new: float, old: Optional[float]) -> bool:
    """True if ``new`` beats ``old`` under the metric's direction (``old is None`` → True)."""
    if old is None:
        return True
    return new < old if metric_direction(name) == "lower" else new > old


__all__ = [
    "SIMS_BINS", "METRIC_DIRECTION", "FAMILIES", "REGRESSION_FAMILIES", "CLASSIFICATION_FAMILIES", "MAX_LEVELS",
    "integer_levels", "default_threshold", "regression_metrics", "per_class_binary", "accuracy", "confusion_counts", "f1_per_class", "weighted_f1",
    "macro_f1", "recall_per_class", "unweighted_average_recall", "pearson", "multiclass_acc_rounded", "sims_bin",
    "mosi_metrics", "sims_metrics", "iemocap_metrics", "compute_metrics", "dataset_metrics", "headline_metric",
    "primary_metric", "metric_direction",
    "is_better",
]
