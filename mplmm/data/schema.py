"""The one in-memory dataset type every reader produces and every model consumes.

Schema (per split ``train`` / ``valid`` / ``test``):

========== ================= =========================================================
key        dtype / shape     meaning
========== ================= =========================================================
text       float32 (N,T_l,D_l) text features, time-major inside a sample
audio      float32 (N,T_a,D_a) audio features
vision     float32 (N,T_v,D_v) vision features
labels     float32 (N,)       regression target, or int64 (N,) class index
ids        str (N,)           sample ids (the missing-modality masks are a function of them)
lengths    dict or None       optional per-modality valid lengths, int64 (N,)
========== ================= =========================================================

Dataset-level fields: ``task`` (``"regression"`` or ``"classification"``), ``class_names`` (classification),
``label_range`` (regression, e.g. ``(-3, 3)``), ``threshold`` (generic regression family: the binary-accuracy
threshold), ``metric_family`` (one of :data:`METRIC_FAMILIES`: which metric set applies, see ``docs/protocol_metrics.md``),
``name``, ``source`` (path or ``"synthetic"``), ``format`` (which reader produced it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from ..constants import MODALITIES
from ..errors import UserError

SPLITS: tuple[str, str, str] = ("train", "valid", "test")
TASKS = ("regression", "classification")
METRIC_FAMILIES = ("mosi", "sims", "regression", "iemocap", "iemocap_mult", "classification")


class DataError(UserError):
    """A dataset file or array does not match the documented schema (one-line, user-facing message)."""


@dataclass
class Split:
    """One split of a :class:`MultimodalDataset`."""

    text: np.ndarray
    audio: np.ndarray
    vision: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    lengths: Optional[dict[str, np.ndarray]] = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def modality(self, name: str) -> np.ndarray:
        """Return the array of modality ``name`` (one of ``text``, ``audio``, ``vision``)."""
        if name not in MODALITIES:
            raise KeyError(f"unknown modality {name!r}; expected one of {MODALITIES}")
        return getattr(self, name)

    def subset(self, index: np.ndarray) -> "Split":
        """Rows ``index`` of this split (a new :class:`Split`)."""
        lengths = None if self.lengths is None else {k: v[index] for k, v in self.lengths.items()}
        return Split(self.text[index], self.audio[index], self.vision[index], self.labels[index], self.ids[index], lengths)


@dataclass
class MultimodalDataset:
    """A three-modality dataset with train / valid / test splits (see module docstring for the schema)."""

    name: str
    splits: dict[str, Split]
    task: str = "regression"
    class_names: Optional[list[str]] = None
    label_range: Optional[tuple[float, float]] = None
    metric_family: str = "mosi"
    source: str = "synthetic"
    format: str = "synthetic"
    notes: list[str] = field(default_factory=list)
    threshold: Optional[float] = None
    #: True when ``label_range`` was inferred from the training split (then not written into saved files' meta)
    label_range_inferred: bool = False

    @classmethod
    def from_arrays(cls, text: Sequence[Any], audio: Sequence[Any], vision: Sequence[Any], labels: Sequence[Any],
                    splits: Sequence[str], ids: Optional[Sequence[str]] = None, **options: Any) -> "MultimodalDataset":
        """A dataset from one array per modality per utterance (``(T_i, D)`` of any length ``T_i``, or ``(D,)``),
        labels (numbers or class-name strings) and each utterance's split (``train``/``valid``/``test``).

        Sequences are zero-padded to the longest per modality (or to ``seq_lens``) and their lengths recorded.
        ``options``: ``name``, ``task``, ``class_names``, ``label_range``, ``threshold``, ``metric_family``,
        ``seq_lens`` (see :func:`mplmm.data.arrays.dataset_from_arrays`).
        """
        from .arrays import dataset_from_arrays

        return dataset_from_arrays(text, audio, vision, labels, splits, ids, **options)

    def __getitem__(self, split: str) -> Split:
        if split not in self.splits:
            raise KeyError(f"dataset {self.name!r} has no split {split!r}; it has {sorted(self.splits)}")
        return self.splits[split]

    @property
    def dims(self) -> tuple[int, int, int]:
        """Feature dimensions ``(D_text, D_audio, D_vision)``."""
        s = self.splits["train"]
        return tuple(int(s.modality(m).shape[2]) for m in MODALITIES)  # type: ignore[return-value]

    @property
    def seq_lens(self) -> tuple[int, int, int]:
        """Sequence lengths ``(T_text, T_audio, T_vision)``."""
        s = self.splits["train"]
        return tuple(int(s.modality(m).shape[1]) for m in MODALITIES)  # type: ignore[return-value]

    @property
    def output_dim(self) -> int:
        """1 for regression, the number of classes for classification."""
        return 1 if self.task == "regression" else len(self.class_names or [])

    def signature(self) -> dict:
        """What a model trained on this dataset depends on (saved in checkpoints, checked when they are loaded)."""
        return {"name": self.name, "task": self.task, "dims": list(self.dims), "seq_lens": list(self.seq_lens),
                "output_dim": self.output_dim, "class_names": self.class_names, "metric_family": self.metric_family,
                "label_range": list(self.label_range) if self.label_range else None, "threshold": self.threshold}

    def summary(self) -> dict:
        """A small JSON-able description (sizes, dims, lengths, task)."""
        return {
            "name": self.name,
            "format": self.format,
            "source": self.source,
            "task": self.task,
            "metric_family": self.metric_family,
            "class_names": self.class_names,
            "label_range": self.label_range,
            "threshold": self.threshold,
            "dims": dict(zip(MODALITIES, self.dims)),
            "seq_lens": dict(zip(MODALITIES, self.seq_lens)),
            "sizes": {k: len(v) for k, v in self.splits.items()},
        }
