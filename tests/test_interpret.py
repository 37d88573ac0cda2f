"""mplmm.interpret on tiny models: attention maps, prompt analyses, generated features, Captum attributions, plots."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch
from torch import nn

from mplmm import interpret as I
from mplmm.constants import MODALITIES, MODE_PRESENT
from mplmm.models import create_model
from mplmm.plots import interpret as PI
from mplmm.workbench import runs
from mplmm.workbench.demo import load_or_train_demo
from tiny_data import DIMS, SEQS, tiny_dataset

SMALL = dict(dims=DIMS, seq_lens=SEQS, layers=2, d=10, num_heads=5)


@pytest.fixture(scope="module")
def ds():
    return tiny_dataset()


@pytest.fixture(scope="module")
def mplmm_model():
    torch.manual_seed(0)
    return create_model("mplmm", prompt_length=4, **SMALL).eval()


@pytest.fixture(scope="module")
def mult_model():
    torch.manual_seed(1)
    return create_model("mult", **SMALL).eval()


class NoAttention(nn.Module):
    """A peer-like model whose forward has no need_weights and no projection layers."""

    registry_name = "peer_without_attention"

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(sum(DIMS), 1)

    def forward(self, text, audio, vision, modes, frame_masks=None):
        return self.lin(torch.cat([text.mean(1), audio.mean(1), vision.mean(1)], dim=-1))


# ----------------------------------------------------------------------------------------------------------------------
# attention
# ----------------------------------------------------------------------------------------------------------------------
def test_attention_rows_sum_to_one_and_prompt_columns(ds, mplmm_model):
    batch = I.get_batch(ds, "test", n=4)
    maps = I.attention_maps(mplmm_model, batch, [0, 3, 5, 6])
    assert set(maps.modules) == {m for m, *_ in I.CROSSMODAL_MODULES} | {m for m, _ in I.MEMORY_MODULES}
    for module, per_layer in maps.weights.items():
        assert len(per_layer) == maps.info.loc[module, "n_layers"]
        for w in per_layer:
            assert w.shape[:2] == (4, 5)
            assert torch.allclose(w.sum(-1), torch.ones(w.shape[:-1]), atol=1e-5)
    for (module, br), t in zip(I.MEMORY_MODULES, SEQS):
        assert maps.n_prompt(module) == 4
        assert maps.prompt_columns(module) == list(range(t, t + 4))
        assert maps.is_prompt_column(module).sum() == 4 and maps.is_prompt_column(module)[-4:].all()
        assert maps.key_labels(module)[-4:] == ["p0", "p1", "p2", "p3"]
        assert maps.key_labels(module)[0] == f"{br}0"
    for module, *_ in I.CROSSMODAL_MODULES:
        assert maps.prompt_columns(module) == []
    assert maps.map("trans_v_mem", layer=-1, head=None, sample=None).shape == (SEQS[2] + 4, SEQS[2] + 4)
    assert maps.modes.tolist() == [0, 3, 5, 6]


def test_attention_layer_selection_and_mult(ds, mult_model):
    batch = I.get_batch(ds, "test", n=3)
    maps = I.attention_maps(mult_model, batch, 6, layer=-1)
    assert all(len(v) == 1 for v in maps.weights.values())
    assert maps.layers["trans_l_with_a"] == [1] and maps.layers["trans_l_mem"] == [2]  # memory depth max(2, 3)
    assert all(maps.n_prompt(m) == 0 for m in maps.modules)
    deep = I.attention_maps(mult_model, batch, 6, layer=2)  # only the 3-layer memory transformers have layer 2
    assert set(deep.modules) == {m for m, _ in I.MEMORY_MODULES}
    frame = maps.to_frame("trans_a_mem", layer=2)
    assert set(frame["head"]) == {"0", "1", "2", "3", "4", "mean"} and not frame["key_is_prompt"].any()
    with pytest.raises(ValueError, match="no prompt tokens"):
        I.prompt_attention_share(mult_model, ds, "test", modes=[6], n_samples=2)


def test_attention_needs_need_weights(ds):
    with pytest.raises(NotImplementedError, match="does not return attention weights"):
        I.attention_maps(NoAttention(), I.get_batch(ds, "test", n=2), 6)


def test_prompt_attention_share_matches_maps(ds, mplmm_model):
    share = I.prompt_attention_share(mplmm_model, ds, "test", modes=[0, 6], n_samples=6, batch_size=4)
    assert len(share) == 2 * 3 * 3  # modes × branches × memory layers
    assert share["share"].between(0, 1).all() and (share["n"] == 6).all()
    maps = I.attention_maps(mplmm_model, I.get_batch(ds, "test", n=6), 0)
    w = maps.weights["trans_a_mem"][-1][:, :, -1, -4:].sum(-1).mean()
    row = share[(share["mode"] == 0) & (share["branch"] == "audio") & (share["layer"] == 2)]
    assert row["share"].item() == pytest.approx(float(w), abs=1e-6)
    assert row["uniform"].item() == pytest.approx(4 / (SEQS[1] + 4))
    by_head = I.prompt_attention_share(mplmm_model, ds, "test", modes=[6], n_samples=2, by_head=True)
    assert len(by_head) == 3 * 3 * 5


# ----------------------------------------------------------------------------------------------------------------------
# prompts and generation
# ----------------------------------------------------------------------------------------------------------------------
def test_prompt_similarity(mplmm_model):
    res = I.prompt_similarity(mplmm_model)
    sim = res.similarity.to_numpy()
    assert sim.shape == (7, 7)
    assert np.allclose(np.diag(sim), 1.0, atol=1e-5) and np.allclose(sim, sim.T, atol=1e-6)
    assert (np.abs(sim) <= 1 + 1e-5).all()
    assert set(res.branch_similarity) == set(MODALITIES)
    assert res.pca_modes.shape == (7, 4) and len(res.pca_tokens) == 7 * 3 * 4
    assert 0 < sum(res.explained_variance) <= 1 + 1e-6
    # PCA coordinates are centred and their squared norms add up to the explained share of the variance
    tokens = I.prompt_tokens(mplmm_model).reshape(7, -1).double()
    total = float(((tokens - tokens.mean(0)) ** 2).sum())
    coords = res.pca_modes[["pc1", "pc2"]].to_numpy()
    assert np.allclose(coords.mean(0), 0, atol=1e-4)
    assert (coords ** 2).sum() / total == pytest.approx(sum(res.explained_variance), rel=1e-3)


def test_cosine_of_zero_rows_is_zero():
    sim = I.cosine_matrix(torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]))
    assert sim[0].abs().sum() == 0 and sim[1, 2] == pytest.approx(1.0)


def test_generation_quality(ds, mplmm_model):
    q = I.generation_quality(mplmm_model, ds, "test", n_samples=6, batch_size=4)
    assert len(q) == sum(3 * t for t in SEQS)  # each modality is missing in 3 modes
    assert set(q[q["modality"] == "text"]["mode"]) == {0, 3, 4}
    assert q.loc[(q["modality"] == "vision") & (q["mode"] == 5), "sources"].iloc[0] == "text"
    assert (q["mse"] >= 0).all() and q["cosine"].between(-1, 1).all() and (q["n"] == 6).all()
    # one value by hand: audio generated from text+vision (mode 1) at step 2
    batch = I.get_batch(ds, "test", n=6)
    with torch.no_grad():
        gen = mplmm_model.complete_inputs(*batch, torch.full((6,), 1))[1][:, 2]
        real = mplmm_model.complete_inputs(*batch, torch.full((6,), 6))[1][:, 2]
    row = q[(q["modality"] == "audio") & (q["mode"] == 1) & (q["timestep"] == 2)]
    assert row["mse"].item() == pytest.approx(float(((gen - real) ** 2).mean()), rel=1e-5)
    summary = I.generation_summary(q)
    assert len(summary) == 9
    with pytest.raises(NotImplementedError, match="needs an MPLMM model"):
        I.generation_quality(NoAttention(), ds, "test")


# ----------------------------------------------------------------------------------------------------------------------
# attributions
# ----------------------------------------------------------------------------------------------------------------------
def test_feature_ablation_zero_for_missing_modality(ds, mplmm_model):
    imp = I.modality_importance(mplmm_model, ds, "test", modes=[0, 4, 6], n_samples=6)
    assert len(imp) == 9
    for _, r in imp.iterrows():
        if not MODE_PRESENT[r["mode"]][MODALITIES.index(r["modality"])]:
            assert not r["present"] and r["abs_importance"] < 1e-5
    assert (imp[imp["mode"] == 6]["abs_importance"] > 1e-4).all()
    assert imp.groupby("mode")["share"].sum().to_numpy() == pytest.approx([1, 1, 1], abs=1e-6)
    per = I.modality_importance(mplmm_model, ds, "test", modes=[6], n_samples=3, per_sample=True)
    assert len(per) == 9 and set(per["sample"]) == {0, 1, 2}


def test_ig_completeness_on_mult(ds, mult_model):
    batch = I.get_batch(ds, "test", n=4)
    attrs, delta = I.timestep_attributions(mult_model, batch, 6, method="ig", n_steps=64, internal_batch_size=64,
                                           return_delta=True)
    assert [a.shape for a in attrs.values()] == [(4, t) for t in SEQS]
    total = sum(a.sum(1) for a in attrs.values())
    with torch.no_grad():
        fx = mult_model(*batch, torch.full((4,), 6))[:, 0]
        # the baseline is the limit of f(eps * x): an exactly-zero MulT input is all padding (no positions)
        f0 = mult_model(*[1e-6 * x for x in batch], torch.full((4,), 6))[:, 0]
    gap = fx - f0
    tol = 1e-2 + 0.02 * float(gap.abs().max())
    assert torch.allclose(total, gap, atol=tol)
    assert torch.allclose(delta, total - gap, atol=1e-5) and delta.abs().max() < tol


def test_hookable_projections(ds, mult_model):
    import mplmm.models.mult as mult_module

    original = getattr(mult_module, "conv1x1_time_last", None)
    batch, modes = I.get_batch(ds, "test", n=2), torch.full((2,), 6)
    with torch.no_grad():
        ref = mult_model(*batch, modes)
    calls = []
    handle = mult_model.proj_a.register_forward_hook(lambda *_: calls.append(1))
    try:
        with I.hookable_projections(I.projection_layers(mult_model)), torch.no_grad():
            out = mult_model(*batch, modes)
    finally:
        handle.remove()
    assert calls and torch.allclose(out, ref, atol=1e-6)
    assert getattr(mult_module, "conv1x1_time_last", None) is original


def test_occlusion_matches_manual_and_missing_is_zero(ds, mplmm_model):
    batch = I.get_batch(ds, "test", n=3)
    occ = I.timestep_attributions(mplmm_model, batch, 0, method="occlusion", perturbations_per_eval=4)
    assert occ["text"].abs().max() < 1e-5  # text missing in mode 0: never read
    modes = torch.zeros(3, dtype=torch.long)
    with torch.no_grad():
        full = mplmm_model(*batch, modes)[:, 0]
        for t in (0, 4):
            audio = batch[1].clone()
            audio[:, t] = 0
            drop = mplmm_model(batch[0], audio, batch[2], modes)[:, 0]
            assert torch.allclose(occ["audio"][:, t], full - drop, atol=1e-5)
    ig = I.timestep_attributions(mplmm_model, batch, 1, method="ig", n_steps=8)
    assert ig["audio"].abs().max() == 0  # projection of a missing modality is overwritten by generated features
    with pytest.raises(ValueError, match="method must be"):
        I.timestep_attributions(mplmm_model, batch, 6, method="saliency")
    with pytest.raises(NotImplementedError, match="occlusion"):
        I.timestep_attributions(NoAttention(), batch, 6, method="ig")
    assert I.timestep_attributions(NoAttention(), batch, 6, method="occlusion")["vision"].shape == (3, SEQS[2])


def test_classification_target_and_summary():
    cds = tiny_dataset(task="classification")
    torch.manual_seed(2)
    model = create_model("mult", output_dim=3, **SMALL).eval()
    attrs = I.timestep_attributions(model, I.get_batch(cds, "test", n=3), 6, method="ig", n_steps=4)
    assert attrs["text"].shape == (3, SEQS[0])
    imp = I.modality_importance(model, cds, "test", modes=[6], n_samples=3)
    assert len(imp) == 3 and (imp["abs_importance"] >= 0).all()
    summary = I.attribution_summary(model, cds, "test", modes=[6, 2], method="occlusion", n_samples=4, batch_size=2)
    assert len(summary) == 2 * sum(SEQS) and (summary["n"] == 4).all() and (summary["mean_abs"] >= 0).all()


# ----------------------------------------------------------------------------------------------------------------------
# live evaluation, runs
# ----------------------------------------------------------------------------------------------------------------------
def test_evaluate_missing(ds, mplmm_model):
    res = I.evaluate_missing(mplmm_model, ds, "test", rate=0.5, present=(True, False, False))
    assert res["forced_mode"] == 5 and res["mode_counts"][5] == len(ds["test"])
    assert "MAE" in res["metrics"] and len(res["predictions"]) == len(ds["test"])
    free = I.evaluate_missing(mplmm_model, ds, "test", rate=1.0)
    assert free["forced_mode"] is None and free["mode_counts"][6] == 0
    with pytest.raises(ValueError, match="all three"):
        I.evaluate_missing(mplmm_model, ds, "test", present=(False, False, False))


def test_find_runs(tmp_path):
    run = tmp_path / "grid" / "mplmm_p0.5"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"model": "mplmm", "primary_metric": "MAE",
                                                  "test": {"MAE": 0.8, "Corr": 0.5}, "notes": "x"}))
    pd.DataFrame({"epoch": [1, 2], "valid_loss": [1.0, 0.9]}).to_csv(run / "history.csv", index=False)
    (tmp_path / "empty").mkdir()
    table = runs.find_runs(tmp_path)
    assert list(table["run"]) == ["grid/mplmm_p0.5"]
    assert table["test.MAE"].item() == 0.8 and table["primary_metric"].item() == "MAE"
    hist, metrics = runs.load_run(run)
    assert list(hist["valid_loss"]) == [1.0, 0.9] and metrics["model"] == "mplmm"
    assert runs.find_runs(tmp_path / "nope").empty


# ----------------------------------------------------------------------------------------------------------------------
# plot builders
# ----------------------------------------------------------------------------------------------------------------------
def test_plot_builders(ds, mplmm_model):
    maps = I.attention_maps(mplmm_model, I.get_batch(ds, "test", n=2), [1, 6])
    fig = PI.attention_figure(maps, "trans_l_mem", layer=-1, head=0, sample=1)
    assert isinstance(fig, go.Figure) and len(fig.data) == 1
    shape = fig.layout.shapes[0]
    assert (shape.x0, shape.x1) == (SEQS[0] - 0.5, SEQS[0] + 3.5)
    assert "prompt tokens" in fig.layout.annotations[0].text
    assert not PI.attention_figure(maps, "trans_l_with_a").layout.shapes
    grid = PI.attention_grid(maps, [m for m, _ in I.MEMORY_MODULES])
    assert len(grid.data) == 3 and len(grid.layout.shapes) == 3
    by_mode = {k: I.attention_maps(mplmm_model, I.get_batch(ds, "test", n=2), k) for k in (6, 0)}
    readout = PI.readout_attention_figure(by_mode)
    assert readout.data[0].z.shape == (2, SEQS[0] + 4) and len(readout.layout.shapes) == 3
    assert np.allclose(readout.data[0].z.sum(1), 1, atol=1e-5)
    share = I.prompt_attention_share(mplmm_model, ds, "test", modes=[0, 6], n_samples=2)
    assert len(PI.prompt_share_figure(share, layer=2).data) == 6
    sim = I.prompt_similarity(mplmm_model)
    assert PI.similarity_heatmap(sim.similarity).data[0].type == "heatmap"
    assert len(PI.prompt_pca_figure(sim.pca_modes, sim.pca_tokens, sim.explained_variance).data) == 14
    imp = I.modality_importance(mplmm_model, ds, "test", modes=[0, 6], n_samples=2)
    heat = PI.modality_importance_heatmap(imp)
    assert "(missing)" in heat.data[0].text[0][0] and heat.data[0].z.shape == (2, 3)
    attrs = I.timestep_attributions(mplmm_model, I.get_batch(ds, "test", n=2), 6, method="occlusion")
    assert len(PI.timestep_heatmaps(attrs).data) == 3 and len(PI.timestep_bars(attrs, 1).data) == 3
    gen = I.generation_quality(mplmm_model, ds, "test", n_samples=2)
    assert len(PI.generation_figure(gen).data) == 2 * 9
    res = I.evaluate_missing(mplmm_model, ds, "test", rate=0.5)
    assert PI.missing_explorer_figure(res).data[0].type == "bar"


# ----------------------------------------------------------------------------------------------------------------------
# notebooks 03 / 04
# ----------------------------------------------------------------------------------------------------------------------
ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
INTERPRET_NOTEBOOKS = ("notebooks/03_prompt_attention.ipynb", "notebooks/04_attributions.ipynb")


def test_load_or_train_demo(tmp_path, ds):
    model, info = load_or_train_demo("", ds, tmp_path, seed=0, model_config=dict(d=10, num_heads=5, layers=1))
    assert info["trained_here"] and info["model"] == "mplmm" and not model.training
    assert (tmp_path / "demo_mult.pt").is_file() and (tmp_path / "demo_mplmm.pt").is_file()
    assert model.parameter_counts()["frozen"] > 0  # backbone copied from the demo mult and frozen
    again, info2 = load_or_train_demo(info["checkpoint"], ds, tmp_path)
    assert not info2["trained_here"] and again.registry_name == "mplmm"


@pytest.fixture(scope="module")
def synthetic_checkpoint(tmp_path_factory):
    """An untrained tiny mplmm checkpoint shaped for the synthetic default (the notebooks then skip training)."""
    from mplmm.checkpoint import save_checkpoint
    from mplmm.data import load_dataset

    sds = load_dataset("synthetic", verbose=False)
    torch.manual_seed(0)
    model = create_model("mplmm", dims=sds.dims, seq_lens=sds.seq_lens, layers=1, d=10, prompt_length=4)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_mplmm.pt", model)


@pytest.mark.notebook
@pytest.mark.parametrize("path,params", [
    (INTERPRET_NOTEBOOKS[0], {"n_samples": 8}),
    (INTERPRET_NOTEBOOKS[1], {"n_samples": 4, "ig_steps": 4}),
])
def test_interpret_notebook_runs(tmp_path, synthetic_checkpoint, path, params):
    """The notebook runs end to end on a checkpoint (its own assertions included) and writes metrics.json.
    (The checkpoint="" path goes through load_or_train_demo, tested above.)"""
    pm = pytest.importorskip("papermill")
    from mplmm.workbench.batch import ensure_kernel

    out = tmp_path / "out"
    pm.execute_notebook(str(ROOT / path), str(tmp_path / "run.ipynb"), kernel_name=ensure_kernel(),
                        cwd=str(tmp_path), progress_bar=False,
                        parameters={"output_dir": str(out), "device": "cpu", "checkpoint": str(synthetic_checkpoint),
                                    **params})
    import notebook_checks as C

    metrics = C.check_attention(out, params["n_samples"], 160) if "03_" in path else C.check_attributions(out)
    assert metrics["model"] == "mplmm" and not metrics["model_info"]["trained_here"]
