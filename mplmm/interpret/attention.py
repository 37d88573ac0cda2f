"""Attention of the MulT-based models: per-module maps and the share of attention on MPLMM's prompt tokens.

:func:`attention_maps` (per module, layer and head, prompt-token columns identified) and
:func:`prompt_attention_share` (how much the memory transformers' readout token attends to the ``P`` missing-type
prompt tokens, per mode × branch × layer). Needs a model whose ``forward`` takes ``need_weights`` (``mult``,
``mult_zero``, ``mult_dropout``, ``mplmm``).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..constants import CROSSMODAL, LETTER_TO_NAME, LETTERS, MEMORY, MODALITIES, MODE_NAMES, N_MODES
from .common import Batch, batch_parts, batches, effective_modes_tensor, eval_mode, model_device, model_name, modes_list

#: crossmodal transformers (module, target, source) and memory transformers (module, branch), in display order
CROSSMODAL_MODULES = CROSSMODAL
MEMORY_MODULES = MEMORY


def supports_attention(model: nn.Module) -> bool:
    """True when ``model.forward`` accepts ``need_weights`` (returns ``(pred, attention dict)``)."""
    try:
        return "need_weights" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - exotic callables
        return False


def _require_attention(model: nn.Module) -> None:
    if not supports_attention(model):
        raise NotImplementedError(
            f"model {model_name(model)!r} does not return attention weights (its forward has no `need_weights` "
            f"argument); attention maps are available for the MulT-based models mult, mult_zero, mult_dropout and "
            f"mplmm")


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


def _forward_with_weights(model: nn.Module, batch: Batch, modes: torch.Tensor,
                          lengths: Optional[torch.Tensor] = None):
    _require_attention(model)
    with eval_mode(model), torch.no_grad():
        out = model(*batch, modes, need_weights=True, **({} if lengths is None else {"lengths": lengths}))
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
        raise NotImplementedError(f"model {model_name(model)!r} accepted need_weights but did not return "
                                  f"(pred, attention dict)")
    return out


def attention_maps(model: nn.Module, batch: Batch, modes: Union[int, Sequence[int], torch.Tensor],
                   layer: Optional[int] = None) -> AttentionMaps:
    """Attention weights of every crossmodal and memory transformer for one batch (eval mode, no grad).

    ``batch`` = ``(text, audio, vision)`` (a :class:`~mplmm.interpret.common.Samples` from :func:`get_batch` also
    brings the samples' lengths and what they really have: a forced mode never gives a sample a modality it lacks);
    ``modes`` an int (all samples) or ``(B,)``; ``layer`` None keeps every
    layer, an int (negative counts from the end) only that one (modules shallower than a positive ``layer`` are
    left out). Prompt-token columns: for MPLMM the memory transformers see ``L_x + P`` positions and the last ``P``
    are the missing-type prompt tokens (``info.n_prompt``).
    """
    dev = model_device(model)
    m = effective_modes_tensor(modes, batch, dev)
    lengths, _ = batch_parts(batch)
    batch = tuple(x.to(dev) for x in batch)  # type: ignore[assignment]
    _, attn = _forward_with_weights(model, batch, m, None if lengths is None else lengths.to(dev))
    seq = dict(zip(LETTERS, (int(x.shape[1]) for x in batch)))
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
    dev = model_device(model)
    modes = modes_list(modes)
    acc: dict[tuple[int, str, int], list[torch.Tensor]] = {}
    meta: dict[str, tuple[str, int, int]] = {}  # branch -> (module, prompt tokens, keys)
    for mode in modes:
        for _idx, batch in batches(ds, split, n_samples, batch_size, dev, mode=mode):
            maps = attention_maps(model, batch, mode)
            for name, br in MEMORY_MODULES:
                if name not in maps.weights:
                    continue
                p = maps.n_prompt(name)
                if p == 0:
                    raise ValueError(f"model {model_name(model)!r} appends no prompt tokens to its memory "
                                     f"transformers (only mplmm does)")
                meta[br] = (name, p, int(maps.info.loc[name, "k_len"]))
                for pos, li in enumerate(maps.layers[name]):
                    w = maps.weights[name][pos][:, :, -1, -p:].sum(-1)  # (B, H)
                    acc.setdefault((mode, br, li), []).append(w)
    rows = []
    for (mode, br, li), parts in acc.items():
        w = torch.cat(parts)  # (N, H)
        module, p, k_len = meta[br]
        base = dict(mode=mode, mode_name=MODE_NAMES[mode], branch=LETTER_TO_NAME[br], module=module,
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


__all__ = ["AttentionMaps", "CROSSMODAL_MODULES", "MEMORY_MODULES", "attention_maps", "prompt_attention_share",
           "supports_attention"]
