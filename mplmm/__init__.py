"""mplmm — a workbench for multimodal learning with missing modalities (MPLMM, MulT and peer methods).

The short Python API (imported lazily, so ``import mplmm`` stays light)::

    import mplmm
    ds = mplmm.load_dataset("my_features.npz")            # any supported layout; absent modalities are data
    model = mplmm.load_model("runs/mplmm/best.pt")         # weights + what the training data looked like
    table = mplmm.predict(model, "new_utterances.npz")      # one row per sample: mode used, prediction, label
"""
from __future__ import annotations

from typing import Any

from .constants import MODALITIES, MODE_NAMES, MODE_PRESENT, Mode

__version__ = "0.1.0"

#: public names loaded on first use: name -> (module, attribute)
_LAZY = {
    "load_dataset": ("mplmm.data", "load_dataset"),
    "from_arrays": ("mplmm.data", "from_arrays"),
    "MultimodalDataset": ("mplmm.data", "MultimodalDataset"),
    "load_model": ("mplmm.checkpoint", "load_model"),
    "predict": ("mplmm.prediction", "predict"),
    "prepare_data": ("mplmm.prediction", "prepare_data"),
    "write_table": ("mplmm.prediction", "write_table"),
    "explain": ("mplmm.explanation", "explain"),
}

__all__ = ["MODALITIES", "MODE_NAMES", "MODE_PRESENT", "Mode", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mplmm' has no attribute {name!r}")
