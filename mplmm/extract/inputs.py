"""Which clips to extract: a folder of media files or a CSV of paths, plus an optional table of transcripts, splits
and labels (``id, text[, split, label]``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..data.schema import DataError
from ..utils import PathLike

#: file endings taken as clips in a folder (audio-only files are clips without video)
MEDIA_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp",
                  ".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus")


@dataclass
class Clip:
    """One clip: its id, file, transcript (None: none given) and, for training data, split and label."""

    id: str
    path: str
    text: Optional[str] = None
    split: Optional[str] = None
    label: Optional[str] = None


def _read_csv(path: Path, required: tuple[str, ...]) -> "object":
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: unreadable CSV ({type(exc).__name__}: {str(exc).splitlines()[0]})") from exc
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing}; found {list(table.columns)}")
    dup = table["id"][table["id"].duplicated()] if "id" in table.columns else []
    if len(dup):
        raise DataError(f"{path}: duplicate id {dup.iloc[0]!r}; each clip once")
    return table


def _from_folder(folder: Path) -> list[Clip]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no clips (files ending in {', '.join(MEDIA_SUFFIXES[:6])}, ...)")
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen:
            raise DataError(f"{folder}: two clips with id {f.stem!r} ({seen[f.stem].name}, {f.name}); rename one")
        seen[f.stem] = f
    return [Clip(id=f.stem, path=str(f)) for f in files]


def _from_csv(path: Path) -> list[Clip]:
    table = _read_csv(path, ("path",))
    clips = []
    for _, row in table.iterrows():
        f = Path(row["path"])
        f = f if f.is_absolute() else path.parent / f
        cid = row["id"] if "id" in table.columns and row["id"] else f.stem
        clips.append(Clip(id=str(cid), path=str(f), text=row.get("text"), split=row.get("split") or None,
                          label=row.get("label") or None))
    ids = [c.id for c in clips]
    dup = next((i for i in ids if ids.count(i) > 1), None)
    if dup is not None:
        raise DataError(f"{path}: two clips with id {dup!r}; give an 'id' column")
    return clips


def list_clips(clips: PathLike, transcripts: Optional[PathLike] = None) -> list[Clip]:
    """The clips of a folder or a CSV (column ``path``, optional ``id``, ``text``, ``split``, ``label``), with the
    transcripts, splits and labels of ``transcripts`` (columns ``id``, ``text``, optional ``split``, ``label``)
    merged in by id. A clip without a transcript row has no transcript; a transcript row without a clip is an
    error (a typo in an id would otherwise lose its text)."""
    src = Path(clips)
    if src.is_dir():
        found = _from_folder(src)
    elif src.is_file() and src.suffix.lower() == ".csv":
        found = _from_csv(src)
    else:
        raise DataError(f"{src}: expected a folder of clips or a CSV with a 'path' column")
    if transcripts is not None:
        tpath = Path(transcripts)
        if not tpath.is_file():
            raise DataError(f"{tpath}: no such transcript file (expected a CSV with columns id, text[, split, label])")
        table = _read_csv(tpath, ("id",))
        by_id = {c.id: c for c in found}
        unknown = [i for i in table["id"] if i not in by_id]
        if unknown:
            raise DataError(f"{tpath}: id {unknown[0]!r} has no clip ({len(unknown)} such rows); clip ids are the "
                            f"file names without extension, e.g. {found[0].id!r}")
        for _, row in table.iterrows():
            c = by_id[row["id"]]
            c.text = row["text"] if "text" in table.columns else c.text
            c.split = (row.get("split") or None) if "split" in table.columns else c.split
            c.label = (row.get("label") or None) if "label" in table.columns else c.label
    with_split = [c for c in found if c.split]
    if with_split and len(with_split) < len(found):
        lone = next(c for c in found if not c.split)
        raise DataError(f"clip {lone.id!r} has no split while {len(with_split)} others have one; give every clip a "
                        "split (train, valid, test) or none (features for prediction only)")
    return found
