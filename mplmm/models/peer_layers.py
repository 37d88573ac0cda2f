"""Small layers and mask helpers shared by the peer methods (EMT-DLFR, MMML, ComP, DCP, MulT baselines).

Masks follow the model contract: ``keep`` is ``True`` where a frame may be read (its modality is present under the
sample's mode, the frame was not dropped and, with ``lengths``, it lies within the sample's length). Zero filling
uses :func:`torch.where`, so a missing feature never reaches the graph (not even as ``NaN * 0``).
"""
from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..constants import MODALITIES
from ..errors import ConfigError
from ..missing import present_table
from .lengths import clamp_lengths, valid_masks, zero_fill  # noqa: F401  (zero_fill: re-exported)

NEG_INF = -1e4  # additive mask value: a fully masked row degrades to a uniform softmax, never NaN


def present_flags(modes: torch.Tensor) -> torch.Tensor:
    """``(B, 3)`` bool: is text / audio / vision present under each sample's mode."""
    modes = torch.as_tensor(modes)
    return present_table(modes.device)[modes.long()]


def keep_masks(feats: Sequence[torch.Tensor], modes: torch.Tensor,
               frame_masks: Optional[Mapping[str, torch.Tensor]] = None,
               lengths: Optional[torch.Tensor] = None) -> list[torch.Tensor]:
    """Per modality ``(B, T_m)`` bool: frame readable = modality present, frame kept and (``lengths (B, 3)`` given)
    within the sample's length."""
    present = present_flags(torch.as_tensor(modes, device=feats[0].device))
    sizes = [x.shape[1] for x in feats]
    valid = None if lengths is None else valid_masks(clamp_lengths(lengths, sizes, feats[0].device), sizes)
    out = []
    for j, (name, x) in enumerate(zip(MODALITIES, feats)):
        keep = present[:, j:j + 1].expand(x.shape[0], x.shape[1])
        fm = None if frame_masks is None else frame_masks.get(name)
        if fm is not None:
            keep = keep & torch.as_tensor(fm, device=x.device).bool()
        if valid is not None:
            keep = keep & valid[j]
        out.append(keep)
    return out


def masked_mean(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean of ``x (B, T, D)`` over kept steps; 0 where nothing is kept."""
    w = keep.unsqueeze(-1).to(x.dtype)
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


def position_rows(table: torch.Tensor, steps: int) -> torch.Tensor:
    """The first ``steps`` rows of a :func:`sinusoid_table` buffer; a longer table is computed when ``steps`` exceeds
    the buffer (any sequence length is accepted)."""
    if steps <= table.shape[0]:
        return table[:steps]
    return sinusoid_table(steps, table.shape[1]).to(device=table.device, dtype=table.dtype)


def sinusoid_table(length: int, dim: int) -> torch.Tensor:
    """Fixed sin/cos position table ``(length, dim)`` (Vaswani et al.)."""
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / max(dim, 1)))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * div)
    table[:, 1::2] = torch.cos(pos * div)[:, : dim // 2]
    return table


class Mlp(nn.Module):
    """``Linear → GELU → Dropout → Linear → Dropout`` (timm-style, used by ComP and DCP)."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.fc2 = nn.Linear(d_hidden, d_out)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, fc1_weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        w = self.fc1.weight if fc1_weight is None else fc1_weight
        return self.drop(self.fc2(self.drop(F.gelu(F.linear(x, w, self.fc1.bias)))))


class Attention(nn.Module):
    """Multi-head attention on SDPA with a key mask (``True`` = attend, additive ``-1e4`` elsewhere)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"model width {dim} is not divisible by its number of heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.to_q = nn.Linear(dim, dim, bias=bias)
        self.to_kv = nn.Linear(dim, 2 * dim, bias=bias)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, ctx: Optional[torch.Tensor] = None,
                key_keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x (B, Lq, E)`` attends to ``ctx (B, Lk, E)`` (``x`` itself when None); ``key_keep (B, Lk)``."""
        ctx = x if ctx is None else ctx
        b, lq, e = x.shape
        h = self.heads
        q = self.to_q(x).view(b, lq, h, e // h).transpose(1, 2)
        k, v = (t.view(b, ctx.shape[1], h, e // h).transpose(1, 2) for t in self.to_kv(ctx).chunk(2, dim=-1))
        mask = None
        if key_keep is not None:
            mask = torch.zeros(key_keep.shape, dtype=x.dtype, device=x.device).masked_fill(~key_keep, NEG_INF)
            mask = mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(out.transpose(1, 2).reshape(b, lq, e))


class PostLNBlock(nn.Module):
    """BERT-style post-LN layer: ``LN(x + Attn(x))`` then ``LN(x + FFN(x))`` (MMML's encoders)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.1, ff_mult: int = 4) -> None:
        super().__init__()
        self.attn = Attention(dim, heads, dropout)
        self.ff = nn.Sequential(nn.Linear(dim, ff_mult * dim), nn.ReLU(), nn.Dropout(dropout),
                                nn.Linear(ff_mult * dim, dim))
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = self.ln1(x + self.drop(self.attn(x, key_keep=keep)))
        return self.ln2(x + self.drop(self.ff(x)))


def is_classification(output_dim: int) -> bool:
    """Regression iff one output."""
    return int(output_dim) > 1
