"""Synthetic generator: shapes per kind, determinism, label structure, and the modality-informativeness ordering."""
from __future__ import annotations

import numpy as np
import pytest

from mplmm.data import DataError, load_dataset, make_synthetic
from mplmm.errors import ConfigError

SHORT = (6, 8, 8)


def test_default_synthetic_is_small_and_well_formed():  # its load time: benchmarks/bench_data.py
    ds = load_dataset("synthetic", verbose=False)
    assert ds.name == "synthetic" and ds.format == "synthetic" and ds.source == "synthetic"
    assert ds.dims == (300, 5, 20)
    assert ds.seq_lens == (10, 16, 16)
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 320, "valid": 80, "test": 160}
    assert ds.task == "regression" and ds.metric_family == "mosi" and ds.label_range == (-3.0, 3.0)
    for sp in ds.splits.values():
        for m in ("text", "audio", "vision"):
            assert sp.modality(m).dtype == np.float32 and np.isfinite(sp.modality(m)).all()
        assert sp.labels.dtype == np.float32 and sp.labels.shape == (len(sp),)
        assert len(set(sp.ids.tolist())) == len(sp)


def test_default_synthetic_is_configurable():
    ds = load_dataset("synthetic", seq_lens=(4, 5, 6), sizes=(30, 20, 18), seed=3, verbose=False)
    assert ds.seq_lens == (4, 5, 6)
    assert [len(ds[s]) for s in ("train", "valid", "test")] == [30, 20, 18]


@pytest.mark.parametrize(
    "kind,dims,lens,full,task,family",
    [
        ("mosi", (300, 5, 20), (50, 375, 500), (1284, 229, 686), "regression", "mosi"),
        ("mosei", (300, 74, 35), (50, 500, 500), (16326, 1871, 4659), "regression", "mosi"),
        ("sims", (768, 33, 709), (39, 400, 55), (1368, 456, 457), "regression", "sims"),
        ("iemocap", (1024, 130, 342), (22, 350, 50), (4446, 539, 546), "classification", "iemocap"),
    ],
)
def test_kinds_shapes_and_scaled_sizes(kind, dims, lens, full, task, family):
    ds = make_synthetic(kind, size=0.01, seq_lens=SHORT)
    assert ds.dims == dims and ds.seq_lens == SHORT
    assert [len(ds[s]) for s in ("train", "valid", "test")] == [max(16, round(n * 0.01)) for n in full]
    assert ds.task == task and ds.metric_family == family and ds.name == f"synthetic-{kind}"
    if task == "classification":
        assert ds.class_names == ["anger", "happiness", "neutral", "sadness"] and ds.output_dim == 4
        assert ds["train"].labels.dtype == np.int64
    else:
        lo, hi = ds.label_range
        assert all(((sp.labels >= lo) & (sp.labels <= hi)).all() for sp in ds.splits.values())


def test_default_sequence_lengths_are_the_real_ones():
    ds = make_synthetic("mosi", sizes=(16, 16, 16))
    assert ds.seq_lens == (50, 375, 500)


def test_labels_are_quantised_with_exact_zeros():
    mosi = make_synthetic("mosi", seq_lens=SHORT, sizes=(400, 16, 16))
    y = mosi["train"].labels
    assert np.allclose(y * 3, np.round(y * 3), atol=1e-4)
    assert 0.02 < (y == 0).mean() < 0.3
    sims = make_synthetic("sims", seq_lens=SHORT, sizes=(400, 16, 16))
    ys = sims["train"].labels
    assert np.allclose(ys * 5, np.round(ys * 5), atol=1e-4) and np.abs(ys).max() <= 1.0
    assert not np.signbit(ys[ys == 0]).any()  # no -0.0


def test_classes_all_present():
    ds = make_synthetic("iemocap", seq_lens=SHORT, sizes=(400, 16, 16))
    assert set(np.unique(ds["train"].labels)) == {0, 1, 2, 3}


def test_determinism_and_seed_sensitivity():
    a = make_synthetic("mosi", seed=7, seq_lens=SHORT, sizes=(20, 16, 16))
    b = make_synthetic("mosi", seed=7, seq_lens=SHORT, sizes=(20, 16, 16))
    c = make_synthetic("mosi", seed=8, seq_lens=SHORT, sizes=(20, 16, 16))
    for s in ("train", "valid", "test"):
        for m in ("text", "audio", "vision", "labels", "ids"):
            assert np.array_equal(getattr(a[s], m), getattr(b[s], m))
        assert not np.array_equal(a[s].text, c[s].text)
        assert not np.array_equal(a[s].labels, c[s].labels)


def test_exact_zero_frames_but_no_nan():
    ds = make_synthetic("mosi", seq_lens=(6, 40, 40), sizes=(200, 16, 16))
    audio = ds["train"].audio
    zero_frames = (audio == 0).all(axis=2).mean()
    assert 0.0 < zero_frames < 0.05
    assert np.isfinite(audio).all()


def test_notes_record_snr_per_modality():
    notes = " ".join(make_synthetic("mosi", seq_lens=SHORT, sizes=(16, 16, 16)).notes)
    for m in ("text", "audio", "vision"):
        assert f"{m} gain" in notes
    assert "SNR" in notes


def _ridge_acc2(ds, modality: str, alpha: float = 10.0) -> float:
    """Closed-form ridge on mean-pooled features; Acc-2 on non-zero test labels."""
    x = ds["train"].modality(modality).mean(axis=1).astype(np.float64)
    xt = ds["test"].modality(modality).mean(axis=1).astype(np.float64)
    mu, y = x.mean(axis=0), ds["train"].labels.astype(np.float64)
    w = np.linalg.solve((x - mu).T @ (x - mu) + alpha * np.eye(x.shape[1]), (x - mu).T @ (y - y.mean()))
    pred = (xt - mu) @ w + y.mean()
    nz = ds["test"].labels != 0
    return float(((pred[nz] > 0) == (ds["test"].labels[nz] > 0)).mean())


def test_ridge_text_beats_audio_and_vision():
    ds = make_synthetic("mosi", seed=0, seq_lens=(10, 16, 16), sizes=(600, 16, 400))
    acc = {m: _ridge_acc2(ds, m) for m in ("text", "audio", "vision")}
    assert acc["text"] > 0.72, acc
    assert acc["text"] > acc["audio"] + 0.05 and acc["text"] > acc["vision"] + 0.05, acc
    assert min(acc.values()) > 0.5, acc  # audio/vision weak but informative


def test_unknown_kind_and_bad_sizes():
    with pytest.raises(DataError, match="unknown synthetic kind 'foo'"):
        make_synthetic("foo")
    with pytest.raises(DataError, match="seq_lens"):
        make_synthetic("mosi", seq_lens=(0, 3, 3))
    with pytest.raises(ConfigError,
                       match=r"load_dataset\('synthetic-mosi'\): unknown key 'bogus'; accepted: seed, size, sizes"):
        load_dataset("synthetic-mosi", bogus=1, verbose=False)
