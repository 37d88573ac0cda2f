"""The one in-memory dataset type every reader produces and every model consumes.

Schema (per split ``train`` / ``valid`` / ``test``):

========== =================== ================================================================================
key        dtype / shape       meaning
========== =================== ================================================================================
text       float32 (N,T_l,D_l) text features, time-major inside a sample
audio      float32 (N,T_a,D_a) audio features
vision     float32 (N,T_v,D_v) vision features
labels     float32 (N,)        regression target, or int64 (N,) class index
ids        str (N,)            sample ids (the missing-modality masks are a function of them)
lengths    dict or None        optional per-modality valid lengths, int64 (N,) (end padding after them)
present    bool (N, 3)         which modalities were recorded (text, audio, vision); an absent one is all zeros
========== =================== ================================================================================

**Absence is data**: ``present[i, j]`` False means modality ``j`` was never recorded for sample ``i`` (no file, an
all-NaN or empty array, ``None``). Its features are zeros that no model reads as real: every protocol intersects its
simulated drops with ``present`` (:func:`mplmm.missing.effective_modes`). Regression labels may be NaN and class
labels -1 only in datasets read for prediction (``load_dataset(..., for_prediction=True)``), where splits are also
optional (any of ``train``/``valid``/``test``, or ``unsplit`` for data without a split).

Dataset-level fields: ``task`` (``"regression"`` or ``"classification"``), ``class_names`` (classification),
``label_range`` (regression, e.g. ``(-3, 3)``), ``threshold`` (generic regression family: the binary-accuracy
threshold), ``metric_family`` (one of :data:`METRIC_FAMILIES`: which metric set applies, see
``docs/protocol_metrics.md``), ``name``, ``source`` (path or ``"synthetic"``), ``format`` (which reader produced it),
``features`` (how the features were made, when the file records it: :mod:`mplmm.data.provenance`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..constants import MODALITIES
from ..errors import UserError

SPLITS: tuple[str, str, str] = ("train", "valid", "test")
#: ``SPLITS`` plus ``unsplit``: the one split of data read for prediction without a split column
ALL_SPLITS: tuple[str, ...] = (*SPLITS, "unsplit")
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
    present: Optional[np.ndarray] = None  # (N, 3) bool; None: every modality recorded (filled in)

    def __post_init__(self) -> None:
        n = len(self)
        if self.present is None:
            self.present = np.ones((n, 3), dtype=bool)
        else:
            self.present = np.asarray(self.present, dtype=bool)
            if self.present.shape != (n, 3):
                raise DataError(f"present: expected shape ({n}, 3) (samples x text/audio/vision), "
                                f"got {tuple(self.present.shape)}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        shapes = ", ".join(f"{m} {tuple(self.modality(m).shape)}" for m in MODALITIES)
        lens = "" if not self.lengths else f", lengths of {'/'.join(sorted(self.lengths))}"
        return f"Split({len(self)} samples: {shapes}{lens}; {presence_text(self.present)})"

    def observed_modes(self) -> np.ndarray:
        """int64 ``(N,)``: the missing mode of what is really recorded (6 = complete)."""
        from ..missing import present_matrix_to_modes

        return present_matrix_to_modes(self.present)

    def length_matrix(self) -> Optional[np.ndarray]:
        """int64 ``(N, 3)`` valid lengths (full length where a modality has none recorded, 0 where it is absent), or
        None when the split records no lengths at all (models then take every step as real, as the reference does)."""
        if not self.lengths:
            return None
        cols = [np.asarray(self.lengths[m], dtype=np.int64) if m in self.lengths
                else np.where(self.present[:, j], self.modality(m).shape[1], 0).astype(np.int64)
                for j, m in enumerate(MODALITIES)]
        return np.stack(cols, axis=1)

    def modality(self, name: str) -> np.ndarray:
        """Return the array of modality ``name`` (one of ``text``, ``audio``, ``vision``)."""
        if name not in MODALITIES:
            raise KeyError(f"unknown modality {name!r}; expected one of {MODALITIES}")
        return getattr(self, name)

    def subset(self, index: np.ndarray) -> "Split":
        """Rows ``index`` of this split (a new :class:`Split`)."""
        lengths = None if self.lengths is None else {k: v[index] for k, v in self.lengths.items()}
        return Split(self.text[index], self.audio[index], self.vision[index], self.labels[index], self.ids[index],
                     lengths, self.present[index])


def presence_text(present: np.ndarray) -> str:
    """``"412 complete, 37 audio missing, 5 vision missing"`` for a ``(N, 3)`` presence mask (a sample lacking two
    modalities counts under both)."""
    present = np.asarray(present, dtype=bool)
    parts = [f"{int(present.all(axis=1).sum())} complete"]
    parts += [f"{int((~present[:, j]).sum())} {m} missing" for j, m in enumerate(MODALITIES)
              if (~present[:, j]).any()]
    return ", ".join(parts)


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
    #: what was done to the features after reading (``standardize``: per modality the train mean/std applied;
    #: ``seq_lens``: the lengths sequences were padded/truncated to); checkpoints store it for prediction
    preprocessing: dict = field(default_factory=dict)
    #: how the features were made, per modality (``mplmm extract`` records extractor, settings, dim and versions;
    #: see :mod:`mplmm.data.provenance`); None when the file does not say
    features: Optional[dict] = None

    def __getitem__(self, split: str) -> Split:
        if split not in self.splits:
            raise DataError(f"dataset {self.name!r} has no split {split!r}; it has {self.split_names}")
        return self.splits[split]

    def __repr__(self) -> str:
        parts = "; ".join(f"{s} {len(sp)} ({presence_text(sp.present)})" for s, sp in self.splits.items())
        return (f"MultimodalDataset({self.name!r}, {self.task}, dims {self.dims}, seq_lens {self.seq_lens}, "
                f"format {self.format}: {parts})")

    @property
    def split_names(self) -> list[str]:
        """The splits this dataset has, in :data:`ALL_SPLITS` order."""
        return [s for s in ALL_SPLITS if s in self.splits] + [s for s in self.splits if s not in ALL_SPLITS]

    def _first(self) -> Split:
        return self.splits[self.split_names[0]]

    @property
    def dims(self) -> tuple[int, int, int]:
        """Feature dimensions ``(D_text, D_audio, D_vision)``."""
        s = self._first()
        return tuple(int(s.modality(m).shape[2]) for m in MODALITIES)  # type: ignore[return-value]

    @property
    def seq_lens(self) -> tuple[int, int, int]:
        """Sequence lengths ``(T_text, T_audio, T_vision)``."""
        s = self._first()
        return tuple(int(s.modality(m).shape[1]) for m in MODALITIES)  # type: ignore[return-value]

    def presence_summary(self) -> dict[str, str]:
        """Per split, ``"412 complete, 37 audio missing, 5 vision missing"``."""
        return {s: presence_text(sp.present) for s, sp in self.splits.items()}

    @property
    def has_lengths(self) -> bool:
        """True when any split records per-sample lengths (models then mask the padding)."""
        return any(sp.lengths for sp in self.splits.values())

    @property
    def output_dim(self) -> int:
        """1 for regression, the number of classes for classification."""
        return 1 if self.task == "regression" else len(self.class_names or [])

    def signature(self) -> dict:
        """What a model trained on this dataset depends on (saved in checkpoints, checked when they are loaded)."""
        return {"name": self.name, "task": self.task, "dims": list(self.dims), "seq_lens": list(self.seq_lens),
                "output_dim": self.output_dim, "class_names": self.class_names, "metric_family": self.metric_family,
                "label_range": list(self.label_range) if self.label_range else None, "threshold": self.threshold,
                "features": self.features}

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
            "presence": self.presence_summary(),
            "lengths_recorded": self.has_lengths,
        }
