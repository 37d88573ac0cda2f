"""MPLMM prompt model (Guo, Jin, Zhao, ACL 2024) on a frozen MulT backbone — vectorised over the batch.

Parts (``docs/models.md``, "mplmm: the prompt model"):

* **Missing modality generation** — for a missing target ``t`` with available sources ``S``: per-source mappers
  ``GELU(Conv1d_k1(D_s → d))`` on the raw source features, concatenated along time after the generative prompt
  ``GP_t (P, d)``, then a temporal fuser ``GELU(Conv1d_k1(P + ΣL_s → L_t))`` mixes time steps; the missing-signal
  prompt ``P_MS^t`` is added. Available modalities: ``proj_s(x_s) + P_NMS^s``.
* **Missing-type prompts** — ``M_P[k] = Σ_x P_x^(k) m_x`` (``P_x^(k)`` = MS or NMS prompt by mode ``k``),
  ``T = P_MT @ M_P[mode]`` gives ``P`` tokens of width ``2d`` per branch, appended to each memory transformer; the
  readout is the output at the last prompt token.

Fixes over the released code (``docs/models.md``, "What the released MPLMM code gets wrong"):

* ``prompt_init="lora"`` (default): signal prompts ``N(0, 0.02²)``, ``m_x ~ N(0, 1/L_x)``, ``P_MT ~ N(0, 1/d)`` so
  the missing-type branch has a non-zero gradient from the first step; ``"zeros"`` reproduces the released code,
  whose missing-type prompts get exactly zero gradient forever (bug B1).
* ``gen_projection="conv"`` (default) passes generated modalities through a learnable 1×1 Conv1d(d → d), as the
  paper's figure draws; ``"bypass"`` reproduces the released code (generated features skip any projection).
* No Python loop over samples: each of the nine fusers runs once on the samples that need it.

Per-sample ``lengths`` (:mod:`mplmm.models.lengths`): a present modality's steps beyond its length are padding (raw
features zero-filled, hidden in every attention); the mapper outputs of a source's padding steps are zeroed before
the fusers; a generated modality has its full length ``T_t``. The missing-type tokens follow the real steps
(positions ``L+1..L+P``) and stay the readout. Fusers and prompts are sized by ``seq_lens``: MPLMM only accepts
those sequence lengths (``fixed_seq_lens``).

Ablation switches (the paper's ablations; all true = the full model):

* ``generative_prompts=False`` — no generative prompt ``GP_t``: the fusers see only the mapped sources
  (``ΣL_s`` input channels instead of ``P + ΣL_s``);
* ``signal_prompts=False`` — the missing-signal / non-missing-signal prompts are no longer added to the inputs
  (generated and projected features go to the backbone as they are). While ``type_prompts`` is on, the same
  parameters still form ``M_P = Σ_x P_x m_x`` (as factors only), so the missing-type prompts stay mode-aware;
* ``type_prompts=False`` — no missing-type prompts (no ``P_MT``, no ``m_x``): nothing is appended to the memory
  transformers and the readout is their last time step, as in MulT;
* ``prompt_length`` — ``P``, the number of generative and missing-type prompt tokens.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import option
from ..constants import LETTERS, MODALITIES, MODE_PRESENT, N_MODES, PRESENT_ROWS
from ..errors import ConfigError
from .base import MissingModalityModel, register
from .lengths import clamp_lengths, effective_lengths, valid_masks, zero_fill
from .mult import MulTBackbone, MulTConfig, conv1x1_time_last, transfer_backbone

MODS = LETTERS
#: for each target modality, the available-source combinations used by the fusers, in the reference's order
FUSER_SOURCES: dict[str, tuple[str, ...]] = {"l": ("a", "v", "av"), "a": ("l", "v", "lv"), "v": ("a", "l", "al")}
_IDX = {m: i for i, m in enumerate(MODS)}
#: mode -> per-target tuple of source letters used to generate it ("" = present)
_GEN_SOURCES: dict[int, dict[str, str]] = {}
for _mode, _present in MODE_PRESENT.items():
    _avail = "".join(m for m, p in zip(MODS, _present) if p)
    _GEN_SOURCES[_mode] = {m: ("" if p else _avail) for m, p in zip(MODS, _present)}


#: (3, 7): for target l, a, v and mode k, the index in ``FUSER_SOURCES[target]`` of the sources it is generated from
#: (-1: the target is present)
_COMBO_INDEX: list[list[int]] = [
    [next((c for c, src in enumerate(FUSER_SOURCES[t]) if sorted(src) == sorted(_GEN_SOURCES[k][t])), -1)
     for k in range(N_MODES)]
    for t in MODS
]
#: None: generate missing modalities without host syncs on accelerators (every fuser on the whole batch, rows picked
#: with ``torch.where``) and only for the rows that need them on CPU (index selection, which reads row counts on the
#: host). True/False force one way on every device (tests compare both on CPU).
MASKED_GENERATION: Optional[bool] = None


def masked_generation(device: torch.device) -> bool:
    """Whether :meth:`MPLMM.complete_inputs` uses the sync-free masked path on ``device``."""
    return device.type != "cpu" if MASKED_GENERATION is None else MASKED_GENERATION

#: order in which source features are concatenated after the generative prompt (docs/models.md, generation step 2)
CONCAT_ORDER: dict[str, str] = {"l": "av", "a": "lv", "v": "la"}


class MLPLayer(nn.Module):
    """``GELU(Conv1d(in, out, kernel_size=1))`` acting on ``(B, in, T)``."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim_in, dim_out, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.conv(x))

    def time_last(self, x: torch.Tensor) -> torch.Tensor:
        """The same layer on ``(B, T, in)`` → ``(B, T, out)`` (a linear map over the last axis)."""
        return F.gelu(conv1x1_time_last(self.conv, x))


@dataclass
class MPLMMConfig(MulTConfig):
    """MPLMM's keys: the MulT backbone's, the prompts and the ablation switches (the module docstring)."""

    prompt_length: int = option(16, "P: generative and missing-type prompt tokens", low=1)
    prompt_init: str = option("lora", "prompt initialisation: lora (missing-type prompts learn) or zeros (the "
                              "released code: missing-type prompts stay zero)", choices=("lora", "zeros"))
    gen_projection: str = option("conv", "generated modalities through a learnable Conv1d as in the paper figure "
                                 "(conv) or bypassing it as the released code (bypass)", choices=("conv", "bypass"))
    frozen_dropout: bool = option(False, "keep dropout active inside the frozen backbone (as the reference)",
                                  flag=False)
    generative_prompts: bool = option(True, "ablation switch: the generative prompts GP_t", flag=False)
    signal_prompts: bool = option(True, "ablation switch: the missing-signal / non-missing-signal prompts added to "
                                  "the inputs", flag=False)
    type_prompts: bool = option(True, "ablation switch: the missing-type prompts appended to the memory "
                                "transformers", flag=False)


@register("mplmm")
class MPLMM(MissingModalityModel):
    """MPLMM prompt model; ``load_pretrained_backbone`` copies and freezes a ``mult`` checkpoint."""

    inputs_only_through_projections = True
    fixed_seq_lens = True  # fusers and prompts are sized by the configured sequence lengths
    config_class = MPLMMConfig
    uses_pretrained_backbone = True

    def __init__(self, dims, seq_lens, output_dim: int = 1, config: Optional[MPLMMConfig] = None) -> None:
        super().__init__(dims, seq_lens, output_dim, config)
        cfg = self.settings
        generative_prompts, signal_prompts, type_prompts = cfg.generative_prompts, cfg.signal_prompts, cfg.type_prompts
        d, P = cfg.d, cfg.prompt_length
        self.d, self.P = d, P
        self.use_gen, self.use_signal, self.use_type = generative_prompts, signal_prompts, type_prompts
        gen_len = P if generative_prompts else 0  # generative prompt tokens ahead of the sources in a fuser
        self.seq = dict(zip(MODS, (int(t) for t in seq_lens)))
        dim = dict(zip(MODS, (int(x) for x in dims)))
        self.backbone = MulTBackbone(tuple(dims), output_dim, cfg)
        # generative prompts (3, d, P), mappers and fusers
        if generative_prompts:
            self.generative_prompt = nn.Parameter(torch.zeros(3, d, P))
        self.mappers = nn.ModuleDict({f"{s}2{t}": MLPLayer(dim[s], d) for t in MODS for s in MODS if s != t})
        self.fusers = nn.ModuleDict()
        for t, combos in FUSER_SOURCES.items():
            for src in combos:
                self.fusers[f"{t}_{src}p"] = MLPLayer(gen_len + sum(self.seq[s] for s in src), self.seq[t])
        if cfg.gen_projection == "conv":
            self.gen_proj = nn.ModuleDict({m: nn.Conv1d(d, d, kernel_size=1, bias=False) for m in MODS})
        # missing-signal / non-missing-signal prompts (d, L_x), missing-type prompts and M_P factors
        if signal_prompts or type_prompts:
            self.prompt_m = nn.ParameterDict({m: nn.Parameter(torch.zeros(d, self.seq[m])) for m in MODS})
            self.prompt_nm = nn.ParameterDict({m: nn.Parameter(torch.zeros(d, self.seq[m])) for m in MODS})
        if type_prompts:
            self.missing_type_prompt = nn.Parameter(torch.zeros(3, P, d))
            self.m = nn.ParameterDict({m: nn.Parameter(torch.zeros(self.seq[m], 2 * d)) for m in MODS})
        if cfg.prompt_init == "lora":
            with torch.no_grad():
                for m in MODS if (signal_prompts or type_prompts) else ():
                    self.prompt_m[m].normal_(0, 0.02)
                    self.prompt_nm[m].normal_(0, 0.02)
                if type_prompts:
                    for m in MODS:
                        self.m[m].normal_(0, 1 / math.sqrt(self.seq[m]))
                    self.missing_type_prompt.normal_(0, 1 / math.sqrt(d))
        present = torch.tensor(PRESENT_ROWS, dtype=torch.bool)  # (7, 3)
        self.register_buffer("present_table", present, persistent=False)
        self.register_buffer("combo_index", torch.tensor(_COMBO_INDEX), persistent=False)  # (3, 7)

    # -- MulT-style attribute access for interpretation code (proj_l, trans_l_mem, ...)
    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("backbone"), name)

    def load_pretrained_backbone(self, state_dict: dict, config: dict) -> dict:
        """Copy a ``mult`` state dict (minus projections and output layer) and freeze it (``docs/models.md``)."""
        return transfer_backbone(self, state_dict, config)

    # -- prompts ---------------------------------------------------------------------------------------------------
    def mode_matrices(self) -> torch.Tensor:
        """``M_P`` for the seven modes, ``(7, d, 2d)``."""
        terms = []
        for i, m in enumerate(MODS):
            a_miss = self.prompt_m[m] @ self.m[m]  # (d, 2d)
            a_pres = self.prompt_nm[m] @ self.m[m]
            flags = self.present_table[:, i].view(N_MODES, 1, 1)
            terms.append(torch.where(flags, a_pres, a_miss))
        return terms[0] + terms[1] + terms[2]

    def missing_type_tokens(self, modes: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per branch l, a, v: the ``P`` appended tokens ``(B, P, 2d)``."""
        if not self.use_type:
            raise ConfigError("this mplmm has no missing-type prompts (model key type_prompts=false)")
        per_mode = torch.einsum("jpd,kde->kjpe", self.missing_type_prompt, self.mode_matrices())  # (7, 3, P, 2d)
        tokens = per_mode[modes]  # (B, 3, P, 2d)
        return tokens[:, 0], tokens[:, 1], tokens[:, 2]

    # -- missing modality generation --------------------------------------------------------------------------------
    def complete_inputs(self, text, audio, vision, modes, frame_masks: Optional[dict] = None,
                        lengths: Optional[torch.Tensor] = None):
        """Inputs of the crossmodal transformers ``(B, L_x, d)`` for l, a, v: generated where missing.

        ``lengths (B, 3)``: raw steps beyond a modality's (effective) length are zero-filled, and the mapper outputs
        there are zeroed before the temporal fusers, so that padding never reaches a generated modality."""
        raw = dict(zip(MODS, (text, audio, vision)))
        if frame_masks is not None:
            for m, key in zip(MODS, MODALITIES):
                if key in frame_masks:
                    raw[m] = raw[m] * frame_masks[key].unsqueeze(-1).to(raw[m].dtype)
        valid = None
        if lengths is not None:
            eff = effective_lengths(lengths, modes, [raw[m].shape[1] for m in MODS], text.device)
            valid = dict(zip(MODS, valid_masks(eff, [raw[m].shape[1] for m in MODS])))
            raw = {m: zero_fill(raw[m], valid[m]) for m in MODS}
        raw["l"] = F.dropout(raw["l"], self.backbone.embed_dropout, self.training)
        masked = masked_generation(modes.device)
        present = self.present_table[modes]  # (B, 3)
        out = {}
        for i, t in enumerate(MODS):
            proj = getattr(self.backbone, f"proj_{t}")
            x = conv1x1_time_last(proj, raw[t])  # (B, L_t, d)
            if self.use_signal:
                x = x + self.prompt_nm[t].T
            if masked:
                out[t] = self._generate_masked(t, raw, self.combo_index[i][modes], x, valid)
                continue
            missing_idx = (~present[:, i]).nonzero().squeeze(1)
            if missing_idx.numel():
                x = x.index_copy(0, missing_idx, self._generate(t, raw, modes, missing_idx, valid))
            out[t] = x
        return tuple(out[m] for m in MODS)

    def sequence_lengths(self, lengths: torch.Tensor, modes: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        """Real steps ``(B, 3)`` of the completed sequences: the clamped length of a present modality, the full
        ``T_t`` of a generated one."""
        lengths = torch.as_tensor(lengths, device=self.present_table.device)
        return clamp_lengths(torch.where(self.present_table[modes], lengths, max(sizes)), sizes)  # missing: T_t

    def _map(self, s: str, t: str, raw: dict, valid: Optional[dict], rows: Optional[torch.Tensor] = None):
        """Mapper ``s→t`` on source ``s`` (rows ``rows`` only, when given) ``(n, L_s, d)``; zero at the source's
        padding steps when ``valid`` (per-modality step validity) is given."""
        x = raw[s] if rows is None else raw[s][rows]
        mapped = self.mappers[f"{s}2{t}"].time_last(x)
        if valid is None:
            return mapped
        return zero_fill(mapped, valid[s] if rows is None else valid[s][rows])

    def _fuse(self, t: str, combo: str, mapped: list[torch.Tensor]) -> torch.Tensor:
        """Generated features ``(n, L_t, d)`` of ``t`` from the mapped sources of ``combo`` ``[(n, L_s, d), ...]``."""
        if self.use_gen:
            prompt = self.generative_prompt[_IDX[t]].T.unsqueeze(0).expand(mapped[0].shape[0], self.P, self.d)
            mapped = [prompt, *mapped]
        seq = torch.cat(mapped, dim=1)  # (n, P + ΣL_s, d): time steps are the fuser's input channels
        fused = self.fusers[f"{t}_{combo}p"](seq)  # (n, L_t, d)
        if self.config["gen_projection"] == "conv":
            fused = conv1x1_time_last(self.gen_proj[t], fused)
        return fused + self.prompt_m[t].T if self.use_signal else fused

    def _generate(self, t: str, raw: dict, modes: torch.Tensor, idx: torch.Tensor,
                  valid: Optional[dict] = None) -> torch.Tensor:
        """Generated features ``(len(idx), L_t, d)`` of target ``t`` for samples ``idx`` (all missing ``t``)."""
        which = self.combo_index[_IDX[t]][modes[idx]]  # (n,) fuser of each row
        result = torch.empty(idx.numel(), self.seq[t], self.d, dtype=raw[t].dtype, device=raw[t].device)
        for c, combo in enumerate(FUSER_SOURCES[t]):
            sel = (which == c).nonzero().squeeze(1)
            if not sel.numel():
                continue
            rows = idx[sel]
            mapped = [self._map(s, t, raw, valid, rows) for s in CONCAT_ORDER[t] if s in combo]
            result = result.index_copy(0, sel, self._fuse(t, combo, mapped))
        return result

    def _generate_masked(self, t: str, raw: dict, which: torch.Tensor, x: torch.Tensor,
                         valid: Optional[dict] = None) -> torch.Tensor:
        """``x`` with every row whose fuser index ``which`` is >= 0 replaced by generated features, without host
        syncs: each mapper and fuser runs on the whole batch and ``torch.where`` keeps the rows that use it."""
        mapped = {s: self._map(s, t, raw, valid) for s in CONCAT_ORDER[t]}
        for c, combo in enumerate(FUSER_SOURCES[t]):
            gen = self._fuse(t, combo, [mapped[s] for s in CONCAT_ORDER[t] if s in combo])
            x = torch.where((which == c).view(-1, 1, 1), gen, x)
        return x

    def forward(self, text, audio, vision, modes, frame_masks=None, lengths=None, need_weights: bool = False):
        xl, xa, xv = self.complete_inputs(text, audio, vision, modes, frame_masks, lengths)
        tokens = self.missing_type_tokens(modes) if self.use_type else None
        if lengths is not None:
            lengths = self.sequence_lengths(lengths, modes, [x.shape[1] for x in (text, audio, vision)])
        enc = self.backbone.encode(xl, xa, xv, extra_tokens=tokens, need_weights=need_weights, lengths=lengths)
        if need_weights:
            h, attn = enc
            return self.backbone.head(h), attn
        return self.backbone.head(enc)
