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

import dataclasses
from typing import Any, Callable, Optional

import torch
from torch import nn

from ..config import bad_value, check, to_dict
from ..errors import ConfigError

#: registered name → model class (filled by :func:`register`; :mod:`mplmm.models.registry` imports every model module)
REGISTRY: dict[str, type["MissingModalityModel"]] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator adding a model to the registry under ``name``; the class names its typed config
    (``config_class``)."""

    def deco(cls: type) -> type:
        if not dataclasses.is_dataclass(getattr(cls, "config_class", None)):
            raise TypeError(f"model {name!r}: config_class must be a dataclass of its keys (see mplmm.config)")
        if name in REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        cls.registry_name = name
        REGISTRY[name] = cls
        return cls

    return deco


class MissingModalityModel(nn.Module):
    """Base class: built from its typed config (``config_class``; kept as ``settings``), stores it as a plain mapping
    (``config``, for checkpoints) and defines the training-loss hook."""

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

    #: the model's typed config (a dataclass of :mod:`mplmm.config` options): every key the model takes besides the
    #: data keys ``dims``, ``seq_lens``, ``output_dim``
    config_class: type = type(None)

    def __init__(self, dims, seq_lens, output_dim: int = 1, config: Any = None) -> None:
        """Check ``config`` (default: the config class's defaults; :func:`mplmm.config.check`) and keep it as
        ``self.settings``; ``self.config``, what checkpoints store, is the data keys then every key of the config."""
        super().__init__()
        self.settings = check(self.config_class() if config is None else config, f"model {self.registry_name!r}")
        self.config: dict = {"dims": list(dims), "seq_lens": list(seq_lens), "output_dim": output_dim,
                             **to_dict(self.settings)}

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


def check_heads(where: str, d: int, num_heads: int) -> None:
    """A one-line :class:`~mplmm.errors.ConfigError` unless ``num_heads`` divides the width ``d``."""
    if d % num_heads:
        raise ConfigError(bad_value(where, "num_heads", f"a divisor of d={d}", num_heads))
