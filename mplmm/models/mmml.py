"""MMML (Wu et al., NAACL 2024) on precomputed features: "MMML-feat (T+A)", or "MMML-3m" with vision.

* Feature networks stand in for the fine-tuned RoBERTa / data2vec encoders: ``Linear → d`` + sinusoidal positions,
  a learnable encoder [CLS] token and ``enc_layers`` post-LN self-attention layers per modality.
* CME fusion: a learnable fusion CLS token is prepended to every stream; each CME layer does cross-attention (each
  stream queries the other stream — with three streams, the concatenation of the other two), then per-stream
  self-attention, then a per-stream FFN, all BERT-style post-LN.
* Heads: fused head (v1) on the concatenated fusion CLS tokens; unimodal heads ``Dropout → Linear`` on the encoder
  [CLS] (text) or the mean over kept frames (audio, vision).
* Multi-loss ``L = L_M + Σ_m w_uni · L_m``; a missing modality's unimodal loss is dropped (mean over the samples
  that have it) and its tokens are zero-filled and masked as keys (its CLS tokens stay visible, so no softmax NaN).
* Per-sample ``lengths``: a frame is readable only within its sample's length (padding is masked like a dropped
  frame); positions come from a table computed for any length.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..config import bad_value, option
from ..constants import MODALITIES
from ..errors import ConfigError
from .base import MissingModalityModel, check_heads, register
from .mult import DROPOUT
from .peer_layers import Attention, PostLNBlock, keep_masks, masked_mean, position_rows, sinusoid_table, zero_fill


class CMELayer(nn.Module):
    """One cross-modal encoder layer over ``n`` streams (per-stream weights)."""

    def __init__(self, n: int, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.cross = nn.ModuleList(Attention(dim, heads, dropout) for _ in range(n))
        self.ln = nn.ModuleList(nn.LayerNorm(dim) for _ in range(n))
        self.self_blocks = nn.ModuleList(PostLNBlock(dim, heads, dropout) for _ in range(n))
        self.drop = nn.Dropout(dropout)

    def forward(self, streams: list[torch.Tensor], keeps: list[torch.Tensor]) -> list[torch.Tensor]:
        crossed = []
        for i, x in enumerate(streams):
            ctx = torch.cat([s for j, s in enumerate(streams) if j != i], dim=1)
            ctx_keep = torch.cat([k for j, k in enumerate(keeps) if j != i], dim=1)
            crossed.append(self.ln[i](x + self.drop(self.cross[i](x, ctx, ctx_keep))))
        return [blk(x, k) for blk, x, k in zip(self.self_blocks, crossed, keeps)]


@dataclass
class MMMLConfig:
    """MMML's keys (the module docstring)."""

    modalities: list[str] = option(default_factory=lambda: ["text", "audio"], help="the 2 or 3 distinct streams "
                                   "fused (MMML-feat: text and audio; MMML-3m: all three)", choices=MODALITIES)
    d: int = option(32, "width of every stream", low=1)
    num_heads: int = option(4, "attention heads (a divisor of d)", aliases=("heads",), low=1)
    enc_layers: int = option(1, "self-attention layers of each feature network", low=1)
    cme_layers: int = option(2, "cross-modal encoder (CME) layers", low=1)
    dropout: float = option(0.1, "dropout in the feature networks and the CME", **DROPOUT)
    head_dropout: float = option(0.3, "dropout before the fused and unimodal heads", **DROPOUT)
    w_unimodal: float = option(1.0, "weight of each unimodal loss", low=0)

    def cross_check(self, where: str) -> None:
        """2 or 3 distinct modalities; ``num_heads`` divides ``d``."""
        if len(self.modalities) < 2 or len(set(self.modalities)) != len(self.modalities):
            raise ConfigError(bad_value(where, "modalities", f"2 or 3 distinct names from {', '.join(MODALITIES)}",
                                        self.modalities))
        check_heads(where, self.d, self.num_heads)


@register("mmml")
class MMML(MissingModalityModel):
    """MMML-feat: CME fusion with CLS tokens and fused + unimodal losses."""

    config_class = MMMLConfig

    def __init__(self, dims, seq_lens, output_dim: int = 1, config: Optional[MMMLConfig] = None) -> None:
        super().__init__(dims, seq_lens, output_dim, config)
        cfg = self.settings
        self.modalities = modalities = tuple(cfg.modalities)
        self.idx = [MODALITIES.index(m) for m in modalities]
        self.w_unimodal = cfg.w_unimodal
        n, d, heads, dropout = len(modalities), cfg.d, cfg.num_heads, cfg.dropout
        self.proj = nn.ModuleList(nn.Linear(dims[i], d) for i in self.idx)
        self.register_buffer("pos", sinusoid_table(max(seq_lens), d), persistent=False)
        self.enc_cls = nn.Parameter(torch.randn(n, d) * 0.02)
        self.fusion_cls = nn.Parameter(torch.randn(n, d) * 0.02)
        self.encoders = nn.ModuleList(
            nn.ModuleList(PostLNBlock(d, heads, dropout) for _ in range(cfg.enc_layers)) for _ in range(n))
        self.cme = nn.ModuleList(CMELayer(n, d, heads, dropout) for _ in range(cfg.cme_layers))
        self.uni_heads = nn.ModuleList(nn.Sequential(nn.Dropout(cfg.head_dropout), nn.Linear(d, output_dim))
                                       for _ in range(n))
        self.fused_head = nn.Sequential(nn.Dropout(cfg.head_dropout), nn.Linear(n * d, d), nn.ReLU(),
                                        nn.Linear(d, d), nn.ReLU(), nn.Linear(d, output_dim))

    def _parts(self, text, audio, vision, modes, frame_masks, lengths=None):
        """Fused prediction, unimodal predictions and per-stream 'has any kept frame' flags."""
        feats = [text, audio, vision]
        keeps_all = keep_masks(feats, modes, frame_masks, lengths)
        streams, keeps, uni, has = [], [], [], []
        for s, i in enumerate(self.idx):
            x, keep = feats[i], keeps_all[i]
            b, t = keep.shape
            h = self.proj[s](zero_fill(x, keep)) + position_rows(self.pos, t)
            seq = torch.cat([self.enc_cls[s].expand(b, 1, -1), h], dim=1)
            kseq = torch.cat([keep.new_ones(b, 1), keep], dim=1)
            for blk in self.encoders[s]:
                seq = blk(seq, kseq)
            pooled = seq[:, 0] if MODALITIES[i] == "text" else masked_mean(seq[:, 1:], keep)
            uni.append(self.uni_heads[s](pooled))
            has.append(keep.any(dim=1))
            streams.append(torch.cat([self.fusion_cls[s].expand(b, 1, -1), seq], dim=1))
            keeps.append(torch.cat([keep.new_ones(b, 1), kseq], dim=1))
        for layer in self.cme:
            streams = layer(streams, keeps)
        fused = self.fused_head(torch.cat([s[:, 0] for s in streams], dim=-1))
        return fused, uni, has

    def forward(self, text, audio, vision, modes, frame_masks=None, lengths=None):
        return self._parts(text, audio, vision, modes, frame_masks, lengths)[0]

    def compute_loss(self, text, audio, vision, modes, target, criterion, frame_masks: Optional[dict] = None,
                     lengths: Optional[torch.Tensor] = None, observed_modes: Optional[torch.Tensor] = None):
        """``L_M + Σ_m w_uni·L_m`` over the samples that have modality m (``observed_modes`` is not read)."""
        fused, uni, has = self._parts(text, audio, vision, modes, frame_masks, lengths)
        loss_m = criterion(fused, target)
        loss = loss_m
        parts = {"task": loss_m.detach()}
        for s, i in enumerate(self.idx):
            name = MODALITIES[i]
            if bool(has[s].any()):
                l_uni = criterion(uni[s][has[s]], target[has[s]])
                loss = loss + self.w_unimodal * l_uni
                parts[f"uni_{name}"] = l_uni.detach()
            else:
                parts[f"uni_{name}"] = 0.0
        return loss, fused, parts
