"""Checkpoints: ``state_dict`` + config (+ optimiser state for resuming), loadable with ``weights_only=True``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from .models import create_model
from .models.base import MissingModalityModel
from .errors import UserError
from .utils import PathLike, atomic_write

FORMAT = "mplmm-checkpoint/1"


class CheckpointError(UserError):
    """A checkpoint file is missing, unreadable or does not match the model asked for."""


def save_checkpoint(path: PathLike, model: MissingModalityModel, **extra: Any) -> Path:
    """Atomically save the model's ``state_dict``, registry name and config, plus ``extra`` entries."""
    payload = {"format": FORMAT, "model_name": model.registry_name, "model_config": dict(model.config),
               "state_dict": model.state_dict(), **extra}
    return atomic_write(path, lambda fh: torch.save(payload, fh))


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


def _trained_on(ckpt: dict) -> dict:
    """The data signature a checkpoint was trained on (older checkpoints: from the model config)."""
    sig = dict(ckpt.get("data") or {})
    cfg = ckpt.get("model_config", {})
    for key in ("dims", "seq_lens", "output_dim"):
        if sig.get(key) is None and cfg.get(key) is not None:
            sig[key] = cfg[key]
    return sig


def _fmt(values: Any) -> str:
    return "(" + ", ".join(str(v) for v in values) + ")" if isinstance(values, (list, tuple)) else str(values)


def check_fits(what: str, trained: dict, ds: Any) -> None:
    """Raise one-line :class:`CheckpointError` when ``ds`` differs from the data signature ``trained`` in feature
    dims, sequence lengths, task, number of classes or class names. ``what`` names the checkpoint or model."""
    have = ds.signature()
    name = f"dataset {have['name']!r}"
    rules = (("task", "task"), ("output_dim", "number of outputs (1 for regression, else classes)"),
             ("class_names", "class names"), ("dims", "feature dims (text, audio, vision)"),
             ("seq_lens", "sequence lengths (text, audio, vision)"))
    for key, label in rules:
        want = trained.get(key)
        if want is None or have.get(key) is None:
            continue
        same = list(want) == list(have[key]) if isinstance(want, (list, tuple)) else want == have[key]
        if not same:
            hint = ("; pad/truncate the data with --seq_lens / load_dataset(seq_lens=...)" if key == "seq_lens"
                    else "")
            raise CheckpointError(f"{what} does not fit {name}: {label} expected {_fmt(want)} (as trained), "
                                  f"found {_fmt(have[key])}{hint}")


def check_model_fits(model: MissingModalityModel, ds: Any, what: str = "") -> None:
    """:func:`check_fits` for a model object (its config holds dims, sequence lengths and output size); a module
    without an mplmm config (a user's own ``nn.Module``) is not checked."""
    config = getattr(model, "config", None)
    if isinstance(config, dict):
        name = getattr(model, "registry_name", type(model).__name__)
        check_fits(what or f"model {name!r}", _trained_on({"model_config": config}), ds)


def load_model(path: PathLike, device: str | torch.device = "cpu", expect: Optional[str] = None,
               data: Any = None) -> tuple[MissingModalityModel, dict]:
    """Rebuild the model stored in ``path`` (eval mode) and return ``(model, checkpoint_dict)``.

    With ``data`` (a dataset) first check that the checkpoint was trained on data of the same shape and task
    (one-line :class:`CheckpointError` naming both otherwise).
    """
    ckpt = read_checkpoint(path)
    if expect is not None and ckpt["model_name"] != expect:
        raise CheckpointError(f"{path}: expected a {expect!r} checkpoint, found {ckpt['model_name']!r}")
    if data is not None:
        check_fits(f"checkpoint {path}", _trained_on(ckpt), data)
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
