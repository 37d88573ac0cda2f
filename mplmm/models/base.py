"""Model contract and the one registry.

Every model takes the **complete** inputs plus the per-sample missing mode and is itself responsible for never
reading a missing modality (MPLMM generates it, ``mult_zero`` zero-fills it, ...)::

    pred = model(text, audio, vision, modes, frame_masks=None)   # (B, output_dim)

* ``text`` ``(B, T_l, D_l)``, ``audio`` ``(B, T_a, D_a)``, ``vision`` ``(B, T_v, D_v)`` float tensors, batch-first.
* ``modes`` ``LongTensor (B,)`` in 0..6 (:data:`mplmm.constants.MODE_PRESENT`).
* ``frame_masks`` optional dict modality -> ``BoolTensor (B, T_m)``, True = frame kept (frame-level protocol).

Training goes through :meth:`MissingModalityModel.compute_loss`, which models with auxiliary losses override.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

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


def create_model(name: str, **cfg) -> "MissingModalityModel":
    """Build registered model ``name`` from keyword config (``dims``, ``seq_lens``, ``output_dim``, ...)."""
    from . import _load_all  # noqa: F401

    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**cfg)


def model_class(name: str) -> type["MissingModalityModel"]:
    """The class registered as ``name``."""
    from . import _load_all  # noqa: F401

    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


class MissingModalityModel(nn.Module):
    """Base class: stores its config (for checkpoints) and defines the training-loss hook."""

    registry_name: str = "?"
    #: True when the model is prompt-tuned from a pretrained ``mult`` checkpoint (backbone frozen).
    uses_pretrained_backbone: bool = False

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

    def forward(self, text, audio, vision, modes, frame_masks=None):  # pragma: no cover - abstract
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
    ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Return ``(loss, pred, parts)``; ``parts`` maps loss-term names to detached 0-dim tensors (or floats) for
        logging: the training loop sums them on the device, so that no step waits for the GPU."""
        pred = self(text, audio, vision, modes, frame_masks)
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
