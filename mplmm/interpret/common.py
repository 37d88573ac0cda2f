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


class Samples(tuple):
    """``(text, audio, vision)`` float tensors of chosen samples (a plain 3-tuple for every caller), carrying what
    the model needs besides the features: ``lengths`` ``(B, 3)`` (None when the split records none), ``present``
    ``(B, 3)`` bool (what each sample really has), ``ids``, ``rows`` (indices in the split) and ``split``."""

    lengths: Optional[torch.Tensor]
    present: np.ndarray
    ids: list[str]
    rows: np.ndarray
    split: str

    def __new__(cls, x: Sequence[torch.Tensor], lengths: Optional[torch.Tensor] = None,
                present: Optional[np.ndarray] = None, ids: Sequence[str] = (), rows: Sequence[int] = (),
                split: str = "") -> "Samples":
        obj = super().__new__(cls, tuple(x))
        obj.lengths = lengths
        obj.present = np.ones((x[0].shape[0], 3), dtype=bool) if present is None else np.asarray(present, bool)
        obj.ids, obj.rows, obj.split = [str(i) for i in ids], np.asarray(rows, dtype=np.int64), split
        return obj

    def to(self, device: Union[str, torch.device]) -> "Samples":
        """The same samples on ``device``."""
        lengths = None if self.lengths is None else self.lengths.to(device)
        return Samples([t.to(device).float() for t in self], lengths, self.present, self.ids, self.rows, self.split)


def batch_parts(batch: Batch) -> tuple[Optional[torch.Tensor], Optional[np.ndarray]]:
    """``(lengths, present)`` of a :class:`Samples` batch; ``(None, None)`` for a plain tuple of tensors."""
    if isinstance(batch, Samples):
        return batch.lengths, batch.present
    return None, None


def effective_modes_tensor(modes: Union[int, Sequence[int], np.ndarray, torch.Tensor], batch: Batch,
                           device: Union[str, torch.device] = "cpu") -> torch.Tensor:
    """:func:`modes_tensor` for ``batch``, made what each sample can really run in when ``batch`` knows what it has
    (:class:`Samples`): a forced mode never gives a sample a modality it lacks."""
    from ..missing import effective_modes

    m = modes_tensor(modes, batch[0].shape[0], device)
    _, present = batch_parts(batch)
    if present is None or present.all():
        return m
    return torch.as_tensor(effective_modes(m.cpu().numpy(), present), device=device)


def sample_indices(ds, split: str, ids: Optional[Sequence[str]] = None, n: Optional[int] = None) -> np.ndarray:
    """Row indices of ``split``: those of ``ids`` (in that order; an unknown id is a one-line ``DataError`` naming
    it), else the first ``n`` (all when None)."""
    from ..data.schema import DataError

    sp = ds[split]
    if ids:
        index = {str(u): i for i, u in enumerate(sp.ids.tolist())}
        missing = [str(u) for u in ids if str(u) not in index]
        if missing:
            raise DataError(f"{ds.source} [{split}]: no sample with id {missing[0]!r}; ids look like "
                            f"{', '.join(list(index)[:3])}")
        return np.array([index[str(u)] for u in ids], dtype=np.int64)
    return np.arange(len(sp) if n is None else min(int(n), len(sp)))


def get_batch(ds, split: str = "test", n: Optional[int] = None, indices: Optional[Sequence[int]] = None,
              device: Union[str, torch.device] = "cpu", ids: Optional[Sequence[str]] = None) -> Samples:
    """``(text, audio, vision)`` float tensors of ``split`` (a :class:`Samples`, with lengths and presence): the
    samples ``ids``, else rows ``indices``, else the first ``n`` (all if None)."""
    sp = ds[split]
    idx = np.asarray(indices, dtype=np.int64) if indices is not None and not ids else sample_indices(ds, split, ids, n)
    x = [torch.as_tensor(np.ascontiguousarray(sp.modality(m)[idx]), dtype=torch.float32, device=device)
         for m in MODALITIES]
    mat = sp.length_matrix()
    lengths = None if mat is None else torch.as_tensor(mat[idx], device=device)
    return Samples(x, lengths, sp.present[idx], sp.ids[idx].tolist(), idx, split)


def rows_for_mode(ds, split: str, rows: np.ndarray, mode: Optional[int]) -> np.ndarray:
    """The rows of ``split`` among ``rows`` that have every modality of missing mode ``mode`` (all for None): those
    that really run in it when forced into it."""
    if mode is None:
        return rows
    from ..constants import PRESENT_ROWS

    need = np.asarray(PRESENT_ROWS[int(mode)], dtype=bool)
    return rows[(ds[split].present[rows] | ~need).all(axis=1)]


def batches(ds, split: str, n_samples: Optional[int], batch_size: int, device: Union[str, torch.device],
            indices: Optional[Sequence[int]] = None, mode: Optional[int] = None) -> Iterator[tuple[np.ndarray, Samples]]:
    """``(row indices, batch)`` over rows ``indices`` of ``split``, else its first ``n_samples`` rows (all if None),
    ``batch_size`` at a time; with ``mode``, only the rows that can run in that missing mode
    (:func:`rows_for_mode`)."""
    rows = np.asarray(indices, dtype=np.int64) if indices is not None else \
        np.arange(len(ds[split]) if n_samples is None else min(int(n_samples), len(ds[split])))
    rows = rows_for_mode(ds, split, rows, mode)
    for start in range(0, len(rows), batch_size):
        idx = rows[start:start + batch_size]
        yield idx, get_batch(ds, split, indices=idx, device=device)


__all__ = ["Batch", "Samples", "batch_parts", "batches", "effective_modes_tensor", "eval_mode", "get_batch",
           "model_device", "model_name", "modes_list", "modes_tensor", "require", "rows_for_mode", "sample_indices"]
