"""Reader for ``.npz`` files with entries ``<split>__<key>`` (e.g. ``test__text``) and optional ``meta__<field>``.

The keys per split are those of the MMSA / MulT dicts (:mod:`readers_pickle`), plus ``<split>__present``: a
``(N, 3)`` boolean mask (text, audio, vision; False = never recorded) for modalities that are really absent. An
all-NaN modality of a sample, or a ``<m>_lengths`` entry of 0, says the same. Data read for prediction may hold any
of the splits, or ``unsplit__<key>`` entries for data without a split; its labels are optional. Loaded with
``allow_pickle=False``: an ``.npz`` cannot execute code, which is why it is the preferred format.
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .readers_pickle import interpret_splits
from .schema import ALL_SPLITS, SPLITS, DataError, MultimodalDataset

SEP = "__"
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError)


def open_npz(path: Path) -> "np.lib.npyio.NpzFile":
    """``np.load`` without pickles; failures become a DataError."""
    try:
        npz = np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such file") from exc
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: unreadable or truncated .npz ({type(exc).__name__}: {exc})") from exc
    if not hasattr(npz, "files"):
        raise DataError(f"{path}: is a single .npy array, not an .npz archive of '<split>__<key>' entries")
    return npz


def _member(npz: Any, path: Path, key: str) -> np.ndarray:
    """One entry of the archive, with a DataError naming it on failure."""
    try:
        return npz[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(f"{path} key '{key}': is an object array (needs pickle); store strings as fixed-width "
                            "unicode and numbers as numeric arrays") from exc
        raise DataError(f"{path} key '{key}': unreadable ({exc})") from exc
    except _READ_ERRORS as exc:
        raise DataError(f"{path} key '{key}': unreadable or truncated ({type(exc).__name__}: {exc})") from exc


def npz_to_dict(path: Path, required: tuple[str, ...] = SPLITS) -> tuple[dict[str, dict[str, np.ndarray]], dict]:
    """``({split: {key: array}}, meta)`` from an ``.npz`` file; ``required``: the splits that must be there."""
    with open_npz(path) as npz:
        names = list(npz.files)
        data: dict[str, dict[str, np.ndarray]] = {}
        meta: dict = {}
        for entry in names:
            split, sep, key = entry.partition(SEP)
            if not sep or not key or split not in (*ALL_SPLITS, "meta"):
                raise DataError(f"{path}: unexpected entry '{entry}'; expected '<split>__<key>' with split in "
                                f"{list(ALL_SPLITS)} (or 'meta__<field>'), e.g. 'train__text'")
            arr = _member(npz, path, entry)
            if split == "meta":
                meta[key] = arr.tolist() if arr.ndim else arr.item()
            else:
                data.setdefault(split, {})[key] = arr
    if "label_range" in meta:
        meta["label_range"] = tuple(float(v) for v in meta["label_range"])
    if "threshold" in meta:
        meta["threshold"] = float(meta["threshold"])
    if "class_names" in meta:
        meta["class_names"] = [str(c) for c in meta["class_names"]]
    missing = [s for s in required if s not in data]
    if missing or not data:
        raise DataError(f"{path}: no entries for splits {missing or list(ALL_SPLITS)}; expected '<split>__<key>' "
                        f"entries for {list(required or ALL_SPLITS)}, found prefixes {sorted(data)}")
    return data, meta


def read_npz(path: Path, *, strict: bool = False, **label_opts: Any) -> MultimodalDataset:
    """Read an ``.npz`` dataset (the shared ``mosi_bclstm_utterance.npz`` or one written by ``save_dataset``).

    ``label_opts`` as for :func:`mplmm.data.readers_pickle.interpret_splits`.
    """
    data, meta = npz_to_dict(path, () if label_opts.get("for_prediction") else SPLITS)
    return interpret_splits(data, source=str(path), fmt="npz", strict=strict, meta=meta, **label_opts)
