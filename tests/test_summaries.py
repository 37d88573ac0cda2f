"""The robustness summaries (mplmm.summaries) against naive loops written from the papers' code: EMT-DLFR's AUILC,
OpenVNA's AIR, MultiBench's relative and effective robustness."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mplmm.errors import ConfigError
from mplmm.summaries import (
    AUILC_RATES,
    air,
    air_effective,
    area_under_curve,
    auilc,
    effective_robustness,
    relative_robustness,
    summarise,
)

RATES = [round(0.1 * i, 1) for i in range(11)]


def _curve(values_per_rate, seeds=2, level="rate", rates=RATES, jitter=0.01) -> pd.DataFrame:
    rows = []
    for r, v in zip(rates, values_per_rate):
        for s in range(seeds):  # seeds average back to v
            rows.append({level: r, "mask_seed": s, "Acc": v + (jitter if s % 2 else -jitter) * (seeds > 1)})
    return pd.DataFrame(rows)


ACC = [0.85, 0.83, 0.80, 0.78, 0.74, 0.71, 0.66, 0.62, 0.58, 0.55, 0.53]


def naive_auilc_code(y):
    """EMT-DLFR run_once.py: sum over i of (y_i + y_{i+1}) * 0.1 / 2 over r = 0.0 .. 1.0."""
    total = 0.0
    for i in range(10):
        total += (y[i] + y[i + 1]) * 0.1 / 2
    return total


def naive_trapz(y, x):
    total = 0.0
    for i in range(len(x) - 1):
        total += (x[i + 1] - x[i]) * (y[i] + y[i + 1]) / 2
    return total


def test_auilc_code_and_caption_grids() -> None:
    curve = _curve(ACC)
    assert auilc(curve, "Acc") == pytest.approx(naive_auilc_code(ACC))
    assert auilc(curve, "Acc", grid="caption") == pytest.approx(naive_trapz(ACC[1:], RATES[1:]) / 0.9)
    assert auilc(curve, "Acc", grid="caption") != pytest.approx(auilc(curve, "Acc"))
    extra = pd.concat([curve, pd.DataFrame([{"rate": 0.05, "mask_seed": 0, "Acc": 0.0}])])
    assert auilc(extra, "Acc") == pytest.approx(naive_auilc_code(ACC))  # other rates are ignored
    with pytest.raises(ConfigError, match="lacks"):
        auilc(curve[curve["rate"] != 0.7], "Acc")
    with pytest.raises(ConfigError, match="grid"):
        auilc(curve, "Acc", grid="paper")


def test_air_is_openvna_trapz_and_effective_is_the_drop() -> None:
    levels = [0.0, 0.2, 0.5, 1.0]
    y = [0.9, 0.8, 0.6, 0.5]
    curve = _curve(y, level="noise", rates=levels)
    assert air(curve, "Acc", level="noise") == pytest.approx(naive_trapz(y, levels))
    assert air_effective(curve, "Acc", level="noise") == pytest.approx(0.9 - naive_trapz(y, levels))
    part = _curve(y[1:], rates=levels[1:])  # not divided by the range, unlike the AUC
    assert air(part, "Acc") == pytest.approx(naive_trapz(y[1:], levels[1:]))
    assert area_under_curve(part, "Acc") == pytest.approx(naive_trapz(y[1:], levels[1:]) / 0.8)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        air(_curve([1, 2], rates=[0.0, 2.0]), "Acc")


def test_multibench_relative_robustness_uses_a_fixed_step() -> None:
    levels = [0.0, 0.5, 1.0]
    y = [0.9, 0.7, 0.4]
    curve = _curve(y, rates=levels)
    assert relative_robustness(curve, "Acc") == pytest.approx((0.9 + 0.7) * 0.05 + (0.7 + 0.4) * 0.05)
    assert relative_robustness(_curve(ACC), "Acc") == pytest.approx(naive_auilc_code(ACC))


def test_multibench_effective_robustness() -> None:
    ref = [0.80, 0.70, 0.65, 0.50]
    mine = [0.85, 0.80, 0.70, 0.60]
    levels = [0.0, 0.3, 0.6, 0.9]
    expected = 0.0
    for f, lf in zip(mine, ref):  # MultiBench: beta_f = lf + (f[0] - lf[0]); sum(f - beta_f)
        expected += f - (lf + (mine[0] - ref[0]))
    got = effective_robustness(_curve(mine, rates=levels), _curve(ref, rates=levels), "Acc")
    assert got == pytest.approx(expected)
    assert effective_robustness(_curve(ref, rates=levels), _curve(ref, rates=levels), "Acc") == pytest.approx(0.0)
    with pytest.raises(ConfigError, match="same levels"):
        effective_robustness(_curve(mine, rates=levels), _curve(ref[:3], rates=levels[:3]), "Acc")


def test_summaries_agree_on_the_standard_grid_and_part_elsewhere() -> None:
    out = summarise(_curve(ACC), "Acc", reference=_curve(ACC))
    for key in ("auilc", "air", "relative_robustness"):
        assert out[key] == pytest.approx(out["auc"]), key
    assert out["effective_robustness"] == pytest.approx(0.0)
    assert set(out) == {"auc", "auilc", "auilc_caption", "air", "air_effective", "relative_robustness",
                        "effective_robustness"}
    sparse = summarise(_curve([0.9, 0.7, 0.5], rates=[0.0, 0.5, 1.0]), "Acc")
    assert "auilc" not in sparse and sparse["relative_robustness"] != pytest.approx(sparse["air"])
    assert AUILC_RATES == tuple(RATES)


def test_errors_name_the_columns() -> None:
    with pytest.raises(ConfigError, match="'noise'"):
        air(_curve(ACC), "Acc", level="noise")
    with pytest.raises(ConfigError, match="'F1'"):
        area_under_curve(_curve(ACC), "F1")


def test_evaluate_reexports_the_same_auc() -> None:
    from mplmm.evaluate import area_under_curve as from_evaluate

    assert from_evaluate is area_under_curve
    y = np.array(ACC)
    assert area_under_curve(_curve(ACC), "Acc") == pytest.approx(naive_trapz(list(y), RATES))


def test_summary_table_per_method_and_seed_with_the_reference() -> None:
    from mplmm.summaries import summary_table

    parts = []
    for method, shift in (("mult_zero", 0.0), ("mplmm", 0.05)):
        for seed in (0, 1):
            y = [v + shift * (i / 10) + 0.01 * seed for i, v in enumerate(ACC)]
            parts.append(_curve(y).assign(method=method, seed=seed))
    curves = pd.concat(parts, ignore_index=True)
    table = summary_table(curves, "Acc")
    assert list(table["method"]) == ["mult_zero", "mult_zero", "mplmm", "mplmm"]
    ref_mean = curves[curves["method"] == "mult_zero"]
    mine = curves[(curves["method"] == "mplmm") & (curves["seed"] == 1)]
    row = table[(table["method"] == "mplmm") & (table["seed"] == 1)].iloc[0]
    assert row["effective_robustness"] == pytest.approx(effective_robustness(mine, ref_mean, "Acc"))
    assert row["effective_robustness"] == pytest.approx(sum(0.05 * i / 10 for i in range(11)))
    assert row["auilc"] == pytest.approx(auilc(mine, "Acc"))
    assert "effective_robustness" not in summary_table(curves, "Acc", reference="late_fusion")
