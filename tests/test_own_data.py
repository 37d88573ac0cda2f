"""Own data (issue "any label scale, any task, a clear error for every mismatch or typo").

Fixtures are built to the ORIGINAL layouts (tests/own_data.py): MulT pickles with (N, 3) byte-string ids, MMSA pickles
with list-valued ids / raw_text / length lists, raw per-utterance arrays + a labels CSV.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import own_data as O  # noqa: E402

from mplmm import metrics as M  # noqa: E402
from mplmm.checkpoint import CheckpointError, check_model_fits, load_model  # noqa: E402
from mplmm.cli import main as cli_main  # noqa: E402
from mplmm.data import DataError, from_arrays, label_options, load_dataset, save_dataset  # noqa: E402
from mplmm.errors import ConfigError, UserError  # noqa: E402
from mplmm.models import create_model  # noqa: E402
from mplmm.train import TrainConfig, train  # noqa: E402

EMOTIONS = ["joy", "anger", "fear", "sadness", "disgust", "surprise"]
TINY = ["--nlevels", "1", "--proj_dim", "12", "--num_heads", "3", "--batch_size", "16", "--quiet"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("own")
    return {"r5": O.mult_pickle(d / "ratings.pkl", "1-5"), "r7": O.mult_pickle(d / "ratings7.pkl", "1-7"),
            "iemo": O.mult_pickle(d / "iemocap_like.pkl", "iemocap"),
            "emo": O.mmsa_pickle(d / "emotions6.pkl", classes=EMOTIONS), "mmsa": O.mmsa_pickle(d / "clips.pkl")}


def _one_line_exit2(capsys, argv, *fragments):
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and err[-1].startswith("error: ") and "Traceback" not in "\n".join(err)
    for f in fragments:
        assert f in err[-1], (f, err[-1])
    return err[-1]


# ------------------------------------------------------------------------------------------------- readers / labels
def test_mult_pickle_ratings_1_to_5_with_mult_ids(files, capsys):
    ds = load_dataset(files["r5"])
    line = capsys.readouterr().err
    assert "label range (1, 5) inferred from train, threshold 3" in line
    assert ds.task == "regression" and ds.metric_family == "regression" and ds.dims == (8, 5, 36)
    assert ds.seq_lens == (6, 10, 20) and ds.label_range == (1.0, 5.0) and ds.threshold == 3.0
    assert ds["train"].ids[4] == "vidtrain001_1_6.0"  # MulT's (N, 3) byte-string fields joined
    names = M.dataset_metrics(ds, ds["test"].labels[:, None], ds["test"].labels)
    assert set(names) == {"Acc_2", "F1_score", "Acc_5", "MAE", "Corr"} and M.headline_metric(ds) == "Acc_2"


def test_scale_1_to_7_and_overrides(files):
    ds = load_dataset(files["r7"], verbose=False)
    assert ds.label_range == (1.0, 7.0) and ds.threshold == 4.0
    assert "Acc_7" in M.dataset_metrics(ds, ds["test"].labels[:, None], ds["test"].labels)
    ds2 = load_dataset(files["r7"], label_range=(0, 10), threshold=5, verbose=False)
    assert ds2.label_range == (0.0, 10.0) and ds2.threshold == 5.0 and not ds2.label_range_inferred
    assert "Acc_11" in M.dataset_metrics(ds2, ds2["test"].labels[:, None], ds2["test"].labels)
    with pytest.raises(DataError, match=r"labels outside label_range \(1, 6\)"):
        load_dataset(files["r7"], label_range=(1, 6), verbose=False)
    with pytest.raises(ConfigError, match="threshold 9 lies outside the label range"):
        load_dataset(files["r7"], threshold=9, verbose=False)
    with pytest.raises(ConfigError, match="threshold applies to the generic 'regression'"):
        load_dataset(files["mmsa"], threshold=0.5, metric_family="mosi", verbose=False)


def test_mmsa_lists_are_read_and_family_recognised_by_labels(files):
    ds = load_dataset(files["mmsa"], verbose=False)
    assert ds.format == "mmsa_pickle" and ds.metric_family == "mosi" and ds.label_range == (-3.0, 3.0)
    assert ds["valid"].ids[1] == "valid_clip1$_$1" and set(ds["train"].lengths) == {"audio", "vision"}


def test_six_classes_from_string_labels(files):
    ds = load_dataset(files["emo"], verbose=False)
    assert ds.task == "classification" and ds.metric_family == "classification"
    assert ds.class_names == sorted(EMOTIONS) and ds.output_dim == 6
    raw = __import__("pickle").loads(files["emo"].read_bytes())
    assert [ds.class_names[i] for i in ds["test"].labels] == raw["test"]["classification_labels"]
    ordered = load_dataset(files["emo"], class_names=EMOTIONS, verbose=False)
    assert ordered.class_names == EMOTIONS and ordered["train"].labels[0] == EMOTIONS.index(
        raw["train"]["classification_labels"][0])
    with pytest.raises(DataError, match=r"labels \['surprise'\] are not among the class names"):
        load_dataset(files["emo"], class_names=EMOTIONS[:5], verbose=False)
    with pytest.raises(ConfigError, match="label_range/threshold apply to regression"):
        load_dataset(files["emo"], label_range=(1, 5), verbose=False)


def test_mult_iemocap_reports_mult_per_emotion_metrics(files):
    ds = load_dataset(files["iemo"], verbose=False)
    assert ds.metric_family == "iemocap_mult" and ds.class_names == ["neutral", "happy", "sad", "angry"]
    rng = np.random.default_rng(1)
    logits, y = rng.normal(size=(40, 4)), rng.integers(0, 4, 40)
    got = M.dataset_metrics(ds, logits, y)
    pred = logits.argmax(1)
    for c, name in enumerate(ds.class_names):  # MulT's eval_iemocap: per emotion, binary acc + weighted F1
        t, p = (y == c).astype(int), (pred == c).astype(int)
        f1 = []
        for k in (0, 1):
            tp, fp, fn = np.sum((t == k) & (p == k)), np.sum((t != k) & (p == k)), np.sum((t == k) & (p != k))
            f1.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
        w = np.bincount(t, minlength=2) / len(t)
        assert got[f"Binary_acc_{name}"] == pytest.approx(np.mean(t == p))
        assert got[f"Binary_F1_{name}"] == pytest.approx(float(np.dot(w, f1)))
    assert got["Acc"] == pytest.approx(np.mean(pred == y))


def test_generic_regression_metrics_against_naive():
    rng = np.random.default_rng(0)
    t = rng.integers(1, 6, 200).astype(float)
    p = t + rng.normal(scale=1.2, size=200)
    got = M.compute_metrics("regression", p, t, threshold=3.0, label_range=(1, 5))
    keep = t != 3
    assert got["Acc_2"] == pytest.approx(np.mean((p[keep] > 3) == (t[keep] > 3)))
    assert got["Acc_5"] == pytest.approx(np.mean(np.round(np.clip(p, 1, 5)) == t))
    assert got["MAE"] == pytest.approx(np.mean(np.abs(p - t)))
    assert got["Corr"] == pytest.approx(np.corrcoef(p, t)[0, 1])
    assert "Acc_2" in M.compute_metrics("regression", p, t, label_range=(0.5, 4.5)) and \
        not any(k.startswith("Acc_") and k != "Acc_2" for k in M.compute_metrics("regression", p, t,
                                                                                   label_range=(0.5, 4.5)))
    assert M.default_threshold((-2, 2)) == 0 and M.default_threshold((1, 7)) == 4
    assert M.integer_levels((0, 100)) is None and M.integer_levels((1, 7)) == 7


# ------------------------------------------------------------------------------------------------------ own arrays
def test_from_arrays_pads_ragged_sequences_and_records_lengths():
    rng = np.random.default_rng(0)
    lens = [3, 1, 7, 2, 5, 4]
    text = [rng.normal(size=(t, 4)) for t in lens]
    audio = [rng.normal(size=3) for _ in lens]  # utterance-level (D,)
    vision = [rng.normal(size=(t + 1, 2)) for t in lens]
    ds = from_arrays(text, audio, vision, ["a", "b", "a", "c", "b", "a"],
                                       ["train", "train", "train", "val", "test", "test"], ids=list("uvwxyz"))
    assert ds.task == "classification" and ds.class_names == ["a", "b", "c"] and ds.seq_lens == (7, 1, 8)
    tr = ds["train"]
    assert tr.lengths["text"].tolist() == [3, 1, 7] and tr.lengths["vision"].tolist() == [4, 2, 8]
    np.testing.assert_allclose(tr.text[0, :3], text[0].astype(np.float32))
    assert (tr.text[0, 3:] == 0).all() and (tr.text[1, 1:] == 0).all()
    assert ds["valid"].ids.tolist() == ["x"]
    with pytest.raises(DataError, match="feature dims differ: item 0 has D=4 but item 1"):
        from_arrays([text[0], rng.normal(size=(2, 5)), text[2]], audio[:3], vision[:3],
                                      [1, 2, 3], ["train", "valid", "test"])
    with pytest.raises(DataError, match=r"no utterances in split\(s\) \['valid'\]"):
        from_arrays(text[:2], audio[:2], vision[:2], [1, 2], ["train", "test"])
    with pytest.raises(DataError, match="split 'holdout' is not one of train, valid, test"):
        from_arrays(text[:3], audio[:3], vision[:3], [1, 2, 3], ["train", "valid", "holdout"])


def test_import_cli_end_to_end(tmp_path, capsys):
    csv, srcs = O.raw_arrays(tmp_path / "raw")
    out = tmp_path / "mine.npz"
    argv = ["import", "--labels", str(csv), "--text", str(srcs["text"]), "--audio", str(srcs["audio"]),
            "--vision", str(srcs["vision"]), "--out", str(out)]
    assert cli_main(argv) == 0
    assert "lengths recorded" in capsys.readouterr().out
    ds = load_dataset(out, verbose=False)
    assert ds.metric_family == "regression" and ds.label_range == (1.0, 7.0) and ds.threshold == 4.0
    assert ds.seq_lens[1] == 1 and ds["train"].lengths["text"].max() <= ds.seq_lens[0]
    assert ds["test"].ids[0] == "te000" and len(ds["train"]) == O.SIZES["train"]
    one = np.load(srcs["text"] / "te000.npy")
    np.testing.assert_allclose(ds["test"].text[0, : len(one)], one)
    (srcs["text"] / "te001.npy").unlink()  # no text recorded for te001: absent, not an error
    np.save(srcs["vision"] / "te002.npy", np.zeros((0, ds.dims[2])))  # an empty array: absent too
    with np.load(srcs["audio"]) as z:
        audio = {k: z[k] for k in z.files if k != "te003"}  # te003: no audio entry
    np.savez(srcs["audio"], **audio)
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "text: 1 of 80 ids absent" in printed and "vision: 1 of 80 ids absent" in printed
    ds = load_dataset(out, verbose=False)
    test = ds["test"]
    assert test.present[1].tolist() == [False, True, True] and test.present[2].tolist() == [True, True, False]
    assert test.present[3].tolist() == [True, False, True] and test.present[4:].all()
    assert (test.text[1] == 0).all() and test.lengths["text"][1] == 0 and test.lengths["vision"][2] == 0
    for m in ("text", "vision"):  # te003 has no modality at all now: one line naming it
        (srcs[m] / "te003.npy").unlink()
    _one_line_exit2(capsys, argv, "1 ids have no features in any modality, e.g. 'te003'")
    assert cli_main(argv + ["--drop_empty"]) == 0
    assert len(load_dataset(out, verbose=False)["test"]) == len(test) - 1


def test_import_classes_and_bad_csv(tmp_path, capsys):
    csv, srcs = O.raw_arrays(tmp_path / "raw", classes=EMOTIONS)
    out = tmp_path / "emo.npz"
    base = ["--text", str(srcs["text"]), "--audio", str(srcs["audio"]), "--vision", str(srcs["vision"]),
            "--out", str(out)]
    assert cli_main(["import", "--labels", str(csv), *base, "--class_names", ",".join(EMOTIONS)]) == 0
    ds = load_dataset(out, verbose=False)
    assert ds.class_names == EMOTIONS and ds.metric_family == "classification"
    bad = tmp_path / "bad.csv"
    bad.write_text("id,fold,label\na,train,1\n")
    _one_line_exit2(capsys, ["import", "--labels", str(bad), *base], "missing columns ['split']")


# ------------------------------------------------------------------------------------------- end to end + mismatches
@pytest.fixture(scope="module")
def trained(files, tmp_path_factory):
    """CLI pretrain -> prompt-tune on the 1-5 ratings and on the 6 string classes (tiny, 1 epoch)."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for key in ("r5", "emo"):
        pre, tuned = root / f"{key}_mult", root / f"{key}_mplmm"
        assert cli_main(["train", "--data_path", str(files[key]), "--num_epochs", "1", "--out", str(pre)] + TINY) == 0
        assert cli_main(["train", "--data_path", str(files[key]), "--pretrained_model", str(pre / "best.pt"),
                         "--drop_rate", "0.7", "--num_epochs", "1", "--out", str(tuned)] + TINY) == 0
        out[key] = tuned / "best.pt"
    return out


def test_pipeline_headline_follows_family(files, trained, tmp_path):
    for key, metric in (("r5", "Acc_2"), ("emo", "Acc")):
        saved = json.loads((trained[key].parent / "metrics.json").read_text())
        assert saved["primary_metric"] == metric and saved["dataset"]["metric_family"] in ("regression",
                                                                                            "classification")
        assert cli_main(["curve", str(trained[key]), "--data_path", str(files[key]), "--rates", "0", "1",
                         "--mask_seeds", "0", "--out", str(tmp_path / key), "--quiet"]) == 0
        curve = json.loads((tmp_path / key / "curve.json").read_text())
        assert curve["metric"] == metric and 0 <= curve["auc"] <= 1
    emo = json.loads((trained["emo"].parent / "metrics.json").read_text())
    assert {f"F1_{c}" for c in EMOTIONS} <= set(emo["test"]) and emo["dataset"]["class_names"] == sorted(EMOTIONS)


def test_checkpoint_that_does_not_fit_the_data(files, trained, capsys):
    ck = str(trained["r5"])
    _one_line_exit2(capsys, ["evaluate", ck, "--dataset", "synthetic"], ck, "dataset 'synthetic'",
                    "feature dims (text, audio, vision) expected (8, 5, 36)", "found (300, 5, 20)")
    _one_line_exit2(capsys, ["curve", ck, "--data_path", str(files["emo"])], "task expected regression",
                    "found classification")
    _one_line_exit2(capsys, ["evaluate", str(trained["emo"]), "--data_path", str(files["iemo"])],
                    "number of outputs", "expected 6", "found 4")
    emo = load_dataset(files["emo"], verbose=False)
    with pytest.raises(CheckpointError, match="class names expected"):
        load_model(trained["emo"], data=load_dataset(files["emo"], class_names=EMOTIONS, verbose=False))
    with pytest.raises(CheckpointError, match="sequence lengths .* --seq_lens"):
        load_model(trained["emo"], data=load_dataset(files["emo"], seq_lens=(6, 10, 11), verbose=False))
    model = load_model(trained["emo"], data=emo)  # fits: no error
    with pytest.raises(CheckpointError, match="does not fit dataset 'ratings'"):
        check_model_fits(model, load_dataset(files["r5"], verbose=False))
    from mplmm_widgets import build_missing_explorer_panel

    with pytest.raises(CheckpointError, match="task expected classification .*, found regression"):
        build_missing_explorer_panel(model, load_dataset(files["r5"], verbose=False))


def test_prompt_tuning_from_a_backbone_of_other_dims_stays_allowed(files, trained, tmp_path):
    ds = load_dataset(files["r5"], verbose=False)  # backbone pre-trained on the 6-class data (dims 8/5/7)
    pre = trained["emo"].parent.parent / "emo_mult" / "best.pt"
    cfg = TrainConfig(model="mplmm", epochs=1, batch_size=16, train_rate=0.7, pretrained=str(pre), progress=False,
                      model_config={"prompt_length": 2})
    res = train(cfg, ds, tmp_path)
    assert res.metrics["transfer"]["copied"] > 0 and res.metrics["primary_metric"] == "Acc_2"


# ----------------------------------------------------------------------------------------------- strict configuration
def test_unknown_model_keys_everywhere(capsys, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'layrs' \(did you mean 'layers'\?\); accepted: .*layers"):
        create_model("mult", dims=(3, 3, 3), seq_lens=(2, 2, 2), output_dim=1, layrs=2)
    with pytest.raises(ConfigError, match="unknown model 'mplm' .*did you mean 'mplmm'"):
        create_model("mplm", dims=(3, 3, 3), seq_lens=(2, 2, 2))
    _one_line_exit2(capsys, ["train", "--model_arg", "prompt_lenght=4", "--model", "mplmm"],
                    "unknown key 'prompt_lenght' (did you mean 'prompt_length'?)")
    with pytest.raises(ConfigError, match=r"model 'mplmm': key 'dims': expected no value \(it comes from the data\)"):
        TrainConfig(model_config={"dims": [1, 2, 3]}).validate()
    grid = {"name": "typo", "output_root": str(tmp_path / "g"), "stages": [
        {"name": "pre", "notebook": "notebooks/01_train.ipynb", "params": {"epochs": 1},
         "grid": {"model_config": [{"layers": 1}, {"layrs": 2}]}}]}
    from mplmm.workbench.batch import GridError, load_grid

    root = Path(__file__).resolve().parents[1]
    with pytest.raises(GridError, match=r"run pre__model_config=.*unknown key 'layrs' \(did you mean 'layers'"):
        load_grid(grid, root=root)


@pytest.mark.parametrize("argv, fragment", [
    (["--batch_size", "0"], "TrainConfig: key 'batch_size': expected an integer >= 1, got 0"),
    (["--num_epochs", "0"], "TrainConfig: key 'epochs': expected an integer >= 1, got 0"),
    (["--lr", "-1"], "TrainConfig: key 'lr': expected a number > 0, got -1.0"),
    (["--drop_rate", "1.5"], "TrainConfig: key 'train_rate': expected a number in [0, 1], got 1.5"),
    (["--test_rate", "-0.1"], "TrainConfig: key 'test_rate': expected a number in [0, 1] or None, got -0.1"),
    (["--model", "mplmm", "--prompt_length", "0"],
     "model 'mplmm': key 'prompt_length': expected an integer >= 1, got 0"),
    (["--num_heads", "4"], "model 'mult': key 'num_heads': expected a divisor of d=30, got 4"),
    (["--optim", "Adamm"], "TrainConfig: key 'optim': expected a torch.optim optimizer"),
    (["--select", "Non0_acc2"], "TrainConfig: key 'select_metric': expected one of loss, "),
    (["--select_metric", "Non0_acc2"], "(did you mean 'Non0_acc_2'?), got 'Non0_acc2'"),
    (["--attn_dropout", "1.2"], "model 'mult': key 'attn_dropout': expected a number in [0, 1), got 1.2"),
    (["--dataset", "mosi"], "--dataset mosi reads the real mosi features: give their file or folder with --data_path"),
])
def test_numeric_flags_are_validated(argv, fragment, capsys, tmp_path):
    out = tmp_path / "run"
    _one_line_exit2(capsys, ["train", "--out", str(out), "--size", "0.02", "--quiet", *argv], fragment)
    assert not (out / "best.pt").exists()


def test_cli_bad_evaluation_flags(trained, files, capsys):
    _one_line_exit2(capsys, ["curve", str(trained["r5"]), "--data_path", str(files["r5"]), "--rates", "0", "1.5"],
                    "rate must be in [0, 1], got 1.5")
    _one_line_exit2(capsys, ["evaluate", str(trained["r5"]), "--data_path", str(files["r5"]), "--label_range", "3",
                             "1"], "label_range: expected finite LO < HI")


def test_a_bug_keeps_its_traceback(monkeypatch):
    import mplmm.cli as cli

    def boom(args):
        raise RuntimeError("a genuine bug")

    monkeypatch.setattr(cli, "cmd_models", boom)
    with pytest.raises(RuntimeError, match="a genuine bug"):
        cli.main(["models"])
    assert issubclass(DataError, UserError) and issubclass(CheckpointError, UserError)
    assert not issubclass(KeyError, UserError)


def test_label_options_for_notebooks_and_grids():
    assert label_options([], float("nan")) == {}
    assert label_options([1, 5], 2.5) == {"label_range": (1.0, 5.0), "threshold": 2.5}
    with pytest.raises(ConfigError, match="label_range: expected two numbers"):
        label_options([1, 2, 3])
    with pytest.raises(ConfigError, match="the synthetic datasets fix their own labels"):
        load_dataset("synthetic", label_range=(1, 5), verbose=False)


def test_saved_dataset_keeps_scale_and_threshold(files, tmp_path):
    ds = load_dataset(files["r7"], threshold=3.5, verbose=False)
    back = load_dataset(save_dataset(ds, tmp_path / "r7.npz"), verbose=False)
    assert back.threshold == 3.5 and back.label_range == (1.0, 7.0) and back.metric_family == "regression"
    assert torch.is_tensor(torch.as_tensor(back["train"].labels))


@pytest.mark.notebook
def test_notebook_with_a_checkpoint_of_other_data_fails_in_one_line(files, trained, tmp_path):
    pm = pytest.importorskip("papermill")
    from mplmm.workbench.batch import ensure_kernel

    root = Path(__file__).resolve().parents[1]
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(root / "notebooks" / "02_robustness.ipynb"), str(tmp_path / "out.ipynb"),
                            kernel_name=ensure_kernel(), progress_bar=False, cwd=str(root),
                            parameters={"checkpoints": [str(trained["r5"])], "dataset": str(files["emo"]),
                                        "output_dir": str(tmp_path / "rob"), "rates": [0.0], "mask_seeds": [0]})
    assert err.value.ename == "CheckpointError"
    assert "does not fit dataset 'emotions6': task expected regression (as trained), found classification" in \
        err.value.evalue and "\n" not in err.value.evalue
