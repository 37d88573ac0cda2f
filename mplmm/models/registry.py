"""The model registry: build a registered model from its typed config, look one up, check a user's ``model_config``.

Imports every model module, so that their ``@register`` decorators have run (:mod:`mplmm.models.base` holds the
registry itself). Each model's keys are the fields of its config class (``MulTConfig``, ``MPLMMConfig``, ...,
:mod:`mplmm.config`): one spelling, documented aliases, checked by the config itself.
"""
from __future__ import annotations

import inspect
from typing import Any, Mapping

from ..config import bad_value, defaults, from_dict, rename_aliases
from ..errors import ConfigError, unknown_keys_message
from . import baselines, comp, dcp, emt_dlfr, mmml, mplmm, mult  # noqa: F401  (their @register decorators)
from .base import REGISTRY, MissingModalityModel


def available_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(REGISTRY)


#: keys every model takes from the data, never from the user's ``model_config``
DATA_KEYS = ("dims", "seq_lens", "output_dim")


def create_model(name: str, **cfg) -> "MissingModalityModel":
    """Build registered model ``name`` from keyword config: the data keys ``dims``, ``seq_lens``, ``output_dim`` and
    the keys of its config class (aliases accepted).

    Unknown keys and values of the wrong type or range are a one-line :class:`ConfigError` naming the accepted keys
    and the closest match.
    """
    cls = model_class(name)
    data = {k: cfg.pop(k) for k in DATA_KEYS if k in cfg}
    return cls(**data, config=from_dict(cls.config_class, cfg, f"model {name!r}"))


def model_class(name: str) -> type["MissingModalityModel"]:
    """The class registered as ``name``."""
    if name not in REGISTRY:
        raise ConfigError(unknown_keys_message("model", [name], REGISTRY))
    return REGISTRY[name]


def config_class(name: str) -> type:
    """The typed config (dataclass) of model ``name``."""
    return model_class(name).config_class


def config_defaults(name: str) -> dict[str, Any]:
    """Every key model ``name`` accepts (data keys included) with its default (``inspect.Parameter.empty`` if none)."""
    return {"dims": inspect.Parameter.empty, "seq_lens": inspect.Parameter.empty, "output_dim": 1,
            **defaults(config_class(name))}


def canonical_config(name: str, cfg: Mapping) -> dict:
    """``cfg`` with the aliases of model ``name``'s keys renamed (``d_model`` → ``d``, ...), nothing checked; ``cfg``
    as it is for a model not registered. Reads checkpoints saved under older names."""
    if name not in REGISTRY:
        return dict(cfg)
    return rename_aliases(config_class(name), cfg)


def validate_model_config(name: str, cfg: dict, where: str = "") -> None:
    """Check a user's ``model_config`` for model ``name`` without building the model: the keys of its config class,
    never the data keys (``dims``, ``seq_lens``, ``output_dim`` come from the data)."""
    w = f"{where}: model {name!r}" if where else f"model {name!r}"
    cls = config_class(name)
    if isinstance(cfg, Mapping):
        data = [k for k in cfg if k in DATA_KEYS]
        if data:
            raise ConfigError(bad_value(w, data[0], "no value (it comes from the data)", cfg[data[0]]))
    from_dict(cls, cfg, w)
