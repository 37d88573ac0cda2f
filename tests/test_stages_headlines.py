"""Logic that used to live only in notebook cells: stage semantics (01), headline numbers and IG/occlusion agreement
(03/04), the model flags that replaced model-name rules."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from mplmm.errors import ConfigError
from mplmm.models import model_class
from mplmm.workbench.headlines import attention_key_metrics, attribution_key_metrics, ig_occlusion_agreement
from mplmm.workbench.stages import stage_config


def test_stage_semantics_and_test_rate_sentinel():
    pre = stage_config("pretrain", model="mult", train_rate=0.7, test_rate=-1)
    assert pre.train_rate == 0.0 and pre.test_rate is None and pre.eval_spec().rate == 0.0 and pre.pretrained is None
    tune = stage_config("prompt-tune", model="mplmm", train_rate=0.7, test_rate=-1, pretrained="x/best.pt", epochs=2)
    assert tune.train_rate == 0.7 and tune.eval_spec().rate == 0.7 and tune.pretrained == "x/best.pt"
    scratch = stage_config("train", model="mult_dropout", train_rate=0.5, test_rate=0.2, pretrained="ignored.pt")
    assert scratch.eval_spec().rate == 0.2 and scratch.pretrained is None
    with pytest.raises(ConfigError, match=r"stage_config: key 'pretrained': expected the best.pt of a 'mult' "
                                          r"pre-training run \(stage 'prompt-tune' starts from it\), got None"):
        stage_config("prompt-tune", model="mplmm")
    with pytest.raises(ConfigError, match="stage_config: key 'stage': expected one of 'pretrain', 'prompt-tune', "
                                          "'train', got 'finetune'"):
        stage_config("finetune", model="mult")
    with pytest.raises(ConfigError, match="TrainConfig: key 'epochs': expected an integer >= 1, got 0"):
        stage_config("train", model="mult", epochs=0)


def test_headline_numbers():
    share = pd.DataFrame({"module": ["a", "a", "b", "b"], "layer": [0, 1, 0, 2], "share": [0.1, 0.5, 0.2, 0.3],
                          "uniform": [0.25] * 4})
    gen = pd.DataFrame({"cosine": [0.2, 0.4], "rel_mse": [1.0, 3.0]})
    key = attention_key_metrics(share, gen)
    assert key == pytest.approx({"prompt share (last layer)": 0.4, "uniform share": 0.25, "generation cosine": 0.3,
                                 "generation rel. MSE": 2.0})
    assert attention_key_metrics(pd.DataFrame(), pd.DataFrame()) == {}
    imp = pd.DataFrame({"mode": [6, 6, 6, 0], "modality": ["text", "audio", "vision", "text"],
                        "share": [0.5, 0.3, 0.2, 0.0]})
    key = attribution_key_metrics(imp, {6: torch.tensor([0.1, -0.3])})
    assert key == pytest.approx({"share text (complete)": 0.5, "share audio (complete)": 0.3,
                                 "share vision (complete)": 0.2, "IG gap (complete)": 0.2})


def test_ig_occlusion_agreement():
    a = torch.tensor([[1.0, 2.0, 3.0]])
    per = {(6, "ig"): {"text": a, "audio": a, "vision": torch.zeros(1, 3)},
           (6, "occlusion"): {"text": 2 * a, "audio": -a, "vision": a},
           (0, "occlusion"): {"text": a, "audio": a, "vision": a}}
    out = ig_occlusion_agreement(per, [6, 0])
    assert list(out) == ["complete"]
    assert out["complete"]["text"] == pytest.approx(1.0) and out["complete"]["audio"] == pytest.approx(-1.0)
    assert out["complete"]["vision"] is None


def test_model_flags_replace_name_rules():
    assert model_class("mult").reads_modes is False and model_class("mplmm").reads_modes is True
    assert model_class("mult_zero").reads_modes is True and model_class("comp").reads_modes is True
    assert model_class("mult").inputs_only_through_projections and model_class("mplmm").inputs_only_through_projections
    assert not model_class("dcp").inputs_only_through_projections
