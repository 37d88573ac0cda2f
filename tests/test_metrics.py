"""Tests for mplmm.metrics: hand-computed examples and the shared real-data reference figure."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mplmm.metrics import (
    METRIC_DIRECTION,
    compute_metrics,
    f1_per_class,
    iemocap_metrics,
    is_better,
    macro_f1,
    metric_direction,
    mosi_metrics,
    pearson,
    primary_metric,
    recall_per_class,
    sims_bin,
    sims_metrics,
    unweighted_average_recall,
    weighted_f1,
)

MOSI_DIR = Path(__file__).resolve().parents[2] / "shared/data/mosi_bclstm"


# ------------------------------------------------------------------------------------------------------------------
# MOSI
# ------------------------------------------------------------------------------------------------------------------
def test_mosi_binary_ties_at_zero() -> None:
    truths = [0.0, 1.0, -1.0, 2.0, -2.0, 0.5]
    preds = [0.3, 0.0, -0.5, 1.0, 0.2, -0.1]
    m = mosi_metrics(preds, truths)
    # Non0 drops sample 0 (truth 0). truth>0: T F T F T ; pred>0: F F T T F  -> 2 of 5 right.
    assert m["Non0_acc_2"] == pytest.approx(2 / 5)
    # classes: pos tp=1 fp=1 fn=2 -> F1 2/5 ; neg tp=1 fp=2 fn=1 -> F1 2/5 ; weighted 0.4
    assert m["Non0_F1_score"] == pytest.approx(0.4)
    # Has0: truth>=0: T T F T F T ; pred>=0: T T F T T F -> 4 of 6 (truth 0 is positive, pred 0 is positive)
    assert m["Has0_acc_2"] == pytest.approx(4 / 6)
    # Has0 F1: pos (4 true) tp=3 fp=1 fn=1 -> 6/8 ; neg (2 true) tp=1 fp=1 fn=1 -> 2/4 ; weighted (4*.75+2*.5)/6
    assert m["Has0_F1_score"] == pytest.approx((4 * 0.75 + 2 * 0.5) / 6)
    assert m["MAE"] == pytest.approx((0.3 + 1 + 0.5 + 1 + 2.2 + 0.6) / 6)


def test_mosi_rounding_half_to_even_and_clipping() -> None:
    preds = [2.5, 1.5, -0.5, 3.7, -3.7, 0.5, 2.6]
    truths = [2.0, 2.0, 0.0, 3.0, -3.0, 0.0, 2.0]
    m = mosi_metrics(preds, truths)
    # np.round: 2.5->2, 1.5->2, -0.5->-0, clip 3.7->3 , -3.7->-3, 0.5->0, 2.6->3 (vs 2: wrong)
    assert m["Mult_acc_7"] == pytest.approx(6 / 7)
    # clip [-2, 2]: 2.5->2, 1.5->2, -0.5->-0, 3.7->2 (truth 3->2), -3.7->-2 (truth -2), 0.5->0, 2.6->2 : all right
    assert m["Mult_acc_5"] == pytest.approx(1.0)
    assert np.round(2.5) == 2 and np.round(-0.5) == 0  # the convention the test relies on


def test_mosi_metric_names() -> None:
    m = mosi_metrics([0.1, -0.2, 0.3], [1.0, -1.0, 0.0])
    assert list(m) == ["Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score", "Mult_acc_5", "Mult_acc_7",
                       "MAE", "Corr"]
    assert all(isinstance(v, float) for v in m.values())


def test_corr_hand_value_and_constant_preds() -> None:
    # pc = (-1, 0, 1), tc = (-4/3, -1/3, 5/3): r = 3 / sqrt(2 * 42/9) = 9 / sqrt(84)
    assert pearson([1, 2, 3], [1, 2, 4]) == pytest.approx(9 / math.sqrt(84))
    with pytest.warns(RuntimeWarning, match="zero variance"):
        m = mosi_metrics([0.5, 0.5, 0.5], [1.0, -1.0, 2.0])
    assert m["Corr"] == 0.0 and not math.isnan(m["Corr"])


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="differ"):
        mosi_metrics([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        mosi_metrics([float("nan"), 1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="family"):
        compute_metrics("mosei", [1.0], [1.0])


def test_all_zero_truths_non0_is_not_nan() -> None:
    with pytest.warns(RuntimeWarning):
        m = mosi_metrics([0.1, -0.1], [0.0, 0.0])
    assert m["Non0_acc_2"] == 0.0 and m["Has0_acc_2"] == 0.5


# ------------------------------------------------------------------------------------------------------------------
# F1 / recall helpers
# ------------------------------------------------------------------------------------------------------------------
def test_weighted_and_macro_f1_imbalanced() -> None:
    y_true = [0, 0, 0, 0, 0, 0, 1, 1]
    y_pred = [0, 0, 0, 0, 1, 1, 1, 0]
    # class 0: tp 4, fp 1, fn 2 -> 8/11 ; class 1: tp 1, fp 2, fn 1 -> 2/5
    assert np.allclose(f1_per_class(y_true, y_pred), [8 / 11, 2 / 5])
    assert weighted_f1(y_true, y_pred) == pytest.approx((6 * 8 / 11 + 2 * 2 / 5) / 8)
    assert macro_f1(y_true, y_pred) == pytest.approx((8 / 11 + 2 / 5) / 2)
    # class 2 absent from both: macro counts it as 0, weighted gives it weight 0
    assert macro_f1(y_true, y_pred, labels=[0, 1, 2]) == pytest.approx((8 / 11 + 2 / 5) / 3)
    assert weighted_f1(y_true, y_pred, labels=[0, 1, 2]) == pytest.approx((6 * 8 / 11 + 2 * 2 / 5) / 8)
    r = recall_per_class(y_true, y_pred, labels=[0, 1, 2])
    assert r[0] == pytest.approx(4 / 6) and r[1] == pytest.approx(1 / 2) and math.isnan(r[2])


def test_iemocap_uar_vs_accuracy() -> None:
    labels = np.array([0] * 6 + [1] * 2 + [2] * 2)
    preds = np.zeros(10, dtype=int)
    logits = np.eye(4)[preds] + 0.01  # argmax -> 0 everywhere
    names = ["neu", "hap", "ang", "sad"]
    m = iemocap_metrics(logits, labels, names)
    assert m["Acc"] == pytest.approx(0.6)
    assert m["UAR"] == pytest.approx(1 / 3)  # recalls 1, 0, 0 ; "sad" has no support and is excluded
    # class 0: tp 6, fp 4, fn 0 -> 12/16
    assert m["F1_neu"] == pytest.approx(0.75) and m["F1_hap"] == 0.0 and m["F1_sad"] == 0.0
    assert m["F1_weighted"] == pytest.approx(6 * 0.75 / 10)
    assert m["F1_macro"] == pytest.approx(0.75 / 4)
    assert iemocap_metrics(preds, labels, names) == m  # class indices accepted too
    assert unweighted_average_recall(labels, preds) == pytest.approx(1 / 3)
    assert compute_metrics("iemocap", logits, labels, names) == m
    with pytest.raises(ValueError, match="0..3"):
        iemocap_metrics(preds, np.array([4] * 10), names)


# ------------------------------------------------------------------------------------------------------------------
# SIMS
# ------------------------------------------------------------------------------------------------------------------
def test_sims_bins_at_boundaries() -> None:
    x = [-1.0, -0.7, -0.1, 0.0, 0.1, 0.7, 1.0, 1.5, -1.5]
    # intervals (lo, hi]; values clipped to [-1, 1] first
    assert sims_bin(x, 2).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 0]
    assert sims_bin(x, 3).tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 0]
    assert sims_bin(x, 5).tolist() == [0, 0, 1, 2, 2, 3, 4, 4, 0]
    with pytest.raises(ValueError):
        sims_bin(x, 7)


def test_sims_metrics_hand_example() -> None:
    truths = [-0.1, 0.1, 0.7, 0.0]
    preds = [-0.2, 0.0, 0.8, 0.05]
    m = sims_metrics(preds, truths)
    # 2-class truth 0 1 1 0 ; pred 0 0 1 1 -> 0.5 ; F1 both classes 2/(2+1+1) = 0.5
    assert m["Mult_acc_2"] == pytest.approx(0.5) and m["F1_score"] == pytest.approx(0.5)
    # 3-class truth 0 1 2 1 ; pred 0 1 2 1
    assert m["Mult_acc_3"] == pytest.approx(1.0)
    # 5-class truth 1 2 3 2 ; pred 1 2 4 2
    assert m["Mult_acc_5"] == pytest.approx(0.75)
    assert m["MAE"] == pytest.approx((0.1 + 0.1 + 0.1 + 0.05) / 4)
    assert set(m) == {"Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr"}


# ------------------------------------------------------------------------------------------------------------------
# dispatch
# ------------------------------------------------------------------------------------------------------------------
def test_primary_and_direction() -> None:
    assert primary_metric("mosi") == "Non0_acc_2"
    assert primary_metric("sims") == "Mult_acc_2"
    assert primary_metric("iemocap") == "Acc"
    assert METRIC_DIRECTION["MAE"] == "lower" and METRIC_DIRECTION["Corr"] == "higher"
    assert metric_direction("F1_hap") == "higher"
    assert is_better("MAE", 0.8, 0.9) and not is_better("Acc", 0.8, 0.9) and is_better("Acc", 0.1, None)
    for fam, p, t in (("mosi", [0.5, -1.0], [1.0, -2.0]), ("sims", [0.5, -0.3], [0.2, -0.6])):
        res = compute_metrics(fam, p, t)
        assert primary_metric(fam) in res and all(k in METRIC_DIRECTION for k in res)


# ------------------------------------------------------------------------------------------------------------------
# shared real data: text-only ridge on the bc-LSTM MOSI features (docs/data.md, "The shared real MOSI file")
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not (MOSI_DIR / "mosi_bclstm_utterance.npz").exists(), reason="shared MOSI file absent")
def test_reference_ridge_text_only() -> None:
    z = np.load(MOSI_DIR / "mosi_bclstm_utterance.npz")
    x = z["train__text"].astype(np.float64)
    y = z["train__regression_labels"].astype(np.float64)
    x_mean, y_mean = x.mean(axis=0), y.mean()
    xc = x - x_mean
    w = np.linalg.solve(xc.T @ xc + 10.0 * np.eye(x.shape[1]), xc.T @ (y - y_mean))  # intercept unpenalised
    pred = z["test__text"].astype(np.float64) @ w + (y_mean - x_mean @ w)
    m = mosi_metrics(pred, z["test__regression_labels"])
    assert m["Non0_acc_2"] == pytest.approx(0.775, abs=0.002)
    assert m["Non0_F1_score"] == pytest.approx(0.777, abs=0.002)
    assert m["MAE"] == pytest.approx(0.951, abs=0.002)
    assert m["Corr"] == pytest.approx(0.605, abs=0.002)
    assert m["Mult_acc_7"] == pytest.approx(0.331, abs=0.002)
