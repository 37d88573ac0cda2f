"""Own features: per-utterance arrays of varying length → a validated :class:`MultimodalDataset`.

:func:`from_arrays` builds the dataset (``mplmm.data.from_arrays``); :func:`pad_sequences` zero-pads ragged
sequences and records their lengths (the project's ``.npz`` keeps them as ``<split>__<modality>_lengths``).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from ..constants import MODALITIES
from .readers_pickle import interpret_splits
from .schema import SPLITS, DataError, MultimodalDataset
from .validate import item_array, shape_str

#: accepted spellings of the three splits in a labels table
SPLIT_ALIASES = {"train": "train", "training": "train", "trn": "train", "valid": "valid", "val": "valid",
                 "validation": "valid", "dev": "valid", "test": "test", "tst": "test", "testing": "test"}


def pad_sequences(items: Sequence[Any], where: str, max_len: Optional[int] = None,
                  dim: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """``(N, T, D)`` float32 zero-padded at the end, and the ``(N,)`` lengths (after truncation to ``max_len``).

    Each item is ``(T_i, D)``, ``(D,)`` (one frame), or ``None`` / an empty array (the modality is absent for that
    utterance: length 0); every recorded item must have the same ``D``. ``dim``: the feature dim when every item
    may be absent (then ``(N, 1, dim)`` zeros, all lengths 0).
    """
    if not len(items):
        raise DataError(f"{where}: no utterances")
    arrays = [item_array(item, where, i) for i, item in enumerate(items)]
    real = [(i, a) for i, a in enumerate(arrays) if a is not None]
    if not real and dim is None:
        raise DataError(f"{where}: every utterance is absent (None or empty); cannot tell the feature dim")
    first = real[0][1].shape[1] if real else int(dim)
    bad = next((i for i, a in real if a.shape[1] != first), None)
    if bad is not None:
        raise DataError(f"{where}: feature dims differ: item {real[0][0]} has D={first} but item {bad} has "
                        f"shape {shape_str(arrays[bad].shape)}")
    lengths = np.array([0 if a is None else a.shape[0] for a in arrays], dtype=np.int64)
    t = int(max_len) if max_len else max(1, int(lengths.max()))
    lengths = np.minimum(lengths, t)
    out = np.zeros((len(arrays), t, first), dtype=np.float32)
    for i, a in real:
        out[i, : lengths[i]] = a[: lengths[i]]
    return out, lengths


def normalise_splits(splits: Optional[Sequence[Any]], where: str, n: int, require_all: bool = True) -> np.ndarray:
    """Split names per utterance → ``train`` / ``valid`` / ``test`` (common aliases accepted); None → every
    utterance ``unsplit`` (data for prediction). ``require_all``: every one of the three splits must occur."""
    if splits is None:
        return np.array(["unsplit"] * n, dtype=object)
    out = []
    for i, s in enumerate(splits):
        key = str(s).strip().lower()
        if key not in SPLIT_ALIASES:
            raise DataError(f"{where} row {i}: split {s!r} is not one of train, valid, test "
                            f"(aliases {', '.join(sorted(set(SPLIT_ALIASES) - set(SPLITS)))})")
        out.append(SPLIT_ALIASES[key])
    arr = np.array(out, dtype=object)
    empty = [s for s in SPLITS if not (arr == s).any()]
    if empty and require_all:
        raise DataError(f"{where}: no utterances in split(s) {empty}; every split needs at least one (data that is "
                        "only predicted on: load it with for_prediction=True)")
    return arr


def from_arrays(text: Sequence[Any], audio: Sequence[Any], vision: Sequence[Any],
                labels: Optional[Sequence[Any]] = None, splits: Optional[Sequence[str]] = None,
                ids: Optional[Sequence[str]] = None, *, name: str = "arrays",
                seq_lens: Optional[Sequence[int]] = None, task: Optional[str] = None,
                class_names: Optional[Sequence[str]] = None,
                label_range: Optional[Sequence[float]] = None, threshold: Optional[float] = None,
                metric_family: Optional[str] = None, strict: bool = False, for_prediction: bool = False,
                drop_empty: bool = False, dims: Optional[Sequence[int]] = None) -> MultimodalDataset:
    """A dataset from one array per modality per utterance (``(T_i, D)`` of any length ``T_i``, ``(D,)``, or
    ``None`` when that modality was never recorded for the utterance), labels (numbers or class-name strings)
    and each utterance's split (``train``/``valid``/``test``). Without labels or splits the dataset is for
    prediction only (one ``unsplit`` split; ``for_prediction`` is then implied).

    Sequences are zero-padded to the longest per modality (or to ``seq_lens``) and their lengths recorded. Labels
    go through the same rules as every reader. ``dims``: the feature dims (text, audio, vision), needed only where a
    modality is absent for every utterance.
    """
    n = len(text)
    for_prediction = for_prediction or labels is None or splits is None
    for what, seq in (("audio", audio), ("vision", vision), ("labels", labels), ("splits", splits),
                      ("ids", ids)):
        if seq is not None and len(seq) != n:
            raise DataError(f"{name}: {what} has {len(seq)} items but text has {n}; give one per utterance")
    if seq_lens is not None and len(seq_lens) != 3:
        raise DataError(f"{name}: seq_lens needs three lengths (text, audio, vision), got {seq_lens!r}")
    split_of = normalise_splits(splits, name, n, require_all=not for_prediction)
    padded = {m: pad_sequences(seq, f"{name} {m}", seq_lens[j] if seq_lens else None, dims[j] if dims else None)
              for j, (m, seq) in enumerate(zip(MODALITIES, (text, audio, vision)))}
    y = None if labels is None else \
        np.asarray(labels, dtype=object if any(isinstance(v, (str, bytes)) for v in labels) else None)
    id_arr = np.array([str(i) for i in ids], dtype=str) if ids is not None else \
        np.array([f"utt_{i:06d}" for i in range(n)], dtype=str)
    data = {}
    for s in [s for s in (*SPLITS, "unsplit") if (split_of == s).any()]:
        rows = np.flatnonzero(split_of == s)
        data[s] = {m: padded[m][0][rows] for m in MODALITIES}
        data[s].update({f"{m}_lengths": padded[m][1][rows] for m in MODALITIES})
        data[s].update(id=id_arr[rows], **({} if y is None else {"labels": y[rows]}))
    return interpret_splits(data, source=name, fmt="arrays", strict=strict, name=name, task=task,
                            class_names=class_names, label_range=label_range, threshold=threshold,
                            metric_family=metric_family, for_prediction=for_prediction, drop_empty=drop_empty)
