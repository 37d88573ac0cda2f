"""What notebook 01's ``stage`` parameter means, as one function the notebook (and anyone else) calls.

* ``pretrain`` — complete data: the training missing rate is forced to 0 (e.g. the ``mult`` backbone);
* ``prompt-tune`` — start from ``pretrained`` (a ``mult`` ``best.pt``), backbone frozen (e.g. ``mplmm``);
* ``train`` — from scratch at ``train_rate`` (baselines trained on incomplete data).

A negative ``test_rate`` (notebook default ``-1``) means "the same as the training rate".
"""
from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..train import TrainConfig

STAGES: tuple[str, str, str] = ("pretrain", "prompt-tune", "train")


def stage_config(stage: str, *, model: str, train_rate: float = 0.0, test_rate: float = -1.0,
                 pretrained: str = "", **fields: Any) -> TrainConfig:
    """The validated :class:`~mplmm.train.TrainConfig` of one stage (``fields``: any other TrainConfig field)."""
    if stage not in STAGES:
        raise ConfigError(f"stage: expected one of {list(STAGES)}, got {stage!r}")
    if stage == "prompt-tune" and not pretrained:
        raise ConfigError("stage 'prompt-tune' needs `pretrained` (the best.pt of a 'mult' pre-training run)")
    rate = 0.0 if stage == "pretrain" else float(train_rate)
    eval_rate = None if float(test_rate) < 0 else float(test_rate)
    chosen = (pretrained or None) if stage == "prompt-tune" else None
    return TrainConfig(model=model, train_rate=rate, test_rate=eval_rate, pretrained=chosen, **fields).validate()
