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

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import option
from ..constants import COMPLETE_MODE
from .base import MissingModalityModel, check_heads, register
from .lengths import gather_steps, last_valid_index, with_fallback
from .mult import DROPOUT
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


@dataclass
class EMTDLFRConfig:
    """EMT-DLFR's keys (the module docstring)."""

    d: int = option(32, "width of the efficient multimodal transformer", aliases=("d_model",), low=1)
    num_heads: int = option(4, "attention heads (a divisor of d)", aliases=("heads",), low=1)
    depth: int = option(2, "mutual-promotion layers", low=1)
    ff_mult: int = option(4, "GEGLU feed-forward width, in multiples of d", low=1)
    subnet_hidden: list[int] = option(default_factory=lambda: [64, 32, 64], help="LSTM width of the text, audio and "
                                      "vision subnets", length=3, low=1)
    subnet_out: list[int] = option(default_factory=lambda: [64, 16, 32], help="output width of the text, audio and "
                                   "vision subnets", length=3, low=1)
    subnet_dropout: float = option(0.1, "dropout on the subnets' utterance states", **DROPOUT)
    attn_dropout: float = option(0.1, "attention dropout", **DROPOUT)
    ff_dropout: float = option(0.1, "feed-forward dropout", **DROPOUT)
    post_fusion_dim: int = option(64, "width of the fused head", low=1)
    post_fusion_dropout: float = option(0.1, "dropout before the fused head", **DROPOUT)
    w_attra: float = option(1.0, "weight of the high-level attraction (SimSiam) loss and the complete view's task "
                            "loss", low=0)
    w_recon: float = option(1.0, "weight of the low-level reconstruction loss", low=0)
    gmc_pred_hidden: int = option(32, "hidden width of the global context's SimSiam predictor", low=1)

    def cross_check(self, where: str) -> None:
        """``num_heads`` divides ``d``."""
        check_heads(where, self.d, self.num_heads)


@register("emt_dlfr")
class EMTDLFR(MissingModalityModel):
    """EMT-DLFR (frozen-text port). ``forward`` uses the incomplete view only."""

    config_class = EMTDLFRConfig

    def __init__(self, dims, seq_lens, output_dim: int = 1, config: Optional[EMTDLFRConfig] = None) -> None:
        super().__init__(dims, seq_lens, output_dim, config)
        cfg = self.settings
        width, outs = cfg.d, cfg.subnet_out
        self.depth, self.w_attra, self.w_recon = cfg.depth, cfg.w_attra, cfg.w_recon
        self.subnets = nn.ModuleList(SubNet(d, h, o, cfg.subnet_dropout)
                                     for d, h, o in zip(dims, cfg.subnet_hidden, outs))
        self.proj = nn.ModuleList(nn.Linear(o, width, bias=False) for o in outs)
        self.register_buffer("pos", sinusoid_table(max(seq_lens), width), persistent=False)
        # one mutual-promotion unit, shared by directions, modalities and layers
        self.mpu = MPU(width, cfg.num_heads, cfg.attn_dropout, cfg.ff_dropout, cfg.ff_mult)
        self.pool = nn.Sequential(nn.Linear(3 * width, 3 * width), nn.Tanh(), nn.Linear(3 * width, 1))
        fused, hidden = sum(outs) + 3 * width, cfg.post_fusion_dim
        self.head = nn.Sequential(nn.Dropout(cfg.post_fusion_dropout), nn.Linear(fused, hidden), nn.ReLU(),
                                  nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, output_dim))
        self.recon = nn.ModuleList(nn.Linear(width, d) for d in dims)
        self.attract = nn.ModuleList([SimSiamHead(3 * width, cfg.gmc_pred_hidden)]
                                     + [SimSiamHead(o, max(4, o // 2)) for o in outs])

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
