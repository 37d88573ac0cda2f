"""One vocabulary: typed configs, one strict reader with one error format, flags and docs generated from the fields."""
from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path
from typing import Optional

import papermill as pm
import pytest
import torch

from mplmm.cli import build_parser, train_config
from mplmm.cli import main as cli_main
from mplmm.config import NOTHING, aliases, from_dict, markdown_table, option, rename_aliases, specs, type_name
from mplmm.errors import ConfigError
from mplmm.models import available_models, config_class, create_model, validate_model_config
from mplmm.models.mult import MulTConfig
from mplmm.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
DATA = dict(dims=(4, 3, 5), seq_lens=(3, 4, 5), output_dim=1)


@dataclasses.dataclass
class _Toy:
    width: int = option(help="a required width", low=1)
    rate: float = option(0.5, "a rate", aliases=("old_rate",), low=0, high=1, high_open=True)
    mode: str = option("a", "a choice", choices=("a", "b"))
    sizes: Optional[list[int]] = option(None, "three sizes", length=3, low=1)


def test_from_dict_reads_aliases_and_fills_defaults():
    toy = from_dict(_Toy, {"width": 2, "old_rate": 0.25}, "toy")
    assert (toy.width, toy.rate, toy.mode, toy.sizes) == (2, 0.25, "a", None)
    assert from_dict(_Toy, {"width": 2, "rate": 0.1, "old_rate": 0.1}, "toy").rate == 0.1  # same value twice: fine
    assert aliases(_Toy) == {"old_rate": "rate"} and rename_aliases(_Toy, {"old_rate": 1}) == {"rate": 1}


@pytest.mark.parametrize("data, message", [
    ({"width": 2, "rat": 0.1}, "toy: unknown key 'rat' (did you mean 'rate'?); accepted: mode, rate, sizes, width"),
    ({"width": 2, "old_rte": 0.1}, "toy: unknown key 'old_rte' (did you mean 'old_rate'?); accepted: mode, rate, "
                                   "sizes, width"),
    ({"width": 0}, "toy: key 'width': expected an integer >= 1, got 0"),
    ({"width": True}, "toy: key 'width': expected an integer >= 1, got True"),
    ({}, f"toy: key 'width': expected an integer >= 1, got {NOTHING}"),
    ({"width": 1, "rate": 1.0}, "toy: key 'rate': expected a number in [0, 1), got 1.0"),
    ({"width": 1, "rate": float("nan")}, "toy: key 'rate': expected a number in [0, 1), got nan"),
    ({"width": 1, "mode": "c"}, "toy: key 'mode': expected one of 'a', 'b', got 'c'"),
    ({"width": 1, "sizes": [1, 2]}, "toy: key 'sizes': expected a list of 3 integers >= 1 or None, got [1, 2]"),
    ({"width": 1, "rate": 0.1, "old_rate": 0.2}, "toy: key 'rate': expected one value, got 0.1 as 'rate' and 0.2 as "
                                                 "'old_rate'"),
    ([1, 2], "toy: expected a mapping of keys (width, rate, mode, sizes), got [1, 2]"),
])
def test_one_error_format(data, message):
    with pytest.raises(ConfigError) as info:
        from_dict(_Toy, data, "toy")
    assert str(info.value) == message


def test_every_model_has_a_typed_config_with_one_spelling():
    names = {"mult": "MulTConfig", "mult_zero": "MulTConfig", "mult_dropout": "MulTConfig", "mplmm": "MPLMMConfig",
             "dcp": "DCPConfig", "emt_dlfr": "EMTDLFRConfig", "mmml": "MMMLConfig", "comp": "ComPConfig"}
    assert {n: config_class(n).__name__ for n in available_models()} == names
    for name in available_models():
        fields = {s.name for s in specs(config_class(name))}
        assert {"d", "num_heads"} <= fields and not fields & {"d_model", "hidden", "heads"}
        model = create_model(name, **DATA)
        assert set(model.config) == {"dims", "seq_lens", "output_dim", *fields}
        json.dumps(model.config)  # plain values: what checkpoints store
    for mplmm_like in ("mplmm", "dcp"):
        assert issubclass(config_class(mplmm_like), MulTConfig)


@pytest.mark.parametrize("name, cfg, message", [
    ("mult", {"num_heads": 4}, "model 'mult': key 'num_heads': expected a divisor of d=30, got 4"),
    ("emt_dlfr", {"d": 30, "heads": 4}, "model 'emt_dlfr': key 'num_heads': expected a divisor of d=30, got 4"),
    ("comp", {"hidden": 10, "num_heads": 3}, "model 'comp': key 'num_heads': expected a divisor of d=10, got 3"),
    ("mmml", {"modalities": ["text", "text"]}, "model 'mmml': key 'modalities': expected 2 or 3 distinct names from "
                                               "text, audio, vision, got ['text', 'text']"),
    ("mplmm", {"prompt_init": "ones"}, "model 'mplmm': key 'prompt_init': expected one of 'lora', 'zeros', got 'ones'"),
    ("mult", {"dims": [1, 2, 3]}, "model 'mult': key 'dims': expected no value (it comes from the data), got "
                                  "[1, 2, 3]"),
])
def test_model_configs_check_themselves(name, cfg, message):
    with pytest.raises(ConfigError) as info:
        validate_model_config(name, cfg)
    assert str(info.value) == message


def test_old_keys_are_aliases_and_old_checkpoints_load(tmp_path):
    """Checkpoints saved with d_model / hidden / heads load; the model and its config use the new names."""
    from mplmm.checkpoint import load_model, save_checkpoint

    x = [torch.randn(2, t, d) for t, d in zip(DATA["seq_lens"], DATA["dims"])]
    modes = torch.tensor([6, 2])
    for name, old in (("emt_dlfr", {"d_model": 8, "heads": 2}), ("comp", {"hidden": 8, "heads": 2}),
                      ("mmml", {"d": 8, "heads": 2}), ("mult", {"proj_dim": 8, "num_heads": 2, "nlevels": 1})):
        model = create_model(name, **DATA, **old).eval()
        assert model.config["d"] == 8 and model.config["num_heads"] == 2 and not set(old) - set(model.config) - {
            "d_model", "hidden", "heads", "proj_dim", "nlevels"}
        path = save_checkpoint(tmp_path / f"{name}.pt", model)
        ckpt = torch.load(path, weights_only=True)
        as_saved = {"d": "d" if name == "mmml" else next(k for k in old if k != "num_heads" and "head" not in k),
                    "num_heads": "num_heads" if name == "mult" else "heads", "layers": "nlevels"}
        ckpt["model_config"] = {as_saved.get(k, k): v for k, v in ckpt["model_config"].items()}  # the old keys
        assert set(old) <= set(ckpt["model_config"])
        torch.save(ckpt, path)
        back = load_model(path)
        assert back.config == model.config
        with torch.no_grad():
            assert torch.equal(back(*x, modes), model(*x, modes))


def test_train_config_vocabulary():
    cfg = from_dict(TrainConfig, {"num_epochs": 3, "drop_rate": 0.5, "select": "MAE", "pretrained_model": "x.pt",
                                  "model": "mult"}, "TrainConfig")
    assert (cfg.epochs, cfg.train_rate, cfg.select_metric, cfg.pretrained) == (3, 0.5, "MAE", "x.pt")
    with pytest.raises(ConfigError, match=r"^TrainConfig: key 'lr': expected a number > 0, got 0$"):
        TrainConfig(lr=0).validate()
    with pytest.raises(ConfigError, match=r"^TrainConfig: key 'optim': expected a torch.optim optimizer"):
        TrainConfig(optim="Adamm").validate()


def _train_args(*argv: str):
    return build_parser().parse_args(["train", *argv])


def test_train_flags_are_generated_from_the_configs():
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for s in specs(TrainConfig):
        if s.flag:
            assert f"--{s.name}" in text or f"--no_{s.name}" in text, s.name
    for s in specs(MulTConfig):
        assert f"--{s.name}" in text or f"--no_{s.name}" in text, s.name
    ref = train_config(_train_args("--num_epochs", "3", "--drop_rate", "0.7", "--select", "MAE", "--proj_dim", "12",
                                   "--num_heads", "3", "--nlevels", "1", "--no_attn_mask"))
    new = train_config(_train_args("--epochs", "3", "--train_rate", "0.7", "--select_metric", "MAE", "--d", "12",
                                   "--num_heads", "3", "--layers", "1", "--no_attn_mask"))
    assert ref == new and new.model == "mult" and new.epochs == 3 and new.progress
    assert new.model_config == {"d": 12, "num_heads": 3, "layers": 1, "attn_mask": False}  # saved under its names
    tuned = train_config(_train_args("--pretrained_model", "x.pt", "--prompt_length", "4", "--model_arg",
                                     "type_prompts=false", "--quiet"))
    assert tuned.model == "mplmm" and tuned.model_config == {"prompt_length": 4, "type_prompts": False}
    assert train_config(_train_args()) == TrainConfig(model="mult")  # the defaults are the config's


def test_cli_errors_are_one_line(capsys):
    for argv, line in [
        (["train", "--epochs", "0"], "error: TrainConfig: key 'epochs': expected an integer >= 1, got 0"),
        (["train", "--proj_dim", "30", "--prompt_dim", "20"],
         "error: model 'mult': key 'd': expected one value, got 30 as 'proj_dim' and 20 as 'prompt_dim'"),
        (["train", "--prompt_length", "4"], "error: model 'mult': unknown key 'prompt_length'"),
        (["train", "--dataset", "mosi"], "error: --dataset mosi reads the real mosi features: give their file or "
                                         "folder with --data_path, or name a synthetic stand-in (synthetic, "
                                         "synthetic-mosi, synthetic-mosei, synthetic-sims, synthetic-iemocap), e.g. "
                                         "--dataset synthetic-mosi"),
    ]:
        assert cli_main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(line) and err.count("\n") == 1, err


def test_evaluate_out_is_a_folder(tmp_path, capsys):
    common = ["--dataset", "synthetic-mosi", "--size", "0.02", "--seq_lens", "4", "6", "6", "--device", "cpu"]
    assert cli_main(["train", *common, "--epochs", "1", "--d", "8", "--num_heads", "2", "--layers", "1", "--quiet",
                     "--out", str(tmp_path / "run")]) == 0
    assert cli_main(["evaluate", str(tmp_path / "run" / "best.pt"), *common, "--out", str(tmp_path / "ev")]) == 0
    saved = json.loads((tmp_path / "ev" / "evaluate.json").read_text())
    assert saved["split"] == "test" and "MAE" in saved
    help_text = build_parser()._subparsers._group_actions[0].choices["evaluate"].format_help()
    assert "folder for evaluate.json" in " ".join(help_text.split())


# ------------------------------------------------------------------------------------------------- notebook 01
def test_notebook_01_takes_every_train_config_field():
    params = pm.inspect_notebook(str(ROOT / "notebooks" / "01_train.ipynb"))
    own_defaults = {"model": "mult", "epochs": 3, "seed": 0, "progress": False}  # the notebook's small, quiet run
    for s in specs(TrainConfig):
        assert s.name in params, f"notebook 01 has no parameter {s.name!r}"
        assert params[s.name]["inferred_type_name"] == type_name(s.type), s.name
        assert params[s.name]["help"], s.name
        default = ast.literal_eval(params[s.name]["default"])
        assert default == own_defaults.get(s.name, s.default), s.name
    for sentinel_free in ("label_range", "threshold", "pretrained", "test_rate"):
        assert params[sentinel_free]["default"] == "None"
        assert params[sentinel_free]["inferred_type_name"].startswith("Optional[")


def test_stage_config_takes_none_and_the_old_sentinels():
    from mplmm.data import label_options
    from mplmm.workbench.stages import stage_config

    new = stage_config("train", model="mult", train_rate=0.5, test_rate=None, pretrained=None)
    old = stage_config("train", model="mult", train_rate=0.5, test_rate=-1, pretrained="")
    assert new == old and new.test_rate is None and new.eval_spec().rate == 0.5
    assert label_options(None, None) == label_options([], float("nan")) == {}


def test_grid_coercion_of_optional_parameters(tmp_path):
    from mplmm.workbench.batch import GridError, load_grid

    def grid(params):
        return {"name": "g", "output_root": str(tmp_path / "out"), "stages": [
            {"name": "pre", "notebook": "notebooks/01_train.ipynb", "params": params}]}

    g = load_grid(grid({"test_rate": None, "threshold": 1, "label_range": None, "early_stopping": 3}), root=ROOT)
    params = g.stages[0].params
    assert params["test_rate"] is None and params["threshold"] == 1.0 and isinstance(params["threshold"], float)
    assert params["label_range"] is None and params["early_stopping"] == 3
    with pytest.raises(GridError, match=r"stage 'pre': params: key 'test_rate': expected a number or None, got 'x'"):
        load_grid(grid({"test_rate": "x"}), root=ROOT)
    with pytest.raises(GridError, match=r"params: key 'epochs': expected an integer, got None"):
        load_grid(grid({"epochs": None}), root=ROOT)


# ---------------------------------------------------------------------------------------------------- docs
def test_vocabulary_page_is_up_to_date():
    from mplmm import vocabulary

    page = vocabulary.PAGE
    assert page.read_text(encoding="utf-8") == vocabulary.markdown(), "run: python -m mplmm.vocabulary"
    assert "{include} _generated/vocabulary.md" in (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    for alias in ("num_epochs", "drop_rate", "select", "pretrained_model", "proj_dim", "nlevels", "d_model", "hidden",
                  "heads"):
        assert f"| `{alias}` |" in page.read_text(encoding="utf-8"), alias
    assert markdown_table(_Toy).splitlines()[2].startswith("| `width` |  | `int` | required |")
