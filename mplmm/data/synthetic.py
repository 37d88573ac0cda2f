"""Synthetic multimodal datasets with a known structure (the embedded default dataset), and the writers.

Generative model, per sample: a label latent ``z`` (a scalar sentiment for regression, a C-vector whose argmax is the
class for classification), ``K_SHARED`` factors shared by all modalities and ``K_PRIVATE`` factors private to each.
Each modality maps ``[gain_m * z, s, p_m]`` through fixed unit-norm loadings to its feature space; the projection is
scaled over time by a smooth bump (signal strongest in a random window) and static per-sample noise plus white frame
noise is added. Text has the highest label gain, audio and vision lower ones; a missing modality is partly
recoverable from the others through ``z`` and ``s``. A few audio/vision frames are exact zeros; there is no NaN.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..constants import MODALITIES
from .schema import SPLITS, DataError, MultimodalDataset, Split


@dataclass(frozen=True)
class Spec:
    """Shapes and label layout of one synthetic kind (full split sizes)."""

    dims: tuple[int, int, int]
    seq_lens: tuple[int, int, int]
    sizes: tuple[int, int, int]
    task: str = "regression"
    label_range: Optional[tuple[float, float]] = (-3.0, 3.0)
    label_scale: float = 1.5  # y = scale * z before rounding/clipping
    label_step: float = 1.0 / 3.0
    class_names: Optional[tuple[str, ...]] = None
    class_prior: Optional[tuple[float, ...]] = None
    metric_family: str = "mosi"


SPECS: dict[str, Spec] = {
    "mosi": Spec((300, 5, 20), (50, 375, 500), (1284, 229, 686)),
    "mosei": Spec((300, 74, 35), (50, 500, 500), (16326, 1871, 4659), label_scale=1.2),
    "sims": Spec((768, 33, 709), (39, 400, 55), (1368, 456, 457), label_range=(-1.0, 1.0), label_scale=0.5,
                 label_step=0.2, metric_family="sims"),
    "iemocap": Spec((1024, 130, 342), (22, 350, 50), (4446, 539, 546), task="classification", label_range=None,
                    class_names=("anger", "happiness", "neutral", "sadness"),
                    class_prior=(1103, 1636, 1708, 1084), metric_family="iemocap"),
}
#: The embedded default ("synthetic"): MOSI dims, short sequences, 320 / 80 / 160 samples.
DEFAULT_SYNTHETIC = {"kind": "mosi", "seq_lens": (10, 16, 16), "sizes": (320, 80, 160)}

GAINS = {"text": 1.2, "audio": 0.45, "vision": 0.4}  # label-signal gain per modality
SHARED_GAIN, PRIVATE_GAIN = 0.8, 0.8
K_SHARED, K_PRIVATE = 4, 4
STATIC_NOISE, FRAME_NOISE = 0.5, 1.0
ZERO_FRAME_RATE = 0.01
CHUNK = 256


def _loadings(rng: np.random.Generator, k: int, d: int) -> np.ndarray:
    """``(k, d)`` rows of unit norm: each latent factor is one direction in feature space."""
    w = rng.standard_normal((k, d))
    return (w / np.linalg.norm(w, axis=1, keepdims=True)).astype(np.float32)


def _profile(rng: np.random.Generator, n: int, t: int) -> np.ndarray:
    """``(n, t)`` smooth temporal weights (a bump in a random window over a floor), mean 1 per sample."""
    grid = (np.arange(t, dtype=np.float32) + 0.5) / t
    centre = rng.uniform(0.15, 0.85, (n, 1))
    width = rng.uniform(0.1, 0.3, (n, 1))
    g = 0.3 + np.exp(-0.5 * ((grid[None, :] - centre) / width) ** 2)
    return (g / g.mean(axis=1, keepdims=True)).astype(np.float32)


def _labels(spec: Spec, z: np.ndarray) -> np.ndarray:
    """Quantised, clipped regression labels or argmax classes from the latent ``z``."""
    if spec.task == "classification":
        prior = np.asarray(spec.class_prior, dtype=np.float64)
        return (z + np.log(prior / prior.sum())).argmax(axis=1).astype(np.int64)
    y = np.round(spec.label_scale * z[:, 0] / spec.label_step) * spec.label_step
    return (np.clip(y, *spec.label_range) + 0.0).astype(np.float32)  # + 0.0 turns -0.0 into 0.0


def _modality(rng: np.random.Generator, h: np.ndarray, w: np.ndarray, t: int, zero_frames: bool) -> np.ndarray:
    """``(n, t, d)`` features from latents ``h`` ``(n, k)`` and loadings ``w`` ``(k, d)``, in chunks."""
    n, d = h.shape[0], w.shape[1]
    out = np.empty((n, t, d), dtype=np.float32)
    for a in range(0, n, CHUNK):
        b = min(n, a + CHUNK)
        proj = np.einsum("nk,kd->nd", h[a:b], w)  # einsum: no BLAS thread start-up for tiny products
        x = _profile(rng, b - a, t)[:, :, None] * proj[:, None, :]
        x += STATIC_NOISE * rng.standard_normal((b - a, 1, d), dtype=np.float32)
        x += FRAME_NOISE * rng.standard_normal((b - a, t, d), dtype=np.float32)
        if zero_frames:
            x[rng.random((b - a, t)) < ZERO_FRAME_RATE] = 0.0
        out[a:b] = x
    return out


def _split(rng: np.random.Generator, spec: Spec, n: int, seq_lens: Sequence[int], load: dict, split: str,
           kind: str) -> Split:
    """Generate one split."""
    k_label = len(spec.class_names) if spec.task == "classification" else 1
    z = rng.standard_normal((n, k_label)).astype(np.float32)
    shared = rng.standard_normal((n, K_SHARED)).astype(np.float32)
    feats = {}
    for m, t in zip(MODALITIES, seq_lens):
        private = rng.standard_normal((n, K_PRIVATE)).astype(np.float32)
        h = np.concatenate([GAINS[m] * z, SHARED_GAIN * shared, PRIVATE_GAIN * private], axis=1)
        feats[m] = _modality(rng, h, load[m], int(t), zero_frames=m != "text")
    ids = np.array([f"{kind}_{split}_{i:06d}" for i in range(n)], dtype=str)
    return Split(feats["text"], feats["audio"], feats["vision"], _labels(spec, z), ids)


def snr_notes(seq_lens: Sequence[int]) -> list[str]:
    """Human-readable SNR per modality (label gain, and pooled SNR along the label direction)."""
    parts = []
    for m, t in zip(MODALITIES, seq_lens):
        pooled = GAINS[m] ** 2 / (STATIC_NOISE**2 + FRAME_NOISE**2 / t)
        parts.append(f"{m} gain {GAINS[m]:.2f} (pooled SNR {pooled:.2f})")
    return ["label-signal SNR per modality: " + ", ".join(parts),
            f"shared factors {K_SHARED} (gain {SHARED_GAIN}), private factors {K_PRIVATE} per modality "
            f"(gain {PRIVATE_GAIN}), static noise sd {STATIC_NOISE}, frame noise sd {FRAME_NOISE}, "
            f"{ZERO_FRAME_RATE:.0%} exact-zero audio/vision frames"]


def make_synthetic(kind: str = "mosi", size: float = 0.1, seed: int = 0,
                   seq_lens: Optional[Sequence[int]] = None,
                   sizes: Optional[Sequence[int]] = None) -> MultimodalDataset:
    """A deterministic synthetic dataset shaped like ``kind`` (mosi, mosei, sims, iemocap).

    ``size`` scales the full split sizes (at least 16 per split); ``sizes`` sets ``(train, valid, test)`` directly;
    ``seq_lens`` overrides ``(T_text, T_audio, T_vision)``.
    """
    if kind not in SPECS:
        raise DataError(f"unknown synthetic kind {kind!r}; expected one of {sorted(SPECS)}")
    spec = SPECS[kind]
    lens = tuple(int(t) for t in (seq_lens or spec.seq_lens))
    if len(lens) != 3 or min(lens) < 1:
        raise DataError(f"synthetic {kind}: seq_lens must be three positive ints, got {seq_lens}")
    counts = tuple(int(c) for c in sizes) if sizes else tuple(max(16, round(c * size)) for c in spec.sizes)
    if len(counts) != 3 or min(counts) < 1:
        raise DataError(f"synthetic {kind}: split sizes must be three positive ints, got {counts}")
    root = np.random.SeedSequence(int(seed))
    seeds = root.spawn(1 + len(SPLITS))
    lrng = np.random.default_rng(seeds[0])
    k_total = (len(spec.class_names) if spec.class_names else 1) + K_SHARED + K_PRIVATE
    load = {m: _loadings(lrng, k_total, d) for m, d in zip(MODALITIES, spec.dims)}
    splits = {s: _split(np.random.default_rng(ss), spec, n, lens, load, s, kind)
              for s, n, ss in zip(SPLITS, counts, seeds[1:])}
    notes = [f"synthetic {kind}: seed {seed}, sizes {counts}, seq_lens {lens}"] + snr_notes(lens)
    return MultimodalDataset(
        name=f"synthetic-{kind}", splits=splits, task=spec.task,
        class_names=list(spec.class_names) if spec.class_names else None, label_range=spec.label_range,
        metric_family=spec.metric_family, source="synthetic", format="synthetic", notes=notes,
    )


def make_default_synthetic(seed: int = 0, **overrides) -> MultimodalDataset:
    """The embedded default dataset (``load_dataset("synthetic")``): fast to make (well under a second)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    cfg = {**DEFAULT_SYNTHETIC, **given}
    if "size" in given and "sizes" not in given:  # size scales the full MOSI split sizes, as for other kinds
        cfg.pop("sizes")
    ds = make_synthetic(seed=seed, **cfg)
    ds.name = "synthetic"
    return ds
