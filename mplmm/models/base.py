"""Model contract and the one registry.

Every model takes the **complete** inputs plus the per-sample missing mode and is itself responsible for never
reading a missing modality (MPLMM generates it, ``mult_zero`` zero-fills it, ...)::

    pred = model(text, audio, vision, modes, frame_masks=None, lengths=None)   # (B, output_dim)
    loss, pred, parts = model.compute_loss(text, audio, vision, modes, target, criterion, frame_masks=None,
                                           lengths=None, observed_modes=None)

* ``text`` ``(B, T_l, D_l)``, ``audio`` ``(B, T_a, D_a)``, ``vision`` ``(B, T_v, D_v)`` float tensors, batch-first.
* ``modes`` ``LongTensor (B,)`` in 0..6 (:data:`mplmm.constants.MODE_PRESENT`).
* ``frame_masks`` optional dict modality -> ``BoolTensor (B, T_m)``, True = frame kept (frame-level protocol);
  dropped frames are zero-filled, they are not padding.
* ``lengths`` optional ``LongTensor (B, 3)``: real steps of text, audio, vision (clamped to ``[0, T_j]``); steps
  beyond are end padding and never influence a prediction; 0 = nothing recorded. A modality missing under ``modes``
  has effective length 0. None: every step counts, exactly as before lengths existed
  (:mod:`mplmm.models.lengths`).
* ``observed_modes`` optional ``LongTensor (B,)``: the modes of what is really recorded (None = complete); only
  models that train on a complete view read it (EMT-DLFR).

Models whose parameters are sized by the configured ``seq_lens`` set :attr:`MissingModalityModel.fixed_seq_lens`;
every other model accepts any sequence length at inference.

Training goes through :meth:`MissingModalityModel.compute_loss`, which models with auxiliary losses override.
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Optional

import torch
from torch import nn

from ..errors import ConfigError, unknown_keys_message

_REGISTRY: dict[str, type["MissingModalityModel"]] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator adding a model to the registry under ``name``."""

    def deco(cls: type) -> type:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        cls.registry_name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    from . import _load_all  # noqa: F401  (imports every model module)

    return sorted(_REGISTRY)


#: keys every model takes from the data, never from the user's ``model_config``
DATA_KEYS = ("dims", "seq_lens", "output_dim")
#: (width, heads) key pairs: the width must be a multiple of the number of heads
WIDTH_HEADS = (("d", "num_heads"), ("d", "heads"), ("d_model", "heads"), ("hidden", "heads"))


def create_model(name: str, **cfg) -> "MissingModalityModel":
    """Build registered model ``name`` from keyword config (``dims``, ``seq_lens``, ``output_dim``, ...).

    Unknown keys and values of the wrong type or range are a one-line :class:`ConfigError` naming the accepted keys
    and the closest match.
    """
    cls = model_class(name)
    check_config_keys(name, cfg, allow_data_keys=True)
    return cls(**cfg)


def model_class(name: str) -> type["MissingModalityModel"]:
    """The class registered as ``name``."""
    from . import _load_all  # noqa: F401

    if name not in _REGISTRY:
        raise ConfigError(unknown_keys_message("model", [name], _REGISTRY))
    return _REGISTRY[name]


def config_defaults(name: str) -> dict[str, Any]:
    """Every key model ``name`` accepts (data keys included) with its default (``inspect.Parameter.empty`` if none)."""
    cls = model_class(name)
    out: dict[str, Any] = {}
    for pname, par in inspect.signature(cls.__init__).parameters.items():
        if pname != "self" and par.kind not in (par.VAR_POSITIONAL, par.VAR_KEYWORD):
            out[pname] = par.default
    for key, default in cls.extra_config_defaults().items():
        out.setdefault(key, default)
    return out


def _check_value(name: str, key: str, value: Any, default: Any) -> None:
    """Type and range of one key, judged by its default: ints >= 1 (>= 0 where the default is 0), dropouts in
    [0, 1), finite floats, bools, strings."""
    where = f"model {name!r} key {key!r}"
    if default is inspect.Parameter.empty or default is None:
        return
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        low = 0 if default == 0 else 1
        if value < low:
            raise ConfigError(f"{where}: expected an integer >= {low}, got {value}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if "drop" in key and not 0.0 <= value < 1.0:
            raise ConfigError(f"{where}: a dropout rate must lie in [0, 1), got {value}")
        if "drop" not in key and value < 0:
            raise ConfigError(f"{where}: expected a number >= 0, got {value}")
    elif isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")


def check_config_keys(name: str, cfg: dict, allow_data_keys: bool = False, where: str = "") -> None:
    """Reject unknown keys (with the closest accepted one) and ill-typed values of a model config.

    ``allow_data_keys=False`` (user configs: CLI, notebooks, grids) also rejects ``dims``/``seq_lens``/``output_dim``,
    which always come from the data.
    """
    defaults = config_defaults(name)
    prefix = f"{where}: " if where else ""
    if not allow_data_keys:
        data = [k for k in cfg if k in DATA_KEYS]
        if data:
            raise ConfigError(f"{prefix}model_config key {data[0]!r} comes from the data and cannot be set")
        defaults = {k: v for k, v in defaults.items() if k not in DATA_KEYS}
    unknown = set(cfg) - set(defaults)
    if unknown:
        raise ConfigError(f"{prefix}model {name!r}: " + unknown_keys_message("key", unknown, defaults))
    for key, value in cfg.items():
        if key not in DATA_KEYS:
            _check_value(name, key, value, defaults[key])
    for width, heads in WIDTH_HEADS:
        if width in defaults and heads in defaults:
            w, h = cfg.get(width, defaults[width]), cfg.get(heads, defaults[heads])
            if isinstance(w, int) and isinstance(h, int) and h > 0 and w % h:
                raise ConfigError(f"{prefix}model {name!r}: {width}={w} must be divisible by {heads}={h}")


def validate_model_config(name: str, cfg: dict, where: str = "") -> None:
    """Check a user's ``model_config`` for model ``name`` without building the model (see :func:`check_config_keys`)."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"{where + ': ' if where else ''}model_config must be a mapping of keys to values, "
                          f"got {type(cfg).__name__}")
    check_config_keys(name, cfg, allow_data_keys=False, where=where)


class MissingModalityModel(nn.Module):
    """Base class: stores its config (for checkpoints) and defines the training-loss hook."""

    registry_name: str = "?"
    #: True when the model is prompt-tuned from a pretrained ``mult`` checkpoint (backbone frozen).
    uses_pretrained_backbone: bool = False
    #: False for a model that ignores ``modes`` and always reads every modality (plain ``mult``).
    reads_modes: bool = True
    #: True when the inputs reach the network only through ``proj_l/a/v`` on complete data (IG on the projections is
    #: then complete: its attributions sum to ``f(x) - f(0)``).
    inputs_only_through_projections: bool = False
    #: True when an eval-mode prediction depends only on the sample's own inputs, mode and frame mask, not on the
    #: rest of its batch; :class:`mplmm.evaluate.ModePredictions` then answers mode-only masks from forced-mode passes.
    predicts_per_sample: bool = True
    #: True when parameters are sized by the configured ``seq_lens`` (MPLMM's fusers and prompts): the model only
    #: accepts inputs of exactly those lengths; padding is then handled through ``lengths`` alone.
    fixed_seq_lens: bool = False

    @classmethod
    def extra_config_defaults(cls) -> dict[str, Any]:
        """Keys accepted through ``**cfg`` beyond the signature (e.g. the MulT backbone's), with defaults."""
        return {}

    def __init__(self, **config) -> None:
        super().__init__()
        self.config: dict = dict(config)

    def train(self, mode: bool = True) -> "MissingModalityModel":
        """Set training mode; submodules whose parameters are ALL frozen stay in inference mode (no dropout inside
        a frozen backbone) unless the config says ``frozen_dropout=True`` (the reference keeps it active)."""
        super().train(mode)
        if mode and not self.config.get("frozen_dropout", False):
            for module in self.modules():
                params = list(module.parameters())
                if module is not self and params and not any(p.requires_grad for p in params):
                    module.train(False)
        return self

    def forward(self, text, audio, vision, modes, frame_masks=None, lengths=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def compute_loss(
        self,
        text: torch.Tensor,
        audio: torch.Tensor,
        vision: torch.Tensor,
        modes: torch.Tensor,
        target: torch.Tensor,
        criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        frame_masks: Optional[dict] = None,
        lengths: Optional[torch.Tensor] = None,
        observed_modes: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Return ``(loss, pred, parts)``; ``parts`` maps loss-term names to detached 0-dim tensors (or floats) for
        logging: the training loop sums them on the device, so that no step waits for the GPU. ``observed_modes``
        is ignored here (see the module docstring)."""
        if lengths is None:  # models written before lengths existed keep working
            pred = self(text, audio, vision, modes, frame_masks)
        else:
            pred = self(text, audio, vision, modes, frame_masks, lengths=lengths)
        loss = criterion(pred, target)
        return loss, pred, {"task": loss.detach()}

    def load_pretrained_backbone(self, state_dict: dict, config: dict) -> dict:
        """Copy a pretrained backbone into this model and freeze it; returns a report. Default: unsupported."""
        raise NotImplementedError(f"model {self.registry_name!r} does not take a pretrained backbone")

    def parameter_counts(self) -> dict[str, int]:
        """``{"total", "trainable", "frozen"}`` parameter counts."""
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return {"total": total, "trainable": trainable, "frozen": total - trainable}

    def trainable_parameters(self) -> list[tuple[str, int]]:
        """Names and sizes of the parameters that train."""
        return [(n, p.numel()) for n, p in self.named_parameters() if p.requires_grad]
