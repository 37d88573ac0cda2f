"""Device-independent parts of the CUDA work, on CPU: random states in checkpoints, runtime settings and the runtime
block of metrics.json, device rules chosen for CUDA, the training loop's deferred finiteness check, ``--amp`` flags."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from mplmm.checkpoint import read_checkpoint, save_checkpoint
from mplmm.cli import main as cli_main
from mplmm.data import load_dataset
from mplmm.evaluate import evaluate_model
from mplmm.missing import MissingSpec
from mplmm.models import create_model
from mplmm.models.mplmm import masked_generation
from mplmm.models.transformer import offset_causal_mask, padded_head_width
from mplmm.train import FINITE_CHECK_STEPS, TrainConfig, _check_finite, train
from mplmm.utils import rng_state, runtime_info, runtime_settings, set_rng_state

SMALL = {"d": 12, "num_heads": 3, "layers": 1}


@pytest.fixture(scope="module")
def ds():
    return load_dataset("synthetic", seq_lens=(4, 6, 6), sizes=(48, 16, 24), verbose=False)


def _draws() -> tuple:
    return torch.rand(3), random.random(), np.random.rand(2)


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    model = create_model("mult", dims=(3, 3, 3), seq_lens=(2, 2, 2), **SMALL)
    torch.manual_seed(1), random.seed(2), np.random.seed(3)
    random.gauss(0, 1)  # Python caches a second Gaussian: part of its state
    save_checkpoint(tmp_path / "c.pt", model, rng=rng_state("cpu"))
    expected = _draws()
    _draws()
    set_rng_state(read_checkpoint(tmp_path / "c.pt")["rng"])  # read_checkpoint loads with weights_only=True
    got = _draws()
    assert torch.equal(got[0], expected[0]) and got[1] == expected[1] and np.array_equal(got[2], expected[2])


def test_resume_from_a_checkpoint_with_only_the_old_torch_rng_key(ds, tmp_path):
    """Checkpoints written before the ``rng`` entry (``torch_rng`` only) still resume, to the same result."""
    cfg = TrainConfig(model="mult", model_config=SMALL, epochs=2, batch_size=16, train_rate=0.5, progress=False)
    full = train(cfg, ds, tmp_path / "full")
    train(TrainConfig(**{**cfg.__dict__, "epochs": 1}), ds, tmp_path / "old")
    last = tmp_path / "old" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    ckpt["torch_rng"] = ckpt.pop("rng")["torch"]
    torch.save(ckpt, last)
    resumed = train(cfg, ds, tmp_path / "old")
    assert list(resumed.history["train_loss"]) == list(full.history["train_loss"])


def test_runtime_settings_apply_and_restore(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cuda.matmul.allow_tf32,
              torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic)
    with runtime_settings(deterministic=True, tf32=True):
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        import os

        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    with runtime_settings(deterministic=False, tf32=False):
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert before == (torch.are_deterministic_algorithms_enabled(), torch.backends.cuda.matmul.allow_tf32,
                      torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic)


def test_runtime_info_cpu_and_faked_cuda(monkeypatch):
    info = runtime_info("cpu", amp=True)
    assert info["type"] == "cpu" and info["precision"] == "fp32" and info["cuda"] is None and not info["tf32"]
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev=None: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda dev=None: (9, 0))
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91000)
    with runtime_settings(deterministic=True, tf32=True):
        info = runtime_info(torch.device("cuda"), amp=True)
    assert info == {"device": "cuda", "type": "cuda", "name": "Fake GPU", "capability": "9.0", "cuda": "12.8",
                    "cudnn": 91000, "precision": "bf16-amp", "tf32": True, "deterministic": True,
                    "cpu_threads": torch.get_num_threads()}


def test_deterministic_training_records_runtime_and_restores_settings(ds, tmp_path):
    import json

    cfg = TrainConfig(model="mult", model_config=SMALL, epochs=1, batch_size=16, progress=False, deterministic=True)
    res = train(cfg, ds, tmp_path)
    runtime = json.loads((tmp_path / "metrics.json").read_text())["runtime"]
    assert runtime["type"] == "cpu" and runtime["deterministic"] and runtime["precision"] == "fp32"
    assert res.metrics["config"]["deterministic"] and not torch.are_deterministic_algorithms_enabled()


def test_device_rules_chosen_for_cuda():
    assert [padded_head_width(w, "cuda") for w in (6, 12, 8, 20)] == [8, 16, 8, 24]
    assert [padded_head_width(w, "cpu") for w in (6, 12, 20)] == [16, 16, 20]
    assert padded_head_width(6, "mps") == 6
    assert masked_generation(torch.device("cuda")) and not masked_generation(torch.device("cpu"))
    assert offset_causal_mask(3, 5) is offset_causal_mask(3, 5, torch.device("cpu"))  # cached per device


def test_nonfinite_loss_is_a_clear_error(ds):
    _check_finite(torch.tensor(3.0, dtype=torch.float64), 4, 1)
    with pytest.raises(FloatingPointError, match="epoch 2: training loss became inf; lower --lr"):
        _check_finite(torch.tensor(float("inf")), 4, 2)
    assert FINITE_CHECK_STEPS > 1
    bad = load_dataset("synthetic", seq_lens=(4, 6, 6), sizes=(48, 16, 24), verbose=False)
    bad["train"].audio[:] = np.inf
    cfg = TrainConfig(model="mult", model_config=SMALL, epochs=1, batch_size=16, progress=False)
    with pytest.raises(FloatingPointError, match="epoch 1: training loss became nan"):
        train(cfg, bad)


def test_amp_runs_bf16_on_cpu_only_where_it_is_native(ds, tmp_path, capsys, monkeypatch):
    import mplmm.utils as U

    cfg = TrainConfig(model="mult", model_config=SMALL, epochs=1, batch_size=16, progress=False)
    res = train(cfg, ds, tmp_path)
    spec = MissingSpec("modality", 0.5, 0)
    fp32 = evaluate_model(res.model, ds, spec, device="cpu")
    monkeypatch.setattr(U, "native_bf16", lambda: False)  # a CPU without native bf16: --amp changes nothing
    assert not U.amp_active("cpu", True) and evaluate_model(res.model, ds, spec, device="cpu", amp=True) == fp32
    monkeypatch.setattr(U, "native_bf16", lambda: True)  # AVX512-BF16 / AMX: inference under bf16 autocast
    bf16 = evaluate_model(res.model, ds, spec, device="cpu", amp=True)
    assert U.amp_active("cpu", True) and bf16["MAE"] != fp32["MAE"] and abs(bf16["MAE"] - fp32["MAE"]) < 0.05
    assert not U.amp_active("cpu", False)
    common = ["--dataset", "synthetic", "--seq_lens", "4", "6", "6", "--size", "0.05", "--device", "cpu", "--amp"]
    assert cli_main(["evaluate", str(tmp_path / "best.pt"), *common]) == 0
    assert cli_main(["curve", str(tmp_path / "best.pt"), *common, "--rates", "0", "1", "--mask_seeds", "0",
                     "--quiet", "--out", str(tmp_path / "curve")]) == 0
    assert (tmp_path / "curve" / "curve.csv").is_file()
