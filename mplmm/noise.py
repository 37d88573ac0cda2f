"""Seeded feature noise: a corruption of the features a sample has, never a missing modality or step.

OpenVNA (thuiar/OpenVNA) evaluates robustness to noise as well as to drops. Noise here is kept apart from the missing
protocols of :mod:`mplmm.missing`: a :class:`NoiseSpec` says how much Gaussian noise is added, nothing is marked
absent, and results record it in a ``noise`` column next to (never instead of) the missing ``rate``.

Definition. For modality m of sample i (id ``sid``) the noise is ``level * scale_m * z`` with ``z`` standard normal
of the modality's shape ``(T_m, D_m)``, drawn by ``np.random.default_rng(h)`` where ``h`` is the 8-byte little-endian
blake2b of ``f"noise|{seed}|{split}|{sid}|{m}"``: a pure function of (level, seed, split, id), independent of the
batch, of N and of id order, and growing linearly with the level for a fixed seed (nested, as the missing masks).
``scale_m`` is the standard deviation of modality m's feature values over the **training** split (its recorded
samples), so a level is "noise σ in units of the feature spread". A modality a sample does not have stays zero.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from .constants import MODALITIES
from .errors import ConfigError
from .missing import _digests


@dataclass
class NoiseSpec:
    """Gaussian feature noise of standard deviation ``level`` × the modality's training-split spread, seed ``seed``."""

    level: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.level, bool) or not isinstance(self.level, (int, float, np.integer, np.floating)):
            raise ConfigError(f"NoiseSpec: level must be a number >= 0, got {self.level!r}")
        level = float(self.level)
        if not (0.0 <= level < float("inf")):  # also rejects NaN
            raise ConfigError(f"NoiseSpec: level must be a finite number >= 0, got {self.level!r}")
        self.level = level
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ConfigError(f"NoiseSpec: seed must be an integer, got {self.seed!r}")
        self.seed = int(self.seed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: ``kind`` (gaussian), ``level`` and ``seed``."""
        return {"kind": "gaussian", "level": self.level, "seed": self.seed}


def noise_scales(split: Any) -> dict[str, float]:
    """Standard deviation of each modality's feature values over the samples of ``split`` that have it (1.0 when it
    has none, or they are constant)."""
    present = np.asarray(split.present, dtype=bool)
    out = {}
    for j, m in enumerate(MODALITIES):
        values = np.asarray(split.modality(m))[present[:, j]]
        std = float(values.std()) if values.size else 0.0
        out[m] = std if std > 0 and np.isfinite(std) else 1.0
    return out


def draw_noise(spec: NoiseSpec, ids: Union[Sequence[Any], np.ndarray], split: str,
               shapes: Mapping[str, Sequence[int]], scales: Mapping[str, float],
               present: Optional[np.ndarray] = None) -> dict[str, np.ndarray]:
    """The additive noise ``{modality: float32 (N, T_m, D_m)}`` (zeros at level 0 and where ``present`` ``(N, 3)``
    says the sample lacks the modality); ``shapes`` gives ``(T_m, D_m)`` per modality."""
    n = len(np.asarray(ids))
    out = {}
    for j, m in enumerate(MODALITIES):
        shape = tuple(int(x) for x in shapes[m])
        noise = np.zeros((n, *shape), dtype=np.float32)
        if spec.level > 0 and n:
            seeds = _digests(f"noise|{spec.seed}|{split}|", ids, f"|{m}")
            for i, s in enumerate(seeds.tolist()):
                noise[i] = np.random.default_rng(s).standard_normal(shape)
            noise *= np.float32(spec.level * float(scales[m]))
            if present is not None:
                noise[~np.asarray(present, dtype=bool)[:, j]] = 0.0
        out[m] = noise
    return out


__all__ = ["NoiseSpec", "draw_noise", "noise_scales"]
