"""What each notebook must have found, checked from what it recorded (``output_dir/metrics.json``, written by
:func:`mplmm.workbench.notebook.record`): the assertions that used to close the notebooks, kept out of the reader's
way (the ``store_metadata`` pattern). Every test that executes a notebook calls the matching check."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

N_MODES = 7


def recorded(out_dir: Path) -> dict:
    """The notebook's ``metrics.json``."""
    return json.loads((Path(out_dir) / "metrics.json").read_text())


def check_train(out_dir: Path) -> dict:
    """01: metrics saved, headline metric in [0, 1], best.pt and history written, the backbone frozen when tuned."""
    saved = recorded(out_dir)
    prim = saved["primary_metric"]
    assert 0 <= saved["valid"][prim] <= 1
    if saved["config"].get("evaluate_test", True):
        assert 0 <= saved["test"][prim] <= 1
    else:  # tuning: nothing of the test split was evaluated
        assert saved["test"] == {}
    assert (Path(out_dir) / "best.pt").is_file() and (Path(out_dir) / "history.csv").is_file()
    assert saved["epochs_run"] >= 1 and set(saved["by_pattern"]) >= {"valid"}
    if saved["config"].get("pretrained"):
        assert saved["parameters"]["frozen"] > 0, "prompt-tuning should freeze the backbone"
    return saved


def check_robustness(out_dir: Path) -> dict:
    """02: one curve row per checkpoint × rate × mask seed, every rate, metrics in [0, 1], all seven modes, every
    method drawn, the CSV beside it."""
    saved = recorded(out_dir)
    metric, curves, per_mode = saved["metric"], pd.DataFrame(saved["curves"]), pd.DataFrame(saved["per_mode"])
    assert len(curves) == len(saved["runs"]) * len(saved["rates"]) * len(saved["mask_seeds"])
    assert sorted(curves["rate"].unique()) == sorted(set(saved["rates"]))
    assert curves[metric].between(0, 1).all() and per_mode[metric].dropna().between(0, 1).all()
    assert set(per_mode["mode"]) == set(range(N_MODES))
    assert {r["method"] for r in saved["runs"]} <= set(saved["figure_traces"])
    assert len(pd.read_csv(Path(out_dir) / "robustness.csv")) == len(curves)
    assert pd.DataFrame(saved["by_pattern"])["n"].gt(0).all()
    return saved


def check_attention(out_dir: Path, n_samples: int, split_size: int) -> dict:
    """03: attention rows sum to one, the last P memory keys are the prompt tokens, shares in [0, 1] for every
    mode × branch × layer, the modes' prompt similarity has a unit diagonal, generation quality per time step."""
    saved = recorded(out_dir)
    assert saved["n_samples"] == min(n_samples, split_size) and saved["figure_count"] >= 3
    assert saved["attention_row_sum_error"] < 1e-4
    p = saved["prompt_length"]
    if p:
        memory = [m for m in saved["modules"] if m["kind"] == "memory"]
        assert memory and all(m["n_prompt"] == p and m["prompt_start"] == m["k_len"] - p for m in memory)
        share = pd.DataFrame(saved["prompt_share"])
        assert share["share"].between(0, 1).all() and len(share) == N_MODES * 3 * share["layer"].nunique()
        sim = pd.DataFrame(saved["prompt_similarity"])
        assert np.allclose(np.diag(sim.to_numpy()), 1.0, atol=1e-4)
        quality = saved["generation_quality"]
        assert quality["mse"]["count"] == 3 * sum(saved["seq_lens"]) and quality["mse"]["min"] >= 0
        assert -1 <= quality["cosine"]["min"] <= quality["cosine"]["max"] <= 1
        assert len(saved["generation"]) == 9
    return saved


def check_attributions(out_dir: Path) -> dict:
    """04: seven modes × three modalities of importance, a modality the model does not read scores 0, shares sum to
    one per mode, per-sample maps shaped (samples, steps), IG complete on the projections where it should be."""
    saved = recorded(out_dir)
    imp = pd.DataFrame(saved["modality_importance"])
    assert len(imp) == N_MODES * 3
    if saved["reads_modes"]:  # a missing modality is never read: zero importance (up to float noise)
        assert (imp.loc[~imp["present"], "abs_importance"] < 1e-4).all()
    sums = imp[imp["n"] > 0].groupby("mode")["share"].sum()
    assert np.allclose(sums, 1.0, atol=1e-6) or (imp["abs_importance"] == 0).all()
    for shapes in saved["per_sample_shapes"].values():
        assert shapes == [[saved["n_samples"], t] for t in saved["seq_lens"]]
    ig = saved["ig_complete_samples"]
    if "ig" in saved["methods"] and saved["inputs_only_through_projections"] and ig is not None:
        assert ig["gap"] <= 0.05 + 0.1 * ig["total"], ig
    assert saved["summary_mean_abs_min"] >= 0 and saved["figure_count"] >= 2
    return saved


def check_tuning(out_dir: Path) -> dict:
    """05: the study shown is in the journal, has a finished trial, its best value is the best finished value."""
    saved = recorded(out_dir)
    assert saved["study"] in saved["studies_found"]
    trials = pd.DataFrame(saved["trials"])
    finished = trials.loc[trials["state"] == "COMPLETE", "value"]
    assert len(finished) >= 1 and pd.DataFrame(saved["studies"])["complete"].sum() >= 1
    best = finished.min() if saved["direction"] == "MINIMIZE" else finished.max()
    assert abs(saved["best_value"] - best) < 1e-12
    assert saved["figure_traces"]["history"] >= 1 and saved["figure_traces"]["slice"] >= 1
    return saved
