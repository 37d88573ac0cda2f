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
With per-sample ``lengths`` the utterance vector is the LSTM state at the last real step, every attention over a
local sequence reads only its real steps (effective length: 0 for a missing modality, then step 0 alone), and
positions come from a table computed for any length. ``compute_loss(..., observed_modes=)`` makes the complete view
the data really recorded (zero-filled by the observed modes), and reconstructs only frames observed, within length
and dropped in the incomplete view.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..constants import COMPLETE_MODE
from .base import MissingModalityModel, register
from .lengths import gather_steps, last_valid_index, with_fallback
from .peer_layers import Attention, keep_masks, position_rows, sinusoid_table, zero_fill


class SubNet(nn.Module):
    """``AuViSubNet``: unidirectional LSTM; temporal output and utterance output share the output Linear."""

    def __init__(self, d_in: int, hidden: int, d_out: int, dropout: float) -> None:
        super().__init__()
        self.rnn = nn.LSTM(d_in, hidden, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor, valid: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Temporal ``(B, T, out)`` and utterance ``(B, out)`` outputs; the utterance state is ``h_n``, or with
        ``valid (B, T)`` the state at the last real step ``max(L - 1, 0)`` (``h_n`` itself at full length)."""
        seq, (h_n, _) = self.rnn(x)
        last = h_n[-1] if valid is None else gather_steps(seq, last_valid_index(valid))[:, 0]
        return self.out(seq), self.out(self.drop(last))


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

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, x_keep: Optional[torch.Tensor] = None,
                ctx_keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x`` promoted by ``ctx``; ``x_keep``/``ctx_keep`` ``(B, T)``: the keys each attention may read."""
        x = x + self.cross(self.norm_q(x), self.norm_ctx(ctx), ctx_keep)
        x = x + self.self_attn(self.norm_self(x), key_keep=x_keep)
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

    def forward_once(self, feats: list[torch.Tensor], valid: Optional[list[torch.Tensor]] = None) -> dict:
        """One view through subnets, EMT and head: ``pred``, ``utt`` (3), ``gmc`` (B, 3D), ``local`` (3).
        ``valid``: per modality ``(B, T)`` real steps (lengths); every attention over a local sequence then reads
        only those (step 0 alone when there is none)."""
        valid = [None] * 3 if valid is None else valid
        temporal, utt = zip(*(net(x, v) for net, x, v in zip(self.subnets, feats, valid)))
        local = [p(t) + position_rows(self.pos, t.shape[1]) for p, t in zip(self.proj, temporal)]
        keys = [None if v is None else with_fallback(v) for v in valid]
        gmc = torch.stack([p(u) for p, u in zip(self.proj, utt)], dim=1)  # (B, 3, D)
        b = gmc.shape[0]
        for _ in range(self.depth):
            copies = []
            for m in range(3):
                local[m] = self.mpu(local[m], gmc, x_keep=keys[m])
                copies.append(self.mpu(gmc, local[m], ctx_keep=keys[m]).reshape(b, -1))
            stack = torch.stack(copies, dim=1)  # (B, 3 copies, 3D)
            w = torch.softmax(self.pool(stack), dim=1)
            gmc = (w * stack).sum(1).view_as(gmc)
        gmc_flat = gmc.reshape(b, -1)
        pred = self.head(torch.cat([*utt, gmc_flat], dim=-1))
        return {"pred": pred, "utt": list(utt), "gmc": gmc_flat, "local": local}

    @staticmethod
    def _view(feats: list[torch.Tensor], modes, frame_masks, lengths) -> tuple[list, list, Optional[list]]:
        """Readable-frame masks, the zero-filled features and (``lengths`` given) the real steps under ``modes``."""
        keeps = keep_masks(feats, modes, frame_masks, lengths)
        valid = None if lengths is None else keep_masks(feats, modes, None, lengths)
        return keeps, [zero_fill(x, k) for x, k in zip(feats, keeps)], valid

    def forward(self, text, audio, vision, modes, frame_masks=None, lengths=None):
        _, filled, valid = self._view([text, audio, vision], modes, frame_masks, lengths)
        return self.forward_once(filled, valid)["pred"]

    def compute_loss(self, text, audio, vision, modes, target, criterion, frame_masks: Optional[dict] = None,
                     lengths: Optional[torch.Tensor] = None, observed_modes: Optional[torch.Tensor] = None):
        """The module docstring's loss. The complete view is the observed data (zero-filled by ``observed_modes``,
        None = complete); reconstruction targets frames observed, within length and dropped in the incomplete view."""
        feats = [text, audio, vision]
        keeps, filled, valid = self._view(feats, modes, frame_masks, lengths)
        inc = self.forward_once(filled, valid)
        if observed_modes is None and lengths is None:
            observed, com = [torch.ones_like(k) for k in keeps], self.forward_once(feats)
        else:
            if observed_modes is None:
                observed_modes = torch.full((text.shape[0],), COMPLETE_MODE, device=text.device)
            observed, complete, com_valid = self._view(feats, observed_modes, None, lengths)
            com = self.forward_once(complete, com_valid)
        task = criterion(inc["pred"], target)
        task_c = criterion(com["pred"], target)
        zero = task.new_zeros(())
        attra = zero
        if inc["gmc"].shape[0] > 1 or not self.training:  # BatchNorm needs 2 samples in training
            pairs = [(com["gmc"], inc["gmc"])] + list(zip(com["utt"], inc["utt"]))
            attra = sum(h.loss(c, m) for h, (c, m) in zip(self.attract, pairs))
        recon = zero
        for head, seq, x, keep, seen in zip(self.recon, inc["local"], feats, keeps, observed):
            dropped = (seen & ~keep).unsqueeze(-1).to(x.dtype)
            err = F.smooth_l1_loss(head(seq) * dropped, x * dropped, reduction="sum")
            recon = recon + err / (dropped.sum() * x.shape[-1] + 1e-6)
        loss = task + self.w_attra * (attra + task_c) + self.w_recon * recon
        parts = {"task": task.detach(), "task_complete": task_c.detach(),
                 "attraction": attra.detach(), "reconstruction": recon.detach()}
        return loss, inc["pred"], parts
