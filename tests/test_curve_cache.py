"""Curves and per-mode tables from at most seven forced-mode passes equal today's one-pass-per-(rate, seed) path."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_data import DIMS, SEQS, tiny_dataset

from mplmm import interpret as I
from mplmm.constants import MODALITIES, MODE_NAMES
from mplmm.evaluate import (
    ModePredictions,
    SplitTensors,
    evaluate_model,
    noise_curve,
    per_mode_table,
    predict,
    predict_all_modes,
    robustness_curve,
    score_predictions,
)
from mplmm.missing import FRAME_PROTOCOLS, MissingSpec, eval_masks
from mplmm.models import create_model
from mplmm.noise import NoiseSpec, draw_noise, noise_scales

RATES, SEEDS = (0.0, 0.1, 0.5, 0.9, 1.0), (0, 3, 7)
SMALL = {"d": 12, "num_heads": 3, "layers": 1}
#: mplmm runs its fusers on the samples of each mode only, so a forced-mode pass multiplies matrices of another
#: height than a mixed batch: float32 rounding (~1e-7) differs. The zero-filling baselines agree bit for bit.
ATOL = {"mplmm": 1e-5, "mult_zero": 0.0}


@pytest.fixture(scope="module", params=["regression", "classification"])
def ds(request):
    return tiny_dataset(24, request.param, seed=3)


def _model(name: str, ds, **cfg) -> torch.nn.Module:
    """A tiny model left in training mode (dropout on): evaluation must switch it to eval mode itself."""
    torch.manual_seed(0)
    model = create_model(name, dims=DIMS, seq_lens=SEQS, output_dim=ds.output_dim, **cfg)
    return model.train()


def _count_passes(model: torch.nn.Module) -> list[int]:
    """A list that grows by one per forward call of ``model`` (each split here fits one batch)."""
    calls: list[int] = []
    model.register_forward_hook(lambda *_: calls.append(1))
    return calls


def _today(model, ds, protocol: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Curve and per-mode table built row by row from :func:`evaluate_model` (one forward pass per row)."""
    curve = pd.DataFrame([{"rate": r, "mask_seed": s, "protocol": protocol, "split": "test",
                           **evaluate_model(model, ds, MissingSpec(protocol, r, s), "test", "cpu")}
                          for r in RATES for s in SEEDS])
    modes = pd.DataFrame([{"mode": k, "mode_name": MODE_NAMES[k], "split": "test", "n_in_mode": len(ds["test"]),
                           **evaluate_model(model, ds, MissingSpec("modality", float(k < 6), 0, k), "test", "cpu")}
                          for k in range(7)])
    return curve, modes


def _assert_same(new: pd.DataFrame, old: pd.DataFrame, atol: float) -> None:
    """Same columns in the same order, same row order, text equal, numbers within ``atol``."""
    assert list(new.columns) == list(old.columns) and len(new) == len(old)
    num = old.select_dtypes("number").columns
    pd.testing.assert_frame_equal(new.drop(columns=num), old.drop(columns=num))
    for col in ("rate", "mask_seed", "mode", "missing_sample_fraction", "missing_entry_fraction"):
        if col in num:
            assert (new[col] == old[col]).all(), col
    np.testing.assert_allclose(new[num].to_numpy(float), old[num].to_numpy(float), rtol=0, atol=atol)


@pytest.mark.parametrize("name", ["mplmm", "mult_zero"])
@pytest.mark.parametrize("protocol", ["modality", "entry"])
def test_cached_curve_and_table_equal_per_rate_path(ds, name, protocol):
    model = _model(name, ds, **SMALL)
    old_curve, old_modes = _today(model, ds, protocol)
    model.train()
    passes = _count_passes(model)
    cache = ModePredictions(model, ds, device="cpu")
    curve = robustness_curve(model, ds, RATES, SEEDS, protocol, device="cpu", cache=cache)
    modes = per_mode_table(model, ds, device="cpu", cache=cache)
    assert len(passes) == 7 and sorted(cache.passes) == list(range(7))
    _assert_same(curve, old_curve, ATOL[name])
    _assert_same(modes, old_modes, ATOL[name])
    passes.clear()  # cached=False is today's path: one pass per row, same result
    _assert_same(robustness_curve(model, ds, RATES, SEEDS, protocol, device="cpu", cached=False), old_curve, 0.0)
    _assert_same(per_mode_table(model, ds, device="cpu", cached=False), old_modes, 0.0)
    assert len(passes) == len(RATES) * len(SEEDS) + 7


def test_only_needed_modes_are_computed(ds):
    model = _model("mult_zero", ds, **SMALL)
    passes = _count_passes(model)
    cache = ModePredictions(model, ds, device="cpu")
    robustness_curve(model, ds, [0.0], SEEDS, "entry", device="cpu", cache=cache)
    assert list(cache.passes) == [6] and len(passes) == 1
    robustness_curve(model, ds, [0.0, 0.2], [0], "modality", device="cpu", cache=cache)
    assert len(passes) == len(cache.passes) > 1  # each mode drawn at rate 0.2 costs one pass, once
    stacked = predict_all_modes(model, ds, device="cpu")
    assert stacked.shape == (7, 24, ds.output_dim)
    np.testing.assert_array_equal(stacked[6], cache.mode(6))


@pytest.mark.parametrize("protocol", FRAME_PROTOCOLS)
def test_frame_protocols_keep_one_pass_per_mask(ds, protocol):
    """A prediction under a frame-level mask depends on the kept steps, not only on the mode: no 7-pass cache."""
    model = _model("mult_zero", ds, **SMALL)
    passes = _count_passes(model)
    cache = ModePredictions(model, ds, device="cpu")
    curve = robustness_curve(model, ds, RATES, SEEDS, protocol, device="cpu", cache=cache)
    assert len(passes) == len(RATES) * len(SEEDS) and not cache.passes
    _assert_same(curve, _today(model, ds, protocol)[0], 0.0)
    if protocol != "frame":  # at rates below 1 the drop changes the outputs (the masks reach the model)
        assert curve.groupby("rate")["loss"].mean().nunique() > 1


def test_noise_curve_adds_the_seeded_noise_and_never_marks_absence(ds):
    model = _model("mult_zero", ds, **SMALL)
    curve = noise_curve(model, ds, [0.0, 0.5, 2.0], [0, 1], device="cpu")
    assert list(curve["noise"]) == [0.0, 0.0, 0.5, 0.5, 2.0, 2.0] and (curve["rate"] == 0.0).all()
    assert (curve["missing_entry_fraction"] == 0.0).all() and (curve["corruption"] == "gaussian").all()
    clean = evaluate_model(model, ds, MissingSpec("modality", 0.0, 0), "test", "cpu")
    assert curve.loc[0, "loss"] == pytest.approx(clean["loss"], abs=1e-6)
    assert curve.loc[4, "loss"] != pytest.approx(clean["loss"], abs=1e-6)
    # by hand: the features plus draw_noise's array, then one ordinary forward pass
    data = SplitTensors(ds["test"], torch.device("cpu"))
    added = draw_noise(NoiseSpec(0.5, 1), data.ids, "test", {m: x.shape[1:] for m, x in zip(MODALITIES, data.x)},
                       noise_scales(ds["train"]), data.present)
    data.x = [x + torch.as_tensor(added[m]) for m, x in zip(MODALITIES, data.x)]
    masks = eval_masks(MissingSpec("modality", 0.0, 0), ds["test"], "test")
    ref = score_predictions(ds, predict(model, data, masks), data.y)
    assert curve.loc[3, "loss"] == pytest.approx(ref["loss"], abs=1e-6)


def test_batch_coupled_model_keeps_per_rate_path(ds):
    """ComP with ``batch_prototypes`` lets every sample see the batch's prototypes: no (sample, mode) cache."""
    model = _model("comp", ds, hidden=8, depth=2, batch_prototypes=True)
    assert not model.predicts_per_sample and _model("comp", ds, hidden=8, depth=2).predicts_per_sample
    passes = _count_passes(model)
    curve = robustness_curve(model, ds, RATES, SEEDS, "modality", device="cpu")
    assert len(passes) == len(RATES) * len(SEEDS)
    _assert_same(curve, _today(model, ds, "modality")[0], 0.0)


def test_cache_of_another_model_is_refused(ds):
    cache = ModePredictions(_model("mult_zero", ds, **SMALL), ds, device="cpu")
    with pytest.raises(ValueError, match="another model"):
        robustness_curve(_model("mult_zero", ds, **SMALL), ds, cache=cache, device="cpu")


def test_evaluate_missing_reuses_cache(ds):
    model = _model("mplmm", ds, prompt_length=4, **SMALL)
    cache = ModePredictions(model, ds, device="cpu")
    passes = _count_passes(model)
    grid = [(rate, present) for rate in (0.3, 0.6, 1.0, 0.0) for present in ((True,) * 3, (True, False, False))]
    cached = [I.evaluate_missing(model, ds, "test", rate, present, cache=cache) for rate, present in grid]
    assert len(passes) == len(cache.passes) == 7
    for (rate, present), res in zip(grid, cached):
        ref = I.evaluate_missing(model, ds, "test", rate, present)
        assert res["mode_counts"] == ref["mode_counts"] and res["forced_mode"] == ref["forced_mode"]
        assert res["metrics"] == pytest.approx(ref["metrics"], abs=ATOL["mplmm"])
        np.testing.assert_allclose(res["predictions"]["pred"], ref["predictions"]["pred"], atol=ATOL["mplmm"])
