"""Bad input: every case is a one-line DataError naming the file, the split and the key."""
from __future__ import annotations

import pickle
import re
import warnings

import numpy as np
import pytest

from mplmm.data import DataError, load_dataset, make_synthetic, save_dataset

SIZES = (12, 10, 8)


def _dict(sizes=SIZES, lens=(4, 6, 5), dims=(7, 3, 4), seed=0):
    """A small MulT-layout dict."""
    rng = np.random.default_rng(seed)
    out = {}
    for s, n in zip(("train", "valid", "test"), sizes):
        out[s] = {m: rng.standard_normal((n, t, d)).astype(np.float32)
                  for m, t, d in zip(("text", "audio", "vision"), lens, dims)}
        out[s]["labels"] = np.clip(rng.standard_normal((n, 1, 1)), -3, 3).astype(np.float32)
    return out


def _write(tmp_path, data, name="bad.pkl"):
    path = tmp_path / name
    path.write_bytes(pickle.dumps(data))
    return path


def _loc(path, split=None, key=None):
    """Regex for the ``<file> [<split>] key '<key>'`` prefix."""
    text = re.escape(str(path))
    if split:
        text += re.escape(f" [{split}]")
    if key:
        text += re.escape(f" key '{key}'")
    return text


def _load(path, **kw):
    return load_dataset(path, verbose=False, **kw)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DataError, match=_loc(tmp_path / "nope.pkl") + ": no such file or folder"):
        _load(tmp_path / "nope.pkl")
    with pytest.raises(DataError, match="no such file or folder"):
        _load(tmp_path / "nodir", format="iemocap_mmin")
    with pytest.raises(DataError, match=r"no \.npz, \.pkl"):
        _load(tmp_path)  # empty folder


def test_truncated_and_garbage_pickle(tmp_path):
    path = _write(tmp_path, _dict())
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=_loc(path) + ": unreadable or truncated pickle") as info:
        _load(path)
    assert info.value.__cause__ is not None and "\n" not in str(info.value)
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"this is not a pickle")
    with pytest.raises(DataError, match=_loc(junk) + ": unreadable or truncated pickle"):
        _load(junk, format="mult_pickle")


def test_truncated_and_garbage_npz(tmp_path):
    ds = make_synthetic("mosi", seq_lens=(2, 3, 3), sizes=SIZES)
    path = save_dataset(ds, tmp_path / "t.npz", "npz")
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(DataError, match=_loc(path) + ".*(unreadable|truncated)"):
        _load(path)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 nonsense")
    with pytest.raises(DataError, match=_loc(junk) + ": unreadable or truncated .npz"):
        _load(junk)


def test_npz_object_array_and_bad_entry_names(tmp_path):
    path = tmp_path / "obj.npz"
    d = {f"{s}__{k}": v for s, sp in _dict().items() for k, v in sp.items()}
    np.savez(path, **d, train__id=np.array(["a"] * SIZES[0], dtype=object))
    with pytest.raises(DataError, match=_loc(path, key="train__id") + ": is an object array"):
        _load(path)
    bad = tmp_path / "names.npz"
    np.savez(bad, **d, foo=np.zeros(3))
    with pytest.raises(DataError, match=_loc(bad) + ": unexpected entry 'foo'"):
        _load(bad)


def test_wrong_top_level_keys(tmp_path):
    d = _dict()
    d["dev"] = d.pop("valid")
    path = _write(tmp_path, d)
    with pytest.raises(DataError, match=_loc(path) + r": expected top-level keys \['train', 'valid', 'test'\], "
                                                     r"found \['dev', 'test', 'train'\]"):
        _load(path)
    not_dict = _write(tmp_path, [1, 2, 3], "list.pkl")
    with pytest.raises(DataError, match=_loc(not_dict) + ": expected a dict"):
        _load(not_dict)


def test_wrong_split_keys(tmp_path):
    d = _dict()
    del d["valid"]["audio"]
    path = _write(tmp_path, d)
    with pytest.raises(DataError, match=_loc(path, "valid") + r": missing keys \['audio'\]; found"):
        _load(path)
    d2 = _dict()
    for sp in d2.values():
        sp["lbl"] = sp.pop("labels")
    path2 = _write(tmp_path, d2, "nolabels.pkl")
    with pytest.raises(DataError, match=_loc(path2, "train") + r": cannot tell MulT from MMSA.*found keys"):
        _load(path2)


def test_text_bert_only(tmp_path):
    d = _dict()
    for sp in d.values():
        n = sp["labels"].shape[0]
        sp["text_bert"] = np.zeros((n, 3, 4), dtype=np.int64)
        del sp["text"]
        sp["regression_labels"] = sp.pop("labels").reshape(-1)
    path = _write(tmp_path, d, "unaligned_50.pkl")
    with pytest.raises(DataError, match=_loc(path, "train", "text_bert") + ".*need a text encoder.*'text' features"):
        _load(path)


def test_mismatched_n(tmp_path):
    d = _dict()
    d["valid"]["audio"] = d["valid"]["audio"][:-1]
    path = _write(tmp_path, d)
    msg = _loc(path, "valid", "audio") + re.escape(": expected (N, T, D) with N=10 like 'labels', got shape (9, 6, 3)")
    with pytest.raises(DataError, match=msg):
        _load(path)


def test_ragged_sequences(tmp_path):
    d = _dict()
    seqs = [np.zeros((6 if i != 3 else 5, 3), dtype=np.float32) for i in range(SIZES[0])]
    ragged = np.empty(SIZES[0], dtype=object)
    ragged[:] = seqs
    d["train"]["audio"] = ragged
    path = _write(tmp_path, d)
    ds = _load(path)  # per-sample sequences of their own lengths: padded at the end, lengths recorded
    assert ds["train"].audio.shape[1:] == (6, 3) and ds["train"].lengths["audio"][3] == 5
    assert ds["train"].lengths["audio"][0] == 6 and (ds["valid"].lengths["audio"] == ds.seq_lens[1]).all()
    seqs[3] = np.zeros((5, 4), dtype=np.float32)
    ragged[:] = seqs
    path = _write(tmp_path, d, "dims.pkl")
    with pytest.raises(DataError, match=_loc(path, "train", "audio") + r": feature dims differ: the first recorded "
                                                                       r"sample has D=3 but sample 3 has shape "
                                                                       r"\(5, 4\)"):
        _load(path)


def test_equal_object_sequences_are_stacked(tmp_path):
    d = _dict()
    obj = np.empty(SIZES[0], dtype=object)
    obj[:] = list(d["train"]["audio"])
    d["train"]["audio"] = obj
    ds = _load(_write(tmp_path, d))
    assert ds["train"].audio.shape == (SIZES[0], 6, 3)


def test_wrong_ndim(tmp_path):
    d = _dict()
    d["test"]["vision"] = d["test"]["vision"][..., None]
    path = _write(tmp_path, d)
    with pytest.raises(DataError, match=_loc(path, "test", "vision") + r": expected \(N, T, D\).*ndim 4"):
        _load(path)
    d = _dict()
    d["test"]["labels"] = np.zeros((SIZES[2], 2, 3), dtype=np.float32)
    path = _write(tmp_path, d, "lab.pkl")
    with pytest.raises(DataError, match=_loc(path, "test", "labels") + r": expected regression labels"):
        _load(path)


def test_nonfinite_features_are_counted_and_zeroed(tmp_path):
    d = _dict()
    d["train"]["audio"][0, 0, :] = np.nan
    d["train"]["audio"][1, 0, 0] = -np.inf
    d["test"]["vision"][2, 1, 1] = np.inf
    path = _write(tmp_path, d)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = _load(path)
    msgs = sorted(str(w.message) for w in caught)
    assert msgs == [
        f"mplmm: {path} [test] vision: replaced 1 non-finite values (+inf) with 0",
        f"mplmm: {path} [train] audio: replaced 4 non-finite values (-inf/nan) with 0",
    ]
    assert np.isfinite(ds["train"].audio).all() and ds["train"].audio[0, 0].sum() == 0
    with pytest.raises(DataError, match=_loc(path, "train") + r" audio: 4 non-finite values.*strict=True"):
        _load(path, strict=True)


def test_nan_labels_always_error(tmp_path):
    d = _dict()
    d["valid"]["labels"][4] = np.nan
    path = _write(tmp_path, d)
    with pytest.raises(DataError, match=_loc(path, "valid", "labels") + ": 1 labels are NaN"):
        _load(path)


def test_empty_split(tmp_path):
    path = _write(tmp_path, _dict(sizes=(12, 0, 8)))
    with pytest.raises(DataError, match=_loc(path, "valid") + r": split is empty \(0 samples in 'labels'\)"):
        _load(path)


def test_regression_labels_out_of_range(tmp_path):
    d = _dict()
    d["test"]["labels"][0] = 3.5
    path = _write(tmp_path, d, "mosi_data.pkl")
    with pytest.raises(DataError, match=_loc(path, "test", "labels") + r": 1 labels outside label_range \(-3, 3\)"):
        _load(path)
    sims = tmp_path / "sims"
    sims.mkdir()
    path2 = _write(sims, _dict(), "unaligned_39.pkl")
    with pytest.raises(DataError, match=_loc(path2, "train", "labels") + r".*outside label_range \(-1, 1\).*"
                                                                          r"metric_family='mosi'"):
        _load(path2)


def test_class_index_out_of_range(tmp_path):
    ds = make_synthetic("iemocap", seq_lens=(2, 3, 2), sizes=SIZES)
    ds["valid"].labels[0] = 4
    path = save_dataset(ds, tmp_path / "iem.npz", "npz")
    with pytest.raises(DataError, match=_loc(path, "valid", "classification_labels")
                       + r": 1 class indices outside \[0, 4\)"):
        _load(path)


def test_dims_differ_between_splits(tmp_path):
    d = _dict()
    d["test"]["audio"] = d["test"]["audio"][:, :, :2]
    path = _write(tmp_path, d)
    with pytest.raises(DataError, match=_loc(path, "test", "audio") + ": feature dim 2 differs from train's 3"):
        _load(path)


def test_seq_len_differing_between_splits_is_padded(tmp_path):
    d = _dict()
    d["test"]["audio"] = d["test"]["audio"][:, :4]
    ds = _load(_write(tmp_path, d))
    assert ds["test"].audio.shape[1] == 6 and (ds["test"].audio[:, 4:] == 0).all()
    assert any("zero-padded" in n for n in ds.notes)


def test_mult_iemocap_multilabel_rows(tmp_path):
    d = _dict()
    for sp in d.values():
        n = sp["labels"].shape[0]
        lab = np.zeros((n, 4, 2), dtype=np.float32)
        lab[:, :, 0] = 1
        lab[:, 0] = [0, 1]
        sp["labels"] = lab
    d["train"]["labels"][1, 2] = [0, 1]  # two positives
    d["train"]["labels"][2, 0] = [1, 0]  # none
    path = _write(tmp_path, d, "iemocap_data.pkl")
    with pytest.raises(DataError, match=_loc(path, "train", "labels") + r".*2 rows do not have exactly one positive"):
        _load(path)
    ds = _load(path, allow_multilabel=True)
    assert ds["train"].labels[1] == 0 and ds.task == "classification"


def test_unknown_format_and_extension(tmp_path):
    path = _write(tmp_path, _dict())
    with pytest.raises(DataError, match="unknown format 'csv'"):
        _load(path, format="csv")
    other = tmp_path / "data.txt"
    other.write_text("x")
    with pytest.raises(DataError, match=_loc(other) + ": cannot tell the format from the extension '.txt'"):
        _load(other)


def test_iemocap_missing_utterance_and_fold(tmp_path):
    h5py = pytest.importorskip("h5py")
    ds = make_synthetic("iemocap", seq_lens=(2, 3, 2), sizes=SIZES)
    root = save_dataset(ds, tmp_path / "IEM", "iemocap_mmin")
    with pytest.raises(DataError, match=_loc(root / "target" / "2", "train") + ": no target folder for fold 2"):
        _load(root, fold=2)
    victim = str(ds["valid"].ids[1])
    with h5py.File(root / "V" / "denseface.h5", "a") as f:
        del f[victim]
    with pytest.raises(DataError, match=_loc(root / "V" / "denseface.h5", "valid", victim) + ": utterance listed"):
        _load(root, audio_len=3)
