"""``extract``: a folder of clips -> the project's ``.npz`` with presence masks, a per-clip report and a summary.

Audio and vision are extracted per clip, in ``workers`` processes (the standard library's process pool), each clip's
result written to a cache file first: a re-run (after a crash, or with more clips) reads what is cached and extracts
only the rest. Text is encoded in the main process, in batches, cached the same way. An extractor's failure is a
modality absent for that clip, with its reason in the report; a clip where nothing could be extracted is left out of
the features (it has nothing a model could read) and reported as failed.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..config import from_dict, to_dict
from ..constants import MODALITIES
from ..data.arrays import from_arrays
from ..data.importer import parse_labels
from ..data.schema import DataError, MultimodalDataset
from ..data.writers import save_dataset
from ..utils import PathLike, atomic_write
from .config import AUDIO_SETS, ExtractConfig
from .inputs import Clip, list_clips

#: label keywords passed on to :func:`~mplmm.data.from_arrays`
LABEL_KEYS = ("task", "class_names", "label_range", "threshold", "metric_family")
#: bump when the cached per-clip record changes meaning
CACHE_VERSION = 1


@dataclass
class ExtractResult:
    """What :func:`extract` wrote: the features file, the report (a DataFrame, also a CSV), the dataset, a summary."""

    path: Path
    report_path: Path
    report: Any
    dataset: MultimodalDataset
    summary: str


#: the modules of the optional extra ``.[extract]`` (module -> distribution), checked before any work
EXTRA_MODULES = {"av": "av", "opensmile": "opensmile", "silero_vad": "silero-vad", "cv2": "opencv-python-headless",
                 "soundfile": "soundfile"}


def require_extras(text: bool = True) -> None:
    """One-line :class:`~mplmm.errors.UserError` naming what is missing when the extra is not installed."""
    from importlib.util import find_spec

    from ..errors import UserError

    wanted = {**EXTRA_MODULES, **({"transformers": "transformers"} if text else {})}
    missing = [dist for mod, dist in wanted.items() if find_spec(mod) is None]
    if missing:
        raise UserError(f"extract needs the optional extra: pip install -e '.[extract]' (missing: "
                        f"{', '.join(missing)})")


# ------------------------------------------------------------------------------------------------ one clip
_EXTRACTORS: dict[str, Any] = {}


def _extractors(cfg: ExtractConfig) -> tuple[Any, Any]:
    """The audio and face extractors of this process for ``cfg`` (built on first use)."""
    key = json.dumps(cfg.settings(), sort_keys=True)
    if key not in _EXTRACTORS:
        from .audio import AudioExtractor
        from .vision import FaceExtractor

        _EXTRACTORS.clear()
        _EXTRACTORS[key] = (AudioExtractor(cfg), FaceExtractor(cfg))
    return _EXTRACTORS[key]


def _guarded(fn: Any, *args: Any) -> tuple[Optional[np.ndarray], str, dict]:
    """An extractor step whose unexpected failure becomes this clip's reason (the clip is not lost, nor the run)."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - an extractor failing on one clip is that modality's absence
        text = str(exc).splitlines()[0][:120] if str(exc) else ""
        return None, f"extractor failed ({type(exc).__name__}{': ' + text if text else ''})", {}


def extract_audio_vision(path: str, cfg: ExtractConfig) -> dict:
    """Audio and vision features of one clip: ``{audio, audio_reason, vision, vision_reason, info...}``."""
    from .media import read_audio, sampled_frames

    audio_x, faces = _extractors(cfg)
    out: dict = {}
    t0 = time.perf_counter()
    samples, why = read_audio(path, cfg.max_seconds)
    feats, reason, info = _guarded(audio_x, samples)
    out.update(audio=feats, audio_reason=why if feats is None and samples is None else reason, **info)
    if feats is not None and why:
        out["audio_note"] = why
    t1 = time.perf_counter()
    frames, why = sampled_frames(path, cfg.fps, cfg.max_seconds)
    feats, reason, info = _guarded(faces, frames)
    out.update(vision=feats, vision_reason=why or reason, face=info.get("face", np.zeros(0, bool)),
               times=info.get("times", np.zeros(0, np.float32)))
    out.update(audio_s=t1 - t0, vision_s=time.perf_counter() - t1)
    return out


def _init_worker() -> None:
    """One thread per worker process (torch, OpenCV's own pool): the workers share the cores, none oversubscribes
    them. A single in-process extraction keeps OpenCV's and FFmpeg's threads."""
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


def _work(path: str, cfg_dict: dict) -> dict:
    return extract_audio_vision(path, from_dict(ExtractConfig, cfg_dict, "ExtractConfig"))


# ------------------------------------------------------------------------------------------------ cache
def _digest(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_key(path: str) -> list:
    try:
        st = os.stat(path)
        return [os.path.abspath(path), st.st_size, st.st_mtime_ns]
    except OSError:
        return [os.path.abspath(path), None, None]


class ClipCache:
    """One ``.npz`` per clip and part (``av``: audio + vision; ``text``), named by the clip id and keyed by the
    file (path, size, modification time) or transcript, and the settings that change the features."""

    def __init__(self, folder: Path, settings: dict) -> None:
        self.folder = folder / f"v{CACHE_VERSION}-{_digest(settings)}"
        self.folder.mkdir(parents=True, exist_ok=True)

    def _file(self, clip_id: str, part: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in clip_id)
        return self.folder / f"{safe}-{_digest(clip_id)[:6]}.{part}.npz"

    def get(self, clip_id: str, part: str, key: str) -> Optional[dict]:
        f = self._file(clip_id, part)
        if not f.is_file():
            return None
        try:
            with np.load(f, allow_pickle=False) as z:
                rec = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError):
            return None  # a damaged cache file: extract again
        meta = json.loads(str(rec.pop("__meta__")))
        if meta.get("key") != key:
            return None
        out = dict(meta.get("values", {}))
        out.update({k: (None if v.size == 0 and k in ("audio", "vision", "text") else v) for k, v in rec.items()})
        return out

    def put(self, clip_id: str, part: str, key: str, rec: dict) -> None:
        arrays = {k: np.zeros((0, 0), np.float32) if v is None else np.asarray(v) for k, v in rec.items()
                  if k in ("audio", "vision", "text", "face", "times")}
        values = {k: v for k, v in rec.items() if k not in arrays}
        arrays["__meta__"] = np.asarray(json.dumps({"key": key, "values": values}, default=float))
        atomic_write(self._file(clip_id, part), lambda fh: np.savez_compressed(fh, **arrays))


# ------------------------------------------------------------------------------------------------ provenance
def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def feature_provenance(cfg: ExtractConfig, dims: dict[str, int], text_fingerprint: Optional[str]) -> dict:
    """Per modality the extractor, the settings that shape the features, the dim and the library versions."""
    audio = {"extractor": "opensmile", "dim": dims["audio"],
             "settings": {"feature_set": AUDIO_SETS[cfg.audio_features], "level": "LowLevelDescriptors",
                          "rate_hz": cfg.audio_rate, "vad": "silero-vad" if cfg.vad else "none",
                          "vad_threshold": cfg.vad_threshold, "min_speech_s": cfg.min_speech},
             "versions": {"opensmile": _version("opensmile"), "silero-vad": _version("silero-vad"),
                          "av": _version("av")}}
    vision = {"extractor": "opencv-haar-face", "dim": dims["vision"],
              "settings": {"features": "geometry+hog" if cfg.vision_features == "hog" else "geometry+embedding",
                           "fps": cfg.fps, "detect_width": cfg.detect_width, "min_face": cfg.min_face,
                           "detect_scale": cfg.detect_scale,
                           "crop_size": cfg.crop_size,
                           **({"model": _file_digest(cfg.vision_model)} if cfg.vision_model and
                              cfg.vision_features == "embedding" else {})},
              "versions": {"opencv": _version("opencv-python-headless"), "av": _version("av")}}
    text = {"extractor": "transformers-last-hidden", "dim": dims["text"],
            "settings": {"model": text_fingerprint or "none", "max_tokens": cfg.max_tokens},
            "versions": {"transformers": _version("transformers"), "model_name": cfg.text_model}}
    return {"text": text, "audio": audio, "vision": vision}


def _file_digest(path: Optional[str]) -> str:
    h = hashlib.sha1()
    with open(str(path), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ the run
def _run_av(clips: list[Clip], cfg: ExtractConfig, cache: ClipCache, progress: bool) -> dict[str, dict]:
    """Audio + vision of every clip, from the cache where it holds them, else extracted (in parallel)."""
    from tqdm.auto import tqdm

    results: dict[str, dict] = {}
    todo = []
    for c in clips:
        key = _digest(_file_key(c.path))
        rec = cache.get(c.id, "av", key)
        if rec is not None:
            results[c.id] = {**rec, "cached": True}
        else:
            todo.append((c, key))
    bar = tqdm(total=len(clips), initial=len(results), desc="extract audio+vision", unit="clip",
               disable=not progress)

    def done(c: Clip, key: str, rec: dict) -> None:
        cache.put(c.id, "av", key, rec)
        results[c.id] = {**rec, "cached": False}
        bar.update(1)

    if cfg.workers == 1 or len(todo) <= 1:
        for c, key in todo:
            done(c, key, extract_audio_vision(c.path, cfg))
    else:
        cfg_dict = to_dict(cfg)
        with ProcessPoolExecutor(max_workers=min(cfg.workers, len(todo)), mp_context=get_context("spawn"),
                                 initializer=_init_worker) as pool:
            futures = {pool.submit(_work, c.path, cfg_dict): (c, key) for c, key in todo}
            for fut in as_completed(futures):
                c, key = futures[fut]
                done(c, key, fut.result())
    bar.close()
    return results


def _run_text(clips: list[Clip], cfg: ExtractConfig, cache: ClipCache) -> tuple[dict[str, dict], int, Optional[str]]:
    """Token embeddings per clip (cached by transcript), the text dim and the encoder's fingerprint."""
    if str(cfg.text_model).lower() == "none":
        return {c.id: {"text": None, "text_reason": "no text model (--text_model none)"} for c in clips}, 1, None
    from .text import TextEncoder

    encoder = TextEncoder(cfg)
    fingerprint = encoder.fingerprint()
    out: dict[str, dict] = {}
    todo = []
    for c in clips:
        key = _digest(c.text, fingerprint)
        rec = cache.get(c.id, "text", key)
        if rec is not None:
            out[c.id] = rec
        else:
            todo.append((c, key))
    for (c, key), (feats, reason) in zip(todo, encoder([c.text for c, _ in todo])):
        rec = {"text": feats, "text_reason": reason}
        cache.put(c.id, "text", key, rec)
        out[c.id] = rec
    return out, encoder.dim, fingerprint


def _status(rec: dict, m: str) -> str:
    return "ok" if rec.get(m) is not None else f"absent: {rec.get(f'{m}_reason') or 'unknown'}"


def report_frame(clips: list[Clip], av: dict[str, dict], text: dict[str, dict]) -> Any:
    """One row per clip: what each modality became and why, lengths and timings."""
    import pandas as pd

    rows = []
    for c in clips:
        rec = {**av[c.id], **text[c.id]}
        have = [m for m in MODALITIES if rec.get(m) is not None]
        rows.append({
            "id": c.id, "path": c.path, "split": c.split or "", "label": c.label if c.label is not None else "",
            "status": "complete" if len(have) == 3 else ("failed" if not have else "partial"),
            **{m: _status(rec, m) for m in MODALITIES},
            "text_tokens": 0 if rec.get("text") is None else int(rec["text"].shape[0]),
            "audio_steps": 0 if rec.get("audio") is None else int(rec["audio"].shape[0]),
            "speech_seconds": rec.get("speech_seconds", float("nan")),
            "sampled_frames": int(np.asarray(rec.get("face", [])).size),
            "face_frames": int(np.asarray(rec.get("face", []), bool).sum()),
            "audio_note": rec.get("audio_note", ""),
            "audio_s": round(float(rec.get("audio_s", 0.0)), 3), "vision_s": round(float(rec.get("vision_s", 0.0)), 3),
            "cached": bool(rec.get("cached", False)),
        })
    return pd.DataFrame(rows)


def summary_line(report: Any, out: Path) -> str:
    """``"12 clips -> f.npz: 8 complete, 3 partial, 1 failed; audio absent 2 (no speech 1, ...), ..."``."""
    n = len(report)
    counts = report["status"].value_counts()
    parts = [f"{n} clips -> {out}: {int(counts.get('complete', 0))} complete, {int(counts.get('partial', 0))} with "
             f"a modality absent, {int(counts.get('failed', 0))} failed (nothing extracted, left out)"]
    for m in MODALITIES:
        why = reason_kinds(report[m][report[m] != "ok"])
        if len(why):
            parts.append(f"{m} absent {len(why)} (" + ", ".join(f"{k} {v}" for k, v in why.value_counts().items())
                         + ")")
    return "; ".join(parts)


def reason_kinds(cells: Any) -> Any:
    """Report cells (``ok`` / ``absent: <reason>``) as kinds of outcome: the details in parentheses dropped and
    numbers replaced by ``N``, so that like reasons count together."""
    cells = cells.astype(str).str.replace("absent: ", "", regex=False)
    return cells.str.replace(r"\(.*\)", "", regex=True).str.replace(r"\d+(\.\d+)?", "N", regex=True).str.strip()


def _frames_file(out: Path, av: dict[str, dict], ids: list[str]) -> Path:
    """``<out>.frames.npz``: per clip the sampled frames' times and face flags (``<id>__time``, ``<id>__face``)."""
    path = out.with_suffix(".frames.npz")
    arrays = {}
    for i in ids:
        arrays[f"{i}__time"] = np.asarray(av[i].get("times", np.zeros(0)), np.float32)
        arrays[f"{i}__face"] = np.asarray(av[i].get("face", np.zeros(0)), bool)
    atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))
    return path


def extract(clips: PathLike, out: PathLike, transcripts: Optional[PathLike] = None,
            config: Union[ExtractConfig, dict, None] = None, *, report: Optional[PathLike] = None,
            name: Optional[str] = None, **options: Any) -> ExtractResult:
    """Extract features from a folder (or CSV) of clips into ``out`` (the project's ``.npz``).

    ``transcripts``: a CSV ``id, text[, split, label]``; ``config``/``options``: :class:`ExtractConfig` fields;
    ``report``: the per-clip CSV (default ``extract_report.csv`` beside ``out``). Label options (``task``,
    ``class_names``, ``label_range``, ``threshold``, ``metric_family``) read the labels as every reader does;
    numbers are regression targets unless ``task="classification"``, strings are class names.
    """
    import pandas as pd

    given = {k: options.pop(k, None) for k in LABEL_KEYS}
    labels_kw = {k: v for k, v in given.items() if v is not None}
    base = to_dict(config) if isinstance(config, ExtractConfig) else dict(config or {})
    cfg = from_dict(ExtractConfig, {**base, **options}, "extract")
    require_extras(text=str(cfg.text_model).lower() != "none")
    out = Path(out)
    if out.suffix.lower() != ".npz":
        raise DataError(f"{out}: the output must be an .npz file")
    clip_list = list_clips(clips, transcripts)
    cache = ClipCache(Path(cfg.cache) if cfg.cache else out.with_name(out.name + ".cache"), cfg.settings())
    av = _run_av(clip_list, cfg, cache, cfg.progress)
    text, text_dim, fingerprint = _run_text(clip_list, cfg, cache)
    table = report_frame(clip_list, av, text)
    report_path = Path(report) if report else out.with_name("extract_report.csv")
    kept = [c for c, status in zip(clip_list, table["status"]) if status != "failed"]  # the table's rows: clip_list
    if not kept:
        raise DataError(f"{clips}: nothing could be extracted from any of the {len(clip_list)} clips; see "
                        f"{report_path}")
    atomic_write(report_path, lambda fh: fh.write(table.to_csv(index=False).encode()))
    audio_x, faces = _extractors(cfg)  # their sizes (already built unless every clip was cached or in workers)
    dims = {"text": text_dim, "audio": audio_x.dim, "vision": faces.dim}
    labelled = all(c.label is not None for c in kept) and all(c.split for c in kept)
    labels = parse_labels(pd.Series([c.label for c in kept])) if labelled else None
    ds = from_arrays([text[c.id]["text"] for c in kept], [av[c.id]["audio"] for c in kept],
                     [av[c.id]["vision"] for c in kept], labels,
                     [c.split for c in kept] if labelled else None, [c.id for c in kept],
                     name=name or out.stem, dims=[dims[m] for m in MODALITIES],
                     for_prediction=not labelled, **labels_kw)
    ds.features = feature_provenance(cfg, dims, fingerprint)
    ds.source = str(clips)
    save_dataset(ds, out, "npz")
    _frames_file(out, av, [c.id for c in kept])
    return ExtractResult(out, report_path, table, ds, summary_line(table, out))
