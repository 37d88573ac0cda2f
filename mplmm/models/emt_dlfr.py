"""EMT-DLFR (Sun et al., IEEE TAC 2023) ported onto precomputed features: "EMT-DLFR (frozen-text)".

* Unimodal subnets: one LSTM per modality (text too: the shared features are precomputed, BERT is not fine-tuned),
  each giving a temporal sequence (Linear on every state) and an utterance vector (Linear on dropout(h_n)).
* Efficient multimodal transformer: global multimodal context (GMC, 3 tokens) and local sequences exchange
  information through ONE shared mutual-promotion unit (cross-attn → self-attn → GEGLU FFN, all pre-norm residual);
  the three per-modality GMC copies are merged by attention pooling each layer.
* Dual-level feature restoration (``compute_loss`` only): the network is run on the incomplete view (used for the
  prediction) and on the complete view; low-level = masked SmoothL1 reconstruction of the dropped frames from the
  incomplete view's EMT output, high-level = SimSiam attraction between the views on (GMC, text, audio, vision).
  ``L = task(pred_m) + w_attra·(Σ SimSiam + task(pred_c)) + w_recon·Σ recon`` (the code's grouping).

Missing frames (frame-level protocol) and missing modalities (all frames dropped) are zero-filled; lengths are kept.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .base import MissingModalityModel, register
from .peer_layers import Attention, keep_masks, sinusoid_table, zero_fill


class SubNet(nn.Module):
    """``AuViSubNet``: unidirectional LSTM; temporal output and utterance output share the output Linear."""

    def __init__(self, d_in: int, hidden: int, d_out: int, dropout: float) -> None:
        super().__init__()
        self.rnn = nn.LSTM(d_in, hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seq, (h_n, _) = self.rnn(x)
        return self.out(seq), self.out(self.drop(h_n[-1]))


class GEGLUFeedForward(nn.Module):
    """``Linear(d, 2·m·d) → a·GELU(gate) → Dropout → Linear(m·d, d)``."""

    def __init__(self, dim: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 2 * mult * dim)
        self.fc2 = nn.Linear(mult * dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(self.drop(a * F.gelu(gate)))


class MPU(nn.Module):
    """Half mutual-promotion unit: pre-norm cross-attention, self-attention and GEGLU FFN, all residual."""

    def __init__(self, dim: int, heads: int, attn_dropout: float, ff_dropout: float, ff_mult: int) -> None:
        super().__init__()
        self.norm_q, self.norm_ctx, self.norm_self, self.norm_ff = (nn.LayerNorm(dim) for _ in range(4))
        self.cross = Attention(dim, heads, attn_dropout, bias=False)
        self.self_attn = Attention(dim, heads, attn_dropout, bias=False)
        self.ff = GEGLUFeedForward(dim, ff_mult, ff_dropout)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        x = x + self.cross(self.norm_q(x), self.norm_ctx(ctx))
        x = x + self.self_attn(self.norm_self(x))
        return x + self.ff(self.norm_ff(x))


class SimSiamHead(nn.Module):
    """Projector ``Linear + BN(affine=False)``; predictor ``Linear(no bias) → BN → ReLU → Linear``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.projector = nn.Sequential(nn.Linear(dim, dim), nn.BatchNorm1d(dim, affine=False))
        self.predictor = nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(),
                                       nn.Linear(hidden, dim))

    def loss(self, complete: torch.Tensor, incomplete: torch.Tensor) -> torch.Tensor:
        """``-½[cos(p_m, sg(z_c)) + cos(p_c, sg(z_m))]`` averaged over the batch."""
        z_c, z_m = self.projector(complete), self.projector(incomplete)  # BN statistics per view, as in the code
        p_c, p_m = self.predictor(z_c), self.predictor(z_m)
        z_c, z_m = z_c.detach(), z_m.detach()
        return -0.5 * (F.cosine_similarity(p_m, z_c, dim=-1).mean() + F.cosine_similarity(p_c, z_m, dim=-1).mean())


@register("emt_dlfr")
class EMTDLFR(MissingModalityModel):
    """EMT-DLFR (frozen-text port). ``forward`` uses the incomplete view only."""

    def __init__(self, dims, seq_lens, output_dim: int = 1, d_model: int = 32, heads: int = 4, depth: int = 2,
                 ff_mult: int = 4, subnet_hidden=(64, 32, 64), subnet_out=(64, 16, 32), subnet_dropout: float = 0.1,
                 attn_dropout: float = 0.1, ff_dropout: float = 0.1, post_fusion_dim: int = 64,
                 post_fusion_dropout: float = 0.1, w_attra: float = 1.0, w_recon: float = 1.0,
                 gmc_pred_hidden: int = 32) -> None:
        super().__init__(dims=list(dims), seq_lens=list(seq_lens), output_dim=output_dim, d_model=d_model,
                         heads=heads, depth=depth, ff_mult=ff_mult, subnet_hidden=list(subnet_hidden),
                         subnet_out=list(subnet_out), subnet_dropout=subnet_dropout, attn_dropout=attn_dropout,
                         ff_dropout=ff_dropout, post_fusion_dim=post_fusion_dim,
                         post_fusion_dropout=post_fusion_dropout, w_attra=w_attra, w_recon=w_recon,
                         gmc_pred_hidden=gmc_pred_hidden)
        self.depth, self.w_attra, self.w_recon = depth, w_attra, w_recon
        self.subnets = nn.ModuleList(SubNet(d, h, o, subnet_dropout)
                                     for d, h, o in zip(dims, subnet_hidden, subnet_out))
        self.proj = nn.ModuleList(nn.Linear(o, d_model, bias=False) for o in subnet_out)
        self.register_buffer("pos", sinusoid_table(max(seq_lens), d_model), persistent=False)
        self.mpu = MPU(d_model, heads, attn_dropout, ff_dropout, ff_mult)  # shared: directions, modalities, layers
        self.pool = nn.Sequential(nn.Linear(3 * d_model, 3 * d_model), nn.Tanh(), nn.Linear(3 * d_model, 1))
        fused = sum(subnet_out) + 3 * d_model
        self.head = nn.Sequential(nn.Dropout(post_fusion_dropout), nn.Linear(fused, post_fusion_dim), nn.ReLU(),
                                  nn.Linear(post_fusion_dim, post_fusion_dim), nn.ReLU(),
                                  nn.Linear(post_fusion_dim, output_dim))
        self.recon = nn.ModuleList(nn.Linear(d_model, d) for d in dims)
        self.attract = nn.ModuleList([SimSiamHead(3 * d_model, gmc_pred_hidden)]
                                     + [SimSiamHead(o, max(4, o // 2)) for o in subnet_out])

    def forward_once(self, feats: list[torch.Tensor]) -> dict:
        """One view through subnets, EMT and head: ``pred``, ``utt`` (3), ``gmc`` (B, 3D), ``local`` (3)."""
        temporal, utt = zip(*(net(x) for net, x in zip(self.subnets, feats)))
        local = [p(t) + self.pos[: t.shape[1]] for p, t in zip(self.proj, temporal)]
        gmc = torch.stack([p(u) for p, u in zip(self.proj, utt)], dim=1)  # (B, 3, D)
        b = gmc.shape[0]
        for _ in range(self.depth):
            copies = []
            for m in range(3):
                local[m] = self.mpu(local[m], gmc)
                copies.append(self.mpu(gmc, local[m]).reshape(b, -1))
            stack = torch.stack(copies, dim=1)  # (B, 3 copies, 3D)
            w = torch.softmax(self.pool(stack), dim=1)
            gmc = (w * stack).sum(1).view_as(gmc)
        gmc_flat = gmc.reshape(b, -1)
        pred = self.head(torch.cat([*utt, gmc_flat], dim=-1))
        return {"pred": pred, "utt": list(utt), "gmc": gmc_flat, "local": local}

    def _views(self, text, audio, vision, modes, frame_masks):
        feats = [text, audio, vision]
        keeps = keep_masks(feats, modes, frame_masks)
        return feats, keeps, [zero_fill(x, k) for x, k in zip(feats, keeps)]

    def forward(self, text, audio, vision, modes, frame_masks=None):
        _, _, filled = self._views(text, audio, vision, modes, frame_masks)
        return self.forward_once(filled)["pred"]

    def compute_loss(self, text, audio, vision, modes, target, criterion, frame_masks: Optional[dict] = None):
        feats, keeps, filled = self._views(text, audio, vision, modes, frame_masks)
        inc = self.forward_once(filled)
        com = self.forward_once(feats)
        task = criterion(inc["pred"], target)
        task_c = criterion(com["pred"], target)
        zero = task.new_zeros(())
        attra = zero
        if inc["gmc"].shape[0] > 1 or not self.training:  # BatchNorm needs 2 samples in training
            pairs = [(com["gmc"], inc["gmc"])] + list(zip(com["utt"], inc["utt"]))
            attra = sum(h.loss(c, m) for h, (c, m) in zip(self.attract, pairs))
        recon = zero
        for head, seq, x, keep in zip(self.recon, inc["local"], feats, keeps):
            dropped = (~keep).unsqueeze(-1).to(x.dtype)
            err = F.smooth_l1_loss(head(seq) * dropped, x * dropped, reduction="sum")
            recon = recon + err / (dropped.sum() * x.shape[-1] + 1e-6)
        loss = task + self.w_attra * (attra + task_c) + self.w_recon * recon
        parts = {"task": task.detach(), "task_complete": task_c.detach(),
                 "attraction": attra.detach(), "reconstruction": recon.detach()}
        return loss, inc["pred"], parts
