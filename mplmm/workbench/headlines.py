"""Headline numbers that notebooks 03 and 04 write as ``key_metrics`` (the batch index shows them), and the
IG / occlusion agreement of notebook 04: pure functions of the tables those notebooks compute."""
from __future__ import annotations

from typing import Iterable, Mapping, Optional

import numpy as np
import pandas as pd
import torch

from ..constants import MODALITIES, MODE_NAMES


def attention_key_metrics(share: pd.DataFrame, generation: pd.DataFrame) -> dict[str, float]:
    """Prompt-attention share of the readout token in each module's last layer (and the uniform share), and the
    mean cosine / relative MSE of generated vs real features; empty tables give no entry."""
    key: dict[str, float] = {}
    if len(share):
        last = share[share["layer"] == share.groupby("module")["layer"].transform("max")]
        key["prompt share (last layer)"] = float(last["share"].mean())
        key["uniform share"] = float(last["uniform"].mean())
    if len(generation):
        key["generation cosine"] = float(generation["cosine"].mean())
        key["generation rel. MSE"] = float(generation["rel_mse"].mean())
    return key


def attribution_key_metrics(importance: pd.DataFrame, deltas: Mapping[int, torch.Tensor]) -> dict[str, float]:
    """Each modality's share of the ablation importance when complete, and the mean ``|IG completeness gap|``."""
    key = {f"share {r.modality} (complete)": float(r.share) for r in importance[importance["mode"] == 6].itertuples()}
    if 6 in deltas:
        key["IG gap (complete)"] = float(deltas[6].abs().mean())
    return key


def _corr(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else None


def ig_occlusion_agreement(per_sample: Mapping[tuple[int, str], Mapping[str, torch.Tensor]],
                           modes: Iterable[int]) -> dict[str, dict[str, Optional[float]]]:
    """Pearson correlation of IG and occlusion per-step relevance, per mode name and modality (None: a constant side).

    ``per_sample[(mode, "ig" | "occlusion")][modality]`` are ``(N, T)`` attributions; modes without both are skipped.
    """
    out: dict[str, dict[str, Optional[float]]] = {}
    for k in modes:
        if (k, "ig") not in per_sample or (k, "occlusion") not in per_sample:
            continue
        out[MODE_NAMES[k]] = {m: _corr(per_sample[(k, "ig")][m].flatten().numpy(),
                                       per_sample[(k, "occlusion")][m].flatten().numpy()) for m in MODALITIES}
    return out
