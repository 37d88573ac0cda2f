"""What notebook 01's ``stage`` parameter means, as one function the notebook (and anyone else) calls.

* ``pretrain`` — complete data: the training missing rate is forced to 0 (e.g. the ``mult`` backbone);
* ``prompt-tune`` — start from ``pretrained`` (a ``mult`` ``best.pt``), backbone frozen (e.g. ``mplmm``);
* ``train`` — from scratch at ``train_rate`` (baselines trained on incomplete data).

``None`` means "not given": ``test_rate=None`` is the same as the training rate, ``pretrained=None`` none. The older
sentinels still work (a negative ``test_rate`` such as ``-1``, ``pretrained=""``).
"""
from __future__ import annotations

from typing import Any, Optional

from ..config import bad_value
from ..errors import ConfigError
from ..train import TrainConfig

STAGES: tuple[str, str, str] = ("pretrain", "prompt-tune", "train")


def stage_config(stage: str, *, model: str, train_rate: float = 0.0, test_rate: Optional[float] = None,
                 pretrained: Optional[str] = None, **fields: Any) -> TrainConfig:
    """The validated :class:`~mplmm.train.TrainConfig` of one stage (``fields``: any other TrainConfig field)."""
    if stage not in STAGES:
        raise ConfigError(bad_value("stage_config", "stage", f"one of {', '.join(map(repr, STAGES))}", stage))
    if stage == "prompt-tune" and not pretrained:
        raise ConfigError(bad_value("stage_config", "pretrained", "the best.pt of a 'mult' pre-training run (stage "
                                    "'prompt-tune' starts from it)", pretrained))
    rate = 0.0 if stage == "pretrain" else float(train_rate)
    eval_rate = None if test_rate is None or float(test_rate) < 0 else float(test_rate)
    chosen = (pretrained or None) if stage == "prompt-tune" else None
    return TrainConfig(model=model, train_rate=rate, test_rate=eval_rate, pretrained=chosen, **fields).validate()
