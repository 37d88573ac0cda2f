"""The ipywidgets panels, driven headless by setting ``.value`` (callbacks fire without a kernel)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch
from torch import nn

pytest.importorskip("ipywidgets")

from mplmm.models import create_model  # noqa: E402
from mplmm_widgets import (build_attention_panel, build_attribution_panel,  # noqa: E402
                           build_missing_explorer_panel, build_run_explorer_panel)
from tiny_data import DIMS, SEQS, tiny_dataset  # noqa: E402


@pytest.fixture(scope="module")
def ds():
    return tiny_dataset(12)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("mplmm", dims=DIMS, seq_lens=SEQS, layers=2, d=10, prompt_length=4).eval()


def _z(fig) -> np.ndarray:
    return np.asarray(fig.data[0].z, dtype=float)


def test_panel_contract(ds, model):
    panel = build_attention_panel(model, ds, n_samples=3)
    assert isinstance(panel.figure, (go.Figure, go.FigureWidget))
    assert panel.widget.children[-1] is panel.figure  # anywidget installed: the FigureWidget is in the box
    assert set(panel.controls) == {"sample", "mode", "module", "layer", "head"}


def test_missing_explorer(ds, model):
    panel = build_missing_explorer_panel(model, ds, split="test", rate=0.0)
    c = panel.controls
    assert panel.state["result"]["mode_counts"][6] == len(ds["test"])
    before = list(panel.figure.data[0].y)
    c["rate"].value = 1.0
    res = panel.state["result"]
    assert res["mode_counts"][6] == 0 and list(panel.figure.data[0].y) != before
    c["audio"].value = False
    c["vision"].value = False
    res = panel.state["result"]
    assert res["forced_mode"] == 5 and res["mode_counts"][5] == len(ds["test"])
    assert c["rate"].disabled and c["audio"].icon == "times"
    assert "forced mode 5" in panel.message.value
    shown = list(panel.figure.data[0].y)
    c["text"].value = False  # all three off: message, no exception, figure kept
    assert "all three" in panel.message.value
    assert list(panel.figure.data[0].y) == shown and panel.state["result"] is res
    c["vision"].value = True  # back to a valid mode (text+audio missing)
    assert panel.state["result"]["forced_mode"] == 3 and "⚠" not in panel.message.value
    for m in ("text", "audio", "vision"):
        c[m].value = True
    assert panel.state["result"]["forced_mode"] is None and not c["rate"].disabled
    calls: list[int] = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    try:  # every mode drawn below rate 1 was drawn at rate 1 (nested masks): served by the per-mode cache
        for rate in (0.5, 0.25, 0.75):
            c["rate"].value = rate
            assert panel.state["result"]["spec"]["rate"] == rate
    finally:
        hook.remove()
    assert not calls and len(panel.state["modes"].passes) <= 7


def test_attention_panel(ds, model):
    panel = build_attention_panel(model, ds, n_samples=3, mode=6, module="trans_l_mem")
    c = panel.controls
    assert c["layer"].max == 2 and c["layer"].value == 2  # memory depth max(2, 3), last layer shown
    z0 = _z(panel.figure)
    assert z0.shape == (SEQS[0] + 4, SEQS[0] + 4)
    assert np.allclose(z0.sum(1), 1, atol=1e-5)
    assert panel.figure.layout.shapes[0].x0 == SEQS[0] - 0.5  # prompt columns marked
    c["mode"].value = 0
    assert not np.allclose(_z(panel.figure), z0) and set(panel.state["cache"]) == {0, 6}
    c["head"].value = 3
    assert panel.state["head"] == 3
    z_head = _z(panel.figure)
    c["sample"].value = 2
    assert not np.allclose(_z(panel.figure), z_head)
    c["module"].value = "trans_v_with_a"
    assert c["layer"].max == 1 and c["layer"].value == 1
    assert _z(panel.figure).shape == (SEQS[2], SEQS[1]) and not panel.figure.layout.shapes
    c["layer"].value = 0
    assert panel.state["layer"] == 0 and "⚠" not in panel.message.value


def test_attention_panel_without_weights(ds):
    class Peer(nn.Module):
        registry_name = "peer"

        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(1, 1)

        def forward(self, text, audio, vision, modes, frame_masks=None):
            return self.lin(text[:, :1, :1].reshape(-1, 1))

    panel = build_attention_panel(Peer(), ds, n_samples=2)
    assert "does not expose attention weights" in panel.message.value
    assert all(w.disabled for w in panel.controls.values()) and len(panel.figure.data) == 0


def test_attribution_panel(ds, model):
    panel = build_attribution_panel(model, ds, n_samples=3, mode=6, method="occlusion")
    c = panel.controls
    y0 = np.asarray(panel.figure.data[1].y)  # audio bars of sample 0
    assert len(panel.figure.data) == 3 and y0.shape == (SEQS[1],)
    c["sample"].value = 1
    assert not np.allclose(np.asarray(panel.figure.data[1].y), y0)
    c["mode"].value = 1  # audio missing: its bars are (numerically) zero
    assert np.abs(np.asarray(panel.figure.data[1].y, dtype=float)).max() < 1e-5
    c["method"].value = "ig"
    assert set(panel.state["cache"]) == {(6, "occlusion"), (1, "occlusion"), (1, "ig")}
    assert panel.state["method"] == "ig" and "total relevance" in panel.message.value


def test_missing_explorer_switches_protocol(ds, model):
    """The published protocols are one menu away; a frame-level one runs a forward pass per change."""
    from mplmm.errors import ConfigError

    panel = build_missing_explorer_panel(model, ds, split="test", rate=0.5)
    c = panel.controls
    assert list(c["protocol"].options)[:4] == ["modality", "entry", "frame", "block"]
    calls: list[int] = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        c["protocol"].value = "temporal_block"
        res = panel.state["result"]
        assert res["spec"]["protocol"] == "temporal_block" and res["mode_counts"][6] == len(ds["test"])
        assert 0.3 < res["missing_entry_fraction"] < 0.7 and calls
        assert "temporal_block rate 0.50" in panel.message.value
    finally:
        hook.remove()
    with pytest.raises(ConfigError, match="protocol must be one of"):
        build_missing_explorer_panel(model, ds, protocol="structural")


def test_run_explorer(tmp_path):
    for i, name in enumerate(["mult", "mplmm"]):
        run = tmp_path / name
        run.mkdir()
        (run / "metrics.json").write_text(json.dumps({"model": name, "primary_metric": "MAE",
                                                      "test": {"MAE": 1.0 - 0.1 * i, "Corr": 0.3 + 0.1 * i}}))
        pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.2, 1.0, 0.9 - i / 10],
                      "valid_loss": [1.1 - i / 10, 1.0, 0.95]}).to_csv(run / "history.csv", index=False)
    panel = build_run_explorer_panel(str(tmp_path))
    c = panel.controls
    assert set(c["runs"].options) == {"mult", "mplmm"} and c["metric"].value == "test.MAE"
    lines = [t for t in panel.figure.data if t.type == "scatter"]
    assert len(lines) == 2 and c["curve"].value == "valid_loss"
    c["curve"].value = "train_loss"
    curves = {t.name: list(t.y) for t in panel.figure.data if t.type == "scatter"}
    assert curves == {"mult": [1.2, 1.0, 0.9], "mplmm": [1.2, 1.0, 0.8]}
    c["runs"].value = ("mplmm",)
    assert len([t for t in panel.figure.data if t.type == "scatter"]) == 1
    bars = [t for t in panel.figure.data if t.type == "bar"][0]
    assert list(bars.x) == ["mplmm"] and list(bars.y) == [pytest.approx(0.9)]
    c["metric"].value = "test.Corr"
    assert [t for t in panel.figure.data if t.type == "bar"][0].y[0] == pytest.approx(0.4)
    c["root"].value = str(tmp_path / "nothing")
    assert "no run folders" in panel.message.value and c["runs"].options == ()


def test_plain_figure_mode(ds, model):
    panel = build_attention_panel(model, ds, n_samples=2, figure_widget=False)
    assert type(panel.figure) is go.Figure and panel.widget.children[-1] is not panel.figure
    z0 = _z(panel.figure)
    panel.controls["sample"].value = 1
    assert not np.allclose(_z(panel.figure), z0)


def test_updating_holds_back_the_callback():
    """``Panel.updating()``: control changes inside the block call nothing, ``busy`` says so, and it is restored."""
    import ipywidgets as W

    from mplmm_widgets import Panel

    calls = []
    panel = Panel("t", {"x": W.IntSlider(value=0)}, [["x"]], figure_widget=False)
    panel.wire(lambda: calls.append((panel.controls["x"].value, panel.busy)), ["x"])
    with panel.updating():
        assert panel.busy
        panel.controls["x"].value = 1
    assert not panel.busy and calls == []
    panel.controls["x"].value = 2
    assert calls == [(2, True)] and not panel.busy
