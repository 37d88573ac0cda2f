"""The data options every data-reading command shares, as one typed config (:mod:`mplmm.config`).

``mplmm train``, ``evaluate``, ``curve``, ``predict``, ``explain`` and ``params`` generate their data flags from
:class:`DataOptions` (``import`` its label flags); :meth:`DataOptions.source` and :meth:`DataOptions.load_options`
turn the flags given into :func:`~mplmm.data.load_dataset`'s arguments.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..config import option
from ..errors import ConfigError
from ..metrics import FAMILIES
from .registry import SYNTHETIC_NAMES
from .synthetic import SPECS

#: the label options (``import`` takes these alone)
LABEL_OPTIONS = ("label_range", "threshold", "task", "class_names", "metric_family")


@dataclass
class DataOptions:
    """Where the data is and how to read it."""

    dataset: str = option("synthetic", "synthetic (embedded) or a synthetic stand-in (" + ", ".join(
        SYNTHETIC_NAMES[1:]) + "); the real " + ", ".join(SPECS) + " need --data_path")
    data_path: Optional[str] = option(None, "file or folder in any supported format (MulT/MMSA pickle, .npz, MMIN "
                                      "IEMOCAP folder)")
    size: Optional[float] = option(None, "synthetic data only: split-size scale factor", low=0, low_open=True)
    seq_lens: Optional[list[int]] = option(None, "pad/truncate (files) or generate (synthetic) these sequence "
                                           "lengths", length=3, low=1, metavar=("T_L", "T_A", "T_V"))
    trust_pickle: bool = option(False, "read a .pkl with plain pickle, which runs any code the file names: only for "
                                "a file you trust (default: a restricted reader that loads arrays, strings, numbers "
                                "and containers)")
    drop_empty: bool = option(False, "drop samples that have no modality at all (default: a one-line error naming "
                              "the first)")
    label_range: Optional[list[float]] = option(None, "regression label scale (default: the MOSI/SIMS scale when "
                                                "recognised, else inferred from the training split)", length=2,
                                                metavar=("LO", "HI"))
    threshold: Optional[float] = option(None, "generic regression family: binary accuracy/F1 threshold (default 0 "
                                        "for a range symmetric around 0, else the midpoint)")
    task: Optional[str] = option(None, "classification for integer class labels (string labels are classes anyway)",
                                 choices=("regression", "classification"))
    class_names: Optional[str] = option(None, "comma-separated class names in class-index order")
    metric_family: Optional[str] = option(None, "metric set (default: recognised from the data; see "
                                          "docs/protocol_metrics.md)", choices=FAMILIES)

    def source(self) -> str:
        """What :func:`~mplmm.data.load_dataset` reads: ``data_path``, else ``dataset``. A real dataset's name
        without ``data_path`` is a one-line :class:`~mplmm.errors.ConfigError` naming the synthetic stand-ins."""
        if self.data_path:
            return self.data_path
        name = self.dataset.lower()
        if name in SPECS and not Path(self.dataset).exists():
            raise ConfigError(f"--dataset {self.dataset} reads the real {name} features: give their file or folder "
                              f"with --data_path, or name a synthetic stand-in ({', '.join(SYNTHETIC_NAMES)}), e.g. "
                              f"--dataset synthetic-{name}")
        return name if name in SYNTHETIC_NAMES else self.dataset

    def load_options(self, names: Optional[tuple] = None) -> dict[str, Any]:
        """:func:`~mplmm.data.load_dataset` keywords of the options that were given (``names``: only these)."""
        out: dict[str, Any] = {"size": self.size, "threshold": self.threshold, "task": self.task,
                               "metric_family": self.metric_family,
                               "seq_lens": tuple(self.seq_lens) if self.seq_lens else None,
                               "label_range": tuple(self.label_range) if self.label_range else None,
                               "class_names": self.class_names.split(",") if self.class_names else None,
                               "drop_empty": self.drop_empty or None, "trust_pickle": self.trust_pickle or None}
        return {k: v for k, v in out.items() if v is not None and (names is None or k in names)}
