"""Training loop: pretrain → prompt-tune, selection on validation, report on test, checkpoints, resume, CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mplmm.checkpoint import CheckpointError, load_model, read_checkpoint
from mplmm.cli import main as cli_main
from mplmm.data import load_dataset
from mplmm.losses import loss_target
from mplmm.train import TrainConfig, train

SMALL = {"d": 12, "num_heads": 3, "layers": 1}
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mosi_bclstm"


@pytest.fixture(scope="module")
def ds():
    return load_dataset("synthetic", seq_lens=(4, 6, 6), sizes=(64, 24, 32), verbose=False)


@pytest.fixture(scope="module")
def pretrained(ds, tmp_path_factory):
    out = tmp_path_factory.mktemp("pre")
    train(TrainConfig(model="mult", model_config=SMALL, epochs=2, batch_size=16, progress=False), ds, out)
    return out / "best.pt"


def test_regression_target_is_column():
    """Reference bug B4: (B,) targets against (B,1) predictions broadcast to (B,B) in L1Loss."""
    y = torch.tensor([0.5, -1.0, 2.0])
    assert loss_target(y, "regression").shape == (3, 1)
    assert loss_target(torch.tensor([1, 2]), "classification").shape == (2,)


def test_pretrain_then_prompt_tune(ds, pretrained, tmp_path):
    ckpt = torch.load(pretrained, weights_only=True)
    assert ckpt["model_name"] == "mult" and "state_dict" in ckpt
    cfg = TrainConfig(model="mplmm", model_config={"prompt_length": 4}, epochs=2, batch_size=16,
                      train_rate=0.7, test_rate=0.3, pretrained=str(pretrained), progress=False)
    res = train(cfg, ds, tmp_path)
    m = res.metrics
    assert m["parameters"]["frozen"] > 0 and m["parameters"]["trainable"] < m["parameters"]["total"]
    assert m["transfer"]["copied"] > 0
    assert m["eval_spec"]["rate"] == 0.3 and m["config"]["train_rate"] == 0.7
    assert 0 <= m["test"]["Non0_acc_2"] <= 1 and m["test"]["MAE"] > 0
    assert m["provenance"]["torch"] == torch.__version__ and m["provenance"]["git_commit"]
    frac = m["eval_masks"]["test"]["missing_sample_fraction"]
    assert 0 < frac < 1
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test"] == pytest.approx(m["test"])
    # selection on validation: best epoch = argmin of the validation loss
    hist = res.history
    assert m["best_epoch"] == int(hist.loc[hist["valid_loss"].idxmin(), "epoch"])
    # frozen backbone unchanged by training
    before = read_checkpoint(pretrained)["state_dict"]
    after = res.model.state_dict()
    key = "backbone.trans_l_mem.layers.0.fc1.weight"
    assert torch.equal(before[key], after[key])
    # the best checkpoint reloads (weights_only) into an equivalent model
    model = load_model(tmp_path / "best.pt")
    ck = model.checkpoint
    assert ck["test"] == pytest.approx(m["test"])
    assert (tmp_path / "masks_test.npz").is_file()


def test_resume_continues_where_it_stopped(ds, tmp_path):
    cfg = TrainConfig(model="mult", model_config=SMALL, epochs=3, batch_size=16, progress=False, train_rate=0.5)
    full = train(cfg, ds, tmp_path / "full")
    part_cfg = TrainConfig(**{**cfg.__dict__, "epochs": 2})
    train(part_cfg, ds, tmp_path / "resumed")
    resumed = train(cfg, ds, tmp_path / "resumed")  # picks up last.pt (epoch 2) and runs epoch 3
    assert list(resumed.history["epoch"]) == [1, 2, 3]
    np.testing.assert_allclose(resumed.history["train_loss"], full.history["train_loss"], rtol=1e-5)
    assert resumed.metrics["test"] == pytest.approx(full.metrics["test"], rel=1e-5)


def test_checkpoint_config_mismatch_is_a_clear_error(ds, tmp_path):
    train(TrainConfig(model="mult", model_config=SMALL, epochs=1, batch_size=16, progress=False), ds, tmp_path)
    other = TrainConfig(model="mult", model_config={**SMALL, "layers": 2}, epochs=2, batch_size=16, progress=False)
    with pytest.raises(CheckpointError, match="layers=1.*layers=2"):
        train(other, ds, tmp_path)


def test_bad_checkpoint_files(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        read_checkpoint(bad)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="format"):
        read_checkpoint(tmp_path / "other.pt")


def test_prompt_tune_from_non_mult_checkpoint_fails(ds, pretrained, tmp_path):
    train(TrainConfig(model="mplmm", model_config={"prompt_length": 2}, epochs=1, batch_size=16,
                      pretrained=str(pretrained), progress=False), ds, tmp_path / "a")
    cfg = TrainConfig(model="mplmm", epochs=1, pretrained=str(tmp_path / "a" / "best.pt"), progress=False)
    with pytest.raises(CheckpointError, match="'mult' checkpoint"):
        train(cfg, ds, tmp_path / "b")


def test_classification_task(tmp_path):
    ds = load_dataset("synthetic-iemocap", seq_lens=(3, 5, 4), sizes=(48, 16, 24), verbose=False)
    res = train(TrainConfig(model="mult", model_config=SMALL, epochs=1, batch_size=16, progress=False), ds)
    assert {"Acc", "F1_weighted", "UAR"} <= set(res.metrics["test"])


def test_cli_train_evaluate_curve_on_real_mosi(tmp_path, capsys):
    if not SHARED.is_dir():
        pytest.skip(f"shared real data not found at {SHARED}")
    pre, tuned = tmp_path / "pre", tmp_path / "tuned"
    small = ["--proj_dim", "12", "--num_heads", "3", "--nlevels", "1", "--quiet"]
    assert cli_main(["train", "--data_path", str(SHARED), "--num_epochs", "1", "--out", str(pre)] + small) == 0
    assert cli_main(["train", "--data_path", str(SHARED), "--pretrained_model", str(pre / "best.pt"),
                     "--drop_rate", "0.7", "--num_epochs", "1", "--out", str(tuned), "--quiet"]) == 0
    metrics = json.loads((tuned / "metrics.json").read_text())
    assert metrics["model"] == "mplmm" and metrics["dataset"]["sizes"]["test"] == 752
    assert cli_main(["evaluate", str(tuned / "best.pt"), "--data_path", str(SHARED), "--mode", "0"]) == 0
    assert cli_main(["curve", str(tuned / "best.pt"), "--data_path", str(SHARED), "--rates", "0", "0.5", "1",
                     "--mask_seeds", "0", "1", "--out", str(tmp_path / "curve"), "--quiet"]) == 0
    curve = json.loads((tmp_path / "curve" / "curve.json").read_text())
    assert len(curve["curve"]) == 6 and len(curve["per_mode"]) == 7
    assert cli_main(["train", "--data_path", str(tmp_path / "missing.pkl")]) == 2
    assert "missing.pkl" in capsys.readouterr().err


def _registry_names():
    from mplmm.models import available_models

    return available_models()


@pytest.mark.parametrize("name", _registry_names())
def test_every_registered_model_trains_through_the_shared_loop(name, ds, pretrained, tmp_path):
    from mplmm.models import model_class

    cls = model_class(name)
    cfg = TrainConfig(model=name, epochs=1, batch_size=16, train_rate=0.7, progress=False,
                      pretrained=str(pretrained) if cls.uses_pretrained_backbone else None,
                      model_config={} if cls.uses_pretrained_backbone or name != "mult" else SMALL)
    if name in ("mult_zero", "mult_dropout"):
        cfg.model_config = SMALL
    res = train(cfg, ds, tmp_path)
    assert np.isfinite(res.history["train_loss"]).all()
    assert np.isfinite(res.metrics["test"]["MAE"])
    load_model(tmp_path / "best.pt")  # rebuilds from state_dict + config


def test_frozen_backbone_runs_in_inference_mode_unless_asked(pretrained):
    from mplmm.models import create_model

    ck = read_checkpoint(pretrained)
    for frozen_dropout, expected in ((False, False), (True, True)):
        m = create_model("mplmm", dims=(300, 5, 20), seq_lens=(4, 6, 6), frozen_dropout=frozen_dropout, **SMALL)
        m.load_pretrained_backbone(ck["state_dict"], ck["model_config"])
        m.train()
        assert m.training and m.backbone.trans_l_mem.training is expected
        assert m.backbone.training  # trainable projections/head keep the backbone module itself in train mode


def test_compute_covers_the_whole_pipeline(ds, pretrained, tmp_path):
    """A prompt method's recorded cost adds its backbone's pre-training to its own epochs and seconds."""
    pre = read_checkpoint(pretrained)["compute"]
    assert pre["epochs"] == 2 and pre["backbone"] is None and pre["total_epochs"] == 2 and pre["seconds"] > 0
    cfg = TrainConfig(model="mplmm", model_config={"prompt_length": 2}, epochs=3, batch_size=16, train_rate=0.5,
                      pretrained=str(pretrained), progress=False)
    res = train(cfg, ds, tmp_path)
    c = res.metrics["compute"]
    assert c["epochs"] == 3 and c["backbone"] == {"epochs": 2, "seconds": pytest.approx(pre["total_seconds"])}
    assert c["total_epochs"] == 5
    assert c["total_seconds"] == pytest.approx(c["seconds"] + pre["total_seconds"], abs=2e-3)
    assert c["seconds"] == pytest.approx(float(res.history["seconds"].sum()), abs=2e-3)
    assert read_checkpoint(tmp_path / "best.pt")["compute"] == c
    from mplmm.train import training_compute  # a backbone that predates the record: the total is unknown, not low
    old = training_compute([{"seconds": 1.0}], {"from": "old.pt", "compute": None})
    assert old["epochs"] == 1 and old["total_epochs"] is None and old["total_seconds"] is None
