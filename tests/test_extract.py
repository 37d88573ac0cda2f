"""Raw clips to features (``mplmm extract``) on real clips these tests build: scikit-image's astronaut photo moved
about as video, espeak-ng speech, muxed with PyAV. Each failure (no face, silence, no transcript, no video stream,
a truncated file, a file that is no video at all) must land as the right absent modality with its reason; the
features must train and predict as missing-modality samples; a checkpoint must refuse features made differently.

Skipped with the reason when the extra ``.[extract]`` or espeak-ng is missing, unless ``MPLMM_REQUIRE_EXTRACT=1``
(CI), which turns the skip into a failure.
"""
from __future__ import annotations

import importlib.util
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from mplmm.checkpoint import CheckpointError, load_model
from mplmm.cli import main as cli_main
from mplmm.constants import MODALITIES
from mplmm.data import DataError, load_dataset
from mplmm.errors import ConfigError, UserError

REQUIRE = os.environ.get("MPLMM_REQUIRE_EXTRACT", "").strip().lower() in ("1", "true", "yes")
_MODULES = ("av", "opensmile", "silero_vad", "cv2", "soundfile", "transformers", "skimage")
_MISSING = [m for m in _MODULES if importlib.util.find_spec(m) is None]
_ESPEAK = shutil.which("espeak-ng") or shutil.which("espeak")
_WHY = (f"the extra .[extract] is not installed (missing {', '.join(_MISSING)})" if _MISSING else
        "espeak-ng is not installed (apt-get install espeak-ng; make test does it)" if not _ESPEAK else "")


def _need_tools() -> None:
    if _WHY:
        if REQUIRE:
            pytest.fail(f"{_WHY} [MPLMM_REQUIRE_EXTRACT=1: the extraction tests must run]", pytrace=False)
        pytest.skip(_WHY)


TRANSCRIPTS = {
    "face_speech": ("I really loved this movie", "train", 2.0),
    "face_speech2": ("what a wonderful and happy story", "train", 1.5),
    "sad_speech": ("this was a terrible movie", "train", -2.0),
    "no_face": ("boring and far too long", "valid", -1.0),
    "silent": ("the acting was great and fun", "valid", 1.0),
    "no_transcript": (None, "test", 0.5),
    "audio_only": ("I hated the awful ending", "test", -2.5),
    "truncated": ("a beautiful film that I enjoyed", "train", 2.5),
    "not_video": ("a sad waste of my time", "test", -1.5),
}
EXPECTED_ABSENT = {  # clip -> modalities absent, and a word of each reason
    "face_speech": {}, "face_speech2": {}, "sad_speech": {},
    "no_face": {"vision": "no face"},
    "silent": {"audio": "no speech"},
    "no_transcript": {"text": "empty transcript"},
    "audio_only": {"vision": "no video stream"},
    "truncated": {"audio": "unreadable", "vision": "unreadable"},
    "not_video": {"audio": "unreadable", "vision": "unreadable"},
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """The clip folder, the transcript CSV (no row for 'no_transcript') and a tiny local text encoder."""
    _need_tools()
    from mplmm.extract.samples import truncate, write_clip
    from mplmm.extract.text import tiny_encoder

    root = tmp_path_factory.mktemp("clips")
    folder = root / "clips"
    for k, (cid, (text, _, _)) in enumerate(TRANSCRIPTS.items()):
        path = folder / f"{cid}.mp4"
        if cid == "not_video":
            folder.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"this is not a video\n" * 30)
            continue
        spoken = "this clip has no transcript row" if cid == "no_transcript" else text
        write_clip(path, text=None if cid == "silent" else spoken, face=cid != "no_face", seconds=2.0,
                   video=cid != "audio_only", seed=k)
        if cid == "truncated":
            truncate(path, 0.3)
    rows = [{"id": cid, "text": text, "split": split, "label": label}
            for cid, (text, split, label) in TRANSCRIPTS.items() if text is not None]
    rows.append({"id": "no_transcript", "text": "", "split": "test", "label": 0.5})
    table = pd.DataFrame(rows)
    table.to_csv(root / "transcripts.csv", index=False)
    words = " ".join(t for t, _, _ in TRANSCRIPTS.values() if t).split()
    encoder = tiny_encoder(root / "encoder", words, seed=0)
    return folder, root / "transcripts.csv", encoder


@pytest.fixture(scope="module")
def extracted(clips, tmp_path_factory):
    from mplmm.extract import extract

    folder, transcripts, encoder = clips
    out = tmp_path_factory.mktemp("features") / "features.npz"
    return extract(folder, out, transcripts, text_model=encoder, progress=False)


def test_each_failure_is_the_right_absent_modality(extracted):
    rep = extracted.report.set_index("id")
    ds = extracted.dataset
    present = {i: row for sp in ds.splits.values() for i, row in zip(sp.ids.tolist(), sp.present.tolist())}
    for cid, absent in EXPECTED_ABSENT.items():
        for j, m in enumerate(MODALITIES):
            cell = rep.at[cid, m]
            if m in absent:
                assert cell.startswith("absent:") and absent[m] in cell, (cid, m, cell)
                assert not present[cid][j], (cid, m)
            else:
                assert cell == "ok", (cid, m, cell)
                assert present[cid][j], (cid, m)
    assert rep.at["face_speech", "status"] == "complete" and rep.at["no_face", "status"] == "partial"
    assert rep.at["face_speech", "face_frames"] == rep.at["face_speech", "sampled_frames"] == 10  # 2 s at 5 fps
    assert rep.at["no_face", "face_frames"] == 0 and rep.at["no_face", "sampled_frames"] == 10
    assert "9 clips" in extracted.summary and "vision absent 4" in extracted.summary
    assert extracted.report_path.name == "extract_report.csv" and extracted.report_path.is_file()


def test_features_file_reads_back_with_masks_lengths_and_provenance(extracted):
    ds = load_dataset(extracted.path, verbose=False)
    assert ds.task == "regression" and ds.dims == (32, 25, 328)
    assert sorted(ds.split_names) == ["test", "train", "valid"]
    rep = extracted.report.set_index("id")
    for sp in ds.splits.values():
        lengths = sp.length_matrix()
        for i, cid in enumerate(sp.ids.tolist()):
            assert lengths[i, 0] == rep.at[cid, "text_tokens"]
            assert lengths[i, 1] == rep.at[cid, "audio_steps"]
            assert lengths[i, 2] == rep.at[cid, "face_frames"]
            for j, m in enumerate(MODALITIES):  # absent: zeros no model reads; present: real values
                x = sp.modality(m)[i]
                assert (np.abs(x).sum() > 0) == bool(sp.present[i, j]), (cid, m)
    feats = ds.features
    assert feats["audio"]["extractor"] == "opensmile" and feats["audio"]["settings"]["feature_set"] == "eGeMAPSv02"
    assert feats["vision"]["dim"] == 328 and feats["text"]["settings"]["model"] != "none"
    assert feats["audio"]["versions"]["opensmile"]
    frames = np.load(extracted.path.with_suffix(".frames.npz"))
    assert frames["no_face__face"].shape == (10,) and not frames["no_face__face"].any()
    assert frames["face_speech__face"].all()


def test_text_features_match_a_direct_encoder_call(clips, extracted):
    """The token embeddings are the encoder's last hidden layer over the transcript, token for token."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    _, _, encoder = clips
    tok, model = AutoTokenizer.from_pretrained(encoder), AutoModel.from_pretrained(encoder).eval()
    ds = extracted.dataset
    sp = ds["train"]
    i = sp.ids.tolist().index("face_speech")
    with torch.no_grad():
        want = model(**tok(TRANSCRIPTS["face_speech"][0], return_tensors="pt")).last_hidden_state[0].numpy()
    got = sp.text[i, : sp.length_matrix()[i, 0]]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_audio_pooling_matches_naive_window_means():
    from mplmm.extract.audio import pool_frames

    x = np.random.default_rng(0).normal(size=(95, 3)).astype(np.float32)
    got = pool_frames(x, 100.0, 10.0)
    naive = [x[s:s + 10].mean(axis=0) for s in range(0, 95, 10)]
    np.testing.assert_allclose(got, np.stack(naive), rtol=1e-6)


def test_rerun_reads_the_cache_and_new_settings_extract_again(clips, extracted, tmp_path):
    from mplmm.extract import extract

    folder, transcripts, encoder = clips
    again = extract(folder, extracted.path, transcripts, text_model=encoder, progress=False)
    assert again.report["cached"].all()
    a, b = load_dataset(extracted.path, verbose=False), again.dataset
    np.testing.assert_array_equal(a["train"].audio, b["train"].audio)
    other = extract(folder, tmp_path / "f.npz", transcripts, text_model=encoder, progress=False, fps=2.5,
                    cache=str(extracted.path) + ".cache")
    assert not other.report["cached"].any()
    assert other.report.set_index("id").at["face_speech", "sampled_frames"] == 5


def test_two_workers_give_the_same_features(clips, extracted, tmp_path):
    from mplmm.extract import extract

    folder, transcripts, encoder = clips
    par = extract(folder, tmp_path / "par.npz", transcripts, text_model=encoder, progress=False, workers=2)
    assert not par.report["cached"].any()
    for s in ("train", "valid", "test"):
        for m in MODALITIES:
            np.testing.assert_allclose(par.dataset[s].modality(m), extracted.dataset[s].modality(m), rtol=1e-5,
                                       atol=1e-6)


def test_train_then_predict_reports_the_modes(extracted, tmp_path):
    """The clips with failures are trained on and predicted as missing-modality samples, not dropped."""
    from mplmm import predict
    from mplmm.train import TrainConfig, train

    ds = load_dataset(extracted.path, verbose=False)
    res = train(TrainConfig(model="mult", model_config=dict(d=8, num_heads=2, layers=1), epochs=1, progress=False,
                            protocol="observed"), ds, tmp_path / "run")
    model = load_model(tmp_path / "run" / "best.pt")
    pred = predict(model, extracted.path).set_index("id")
    assert len(pred) == 9  # the file that is no video still has its transcript: a text-only sample
    assert pred.at["no_face", "present"] == "text+audio"
    assert pred.at["silent", "present"] == "text+vision"
    assert pred.at["no_transcript", "present"] == "audio+vision"
    assert pred.at["not_video", "present"] == "text"
    assert pred.at["face_speech", "mode_name"] != pred.at["no_face", "mode_name"]
    patterns = {r["pattern"] for r in res.metrics["by_pattern"]["test"]}
    assert len(patterns) >= 2


def test_checkpoint_refuses_features_made_differently(clips, extracted, tmp_path):
    from mplmm import predict
    from mplmm.extract import extract
    from mplmm.train import TrainConfig, train

    folder, transcripts, encoder = clips
    ds = load_dataset(extracted.path, verbose=False)
    train(TrainConfig(model="mult", model_config=dict(d=8, num_heads=2, layers=1), epochs=1, progress=False),
          ds, tmp_path / "run")
    model = load_model(tmp_path / "run" / "best.pt")
    other = extract(folder, tmp_path / "other.npz", transcripts, text_model=encoder, progress=False,
                    vad_threshold=0.6)
    assert other.dataset.dims == ds.dims  # same shapes: only the record tells them apart
    with pytest.raises(CheckpointError) as err:
        predict(model, other.path)
    msg = str(err.value)
    assert "audio features expected" in msg and "vad_threshold=0.5" in msg and "vad_threshold=0.6" in msg
    assert "\n" not in msg


def test_embedding_features_from_a_torchscript_model(clips, tmp_path):
    import torch

    from mplmm.extract import extract

    folder, transcripts, encoder = clips
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    path = tmp_path / "enc.pt"
    torch.jit.trace(net.eval(), torch.zeros(1, 3, 64, 64)).save(str(path))
    res = extract(folder, tmp_path / "emb.npz", transcripts, text_model="none", progress=False,
                  vision_features="embedding", vision_model=str(path))
    assert res.dataset.dims[2] == 4 + 4
    assert res.dataset.features["vision"]["settings"]["features"] == "geometry+embedding"
    rep = res.report.set_index("id")
    assert rep.at["face_speech", "text"].startswith("absent: no text model")
    assert "not_video" not in set(res.dataset["test"].ids.tolist())  # nothing extracted: left out, reported
    assert rep.at["not_video", "status"] == "failed"


def test_cli_extract_prints_the_summary(clips, tmp_path, capsys):
    folder, transcripts, encoder = clips
    rc = cli_main(["extract", str(folder), "--transcripts", str(transcripts), "--text_model", encoder,
                   "--out", str(tmp_path / "cli.npz"), "--quiet", "--audio_features", "compare"])
    out = capsys.readouterr().out
    assert rc == 0 and "9 clips" in out and "extract_report.csv" in out
    assert load_dataset(tmp_path / "cli.npz", verbose=False).dims[1] == 65  # ComParE LLDs


def test_bad_input_is_one_line(clips, tmp_path, capsys):
    from mplmm.extract import extract
    from mplmm.extract.inputs import list_clips

    folder, transcripts, encoder = clips
    with pytest.raises(ConfigError, match="unknown key 'fpss'"):
        extract(folder, tmp_path / "x.npz", fpss=3)
    with pytest.raises(ConfigError, match="vision_model"):
        extract(folder, tmp_path / "x.npz", vision_features="embedding")
    with pytest.raises(DataError, match="no clips"):
        list_clips(tmp_path)
    bad = tmp_path / "t.csv"
    pd.DataFrame([{"id": "nope", "text": "hello"}]).to_csv(bad, index=False)
    with pytest.raises(DataError, match="'nope' has no clip"):
        list_clips(folder, bad)
    with pytest.raises(ConfigError, match="text_model"):
        extract(folder, tmp_path / "x.npz", text_model=str(tmp_path / "no_such_model"), progress=False)
    rc = cli_main(["extract", str(folder), "--out", str(tmp_path / "x.csv"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: ") and ".npz" in err[-1]


def test_missing_extra_is_one_line(monkeypatch):
    import mplmm.extract.pipeline as P

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "opensmile" else real(name, *a))
    with pytest.raises(UserError, match=r"pip install -e '\.\[extract\]' \(missing: opensmile\)"):
        P.require_extras()


def test_a_csv_of_paths_and_an_interrupted_run_continue_from_the_cache(clips, tmp_path):
    """Three clips first (as if the run had stopped there), then all of them: only the other six are extracted."""
    from mplmm.extract import extract

    folder, transcripts, encoder = clips
    table = pd.read_csv(transcripts, keep_default_na=False)
    table["path"] = [str(folder / f"{i}.mp4") for i in table["id"]]
    first = tmp_path / "first.csv"
    table.head(3).drop(columns=["split", "label"]).to_csv(first, index=False)
    cache = str(tmp_path / "cache")
    part = extract(first, tmp_path / "part.npz", text_model=encoder, progress=False, cache=cache)
    assert len(part.report) == 3 and part.dataset.split_names == ["unsplit"]  # no split/label: for prediction
    every = tmp_path / "every.csv"
    table.to_csv(every, index=False)
    full = extract(every, tmp_path / "full.npz", text_model=encoder, progress=False, cache=cache)
    assert full.report["cached"].sum() == 3 and len(full.report) == 9
    assert sorted(full.dataset.split_names) == ["test", "train", "valid"]


def test_loading_the_vad_keeps_the_process_threads():
    """silero-vad sets torch to one thread when imported; extraction puts the setting back (training in the same
    process, e.g. a notebook kernel, keeps its threads)."""
    import subprocess
    import sys

    _need_tools()
    code = ("import torch; torch.set_num_threads(2); from mplmm.extract.audio import _load_vad; _load_vad(); "
            "print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "2"


def test_string_labels_become_classes(clips, tmp_path):
    from mplmm.extract import extract

    folder, transcripts, encoder = clips
    table = pd.read_csv(transcripts, keep_default_na=False)
    table["label"] = ["positive" if float(v) > 0 else "negative" for v in table["label"]]
    path = tmp_path / "classes.csv"
    table.to_csv(path, index=False)
    res = extract(folder, tmp_path / "cls.npz", path, text_model=encoder, progress=False, cache=str(tmp_path / "c"))
    ds = load_dataset(res.path, verbose=False)
    assert ds.task == "classification" and sorted(ds.class_names) == ["negative", "positive"]
