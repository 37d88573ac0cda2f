"""Models: one registry (:func:`create_model`), every model under the same missing-modality contract."""
from .base import MissingModalityModel, available_models, create_model, model_class, register

__all__ = ["MissingModalityModel", "available_models", "create_model", "model_class", "register"]
