"""Audio features: openSMILE low-level descriptors (eGeMAPS or ComParE) averaged to a step rate, and voice activity
from silero-vad (its model ships in its package). No speech, no audio stream or an unreadable one: audio absent."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .config import AUDIO_SETS, ExtractConfig
from .media import SAMPLE_RATE

#: openSMILE's low-level descriptors come every 10 ms
LLD_RATE = 100.0


def pool_frames(x: np.ndarray, source_rate: float, target_rate: float) -> np.ndarray:
    """Average ``(T, D)`` frames at ``source_rate`` over consecutive windows at ``target_rate`` (the last window may
    be shorter)."""
    win = max(1, int(round(source_rate / target_rate)))
    n = -(-x.shape[0] // win)
    out = np.empty((n, x.shape[1]), dtype=np.float32)
    for i in range(n):
        out[i] = x[i * win:(i + 1) * win].mean(axis=0)
    return out


def _load_vad() -> Any:
    """silero-vad's model. Importing the package sets torch to one thread for the whole process; the setting is put
    back, so that training or anything else in the same process keeps its threads."""
    import torch

    threads = torch.get_num_threads()
    try:
        from silero_vad import load_silero_vad

        return load_silero_vad()
    finally:
        torch.set_num_threads(threads)


class AudioExtractor:
    """One per process: the openSMILE extractor is built once, the VAD model on the first clip that needs it (a
    process that only asks for :attr:`dim` never loads it)."""

    def __init__(self, cfg: ExtractConfig) -> None:
        import opensmile

        self.cfg = cfg
        self.smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, AUDIO_SETS[cfg.audio_features]),
                                     feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
        self.names = list(self.smile.feature_names)
        self._vad: Optional[Any] = None

    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def vad(self) -> Any:
        """silero-vad's model, loaded on first use."""
        if self._vad is None:
            self._vad = _load_vad()
        return self._vad

    def speech_seconds(self, samples: np.ndarray) -> float:
        """Total speech in ``samples`` by silero-vad (its own segmentation; seconds)."""
        import torch
        from silero_vad import get_speech_timestamps

        stamps = get_speech_timestamps(torch.from_numpy(samples), self.vad, sampling_rate=SAMPLE_RATE,
                                       threshold=self.cfg.vad_threshold)
        return sum(s["end"] - s["start"] for s in stamps) / SAMPLE_RATE

    def __call__(self, samples: Optional[np.ndarray]) -> tuple[Optional[np.ndarray], str, dict]:
        """``(features (T, D) or None, reason, info)`` for 16-kHz mono ``samples`` (None: already failed)."""
        info: dict = {}
        if samples is None:
            return None, "", info
        if len(samples) < SAMPLE_RATE // 10:
            return None, "audio shorter than 0.1 s", info
        if self.cfg.vad:
            info["speech_seconds"] = round(self.speech_seconds(samples), 3)
            if info["speech_seconds"] < self.cfg.min_speech:
                return None, f"no speech (VAD found {info['speech_seconds']:.2f} s)", info
        lld = self.smile.process_signal(samples, SAMPLE_RATE).to_numpy(dtype=np.float32)
        lld = np.nan_to_num(lld, nan=0.0, posinf=0.0, neginf=0.0)
        if lld.shape[0] == 0:
            return None, "openSMILE returned no frames", info
        return pool_frames(lld, LLD_RATE, self.cfg.audio_rate), "", info
