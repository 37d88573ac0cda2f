"""Models: one registry (:func:`create_model`), every model under the same missing-modality contract."""
from .base import MissingModalityModel, register
from .registry import (
    available_models,
    check_config_keys,
    config_defaults,
    create_model,
    model_class,
    validate_model_config,
)

__all__ = ["MissingModalityModel", "available_models", "check_config_keys", "config_defaults", "create_model",
           "model_class", "register", "validate_model_config"]
