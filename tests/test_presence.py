"""Absence is data: every face that reads data can say "this modality was never recorded", and every protocol
intersects its simulated drops with what is really there.

Fixtures are built to the ORIGINAL layouts (MulT pickles: ``(N, 1, 1)`` labels, ``(N, 3)`` byte-string ids; MMSA
pickles: list ids and raw_text, length lists), not by our writer, except where a round trip is the point.
"""
from __future__ import annotations

import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import own_data as O  # noqa: E402

from mplmm.constants import MODE_PRESENT, PRESENT_ROWS  # noqa: E402
from mplmm.data import DataError, from_arrays, load_dataset, save_dataset  # noqa: E402
from mplmm.missing import MissingSpec, draw_modes, effective_modes, eval_masks  # noqa: E402


def _mult(tmp_path: Path, name: str = "mult.pkl") -> tuple[Path, dict]:
    """A MulT-layout pickle whose sample 1 of test has all-NaN audio and sample 2 all-NaN vision (MulT's way of
    storing "nothing recorded" when the arrays must stay rectangular)."""
    path = O.mult_pickle(tmp_path / name, "1-5")
    data = pickle.loads(path.read_bytes())
    data["test"]["audio"][1] = np.nan
    data["test"]["vision"][2] = np.nan
    data["test"]["audio"][3, 0, 0] = np.nan  # a partial NaN inside a present modality: sanitised as before
    path.write_bytes(pickle.dumps(data, protocol=2))
    return path, data


def test_mult_pickle_all_nan_modality_is_absent(tmp_path, capsys):
    path, _ = _mult(tmp_path)
    with pytest.warns(UserWarning, match=r"\[test\] audio: replaced 1 non-finite values \(nan\) with 0"):
        ds = load_dataset(path)
    line = capsys.readouterr().err
    assert "test: 14 complete, 1 audio missing, 1 vision missing" in line
    test = ds["test"]
    assert test.present[1].tolist() == [True, False, True] and test.present[2].tolist() == [True, True, False]
    assert test.present[3].all() and (test.audio[1] == 0).all() and test.audio[3, 0, 0] == 0
    assert test.observed_modes()[:3].tolist() == [6, 1, 2]
    assert "1 audio missing" in repr(ds) and "test 16" in repr(ds) and "array(" not in repr(ds)
    assert ds["train"].present.all()


def test_mult_object_arrays_with_none_and_empty_items(tmp_path):
    """Per-sample object arrays (MulT/MMSA pickles of ragged data): None and (0, D) items are absent, the others are
    padded at the end with their lengths recorded."""
    data = pickle.loads(O.mult_pickle(tmp_path / "a.pkl", "1-5").read_bytes())
    n = len(data["valid"]["labels"])
    items = np.empty(n, dtype=object)
    items[:] = [data["valid"]["vision"][i, : 5 + i % 3] for i in range(n)]
    items[0], items[4] = None, np.zeros((0, 36), dtype=np.float32)
    data["valid"]["vision"] = items
    path = tmp_path / "obj.pkl"
    path.write_bytes(pickle.dumps(data, protocol=4))
    ds = load_dataset(path, verbose=False)
    valid = ds["valid"]
    assert valid.present[[0, 4], 2].tolist() == [False, False] and valid.present[1:4, 2].all()
    assert valid.lengths["vision"][:4].tolist() == [0, 6, 7, 5] and valid.length_matrix()[0, 1] == 10
    assert ds.seq_lens[2] == 20  # the other splits' length: shorter splits are padded, padding recorded
    assert (ds["train"].lengths["vision"] == 20).all()


def test_mmsa_zero_length_and_present_key(tmp_path):
    path = O.mmsa_pickle(tmp_path / "mmsa.pkl")
    data = pickle.loads(path.read_bytes())
    data["train"]["audio_lengths"][3] = 0  # MMSA: no audio frames recorded
    n = len(data["test"]["regression_labels"])
    present = np.ones((n, 3), dtype=bool)
    present[5] = (False, True, True)  # an explicit presence mask (our documented key)
    data["test"]["present"] = present
    path.write_bytes(pickle.dumps(data, protocol=4))
    ds = load_dataset(path, verbose=False)
    assert ds["train"].present[3].tolist() == [True, False, True] and ds["train"].lengths["audio"][3] == 0
    assert ds["test"].present[5].tolist() == [False, True, True] and (ds["test"].text[5] == 0).all()
    data["test"]["present"] = present[:, :2]
    path.write_bytes(pickle.dumps(data, protocol=4))
    with pytest.raises(DataError, match=re.escape(f"{path} [test] key 'present': expected a ({n}, 3) boolean "
                                                  f"presence mask") + r".*got bool with shape \(" + str(n) + r", 2\)"):
        load_dataset(path, verbose=False)


def test_npz_present_round_trip_and_bad_input(tmp_path):
    path, _ = _mult(tmp_path)
    ds = load_dataset(path, verbose=False)
    back = load_dataset(save_dataset(ds, tmp_path / "d.npz"), verbose=False)
    assert np.array_equal(back["test"].present, ds["test"].present)
    with np.load(tmp_path / "d.npz") as z:
        assert z["test__present"].shape == (16, 3) and "train__present" not in z.files  # only where needed
        arrays = {k: z[k] for k in z.files}
    arrays["valid__audio_lengths"] = np.full(16, 11)  # the arrays hold 10 audio steps
    np.savez(tmp_path / "long.npz", **arrays)
    with pytest.raises(DataError, match=r"key 'audio_lengths': 16 lengths exceed the array's T=10 steps, e.g. id "
                                        r"'vidvalid000_0_0.0' has length 11"):
        load_dataset(tmp_path / "long.npz", verbose=False)


def test_unknown_modality_in_a_lengths_key_is_one_line(tmp_path):
    path, data = _mult(tmp_path)
    data["valid"]["sound_lengths"] = np.full(16, 3)
    path.write_bytes(pickle.dumps(data, protocol=2))
    with pytest.raises(DataError, match=re.escape(f"{path} [valid] key 'sound_lengths': unknown modality 'sound'")):
        load_dataset(path, verbose=False)


def test_sample_without_any_modality_is_one_line_or_dropped(tmp_path):
    path, data = _mult(tmp_path)
    data["valid"]["text"][7] = np.nan
    data["valid"]["audio"][7] = np.nan
    data["valid"]["vision"][7] = np.nan
    path.write_bytes(pickle.dumps(data, protocol=2))
    with pytest.raises(DataError, match=re.escape(f"{path} [valid]: 1 samples have no modality at all, e.g. id "
                                                  "'vidvalid002_1_10.5'")):
        load_dataset(path, verbose=False)
    ds = load_dataset(path, verbose=False, drop_empty=True)
    assert len(ds["valid"]) == 15 and any("dropped 1 samples without any modality" in n for n in ds.notes)


def test_from_arrays_none_items_and_unlabeled():
    rng = np.random.default_rng(0)
    n = 12
    text = [rng.normal(size=(3 + i % 4, 5)) for i in range(n)]
    audio = [None if i == 2 else rng.normal(size=(7,)) for i in range(n)]
    vision = [np.full((2, 4), np.nan) if i == 3 else rng.normal(size=(1 + i % 2, 4)) for i in range(n)]
    splits = ["train"] * 6 + ["valid"] * 3 + ["test"] * 3
    ds = from_arrays(text, audio, vision, rng.normal(size=n).tolist(), splits)
    assert ds["train"].present[2].tolist() == [True, False, True]
    assert ds["train"].present[3].tolist() == [True, True, False] and ds["train"].lengths["vision"][3] == 0
    assert ds["train"].lengths["text"][:4].tolist() == [3, 4, 5, 6]
    new = from_arrays(text[:4], audio[:4], vision[:4])  # no labels, no splits: for prediction
    assert new.split_names == ["unsplit"] and np.isnan(new["unsplit"].labels).all()
    with pytest.raises(DataError, match="no utterances in split"):
        from_arrays(text, audio, vision, [0.0] * n, ["train"] * n)


def _naive_effective(mode: int, present) -> int:
    """Per sample, from the definition: keep the simulated mode's modalities the sample has; none -> what it has."""
    keep = [m and p for m, p in zip(MODE_PRESENT[mode], present)]
    if not any(keep):
        keep = list(present)
    return PRESENT_ROWS.index(tuple(bool(k) for k in keep))


def test_effective_modes_against_naive_loop():
    rng = np.random.default_rng(3)
    modes = rng.integers(0, 7, 500)
    present = rng.random((500, 3)) < 0.7
    present[~present.any(axis=1), 0] = True
    got = effective_modes(modes, present)
    assert got.tolist() == [_naive_effective(m, p) for m, p in zip(modes, present)]
    assert np.array_equal(effective_modes(modes, np.ones((500, 3), bool)), modes)  # fully present: unchanged
    assert not (np.array(PRESENT_ROWS)[got] & ~present).any()  # never restores an absent modality


@pytest.mark.parametrize("protocol", ["modality", "entry"])
def test_masks_unchanged_for_present_data_and_observed_protocol(tmp_path, protocol):
    path, _ = _mult(tmp_path)
    ds = load_dataset(path, verbose=False)
    spec = MissingSpec(protocol, 0.6, 4)
    full = eval_masks(spec, ds["train"], "train")  # fully present split: the drawn modes, as before
    assert np.array_equal(full.modes, draw_modes(spec, ds["train"].ids, "train")) and full.observed is None
    test = eval_masks(spec, ds["test"], "test")
    assert test.modes[1] in (1, 3, 5) and test.modes[2] in (2, 4, 5)  # audio / vision never come back
    assert test.observed.tolist()[:3] == [6, 1, 2]
    observed = eval_masks(MissingSpec("observed", 0.0, 0), ds["test"], "test")
    assert np.array_equal(observed.modes, ds["test"].observed_modes())
    loaded = observed.save(tmp_path / "m.npz")
    from mplmm.missing import MissingMasks

    assert np.array_equal(MissingMasks.load(loaded).observed, observed.observed)


def test_interpretation_per_mode_counts_only_samples_that_have_the_mode(tmp_path):
    """A sample lacking vision never appears in the rows of a mode that reads vision (it would run in another mode),
    and an absent modality has exactly zero importance."""
    import torch

    from mplmm.evaluate import per_mode_table
    from mplmm.interpret import modality_importance
    from mplmm.models import create_model

    path, _ = _mult(tmp_path)
    ds = load_dataset(path, verbose=False)  # test sample 1 lacks audio, sample 2 lacks vision
    torch.manual_seed(0)
    model = create_model("mplmm", dims=ds.dims, seq_lens=ds.seq_lens, output_dim=1, d=8, num_heads=2, layers=1,
                         prompt_length=2).eval()
    imp = modality_importance(model, ds, "test", n_samples=8)
    n = imp.groupby("mode")["n"].first()
    assert n[6] == 6 and n[3] == 7 and n[5] == 8  # complete: all but 1 and 2; vision only: all but 2; text only: all
    assert (imp.loc[~imp["present"], "abs_importance"] < 1e-6).all()
    table = per_mode_table(model, ds, "test", device="cpu")
    assert table.set_index("mode")["n_in_mode"].tolist() == [14, 15, 15, 15, 15, 16, 14]
