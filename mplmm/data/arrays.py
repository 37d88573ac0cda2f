"""Own features: per-utterance arrays of varying length → a validated :class:`MultimodalDataset`.

:func:`dataset_from_arrays` is behind ``MultimodalDataset.from_arrays``; :func:`pad_sequences` zero-pads ragged
sequences and records their lengths (the project's ``.npz`` keeps them as ``<split>__<modality>_lengths``).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from ..constants import MODALITIES
from .schema import SPLITS, DataError, MultimodalDataset
from .validate import shape_str

#: accepted spellings of the three splits in a labels table
SPLIT_ALIASES = {"train": "train", "training": "train", "trn": "train", "valid": "valid", "val": "valid",
                 "validation": "valid", "dev": "valid", "test": "test", "tst": "test", "testing": "test"}


def pad_sequences(items: Sequence[Any], where: str, max_len: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """``(N, T, D)`` float32 zero-padded at the end, and the ``(N,)`` lengths (after truncation to ``max_len``).

    Each item is ``(T_i, D)`` or ``(D,)`` (one frame); every item must have the same ``D``.
    """
    arrays = []
    for i, item in enumerate(items):
        a = np.asarray(item, dtype=np.float32)
        if a.ndim == 1:
            a = a[None, :]
        if a.ndim != 2:
            raise DataError(f"{where} item {i}: expected (T, D) or (D,), got shape {shape_str(a.shape)}")
        arrays.append(a)
    if not arrays:
        raise DataError(f"{where}: no utterances")
    dims = {a.shape[1] for a in arrays}
    if len(dims) > 1:
        first = arrays[0].shape[1]
        bad = next(i for i, a in enumerate(arrays) if a.shape[1] != first)
        raise DataError(f"{where}: feature dims differ: item 0 has D={first} but item {bad} has "
                        f"shape {shape_str(arrays[bad].shape)}")
    lengths = np.array([a.shape[0] for a in arrays], dtype=np.int64)
    t = int(max_len) if max_len else max(1, int(lengths.max()))
    lengths = np.minimum(lengths, t)
    out = np.zeros((len(arrays), t, arrays[0].shape[1]), dtype=np.float32)
    for i, a in enumerate(arrays):
        out[i, : lengths[i]] = a[: lengths[i]]
    return out, lengths


def normalise_splits(splits: Sequence[Any], where: str) -> np.ndarray:
    """Split names per utterance → ``train`` / ``valid`` / ``test`` (common aliases accepted)."""
    out = []
    for i, s in enumerate(splits):
        key = str(s).strip().lower()
        if key not in SPLIT_ALIASES:
            raise DataError(f"{where} row {i}: split {s!r} is not one of train, valid, test "
                            f"(aliases {', '.join(sorted(set(SPLIT_ALIASES) - set(SPLITS)))})")
        out.append(SPLIT_ALIASES[key])
    arr = np.array(out, dtype=object)
    empty = [s for s in SPLITS if not (arr == s).any()]
    if empty:
        raise DataError(f"{where}: no utterances in split(s) {empty}; every split needs at least one")
    return arr


def dataset_from_arrays(text: Sequence[Any], audio: Sequence[Any], vision: Sequence[Any], labels: Sequence[Any],
                        splits: Sequence[str], ids: Optional[Sequence[str]] = None, *, name: str = "arrays",
                        seq_lens: Optional[Sequence[int]] = None, task: Optional[str] = None,
                        class_names: Optional[Sequence[str]] = None,
                        label_range: Optional[Sequence[float]] = None, threshold: Optional[float] = None,
                        metric_family: Optional[str] = None, strict: bool = False) -> MultimodalDataset:
    """See :meth:`MultimodalDataset.from_arrays`. Labels go through the same rules as every reader."""
    from .readers_pickle import interpret_splits

    n = len(labels)
    for what, seq in (("text", text), ("audio", audio), ("vision", vision), ("splits", splits)):
        if len(seq) != n:
            raise DataError(f"{name}: {what} has {len(seq)} items but labels has {n}; give one per utterance")
    if ids is not None and len(ids) != n:
        raise DataError(f"{name}: ids has {len(ids)} items but labels has {n}")
    if seq_lens is not None and len(seq_lens) != 3:
        raise DataError(f"{name}: seq_lens needs three lengths (text, audio, vision), got {seq_lens!r}")
    split_of = normalise_splits(splits, name)
    padded = {}
    for j, (m, seq) in enumerate(zip(MODALITIES, (text, audio, vision))):
        padded[m] = pad_sequences(seq, f"{name} {m}", seq_lens[j] if seq_lens else None)
    y = np.asarray(labels, dtype=object if any(isinstance(v, (str, bytes)) for v in labels) else None)
    id_arr = np.array([str(i) for i in ids], dtype=str) if ids is not None else \
        np.array([f"utt_{i:06d}" for i in range(n)], dtype=str)
    data = {}
    for s in SPLITS:
        rows = np.flatnonzero(split_of == s)
        data[s] = {m: padded[m][0][rows] for m in MODALITIES}
        data[s].update({f"{m}_lengths": padded[m][1][rows] for m in MODALITIES})
        data[s].update(labels=y[rows], id=id_arr[rows])
    return interpret_splits(data, source=name, fmt="arrays", strict=strict, name=name, task=task,
                            class_names=class_names, label_range=label_range, threshold=threshold,
                            metric_family=metric_family)
