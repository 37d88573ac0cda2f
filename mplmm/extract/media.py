"""Reading clips with PyAV (FFmpeg's libraries): the audio track as 16-kHz mono samples, video frames at a set rate.

Every failure is a reason string, never an exception out of here: a missing stream, an unreadable or truncated file
turns into ``(None, "why")`` for that modality, and the caller records the modality as absent.
"""
from __future__ import annotations

from typing import Iterator, Optional

import numpy as np

#: the sample rate every audio track is resampled to (what the VAD model expects)
SAMPLE_RATE = 16000


def _open(path: str):
    import av

    return av.open(path, metadata_errors="ignore")


def _why(exc: BaseException) -> str:
    """``"unreadable (InvalidDataError: Invalid data found when processing input)"``: FFmpeg's message without
    its error number and the file name (the report has the path)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = text.split(": '")[0]
    if text.startswith("[Errno"):
        text = text.split("] ", 1)[-1]
    return f"unreadable ({type(exc).__name__}{': ' + text[:120] if text else ''})"


def read_audio(path: str, max_seconds: Optional[float] = None) -> tuple[Optional[np.ndarray], str]:
    """``(samples, "")``: float32 mono at :data:`SAMPLE_RATE`, or ``(None, reason)`` (no audio stream, unreadable,
    no samples decoded). A stream that breaks off after some audio keeps what was decoded (reason says so)."""
    import av

    try:
        container = _open(path)
    except Exception as exc:  # noqa: BLE001 - any FFmpeg/OS failure is this clip's reason, not a crash
        return None, _why(exc)
    chunks: list[np.ndarray] = []
    note = ""
    try:
        if not container.streams.audio:
            return None, "no audio stream"
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        limit = None if max_seconds is None else int(max_seconds * SAMPLE_RATE)
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                if limit is not None and sum(len(c) for c in chunks) >= limit:
                    break
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except Exception as exc:  # noqa: BLE001 - a truncated stream: keep what was read
            note = f"stream broke off ({type(exc).__name__})"
    finally:
        container.close()
    if not chunks:
        return None, note or "no audio decoded"
    samples = np.concatenate(chunks).astype(np.float32)
    if max_seconds is not None:
        samples = samples[: int(max_seconds * SAMPLE_RATE)]
    return samples, note


def sampled_frames(path: str, fps: float, max_seconds: Optional[float] = None
                   ) -> tuple[Optional[Iterator[tuple[float, np.ndarray]]], str]:
    """``(iterator of (time in s, RGB uint8 frame), "")`` sampling the first video stream at ``fps``, or ``(None,
    reason)``. The iterator stops quietly where a truncated stream breaks off (:func:`frames_or_reason`)."""
    try:
        container = _open(path)
    except Exception as exc:  # noqa: BLE001
        return None, _why(exc)
    if not container.streams.video:
        container.close()
        return None, "no video stream"

    def frames() -> Iterator[tuple[float, np.ndarray]]:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        step, next_t = 1.0 / fps, 0.0
        try:
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else next_t
                if max_seconds is not None and t >= max_seconds:
                    break
                if t + 1e-6 < next_t:
                    continue
                next_t += step * max(1, int((t - next_t) // step) + 1)
                yield t, frame.to_ndarray(format="rgb24")
        except Exception:  # noqa: BLE001 - truncated: the frames read so far stand
            return
        finally:
            container.close()

    return frames(), ""
