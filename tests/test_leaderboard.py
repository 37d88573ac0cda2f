"""Leaderboards of robustness runs: mean ± std over training seeds, AUC, paired t-intervals, markdown and the index."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mplmm import metrics_file
from mplmm.workbench import runs
from mplmm.workbench.batch import leaderboard as L

ROOT = Path(__file__).resolve().parents[1]
RATES = (0.0, 0.5, 1.0)
BASE = {"mplmm": 0.80, "mult_zero": 0.75, "comp": 0.70}
NOISE = {"mplmm": (0.0, 0.02, 0.01), "mult_zero": (0.01, 0.0, 0.03), "comp": (0.0,)}  # per training seed


def _value(method: str, seed: int, rate: float, mask_seed: int) -> float:
    return BASE[method] - 0.2 * rate + NOISE[method][seed] + 0.002 * mask_seed


def _metrics(methods=("mplmm", "mult_zero", "comp"), dataset: str = "synthetic") -> dict:
    curves = [{"method": m, "seed": s, "rate": r, "mask_seed": k, "protocol": "modality", "Acc": _value(m, s, r, k),
               "MAE": 2 - _value(m, s, r, k)} for m in methods for s in range(len(NOISE[m])) for r in RATES
              for k in (0, 1)]
    per_mode = [{"method": m, "seed": s, "mode": mode, "mode_name": str(mode), "Acc": BASE[m] - 0.01 * mode}
                for m in methods for s in range(len(NOISE[m])) for mode in range(7)]
    return {"dataset": {"name": dataset}, "metric": "Acc", "protocol": "modality", "curves": curves,
            "per_mode": per_mode}


def _per_seed_auc(method: str, seed: int) -> float:
    v = [np.mean([_value(method, seed, r, k) for k in (0, 1)]) for r in RATES]
    return (v[0] + 2 * v[1] + v[2]) / 4  # trapezoid over [0, 1], normalised by the width 1


@pytest.mark.parametrize("df, expected", [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (9, 2.2622),
                                          (30, 2.0423), (1000, 1.9623)])
def test_t_quantile_matches_tables(df, expected):
    assert L.t_quantile(df) == pytest.approx(expected, abs=2e-4)


def test_paired_interval():
    mean, low, high, n = L.paired_interval([1.0, 2.0, 3.0])
    half = 4.302653 / math.sqrt(3)
    assert (mean, n) == (2.0, 3) and low == pytest.approx(2 - half, abs=1e-5) and high == pytest.approx(2 + half)
    assert L.paired_interval([0.5])[:1] == (0.5,) and math.isnan(L.paired_interval([0.5])[1])
    assert L.paired_interval([])[3] == 0 and L.paired_interval([float("nan"), 1.0])[3] == 1


def test_leaderboard_numbers_and_paired_comparison():
    (group,) = L.collect_groups([("robustness", _metrics())])
    assert group.title == "synthetic · modality protocol · Acc" and group.runs == ["robustness"]
    board = L.build_leaderboard(group, reference="mplmm")
    assert board.methods == ["mplmm", "mult_zero", "comp"] and board.rates == [0.0, 0.5, 1.0]
    rows = {r["method"]: r for r in L.summary_rows(board)}
    at0 = [_value("mplmm", s, 0.0, 0) + 0.001 for s in range(3)]
    assert rows["mplmm"]["seeds"] == 3
    assert rows["mplmm"][("Acc", 0.0)] == pytest.approx((np.mean(at0), np.std(at0, ddof=1)))
    aucs = [_per_seed_auc("mplmm", s) for s in range(3)]
    assert rows["mplmm"][("Acc", L.AUC)] == pytest.approx((np.mean(aucs), np.std(aucs, ddof=1)))
    assert math.isnan(rows["comp"][("Acc", L.AUC)][1])  # one seed: no std
    comp = {r["method"]: r for r in L.comparison_rows(board)}
    d = np.array([_per_seed_auc("mult_zero", s) - _per_seed_auc("mplmm", s) for s in range(3)])
    half = 4.302653 * d.std(ddof=1) / math.sqrt(3)
    assert comp["mult_zero"]["n"] == 3
    assert comp["mult_zero"][("Acc", L.AUC)] == pytest.approx((d.mean(), d.mean() - half, d.mean() + half), abs=1e-6)
    assert comp["comp"]["n"] == 1 and math.isnan(comp["comp"][("Acc", 0.0)][1])  # paired on seed 0 only: no interval
    header, cells = L.table_cells(board)
    assert header == ["method", "seeds", "Acc @0", "Acc @0.5", "Acc @1", "AUC Acc"]
    assert cells[0][0] == "mplmm (reference)" and " ± " in cells[0][2] and " ± " not in cells[2][2]
    _, diff = L.comparison_cells(board)
    assert diff[0][0] == "mult_zero" and diff[0][-1].startswith("-0.0") and "[" in diff[0][-1]
    assert diff[1][1] == "1" and "[" not in diff[1][-1]


def test_methods_table_shows_what_training_cost():
    met = _metrics(("mplmm", "comp"))
    met["runs"] = [{"method": "mplmm", "seed": s, "epochs": 20, "train_seconds": 60.0 + 30 * s} for s in range(3)]
    met["runs"].append({"method": "comp", "seed": 0, "epochs": None, "train_seconds": None})  # an older checkpoint
    (group,) = L.collect_groups([("robustness", met)])
    header, cells = L.table_cells(L.build_leaderboard(group, reference="mplmm"))
    assert header[:4] == ["method", "seeds", "epochs", "train min"]
    rows = {c[0].split(" ")[0]: c for c in cells}
    assert rows["mplmm"][2:4] == ["20", "1.5"] and rows["comp"][2:4] == ["–", "–"]
    assert "whole pipeline" in L.describe(group)
    (plain,) = L.collect_groups([("robustness", _metrics())])  # nothing recorded: no cost columns
    assert "epochs" not in L.table_cells(L.build_leaderboard(plain))[0] and "pipeline" not in L.describe(plain)


def test_lower_is_better_metric_ranks_ascending():
    met = _metrics(("mplmm", "mult_zero"))
    met["metric"], met["per_mode"] = "MAE", []
    board = L.build_leaderboard(L.collect_groups([("r", met)])[0])
    assert board.methods == ["mplmm", "mult_zero"] and board.reference is None


def test_groups_split_datasets_and_label_clashing_methods():
    groups = L.collect_groups([("rob_a", _metrics(("mplmm", "comp"))), ("rob_b", _metrics(("mplmm",))),
                               ("rob_c", _metrics(("mplmm",), dataset="mosi")), ("train", {"test": {"Acc": 1}})])
    assert [g.dataset for g in groups] == ["synthetic", "mosi"] and groups[0].runs == ["rob_a", "rob_b"]
    assert set(groups[0].curves["method"]) == {"rob_a: mplmm", "rob_b: mplmm", "comp"}
    assert set(groups[1].curves["method"]) == {"mplmm"}
    board = L.build_leaderboard(groups[0], reference="mplmm")  # two runs have "mplmm": no unique match
    assert board.reference is None and "not among these methods" in L.comparison_note(board)
    assert L.build_leaderboard(groups[0], reference="comp").reference == "comp"
    single = L.collect_groups([("rob_a", _metrics(("mplmm", "comp"))), ("rob_b", _metrics(("mult_zero",)))])[0]
    assert L.build_leaderboard(single, reference="mplmm").reference == "mplmm"


def _output_root(tmp_path: Path, reference=None) -> Path:
    out = tmp_path / "out"
    metrics_file.write_metrics(out / "robustness", _metrics())
    runs.write_status(out / "robustness", {"status": "ok"})
    metrics_file.write_metrics(out / "failed_rob", _metrics(dataset="other"))
    runs.write_status(out / "failed_rob", {"status": "failed"})
    metrics_file.write_metrics(out / "train", {"model": "mult", "test": {"Acc": 0.5}})
    runs.write_grid_record(out, {"name": "g", "reference": reference})
    return out


def test_markdown_for_an_output_root_and_a_run_folder(tmp_path):
    out = _output_root(tmp_path, reference="mplmm")
    text = L.markdown_for(out, rates=[0.0, 1.0])
    assert text.startswith("### synthetic · modality protocol · Acc\n") and "other" not in text  # failed run left out
    assert "| method | seeds | Acc @0 | Acc @1 | AUC Acc |" in text and "| mplmm (reference) | 3 |" in text
    assert "Paired difference to `mplmm`" in text and "| method | n | Δ Acc @0 | Δ Acc @1 | Δ AUC Acc |" in text
    alone = L.markdown_for(out / "robustness", reference="comp")
    assert "| comp (reference) | 1 |" in alone and "Acc @0.5" in alone
    assert "No reference method set" in L.markdown_for(out / "robustness")
    extra = L.markdown_for(out, rates=[0.0, 1.0], metrics=["MAE"])  # more columns; comparison on the headline only
    assert "| method | seeds | Acc @0 | MAE @0 | Acc @1 | MAE @1 | AUC Acc |" in extra and "Δ MAE" not in extra
    with pytest.raises(metrics_file.MetricsError,
                       match=r"no metric \['F1'\] in the curves; they have \['Acc', 'MAE'\]"):
        L.markdown_for(out, metrics=["F1"])
    with pytest.raises(metrics_file.MetricsError, match="no robustness results"):
        L.markdown_for(out / "train")


def test_table_command(tmp_path, capsys):
    from mplmm.cli import main

    out = _output_root(tmp_path, reference="mult_zero")
    assert main(["table", str(out), "--rates", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "| mult_zero (reference) |" in printed and "Acc @0.5" in printed and "Acc @0 |" not in printed
    assert printed == L.markdown_for(out, rates=[0.5])
    assert main(["table", str(tmp_path / "nothing")]) == 2
    assert "no robustness results" in capsys.readouterr().err


def test_index_shows_leaderboard_heatmap_and_comparison(tmp_path):
    from mplmm.workbench.batch import load_grid, write_index

    spec = {"name": "lb", "output_root": str(tmp_path / "out"), "reference": "mplmm",
            "stages": [{"name": "robustness", "notebook": "notebooks/02_robustness.ipynb"}]}
    g = load_grid(spec, root=ROOT)
    metrics_file.write_metrics(g.runs["robustness"][0].folder, _metrics())
    runs.write_status(g.runs["robustness"][0].folder, {"status": "ok"})
    text = write_index(g).read_text()
    assert text.count('<table class="leaderboard">') == 1 and text.count('<table class="comparison">') == 1
    assert 'id="per-mode-heatmap"' in text and text.count("Plotly.newPlot") == 2
    assert "mplmm (reference)" in text and runs.read_grid_record(g.output_root)["reference"] == "mplmm"


def test_labels_split_leaderboards_and_compare_tuned_with_default(tmp_path):
    """Robustness runs with labels (tuned, default) get one leaderboard each, and a paired table tuned − default
    per method and training seed."""
    out = tmp_path / "out"
    default = _metrics()
    tuned = _metrics(methods=("mplmm", "comp"))
    for rec in tuned["curves"]:  # tuned mplmm: +0.01 at every rate and seed; comp unchanged
        rec["Acc"] += 0.01 if rec["method"] == "mplmm" else 0.0
    for name, met, label in (("rob_default", default, "default"), ("rob_tuned", tuned, "tuned")):
        metrics_file.write_metrics(out / name, {**met, "label": label})
        runs.write_status(out / name, {"status": "ok"})
    groups = L.folder_groups(out)
    assert [g.title for g in groups] == ["synthetic · modality protocol · Acc · default",
                                         "synthetic · modality protocol · Acc · tuned"]
    assert [(a.label, b.label) for a, b in L.label_pairs(groups)] == [("default", "tuned")]
    text = L.markdown_for(out, reference="mplmm", rates=[0.0, 1.0])
    assert "### synthetic · Acc · tuned vs default" in text
    pairs = text.split("### synthetic · Acc · tuned vs default")[1]
    assert "| mplmm | 3 | 0.811 ± 0.010 | 0.821 ± 0.010 | +0.010 [+0.010, +0.010] |" in pairs
    assert "| comp | 1 | 0.701 | 0.701 | +0.000 |" in pairs and "mult_zero" not in pairs  # only methods in both
    assert text.count("| mplmm (reference) | 3 |") == 2  # each label keeps its own leaderboard
    index_groups = [g for g in groups if g.label == "tuned"][0]
    assert sorted(index_groups.curves["method"].unique()) == ["comp", "mplmm"]


def test_label_pairs_match_tuned_with_its_default():
    """tuned ↔ default and tuned_complete ↔ default_complete; another label ↔ default; no default: the first."""
    import pandas as pd

    def group(label):
        return L.RobustnessGroup("d", "modality", "Acc", pd.DataFrame(), pd.DataFrame(), [], label)

    four = [group(x) for x in ("default", "tuned", "tuned_complete", "default_complete")]
    assert [(a.label, b.label) for a, b in L.label_pairs(four)] == [("default", "tuned"),
                                                                    ("default_complete", "tuned_complete")]
    assert [(a.label, b.label) for a, b in L.label_pairs([group("default"), group("wide")])] == [("default", "wide")]
    assert [(a.label, b.label) for a, b in L.label_pairs([group("a"), group("b"), group("c")])] == [("a", "b"),
                                                                                                   ("a", "c")]
    assert L.label_pairs([group("x"), group("x")]) == []


def test_summaries_table_under_the_papers_names():
    """The summaries table: AIR and relative robustness equal the trapezoid here (levels 0, 0.5, 1: width 1, but
    MultiBench's fixed step 0.1 makes its area a fifth of it), effective robustness against mult_zero's mean curve."""
    (group,) = L.collect_groups([("robustness", _metrics())])
    board = L.build_leaderboard(group, reference="mplmm")
    header, rows = L.summaries_cells(board)
    assert header == ["method", "metric", "seeds", "AUC", "AIR (OpenVNA)", "clean − AIR (OpenVNA)",
                      "relative robustness (MultiBench)", "effective robustness (MultiBench)"]  # no AUILC grid here
    by = {r[0]: [r[0], *r[2:]] for r in rows if r[1] == "Acc"}
    assert len(rows) == 3  # the headline metric only, unless more are shown
    more = L.summaries_cells(L.build_leaderboard(group, reference="mplmm", metrics=["MAE"]))[1]
    assert [r[1] for r in more] == ["Acc"] * 3 + ["MAE"] * 3
    aucs = [_per_seed_auc("mplmm", s) for s in range(3)]
    assert by["mplmm (reference)"][2] == f"{np.mean(aucs):.3f} ± {np.std(aucs, ddof=1):.3f}"
    assert by["mplmm (reference)"][3] == by["mplmm (reference)"][2]
    def rel(seed):
        y = [np.mean([_value("mplmm", seed, r, k) for k in (0, 1)]) for r in RATES]
        return (y[0] + y[1]) * 0.05 + (y[1] + y[2]) * 0.05  # MultiBench: step 0.1 whatever the levels

    rels = [rel(s) for s in range(3)]
    assert by["mplmm (reference)"][5] == f"{np.mean(rels):.3f} ± {np.std(rels, ddof=1):.3f}"
    assert by["comp"][6] in ("0.000", "-0.000")  # every curve falls with the same slope as mult_zero's
    assert "effective robustness" in L.summaries_note(board) and "`mult_zero`" in L.summaries_note(board)


def test_noise_curves_form_their_own_group():
    met = _metrics(("mplmm", "comp"))
    met["noise_curves"] = [{"method": m, "seed": 0, "noise": lv, "noise_seed": 0, "rate": 0.0, "Acc": 0.8 - 0.1 * lv}
                           for m in ("mplmm", "comp") for lv in (0.0, 0.5, 1.0)]
    groups = L.collect_groups([("robustness", met)])
    assert [g.level for g in groups] == ["rate", "noise"]
    noise = groups[1]
    assert noise.title == "synthetic · gaussian feature noise · Acc"
    assert sorted(noise.curves["rate"].unique()) == [0.0, 0.5, 1.0]  # the noise level, read as the table's level
    text = L.to_markdown(L.build_leaderboard(noise, reference="mplmm"))
    assert "Acc @noise 0.5" in text and "feature-noise level (missing rate 0)" in text
    assert "| mplmm (reference) | Acc | 1 | 0.750 | 0.750 |" in text  # AUC = AIR = 0.75 over levels 0-1


def test_air_by_protocol_for_the_same_checkpoints():
    random = _metrics(("mplmm", "comp"))
    structural = _metrics(("mplmm", "comp"))
    structural["protocol"] = "block"
    for rec in structural["curves"]:
        rec["Acc"] -= 0.1 * rec["rate"]  # the structural drop hurts more
    groups = L.collect_groups([("random", random), ("structural", structural)])
    (members,) = L.protocol_sets(groups)
    assert [m.protocol for m in members] == ["modality", "block"]
    header, rows = L.protocol_cells(members)
    assert header == ["method", "AIR (OpenVNA) · modality", "AIR (OpenVNA) · block"]
    air_random = [_per_seed_auc("mplmm", s) for s in range(3)]
    assert rows[0][1] == f"{np.mean(air_random):.3f} ± {np.std(air_random, ddof=1):.3f}"
    assert float(rows[0][2].split(" ± ")[0]) == pytest.approx(np.mean(air_random) - 0.05, abs=1e-3)
    assert rows[1][0] == "comp" and " ± " not in rows[1][1]  # one seed
    assert not L.protocol_sets(groups[:1])
