"""``python -m mplmm import``: own features (one array per modality per utterance) + a labels CSV → ``.npz``.

Layout read (documented in ``docs/data.md``):

* a CSV with columns ``id``, ``split`` (train / valid / test; aliases val, dev, validation, trn, tst) and ``label``
  (numbers: regression, or class indices with ``task="classification"``; strings: class names). For data that is
  only predicted on, ``split`` and ``label`` may be left out (the rows then form the ``unsplit`` split, unlabeled);
* per modality, either a folder holding ``<id>.npy`` files or one ``.npz`` archive with an entry per id; each array
  is ``(T_i, D)`` (any length ``T_i``) or ``(D,)``.

**Absence**: an id with no file (or no entry) for a modality, or an empty array, has that modality absent; the
``.npz`` records it in ``<split>__present``. An id without any modality is a one-line error naming it (or dropped
with ``drop_empty=True`` / ``--drop_empty``). Sequences are zero-padded to the longest (or truncated to
``seq_lens``) and their lengths kept in the ``.npz``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..constants import MODALITIES
from .arrays import from_arrays
from .readers_npz import open_npz
from .schema import DataError, MultimodalDataset
from .writers import save_dataset

PathLike = Union[str, os.PathLike]
REQUIRED_COLUMNS = ("id", "split", "label")


def read_labels_table(path: PathLike, required: Sequence[str] = REQUIRED_COLUMNS) -> "Any":
    """The CSV as a DataFrame with columns ``id`` (str) and, when ``required`` says so, ``split`` and ``label``;
    one-line DataError on problems."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such labels file (expected a CSV with columns {', '.join(REQUIRED_COLUMNS)})")
    try:
        table = pd.read_csv(path, dtype={"id": str, "split": str}, keep_default_na=False)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: unreadable CSV ({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing}; expected {list(required)}, found "
                        f"{list(table.columns)}")
    if table.empty:
        raise DataError(f"{path}: no rows")
    dup = table["id"][table["id"].duplicated()]
    if len(dup):
        raise DataError(f"{path}: {len(dup)} duplicate ids, e.g. {dup.iloc[0]!r}; each utterance once")
    blank = table["label"].astype(str).str.strip() == "" if "label" in table.columns else None
    if blank is not None and blank.any() and ("label" in required or "split" in table.columns):
        raise DataError(f"{path}: {int(blank.sum())} rows without a label, e.g. id {table['id'][blank].iloc[0]!r}")
    return table


def parse_labels(column: Any) -> list:
    """Numbers when every label parses as one, else the strings (class names)."""
    import pandas as pd

    text = column.astype(str).str.strip()
    numeric = pd.to_numeric(text.where(text != ""), errors="coerce")
    if numeric[text != ""].notna().all():
        return numeric.astype(float).tolist()  # blank (data for prediction): NaN, no label
    return [v for v in text]


def _load_npy(f: Path, modality: str) -> Optional[np.ndarray]:
    """One ``<id>.npy`` file; an empty file or array is an absent modality (None)."""
    if f.stat().st_size == 0:
        return None
    try:
        arr = np.load(f, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{f} ({modality}): unreadable .npy ({exc})") from exc
    return None if arr.size == 0 else arr


def read_modality(source: PathLike, ids: Sequence[str], modality: str) -> list[Optional[np.ndarray]]:
    """One array per id from a folder of ``<id>.npy`` files or an ``.npz`` archive keyed by id; None where the id has
    no file or entry, or an empty one (the modality is absent for it)."""
    source = Path(source)
    if source.is_dir():
        return [_load_npy(source / f"{i}.npy", modality) if (source / f"{i}.npy").is_file() else None for i in ids]
    if source.is_file() and source.suffix.lower() == ".npz":
        with open_npz(source) as npz:
            keys = set(npz.files)
            return [(lambda a: None if a.size == 0 else a)(npz[i]) if i in keys else None for i in ids]
    raise DataError(f"{source} ({modality}): expected a folder of <id>.npy files or an .npz archive keyed by id")


def _check_coverage(feats: dict[str, list], ids: Sequence[str], sources: dict[str, Path],
                    drop_empty: bool) -> list[str]:
    """Ids without any modality (an error unless ``drop_empty``) and modalities without any id (always an error);
    returns notes on what is absent."""
    for m, items in feats.items():
        if all(v is None for v in items):
            raise DataError(f"{sources[m]} ({m}): none of the {len(ids)} ids has a file or entry (expected "
                            f"<id>.npy files or .npz entries named by id, e.g. {ids[0]!r})")
    empty = [i for k, i in enumerate(ids) if all(feats[m][k] is None for m in MODALITIES)]
    if empty and not drop_empty:
        raise DataError(f"{len(empty)} ids have no features in any modality, e.g. {empty[0]!r} (looked for "
                        f"{', '.join(str(sources[m]) for m in MODALITIES)}); remove them or pass --drop_empty")
    return [f"{m}: {sum(v is None for v in items)} of {len(ids)} ids absent (no file or an empty one)"
            for m, items in feats.items() if any(v is None for v in items)]


def import_features(labels_csv: PathLike, text: PathLike, audio: PathLike, vision: PathLike, out: PathLike, *,
                    name: Optional[str] = None, drop_empty: bool = False,
                    **options: Any) -> tuple[Path, MultimodalDataset]:
    """Read the CSV and the three modality sources, validate, and write the project's ``.npz``.

    ``options`` go to :func:`~mplmm.data.arrays.from_arrays` (``seq_lens``, ``task``, ``class_names``,
    ``label_range``, ``threshold``, ``metric_family``). A CSV without ``split``/``label`` columns gives data for
    prediction only. Returns ``(written path, dataset)``.
    """
    table = read_labels_table(labels_csv, required=("id",))
    given = [c for c in ("split", "label") if c in table.columns]
    if len(given) == 1:
        raise DataError(f"{labels_csv}: missing columns {[c for c in ('split', 'label') if c not in given]}; "
                        f"expected {list(REQUIRED_COLUMNS)} (or only 'id' for data that is only predicted on), "
                        f"found {list(table.columns)}")
    ids = table["id"].tolist()
    sources = dict(zip(MODALITIES, (Path(text), Path(audio), Path(vision))))
    feats = {m: read_modality(src, ids, m) for m, src in sources.items()}
    notes = _check_coverage(feats, ids, sources, drop_empty)
    labels = parse_labels(table["label"]) if "label" in table.columns else None
    splits = table["split"].tolist() if "split" in table.columns else None
    ds = from_arrays(feats["text"], feats["audio"], feats["vision"], labels, splits, ids,
                     name=name or Path(out).stem, drop_empty=drop_empty, **options)
    ds.source = str(labels_csv)
    ds.notes.extend(notes)
    return save_dataset(ds, out, "npz"), ds
