"""Plot builders: DataFrame in → Figure out, checked through ``fig.to_dict()``."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from mplmm.constants import MODE_NAMES
from mplmm.plots import (auc_summary, auc_table, per_mode_heatmap, per_mode_matrix, robustness_figure,
                         summarise_curves, training_curves)


@pytest.fixture
def curves() -> pd.DataFrame:
    """Method 'A' with two training seeds (offset ±0.05) and two mask seeds (±0.01); method 'B' with one seed."""
    rows = []
    for rate in (0.0, 0.5, 1.0):
        for seed, off in ((0, -0.05), (1, 0.05)):
            for mask_seed, noise in ((0, -0.01), (1, 0.01)):
                rows.append({"method": "A", "seed": seed, "mask_seed": mask_seed, "rate": rate,
                             "Acc": 0.8 - 0.2 * rate + off + noise})
        rows.append({"method": "B", "seed": 3, "mask_seed": 0, "rate": rate, "Acc": 0.6 - 0.1 * rate})
    return pd.DataFrame(rows)


def _traces(fig: go.Figure) -> dict[str, dict]:
    return {t["name"]: t for t in fig.to_dict()["data"]}


def test_summarise_curves_means_over_mask_seeds_then_seeds(curves):
    s = summarise_curves(curves, "Acc")
    a = s[s["method"] == "A"].set_index("rate")
    np.testing.assert_allclose(a["mean"], [0.8, 0.7, 0.6])
    np.testing.assert_allclose(a["std"], [np.std([-0.05, 0.05], ddof=1)] * 3)
    assert a["n_seeds"].tolist() == [2, 2, 2]
    b = s[s["method"] == "B"]
    assert b["std"].tolist() == [0.0, 0.0, 0.0] and b["n_seeds"].tolist() == [1, 1, 1]
    assert list(dict.fromkeys(s["method"])) == ["A", "B"]  # order of first appearance


def test_robustness_figure_lines_and_bands(curves):
    fig = robustness_figure(curves, "Acc")
    names = [t["name"] for t in fig.to_dict()["data"]]
    assert names == ["A +std", "A -std", "A", "B"]  # band only for the method with several seeds
    tr = _traces(fig)
    assert tr["A"]["x"] == [0.0, 0.5, 1.0]
    np.testing.assert_allclose(tr["A"]["y"], [0.8, 0.7, 0.6])
    sd = np.std([-0.05, 0.05], ddof=1)
    np.testing.assert_allclose(tr["A +std"]["y"], np.array([0.8, 0.7, 0.6]) + sd)
    np.testing.assert_allclose(tr["A -std"]["y"], np.array([0.8, 0.7, 0.6]) - sd)
    assert tr["A -std"]["fill"] == "tonexty" and tr["A +std"].get("fill") is None
    assert tr["A +std"]["showlegend"] is False and tr["A -std"]["legendgroup"] == "A"
    assert tr["A"]["line"]["color"] == tr["A -std"]["line"]["color"] != tr["B"]["line"]["color"]
    assert tr["A -std"]["fillcolor"].startswith("rgba(")
    np.testing.assert_allclose(tr["B"]["y"], [0.6, 0.55, 0.5])
    assert fig.layout.xaxis.title.text == "test missing rate" and fig.layout.yaxis.title.text == "Acc"


def test_robustness_figure_without_seed_column():
    df = pd.DataFrame({"method": ["m"] * 2, "rate": [0.0, 1.0], "MAE": [1.0, 2.0]})
    fig = robustness_figure(df, "MAE")
    assert [t.name for t in fig.data] == ["m"]


def test_missing_column_is_a_clear_error(curves):
    with pytest.raises(KeyError, match="F1"):
        robustness_figure(curves, "F1")


def test_auc_tables(curves):
    table = auc_table(curves, "Acc")
    a0 = table[(table["method"] == "A") & (table["seed"] == 0)]["auc"].item()
    assert a0 == pytest.approx(0.7 - 0.05)  # trapezoid of 0.8 → 0.6 over [0, 1] is 0.7; seed offset −0.05
    summary = auc_summary(curves, "Acc").set_index("method")
    assert summary.loc["A", "auc_mean"] == pytest.approx(0.7)
    assert summary.loc["A", "n_seeds"] == 2 and summary.loc["B", "auc_std"] == 0.0
    assert summary.loc["B", "auc_mean"] == pytest.approx(0.55)


def test_auc_matches_evaluate_definition(curves):
    from mplmm.evaluate import area_under_curve

    one = curves[(curves["method"] == "A") & (curves["seed"] == 1)]
    assert auc_table(one, "Acc")["auc"].item() == pytest.approx(area_under_curve(one, "Acc"))


@pytest.fixture
def per_mode() -> pd.DataFrame:
    rows = [{"method": m, "seed": s, "mode": k, "mode_name": MODE_NAMES[k], "MAE": k / 10 + s + (m == "y")}
            for m in ("x", "y") for s in (0, 1) for k in range(7)]
    return pd.DataFrame(rows)


def test_per_mode_matrix_and_heatmap(per_mode):
    mat = per_mode_matrix(per_mode, "MAE")
    assert list(mat.index) == ["x", "y"] and list(mat.columns) == [MODE_NAMES[k] for k in range(7)]
    assert mat.loc["x", "complete"] == pytest.approx(0.6 + 0.5)  # mean over seeds 0 and 1
    fig = per_mode_heatmap(per_mode, "MAE")
    (hm,) = fig.to_dict()["data"]
    assert hm["type"] == "heatmap" and hm["y"] == ["x", "y"] and hm["x"] == [MODE_NAMES[k] for k in range(7)]
    np.testing.assert_allclose(hm["z"], mat.to_numpy())
    assert hm["reversescale"] is True  # MAE: lower is better
    assert per_mode_heatmap(per_mode.rename(columns={"MAE": "Acc"}), "Acc").data[0].reversescale is False


def test_per_mode_heatmap_missing_mode_is_blank(per_mode):
    fig = per_mode_heatmap(per_mode[per_mode["mode"] != 3], "MAE")
    assert fig.data[0].z[0][3] is None


@pytest.fixture
def history() -> pd.DataFrame:
    return pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, 0.8, 0.7], "valid_loss": [1.1, 0.9, 0.95],
                         "valid_Acc": [0.5, 0.6, 0.62], "valid_MAE": [1.0, 0.9, 0.9], "train_prompt": [0.1, 0.1, 0.1],
                         "lr": [1e-3] * 3, "seconds": [1.0] * 3, "best": [True, True, False]})


def test_training_curves(history):
    fig = training_curves(history, "Acc", title="t")
    tr = _traces(fig)
    assert list(tr) == ["train_loss", "valid_loss", "train_prompt", "valid_Acc", "best (valid)"]
    assert tr["train_loss"]["x"] == [1, 2, 3] and tr["valid_loss"]["y"] == [1.1, 0.9, 0.95]
    assert tr["valid_Acc"]["xaxis"] == "x2"  # metrics in the right panel
    assert tr["best (valid)"]["x"] == [1, 2] and tr["best (valid)"]["y"] == [1.1, 0.9]
    assert fig.layout.title.text == "t"


def test_training_curves_all_metrics_and_empty(history):
    names = [t.name for t in training_curves(history).data]
    assert "valid_Acc" in names and "valid_MAE" in names and "lr" not in names and "seconds" not in names
    empty = training_curves(pd.DataFrame(columns=["epoch", "train_loss", "valid_loss", "valid_Acc"]), "Acc")
    assert all(len(t.x) == 0 for t in empty.data)
    with pytest.raises(KeyError, match="valid_F1"):
        training_curves(history, "F1")
