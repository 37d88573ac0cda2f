"""Raw clips to features (``python -m mplmm extract``): openSMILE audio descriptors with silero-vad, faces found by
OpenCV's Haar detector with geometry + HOG (or a TorchScript embedding), token embeddings from a Hugging Face
encoder. Whatever an extractor cannot deliver becomes that modality's absence, with its reason in the report.

Needs the optional extra: ``pip install -e ".[extract]"``.
"""
from .config import ExtractConfig
from .inputs import Clip, list_clips
from .pipeline import ExtractResult, extract

__all__ = ["Clip", "ExtractConfig", "ExtractResult", "extract", "list_clips"]
