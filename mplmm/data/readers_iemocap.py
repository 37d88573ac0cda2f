"""Reader for MMIN-style IEMOCAP feature folders (the layout MPLMM's ``IEMOData`` reads)::

    <root>/A/comparE.h5               utterance id -> (T_a, 130), variable length
    <root>/A/comparE_mean_std.h5      optional: [str(fold)]['mean'|'std'] -> audio normalised (x - mean) / std
    <root>/V/denseface.h5             utterance id -> (50, 342)
    <root>/L/bert_large.h5            utterance id -> (22, 1024)
    <root>/target/<fold>/{trn,val,tst}_label.npy     one-hot (N, 4) or class index (N,)
    <root>/target/<fold>/{trn,val,tst}_int2name.npy  utterance ids (str or bytes), (N,) or (N, 1)
    <root>/target/class_names.txt     optional: one class name per line, in label-index order

Audio is zero-padded or truncated to ``audio_len`` (350, as in MPLMM's collate); vision and text to ``vision_len`` /
``text_len`` (default: the longest utterance). Valid lengths are recorded.
``h5py`` is needed (``pip install mplmm[h5]``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from .schema import SPLITS, DataError, MultimodalDataset
from .validate import build_dataset, shape_str

#: MMIN's 4-class IEMOCAP in its usual order; the real index order is defined only by MMIN's one-hot target files.
MMIN_CLASSES = ["anger", "happiness", "neutral", "sadness"]
SET_NAMES = {"train": "trn", "valid": "val", "test": "tst"}
FEATURE_FILES = {"audio": ("A", "comparE"), "vision": ("V", "denseface"), "text": ("L", "bert_large")}


def import_h5py() -> Any:
    """Import h5py lazily (optional dependency)."""
    try:
        import h5py
    except ImportError as exc:
        raise DataError("reading IEMOCAP h5 folders needs h5py: pip install mplmm[h5]") from exc
    return h5py


def is_iemocap_folder(path: Path) -> bool:
    """True if ``path`` looks like an MMIN feature folder (A/, V/, L/ and target/)."""
    return path.is_dir() and all((path / d).is_dir() for d in ("A", "V", "L", "target"))


def _load_npy(path: Path, split: str) -> np.ndarray:
    """``np.load`` without pickles; failures become a DataError."""
    if not path.is_file():
        raise DataError(f"{path} [{split}]: no such file")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(f"{path} [{split}]: object array (needs pickle); re-save it as a str/bytes or numeric "
                            "array") from exc
        raise DataError(f"{path} [{split}]: unreadable .npy ({exc})") from exc
    except (OSError, EOFError) as exc:
        raise DataError(f"{path} [{split}]: unreadable or truncated .npy ({type(exc).__name__}: {exc})") from exc


def _open_h5(h5py: Any, path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected in an MMIN IEMOCAP folder)")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: unreadable or truncated h5 file ({exc})") from exc


def _mean_std(h5py: Any, path: Path, fold: int) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """Per-fold audio mean/std, or None if the file is absent."""
    if not path.is_file():
        return None
    with _open_h5(h5py, path) as f:
        if str(fold) not in f:
            raise DataError(f"{path} key '{fold}': no statistics for fold {fold}; found {sorted(f)}")
        mean = np.asarray(f[str(fold)]["mean"][()], dtype=np.float32).reshape(-1)
        std = np.asarray(f[str(fold)]["std"][()], dtype=np.float32).reshape(-1)
    std = np.where(np.isfinite(std) & (std > 1e-8), std, 1.0).astype(np.float32)
    return mean, std


def _gather(h5: Any, path: Path, split: str, ids: list[str], t_len: Optional[int],
            norm: Optional[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, int]:
    """Stack the utterances ``ids`` of one h5 file into ``(N, T, D)`` zero-padded/truncated to ``t_len``."""
    seqs = []
    for uid in ids:
        if uid not in h5:
            raise DataError(f"{path} [{split}] key '{uid}': utterance listed in the target files is missing "
                            f"(file has {len(h5)} utterances)")
        x = np.asarray(h5[uid][()], dtype=np.float32)
        x = x[None, :] if x.ndim == 1 else x
        if x.ndim != 2:
            raise DataError(f"{path} [{split}] key '{uid}': expected (T, D), got shape {shape_str(x.shape)}")
        if seqs and x.shape[1] != seqs[0].shape[1]:
            raise DataError(f"{path} [{split}] key '{uid}': feature dim {x.shape[1]} differs from "
                            f"'{ids[0]}' ({seqs[0].shape[1]})")
        if norm is not None:
            if norm[0].shape[0] != x.shape[1]:
                raise DataError(f"{path} [{split}] key '{uid}': mean/std have {norm[0].shape[0]} dims, features "
                                f"{x.shape[1]}")
            x = (x - norm[0]) / norm[1]
        seqs.append(x)
    lengths = np.array([s.shape[0] for s in seqs], dtype=np.int64)
    t = int(t_len if t_len is not None else lengths.max())
    out = np.zeros((len(seqs), t, seqs[0].shape[1]), dtype=np.float32)
    for i, s in enumerate(seqs):
        out[i, : min(t, len(s))] = s[:t]
    return out, np.minimum(lengths, t), int((lengths > t).sum())


def _targets(root: Path, fold: int, split: str) -> tuple[np.ndarray, list[str]]:
    """Labels and utterance ids of one split from ``target/<fold>/``."""
    tdir = root / "target" / str(fold)
    if not tdir.is_dir():
        found = sorted(p.name for p in (root / "target").iterdir()) if (root / "target").is_dir() else []
        raise DataError(f"{tdir} [{split}]: no target folder for fold {fold}; found folds {found}")
    set_name = SET_NAMES[split]
    labels = _load_npy(tdir / f"{set_name}_label.npy", split)
    names = _load_npy(tdir / f"{set_name}_int2name.npy", split)
    names = names.reshape(-1) if names.ndim == 2 and names.shape[1] == 1 else names
    if names.ndim != 1:
        raise DataError(f"{tdir / f'{set_name}_int2name.npy'} [{split}]: expected (N,) ids, "
                        f"got {shape_str(names.shape)}")
    ids = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in names.tolist()]
    if not ids:
        raise DataError(f"{tdir / f'{set_name}_int2name.npy'} [{split}]: split is empty (0 utterances)")
    if labels.shape[0] != len(ids):
        raise DataError(f"{tdir / f'{set_name}_label.npy'} [{split}]: {labels.shape[0]} labels but {len(ids)} ids "
                        f"in {set_name}_int2name.npy")
    return labels, ids


def read_iemocap_mmin(path: Path, *, strict: bool = False, fold: int = 1, audio_len: int = 350,
                      vision_len: Optional[int] = None, text_len: Optional[int] = None, a_type: str = "comparE",
                      v_type: str = "denseface", l_type: str = "bert_large") -> MultimodalDataset:
    """Read an MMIN IEMOCAP folder for cross-validation fold ``fold`` (MPLMM uses fold 1)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    h5py = import_h5py()
    files = {"audio": root / "A" / f"{a_type}.h5", "vision": root / "V" / f"{v_type}.h5",
             "text": root / "L" / f"{l_type}.h5"}
    t_lens = {"audio": audio_len, "vision": vision_len, "text": text_len}
    norm = _mean_std(h5py, root / "A" / f"{a_type}_mean_std.h5", fold)
    notes = [f"MMIN IEMOCAP fold {fold}"]
    notes.append(f"audio normalised with {a_type}_mean_std.h5 fold {fold}" if norm
                 else "no audio mean/std file: raw audio")
    targets = {s: _targets(root, fold, s) for s in SPLITS}
    raw: dict[str, dict[str, Any]] = {s: {"labels": targets[s][0], "ids": targets[s][1], "lengths": {}} for s in SPLITS}
    for m, fpath in files.items():
        with _open_h5(h5py, fpath) as h5:
            t_len = t_lens[m]
            if t_len is None:  # one length for all splits: the longest utterance anywhere
                t_len = max((int(np.shape(h5[u])[0]) if np.ndim(h5[u]) == 2 else 1
                            for s in SPLITS for u in targets[s][1] if u in h5), default=1)
            for s in SPLITS:
                x, lengths, cut = _gather(h5, fpath, s, targets[s][1], t_len, norm if m == "audio" else None)
                raw[s][m], raw[s]["lengths"][m] = x, lengths
                if cut:
                    notes.append(f"{s}: {cut} {m} sequences longer than {t_len} frames truncated")
    class_file = root / "target" / "class_names.txt"
    if class_file.is_file():
        class_names = [ln.strip() for ln in class_file.read_text().splitlines() if ln.strip()]
        notes.append(f"class names from {class_file.name}")
    else:
        class_names = list(MMIN_CLASSES)
        notes.append("class names: MMIN default order anger/happiness/neutral/sadness; the index order is defined only "
                     "by MMIN's target files")
    return build_dataset(raw, name=root.name or "iemocap", source=str(root), fmt="iemocap_mmin",
                         task="classification", metric_family="iemocap", class_names=class_names, strict=strict,
                         keys={"labels": "label", "ids": "int2name"}, notes=notes)
