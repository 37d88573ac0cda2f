"""The model registry: build a registered model, look one up, check a user's ``model_config``.

Imports every model module, so that their ``@register`` decorators have run (:mod:`mplmm.models.base` holds the
registry itself).
"""
from __future__ import annotations

import inspect
import math
from typing import Any

from ..errors import ConfigError, unknown_keys_message
from . import baselines, comp, dcp, emt_dlfr, mmml, mplmm, mult  # noqa: F401  (their @register decorators)
from .base import REGISTRY, MissingModalityModel


def available_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(REGISTRY)


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
    if name not in REGISTRY:
        raise ConfigError(unknown_keys_message("model", [name], REGISTRY))
    return REGISTRY[name]


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
