"""DCP (Hu et al., NeurIPS 2024) on the frozen MulT backbone: "DCP-on-MPLMM-backbone".

DCP prompts a frozen pretrained two-tower CLIP; here the towers are MulT's three per-modality memory (self-attention)
transformers, each of width 2d. One prompt set per missing case (7 MPLMM modes), ``n_prompt`` tokens per type:

* correlated: per-case initial prompts (3 towers); per layer ``l < J`` and tower, a generator
  ``LN(cat of the three towers' previous prompts) → Linear(6d → 6d/r) → GELU → Linear(→ 2d)``; they replace the
  first ``n_prompt`` tokens at every prompted layer;
* modal-common: a per-case latent ``(n, 2d)`` projected per tower by ``2d → 2d/r → 2d``, inserted at layer 0 and
  inherited;
* dynamic: per-case queries → 1-head attention over the tower's embedded input tokens at layer 0, inherited.

Layer-0 sequence: ``[correlated | common | dynamic | tokens]`` (MulT's causal mask lets every token see all prompts;
the readout is still the last time step). Missing inputs are zero-filled and the readout of a missing modality's
branch is zeroed before the head. With per-sample ``lengths`` (effective: 0 for a missing modality) the crossmodal
transformers and the memory loop hide padding steps (causal + padding mask, the prompt prefix always visible), the
dynamic prompts' attention gets a key padding mask (step 0 alone when no step is real), and the readout is at
``3n + max(L - 1, 0)``. After :meth:`DCP.load_pretrained_backbone` only the prompts, the input projections,
the memory transformers' final LayerNorms and the output layer train.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..config import option
from ..constants import LETTERS, MEMORY, N_MODES
from ..missing import apply_missing_torch
from .base import MissingModalityModel, register
from .lengths import effective_lengths, gather_steps, step_valid, with_fallback, zero_padding
from .mult import MulTBackbone, MulTConfig, transfer_backbone
from .peer_layers import present_flags
from .transformer import length_mask

N_CASES = N_MODES


def _generator(d_in: int, hidden: int, d_out: int, norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.LayerNorm(d_in)] if norm else []
    return nn.Sequential(*layers, nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))


@dataclass
class DCPConfig(MulTConfig):
    """DCP's keys: the MulT backbone's and the prompts' (the module docstring)."""

    n_prompt: int = option(4, "prompt tokens of each type (correlated, common, dynamic) per missing case", low=1)
    prompt_depth: int = option(6, "memory layers that get correlated prompts (at most their depth)", low=1)
    reduction: int = option(16, "hidden-width reduction of the prompt generators and projections", low=1)
    learn_dynamic_queries: bool = option(True, "the dynamic prompts' queries learn (false: fixed, as the released "
                                         "code's unregistered tensors)")
    zero_missing_readout: bool = option(True, "zero a missing modality's branch readout before the head")


@register("dcp")
class DCP(MissingModalityModel):
    """Deep correlated prompts (correlated, dynamic, modal-common) in the frozen MulT memory transformers."""

    config_class = DCPConfig
    uses_pretrained_backbone = True

    def __init__(self, dims, seq_lens, output_dim: int = 1, config: Optional[DCPConfig] = None) -> None:
        super().__init__(dims, seq_lens, output_dim, config)
        cfg = self.settings
        n_prompt, reduction = cfg.n_prompt, cfg.reduction
        self.backbone = MulTBackbone(tuple(dims), output_dim, cfg)
        self.n, self.zero_missing_readout = n_prompt, cfg.zero_missing_readout
        w = 2 * cfg.d
        mem_layers = len(self.backbone.trans_l_mem.layers)
        self.depth = max(1, min(cfg.prompt_depth, mem_layers))
        hid_corr, hid_common = max(8, 3 * w // reduction), max(8, w // reduction)
        self.corr_init = nn.Parameter(torch.randn(N_CASES, 3, n_prompt, w) * 0.02)
        self.corr_gen = nn.ModuleList(
            nn.ModuleList(_generator(3 * w, hid_corr, w, True) for _ in range(3)) for _ in range(self.depth))
        self.common = nn.Parameter(torch.randn(N_CASES, n_prompt, w) * 0.02)
        self.common_proj = nn.ModuleList(_generator(w, hid_common, w, False) for _ in range(3))
        queries = torch.randn(N_CASES, 3, n_prompt, w) * 0.02
        if cfg.learn_dynamic_queries:
            self.dyn_queries = nn.Parameter(queries)
        else:  # fixed but saved: the released code's unregistered tensors, made reproducible
            self.register_buffer("dyn_queries", queries)
        self.dyn_attn = nn.ModuleList(nn.MultiheadAttention(w, 1, batch_first=True) for _ in range(3))

    def correlated_prompts(self, modes: torch.Tensor) -> list[torch.Tensor]:
        """Per prompted layer, ``(B, 3, n, 2d)``: each tower's prompt generated from all towers' previous ones."""
        prev = self.corr_init[modes]
        b, _, n, w = prev.shape
        out = []
        for gens in self.corr_gen:
            joint = prev.permute(0, 2, 1, 3).reshape(b, n, 3 * w)
            prev = torch.stack([g(joint) for g in gens], dim=1)
            out.append(prev)
        return out

    def _memory(self, h: dict, modes: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Prompted memory transformers; readout per branch at the last step, or with ``lengths (B, 3)`` (effective)
        at ``3n + max(L - 1, 0)`` (the prompt prefix always counts, padding steps are hidden from every query)."""
        corr = self.correlated_prompts(modes)
        common = self.common[modes]
        reads = []
        for i, (name, m) in enumerate(MEMORY):
            enc = getattr(self.backbone, name)
            valid = None if lengths is None else step_valid(lengths[:, LETTERS.index(m)], h[m].shape[1])
            x = enc._embed(h[m], valid)
            ignore = None if valid is None else ~with_fallback(valid)
            dyn, _ = self.dyn_attn[i](self.dyn_queries[modes, i], x, x, key_padding_mask=ignore, need_weights=False)
            x = torch.cat([corr[0][:, i], self.common_proj[i](common), dyn, x], dim=1)
            prefix = x.shape[1] - h[m].shape[1]
            mask = None
            if valid is not None:
                full = torch.cat([valid.new_ones(valid.shape[0], prefix), valid], dim=1)
                mask = length_mask(full, full, enc.attn_mask, x.dtype)
            for layer_idx, layer in enumerate(enc.layers):
                if 0 < layer_idx < self.depth:
                    x = torch.cat([corr[layer_idx][:, i], x[:, self.n:]], dim=1)
                x, _ = layer(x, mask=mask)
            x = enc.layer_norm(x)
            if valid is None:
                reads.append(x[:, -1])
            else:
                reads.append(gather_steps(x, prefix + (lengths[:, LETTERS.index(m)] - 1).clamp_min(0))[:, 0])
        return torch.cat(reads, dim=-1)

    def forward(self, text, audio, vision, modes, frame_masks=None, lengths=None):
        modes = torch.as_tensor(modes, device=text.device).long()
        text, audio, vision = apply_missing_torch(text, audio, vision, modes, frame_masks)
        if lengths is not None:  # a missing modality has effective length 0; padding is zero-filled
            sizes = [x.shape[1] for x in (text, audio, vision)]
            lengths = effective_lengths(lengths, modes, sizes, text.device)
            text, audio, vision = zero_padding((text, audio, vision), lengths)
        xl, xa, xv = self.backbone.project(text, audio, vision)
        hcross, _ = self.backbone.crossmodal(xl, xa, xv, lengths=lengths)
        h = self._memory(hcross, modes, lengths)
        if self.zero_missing_readout:
            keep = present_flags(modes).repeat_interleave(h.shape[-1] // 3, dim=1)
            h = torch.where(keep, h, torch.zeros_like(h))
        return self.backbone.head(h)

    def load_pretrained_backbone(self, state_dict: dict, config: dict) -> dict:
        """Copy and freeze a ``mult`` checkpoint (MPLMM's transfer rule), then unfreeze the final memory norms."""
        report = transfer_backbone(self, state_dict, config)
        unfrozen = []
        for name, p in self.named_parameters():
            if name.startswith("backbone.trans_") and "_mem.layer_norm." in name:
                p.requires_grad_(True)
                unfrozen.append(name)
        report["unfrozen"] = unfrozen
        return report
