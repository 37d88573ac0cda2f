"""Readers: round trips through every writer, auto-detection, the real MOSI file, and layout-specific behaviour."""
from __future__ import annotations

import importlib.util
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from mplmm.data import DataError, detect_format, load_dataset, make_synthetic, save_dataset

SHARED_MOSI = Path(__file__).resolve().parents[2] / "shared/data/mosi_bclstm"
needs_real = pytest.mark.skipif(not SHARED_MOSI.is_dir(), reason=f"shared data not found at {SHARED_MOSI}")
needs_h5 = pytest.mark.skipif(importlib.util.find_spec("h5py") is None,
                              reason="h5py not installed (pip install mplmm[h5])")
SIZES = (20, 16, 16)
EXT = {"mult_pickle": ".pkl", "mmsa_pickle": ".pkl", "npz": ".npz", "iemocap_mmin": ""}


def _same(a, b, keys=("text", "audio", "vision", "labels", "ids")):
    for s in ("train", "valid", "test"):
        for k in keys:
            x, y = getattr(a[s], k), getattr(b[s], k)
            assert x.dtype == y.dtype and np.array_equal(x, y), (s, k)


@pytest.fixture(scope="module")
def mosi():
    return make_synthetic("mosi", seq_lens=(4, 6, 5), sizes=SIZES, seed=1)


@pytest.fixture(scope="module")
def iemocap():
    return make_synthetic("iemocap", seq_lens=(3, 7, 5), sizes=SIZES, seed=2)


@pytest.mark.parametrize("fmt", ["mult_pickle", "mmsa_pickle", "npz"])
@pytest.mark.parametrize("kind", ["mosi", "iemocap"])
def test_round_trip_dict_formats(tmp_path, fmt, kind, mosi, iemocap):
    ds = mosi if kind == "mosi" else iemocap
    path = save_dataset(ds, tmp_path / f"data{EXT[fmt]}", fmt)
    assert detect_format(path) == fmt
    back = load_dataset(path, verbose=False)
    _same(ds, back)
    assert back.format == fmt and back.source == str(path)
    assert (back.dims, back.seq_lens, back.task, back.class_names) == (ds.dims, ds.seq_lens, ds.task, ds.class_names)
    assert back.metric_family == ds.metric_family and back.label_range == ds.label_range


@pytest.mark.parametrize("kind", ["sims"])
def test_round_trip_sims_npz(tmp_path, kind):
    ds = make_synthetic(kind, seq_lens=(3, 4, 5), sizes=SIZES)
    back = load_dataset(save_dataset(ds, tmp_path / "x.npz", "npz"), verbose=False)
    _same(ds, back)
    assert back.metric_family == "sims" and back.label_range == (-1.0, 1.0)


@needs_h5
def test_round_trip_iemocap_folder(tmp_path, iemocap):
    path = save_dataset(iemocap, tmp_path / "IEMOCAP", "iemocap_mmin")
    assert detect_format(path) == "iemocap_mmin"
    back = load_dataset(path, audio_len=7, verbose=False)
    _same(iemocap, back)
    assert back.format == "iemocap_mmin" and back.task == "classification"
    assert set(back["train"].lengths) == {"text", "audio", "vision"}
    assert (back["test"].lengths["audio"] == 7).all()


@needs_h5
def test_save_is_atomic_and_overwrites(tmp_path, mosi):
    path = tmp_path / "d.npz"
    save_dataset(mosi, path, "npz")
    save_dataset(mosi, path, "npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]
    folder = tmp_path / "IEM"
    iem = make_synthetic("iemocap", seq_lens=(2, 3, 2), sizes=SIZES)
    save_dataset(iem, folder, "iemocap_mmin")
    save_dataset(iem, folder, "iemocap_mmin")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["IEM", "d.npz"]
    with pytest.raises(DataError, match="unknown write format"):
        save_dataset(mosi, tmp_path / "x", "csv")
    with pytest.raises(DataError, match="needs a classification dataset"):
        save_dataset(mosi, tmp_path / "y", "iemocap_mmin")


def test_auto_detection_prints_one_line(tmp_path, mosi, capsys):
    path = save_dataset(mosi, tmp_path / "unaligned_50.pkl", "mmsa_pickle")
    load_dataset(path)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mplmm: reading {path} as mmsa_pickle (keys regression_labels")
    load_dataset(path, verbose=False)
    assert capsys.readouterr().err == ""


def test_folder_prefers_npz(tmp_path, mosi):
    save_dataset(mosi, tmp_path / "a.pkl", "mmsa_pickle")
    save_dataset(mosi, tmp_path / "a.npz", "npz")
    ds = load_dataset(tmp_path, verbose=False)
    assert ds.format == "npz" and ds.source == str(tmp_path / "a.npz")
    assert load_dataset(tmp_path, format="mmsa_pickle", verbose=False).format == "mmsa_pickle"


@needs_real
@pytest.mark.parametrize("target", ["", "mosi_bclstm_utterance.npz", "mosi_bclstm_utterance.pkl"])
def test_real_mosi_loads(target, capsys):
    ds = load_dataset(SHARED_MOSI / target if target else SHARED_MOSI)
    assert ds.format == ("mmsa_pickle" if target.endswith(".pkl") else "npz")
    assert ds.dims == (100, 73, 100) and ds.seq_lens == (1, 1, 1)
    assert [len(ds[s]) for s in ("train", "valid", "test")] == [1252, 195, 752]
    assert ds.task == "regression" and ds.metric_family == "mosi" and ds.label_range == (-3.0, 3.0)
    assert -3.0 <= min(ds[s].labels.min() for s in ds.splits) and max(ds[s].labels.max() for s in ds.splits) <= 3.0
    assert ds["test"].ids[0] == "03bSnISJMiM$_$1"
    assert any("standardized audio, vision" in n for n in ds.notes)
    assert abs(float(ds["train"].audio.mean())) < 1e-3 and np.isfinite(ds["test"].audio).all()
    assert "standardized" in capsys.readouterr().err


@needs_real
def test_real_mosi_raw_scale_without_standardize():
    ds = load_dataset(SHARED_MOSI, standardize=False, verbose=False)
    assert 370 < max(float(ds[s].audio.max()) for s in ds.splits) < 380
    assert not any("standardized" in n for n in ds.notes)


def _mult_dict(sizes=SIZES, lens=(4, 6, 5), dims=(7, 3, 4), seed=0, label_scale=2.0):
    rng = np.random.default_rng(seed)
    out = {}
    for s, n in zip(("train", "valid", "test"), sizes):
        out[s] = {m: rng.standard_normal((n, t, d)).astype(np.float32)
                  for m, t, d in zip(("text", "audio", "vision"), lens, dims)}
        out[s]["labels"] = np.clip(label_scale * rng.standard_normal((n, 1, 1)), -3, 3).astype(np.float32)
    return out


def test_mult_pickle_without_ids_synthesises_them(tmp_path):
    path = tmp_path / "mosi_data_noalign.pkl"
    path.write_bytes(pickle.dumps(_mult_dict()))
    ds = load_dataset(path, verbose=False)
    assert ds.format == "mult_pickle" and ds["valid"].ids[3] == "valid_000003"
    assert any("synthesised ids" in n for n in ds.notes)
    assert ds["train"].labels.shape == (SIZES[0],) and ds["train"].labels.dtype == np.float32


def test_mult_iemocap_labels_become_classes(tmp_path):
    d = _mult_dict()
    classes = {}
    for s in d:
        n = d[s]["labels"].shape[0]
        classes[s] = np.arange(n) % 4
        lab = np.zeros((n, 4, 2), dtype=np.float32)
        lab[:, :, 0] = 1
        lab[np.arange(n), classes[s]] = [0, 1]
        d[s]["labels"] = lab
    path = tmp_path / "iemocap_data_noalign.pkl"
    path.write_bytes(pickle.dumps(d))
    ds = load_dataset(path, verbose=False)
    assert ds.task == "classification" and ds.class_names == ["neutral", "happy", "sad", "angry"]
    assert ds.metric_family == "iemocap_mult" and ds["train"].labels.dtype == np.int64
    assert all(np.array_equal(ds[s].labels, classes[s]) for s in d)


def test_mosei_minus_inf_audio_is_zeroed(tmp_path):
    d = _mult_dict()
    d["train"]["audio"][0, :2, :] = -np.inf
    path = tmp_path / "mosei_senti_data.pkl"
    path.write_bytes(pickle.dumps(d))
    with pytest.warns(UserWarning, match=r"\[train\] audio: replaced 6 non-finite values \(-inf\) with 0"):
        ds = load_dataset(path, verbose=False)
    assert (ds["train"].audio[0, :2] == 0).all()


def test_mmsa_lengths_ids_and_family(tmp_path):
    d = _mult_dict(label_scale=0.4)
    for s, sp in d.items():
        y = np.clip(sp.pop("labels").reshape(-1), -1, 1)
        n = y.shape[0]
        sp.update(regression_labels=y, audio_lengths=np.full(n, 5), vision_lengths=np.arange(n) % 6,
                  id=np.array([f"v$_${i}" for i in range(n)], dtype=object), raw_text=np.array(["x"] * n, dtype=object))
    path = tmp_path / "unaligned_39.pkl"
    path.write_bytes(pickle.dumps(d))
    ds = load_dataset(path, verbose=False)
    assert ds.format == "mmsa_pickle" and ds.metric_family == "sims" and ds.label_range == (-1.0, 1.0)
    assert set(ds["train"].lengths) == {"audio", "vision"} and (ds["train"].lengths["audio"] == 5).all()
    assert ds["train"].lengths["vision"].max() == 5  # clipped to T=5
    assert ds["test"].ids[2] == "v$_$2"
    assert load_dataset(path, metric_family="mosi", verbose=False).label_range == (-3.0, 3.0)


def test_family_from_label_range(tmp_path):
    path = tmp_path / "unaligned_50.pkl"
    d = _mult_dict()
    for sp in d.values():
        sp["regression_labels"] = sp.pop("labels").reshape(-1)
    path.write_bytes(pickle.dumps(d))
    ds = load_dataset(path, verbose=False)
    assert ds.metric_family == "mosi" and any("beyond [-1, 1]" in n for n in ds.notes)


def test_utterance_level_features_become_length_one(tmp_path):
    d = _mult_dict()
    for sp in d.values():
        for m in ("text", "audio", "vision"):
            sp[m] = sp[m][:, 0, :]
    np.savez(tmp_path / "utt.npz", **{f"{s}__{k}": v for s, sp in d.items() for k, v in sp.items()})
    ds = load_dataset(tmp_path / "utt.npz", verbose=False)
    assert ds.seq_lens == (1, 1, 1) and ds.dims == (7, 3, 4)


def test_seq_lens_option_pads_and_truncates_files(tmp_path, mosi):
    path = save_dataset(mosi, tmp_path / "m.pkl", "mmsa_pickle")
    ds = load_dataset(path, seq_lens=(2, 9, 5), verbose=False)
    assert ds.seq_lens == (2, 9, 5)
    assert np.array_equal(ds["train"].text, mosi["train"].text[:, :2])
    assert (ds["train"].audio[:, 6:] == 0).all() and (ds["train"].lengths["audio"] == 6).all()


@needs_h5
def test_standardize_true_keeps_padding_zero(tmp_path):
    ds = make_synthetic("iemocap", seq_lens=(3, 12, 4), sizes=SIZES)
    for sp in ds.splits.values():
        sp.lengths = {m: np.full(len(sp), sp.modality(m).shape[1]) for m in ("text", "audio", "vision")}
        sp.lengths["audio"][:] = 8
        sp.audio[:, 8:] = 0
    path = save_dataset(ds, tmp_path / "IEM", "iemocap_mmin")
    out = load_dataset(path, audio_len=12, standardize=True, verbose=False)
    a = out["train"].audio
    assert (a[:, 8:] == 0).all()
    assert np.allclose(a[:, :8].reshape(-1, a.shape[2]).mean(axis=0), 0, atol=1e-4)


@needs_h5
def test_iemocap_long_audio_is_truncated(tmp_path):
    ds = make_synthetic("iemocap", seq_lens=(3, 20, 4), sizes=SIZES)
    path = save_dataset(ds, tmp_path / "IEM", "iemocap_mmin")
    out = load_dataset(path, audio_len=12, verbose=False)
    assert out.seq_lens == (3, 12, 4)
    assert np.array_equal(out["train"].audio, ds["train"].audio[:, :12])
    assert (out["train"].lengths["audio"] == 12).all() and any("truncated" in n for n in out.notes)
    default = load_dataset(path, verbose=False)  # audio_len defaults to 350: padded, never a crash
    assert default.seq_lens[1] == 350 and (default["train"].audio[:, 20:] == 0).all()


@needs_h5
def test_iemocap_mean_std_class_names_and_int2name_variants(tmp_path, iemocap):
    mean = np.linspace(-1, 1, 130).astype(np.float32)
    std = np.full(130, 2.0, dtype=np.float32)
    std[0] = 0.0  # guarded: treated as 1
    path = save_dataset(iemocap, tmp_path / "IEM", "iemocap_mmin", mean_std=(mean, std))
    (path / "target" / "class_names.txt").unlink()
    tdir = path / "target" / "1"
    np.save(tdir / "trn_int2name.npy", np.load(tdir / "trn_int2name.npy").reshape(-1))  # (N,) also accepted
    np.save(tdir / "val_label.npy", iemocap["valid"].labels)  # int labels instead of one-hot
    out = load_dataset(path, audio_len=7, verbose=False)
    std[0] = 1.0
    assert np.allclose(out["train"].audio, (iemocap["train"].audio - mean) / std, atol=1e-5)
    assert out.class_names == ["anger", "happiness", "neutral", "sadness"]
    assert any("defined only by MMIN's target files" in n for n in out.notes)
    assert np.array_equal(out["valid"].labels, iemocap["valid"].labels)
    assert np.array_equal(out["train"].ids, iemocap["train"].ids)


@needs_h5
def test_iemocap_without_h5py_gives_install_hint(tmp_path, iemocap, monkeypatch):
    path = save_dataset(iemocap, tmp_path / "IEM", "iemocap_mmin")
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(DataError, match=r"needs h5py: pip install mplmm\[h5\]"):
        load_dataset(path, verbose=False)
