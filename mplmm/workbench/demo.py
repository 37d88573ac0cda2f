"""The model the interpretation notebooks inspect: a given checkpoint, or a tiny demo model trained in seconds.

:func:`load_or_train_demo` pre-trains a ``mult`` on complete data and prompt-tunes an ``mplmm`` on top of it, as the
full pipeline does, at toy size.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional, Union

from torch import nn

from ..checkpoint import load_model, save_checkpoint
from ..data.schema import MultimodalDataset
from ..train import TrainConfig, train

#: model config of the demo models: two layers, the MulT defaults otherwise
DEMO_MODEL_CONFIG: dict = {"layers": 2}


def load_or_train_demo(checkpoint: str, ds: MultimodalDataset, output_dir: Union[str, Path], seed: int = 0,
                       device: str = "cpu", pretrain_epochs: int = 1, prompt_epochs: int = 1, train_rate: float = 0.7,
                       model_config: Optional[dict] = None) -> tuple[nn.Module, dict]:
    """The model to inspect: ``checkpoint`` if given, else a tiny one trained on ``ds`` in seconds.

    The tiny model is a ``mult`` pre-trained for ``pretrain_epochs`` on complete data, then an ``mplmm`` prompt-tuned
    for ``prompt_epochs`` at ``train_rate`` on top of it (``model_config``, default ``{"layers": 2}``); both are
    saved under ``output_dir`` (``demo_mult.pt``, ``demo_mplmm.pt``). Returns ``(model in eval mode, info)``.
    """
    if checkpoint:
        model = load_model(checkpoint, device=device, data=ds)
        return model, {"checkpoint": str(checkpoint), "model": model.checkpoint["model_name"], "trained_here": False,
                       "test": model.checkpoint.get("test")}
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg_model = dict(DEMO_MODEL_CONFIG if model_config is None else model_config)
    pre = TrainConfig(model="mult", model_config=cfg_model, epochs=int(pretrain_epochs), seed=int(seed),
                      device=device, progress=False)
    r1 = train(pre, ds)
    pre_path = save_checkpoint(out / "demo_mult.pt", r1.model, train_config=asdict(pre), test=r1.metrics["test"],
                               data=ds.signature(), preprocessing=ds.preprocessing)
    tune = TrainConfig(model="mplmm", model_config=cfg_model, epochs=int(prompt_epochs), seed=int(seed),
                       device=device, train_rate=float(train_rate), pretrained=str(pre_path), progress=False)
    r2 = train(tune, ds)
    path = save_checkpoint(out / "demo_mplmm.pt", r2.model, train_config=asdict(tune), test=r2.metrics["test"],
                           data=ds.signature(), preprocessing=ds.preprocessing,
                           frozen=[n for n, p in r2.model.named_parameters() if not p.requires_grad])
    return r2.model.eval(), {"checkpoint": str(path), "model": "mplmm", "trained_here": True,
                             "pretrain_test": r1.metrics["test"], "test": r2.metrics["test"]}


__all__ = ["DEMO_MODEL_CONFIG", "load_or_train_demo"]
