"""Real clips built on this machine, for the tests and the offline demo: a face photo that ships with scikit-image
(``data.astronaut()``) moved about as a few seconds of video, speech synthesised by ``espeak-ng``, muxed with PyAV.
Variants lack what a user's clips lack: a face, speech, a transcript, an intact file.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

#: the astronaut photo's face lies inside this (top, left, size) square; the suit below it holds no face
_FACE_BOX = (20, 120, 220)
_NO_FACE_BOX = (300, 200, 200)


def espeak_available() -> Optional[str]:
    """The espeak-ng (or espeak) executable, or None."""
    return shutil.which("espeak-ng") or shutil.which("espeak")


def speech(text: str, pitch: int = 50, speed: int = 160) -> tuple[np.ndarray, int]:
    """``(float32 mono samples, rate)`` of ``text`` spoken by espeak-ng."""
    import soundfile as sf

    exe = espeak_available()
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run([exe, "-w", str(wav), "-p", str(pitch), "-s", str(speed), text], check=True,
                       capture_output=True)
        x, sr = sf.read(wav, dtype="float32")
    return (x if x.ndim == 1 else x.mean(axis=1)), int(sr)


def _frames(face: bool, seconds: float, fps: int, size: int, seed: int) -> np.ndarray:
    import cv2
    from skimage import data

    img = data.astronaut()
    top, left, side = _FACE_BOX if face else _NO_FACE_BOX
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi)
    n = max(1, int(round(seconds * fps)))
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        dx = int(12 * np.sin(phase + 2 * np.pi * i / (1.5 * fps)))
        dy = int(8 * np.cos(phase + 2 * np.pi * i / (2.0 * fps)))
        y, x = int(np.clip(top + dy, 0, 512 - side)), int(np.clip(left + dx, 0, 512 - side))
        out[i] = cv2.resize(img[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)
    return out


def write_clip(path: str | Path, *, text: Optional[str] = None, face: bool = True, seconds: float = 3.0,
               fps: int = 25, size: int = 160, video: bool = True, audio: bool = True, pitch: int = 50,
               speed: int = 160, seed: int = 0) -> Path:
    """An mp4 (H.264 + AAC) of ``seconds``: the astronaut's face (or, ``face=False``, her suit) moving, and
    ``text`` spoken (None: silence). ``video=False``/``audio=False`` leave that stream out."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = 16000
    samples = np.zeros(int(seconds * rate), np.float32)
    if text:
        voice, sr = speech(text, pitch, speed)
        if sr != rate:
            voice = np.interp(np.arange(0, len(voice), sr / rate), np.arange(len(voice)), voice).astype(np.float32)
        samples[: min(len(voice), len(samples))] = voice[: len(samples)]
    with av.open(str(path), "w") as out:
        vs = as_ = None
        if video:
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            vs = out.add_stream(codec, rate=fps)
            vs.width = vs.height = size
            vs.pix_fmt = "yuv420p"
        if audio:
            as_ = out.add_stream("aac", rate=rate)
            as_.layout = "mono"
        if vs is not None:
            for img in _frames(face, seconds, fps, size, seed):
                for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
            for packet in vs.encode():
                out.mux(packet)
        if as_ is not None:
            step = 1024
            for start in range(0, len(samples), step):
                chunk = samples[start:start + step]
                frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
                frame.sample_rate = rate
                for packet in as_.encode(frame):
                    out.mux(packet)
            for packet in as_.encode():
                out.mux(packet)
    return path


def truncate(path: str | Path, keep: float = 0.3) -> Path:
    """Cut a file to its first ``keep`` fraction of bytes (a download that broke off)."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])
    return path


_POSITIVE = ["I really loved this movie", "what a wonderful and happy story", "the acting was great and fun",
             "a beautiful film that I enjoyed", "brilliant music and a lovely ending", "I liked it very much"]
_NEGATIVE = ["this was a terrible movie", "boring and far too long", "I hated the awful ending",
             "the acting was bad and dull", "a sad waste of my time", "I did not like it at all"]


def ensure_demo_clips(folder: str | Path, n: int, seed: int = 0) -> bool:
    """Write :func:`demo_clips` into ``folder`` unless it already holds clips (``n`` <= 0: never); True if written."""
    from .inputs import MEDIA_SUFFIXES

    folder = Path(folder)
    if n <= 0 or (folder.is_dir() and any(p.suffix.lower() in MEDIA_SUFFIXES for p in folder.iterdir())):
        return False
    demo_clips(folder, n=n, seed=seed)
    return True


def demo_clips(folder: str | Path, n: int = 60, seconds: float = 2.5, seed: int = 0) -> Path:
    """``n`` labelled clips in ``folder`` plus ``transcripts.csv`` (id, text, split, label) and ``text_encoder/`` (a
    small random BERT over the clips' words: a stand-in so the demo runs offline, not a language model).

    The sentiment label (-3..3) follows the sentence's polarity, the voice's pitch and the face's size, so every
    modality carries some of it. Like real data, some clips lack something: about 15 % show no face, 10 % are
    silent, 10 % have no transcript; one is audio only, one is truncated and one is not a video at all.
    """
    import pandas as pd

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        cid = f"clip_{i:03d}"
        polarity = 1 if rng.random() < 0.5 else -1
        strength = rng.uniform(0.5, 3.0)
        sentence = str(rng.choice(_POSITIVE if polarity > 0 else _NEGATIVE))
        face = rng.random() > 0.15
        silent = rng.random() < 0.10
        transcript = None if rng.random() < 0.10 else sentence
        split = "train" if i % 10 < 6 else ("valid" if i % 10 < 8 else "test")
        path = folder / f"{cid}.mp4"
        write_clip(path, text=None if silent else sentence, face=face, seconds=seconds, seed=seed * 1000 + i,
                   pitch=int(50 + 12 * polarity * strength), size=144 + int(8 * strength) * 2)
        rows.append({"id": cid, "text": transcript or "", "split": split,
                     "label": round(float(np.clip(polarity * strength + rng.normal(0, 0.3), -3, 3)), 2)})
    extra = [(f"clip_{n:03d}", {"video": False}), (f"clip_{n + 1:03d}", {}), (f"clip_{n + 2:03d}", None)]
    for k, (cid, kw) in enumerate(extra):
        sentence = _POSITIVE[k] if k % 2 == 0 else _NEGATIVE[k]
        path = folder / f"{cid}.mp4"
        if kw is None:
            path.write_bytes(b"this is not a video file\n" * 20)
        else:
            write_clip(path, text=sentence, seconds=seconds, seed=seed * 1000 + n + k, **kw)
            if k == 1:
                truncate(path, 0.3)
        rows.append({"id": cid, "text": sentence, "split": ("train", "valid", "test")[k],
                     "label": 2.0 if k % 2 == 0 else -2.0})
    pd.DataFrame(rows).to_csv(folder / "transcripts.csv", index=False)
    from .text import tiny_encoder

    words = " ".join(_POSITIVE + _NEGATIVE).lower().split()
    tiny_encoder(folder / "text_encoder", words, seed=seed)
    return folder
