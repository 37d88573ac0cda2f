"""The published protocols end to end: training under a frame-level family, `mplmm curve` with the papers'
summaries and a feature-noise curve, and one-line errors for bad knobs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mplmm.cli import main as cli_main
from mplmm.data import load_dataset
from mplmm.errors import ConfigError
from mplmm.missing import MissingMasks, MissingSpec
from mplmm.summaries import auilc
from mplmm.train import TrainConfig, train

SMALL = {"d": 12, "num_heads": 3, "layers": 1}
COMMON = ["--dataset", "synthetic", "--seq_lens", "4", "6", "6", "--size", "0.05", "--device", "cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ds = load_dataset("synthetic", seq_lens=(4, 6, 6), size=0.05, verbose=False)
    out = tmp_path_factory.mktemp("block")
    cfg = TrainConfig(model="mult_dropout", model_config=SMALL, epochs=1, batch_size=16, progress=False,
                      protocol="block", train_rate=0.5)
    res = train(cfg, ds, out)
    return out / "best.pt", res


def test_training_under_a_frame_family_records_it(trained):
    ck, res = trained
    assert res.metrics["config"]["protocol"] == "block"
    masks = MissingMasks.load(ck.parent / "masks_test.npz")  # the fixed evaluation masks are block masks
    assert masks.spec.protocol == "block" and masks.frame_masks is not None
    dropped = ~masks.frame_masks["audio"]
    assert (dropped.sum(1) == 3).all()  # floor(0.5 * 6 + 1/2) steps of 6, one block
    with pytest.raises(ConfigError, match="protocol"):
        TrainConfig(protocol="structural").validate()


def test_curve_writes_the_papers_summaries_and_noise(trained, tmp_path, capsys):
    ck, _ = trained
    rates = [f"{0.1 * i:.1f}" for i in range(11)]
    assert cli_main(["curve", str(ck), *COMMON, "--protocol", "temporal_block", "--rates", *rates, "--mask_seeds", "0",
                     "--noise_levels", "0", "0.5", "1", "--quiet", "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "auilc" in out and "air" in out and "feature-noise levels" in out
    rec = json.loads((tmp_path / "c" / "curve.json").read_text())
    assert rec["protocol"] == "temporal_block"
    assert set(rec["summaries"]) >= {"auc", "auilc", "auilc_caption", "air", "relative_robustness"}
    import pandas as pd

    curve = pd.DataFrame(rec["curve"])
    metric = rec["metric"]
    assert rec["summaries"]["auilc"] == pytest.approx(auilc(curve, metric))
    noise = pd.read_csv(tmp_path / "c" / "noise.csv")
    assert sorted(noise["noise"].unique()) == [0.0, 0.5, 1.0] and (noise["rate"] == 0).all()
    assert np.isfinite(rec["noise_summaries"]["air"])


def test_bad_knobs_are_one_line_errors(trained, capsys):
    ck, _ = trained
    assert cli_main(["curve", str(ck), *COMMON, "--noise_levels", "-1", "--quiet"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == "error: NoiseSpec: level must be a finite number >= 0, got -1.0"
    with pytest.raises(SystemExit):
        cli_main(["curve", str(ck), *COMMON, "--protocol", "structural"])
    assert "invalid choice: 'structural'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="protocol must be one of"):
        MissingSpec("blocks", 0.5)
