"""Checkpoints: ``state_dict`` + config (+ optimiser state for resuming), loadable with ``weights_only=True``.

Besides the weights a checkpoint written by :func:`mplmm.train.train` carries what prediction on new data needs:
``data`` (the training data's signature: task, class names, label range and threshold, feature dims, sequence
lengths) and ``preprocessing`` (``standardize``: the per-feature training mean/std applied to each standardized
modality; ``seq_lens``: the lengths the sequences were padded/truncated to, if asked). :func:`load_model` puts all of
it (without the tensors) on ``model.checkpoint``. Checkpoints written before ``preprocessing`` existed still load;
new data is then standardized by the old rule on its own statistics (see ``docs/predict.md``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from .data.provenance import mismatch
from .errors import UserError
from .models import canonical_config, create_model
from .models.base import MissingModalityModel
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
    """Load a checkpoint dict with ``weights_only=True``; one-line :class:`CheckpointError` on any problem. The model
    config's keys come back under their current names (aliases such as ``d_model`` renamed to ``d``)."""
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
    if isinstance(ckpt.get("model_config"), dict):  # keys saved under older names (d_model, hidden, heads) renamed
        ckpt["model_config"] = canonical_config(str(ckpt.get("model_name")), ckpt["model_config"])
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


def check_fits(what: str, trained: dict, ds: Any, fixed_seq_lens: bool = True) -> None:
    """Raise one-line :class:`CheckpointError` when ``ds`` differs from the data signature ``trained`` in feature
    dims, task, number of classes, class names or (``fixed_seq_lens``: a model whose parameters are sized by the
    sequence lengths, such as MPLMM) sequence lengths. ``what`` names the checkpoint or model."""
    have = ds.signature()
    name = f"dataset {have['name']!r}"
    rules = (("task", "task"), ("output_dim", "number of outputs (1 for regression, else classes)"),
             ("class_names", "class names"), ("dims", "feature dims (text, audio, vision)"),
             ("seq_lens", "sequence lengths (text, audio, vision)"))
    for key, label in rules if fixed_seq_lens else rules[:-1]:
        want = trained.get(key)
        if want is None or have.get(key) is None:
            continue
        same = list(want) == list(have[key]) if isinstance(want, (list, tuple)) else want == have[key]
        if not same:
            hint = ("; this model's parameters are sized by them: pad/truncate the data with --seq_lens / "
                    "load_dataset(seq_lens=...) (predict and explain do it for you)" if key == "seq_lens" else "")
            raise CheckpointError(f"{what} does not fit {name}: {label} expected {_fmt(want)} (as trained), "
                                  f"found {_fmt(have[key])}{hint}")
    differs = mismatch(trained.get("features"), have.get("features"))
    if differs:
        raise CheckpointError(f"{what} does not fit {name}: {differs}")


def check_model_fits(model: MissingModalityModel, ds: Any, what: str = "") -> None:
    """:func:`check_fits` for a model object (its config holds dims, sequence lengths and output size); a module
    without an mplmm config (a user's own ``nn.Module``) is not checked."""
    config = getattr(model, "config", None)
    if isinstance(config, dict):
        name = getattr(model, "registry_name", type(model).__name__)
        info = getattr(model, "checkpoint", None) or {"model_config": config}
        check_fits(what or f"model {name!r}", _trained_on(info), ds, getattr(model, "fixed_seq_lens", True))


#: checkpoint entries that are not copied onto ``model.checkpoint`` (tensors and resume state)
_HEAVY = ("state_dict", "optimizer", "scheduler", "rng", "torch_rng")


def load_model(path: PathLike, device: str | torch.device = "cpu", expect: Optional[str] = None,
               data: Any = None) -> MissingModalityModel:
    """Rebuild the model stored in ``path`` in eval mode. ``model.checkpoint`` holds the rest of the checkpoint
    (``path``, ``model_name``, ``model_config``, ``train_config``, ``data``, ``preprocessing``, metrics), which
    :func:`mplmm.predict` uses to prepare new data as the training data was.

    With ``data`` (a dataset) first check that the checkpoint was trained on data of the same shape and task
    (one-line :class:`CheckpointError` naming both otherwise).
    """
    from .models import model_class

    ckpt = read_checkpoint(path)
    if expect is not None and ckpt["model_name"] != expect:
        raise CheckpointError(f"{path}: expected a {expect!r} checkpoint, found {ckpt['model_name']!r}")
    if data is not None:
        check_fits(f"checkpoint {path}", _trained_on(ckpt), data,
                   getattr(model_class(ckpt["model_name"]), "fixed_seq_lens", True))
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
    model.checkpoint = {"path": str(path), **{k: v for k, v in ckpt.items() if k not in _HEAVY}}
    model.checkpoint["data"] = _trained_on(ckpt)
    return model.to(device).eval()
