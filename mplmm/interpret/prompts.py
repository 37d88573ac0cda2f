"""MPLMM's prompts and generated features: how the modes' missing-type prompts differ, how close generated
modalities come to the real ones.

* :func:`prompt_similarity`: cosine similarity of the seven modes' missing-type prompt tokens and a 2-D PCA
  projection (SVD, no sklearn). MPLMM only.
* :func:`generation_quality`: per time step MSE and cosine similarity between the features MPLMM generates for a
  dropped modality and the real path ``proj(x) + P_NMS`` of the same samples.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..constants import COMPLETE_MODE, LETTER_TO_NAME, LETTERS, MODALITIES, MODE_NAMES, MODE_PRESENT, N_MODES
from .common import batches, eval_mode, model_device, modes_tensor, require


def sources_of(mode: int, modality: str) -> str:
    """The modalities a missing ``modality`` is generated from in ``mode`` (e.g. ``"audio+vision"``)."""
    return "+".join(name for name, p in zip(MODALITIES, MODE_PRESENT[int(mode)]) if p and name != modality)


@dataclass
class PromptSimilarity:
    """Result of :func:`prompt_similarity`."""

    similarity: pd.DataFrame  # (7, 7) cosine similarity of the modes' prompt tokens (all branches)
    branch_similarity: dict[str, pd.DataFrame]  # per branch (text / audio / vision)
    pca_modes: pd.DataFrame  # mode, mode_name, pc1, pc2 (one point per mode)
    pca_tokens: pd.DataFrame  # mode, mode_name, branch, token, pc1, pc2 (one point per prompt token)
    explained_variance: list[float]  # ratio of the two mode-level components
    norms: pd.Series  # L2 norm of each mode's tokens


def cosine_matrix(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Pairwise cosine similarity of the rows of ``x (N, F)``; rows of norm 0 give 0 (not NaN)."""
    norm = x.norm(dim=1, keepdim=True)
    xn = x / norm.clamp_min(eps)
    sim = xn @ xn.T
    zero = (norm.squeeze(1) <= eps)
    sim[zero] = 0.0
    sim[:, zero] = 0.0
    return sim


def pca_2d(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Project rows of ``x (N, F)`` on their first two principal components (SVD of the centred data).

    Signs are fixed (largest-``|loading|`` entry of each component positive) so the result is deterministic. Returns the
    ``(N, 2)`` coordinates and the explained-variance ratios ``(2,)`` (zeros for constant data).
    """
    x = x.double()
    xc = x - x.mean(dim=0, keepdim=True)
    u, s, vh = torch.linalg.svd(xc, full_matrices=False)
    k = min(2, s.numel())
    for i in range(k):
        j = int(vh[i].abs().argmax())
        if vh[i, j] < 0:
            u[:, i], vh[i] = -u[:, i], -vh[i]
    coords = torch.zeros(x.shape[0], 2, dtype=torch.float64)
    coords[:, :k] = u[:, :k] * s[:k]
    total = float((s ** 2).sum())
    ratio = torch.zeros(2, dtype=torch.float64)
    if total > 0:
        ratio[:k] = s[:k] ** 2 / total
    return coords.float(), ratio.float()


def prompt_tokens(model: nn.Module) -> torch.Tensor:
    """The missing-type prompt tokens of all seven modes: ``(7, 3, P, 2d)`` (branches l, a, v)."""
    require(model, "missing_type_tokens", "prompt analysis")
    dev = model_device(model)
    with eval_mode(model), torch.no_grad():
        toks = model.missing_type_tokens(torch.arange(N_MODES, device=dev))
    return torch.stack([t.detach().float().cpu() for t in toks], dim=1)


def prompt_similarity(model: nn.Module) -> PromptSimilarity:
    """How the seven modes' missing-type prompt tokens differ: cosine similarity and a 2-D PCA projection."""
    toks = prompt_tokens(model)  # (7, 3, P, 2d)
    names = [MODE_NAMES[k] for k in range(N_MODES)]
    flat = toks.reshape(N_MODES, -1)
    sim = pd.DataFrame(cosine_matrix(flat).numpy(), index=names, columns=names)
    per_branch = {LETTER_TO_NAME[b]: pd.DataFrame(cosine_matrix(toks[:, i].reshape(N_MODES, -1)).numpy(),
                                                  index=names, columns=names) for i, b in enumerate(LETTERS)}
    coords, ratio = pca_2d(flat)
    pca_modes = pd.DataFrame({"mode": range(N_MODES), "mode_name": names,
                              "pc1": coords[:, 0].numpy(), "pc2": coords[:, 1].numpy()})
    n_tok = toks.shape[2]
    tok_coords, _ = pca_2d(toks.reshape(-1, toks.shape[-1]))
    grid = np.array([(k, b, t) for k in range(N_MODES) for b in range(3) for t in range(n_tok)])
    pca_tokens = pd.DataFrame({"mode": grid[:, 0], "mode_name": [names[k] for k in grid[:, 0]],
                               "branch": [MODALITIES[b] for b in grid[:, 1]], "token": grid[:, 2],
                               "pc1": tok_coords[:, 0].numpy(), "pc2": tok_coords[:, 1].numpy()})
    norms = pd.Series(flat.norm(dim=1).numpy(), index=names, name="norm")
    return PromptSimilarity(sim, per_branch, pca_modes, pca_tokens, [float(r) for r in ratio], norms)


# ----------------------------------------------------------------------------------------------------------------------
# generated features
# ----------------------------------------------------------------------------------------------------------------------
def generation_quality(model: nn.Module, ds, split: str = "test", n_samples: Optional[int] = None,
                       batch_size: int = 128) -> pd.DataFrame:
    """Generated vs real features of each dropped modality, per time step.

    For every modality and every mode in which it is missing, the same samples go through
    ``complete_inputs`` twice: once in that mode (generated features) and once complete (``proj(x) + P_NMS``, the
    real path). One row per (modality, mode, time step): ``mse`` (mean over samples and channels), ``cosine``
    (mean over samples of the cosine similarity across channels), ``real_power`` (mean squared real feature) and
    ``rel_mse = mse / real_power``. Only samples that really have all three modalities count (the others have no
    real path to compare with).
    """
    require(model, "complete_inputs", "generation quality")
    dev = model_device(model)
    sums: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
    n_total = 0
    with eval_mode(model), torch.no_grad():
        rows_all = np.arange(len(ds[split]) if n_samples is None else min(int(n_samples), len(ds[split])))
        complete = rows_all[ds[split].present[rows_all].all(axis=1)]
        for _idx, batch in batches(ds, split, None, batch_size, dev, complete):
            b = batch[0].shape[0]
            n_total += b
            real = model.complete_inputs(*batch, modes_tensor(COMPLETE_MODE, b, dev), lengths=batch.lengths)
            for mode in range(N_MODES - 1):
                gen = model.complete_inputs(*batch, modes_tensor(mode, b, dev), lengths=batch.lengths)
                for i, present in enumerate(MODE_PRESENT[mode]):
                    if present:
                        continue
                    g, r = gen[i].float(), real[i].float()  # (B, T, d)
                    stats = {"mse": ((g - r) ** 2).mean(-1).sum(0),
                             "cosine": F.cosine_similarity(g, r, dim=-1, eps=1e-8).sum(0),
                             "real_power": (r ** 2).mean(-1).sum(0)}
                    slot = sums.setdefault((i, mode), {k: torch.zeros_like(v) for k, v in stats.items()})
                    for k, v in stats.items():
                        slot[k] += v  # summed on the model's device; one copy to the host below
    rows = []
    for (i, mode), on_device in sorted(sums.items()):
        s = {k: v.cpu() for k, v in on_device.items()}
        name = MODALITIES[i]
        for t in range(s["mse"].shape[0]):
            mse, cos, power = (float(s[k][t]) / n_total for k in ("mse", "cosine", "real_power"))
            rows.append(dict(modality=name, mode=mode, mode_name=MODE_NAMES[mode], sources=sources_of(mode, name),
                             timestep=t, mse=mse, cosine=cos, real_power=power,
                             rel_mse=mse / power if power > 0 else float("nan"), n=n_total))
    return pd.DataFrame(rows)


def generation_summary(quality: pd.DataFrame) -> pd.DataFrame:
    """Mean over time steps of :func:`generation_quality`: one row per (modality, mode)."""
    keys = ["modality", "mode", "mode_name", "sources"]
    return (quality.groupby(keys, sort=False)[["mse", "cosine", "rel_mse"]].mean().reset_index())


__all__ = ["PromptSimilarity", "cosine_matrix", "generation_quality", "generation_summary", "pca_2d",
           "prompt_similarity", "prompt_tokens", "sources_of"]
