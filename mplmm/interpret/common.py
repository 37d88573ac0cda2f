"""Shared pieces of the interpretation functions: batches of a split, the modes tensor, eval mode, model facts."""
from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..constants import MODALITIES, N_MODES
from ..errors import ConfigError
from ..utils import model_device

#: ``(text, audio, vision)`` float tensors of one batch
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def model_name(model: nn.Module) -> str:
    """The registry name of an mplmm model (``"mplmm"``, ``"mult"``, ...), else its class name."""
    return getattr(model, "registry_name", None) or type(model).__name__


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode (no dropout) for the block and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def require(model: nn.Module, attr: str, what: str) -> None:
    """Raise ``NotImplementedError`` naming ``what`` when ``model`` lacks the MPLMM attribute ``attr``."""
    if not hasattr(model, attr):
        raise NotImplementedError(f"{what} needs an MPLMM model (with `{attr}`); model {model_name(model)!r} has "
                                  f"none")


def modes_tensor(modes: Union[int, Sequence[int], np.ndarray, torch.Tensor], batch_size: int,
                 device: Union[str, torch.device] = "cpu") -> torch.Tensor:
    """``modes`` as a LongTensor ``(B,)`` (an int is repeated); checks the range 0..6."""
    if isinstance(modes, (int, np.integer)):
        out = torch.full((batch_size,), int(modes), dtype=torch.long, device=device)
    else:
        out = torch.as_tensor(np.asarray(modes) if not torch.is_tensor(modes) else modes,
                              dtype=torch.long).to(device).view(-1)
        if out.numel() == 1 and batch_size != 1:
            out = out.expand(batch_size).clone()
    if out.numel() != batch_size:
        raise ValueError(f"modes has {out.numel()} entries for a batch of {batch_size}")
    if out.numel() and (int(out.min()) < 0 or int(out.max()) >= N_MODES):
        raise ValueError(f"modes must be in 0..{N_MODES - 1}, got {out.tolist()}")
    return out


def modes_list(modes: Union[int, Iterable[int]]) -> list[int]:
    """``modes`` (one int or several) as a list of ints in 0..6 (``ConfigError`` otherwise)."""
    lst = [int(modes)] if isinstance(modes, (int, np.integer)) else [int(m) for m in modes]
    bad = [m for m in lst if not 0 <= m < N_MODES]
    if bad:
        raise ConfigError(f"modes must be in 0..{N_MODES - 1}, got {bad}")
    return lst


def get_batch(ds, split: str = "test", n: Optional[int] = None, indices: Optional[Sequence[int]] = None,
              device: Union[str, torch.device] = "cpu") -> Batch:
    """``(text, audio, vision)`` float tensors of ``split``: rows ``indices``, else the first ``n`` (all if None)."""
    sp = ds[split]
    if indices is None:
        indices = np.arange(len(sp) if n is None else min(int(n), len(sp)))
    idx = np.asarray(indices, dtype=np.int64)
    return tuple(torch.as_tensor(np.ascontiguousarray(sp.modality(m)[idx]), dtype=torch.float32, device=device)
                 for m in MODALITIES)  # type: ignore[return-value]


def batches(ds, split: str, n_samples: Optional[int], batch_size: int,
            device: Union[str, torch.device]) -> Iterator[tuple[np.ndarray, Batch]]:
    """``(row indices, batch)`` over the first ``n_samples`` rows of ``split`` (all if None), ``batch_size`` at a
    time."""
    total = len(ds[split]) if n_samples is None else min(int(n_samples), len(ds[split]))
    for start in range(0, total, batch_size):
        idx = np.arange(start, min(start + batch_size, total))
        yield idx, get_batch(ds, split, indices=idx, device=device)


__all__ = ["Batch", "batches", "eval_mode", "get_batch", "model_device", "model_name", "modes_list", "modes_tensor",
           "require"]
