"""Models: one registry (:func:`create_model`), every model under the same missing-modality contract, each built
from its typed config (:mod:`mplmm.config`)."""
from .base import MissingModalityModel, register
from .registry import (
    available_models,
    canonical_config,
    config_class,
    config_defaults,
    create_model,
    model_class,
    validate_model_config,
)

__all__ = ["MissingModalityModel", "available_models", "canonical_config", "config_class", "config_defaults",
           "create_model", "model_class", "register", "validate_model_config"]
