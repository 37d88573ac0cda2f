"""Data layer: the dataset schema, readers for MulT / MMSA / npz / MMIN-IEMOCAP layouts, synthetic data, writers.

Pickles are read without running code from them (:mod:`.safe_pickle`; ``trust_pickle=True`` opts out).
"""
from .arrays import from_arrays
from .labels import describe_labels, label_options
from .registry import FORMATS, SYNTHETIC_NAMES, detect_format, load_dataset
from .schema import SPLITS, DataError, MultimodalDataset, Split
from .synthetic import make_synthetic
from .writers import save_dataset

__all__ = [
    "DataError",
    "FORMATS",
    "MultimodalDataset",
    "SPLITS",
    "SYNTHETIC_NAMES",
    "Split",
    "describe_labels",
    "detect_format",
    "from_arrays",
    "label_options",
    "load_dataset",
    "make_synthetic",
    "save_dataset",
]
