"""Fixtures built to the ORIGINAL layouts (not our writer): MulT pickles with MulT's ``(N, 3)`` byte-string ids,
MMSA pickles with list-valued ``id`` / ``raw_text`` / length lists, and raw per-utterance arrays with a labels CSV.

Labels carry signal in the text features so that a tiny model can learn something.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

SIZES = {"train": 48, "valid": 16, "test": 16}


def _features(rng: np.random.Generator, n: int, t: int, d: int, signal: np.ndarray) -> np.ndarray:
    x = rng.normal(size=(n, t, d)).astype(np.float32)
    x[:, :, 0] += signal[:, None]
    return x


def mult_ids(split: str, n: int) -> np.ndarray:
    """MulT's id layout: ``(N, 3)`` byte strings — video id and two segment fields."""
    return np.array([[f"vid{split}{i // 3:03d}".encode(), str(i % 3).encode(), f"{i * 1.5:.1f}".encode()]
                     for i in range(n)], dtype=object)


def mult_pickle(path: Path, labels: str = "1-5", dims: Sequence[int] = (8, 5, 36),
                seq_lens: Sequence[int] = (6, 10, 20), seed: int = 0) -> Path:
    """A MulT-layout pickle: ``labels`` ``"1-5"`` / ``"1-7"`` ratings ``(N, 1, 1)`` or ``"iemocap"`` ``(N, 4, 2)``."""
    rng = np.random.default_rng(seed)
    data = {}
    for split, n in SIZES.items():
        if labels == "iemocap":
            cls = rng.integers(0, 4, n)
            y = np.zeros((n, 4, 2), dtype=np.float32)
            y[:, :, 0] = 1
            y[np.arange(n), cls] = [0, 1]
            signal = cls.astype(np.float32)
        else:
            hi = int(labels.split("-")[1])
            cls = rng.integers(1, hi + 1, n)
            cls[:2] = (1, hi)  # the full scale is seen in every split
            y = cls.reshape(n, 1, 1).astype(np.float32)
            signal = cls.astype(np.float32)
        data[split] = {"text": _features(rng, n, seq_lens[0], dims[0], signal),
                       "audio": _features(rng, n, seq_lens[1], dims[1], signal * 0.3),
                       "vision": _features(rng, n, seq_lens[2], dims[2], signal * 0.3),
                       "labels": y, "id": mult_ids(split, n)}
    path.write_bytes(pickle.dumps(data, protocol=2))
    return path


def mmsa_pickle(path: Path, classes: Optional[Sequence[str]] = None, seed: int = 0,
                dims: Sequence[int] = (8, 5, 7), seq_lens: Sequence[int] = (6, 10, 12)) -> Path:
    """An MMSA-layout pickle: Python lists for ``id`` and ``raw_text``, list-valued ``audio_lengths`` /
    ``vision_lengths``, ``regression_labels`` on [-3, 3] — or, with ``classes``, string class labels."""
    rng = np.random.default_rng(seed)
    data = {}
    for split, n in SIZES.items():
        if classes:
            idx = rng.integers(0, len(classes), n)
            idx[: len(classes)] = np.arange(len(classes))
            labels = [classes[i] for i in idx]
            signal = idx.astype(np.float32)
        else:
            labels = np.round(rng.uniform(-3, 3, n), 1).astype(np.float32)
            signal = labels
        data[split] = {"text": _features(rng, n, seq_lens[0], dims[0], signal),
                       "audio": _features(rng, n, seq_lens[1], dims[1], signal * 0.3),
                       "vision": _features(rng, n, seq_lens[2], dims[2], signal * 0.3),
                       "id": [f"{split}_clip{i}$_${i % 4}" for i in range(n)],
                       "raw_text": [f"utterance {i}" for i in range(n)],
                       "audio_lengths": [int(v) for v in rng.integers(1, seq_lens[1] + 1, n)],
                       "vision_lengths": [int(v) for v in rng.integers(1, seq_lens[2] + 1, n)]}
        data[split]["classification_labels" if classes else "regression_labels"] = labels
    path.write_bytes(pickle.dumps(data, protocol=4))
    return path


def raw_arrays(folder: Path, classes: Optional[Sequence[str]] = None, seed: int = 0,
               dims: Sequence[int] = (6, 4, 5)) -> tuple[Path, dict[str, Path]]:
    """Own features as a user has them: ``text/<id>.npy`` and ``vision/<id>.npy`` (ragged ``(T_i, D)``), audio as
    one ``audio.npz`` keyed by id (utterance-level ``(D,)``), and ``labels.csv`` (id, split, label)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "text").mkdir(exist_ok=True)
    (folder / "vision").mkdir(exist_ok=True)
    rows, audio = [], {}
    for split, n in SIZES.items():
        for i in range(n):
            uid = f"{split[:2]}{i:03d}"
            if classes:
                k = i % len(classes)
                label, signal = classes[k], float(k)
            else:
                label = signal = float(rng.integers(1, 8))
            np.save(folder / "text" / f"{uid}.npy",
                    rng.normal(size=(int(rng.integers(2, 9)), dims[0])).astype(np.float32) + signal)
            np.save(folder / "vision" / f"{uid}.npy", rng.normal(size=(int(rng.integers(1, 5)), dims[2])))
            audio[uid] = rng.normal(size=dims[1]).astype(np.float32)
            rows.append(f"{uid},{split},{label}")
    np.savez(folder / "audio.npz", **audio)
    (folder / "labels.csv").write_text("id,split,label\n" + "\n".join(rows) + "\n")
    return folder / "labels.csv", {"text": folder / "text", "audio": folder / "audio.npz",
                                   "vision": folder / "vision"}
