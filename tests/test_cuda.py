"""CUDA against CPU (skipped without CUDA; ``make test-gpu`` runs only these): forward and backward, no host syncs in
a training step, resume equal to an uninterrupted run, evaluation, generation quality, bfloat16 autocast."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mplmm import interpret as I
from mplmm.data import load_dataset
from mplmm.evaluate import evaluate_model
from mplmm.missing import MissingSpec
from mplmm.models import create_model
from mplmm.models.transformer import offset_causal_mask
from mplmm.train import TrainConfig, train
from mplmm.utils import runtime_settings

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CUDA = torch.device("cuda")
SMALL = {"d": 12, "num_heads": 3, "layers": 1}
#: MulT's widths: d = 30 with 5 heads (crossmodal heads of 6, memory heads of 12: padded to 8 and 16 on CUDA)
DIMS, SEQS = (7, 5, 4), (6, 9, 8)


@pytest.fixture(scope="module")
def ds():
    return load_dataset("synthetic", seq_lens=(4, 6, 6), sizes=(64, 24, 32), verbose=False)


@pytest.fixture(scope="module")
def pretrained(ds, tmp_path_factory):
    out = tmp_path_factory.mktemp("pre")
    train(TrainConfig(model="mult", model_config=SMALL, epochs=1, batch_size=16, device="cuda", progress=False), ds,
          out)
    return out / "best.pt"


def _mplmm_pair() -> tuple[torch.nn.Module, torch.nn.Module, list[torch.Tensor], torch.Tensor]:
    torch.manual_seed(0)
    cpu = create_model("mplmm", dims=DIMS, seq_lens=SEQS, d=30, num_heads=5, layers=2, prompt_length=4).eval()
    g = torch.Generator().manual_seed(1)
    x = [torch.randn(14, t, d, generator=g) for d, t in zip(DIMS, SEQS)]
    return cpu, copy.deepcopy(cpu).to(CUDA), x, torch.arange(14) % 7


def test_forward_and_backward_on_cuda_match_cpu():
    """Padded heads (6 → 8, 12 → 16) and the masked generation path on CUDA give CPU's outputs and gradients."""
    cpu, gpu, x, modes = _mplmm_pair()
    with runtime_settings(tf32=False):
        out_c = cpu(*x, modes)
        out_g = gpu(*(t.to(CUDA) for t in x), modes.to(CUDA))
        out_c.pow(2).mean().backward()
        out_g.pow(2).mean().backward()
    assert (out_c - out_g.cpu()).abs().max() < 1e-4
    grads_g = dict(gpu.named_parameters())
    for name, p in cpu.named_parameters():
        if p.grad is not None:
            scale = p.grad.abs().max().clamp_min(1e-3)
            assert ((p.grad - grads_g[name].grad.cpu()).abs().max() / scale) < 1e-3, name


def test_training_step_has_no_host_sync():
    """Forward, backward, clipping and the optimiser step never wait for the GPU (``set_sync_debug_mode``)."""
    _, gpu, x, modes = _mplmm_pair()
    gpu.train()
    x, modes, target = [t.to(CUDA) for t in x], modes.to(CUDA), torch.randn(14, 1, device=CUDA)
    params = [p for p in gpu.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params)
    gpu(*x, modes)  # first call: lazy initialisation and caches outside the checked region
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.l1_loss(gpu(*x, modes), target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 0.8)
            opt.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_masks_cached_on_the_device():
    mask = offset_causal_mask(3, 5, CUDA)
    assert mask.device.type == "cuda" and mask is offset_causal_mask(3, 5, CUDA)


def test_resume_on_cuda_equals_uninterrupted(ds, pretrained, tmp_path):
    """Deterministic prompt tuning with dropout on CUDA: 1 + 1 epochs (resumed from last.pt) = 2 epochs, bit for bit."""
    cfg = TrainConfig(model="mplmm", model_config={"prompt_length": 4, "frozen_dropout": True}, epochs=2,
                      batch_size=16, train_rate=0.7, pretrained=str(pretrained), device="cuda", deterministic=True,
                      progress=False)
    full = train(cfg, ds, tmp_path / "full")
    train(TrainConfig(**{**cfg.__dict__, "epochs": 1}), ds, tmp_path / "resumed")
    resumed = train(cfg, ds, tmp_path / "resumed")
    assert torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["rng"]["cuda"]
    assert list(resumed.history["train_loss"]) == list(full.history["train_loss"])
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    runtime = full.metrics["runtime"]
    assert runtime["type"] == "cuda" and runtime["deterministic"] and runtime["name"] and runtime["cuda"]


def test_evaluate_on_cuda_matches_cpu(ds, pretrained):
    model = train(TrainConfig(model="mplmm", model_config={"prompt_length": 4}, epochs=1, batch_size=16,
                              train_rate=0.7, pretrained=str(pretrained), device="cuda", progress=False), ds).model
    spec = MissingSpec("modality", 0.5, 0)
    with runtime_settings(tf32=False):
        on_gpu = evaluate_model(model, ds, spec, device="cuda")
        on_cpu = evaluate_model(copy.deepcopy(model).cpu(), ds, spec, device="cpu")
    assert on_gpu.keys() == on_cpu.keys()
    assert max(abs(on_gpu[k] - on_cpu[k]) for k in ("loss", "MAE", "Corr")) < 1e-4


def test_generation_quality_on_cuda_matches_cpu(ds, pretrained):
    model = train(TrainConfig(model="mplmm", model_config={"prompt_length": 4}, epochs=1, batch_size=16,
                              train_rate=0.7, pretrained=str(pretrained), device="cuda", progress=False), ds).model
    with runtime_settings(tf32=False):
        gpu = I.generation_quality(model, ds, "test", n_samples=12, batch_size=5)
        cpu = I.generation_quality(copy.deepcopy(model).cpu(), ds, "test", n_samples=12, batch_size=5)
    assert len(gpu) == len(cpu) > 0
    np.testing.assert_allclose(gpu["mse"], cpu["mse"], rtol=1e-4, atol=1e-6)


def test_bf16_autocast_trains_and_evaluates(ds, pretrained):
    cfg = TrainConfig(model="mplmm", model_config={"prompt_length": 4}, epochs=2, batch_size=16, train_rate=0.7,
                      pretrained=str(pretrained), device="cuda", amp=True, progress=False)
    res = train(cfg, ds)
    assert np.isfinite(res.history["train_loss"]).all() and res.metrics["runtime"]["precision"] == "bf16-amp"
    spec = MissingSpec("modality", 0.5, 0)
    amp, fp32 = (evaluate_model(res.model, ds, spec, device="cuda", amp=a) for a in (True, False))
    assert abs(amp["MAE"] - fp32["MAE"]) < 0.05
