"""Checkpoints: ``state_dict`` + config (+ optimiser state for resuming), loadable with ``weights_only=True``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from .models import create_model
from .models.base import MissingModalityModel
from .utils import PathLike, atomic_write

FORMAT = "mplmm-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or does not match the model asked for."""


def save_checkpoint(path: PathLike, model: MissingModalityModel, **extra: Any) -> Path:
    """Atomically save the model's ``state_dict``, registry name and config, plus ``extra`` entries."""
    payload = {"format": FORMAT, "model_name": model.registry_name, "model_config": dict(model.config),
               "state_dict": model.state_dict(), **extra}
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(path: PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint dict with ``weights_only=True``; one-line :class:`CheckpointError` on any problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure becomes one clear line
        raise CheckpointError(f"{path}: not a readable mplmm checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200]})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an mplmm checkpoint (expected key 'format' == {FORMAT!r})")
    return ckpt


def check_config(path: PathLike, ckpt: dict, model_name: str, model_config: dict) -> None:
    """Raise :class:`CheckpointError` naming the first differing key when a checkpoint does not fit the model."""
    if ckpt["model_name"] != model_name:
        raise CheckpointError(f"{path}: checkpoint is for model {ckpt['model_name']!r}, not {model_name!r}")
    for key in sorted(set(ckpt["model_config"]) | set(model_config)):
        a, b = ckpt["model_config"].get(key), model_config.get(key)
        if a != b:
            raise CheckpointError(f"{path}: checkpoint config {key}={a!r} does not match the model's {key}={b!r}")


def load_model(path: PathLike, device: str | torch.device = "cpu",
               expect: Optional[str] = None) -> tuple[MissingModalityModel, dict]:
    """Rebuild the model stored in ``path`` (eval mode) and return ``(model, checkpoint_dict)``."""
    ckpt = read_checkpoint(path)
    if expect is not None and ckpt["model_name"] != expect:
        raise CheckpointError(f"{path}: expected a {expect!r} checkpoint, found {ckpt['model_name']!r}")
    model = create_model(ckpt["model_name"], **ckpt["model_config"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0][:200]
        raise CheckpointError(f"{path}: weights do not fit the model config ({first})") from exc
    frozen = ckpt.get("frozen", [])
    params = dict(model.named_parameters())
    for name in frozen:
        if name in params:
            params[name].requires_grad_(False)
    return model.to(device).eval(), ckpt
