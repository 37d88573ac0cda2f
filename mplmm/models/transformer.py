"""MulT's transformer encoder, batch-first, on ``scaled_dot_product_attention``.

Semantics follow MulT / MPLMM ``modules/*`` exactly (mplmm.md §5.1):

* input scaled by ``sqrt(embed_dim)``; sinusoidal positions (sin|cos halves, positions start at 1) derived from
  **channel 0 of the unscaled input**: a step whose channel 0 is exactly 0 counts as padding and gets a zero position
  vector, and later positions count only non-padding steps (fairseq ``make_positions``);
* pre-LayerNorm layers; the **same** LayerNorm normalises query, key and value;
* MulT's offset causal mask hides key ``j`` from query ``i`` when ``j > i + |L_k - L_q|``;
* a final LayerNorm after the stack.

Attention weights are only materialised when ``need_weights=True`` (for attention maps); the normal path is one SDPA
call per layer.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


#: On CPU, heads narrower than this are zero-padded to this width before SDPA (0 = never). Exact: the zero columns
#: add nothing to ``q·k`` and give output columns that are dropped; the scale stays ``1/sqrt(head_dim)``. PyTorch's CPU
#: flash kernel is 1.3–1.9× faster at width 16 than at MulT's width 6 (see ``MultiheadAttention.forward``).
CPU_SDPA_MIN_HEAD_DIM = 16
#: On CUDA, head widths are zero-padded up to a multiple of this (0 = never), the same exact way: SDPA's flash and
#: memory-efficient kernels need multiples of 8 (MulT's widths 6 and 12 become 8 and 16).
CUDA_SDPA_HEAD_MULTIPLE = 8
#: The device type whose padding rule applies to every device (None: each tensor's own). Tests set ``"cuda"`` to
#: check the CUDA rule's exactness on CPU.
FORCE_HEAD_PADDING: Optional[str] = None


def padded_head_width(head_dim: int, device_type: str) -> int:
    """Width heads of ``head_dim`` are computed at on ``device_type`` (see the two constants above)."""
    rule = FORCE_HEAD_PADDING or device_type
    if rule == "cpu" and 0 < head_dim < CPU_SDPA_MIN_HEAD_DIM:
        return CPU_SDPA_MIN_HEAD_DIM
    if rule == "cuda" and CUDA_SDPA_HEAD_MULTIPLE > 0:
        return -(-head_dim // CUDA_SDPA_HEAD_MULTIPLE) * CUDA_SDPA_HEAD_MULTIPLE
    return head_dim


@lru_cache(maxsize=256)
def _offset_mask(len_q: int, len_k: int, device: torch.device) -> Optional[torch.Tensor]:
    """Boolean mask (True = may attend) of MulT's ``buffered_future_mask`` on ``device``; None when nothing is masked.
    Cached per (shape, device): built once on the host, then reused without a copy per call."""
    with torch.inference_mode(False):  # a normal tensor even when first asked for under inference_mode
        i = torch.arange(len_q).unsqueeze(1)
        j = torch.arange(len_k).unsqueeze(0)
        allowed = j <= i + abs(len_k - len_q)
        return None if bool(allowed.all()) else allowed.to(device)


def offset_causal_mask(len_q: int, len_k: int, device: torch.device | str = "cpu") -> Optional[torch.Tensor]:
    """MulT's mask as a boolean ``(len_q, len_k)`` tensor (True = attend), or None if no position is hidden.
    The tensor is shared (cached): never modify it in place."""
    return _offset_mask(int(len_q), int(len_k), torch.device(device))


@lru_cache(maxsize=64)
def _sinusoid_freqs(dim: int, device: torch.device) -> torch.Tensor:
    """The ``dim // 2`` frequencies of MulT's sinusoidal table, cached per device."""
    half = dim // 2
    scale = math.log(10000) / (half - 1)
    with torch.inference_mode(False):
        return torch.exp(torch.arange(half, dtype=torch.float32) * -scale).to(device)


def sinusoidal_positions(x_in: torch.Tensor, dim: int) -> torch.Tensor:
    """Positional embedding ``(B, T, dim)`` of MulT for input ``x_in (B, T, C)`` (padding = channel 0 == 0)."""
    nonpad = x_in[..., 0].ne(0)
    positions = torch.cumsum(nonpad, dim=1) * nonpad  # (B, T), 0 for padding
    freqs = _sinusoid_freqs(dim, x_in.device)
    angles = positions.to(torch.float32).unsqueeze(-1) * freqs  # (B, T, half)
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1))
    emb = emb * nonpad.unsqueeze(-1)  # padding rows are exactly zero
    return emb.to(x_in.dtype)


class MultiheadAttention(nn.Module):
    """fairseq-style MHA with a packed ``in_proj`` (xavier-uniform, zero bias) and ``out_proj``."""

    def __init__(self, embed_dim: int, num_heads: int, attn_dropout: float = 0.0) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads, self.attn_dropout = embed_dim, num_heads, attn_dropout
        self.head_dim = embed_dim // num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.xavier_uniform_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def _head_width(self, device: torch.device, need_weights: bool) -> int:
        """Width the heads are computed at: ``head_dim`` with ``need_weights``, else :func:`padded_head_width`."""
        return self.head_dim if need_weights else padded_head_width(self.head_dim, device.type)

    def _weights(self, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``in_proj`` weight and bias and ``out_proj`` weight laid out for heads of ``width`` (zero rows/columns
        after each head's ``head_dim`` real ones; differentiable, so trained weights get exact gradients)."""
        w, b, wo = self.in_proj_weight, self.in_proj_bias, self.out_proj.weight
        extra = width - self.head_dim
        if not extra:
            return w, b, wo
        h, hd, e = self.num_heads, self.head_dim, self.embed_dim
        w = F.pad(w.view(3, h, hd, e), (0, 0, 0, extra)).reshape(3 * h * width, e)
        b = F.pad(b.view(3, h, hd), (0, extra)).reshape(3 * h * width)
        wo = F.pad(wo.view(e, h, hd), (0, extra)).reshape(e, h * width)
        return w, b, wo

    def forward(
        self,
        query: torch.Tensor,
        key: Optional[torch.Tensor] = None,
        value: Optional[torch.Tensor] = None,
        attn_mask: Optional[torch.Tensor] = None,
        need_weights: bool = False,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``query (B, Lq, E)``; ``key``/``value`` ``(B, Lk, E)`` (None: self-attention; value None: = key).

        ``is_causal`` (square attention only, instead of ``attn_mask``): key ``j`` hidden from query ``i`` when
        ``j > i``, which lets the CPU flash kernel skip masked blocks without reading a mask.
        Returns the output and, when ``need_weights``, the per-head weights ``(B, H, Lq, Lk)``.

        Heads are computed zero-padded to :func:`padded_head_width` (CPU: narrow heads to ``CPU_SDPA_MIN_HEAD_DIM``;
        CUDA: to a multiple of ``CUDA_SDPA_HEAD_MULTIPLE``), straight out of the projections (padded weight rows) and
        into ``out_proj`` (padded weight columns): exact, no extra copies.
        """
        width = self._head_width(query.device, need_weights)
        w, b, wo = self._weights(width)
        n = self.num_heads * width  # packed width of q (and of k, of v)
        if key is None:
            q, k, v = F.linear(query, w, b).split(n, dim=-1)
        elif value is None or value is key:
            q = F.linear(query, w[:n], b[:n])
            k, v = F.linear(key, w[n:], b[n:]).split(n, dim=-1)
        else:
            q = F.linear(query, w[:n], b[:n])
            k = F.linear(key, w[n:2 * n], b[n:2 * n])
            v = F.linear(value, w[2 * n:], b[2 * n:])
        q, k, v = (x.view(x.shape[0], x.shape[1], self.num_heads, width).transpose(1, 2) for x in (q, k, v))
        dropout = self.attn_dropout if self.training else 0.0
        weights = None
        if is_causal:
            if attn_mask is not None or q.shape[-2] != k.shape[-2]:
                raise ValueError("is_causal needs square attention and no attn_mask")
            if need_weights:
                attn_mask, is_causal = offset_causal_mask(q.shape[-2], k.shape[-2], q.device), False
        if need_weights:
            scores = (q * self.head_dim ** -0.5) @ k.transpose(-2, -1)
            if attn_mask is not None:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)
            out = F.dropout(weights, dropout, self.training) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout,
                                                 is_causal=is_causal, scale=self.head_dim ** -0.5)
        bsz, _, lq, _ = out.shape
        out = out.transpose(1, 2).reshape(bsz, lq, n)
        if wo is self.out_proj.weight:
            return self.out_proj(out), weights  # the module itself, so that hooks on it fire
        return F.linear(out, wo, self.out_proj.bias), weights


class TransformerEncoderLayer(nn.Module):
    """Pre-LN layer: ``x + Drop(MHA(LN0(x), LN0(x_k)))`` then ``x + Drop(fc2(Drop(relu(fc1(LN1(x))))))``."""

    def __init__(self, embed_dim: int, num_heads: int, attn_dropout: float, relu_dropout: float,
                 res_dropout: float, attn_mask: bool) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(embed_dim, num_heads, attn_dropout)
        self.attn_mask = attn_mask
        self.relu_dropout, self.res_dropout = relu_dropout, res_dropout
        self.fc1 = nn.Linear(embed_dim, 4 * embed_dim)
        self.fc2 = nn.Linear(4 * embed_dim, embed_dim)
        for fc in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)
        self.layer_norms = nn.ModuleList([nn.LayerNorm(embed_dim) for _ in range(2)])

    def forward(self, x: torch.Tensor, x_k: Optional[torch.Tensor] = None, x_v: Optional[torch.Tensor] = None,
                need_weights: bool = False, last_only: bool = False):
        """One layer. ``last_only`` (self-attention) computes only the last query row, exactly: MulT's mask never
        hides a key from the last query, and later positions do not feed back into earlier ones."""
        ln0 = self.layer_norms[0]
        if last_only and x_k is None:
            kv = ln0(x)
            x = x[:, -1:]
            h, w = self.self_attn(kv[:, -1:], kv, kv, None, need_weights)
        elif x_k is None:
            # self-attention: MulT's mask is the plain causal one (|L_k - L_q| = 0)
            h, w = self.self_attn(ln0(x), None, None, None, need_weights, is_causal=self.attn_mask)
        else:
            mask = offset_causal_mask(x.shape[1], x_k.shape[1], x.device) if self.attn_mask else None
            k = ln0(x_k)
            v = k if x_v is None or x_v is x_k else ln0(x_v)
            h, w = self.self_attn(ln0(x), k, v, mask, need_weights)
        x = x + F.dropout(h, self.res_dropout, self.training)
        h = F.relu(self.fc1(self.layer_norms[1](x)))
        h = self.fc2(F.dropout(h, self.relu_dropout, self.training))
        x = x + F.dropout(h, self.res_dropout, self.training)
        return x, w


class TransformerEncoder(nn.Module):
    """MulT ``TransformerEncoder``: self-attention when ``x_k`` is None, crossmodal attention otherwise."""

    def __init__(self, embed_dim: int, num_heads: int, layers: int, attn_dropout: float = 0.0,
                 relu_dropout: float = 0.0, res_dropout: float = 0.0, embed_dropout: float = 0.0,
                 attn_mask: bool = True) -> None:
        super().__init__()
        self.embed_dim, self.embed_dropout = embed_dim, embed_dropout
        self.embed_scale = math.sqrt(embed_dim)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(embed_dim, num_heads, attn_dropout, relu_dropout, res_dropout, attn_mask)
            for _ in range(layers)
        )
        self.layer_norm = nn.LayerNorm(embed_dim)

    def _embed(self, x_in: torch.Tensor) -> torch.Tensor:
        x = self.embed_scale * x_in + sinusoidal_positions(x_in, self.embed_dim)
        return F.dropout(x, self.embed_dropout, self.training)

    def forward(self, x_in: torch.Tensor, x_in_k: Optional[torch.Tensor] = None,
                need_weights: bool = False, last_only: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``x_in (B, Lq, E)``, ``x_in_k (B, Lk, E)``; returns the output and per-layer weights (if asked).

        ``last_only`` (self-attention only) returns just the last position ``(B, 1, E)``, computing the last layer for
        that one query: the readout of MulT's memory transformers needs nothing else.
        """
        x = self._embed(x_in)
        x_k = x_v = None
        if x_in_k is not None:
            # MulT drops key and value inputs with independent masks; identical (one tensor) when not training
            independent = self.training and self.embed_dropout > 0
            x_k = self._embed(x_in_k)
            x_v = self._embed(x_in_k) if independent else x_k
        weights = []
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            x, w = layer(x, x_k, x_v, need_weights, last_only=last_only and i == n - 1)
            if need_weights:
                weights.append(w)
        return self.layer_norm(x), weights
