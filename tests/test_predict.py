"""Predictions out: checkpoints carry their preprocessing, ``predict`` works on new unlabeled data, ``explain``
writes one offline page, and every bad input is one line."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import own_data as O  # noqa: E402

import mplmm  # noqa: E402
from mplmm.checkpoint import CheckpointError, load_model, read_checkpoint  # noqa: E402
from mplmm.cli import main as cli_main  # noqa: E402
from mplmm.data import DataError, load_dataset, save_dataset  # noqa: E402
from mplmm.errors import ConfigError  # noqa: E402
from mplmm.evaluate import SplitTensors  # noqa: E402
from mplmm.evaluate import predict as predict_masked
from mplmm.missing import MissingSpec, eval_masks  # noqa: E402
from mplmm.train import TrainConfig, train  # noqa: E402
from mplmm.utils import atomic_write  # noqa: E402

SHARED_NPZ = Path(__file__).resolve().parents[2] / "shared/data/mosi_bclstm/mosi_bclstm_utterance.npz"
needs_real = pytest.mark.skipif(not SHARED_NPZ.is_file(), reason=f"shared data not found at {SHARED_NPZ}")
TINY = dict(d=8, num_heads=2, layers=1)


def _one_line_exit2(capsys, argv, *fragments):
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ") and "Traceback" not in "\n".join(err)
    for f in fragments:
        assert f in err[-1], (f, err[-1])
    return err[-1]


@pytest.fixture(scope="module")
def mosi_run(tmp_path_factory):
    """A tiny mult trained on the real MOSI utterance-level file (whose audio/vision the 'auto' rule standardizes)."""
    if not SHARED_NPZ.is_file():
        pytest.skip("shared data not found")
    out = tmp_path_factory.mktemp("mosi_run")
    ds = load_dataset(SHARED_NPZ, verbose=False)
    res = train(TrainConfig(model="mult", model_config=TINY, epochs=1, progress=False, seed=1), ds, out)
    return out / "best.pt", ds, res


def _unlabeled_copy(path: Path, split: str, out: Path, drop: dict | None = None) -> Path:
    """The raw features of one split of ``path`` as an unsplit, unlabeled npz (what a user brings for prediction);
    ``drop`` = {modality: rows} makes those modalities absent (all-NaN)."""
    with np.load(path) as z:
        arrays = {f"unsplit__{k}": z[f"{split}__{k}"].copy() for k in ("text", "audio", "vision", "id")}
    for m, rows in (drop or {}).items():
        arrays[f"unsplit__{m}"][rows] = np.nan
    np.savez(out, **arrays)
    return out


@needs_real
def test_checkpoint_carries_standardization_and_predict_uses_it(mosi_run, tmp_path):
    ckpt_path, ds, res = mosi_run
    ck = read_checkpoint(ckpt_path)
    assert set(ck["preprocessing"]["standardize"]) == {"audio", "vision"}
    new = _unlabeled_copy(SHARED_NPZ, "test", tmp_path / "new.npz")
    model = mplmm.load_model(ckpt_path)
    table = mplmm.predict(model, new)
    assert list(table.columns[:4]) == ["id", "present", "mode", "mode_name"] and "label" not in table.columns
    assert len(table) == 752 and (table["mode"] == 6).all() and (table["present"] == "text+audio+vision").all()
    data = SplitTensors(ds["test"], torch.device("cpu"))  # the training dataset, standardized at training time
    expected = predict_masked(res.model, data, eval_masks(MissingSpec(), ds["test"], "test"))[:, 0]
    np.testing.assert_allclose(table["prediction"].to_numpy(), expected, atol=1e-5)
    assert model.checkpoint["preprocessing"] == ds.preprocessing  # the training split's statistics, not new.npz's
    with np.load(new) as z:  # the new file's own audio statistics differ: using them would change the inputs
        assert not np.allclose(z["unsplit__audio"].mean(0), ds.preprocessing["standardize"]["audio"]["mean"])


@needs_real
def test_predict_cli_on_new_file_with_absent_modalities(mosi_run, tmp_path, capsys):
    ckpt_path, _, _ = mosi_run
    new = _unlabeled_copy(SHARED_NPZ, "test", tmp_path / "new.npz", drop={"audio": [0, 1], "vision": [1, 2]})
    for ext in (".csv", ".jsonl"):
        out = tmp_path / f"preds{ext}"
        assert cli_main(["predict", str(ckpt_path), "--data_path", str(new), "--out", str(out), "--quiet"]) == 0
        assert "752 predictions" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "preds.csv")
    assert table.loc[:2, "mode_name"].tolist() == ["audio missing", "audio+vision missing", "vision missing"]
    assert table.loc[:2, "present"].tolist() == ["text+vision", "text", "text+audio"]
    assert pd.read_json(tmp_path / "preds.jsonl", lines=True)["mode"].tolist() == table["mode"].tolist()
    forced = tmp_path / "forced.csv"
    assert cli_main(["predict", str(ckpt_path), "--data_path", str(new), "--out", str(forced), "--mode", "5",
                     "--quiet"]) == 0  # what-if text only: samples without text keep what they have
    assert set(pd.read_csv(forced)["mode"]) == {5}
    _one_line_exit2(capsys, ["predict", str(ckpt_path), "--data_path", str(new), "--out", str(tmp_path / "p.txt")],
                    "expected one of the extensions ['.csv', '.parquet', '.jsonl']")
    _one_line_exit2(capsys, ["predict", str(ckpt_path), "--data_path", str(new), "--out", str(forced), "--split",
                             "test"], "split: 'test' is not in", "['unsplit']")


def test_predict_labels_classes_and_splits(tmp_path):
    """A classification checkpoint: predicted classes and per-class probabilities, labels where given."""
    path = O.mmsa_pickle(tmp_path / "emo.pkl", classes=["joy", "anger", "fear"])
    ds = load_dataset(path, verbose=False)
    res = train(TrainConfig(model="mult", model_config=TINY, epochs=1, progress=False), ds, tmp_path / "run")
    model = load_model(tmp_path / "run" / "best.pt")
    table = mplmm.predict(model, path, "valid")
    assert set(table["split"]) == {"valid"} and {"prob_anger", "prob_fear", "prob_joy"} <= set(table.columns)
    np.testing.assert_allclose(table[["prob_anger", "prob_fear", "prob_joy"]].sum(axis=1), 1.0, atol=1e-5)
    assert set(table["predicted_class"]) <= {"anger", "fear", "joy"}
    assert table["label"].tolist() == [ds.class_names[i] for i in ds["valid"].labels]
    assert res.metrics["by_pattern"]["test"][0]["pattern"] == "complete"


def test_older_checkpoint_without_preprocessing_still_loads(tmp_path):
    ds = load_dataset("synthetic", verbose=False, size=0.02, seq_lens=(3, 4, 4))
    train(TrainConfig(model="mult", model_config=TINY, epochs=1, progress=False), ds, tmp_path)
    ck = torch.load(tmp_path / "best.pt", weights_only=True)
    ck.pop("preprocessing")
    atomic_write(tmp_path / "old.pt", lambda fh: torch.save(ck, fh))
    model = load_model(tmp_path / "old.pt")
    table = mplmm.predict(model, "synthetic", "test", size=0.02, seq_lens=(3, 4, 4))
    assert len(table) == len(ds["test"]) and table["label"].notna().all()


def test_explain_page_is_offline_and_bad_ids_are_one_line(tmp_path, capsys):
    path = O.mult_pickle(tmp_path / "r.pkl", "1-5")
    ds = load_dataset(path, verbose=False)
    ds["test"].present[1, 1] = False  # sample 1 of test lacks audio
    ds["test"].audio[1] = 0
    save_dataset(ds, tmp_path / "r.npz")
    train(TrainConfig(model="mult", model_config=TINY, epochs=1, progress=False), ds, tmp_path / "run")
    ck = str(tmp_path / "run" / "best.pt")
    ids = [ds["test"].ids[0], ds["test"].ids[1]]
    assert cli_main(["explain", ck, "--data_path", str(tmp_path / "r.npz"), "--ids", *ids, "--out",
                     str(tmp_path / "ex"), "--ig_steps", "4"]) == 0
    page = (tmp_path / "ex" / "explain.html").read_text()
    assert "plotly.js v" in page and not re_remote_script(page)
    rec = json.loads((tmp_path / "ex" / "explain.json").read_text())["samples"]
    assert rec[1]["present"] == ["text", "vision"] and rec[1]["mode"] == 1
    assert [r["mode"] for r in rec[1]["per_mode"]] == [1, 3, 5]  # only modes that keep what it has
    assert rec[1]["modality_importance"]["audio"] == 0.0  # never read
    assert set(rec[0]["attributions"]) == {"ig", "occlusion"} and len(rec[0]["attributions"]["ig"]["text"]) == 6
    assert set(rec[1]["attributions"]["occlusion"]) == {"text", "vision"}  # no time steps for the absent audio
    _one_line_exit2(capsys, ["explain", ck, "--data_path", str(tmp_path / "r.npz"), "--ids", "nope", "--out",
                             str(tmp_path / "ex2")], "no sample with id 'nope'")
    assert not (tmp_path / "ex2").exists()


def re_remote_script(page: str) -> bool:
    """True when the page loads a script from the network."""
    import re

    return bool(re.search(r"<script[^>]+src=[\"']https?://", page))


def test_python_api_is_exported():
    assert callable(mplmm.load_model) and callable(mplmm.predict) and callable(mplmm.explain)
    with pytest.raises(AttributeError):
        mplmm.no_such_name  # noqa: B018


def test_write_table_refuses_unknown_extension(tmp_path):
    from mplmm.prediction import write_table

    with pytest.raises(ConfigError, match="expected one of the extensions"):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "x.xlsx")
    assert not (tmp_path / "x.xlsx").exists()


def test_checkpoint_that_does_not_fit_new_data_is_one_line(tmp_path, capsys):
    ds = load_dataset("synthetic", verbose=False, size=0.02, seq_lens=(3, 4, 4))
    train(TrainConfig(model="mult", model_config=TINY, epochs=1, progress=False), ds, tmp_path)
    other = O.mult_pickle(tmp_path / "o.pkl", "1-5")
    _one_line_exit2(capsys, ["predict", str(tmp_path / "best.pt"), "--data_path", str(other), "--out",
                             str(tmp_path / "p.csv")], "feature dims (text, audio, vision) expected (300, 5, 20)",
                    "found (8, 5, 36)")
    with pytest.raises((DataError, CheckpointError)):
        mplmm.predict(load_model(tmp_path / "best.pt"), other)


def test_mplmm_data_of_other_lengths_is_padded_or_truncated_to_the_trained_ones(tmp_path, capsys):
    """MPLMM's parameters are sized by the sequence lengths: new data is fitted to them (padding masked); a model
    that takes any length (mult) gets the data as it is."""
    ds = load_dataset("synthetic", verbose=False, size=0.02, seq_lens=(4, 6, 6))
    pre = tmp_path / "pre"
    train(TrainConfig(model="mult", model_config=TINY, epochs=1, progress=False), ds, pre)
    train(TrainConfig(model="mplmm", model_config=TINY, epochs=1, progress=False, pretrained=str(pre / "best.pt"),
                      train_rate=0.5), ds, tmp_path / "tuned")
    model = load_model(tmp_path / "tuned" / "best.pt")
    short = load_dataset("synthetic", verbose=False, size=0.02, seq_lens=(3, 5, 4))
    table = mplmm.predict(model, short, "test")
    assert len(table) == len(short["test"]) and np.isfinite(table["prediction"]).all()
    assert any("padded/truncated to the trained lengths (4, 6, 6)" in n for n in table.attrs["notes"])
    long = load_dataset("synthetic", verbose=False, size=0.02, seq_lens=(5, 8, 6))
    assert any("truncated" in n for n in mplmm.predict(model, long, "test").attrs["notes"])
    with pytest.raises(CheckpointError, match=r"sequence lengths \(text, audio, vision\) expected \(4, 6, 6\)"):
        load_model(tmp_path / "tuned" / "best.pt", data=short)  # a dataset checked as it is: one line
    backbone = load_model(pre / "best.pt", data=long)  # mult takes any length
    assert len(mplmm.predict(backbone, long, "test")) == len(long["test"])
