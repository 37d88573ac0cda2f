"""ComP (He et al., AAAI 2026) ported per sample: "ComP-frame".

ComP models a *video* as a sequence of utterances. The workbench contract is per utterance, so the sequence axis
here is time: every modality is resampled to ``seq_len`` segments (masked mean of the readable frames inside each
segment; a segment is *available* when it holds at least one readable frame), and the per-utterance outputs are
averaged over segments into one prediction (the heads are linear, so head-then-mean = mean-then-head). With
per-sample ``lengths`` each sample is segmented by its own length (segment ``s`` covers frames
``[s·L // S, ceil((s+1)·L / S))``, none when ``L = 0``), so padding never enters a segment; any sequence length is
accepted.

Pipeline: input projection → shared/private MLPs (+ decoder for L_rec) → stage 1 (shared → block1 → block2 →
heads; private "negative" branch) or stage 2 (PromptFormer prototypes/prompts → propagation 1 → block1 →
split → PromptFormer_2 with λ-mixing → propagation 2 → block2 → heads → router-weighted fusion head).
Released-code defects fixed here: the private branch uses each modality's own private features; the prompt-former
row mask is batch-major (and implemented so that it has an effect, see ``PromptFormer``); the gradient modulator
reaches the prototype map (flag ``modulate_grads``); stages switch by a step counter, without a no-op weight copy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import option
from ..constants import LETTERS
from .base import MissingModalityModel, check_heads, register
from .lengths import clamp_lengths
from .mult import DROPOUT
from .peer_layers import Attention, Mlp, is_classification, keep_masks, zero_fill

OTHERS = ((1, 2), (0, 2), (0, 1))  # the two other modalities of l, a, v


def segment_matrices(lengths: torch.Tensor, steps: int, segments: int) -> torch.Tensor:
    """``(B, segments, steps)`` 0/1: frame ``t`` belongs to segment ``s`` of a sample of length ``L = lengths[b]``,
    i.e. ``s·L // S <= t < ceil((s+1)·L / S)`` (contiguous, non-empty when ``L > 0``, may overlap; none when 0)."""
    s = torch.arange(segments, device=lengths.device).view(1, segments, 1)
    t = torch.arange(steps, device=lengths.device).view(1, 1, steps)
    length = lengths.long().view(-1, 1, 1)
    lo = (s * length) // segments
    hi = -((-(s + 1) * length) // segments)  # ceil
    return ((t >= lo) & (t < hi)).float()


def segment_matrix(length: int, segments: int, device: Optional[torch.device] = None) -> torch.Tensor:
    """``(segments, length)`` 0/1 matrix: frame t belongs to segment s (contiguous, non-empty, may overlap)."""
    return segment_matrices(torch.full((1,), length, device=device), length, segments)[0]


class EncoderLayer(nn.Module):
    """Pre-norm ``x + Attn(LN(x))``, ``x + Mlp(LN(x))`` with an availability key mask."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop: float, attn_drop: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, attn_drop)
        self.mlp = Mlp(dim, max(1, int(dim * mlp_ratio)), dim, drop)

    def forward(self, x: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), key_keep=avail)
        return x + self.mlp(self.norm2(x))


class ModalityBlock(nn.Module):
    """``depth`` encoder layers per modality, each modality with its own weights."""

    def __init__(self, dim: int, heads: int, depth: int, mlp_ratio: float, drop: float, attn_drop: float) -> None:
        super().__init__()
        self.stacks = nn.ModuleList(
            nn.ModuleList(EncoderLayer(dim, heads, mlp_ratio, drop, attn_drop) for _ in range(depth))
            for _ in range(3))

    def forward(self, x: torch.Tensor, avail: torch.Tensor, m: int) -> torch.Tensor:
        for layer in self.stacks[m]:
            x = layer(x, avail)
        return x


class PromptFormer(nn.Module):
    """Prototype prompts: an MLP over the sequence axis makes ``n_proto`` prototypes; each position attends to them.

    Position rows whose modality is unavailable get uniform weights (the mean prototype). The released code adds
    ``-10000`` to whole rows in seq-major order: wrong rows, and a row-constant shift leaves softmax unchanged anyway.
    ``batch_prototypes=True`` reproduces the code's sharing of all B·n_proto prototypes across the batch.
    """

    def __init__(self, seq_len: int, n_proto: int, dim: int, prompt_dim: int, drop: float, make_proto: bool) -> None:
        super().__init__()
        self.proj_n = Mlp(seq_len, n_proto, n_proto, drop) if make_proto else None
        self.proj_d = Mlp(dim, prompt_dim, prompt_dim, drop)
        self.proj_prompt = nn.Linear(dim, prompt_dim)
        self.proto_weight: Optional[torch.Tensor] = None  # graph view of proj_n.fc1.weight (gradient modulator)

    def forward(self, x: torch.Tensor, avail: torch.Tensor, prototypes: Optional[torch.Tensor] = None,
                batch_prototypes: bool = False, track_weight: bool = False):
        if prototypes is None:
            w = self.proj_n.fc1.weight
            if track_weight:
                w = w.view_as(w)
                self.proto_weight = w
            prototypes = self.proj_n(x.transpose(1, 2), fc1_weight=w).transpose(1, 2)  # (B, P, D)
        b, _, dim = x.shape
        xn = F.normalize(x, dim=-1)
        bank = prototypes.reshape(1, -1, dim).expand(b, -1, -1) if batch_prototypes else prototypes
        sim = torch.softmax(xn @ F.normalize(bank, dim=-1).transpose(1, 2), dim=-1)
        sim = torch.where(avail.unsqueeze(-1), sim, torch.full_like(sim, 1.0 / sim.shape[-1]))
        prompt = self.proj_d(sim @ bank) + self.proj_prompt(x)
        return prompt, prototypes


@dataclass
class ComPConfig:
    """ComP's keys (the module docstring)."""

    d: int = option(32, "hidden width", aliases=("hidden",), low=1)
    depth: int = option(4, "encoder layers, split over the two modality blocks", low=1)
    num_heads: int = option(2, "attention heads (a divisor of d)", aliases=("heads",), low=1)
    mlp_ratio: float = option(1.0, "MLP width, in multiples of d", low=0)
    drop_rate: float = option(0.1, "dropout (inputs, MLPs, prompt-formers, head)", **DROPOUT)
    attn_drop_rate: float = option(0.0, "attention dropout", **DROPOUT)
    prompt_dim: int = option(16, "width of the prototype prompts", low=1)
    n_proto: int = option(10, "prototypes per prompt-former", low=1)
    lbd: float = option(0.3, "lambda: share of the propagated prompts in the second prompt-former's mix", low=0)
    seq_len: Optional[int] = option(None, "segments per sequence (None: the shortest sequence length, at most 32)",
                                    low=1)
    stage1_steps: int = option(0, "training steps of stage 1 before stage 2", low=0)
    modulate_grads: bool = option(False, "the dynamic gradient modulator on the prototype map")
    batch_prototypes: bool = option(False, "share all the batch's prototypes across samples (the released code)")

    def cross_check(self, where: str) -> None:
        """``num_heads`` divides ``d``."""
        check_heads(where, self.d, self.num_heads)


@register("comp")
class ComP(MissingModalityModel):
    """ComP-frame: progressive prompts, cross-modal propagation, coordinator; two loss stages."""

    config_class = ComPConfig

    def __init__(self, dims, seq_lens, output_dim: int = 1, config: Optional[ComPConfig] = None) -> None:
        super().__init__(dims, seq_lens, output_dim, config)
        cfg = self.settings
        seq_len = int(cfg.seq_len) if cfg.seq_len else max(1, min(min(seq_lens), 32))
        self.config["seq_len"] = seq_len  # resolved from the data when not given
        self.seq_len, self.lbd, self.prompt_dim = seq_len, cfg.lbd, cfg.prompt_dim
        self.stage1_steps, self.modulate_grads, self.batch_prototypes = (cfg.stage1_steps, cfg.modulate_grads,
                                                                         cfg.batch_prototypes)
        self.classification = is_classification(output_dim)
        self.register_buffer("train_steps", torch.zeros((), dtype=torch.long))
        for i, t in enumerate(seq_lens):
            self.register_buffer(f"seg{i}", segment_matrix(t, seq_len), persistent=False)
        h, p, drop, ratio = cfg.d, cfg.prompt_dim, cfg.drop_rate, cfg.mlp_ratio
        self.in_proj = nn.ModuleList(nn.Linear(d, h) for d in dims)
        self.in_drop = nn.Dropout(drop)
        self.shared_enc, self.private_enc = (nn.ModuleList(Mlp(h, h, h, drop) for _ in range(3)) for _ in range(2))
        self.dec = nn.ModuleList(Mlp(2 * h, h, h, drop) for _ in range(3))
        half = max(1, cfg.depth // 2)
        self.block1 = ModalityBlock(h, cfg.num_heads, half, ratio, drop, cfg.attn_drop_rate)
        self.block2 = ModalityBlock(h, cfg.num_heads, half, ratio, drop, cfg.attn_drop_rate)
        self.pf1 = nn.ModuleList(PromptFormer(seq_len, cfg.n_proto, h, p, drop, True) for _ in range(3))
        self.pf2 = nn.ModuleList(PromptFormer(seq_len, cfg.n_proto, h, p, drop, False) for _ in range(3))
        self.prop1, self.prop2 = (nn.ModuleList(nn.Linear(h + 2 * p, h) for _ in range(3)) for _ in range(2))
        self.rev1 = nn.ModuleList(Mlp(h, h, h + 2 * p, drop) for _ in range(3))
        self.heads = nn.ModuleList(nn.Linear(h, output_dim) for _ in range(3))
        self.router = Mlp(3 * h, max(1, int(h * ratio)), 3, drop)
        self.proj1 = nn.Linear(3 * h, 3 * h)
        self.fused_head = nn.Linear(3 * h, output_dim)
        self.out_drop = nn.Dropout(drop)

    # ------------------------------------------------------------------ encoding
    @property
    def predicts_per_sample(self) -> bool:
        """False with ``batch_prototypes``: every sample then attends to the whole batch's prototypes."""
        return not self.batch_prototypes

    @property
    def first_stage(self) -> bool:
        """Stage 1 while fewer than ``stage1_steps`` training losses have been computed."""
        return int(self.train_steps) < self.stage1_steps

    def _segments(self, i: int, steps: int, lengths: Optional[torch.Tensor]) -> torch.Tensor:
        """Segment matrix of modality ``i``: the fixed ``(S, T)`` buffer (another ``T``: computed for it), or with
        ``lengths (B,)`` one ``(B, S, T)`` segmentation per sample of its own length."""
        seg = getattr(self, f"seg{i}")
        if lengths is not None:
            return segment_matrices(lengths, steps, self.seq_len).to(seg.dtype)
        return seg if seg.shape[1] == steps else segment_matrix(steps, self.seq_len, seg.device)

    def _encode(self, text, audio, vision, modes, frame_masks, lengths: Optional[torch.Tensor] = None) -> dict:
        feats = [text, audio, vision]
        keeps = keep_masks(feats, modes, frame_masks, lengths)
        if lengths is not None:
            lengths = clamp_lengths(lengths, [x.shape[1] for x in feats], text.device)
        proj, avail = [], []
        for i, (x, keep) in enumerate(zip(feats, keeps)):
            seg = self._segments(i, x.shape[1], None if lengths is None else lengths[:, i])
            pattern = "st" if seg.ndim == 2 else "bst"
            counts = torch.einsum(f"{pattern},bt->bs", seg, keep.to(x.dtype))
            pooled = torch.einsum(f"{pattern},btd->bsd", seg, zero_fill(x, keep))
            pooled = pooled / counts.clamp_min(1.0).unsqueeze(-1)
            proj.append(self.in_drop(self.in_proj[i](pooled)))
            avail.append(counts > 0)
        shared = [enc(x) for enc, x in zip(self.shared_enc, proj)]
        private = [enc(x) for enc, x in zip(self.private_enc, proj)]
        rec = [dec(torch.cat([s, q], -1)) for dec, s, q in zip(self.dec, shared, private)]
        return {"proj": proj, "avail": avail, "shared": shared, "private": private, "rec": rec}

    def _fuse(self, xs: list[torch.Tensor]) -> torch.Tensor:
        joint = torch.cat(xs, dim=-1)
        hidden = joint + self.out_drop(F.relu(self.proj1(joint)))
        return self.fused_head(hidden.mean(1))

    def _stage1(self, enc: dict, private: bool) -> dict:
        av = enc["avail"]
        xs = [self.block2(self.block1(s, a, m), a, m) for m, (s, a) in enumerate(zip(enc["shared"], av))]
        out = {"uni_seq": [hd(x) for hd, x in zip(self.heads, xs)]}
        out["fused"] = self._fuse([torch.where(a.unsqueeze(-1), x, torch.zeros_like(x)) for x, a in zip(xs, av)])
        if private:  # fixed: each modality's own private features (the code passes private_a three times)
            ps = [self.block2(self.block1(q, a, m), a, m) for m, (q, a) in enumerate(zip(enc["private"], av))]
            out["private"] = [hd(x.mean(1)) for hd, x in zip(self.heads, ps)]
        return out

    def _stage2(self, enc: dict, track: bool = False) -> dict:
        av, bp = enc["avail"], self.batch_prototypes
        first = [pf(s, a, batch_prototypes=bp, track_weight=track) for pf, s, a in zip(self.pf1, enc["shared"], av)]
        prompts0, protos = [f[0] for f in first], [f[1] for f in first]
        shared, carried = [], []
        for m, (i, j) in enumerate(OTHERS):
            x = self.prop1[m](torch.cat([enc["shared"][m], prompts0[i], prompts0[j]], -1))
            x = self.rev1[m](self.block1(x, av[m], m))
            h = x.shape[-1] - 2 * self.prompt_dim
            shared.append(x[..., :h])
            carried.append((x[..., h:h + self.prompt_dim], x[..., h + self.prompt_dim:]))
        prompts1 = [pf(s, a, pr, batch_prototypes=bp)[0] for pf, s, a, pr in zip(self.pf2, shared, av, protos)]
        xs = []
        for m, (i, j) in enumerate(OTHERS):
            pi = self.lbd * carried[m][0] + (1 - self.lbd) * prompts1[i]
            pj = self.lbd * carried[m][1] + (1 - self.lbd) * prompts1[j]
            xs.append(self.block2(self.prop2[m](torch.cat([shared[m], pi, pj], -1)), av[m], m))
        weights = torch.softmax(self.router(torch.cat(xs, -1)), dim=-1)  # coordinator, per position
        fused = self._fuse([weights[..., m:m + 1] * x for m, x in enumerate(xs)])
        return {"uni_seq": [hd(x) for hd, x in zip(self.heads, xs)], "fused": fused}

    def forward(self, text, audio, vision, modes, frame_masks=None, lengths=None):
        enc = self._encode(text, audio, vision, modes, frame_masks, lengths)
        return (self._stage1(enc, False) if self.first_stage else self._stage2(enc))["fused"]

    # ------------------------------------------------------------------ losses
    def compute_loss(self, text, audio, vision, modes, target, criterion, frame_masks: Optional[dict] = None,
                     lengths: Optional[torch.Tensor] = None, observed_modes: Optional[torch.Tensor] = None):
        """Stage 1: ``Σ_m (L_m + L_m^neg) + L_dis``; stage 2: ``L_fused + 2·Σ_m L_m + L_rec + L_dis``
        (``observed_modes`` is not read)."""
        first = self.first_stage
        enc = self._encode(text, audio, vision, modes, frame_masks, lengths)
        track = self.modulate_grads and self.training and not first and torch.is_grad_enabled()
        out = self._stage1(enc, True) if first else self._stage2(enc, track)
        l_uni = [criterion(u.mean(1), target) for u in out["uni_seq"]]
        l_dis = disentangle_loss(enc["shared"], enc["private"])
        parts = {f"uni_{n}": v.detach() for n, v in zip(LETTERS, l_uni)}
        parts["dis"] = l_dis.detach()
        if first:
            neg = [self._negative(p, target, criterion) for p in out["private"]]
            loss = sum(l_uni) + sum(neg) + l_dis
            parts["negative"] = sum(neg).detach()
        else:
            l_fused = criterion(out["fused"], target)
            l_rec = F.mse_loss(torch.cat(enc["rec"], -1), torch.cat(enc["proj"], -1))
            loss = l_fused + 2.0 * sum(l_uni) + l_rec + l_dis
            parts.update(task=l_fused.detach(), rec=l_rec.detach())
            if track:
                self._modulate(out["uni_seq"], target)
        if self.training:
            self.train_steps += 1
        parts["stage"] = 1.0 if first else 2.0
        return loss, out["fused"], parts

    def _negative(self, pred: torch.Tensor, target: torch.Tensor, criterion) -> torch.Tensor:
        """Private-branch "negative" target: Gaussian noise (regression) or ``1 - logits`` vs the label."""
        if self.classification:
            return criterion(1.0 - pred, target)
        noise = (1.5 * torch.randn(pred.shape, device=pred.device, dtype=pred.dtype)).clamp(-3.0, 3.0)
        return criterion(pred, noise.view_as(target) if noise.numel() == target.numel() else noise)

    @torch.no_grad()
    def _modulate(self, uni_seq: list[torch.Tensor], target: torch.Tensor) -> None:
        """Dynamic gradient modulator: scale the prototype-map gradient column-wise by the imbalance weights."""
        b = uni_seq[0].shape[0]
        if self.classification:
            idx = target.long().view(b, 1, 1).expand(-1, uni_seq[0].shape[1], 1)
            deltas = [1.0 - torch.softmax(u, -1).gather(-1, idx).squeeze(-1) for u in uni_seq]
            valid = torch.ones(b, 1, device=target.device)
        else:
            y = target.reshape(b, -1)[:, :1].to(uni_seq[0].dtype)
            deltas = [(u[..., 0] - y).abs() for u in uni_seq]
            valid = (y != 0).to(y.dtype)
        for m in range(3):
            ws = []
            for n in OTHERS[m]:
                diff = (deltas[m] - deltas[n]) * valid
                total = diff.sum()
                ws.append(torch.where(total.abs() < 1e-8, torch.ones_like(diff), (total - diff) / total))
            w = (torch.stack(ws).mean(0) * valid).sum(0) / valid.sum(0).clamp_min(1.0)  # (S,)
            coef = w.clamp(0.0, 2.0).unsqueeze(0)
            view = self.pf1[m].proto_weight
            if view is not None and view.requires_grad:
                view.register_hook(lambda g, c=coef: g * c)
            self.pf1[m].proto_weight = None


def _abs_cos(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(x, y, dim=-1).abs().mean()


def _jsd(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """ComP's JSD on sigmoid activations: ``½Σ_d[p log(p/m) + q log(q/m)]``, mean over positions."""
    m = 0.5 * (p + q)
    terms = p * (p.clamp_min(1e-12).log() - m.clamp_min(1e-12).log()) + q * (
        q.clamp_min(1e-12).log() - m.clamp_min(1e-12).log())
    return 0.5 * terms.sum(-1).mean()


def disentangle_loss(shared: list[torch.Tensor], private: list[torch.Tensor]) -> torch.Tensor:
    """``L_dis``: per modality pair ``|cos(p_i,p_j)| + |cos(p_i,s_i)| + |cos(p_j,s_j)| + JSD(σ(s_i), σ(s_j))``."""
    total = shared[0].new_zeros(())
    for i, j in ((0, 1), (0, 2), (1, 2)):
        total = total + _abs_cos(private[i], private[j]) + _abs_cos(private[i], shared[i]) \
            + _abs_cos(private[j], shared[j]) + _jsd(shared[i].sigmoid(), shared[j].sigmoid())
    return total
