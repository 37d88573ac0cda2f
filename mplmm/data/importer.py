"""``python -m mplmm import``: own features (one array per modality per utterance) + a labels CSV → ``.npz``.

Layout read (documented in ``docs/data.md``):

* a CSV with columns ``id``, ``split`` (train / valid / test; aliases val, dev, validation, trn, tst) and ``label``
  (numbers: regression, or class indices with ``task="classification"``; strings: class names);
* per modality, either a folder holding ``<id>.npy`` files or one ``.npz`` archive with an entry per id; each array
  is ``(T_i, D)`` (any length ``T_i``) or ``(D,)``.

Sequences are zero-padded to the longest (or truncated to ``seq_lens``) and their lengths kept in the ``.npz``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..constants import MODALITIES
from .readers_npz import open_npz
from .schema import DataError, MultimodalDataset
from .writers import save_dataset

PathLike = Union[str, os.PathLike]
REQUIRED_COLUMNS = ("id", "split", "label")


def read_labels_table(path: PathLike) -> "Any":
    """The CSV as a DataFrame with columns ``id`` (str), ``split``, ``label``; one-line DataError on problems."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such labels file (expected a CSV with columns {', '.join(REQUIRED_COLUMNS)})")
    try:
        table = pd.read_csv(path, dtype={"id": str, "split": str}, keep_default_na=False)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: unreadable CSV ({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing}; expected {list(REQUIRED_COLUMNS)}, found "
                        f"{list(table.columns)}")
    if table.empty:
        raise DataError(f"{path}: no rows")
    dup = table["id"][table["id"].duplicated()]
    if len(dup):
        raise DataError(f"{path}: {len(dup)} duplicate ids, e.g. {dup.iloc[0]!r}; each utterance once")
    blank = table["label"].astype(str).str.strip() == ""
    if blank.any():
        raise DataError(f"{path}: {int(blank.sum())} rows without a label, e.g. id {table['id'][blank].iloc[0]!r}")
    return table


def _labels(column: Any) -> list:
    """Numbers when every label parses as one, else the strings (class names)."""
    import pandas as pd

    numeric = pd.to_numeric(column, errors="coerce")
    if numeric.notna().all():
        return numeric.astype(float).tolist()
    return [str(v).strip() for v in column]


def read_modality(source: PathLike, ids: Sequence[str], modality: str) -> list[np.ndarray]:
    """One array per id from a folder of ``<id>.npy`` files or an ``.npz`` archive keyed by id."""
    source = Path(source)
    if source.is_dir():
        files = [source / f"{i}.npy" for i in ids]
        absent = [f.name for f in files if not f.is_file()]
        if absent:
            raise DataError(f"{source} ({modality}): {len(absent)} of {len(ids)} ids have no .npy file, "
                            f"e.g. {absent[0]}")
        out = []
        for f in files:
            try:
                out.append(np.load(f, allow_pickle=False))
            except (ValueError, OSError) as exc:
                raise DataError(f"{f} ({modality}): unreadable .npy ({exc})") from exc
        return out
    if source.is_file() and source.suffix.lower() == ".npz":
        with open_npz(source) as npz:
            keys = set(npz.files)
            absent = [i for i in ids if i not in keys]
            if absent:
                raise DataError(f"{source} ({modality}): {len(absent)} of {len(ids)} ids have no entry, "
                                f"e.g. {absent[0]!r} (entries are named by id)")
            return [npz[i] for i in ids]
    raise DataError(f"{source} ({modality}): expected a folder of <id>.npy files or an .npz archive keyed by id")


def import_features(labels_csv: PathLike, text: PathLike, audio: PathLike, vision: PathLike, out: PathLike, *,
                    name: Optional[str] = None, **options: Any) -> tuple[Path, MultimodalDataset]:
    """Read the CSV and the three modality sources, validate, and write the project's ``.npz``.

    ``options`` go to :meth:`MultimodalDataset.from_arrays` (``seq_lens``, ``task``, ``class_names``,
    ``label_range``, ``threshold``, ``metric_family``). Returns ``(written path, dataset)``.
    """
    table = read_labels_table(labels_csv)
    ids = table["id"].tolist()
    feats = {m: read_modality(src, ids, m) for m, src in zip(MODALITIES, (text, audio, vision))}
    ds = MultimodalDataset.from_arrays(feats["text"], feats["audio"], feats["vision"], _labels(table["label"]),
                                       table["split"].tolist(), ids, name=name or Path(out).stem, **options)
    ds.source = str(labels_csv)
    return save_dataset(ds, out, "npz"), ds
