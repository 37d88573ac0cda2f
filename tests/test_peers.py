"""Peer methods (EMT-DLFR, MMML, ComP, DCP) and the MulT baselines under the model contract."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mplmm.constants import MODE_PRESENT
from mplmm.models import create_model

DIMS, LENS = (6, 5, 4), (5, 6, 7)
SMALL_MULT = dict(d=8, num_heads=2, layers=2)
PEERS = {
    "emt_dlfr": ("emt_dlfr", {}),
    "mmml": ("mmml", {}),
    "mmml_3m": ("mmml", {"modalities": ("text", "audio", "vision")}),
    "comp": ("comp", {"depth": 2}),
    "comp_code": ("comp", {"depth": 2, "batch_prototypes": True, "modulate_grads": True}),
    "mult_zero": ("mult_zero", SMALL_MULT),
    "mult_dropout": ("mult_dropout", SMALL_MULT),
    "dcp": ("dcp", dict(SMALL_MULT, n_prompt=2)),
}
IDS = list(PEERS)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one thread; restore the setting afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def build(key: str, output_dim: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    name, kw = PEERS[key]
    return create_model(name, dims=DIMS, seq_lens=LENS, output_dim=output_dim, **kw)


def batch(b: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, t, d, generator=g) for t, d in zip(LENS, DIMS)]


def frame_masks(b: int, rate: float = 0.3, seed: int = 2) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.rand(b, t, generator=g) >= rate for m, t in zip(("text", "audio", "vision"), LENS)}


@pytest.mark.parametrize("key", IDS)
def test_forward_every_mode_and_mixed(key):
    model = build(key).eval()
    feats = batch(5)
    with torch.no_grad():
        for mode in range(7):
            out = model(*feats, torch.full((5,), mode))
            assert out.shape == (5, 1) and torch.isfinite(out).all()
        mixed = batch(14)
        out = model(*mixed, torch.arange(14) % 7, frame_masks(14))
        assert out.shape == (14, 1) and torch.isfinite(out).all()
        assert model(*batch(1), torch.tensor([3])).shape == (1, 1)


@pytest.mark.parametrize("key", IDS)
def test_backward_finite_grads(key):
    model = build(key).train()
    feats = batch(14)
    loss, pred, parts = model.compute_loss(*feats, torch.arange(14) % 7, torch.randn(14, 1), F.l1_loss,
                                           frame_masks(14))
    assert pred.shape == (14, 1) and torch.isfinite(loss)
    assert all(isinstance(v, float) or (v.ndim == 0 and not v.requires_grad) for v in parts.values())
    loss.backward()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    unused = [n for n, p in params if p.grad is None]
    assert not unused, unused
    assert all(torch.isfinite(p.grad).all() for _, p in params)


@pytest.mark.parametrize("key", IDS)
def test_training_reduces_loss(key):
    model = build(key)
    torch.manual_seed(3)
    x = batch(32, seed=4)
    y = (x[0][:, :, 0].mean(1, keepdim=True) * 2.0 + x[0][:, 0, 1:2]).detach()
    complete_only = getattr(model, "train_on_complete", False)
    modes = torch.full((32,), 6) if complete_only else torch.tensor([1, 2, 5, 6]).repeat(8)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(F.mse_loss(model(*x, modes), y))

    before = eval_loss()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    for _ in range(30):
        model.train()
        opt.zero_grad()
        loss, _, _ = model.compute_loss(*x, modes, y, F.mse_loss)
        loss.backward()
        opt.step()
    after = eval_loss()
    assert after < 0.6 * before, (before, after)


@pytest.mark.parametrize("key", IDS)
def test_classification_cross_entropy(key):
    model = build(key, output_dim=4).train()
    feats = batch(14)
    target = torch.arange(14) % 4
    loss, pred, _ = model.compute_loss(*feats, torch.arange(14) % 7, target, F.cross_entropy)
    assert pred.shape == (14, 4) and torch.isfinite(loss)
    loss.backward()
    model.eval()
    assert model(*feats, torch.arange(14) % 7).shape == (14, 4)


@pytest.mark.parametrize("use_frames", [False, True])
@pytest.mark.parametrize("key", IDS)
def test_missing_features_are_never_read(key, use_frames):
    model = build(key).eval()
    b = 14
    feats, modes = batch(b), torch.arange(b) % 7
    fm = frame_masks(b) if use_frames else None
    noisy = []
    for j, (x, name) in enumerate(zip(feats, ("text", "audio", "vision"))):
        present = torch.tensor([MODE_PRESENT[int(m)][j] for m in modes])
        keep = present[:, None].expand(b, x.shape[1])
        if fm is not None:
            keep = keep & fm[name]
        noise = 100.0 * torch.randn_like(x) + 7.0
        noisy.append(torch.where(keep[..., None], x, noise))
    with torch.no_grad():
        ref = model(*feats, modes, fm)
        out = model(*noisy, modes, fm)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("key", IDS)
def test_parameter_counts_and_config_rebuild(key):
    model = build(key)
    counts = model.parameter_counts()
    assert 0 < counts["trainable"] <= counts["total"] and counts["frozen"] == counts["total"] - counts["trainable"]
    clone = create_model(model.registry_name, **model.config)
    assert clone.parameter_counts() == counts
    clone.load_state_dict(model.state_dict())


def test_baseline_flags():
    assert build("mult_zero").train_on_complete is True
    assert build("mult_dropout").train_on_complete is False
    assert build("dcp").uses_pretrained_backbone is True


def test_dcp_frozen_backbone_after_transfer():
    torch.manual_seed(0)
    mult = create_model("mult", dims=(7, 3, 2), seq_lens=(4, 4, 4), output_dim=1, **SMALL_MULT)
    model = build("dcp")
    before = model.parameter_counts()
    report = model.load_pretrained_backbone(mult.state_dict(), mult.config)
    after = model.parameter_counts()
    assert after["total"] == before["total"] and after["frozen"] > 0.5 * after["total"]
    assert "backbone.proj_l.weight" in report["skipped"] and report["unfrozen"]
    trainable = {n for n, _ in model.trainable_parameters()}
    assert "backbone.trans_l_with_a.layers.0.fc1.weight" not in trainable
    assert {"corr_init", "common", "dyn_queries", "backbone.out_layer.weight"} <= trainable
    feats = batch(6)
    loss, _, _ = model.compute_loss(*feats, torch.arange(6), torch.randn(6, 1), F.l1_loss)
    loss.backward()
    assert model.backbone.trans_l_mem.layers[0].fc1.weight.grad is None
    with pytest.raises(ValueError):
        build("dcp").load_pretrained_backbone(mult.state_dict(), dict(mult.config, d=12))


def test_emt_reconstruction_vanishes_without_missing_frames():
    model = build("emt_dlfr").train()
    _, _, parts = model.compute_loss(*batch(8), torch.full((8,), 6), torch.randn(8, 1), F.l1_loss)
    assert parts["reconstruction"] == 0.0
    _, _, parts = model.compute_loss(*batch(8), torch.full((8,), 0), torch.randn(8, 1), F.l1_loss)
    assert parts["reconstruction"] > 0.0


def test_mmml_drops_unimodal_loss_of_missing_modality():
    model = build("mmml").train()
    _, _, parts = model.compute_loss(*batch(6), torch.full((6,), 0), torch.randn(6, 1), F.l1_loss)
    assert parts["uni_text"] == 0.0 and parts["uni_audio"] > 0.0


def test_comp_stage_switch_and_gradient_modulator():
    torch.manual_seed(0)
    model = create_model("comp", dims=DIMS, seq_lens=LENS, output_dim=1, stage1_steps=1, drop_rate=0.0)
    feats, modes, y = batch(8), torch.arange(8) % 7, torch.randn(8, 1)
    _, _, p1 = model.compute_loss(*feats, modes, y, F.l1_loss)
    _, _, p2 = model.compute_loss(*feats, modes, y, F.l1_loss)
    assert p1["stage"] == 1.0 and "negative" in p1 and p2["stage"] == 2.0
    grads = []
    for flag in (False, True):
        model.modulate_grads = flag
        model.zero_grad()
        loss, _, _ = model.compute_loss(*feats, modes, y, F.l1_loss)
        loss.backward()
        grads.append(model.pf1[0].proj_n.fc1.weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])
