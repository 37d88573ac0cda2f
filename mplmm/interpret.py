"""Interpretation of MulT / MPLMM models: attention maps, prompt analyses, generated features and attributions.

Everything here is a pure function: tensors and DataFrames in, tensors and DataFrames out (no plotting, no widgets).
The plot builders live in :mod:`mplmm.plots.interpret`, the interactive panels in :mod:`widgets`.

* Attention — :func:`attention_maps` (per module, layer and head, prompt-token columns identified) and
  :func:`prompt_attention_share` (how much the memory transformers' readout token attends to the ``P`` missing-type
  prompt tokens, per mode × branch × layer). Needs a model whose ``forward`` takes ``need_weights`` (``mult``,
  ``mult_zero``, ``mult_dropout``, ``mplmm``).
* Prompts — :func:`prompt_similarity`: cosine similarity of the seven modes' missing-type prompt tokens and a 2-D
  PCA projection (SVD, no sklearn). MPLMM only.
* Generation — :func:`generation_quality`: per time step MSE and cosine similarity between the features MPLMM
  generates for a dropped modality and the real path ``proj(x) + P_NMS`` of the same samples.
* Attribution (Captum) — :func:`modality_importance` (feature ablation, one group per modality, per missing mode),
  :func:`timestep_attributions` (Integrated Gradients on the projection layers ``proj_l/a/v`` or one-time-step
  occlusion; per-modality ``(B, T_m)`` relevance) and :func:`attribution_summary` (dataset-level mean |attribution|).
  The forward wrapper only takes tensors (``modes`` travels as a tensor in ``additional_forward_args``); the target is
  output 0 for regression and the predicted class for classification.
* Live evaluation and runs — :func:`evaluate_missing` (one split under a rate or a forced mode, for the missing-rate
  explorer; from :mod:`mplmm.evaluate`), :func:`find_runs` / :func:`load_run` (run folders with ``metrics.json`` /
  ``history.csv``).
* Notebook helper — :func:`load_or_train_demo`: a checkpoint, or a tiny ``mult`` → ``mplmm`` model trained in seconds.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .constants import MODALITIES, MODE_NAMES, MODE_PRESENT, N_MODES
from .errors import ConfigError
from .evaluate import evaluate_missing  # noqa: F401 (re-exported: the live explorer's evaluation lives there)

#: short modality letters in the L, A, V order used by the module names
SHORT = ("l", "a", "v")
LETTER_TO_NAME = dict(zip(SHORT, MODALITIES))
#: crossmodal transformers (module, target, source) and memory transformers (module, branch), in display order
CROSSMODAL_MODULES = (("trans_l_with_a", "l", "a"), ("trans_l_with_v", "l", "v"), ("trans_a_with_l", "a", "l"),
                      ("trans_a_with_v", "a", "v"), ("trans_v_with_l", "v", "l"), ("trans_v_with_a", "v", "a"))
MEMORY_MODULES = (("trans_l_mem", "l"), ("trans_a_mem", "a"), ("trans_v_mem", "v"))
ATTRIBUTION_METHODS = ("ig", "occlusion")
#: scale of the near-zero input used as IG's effective baseline in the completeness check (see timestep_attributions)
BASELINE_EPS = 1e-6

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


# ----------------------------------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------------------------------
def _model_name(model: nn.Module) -> str:
    return getattr(model, "registry_name", None) or type(model).__name__


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode (no dropout) for the block and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def supports_attention(model: nn.Module) -> bool:
    """True when ``model.forward`` accepts ``need_weights`` (returns ``(pred, attention dict)``)."""
    try:
        return "need_weights" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - exotic callables
        return False


def _require_attention(model: nn.Module) -> None:
    if not supports_attention(model):
        raise NotImplementedError(
            f"model {_model_name(model)!r} does not return attention weights (its forward has no `need_weights` "
            f"argument); attention maps are available for the MulT-based models mult, mult_zero, mult_dropout and "
            f"mplmm")


def _require(model: nn.Module, attr: str, what: str) -> None:
    if not hasattr(model, attr):
        raise NotImplementedError(f"{what} needs an MPLMM model (with `{attr}`); model {_model_name(model)!r} has "
                                  f"none")


def modes_tensor(modes: Union[int, Sequence[int], np.ndarray, torch.Tensor], batch_size: int,
                 device: Union[str, torch.device] = "cpu") -> torch.Tensor:
    """``modes`` as a LongTensor ``(B,)`` (an int is repeated); checks the range 0..6."""
    if isinstance(modes, (int, np.integer)):
        out = torch.full((batch_size,), int(modes), dtype=torch.long, device=device)
    else:
        out = torch.as_tensor(np.asarray(modes) if not torch.is_tensor(modes) else modes,
                              dtype=torch.long).to(device).view(-1)
        if out.numel() == 1 and batch_size != 1:
            out = out.expand(batch_size).clone()
    if out.numel() != batch_size:
        raise ValueError(f"modes has {out.numel()} entries for a batch of {batch_size}")
    if out.numel() and (int(out.min()) < 0 or int(out.max()) >= N_MODES):
        raise ValueError(f"modes must be in 0..{N_MODES - 1}, got {out.tolist()}")
    return out


def get_batch(ds, split: str = "test", n: Optional[int] = None, indices: Optional[Sequence[int]] = None,
              device: Union[str, torch.device] = "cpu") -> Batch:
    """``(text, audio, vision)`` float tensors of ``split``: rows ``indices``, else the first ``n`` (all if None)."""
    sp = ds[split]
    if indices is None:
        indices = np.arange(len(sp) if n is None else min(int(n), len(sp)))
    idx = np.asarray(indices, dtype=np.int64)
    return tuple(torch.as_tensor(np.ascontiguousarray(sp.modality(m)[idx]), dtype=torch.float32, device=device)
                 for m in MODALITIES)  # type: ignore[return-value]


def _batches(ds, split: str, n_samples: Optional[int], batch_size: int, device) -> Iterator[tuple[np.ndarray, Batch]]:
    total = len(ds[split]) if n_samples is None else min(int(n_samples), len(ds[split]))
    for start in range(0, total, batch_size):
        idx = np.arange(start, min(start + batch_size, total))
        yield idx, get_batch(ds, split, indices=idx, device=device)


def _target(model: nn.Module, batch: Batch, modes: torch.Tensor):
    """Captum target: 0 for one output (regression), the predicted class per sample otherwise."""
    with torch.no_grad():
        out = model(*batch, modes)
    if out.dim() == 1 or out.shape[-1] == 1:
        return 0
    return out.argmax(dim=-1)


def _select(out: torch.Tensor, target) -> torch.Tensor:
    """``(B,)`` outputs at ``target`` (an int column or one class per sample)."""
    if isinstance(target, int):
        return out[:, target]
    return out.gather(1, target.view(-1, 1)).squeeze(1)


def _modes_list(modes: Union[int, Iterable[int]]) -> list[int]:
    lst = [int(modes)] if isinstance(modes, (int, np.integer)) else [int(m) for m in modes]
    bad = [m for m in lst if not 0 <= m < N_MODES]
    if bad:
        raise ConfigError(f"modes must be in 0..{N_MODES - 1}, got {bad}")
    return lst


def sources_of(mode: int, modality: str) -> str:
    """The modalities a missing ``modality`` is generated from in ``mode`` (e.g. ``"audio+vision"``)."""
    return "+".join(name for name, p in zip(MODALITIES, MODE_PRESENT[int(mode)]) if p and name != modality)


# ----------------------------------------------------------------------------------------------------------------------
# attention
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class AttentionMaps:
    """Attention weights of one forward pass.

    * ``weights[module]``: list over the kept layers of per-head weights ``(B, H, Lq, Lk)`` (CPU, float32);
    * ``layers[module]``: the layer index of each kept entry;
    * ``info``: one row per module — ``kind`` (crossmodal / memory), ``target``, ``source``, ``n_layers``, ``heads``,
      ``q_len``, ``k_len``, ``n_prompt`` (missing-type prompt tokens among the keys: the LAST ``n_prompt`` columns of
      a memory transformer; 0 for crossmodal modules and for models without prompts) and ``prompt_start``;
    * ``modes``: the ``(B,)`` modes used.
    """

    weights: dict[str, list[torch.Tensor]]
    layers: dict[str, list[int]]
    info: pd.DataFrame
    modes: torch.Tensor
    seq_lens: dict[str, int] = field(default_factory=dict)

    @property
    def modules(self) -> list[str]:
        return list(self.weights)

    def n_prompt(self, module: str) -> int:
        return int(self.info.loc[module, "n_prompt"])

    def prompt_columns(self, module: str) -> list[int]:
        """Key indices of the missing-type prompt tokens in ``module`` (empty when it has none)."""
        k_len, p = int(self.info.loc[module, "k_len"]), self.n_prompt(module)
        return list(range(k_len - p, k_len))

    def is_prompt_column(self, module: str) -> np.ndarray:
        """bool ``(Lk,)``: True for prompt-token keys."""
        mask = np.zeros(int(self.info.loc[module, "k_len"]), dtype=bool)
        mask[self.prompt_columns(module)] = True
        return mask

    def key_labels(self, module: str) -> list[str]:
        """``l0, l1, …`` for modality time steps, ``p0, p1, …`` for prompt tokens."""
        row = self.info.loc[module]
        src = row["source"] if row["kind"] == "crossmodal" else row["target"]
        n_real = int(row["k_len"]) - int(row["n_prompt"])
        return [f"{src}{i}" for i in range(n_real)] + [f"p{i}" for i in range(int(row["n_prompt"]))]

    def query_labels(self, module: str) -> list[str]:
        row = self.info.loc[module]
        if row["kind"] == "memory":
            return self.key_labels(module)
        return [f"{row['target']}{i}" for i in range(int(row["q_len"]))]

    def _pos(self, module: str, layer: int) -> int:
        kept = self.layers[module]
        n = int(self.info.loc[module, "n_layers"])
        layer = layer + n if layer < 0 else layer
        if layer not in kept:
            raise IndexError(f"{module}: layer {layer} not available (kept layers {kept}, depth {n})")
        return kept.index(layer)

    def map(self, module: str, layer: int = -1, head: Optional[int] = None,
            sample: Optional[int] = 0) -> np.ndarray:
        """``(Lq, Lk)`` weights: one head (None = mean over heads), one sample (None = mean over the batch)."""
        w = self.weights[module][self._pos(module, layer)]
        w = w.mean(dim=1) if head is None else w[:, int(head)]
        w = w.mean(dim=0) if sample is None else w[int(sample)]
        return w.numpy()

    def to_frame(self, module: str, layer: int = -1, sample: Optional[int] = 0) -> pd.DataFrame:
        """Long table (head, query, key, weight, key_is_prompt) of one module/layer (head ``"mean"`` included)."""
        rows = []
        w = self.weights[module][self._pos(module, layer)]
        w = w.mean(0) if sample is None else w[int(sample)]  # (H, Lq, Lk)
        q_lab, k_lab, is_p = self.query_labels(module), self.key_labels(module), self.is_prompt_column(module)
        stack = [(str(h), w[h]) for h in range(w.shape[0])] + [("mean", w.mean(0))]
        for h, mat in stack:
            arr = mat.numpy()
            for qi in range(arr.shape[0]):
                for ki in range(arr.shape[1]):
                    rows.append((h, q_lab[qi], k_lab[ki], float(arr[qi, ki]), bool(is_p[ki])))
        return pd.DataFrame(rows, columns=["head", "query", "key", "weight", "key_is_prompt"])


def _forward_with_weights(model: nn.Module, batch: Batch, modes: torch.Tensor):
    _require_attention(model)
    with eval_mode(model), torch.no_grad():
        out = model(*batch, modes, need_weights=True)
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
        raise NotImplementedError(f"model {_model_name(model)!r} accepted need_weights but did not return "
                                  f"(pred, attention dict)")
    return out


def attention_maps(model: nn.Module, batch: Batch, modes: Union[int, Sequence[int], torch.Tensor],
                   layer: Optional[int] = None) -> AttentionMaps:
    """Attention weights of every crossmodal and memory transformer for one batch (eval mode, no grad).

    ``batch`` = ``(text, audio, vision)``; ``modes`` an int (all samples) or ``(B,)``; ``layer`` None keeps every
    layer, an int (negative counts from the end) only that one (modules shallower than a positive ``layer`` are
    left out). Prompt-token columns: for MPLMM the memory transformers see ``L_x + P`` positions and the last ``P``
    are the missing-type prompt tokens (``info.n_prompt``).
    """
    dev = _device(model)
    batch = tuple(x.to(dev) for x in batch)  # type: ignore[assignment]
    m = modes_tensor(modes, batch[0].shape[0], dev)
    _, attn = _forward_with_weights(model, batch, m)
    seq = dict(zip(SHORT, (int(x.shape[1]) for x in batch)))
    weights, kept, rows = {}, {}, []
    specs = [(name, "crossmodal", tgt, src) for name, tgt, src in CROSSMODAL_MODULES] + \
            [(name, "memory", br, br) for name, br in MEMORY_MODULES]
    for name, kind, tgt, src in specs:
        per_layer = attn.get(name)
        if not per_layer:
            continue
        n = len(per_layer)
        if layer is None:
            idx = list(range(n))
        else:
            li = layer + n if layer < 0 else layer
            if not 0 <= li < n:
                continue
            idx = [li]
        weights[name] = [per_layer[i].detach().float().cpu() for i in idx]
        kept[name] = idx
        _, heads, q_len, k_len = per_layer[0].shape
        n_prompt = max(0, k_len - seq[tgt]) if kind == "memory" else 0
        rows.append(dict(module=name, kind=kind, target=tgt, source=src, n_layers=n, heads=int(heads),
                         q_len=int(q_len), k_len=int(k_len), n_prompt=int(n_prompt),
                         prompt_start=int(k_len - n_prompt) if n_prompt else -1))
    if not weights:
        raise IndexError(f"no module has layer {layer}")
    info = pd.DataFrame(rows).set_index("module", drop=False)
    return AttentionMaps(weights, kept, info, m.cpu(), seq)


def prompt_attention_share(model: nn.Module, ds, split: str = "test", modes: Iterable[int] = range(N_MODES),
                           n_samples: Optional[int] = None, batch_size: int = 64,
                           by_head: bool = False) -> pd.DataFrame:
    """Share of the readout token's attention that falls on the ``P`` missing-type prompt tokens.

    Every sample of ``split`` (the first ``n_samples``) is forced into each mode in turn. The readout token is the
    last position of each memory transformer (MPLMM reads the output at the last prompt token). One row per
    mode × branch × layer (× head with ``by_head``): ``share`` (mean over samples and heads), ``share_std`` (over
    samples, heads averaged), ``uniform`` = ``P / (L_x + P)`` (the share of a uniform attention) and ``n``.
    """
    dev = _device(model)
    modes = _modes_list(modes)
    acc: dict[tuple[int, str, int], list[torch.Tensor]] = {}
    meta: dict[str, tuple[int, int]] = {}
    for mode in modes:
        for _idx, batch in _batches(ds, split, n_samples, batch_size, dev):
            maps = attention_maps(model, batch, mode)
            for name, br in MEMORY_MODULES:
                if name not in maps.weights:
                    continue
                p = maps.n_prompt(name)
                if p == 0:
                    raise ValueError(f"model {_model_name(model)!r} appends no prompt tokens to its memory "
                                     f"transformers (only mplmm does)")
                meta[br] = (p, int(maps.info.loc[name, "k_len"]))
                for pos, li in enumerate(maps.layers[name]):
                    w = maps.weights[name][pos][:, :, -1, -p:].sum(-1)  # (B, H)
                    acc.setdefault((mode, br, li), []).append(w)
    rows = []
    for (mode, br, li), parts in acc.items():
        w = torch.cat(parts)  # (N, H)
        p, k_len = meta[br]
        base = dict(mode=mode, mode_name=MODE_NAMES[mode], branch=LETTER_TO_NAME[br], module=f"trans_{br}_mem",
                    layer=li, uniform=p / k_len, n_prompt=p, n=int(w.shape[0]))
        if by_head:
            for h in range(w.shape[1]):
                rows.append({**base, "head": h, "share": float(w[:, h].mean()), "share_std": float(w[:, h].std())})
        else:
            per_sample = w.mean(1)
            rows.append({**base, "share": float(per_sample.mean()),
                         "share_std": float(per_sample.std()) if len(per_sample) > 1 else 0.0})
    cols = ["mode", "mode_name", "branch", "module", "layer"] + (["head"] if by_head else []) + \
        ["share", "share_std", "uniform", "n_prompt", "n"]
    return pd.DataFrame(rows)[cols].sort_values(["mode", "branch", "layer"] + (["head"] if by_head else []),
                                                 key=_branch_order).reset_index(drop=True)


def _branch_order(col: pd.Series) -> pd.Series:
    if col.name == "branch":
        return col.map({name: i for i, name in enumerate(MODALITIES)})
    return col


# ----------------------------------------------------------------------------------------------------------------------
# prompts
# ----------------------------------------------------------------------------------------------------------------------
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

    Signs are fixed (largest-|loading| entry of each component positive) so the result is deterministic. Returns the
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
    _require(model, "missing_type_tokens", "prompt analysis")
    dev = _device(model)
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
                                                  index=names, columns=names) for i, b in enumerate(SHORT)}
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
    ``rel_mse = mse / real_power``.
    """
    _require(model, "complete_inputs", "generation quality")
    dev = _device(model)
    sums: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
    n_total = 0
    with eval_mode(model), torch.no_grad():
        for _idx, batch in _batches(ds, split, n_samples, batch_size, dev):
            b = batch[0].shape[0]
            n_total += b
            real = model.complete_inputs(*batch, modes_tensor(6, b, dev))
            for mode in range(N_MODES - 1):
                gen = model.complete_inputs(*batch, modes_tensor(mode, b, dev))
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


# ----------------------------------------------------------------------------------------------------------------------
# attributions (Captum)
# ----------------------------------------------------------------------------------------------------------------------
class ForwardWrapper(nn.Module):
    """``f(text, audio, vision, modes) -> (B, output_dim)``: tensors only, for Captum (modes in additional args)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, text: torch.Tensor, audio: torch.Tensor, vision: torch.Tensor,
                modes: torch.Tensor) -> torch.Tensor:
        out = self.model(text, audio, vision, modes)
        return out.unsqueeze(-1) if out.dim() == 1 else out


def modality_importance(model: nn.Module, ds, split: str = "test", modes: Iterable[int] = range(N_MODES),
                        n_samples: Optional[int] = None, batch_size: int = 64, baseline: float = 0.0,
                        per_sample: bool = False) -> pd.DataFrame:
    """Feature ablation with one group per modality (Captum ``FeatureAblation``), each sample forced into each mode.

    Attribution of a modality = ``f(x) - f(x with that modality set to baseline)`` for the model's output (regression)
    or the predicted class (classification). A modality the model does not read in that mode gets exactly 0. One row
    per mode × modality: ``importance`` (mean signed), ``abs_importance`` (mean |·|), ``share`` (of the mode's total
    |·|), ``present`` and ``n``; with ``per_sample`` one row per sample instead (``sample``, ``importance``).
    """
    from captum.attr import FeatureAblation

    dev = _device(model)
    modes = _modes_list(modes)
    fwd = ForwardWrapper(model)
    fa = FeatureAblation(fwd)
    records: list[tuple[int, int, np.ndarray, np.ndarray]] = []  # (mode, modality, attributions, sample idx)
    with eval_mode(model):
        for mode in modes:
            for idx, batch in _batches(ds, split, n_samples, batch_size, dev):
                b = batch[0].shape[0]
                m = modes_tensor(mode, b, dev)
                masks = tuple(torch.full((1, 1, 1), i, dtype=torch.long, device=dev) for i in range(3))
                masks = tuple(mk.expand(1, x.shape[1], x.shape[2]) for mk, x in zip(masks, batch))
                attr = fa.attribute(batch, baselines=(baseline,) * 3, target=_target(fwd, batch, m),
                                    additional_forward_args=(m,), feature_mask=masks, perturbations_per_eval=3)
                for i, a in enumerate(attr):
                    records.append((mode, i, a[:, 0, 0].detach().cpu().numpy(), idx))
    if per_sample:
        rows = [dict(mode=mode, mode_name=MODE_NAMES[mode], modality=MODALITIES[i], present=MODE_PRESENT[mode][i],
                     sample=int(s), importance=float(v))
                for mode, i, vals, idx in records for s, v in zip(idx, vals)]
        return pd.DataFrame(rows)
    grouped: dict[tuple[int, int], list[np.ndarray]] = {}
    for mode, i, vals, _ in records:
        grouped.setdefault((mode, i), []).append(vals)
    rows = []
    for (mode, i), parts in grouped.items():
        v = np.concatenate(parts)
        rows.append(dict(mode=mode, mode_name=MODE_NAMES[mode], modality=MODALITIES[i],
                         present=MODE_PRESENT[mode][i], importance=float(v.mean()),
                         abs_importance=float(np.abs(v).mean()), std=float(v.std()), n=int(v.size)))
    frame = pd.DataFrame(rows)
    total = frame.groupby("mode")["abs_importance"].transform("sum")
    frame["share"] = np.where(total > 0, frame["abs_importance"] / total.where(total > 0, 1.0), 0.0)
    return frame.sort_values(["mode", "modality"], key=lambda c: c.map({n: i for i, n in enumerate(MODALITIES)})
                             if c.name == "modality" else c).reset_index(drop=True)


def projection_layers(model: nn.Module) -> list[nn.Module]:
    """The per-modality input projections ``[proj_l, proj_a, proj_v]`` (MulT-based models)."""
    layers = [getattr(model, f"proj_{m}", None) for m in SHORT]
    if any(layer is None for layer in layers):
        raise NotImplementedError(f"method 'ig' attributes to the projection layers proj_l/proj_a/proj_v, which model "
                                  f"{_model_name(model)!r} does not have; use method='occlusion'")
    return layers  # type: ignore[return-value]


@contextlib.contextmanager
def hookable_projections(layers: Sequence[nn.Module]) -> Iterator[None]:
    """Make calls to ``layers`` go through ``Module.__call__`` so forward hooks (Captum's layer methods) see them.

    The MulT/MPLMM models apply their 1×1 projections as ``conv1x1_time_last(conv, x)`` (``F.linear`` on the
    weights, no module call, so no hook fires). For the block, every ``mplmm.models.*`` module's
    ``conv1x1_time_last`` is swapped for a version that calls the module itself when it is one of ``layers``
    (numerically the same map); the originals are restored afterwards.
    """
    import sys

    wanted = {id(layer) for layer in layers}
    patched = []
    for name, mod in list(sys.modules.items()):
        fn = getattr(mod, "conv1x1_time_last", None) if name.startswith("mplmm.models") else None
        if fn is None or getattr(fn, "_mplmm_hookable", False):
            continue

        def via_module(conv: nn.Module, x: torch.Tensor, _orig=fn) -> torch.Tensor:
            if id(conv) in wanted:
                return conv(x.transpose(1, 2)).transpose(1, 2)
            return _orig(conv, x)

        via_module._mplmm_hookable = True  # type: ignore[attr-defined]
        mod.conv1x1_time_last = via_module
        patched.append((mod, fn))
    try:
        yield
    finally:
        for mod, fn in patched:
            mod.conv1x1_time_last = fn


def _per_step(layer: nn.Module, attr: torch.Tensor, t_len: int) -> torch.Tensor:
    """Sum a layer attribution over its feature axis → ``(B, T)``."""
    if isinstance(layer, nn.Conv1d):  # (B, d, T)
        return attr.sum(dim=1)
    if attr.dim() == 3 and attr.shape[1] == t_len:  # (B, T, d)
        return attr.sum(dim=-1)
    return attr.sum(dim=1)


def timestep_attributions(model: nn.Module, batch: Batch, modes: Union[int, Sequence[int], torch.Tensor],
                          method: str = "ig", n_steps: int = 16, internal_batch_size: Optional[int] = None,
                          perturbations_per_eval: int = 8, return_delta: bool = False):
    """Per-modality, per-time-step relevance ``{"text": (B, T_l), "audio": (B, T_a), "vision": (B, T_v)}``.

    * ``"ig"``: ``LayerIntegratedGradients`` on the three projection layers ``proj_l/a/v`` (zero baseline, so the
      baseline activation is 0: the projections are bias-free); the per-step value is the attribution summed over the
      ``d`` projected channels. Completeness: the sum over all modalities and steps ≈ ``f(x) − f(0⁺)`` when the
      projections are the only paths from the inputs (MulT; MPLMM in mode 6). ``f(0⁺)`` is the limit of
      ``f(εx)``, not ``f(0)``: MulT derives positions from channel 0 and treats an exactly-zero frame as padding
      (zero positional vector), so ``mult`` jumps at the all-zero input. ``return_delta`` also returns the
      completeness gap ``Σ attributions − (f(x) − f(1e-6·x))`` per sample ``(B,)``. MPLMM's generator reads the raw
      features of the present modalities through its own mappers, which IG on ``proj_*`` does not see, so the gap
      is larger in missing modes.
    * ``"occlusion"``: one-time-step windows (all features of one step set to 0); value = ``f(x) − f(x without step
      t)``. ``perturbations_per_eval`` batches several occlusions per forward.

    Target: output 0 (regression) or the predicted class. ``internal_batch_size`` chunks IG's ``B × n_steps``
    evaluations (raised to at least ``B``).
    """
    if method not in ATTRIBUTION_METHODS:
        raise ConfigError(f"method must be one of {ATTRIBUTION_METHODS}, got {method!r}")
    dev = _device(model)
    batch = tuple(x.to(dev).float() for x in batch)  # type: ignore[assignment]
    b = batch[0].shape[0]
    m = modes_tensor(modes, b, dev)
    fwd = ForwardWrapper(model)
    delta = None
    with eval_mode(model):
        target = _target(fwd, batch, m)
        if method == "ig":
            from captum.attr import LayerIntegratedGradients

            layers = projection_layers(model)
            with warnings.catch_warnings():  # the three projections are independent (captum warns regardless)
                warnings.filterwarnings("ignore", message="Multiple layers provided")
                lig = LayerIntegratedGradients(fwd, layers)
            ibs = None if internal_batch_size is None else max(int(internal_batch_size), b)
            try:
                with hookable_projections(layers):
                    attrs = lig.attribute(batch, baselines=(0.0, 0.0, 0.0), target=target,
                                          additional_forward_args=(m,), n_steps=int(n_steps),
                                          internal_batch_size=ibs)
            except AssertionError as exc:  # captum: "Forward hook did not obtain any outputs for given layer"
                raise NotImplementedError(f"model {_model_name(model)!r} does not call proj_l/proj_a/proj_v as "
                                          f"modules, so IG on the projections cannot hook them ({exc}); use "
                                          f"method='occlusion'") from exc
            out = {name: _per_step(layer, a.detach(), x.shape[1]).cpu()
                   for name, layer, a, x in zip(MODALITIES, layers, attrs, batch)}
            if return_delta:
                # completeness gap against the baseline LIMIT f(eps * x): MulT treats exactly-zero frames as padding
                # (no positional vector), so f jumps at the all-zero input and f(0) is not what IG integrates to
                with torch.no_grad():
                    fx = _select(fwd(*batch, m), target)
                    f0 = _select(fwd(*(x * BASELINE_EPS for x in batch), m), target)
                total = sum(a.sum(1) for a in out.values())
                delta = (total - (fx - f0).cpu()).detach()
        else:
            from captum.attr import Occlusion

            occ = Occlusion(fwd)
            windows = tuple((1, int(x.shape[2])) for x in batch)
            attrs = occ.attribute(batch, sliding_window_shapes=windows, strides=windows, baselines=(0.0, 0.0, 0.0),
                                  target=target, additional_forward_args=(m,),
                                  perturbations_per_eval=int(perturbations_per_eval))
            out = {name: a.detach().mean(dim=-1).cpu() for name, a in zip(MODALITIES, attrs)}
    return (out, delta) if return_delta else out


def attribution_summary(model: nn.Module, ds, split: str = "test", modes: Iterable[int] = (6,),
                        method: str = "ig", n_samples: Optional[int] = None, batch_size: int = 32,
                        n_steps: int = 16, internal_batch_size: Optional[int] = None) -> pd.DataFrame:
    """Dataset-level time-step attributions: one row per mode × modality × time step with ``mean_abs`` (mean
    |attribution| over samples), ``mean`` (signed) and ``n``; columns ``method`` and ``present`` as well."""
    dev = _device(model)
    modes = _modes_list(modes)
    rows = []
    for mode in modes:
        sums: dict[str, list[torch.Tensor]] = {}
        n = 0
        for _idx, batch in _batches(ds, split, n_samples, batch_size, dev):
            att = timestep_attributions(model, batch, mode, method=method, n_steps=n_steps,
                                        internal_batch_size=internal_batch_size)
            n += batch[0].shape[0]
            for name, a in att.items():
                s = sums.setdefault(name, [torch.zeros(a.shape[1]), torch.zeros(a.shape[1])])
                s[0] += a.abs().sum(0)
                s[1] += a.sum(0)
        for i, name in enumerate(MODALITIES):
            abs_sum, sig_sum = sums[name]
            for t in range(abs_sum.shape[0]):
                rows.append(dict(method=method, mode=mode, mode_name=MODE_NAMES[mode], modality=name,
                                 present=MODE_PRESENT[mode][i], timestep=t, mean_abs=float(abs_sum[t]) / n,
                                 mean=float(sig_sum[t]) / n, n=n))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------------------
# run folders (run explorer)
# ----------------------------------------------------------------------------------------------------------------------
RUN_FILES = ("metrics.json", "history.csv")


def flatten_metrics(d: dict, prefix: str = "", max_depth: int = 3) -> dict[str, float]:
    """Numeric leaves of a nested dict as ``{"test.MAE": 0.8, ...}`` (lists and strings are skipped)."""
    out: dict[str, float] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and max_depth > 0:
            out.update(flatten_metrics(v, key + ".", max_depth - 1))
        elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            if math.isfinite(float(v)):
                out[key] = float(v)
    return out


def find_runs(root: Union[str, Path] = "runs", max_depth: int = 4) -> pd.DataFrame:
    """Run folders under ``root`` (``root`` itself included): those holding ``metrics.json`` and/or ``history.csv``.

    One row per run: ``run`` (path relative to ``root``), ``path``, ``has_metrics``, ``has_history``, ``model`` and the
    flattened numeric metrics (``test.MAE``, ...).
    """
    root = Path(root)
    rows = []
    if root.is_dir():
        candidates = [root] + sorted(p for p in root.rglob("*") if p.is_dir()
                                     and len(p.relative_to(root).parts) <= max_depth)
        for folder in candidates:
            has = {f: (folder / f).is_file() for f in RUN_FILES}
            if not any(has.values()):
                continue
            metrics = _read_json(folder / "metrics.json") if has["metrics.json"] else {}
            rel = folder.relative_to(root).as_posix()
            rows.append({"run": rel if rel != "." else folder.name, "path": str(folder),
                         "has_metrics": has["metrics.json"], "has_history": has["history.csv"],
                         "model": metrics.get("model") if isinstance(metrics.get("model"), str) else None,
                         "primary_metric": metrics.get("primary_metric")
                         if isinstance(metrics.get("primary_metric"), str) else None,
                         **flatten_metrics(metrics)})
    base = ["run", "path", "has_metrics", "has_history", "model", "primary_metric"]
    return pd.DataFrame(rows, columns=None if rows else base)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_run(path: Union[str, Path]) -> tuple[pd.DataFrame, dict]:
    """``(history, metrics)`` of a run folder (empty DataFrame / dict for what it lacks)."""
    path = Path(path)
    hist = pd.read_csv(path / "history.csv") if (path / "history.csv").is_file() else pd.DataFrame()
    metrics = _read_json(path / "metrics.json") if (path / "metrics.json").is_file() else {}
    return hist, metrics


# ----------------------------------------------------------------------------------------------------------------------
# notebook helper
# ----------------------------------------------------------------------------------------------------------------------
DEMO_MODEL_CONFIG: dict = {"layers": 2}


def load_or_train_demo(checkpoint: str, ds, output_dir: Union[str, Path], seed: int = 0, device: str = "cpu",
                       pretrain_epochs: int = 1, prompt_epochs: int = 1, train_rate: float = 0.7,
                       model_config: Optional[dict] = None) -> tuple[nn.Module, dict]:
    """The model to inspect: ``checkpoint`` if given, else a tiny one trained on ``ds`` in seconds.

    The tiny model is a ``mult`` pre-trained for ``pretrain_epochs`` on complete data, then an ``mplmm`` prompt-tuned
    for ``prompt_epochs`` at ``train_rate`` on top of it (``model_config``, default ``{"layers": 2}``); both are
    saved under ``output_dir`` (``demo_mult.pt``, ``demo_mplmm.pt``). Returns ``(model in eval mode, info)``.
    """
    from .checkpoint import load_model, save_checkpoint
    from .train import TrainConfig, train

    if checkpoint:
        model, ckpt = load_model(checkpoint, device=device, data=ds)
        return model, {"checkpoint": str(checkpoint), "model": ckpt["model_name"], "trained_here": False,
                       "test": ckpt.get("test")}
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg_model = dict(DEMO_MODEL_CONFIG if model_config is None else model_config)
    pre = TrainConfig(model="mult", model_config=cfg_model, epochs=int(pretrain_epochs), seed=int(seed),
                      device=device, progress=False)
    r1 = train(pre, ds)
    pre_path = save_checkpoint(out / "demo_mult.pt", r1.model, train_config=asdict(pre), test=r1.metrics["test"],
                               data=ds.signature())
    tune = TrainConfig(model="mplmm", model_config=cfg_model, epochs=int(prompt_epochs), seed=int(seed),
                       device=device, train_rate=float(train_rate), pretrained=str(pre_path), progress=False)
    r2 = train(tune, ds)
    path = save_checkpoint(out / "demo_mplmm.pt", r2.model, train_config=asdict(tune), test=r2.metrics["test"],
                           data=ds.signature(),
                           frozen=[n for n, p in r2.model.named_parameters() if not p.requires_grad])
    return r2.model.eval(), {"checkpoint": str(path), "model": "mplmm", "trained_here": True,
                             "pretrain_test": r1.metrics["test"], "test": r2.metrics["test"]}


__all__ = [
    "ATTRIBUTION_METHODS", "AttentionMaps", "CROSSMODAL_MODULES", "ForwardWrapper", "MEMORY_MODULES",
    "PromptSimilarity", "attention_maps", "attribution_summary", "cosine_matrix", "eval_mode", "evaluate_missing",
    "find_runs", "flatten_metrics", "generation_quality", "generation_summary", "get_batch", "hookable_projections",
    "load_or_train_demo", "load_run", "modality_importance", "modes_tensor", "pca_2d", "projection_layers",
    "prompt_attention_share", "prompt_similarity", "prompt_tokens", "sources_of", "supports_attention", "timestep_attributions",
]
