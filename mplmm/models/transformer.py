"""MulT's transformer encoder, batch-first, on ``scaled_dot_product_attention``.

Semantics follow MulT / MPLMM ``modules/*`` exactly (``docs/models.md``, "mult: the MulT backbone"):

* input scaled by ``sqrt(embed_dim)``; sinusoidal positions (sin|cos halves, positions start at 1) derived from
  **channel 0 of the unscaled input**: a step whose channel 0 is exactly 0 counts as padding and gets a zero position
  vector, and later positions count only non-padding steps (fairseq ``make_positions``);
* pre-LayerNorm layers; the **same** LayerNorm normalises query, key and value;
* MulT's offset causal mask hides key ``j`` from query ``i`` when ``j > i + |L_k - L_q|``;
* a final LayerNorm after the stack.

Per-sample lengths (:mod:`mplmm.models.lengths`): ``TransformerEncoder.forward`` takes step-validity masks ``valid``
(query sequence) and ``valid_k`` (key sequence), ``(B, T)`` bool. With them, "non-padding" in the position rule is
``valid`` instead of channel 0 (real steps get 1..L, padding 0), and one ``(B, 1, Lq, Lk)`` mask built per call
(:func:`length_mask`) hides invalid keys and applies the offset rule with each sample's real lengths; a row with no
visible key attends to step 0 only (whose position vector is then zero). Without masks nothing changes.

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

from .lengths import gather_steps, last_valid_index

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


def length_mask(valid_q: torch.Tensor, valid_k: torch.Tensor, causal: bool,
                dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """``(B, 1, Lq, Lk)`` mask for step-validity masks ``valid_q (B, Lq)``, ``valid_k (B, Lk)``: bool (True = attend),
    or with ``dtype`` the additive form SDPA would derive from it in every layer (0 / -inf), made once.

    Invalid keys are hidden; with ``causal`` also key ``j`` from query ``i`` when ``j > i + |L_k - L_q|``, ``L`` being
    the sample's numbers of valid steps (self-attention: plain causal). A row with no visible key sees step 0 only.
    """
    batch, len_q, len_k = valid_k.shape[0], valid_q.shape[-1], valid_k.shape[-1]
    j = torch.arange(len_k, device=valid_k.device).view(1, 1, len_k)
    any_k = valid_k.any(-1).view(-1, 1, 1)
    if causal:
        i = torch.arange(len_q, device=valid_k.device).view(1, len_q, 1)
        limit = i + (valid_k.sum(-1) - valid_q.sum(-1)).abs().view(-1, 1, 1)  # (B, Lq, 1)
        allowed = valid_k.unsqueeze(1) & (j <= limit)
        first = valid_k.to(torch.uint8).argmax(-1).view(-1, 1, 1)  # the first valid key (0 when none)
        no_key = ~any_k | (first > limit)
    else:
        allowed, no_key = valid_k.unsqueeze(1).expand(batch, len_q, len_k), ~any_k
    mask = (allowed | ((j == 0) & no_key)).unsqueeze(1)
    if dtype is None:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


def sinusoidal_positions(x_in: torch.Tensor, dim: int, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Positional embedding ``(B, T, dim)`` of MulT for input ``x_in (B, T, C)``: padding = channel 0 == 0, or the
    steps where ``valid (B, T)`` is False when given."""
    nonpad = x_in[..., 0].ne(0) if valid is None else valid
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
        if attn_mask is not None and attn_mask.is_floating_point() and attn_mask.dtype != q.dtype:
            attn_mask = attn_mask.to(q.dtype)  # an additive mask under autocast
        if need_weights:
            scores = (q * self.head_dim ** -0.5) @ k.transpose(-2, -1)
            if attn_mask is not None and attn_mask.dtype == torch.bool:
                scores = scores.masked_fill(~attn_mask, float("-inf"))
            elif attn_mask is not None:
                scores = scores + attn_mask
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
                need_weights: bool = False, last_only: bool = False, mask: Optional[torch.Tensor] = None,
                row: Optional[torch.Tensor] = None):
        """One layer. ``last_only`` (self-attention) computes only one query row, exactly: later positions do not
        feed back into earlier ones. The row is the last one (MulT's mask never hides a key from it) or, with
        ``row (B,)``, row ``row[b]`` of each sample. ``mask (B, 1, Lq, Lk)``, bool (True = attend) or additive, when
        given replaces the layer's own MulT mask (lengths: :func:`length_mask`, built once per encoder call)."""
        ln0 = self.layer_norms[0]
        if last_only and x_k is None:
            kv = ln0(x)
            if row is None:
                x, q = x[:, -1:], kv[:, -1:]
                mask = None if mask is None else mask[:, :, -1:]
            else:
                x, q = gather_steps(x, row), gather_steps(kv, row)
                mask = None if mask is None else gather_steps(mask[:, 0], row).unsqueeze(1)
            h, w = self.self_attn(q, kv, kv, mask, need_weights)
        elif x_k is None:
            # self-attention: MulT's mask is the plain causal one (|L_k - L_q| = 0)
            causal = self.attn_mask and mask is None
            h, w = self.self_attn(ln0(x), None, None, mask, need_weights, is_causal=causal)
        else:
            if mask is None and self.attn_mask:
                mask = offset_causal_mask(x.shape[1], x_k.shape[1], x.device)
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
        self.embed_dim, self.embed_dropout, self.attn_mask = embed_dim, embed_dropout, attn_mask
        self.embed_scale = math.sqrt(embed_dim)
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(embed_dim, num_heads, attn_dropout, relu_dropout, res_dropout, attn_mask)
            for _ in range(layers)
        )
        self.layer_norm = nn.LayerNorm(embed_dim)

    def _embed(self, x_in: torch.Tensor, valid: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.embed_scale * x_in + sinusoidal_positions(x_in, self.embed_dim, valid)
        return F.dropout(x, self.embed_dropout, self.training)

    def forward(self, x_in: torch.Tensor, x_in_k: Optional[torch.Tensor] = None, need_weights: bool = False,
                last_only: bool = False, valid: Optional[torch.Tensor] = None,
                valid_k: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``x_in (B, Lq, E)``, ``x_in_k (B, Lk, E)``; returns the output and per-layer weights (if asked).

        ``last_only`` (self-attention only) returns just the readout position ``(B, 1, E)``, computing the last layer
        for that one query: the readout of MulT's memory transformers needs nothing else. It is the last step, or
        with ``valid`` the last valid step of each sample (step 0 when none is).

        ``valid (B, Lq)`` / ``valid_k (B, Lk)`` bool: per-sample step validity (lengths); either may be omitted (all
        steps valid; self-attention uses ``valid`` for its keys). Positions then count valid steps only and
        :func:`length_mask` replaces MulT's mask in every layer.
        """
        mask = row = None
        if valid is not None or valid_k is not None:
            valid = _all_valid(x_in) if valid is None else valid
            valid_k = valid if x_in_k is None else (_all_valid(x_in_k) if valid_k is None else valid_k)
            mask = length_mask(valid, valid_k, self.attn_mask, x_in.dtype)
            row = last_valid_index(valid) if last_only else None
        x = self._embed(x_in, valid)
        x_k = x_v = None
        if x_in_k is not None:
            # MulT drops key and value inputs with independent masks; identical (one tensor) when not training
            independent = self.training and self.embed_dropout > 0
            x_k = self._embed(x_in_k, valid_k)
            x_v = self._embed(x_in_k, valid_k) if independent else x_k
        weights = []
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            x, w = layer(x, x_k, x_v, need_weights, last_only=last_only and i == n - 1, mask=mask, row=row)
            if need_weights:
                weights.append(w)
        return self.layer_norm(x), weights


def _all_valid(x: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` all-True validity for ``x (B, T, E)``."""
    return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
