"""``load_dataset``: one entry point for synthetic names and files/folders in every supported layout.

Auto-detection (``format="auto"``):

* a folder with ``A/ V/ L/ target/`` -> ``iemocap_mmin``; otherwise the folder's single ``.npz`` (preferred: no pickle
  involved), else its single ``.pkl``;
* ``*.npz`` -> ``npz``;
* ``*.pkl`` / ``*.pickle`` -> unpickled once (restricted: :mod:`mplmm.data.safe_pickle`); split keys
  ``regression_labels`` / ``audio_lengths`` / ``vision_lengths`` / ``text_bert`` -> ``mmsa_pickle``, else ``labels``
  -> ``mult_pickle``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..constants import MODALITIES
from ..errors import ConfigError, unknown_key_message
from .labels import check_label_range_option, describe_labels, parse_threshold
from .readers_iemocap import is_iemocap_folder, read_iemocap_mmin
from .readers_npz import read_npz
from .readers_pickle import load_pickle, pickle_flavor, read_mmsa_pickle, read_mult_pickle
from .schema import SPLITS, DataError, MultimodalDataset
from .synthetic import SPECS, make_default_synthetic, make_synthetic
from .validate import fit_length

FORMATS = ("mult_pickle", "mmsa_pickle", "npz", "iemocap_mmin")
#: reader options accepted per format (label options are keyword arguments of :func:`load_dataset` itself)
READER_OPTIONS = {"mult_pickle": ("allow_multilabel",), "mmsa_pickle": (), "npz": ("allow_multilabel",),
                  "iemocap_mmin": ("fold", "audio_len", "vision_len", "text_len", "a_type", "v_type", "l_type")}
SYNTHETIC_OPTIONS = ("size", "seed", "sizes")
SYNTHETIC_NAMES = ("synthetic", *(f"synthetic-{k}" for k in SPECS))
PICKLE_EXT = (".pkl", ".pickle")
AUTO_STD_THRESHOLD = 50.0
#: ``load_dataset("synthetic-<kind>")`` default ``size``: a few hundred training samples, modest memory.
DEFAULT_SIZES = {"mosi": 0.1, "mosei": 0.02, "sims": 0.1, "iemocap": 0.05}


def _in_folder(folder: Path) -> tuple[str, Path, str]:
    """Pick the data file inside a folder: MMIN layout, else one .npz, else one pickle."""
    if is_iemocap_folder(folder):
        return "iemocap_mmin", folder, "folder with A/ V/ L/ target/ (MMIN IEMOCAP layout)"
    for exts, why in (((".npz",), "the folder's .npz, preferred over pickles"),
                      (PICKLE_EXT, "the folder's only pickle")):
        found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts)
        if len(found) == 1:
            return "", found[0], why
        if len(found) > 1:
            raise DataError(f"{folder}: several candidate files {[p.name for p in found]}; pass one of them")
    raise DataError(f"{folder}: no .npz, .pkl or MMIN IEMOCAP layout (A/ V/ L/ target/) in this folder")


def _detect(path: Path, trust_pickle: bool = False, for_prediction: bool = False) -> tuple[str, Path, str, Any]:
    """``(format, file, reason, unpickled-object-or-None)``."""
    if not path.exists():
        raise DataError(f"{path}: no such file or folder (synthetic names: {', '.join(SYNTHETIC_NAMES)})")
    reason = ""
    if path.is_dir():
        fmt, path, reason = _in_folder(path)
        if fmt:
            return fmt, path, reason, None
    ext = path.suffix.lower()
    if ext == ".npz":
        return "npz", path, reason or "extension .npz", None
    if ext in PICKLE_EXT:
        data = load_pickle(path, trust_pickle)
        fmt, why = pickle_flavor(data, str(path), () if for_prediction else SPLITS)
        return fmt, path, f"{reason}, {why}" if reason else why, data
    raise DataError(f"{path}: cannot tell the format from the extension {ext or '(none)'!r}; expected .npz, .pkl, "
                    f".pickle or an MMIN IEMOCAP folder, or pass format= one of {list(FORMATS)}")


def detect_format(path: Union[str, os.PathLike], *, trust_pickle: bool = False) -> str:
    """The format ``load_dataset(path)`` would use (note: detecting a pickle's flavour unpickles it, with the restricted
    reader unless ``trust_pickle``)."""
    return _detect(Path(path), trust_pickle)[0]


def _frame_mask(sp: Any, m: str) -> np.ndarray:
    """``(N, T)`` True for the real frames of recorded samples (all frames when no lengths are recorded)."""
    t = sp.modality(m).shape[1]
    present = sp.present[:, MODALITIES.index(m)][:, None]
    if sp.lengths and m in sp.lengths:
        return (np.arange(t)[None, :] < sp.lengths[m][:, None]) & present
    return np.broadcast_to(present, (len(sp), t))


def train_statistics(ds: MultimodalDataset, m: str) -> dict[str, list[float]]:
    """Per-feature mean and std of modality ``m`` over the real frames of the recorded training samples (a std
    below 1e-8 becomes 1)."""
    train = ds["train"]
    frames = train.modality(m)[_frame_mask(train, m)]
    if not len(frames):
        raise DataError(f"{ds.source}: no recorded {m} frame in the training split; cannot standardize {m}")
    mean = frames.mean(axis=0, dtype=np.float64)
    std = frames.std(axis=0, dtype=np.float64)
    std = np.where(std > 1e-8, std, 1.0)
    return {"mean": mean.tolist(), "std": std.tolist()}


def apply_statistics(ds: MultimodalDataset, stats: dict[str, dict[str, Sequence[float]]]) -> None:
    """Standardize every split with ``stats`` (``{modality: {"mean", "std"}}``, e.g. a checkpoint's); padding and
    absent samples stay exactly 0. Records the statistics in ``ds.preprocessing["standardize"]``."""
    for m, st in stats.items():
        mean, std = np.asarray(st["mean"], dtype=np.float64), np.asarray(st["std"], dtype=np.float64)
        if mean.shape != (ds.dims[MODALITIES.index(m)],):
            raise DataError(f"{ds.source} {m}: standardization statistics have {mean.shape[0]} features, the data "
                            f"{ds.dims[MODALITIES.index(m)]}")
        for sp in ds.splits.values():
            y = ((sp.modality(m) - mean) / std).astype(np.float32)
            y[~_frame_mask(sp, m)] = 0.0
            setattr(sp, m, y)
    ds.preprocessing["standardize"] = {m: {"mean": list(st["mean"]), "std": list(st["std"])}
                                       for m, st in {**ds.preprocessing.get("standardize", {}), **stats}.items()}


def _standardize(ds: MultimodalDataset, modalities: Sequence[str]) -> None:
    """Per-feature train mean/std (real frames of recorded samples), applied to every split."""
    apply_statistics(ds, {m: train_statistics(ds, m) for m in modalities})


def _apply_standardize(ds: MultimodalDataset, standardize: Union[bool, str, Sequence[str], dict]) -> Optional[str]:
    """Resolve the ``standardize`` option; returns a note (or None when nothing was done)."""
    if standardize is False or standardize is None:
        return None
    if isinstance(standardize, dict):  # statistics saved with a checkpoint
        apply_statistics(ds, standardize)
        return f"standardized {', '.join(standardize)} with the given (checkpoint's) training statistics"
    if standardize == "auto":
        if ds.seq_lens != (1, 1, 1):
            return None
        tops = {m: float(np.abs(ds["train"].modality(m)).max()) for m in MODALITIES}
        mods = [m for m in MODALITIES if tops[m] > AUTO_STD_THRESHOLD]
        if not mods:
            return None
        why = "auto: utterance-level features with max |x| > 50 (" + ", ".join(f"{m} {tops[m]:.1f}" for m in mods) + ")"
    elif standardize is True:
        mods, why = list(MODALITIES), "standardize=True"
    else:
        mods = [standardize] if isinstance(standardize, str) else list(standardize)
        bad = [m for m in mods if m not in MODALITIES]
        if bad:
            raise DataError(f"standardize: unknown modalities {bad}; expected 'auto', True, False, "
                            f"names from {MODALITIES} or a dict of statistics")
        why = f"standardize={mods}"
    if "train" not in ds.splits:
        raise DataError(f"{ds.source}: standardize={standardize!r} needs a train split for its statistics; pass "
                        "the training statistics (a checkpoint's) instead")
    _standardize(ds, mods)
    return f"standardized {', '.join(mods)} with train-split mean/std per feature ({why})"


def fit_seq_lens(ds: MultimodalDataset, seq_lens: Sequence[int]) -> None:
    """Zero-pad/truncate every modality to ``seq_lens``. Lengths are recorded whenever a sequence is padded (the
    padding is then masked) and clipped where one is truncated; a sample whose real part is cut off is counted in a
    note. Recorded in ``ds.preprocessing["seq_lens"]``."""
    target = tuple(int(t) for t in seq_lens)
    for sp in ds.splits.values():
        mat = sp.length_matrix()
        for j, (m, t) in enumerate(zip(MODALITIES, target)):
            old = sp.modality(m).shape[1]
            if old == t:
                continue
            lens = mat[:, j] if mat is not None else np.where(sp.present[:, j], old, 0)
            cut = int((lens > t).sum())
            if cut:
                ds.notes.append(f"{m}: {cut} sequences truncated to {t} steps (of up to {int(lens.max())})")
            setattr(sp, m, fit_length(sp.modality(m), t))
            sp.lengths = dict(sp.lengths or {})
            sp.lengths[m] = np.minimum(lens, t).astype(np.int64)
        if sp.lengths:  # every modality then has lengths (full ones where none were recorded)
            full = sp.length_matrix()
            sp.lengths = {m: full[:, j] for j, m in enumerate(MODALITIES)}
    ds.preprocessing["seq_lens"] = list(target)
    ds.notes.append(f"sequences padded/truncated to seq_lens {target}")


def _check_opts(what: str, opts: dict, allowed: Sequence[str]) -> None:
    unknown = set(opts) - set(allowed)
    if unknown:
        raise ConfigError(unknown_key_message(what, unknown, allowed))


def _synthetic(name: str, seq_lens: Optional[Sequence[int]], opts: dict) -> MultimodalDataset:
    _check_opts(f"load_dataset({name!r})", opts, SYNTHETIC_OPTIONS)
    if name == "synthetic":
        return make_default_synthetic(seed=opts.get("seed", 0), seq_lens=seq_lens, sizes=opts.get("sizes"),
                                      **({"size": opts["size"]} if "size" in opts else {}))
    kind = name.split("-", 1)[1]
    return make_synthetic(kind, size=opts.get("size", DEFAULT_SIZES[kind]), seed=opts.get("seed", 0),
                          seq_lens=seq_lens, sizes=opts.get("sizes"))


def _say(verbose: bool, text: str) -> None:
    if verbose:
        print(f"mplmm: {text}", file=sys.stderr)


def _label_options(label_range: Any, threshold: Any, task: Optional[str], class_names: Any,
                   metric_family: Optional[str]) -> dict:
    """The label options that were given (validated), as reader keyword arguments."""
    out: dict[str, Any] = {}
    if label_range is not None:
        out["label_range"] = check_label_range_option(label_range)
    if threshold is not None:
        out["threshold"] = parse_threshold(threshold)
    if task is not None:
        out["task"] = task
    if class_names:
        out["class_names"] = [str(c) for c in class_names]
    if metric_family:
        out["metric_family"] = metric_family
    return out


def _file_format(path: Path, format: str, trust_pickle: bool, for_prediction: bool) -> tuple[str, Path, str, Any]:
    """``(format, file, why that format, data already read or None)`` of ``path`` for the ``format`` argument."""
    if format == "auto":
        return _detect(path, trust_pickle, for_prediction)
    if format not in FORMATS:
        raise DataError(f"unknown format {format!r}; expected 'auto' or one of {list(FORMATS)}")
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir() and format != "iemocap_mmin":
        exts = (".npz",) if format == "npz" else PICKLE_EXT
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in exts)
        if len(found) != 1:
            raise DataError(f"{path}: expected one {'/'.join(exts)} file in the folder for format {format}, "
                            f"found {[p.name for p in found]}")
        path = found[0]
    return format, path, "format given", None


def _read_as(fmt: str, path: Path, data: Any, strict: bool, trust_pickle: bool, label_opts: dict,
             opts: dict) -> MultimodalDataset:
    """The reader of ``fmt`` on ``path`` (``data``: the pickle already read while detecting the format)."""
    if fmt == "iemocap_mmin":
        if label_opts:
            raise ConfigError(f"{path}: an MMIN IEMOCAP folder defines its own classes; {sorted(label_opts)} "
                              "do not apply")
        return read_iemocap_mmin(path, strict=strict, **opts)
    if fmt == "npz":
        return read_npz(path, strict=strict, **label_opts, **opts)
    if fmt == "mult_pickle":
        return read_mult_pickle(path, strict=strict, data=data, trust_pickle=trust_pickle, **label_opts, **opts)
    return read_mmsa_pickle(path, strict=strict, data=data, trust_pickle=trust_pickle, **label_opts, **opts)


def load_dataset(name_or_path: Union[str, os.PathLike], format: str = "auto", *, strict: bool = False,
                 seq_lens: Optional[Sequence[int]] = None, standardize: Union[bool, str, Sequence[str]] = "auto",
                 verbose: bool = True, label_range: Optional[Sequence[float]] = None,
                 threshold: Optional[float] = None, task: Optional[str] = None,
                 class_names: Optional[Sequence[str]] = None, metric_family: Optional[str] = None,
                 trust_pickle: bool = False, for_prediction: bool = False, drop_empty: bool = False,
                 **opts: Any) -> MultimodalDataset:
    """Load a synthetic dataset by name or a file/folder in one of :data:`FORMATS`.

    ``strict``: raise on non-finite features instead of zeroing them. ``seq_lens``: for synthetic data the generated
    lengths, for files pad/truncate to them (padding is then masked through recorded lengths). ``standardize``:
    ``"auto"`` (utterance-level data whose max ``|x|`` > 50), True, False, a list of modalities, or a dict of
    statistics ``{modality: {"mean", "std"}}`` (a checkpoint's). ``for_prediction``: any subset of the splits (or
    ``unsplit`` data), labels optional. ``drop_empty``: drop samples that have no modality at all (else a
    one-line error naming the first). Labels (see :mod:`mplmm.data.labels`): ``label_range`` (default: the
    family's scale, else inferred from the training split), ``threshold`` (generic regression family), ``task``
    (``"classification"`` for integer class labels), ``class_names``, ``metric_family``. Reader options
    (``opts``, :data:`READER_OPTIONS`): ``allow_multilabel``; IEMOCAP ``fold``, ``audio_len``, ``vision_len``,
    ``text_len``; synthetic ``size``, ``seed``, ``sizes``. An unknown option is a one-line :class:`ConfigError`.
    ``trust_pickle``: read a pickle with plain ``pickle``, which runs any code the file names — only for files you
    trust; by default pickles are read by :mod:`mplmm.data.safe_pickle` (arrays, strings, numbers, containers).
    """
    key = str(name_or_path)
    label_opts = _label_options(label_range, threshold, task, class_names, metric_family)
    if key in SYNTHETIC_NAMES and not Path(key).exists():
        if label_opts:
            raise ConfigError(f"{key}: the synthetic datasets fix their own labels; {sorted(label_opts)} apply to "
                              "files only")
        ds = _synthetic(key, seq_lens, opts)
    else:
        fmt, path, reason, data = _file_format(Path(name_or_path).expanduser(), format, trust_pickle, for_prediction)
        _check_opts(f"{path} ({fmt})", opts, READER_OPTIONS[fmt])
        if fmt != "iemocap_mmin":
            opts = {**opts, "for_prediction": for_prediction, "drop_empty": drop_empty}
        ds = _read_as(fmt, path, data, strict, trust_pickle, label_opts, opts)
        presence = "; ".join(f"{k}: {v}" for k, v in ds.presence_summary().items())
        _say(verbose, f"reading {path} as {fmt} ({reason}): {describe_labels(ds)}; {presence}")
        if seq_lens is not None:
            fit_seq_lens(ds, seq_lens)
    note = _apply_standardize(ds, standardize)
    if note:
        ds.notes.append(note)
        _say(verbose, f"{ds.name}: {note}")
    return ds
