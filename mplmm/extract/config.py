"""The settings of :func:`mplmm.extract.extract` (``python -m mplmm extract``), one typed config.

Every field that changes the features is recorded in the written file (:func:`feature_provenance`), so a checkpoint
trained on features made one way refuses features made another way. ``workers``, ``cache`` and ``progress`` only
change how the work is done.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..config import bad_value, check, option
from ..errors import ConfigError

#: openSMILE feature sets by our name: (FeatureSet member, the set's own name)
AUDIO_SETS = {"egemaps": "eGeMAPSv02", "compare": "ComParE_2016"}
VISION_FEATURES = ("hog", "embedding")
#: the default text encoder: the corpora's BERT-base; needs its weights on disk or a network (else --text_model PATH)
DEFAULT_TEXT_MODEL = "bert-base-uncased"


@dataclass
class ExtractConfig:
    """How clips become frame-level features (defaults: eGeMAPS LLDs at 10 Hz, faces at 5 fps, BERT tokens)."""

    audio_features: str = option("egemaps", "openSMILE low-level descriptor set: egemaps (eGeMAPSv02, 25 dims) or "
                                 "compare (ComParE_2016, 65 dims)", choices=tuple(AUDIO_SETS))
    audio_rate: float = option(10.0, "audio steps per second: the 100-Hz descriptors are averaged over windows of "
                               "this rate", low=1.0, high=100.0, unit="Hz")
    vad: bool = option(True, "voice activity detection (silero-vad): a clip without speech has audio absent")
    vad_threshold: float = option(0.5, "silero-vad speech probability threshold", low=0.0, high=1.0,
                                  low_open=True, high_open=True)
    min_speech: float = option(0.25, "least total speech for audio to count as recorded", low=0.0, unit="s")
    fps: float = option(5.0, "video frames sampled per second for face detection", low=0.1, high=60.0, unit="Hz")
    detect_width: int = option(320, "frames are scaled down to this width for face detection", low=64)
    min_face: float = option(0.15, "smallest face searched, as a fraction of the (scaled) frame's shorter side",
                             low=0.01, high=1.0)
    detect_scale: float = option(1.2, "step between the face detector's search scales (OpenCV's scaleFactor; "
                                 "smaller finds more faces, slower)", low=1.01, high=2.0)
    vision_features: str = option("hog", "per-face features: hog (box geometry + HOG of the face crop, 328 dims) or "
                                  "embedding (a TorchScript image model given by --vision_model)",
                                  choices=VISION_FEATURES)
    vision_model: Optional[str] = option(None, "TorchScript file of an image encoder, (B, 3, H, W) in [0, 1] -> (B, D) "
                                         "(for vision_features embedding; export a torchvision/timm model with "
                                         "torch.jit.trace)")
    crop_size: int = option(64, "face crops are resized to this many pixels a side", low=16, high=512)
    text_model: str = option(DEFAULT_TEXT_MODEL, "Hugging Face encoder (name or local folder) for token-level text "
                             "features; 'none': no text features")
    max_tokens: int = option(50, "transcripts are cut to this many tokens (special tokens included)", low=3)
    max_seconds: Optional[float] = option(None, "only the first this many seconds of each clip are read", low=0.1,
                                          unit="s")
    workers: int = option(1, "processes extracting audio and vision in parallel", low=1, high=256)
    cache: Optional[str] = option(None, "per-clip cache folder (default: '<out>.cache' beside the output)")
    progress: bool = option(True, "a progress bar", flag=False)

    def cross_check(self, where: str) -> None:
        """An embedding needs its model file."""
        if self.vision_features == "embedding" and not self.vision_model:
            raise ConfigError(bad_value(where, "vision_model", "a TorchScript file (vision_features is 'embedding')",
                                        self.vision_model))

    def validate(self, where: str = "ExtractConfig") -> "ExtractConfig":
        """Every field checked (one-line :class:`~mplmm.errors.ConfigError` naming the key); returns self."""
        return check(self, where)

    def settings(self) -> dict:
        """The fields that change the features (recorded in the output, part of the cache key)."""
        skip = {"workers", "cache", "progress"}
        return {k: v for k, v in vars(self).items() if k not in skip}
