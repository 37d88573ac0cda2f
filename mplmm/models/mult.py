"""MulT backbone (Tsai et al., ACL 2019) as used by MPLMM (``docs/models.md``, "mult: the MulT backbone").

1×1 temporal conv projections (bias-free) → six crossmodal transformers (l←a, l←v, a←l, a←v, v←l, v←a) → three
self-attention memory transformers on the concatenated crossmodal outputs → last-step readout → residual head.
With per-sample ``lengths`` (:mod:`mplmm.models.lengths`) every attention hides padding steps, positions count real
steps, and the memory transformers read out the last real step ``max(L - 1, 0)`` (the last appended token when there
are any).
The plain ``mult`` model reads every modality: it is the pre-training model on complete data (like the reference,
it ignores ``modes``; use ``mult_zero`` for a baseline under missingness).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..config import option
from ..constants import CROSSMODAL, LETTERS, MEMORY
from .base import MissingModalityModel, check_heads, register
from .lengths import clamp_lengths, gather_steps, last_valid_index, step_valid, valid_masks, zero_padding
from .transformer import TransformerEncoder

#: pretrained keys that are re-initialised on transfer (as in MPLMM's ``transfer_model``)
TRANSFER_EXCLUDE: tuple[str, ...] = tuple(f"backbone.{k}" for k in (
    "proj_l.weight", "proj_a.weight", "proj_v.weight", "out_layer.weight", "out_layer.bias"))

#: dropout rates: [0, 1)
DROPOUT = dict(low=0.0, high=1.0, high_open=True)


@dataclass
class MulTConfig:
    """The MulT backbone's keys: the config of ``mult``, ``mult_zero`` and ``mult_dropout``, and the base of
    :class:`~mplmm.models.mplmm.MPLMMConfig` and :class:`~mplmm.models.dcp.DCPConfig`."""

    d: int = option(30, "transformer width: the projections' output (the memory transformers have 2d)",
                    aliases=("proj_dim", "prompt_dim"), low=1)
    num_heads: int = option(5, "attention heads of every transformer (a divisor of d)", low=1)
    layers: int = option(5, "layers of each crossmodal transformer (the memory transformers have max(layers, 3))",
                         aliases=("nlevels",), low=1)
    attn_dropout: float = option(0.1, "attention dropout where text is the source, and in the memory transformers",
                                 **DROPOUT)
    attn_dropout_a: float = option(0.1, "attention dropout where audio is the source", **DROPOUT)
    attn_dropout_v: float = option(0.1, "attention dropout where vision is the source", **DROPOUT)
    relu_dropout: float = option(0.1, "feed-forward dropout", **DROPOUT)
    res_dropout: float = option(0.1, "residual dropout", **DROPOUT)
    embed_dropout: float = option(0.25, "embedding dropout (the text input; every transformer's input)", **DROPOUT)
    out_dropout: float = option(0.1, "dropout in the residual output head", **DROPOUT)
    attn_mask: bool = option(True, "MulT's offset causal attention mask")

    def cross_check(self, where: str) -> None:
        """``num_heads`` divides ``d`` (and so ``2d``, the memory transformers' width)."""
        check_heads(where, self.d, self.num_heads)


#: config keys that must agree between a pretrained backbone and the model it is transferred into
BACKBONE_KEYS = ("d", "num_heads", "layers")


class MulTBackbone(nn.Module):
    """Projections, crossmodal and memory transformers and the residual head (shared by mult, mplmm, dcp, ...)."""

    def __init__(self, dims: tuple[int, int, int], output_dim: int, cfg: MulTConfig) -> None:
        super().__init__()
        d = cfg.d
        self.d, self.embed_dropout, self.out_dropout = d, cfg.embed_dropout, cfg.out_dropout
        d_l, d_a, d_v = dims
        self.proj_l = nn.Conv1d(d_l, d, kernel_size=1, bias=False)
        self.proj_a = nn.Conv1d(d_a, d, kernel_size=1, bias=False)
        self.proj_v = nn.Conv1d(d_v, d, kernel_size=1, bias=False)
        # attention dropout is chosen by the SOURCE modality (docs/models.md, the MulT backbone, item 2)
        src_dropout = {"l": cfg.attn_dropout, "a": cfg.attn_dropout_a, "v": cfg.attn_dropout_v}
        common = dict(num_heads=cfg.num_heads, layers=cfg.layers, relu_dropout=cfg.relu_dropout,
                      res_dropout=cfg.res_dropout, embed_dropout=cfg.embed_dropout, attn_mask=cfg.attn_mask)
        for name, _tgt, src in CROSSMODAL:
            self.add_module(name, TransformerEncoder(d, attn_dropout=src_dropout[src], **common))
        for name, _branch in MEMORY:
            # MulT asks for 3 layers but max(layers, 3) is used: the memory depth equals ``layers`` when >= 3
            mem = dict(common, layers=max(cfg.layers, 3))
            self.add_module(name, TransformerEncoder(2 * d, attn_dropout=cfg.attn_dropout, **mem))
        combined = 6 * d
        self.proj1 = nn.Linear(combined, combined)
        self.proj2 = nn.Linear(combined, combined)
        self.out_layer = nn.Linear(combined, output_dim)

    def project(self, text: torch.Tensor, audio: torch.Tensor, vision: torch.Tensor):
        """Text embedding dropout + 1×1 conv projections; returns ``(B, T_x, d)`` for l, a, v."""
        text = F.dropout(text, self.embed_dropout, self.training)
        return tuple(conv1x1_time_last(p, x)
                     for p, x in ((self.proj_l, text), (self.proj_a, audio), (self.proj_v, vision)))

    def crossmodal(self, xl: torch.Tensor, xa: torch.Tensor, xv: torch.Tensor, need_weights: bool = False,
                   lengths: Optional[torch.Tensor] = None):
        """Six crossmodal transformers; returns ``{l,a,v: (B, T_x, 2d)}`` and the attention weights (if asked).
        ``lengths (B, 3)``: real steps of l, a, v (effective and clamped); None = every step counts."""
        x = dict(zip(LETTERS, (xl, xa, xv)))
        valid = {} if lengths is None else dict(zip(LETTERS, valid_masks(lengths, [t.shape[1] for t in x.values()])))
        out, attn = {}, {}
        for name, tgt, src in CROSSMODAL:
            out[name], attn[name] = getattr(self, name)(x[tgt], x[src], need_weights=need_weights,
                                                        valid=valid.get(tgt), valid_k=valid.get(src))
        h = {m: torch.cat([out[name] for name, tgt, _src in CROSSMODAL if tgt == m], dim=-1) for m in LETTERS}
        return h, attn

    def memory(self, h: dict, extra_tokens: Optional[tuple] = None, need_weights: bool = False,
               lengths: Optional[torch.Tensor] = None):
        """Memory transformers (optionally with appended tokens ``(B, P, 2d)`` per branch) and their readout.

        Without ``lengths`` the readout is the last step. With ``lengths (B, 3)`` the first ``lengths[b, j]`` steps
        of branch ``j`` are real, the appended tokens always count (positions ``L+1..L+P``), and the readout is the
        last valid step: the last token, else step ``max(L - 1, 0)``.
        """
        reads, attn = [], {}
        for i, (name, m) in enumerate(MEMORY):
            seq = h[m] if extra_tokens is None else torch.cat([h[m], extra_tokens[i]], dim=1)
            valid = None
            if lengths is not None:
                valid = step_valid(lengths[:, LETTERS.index(m)], h[m].shape[1])
                if extra_tokens is not None:
                    valid = torch.cat([valid, valid.new_ones(extra_tokens[i].shape[:2])], dim=1)
            y, attn[name] = getattr(self, name)(seq, need_weights=need_weights, last_only=not need_weights,
                                                valid=valid)
            if valid is not None and need_weights:
                y = gather_steps(y, last_valid_index(valid))
            reads.append(y[:, -1])
        return torch.cat(reads, dim=-1), attn

    def encode(self, xl, xa, xv, extra_tokens: Optional[tuple] = None, need_weights: bool = False,
               lengths: Optional[torch.Tensor] = None):
        """Crossmodal + memory transformers → ``(B, 6d)``; with ``need_weights`` also a dict of weights.
        ``lengths (B, 3)``: real steps of ``xl, xa, xv`` (see :meth:`memory`)."""
        h, a1 = self.crossmodal(xl, xa, xv, need_weights, lengths)
        out, a2 = self.memory(h, extra_tokens, need_weights, lengths)
        return (out, {**a1, **a2}) if need_weights else out

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Residual head ``out(proj2(drop(relu(proj1(h)))) + h)``."""
        y = self.proj2(F.dropout(F.relu(self.proj1(h)), self.out_dropout, self.training)) + h
        return self.out_layer(y)


def conv1x1_time_last(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``conv`` (kernel size 1) applied to ``x (B, T, C_in)`` → ``(B, T, C_out)``: the same weights as a linear map,
    without the two transposes (and copies) a Conv1d on ``(B, C, T)`` would need. When hooks are registered on
    ``conv`` (Captum's layer attributions, user hooks) the module itself is called so that they fire."""
    if conv._forward_hooks or conv._forward_pre_hooks:
        return conv(x.transpose(1, 2)).transpose(1, 2)
    return F.linear(x, conv.weight.squeeze(-1), conv.bias)


def transfer_backbone(model: nn.Module, state_dict: dict, pretrained_config: dict,
                      exclude: tuple[str, ...] = TRANSFER_EXCLUDE, freeze: bool = True) -> dict:
    """Copy a pretrained MulT state dict into ``model`` (keys present in both, minus ``exclude``) and freeze them.

    Raises ``ValueError`` naming the key when the backbone sizes differ. Returns ``{"copied", "skipped"}``.
    """
    mine = getattr(model, "config", {})
    for k in BACKBONE_KEYS:
        if k in pretrained_config and k in mine and pretrained_config[k] != mine[k]:
            raise ValueError(f"pretrained backbone has {k}={pretrained_config[k]} but the model has {k}={mine[k]}; "
                             f"prompt tuning needs the same backbone sizes")
    own = dict(model.named_parameters())
    own_state = model.state_dict()
    copied, skipped = [], []
    with torch.no_grad():
        for key, value in state_dict.items():
            if key in exclude or key not in own_state:
                skipped.append(key)
                continue
            if own_state[key].shape != value.shape:
                raise ValueError(f"pretrained key {key!r} has shape {tuple(value.shape)}, "
                                 f"model expects {tuple(own_state[key].shape)}")
            own_state[key].copy_(value)
            copied.append(key)
            if freeze and key in own:
                own[key].requires_grad_(False)
    if not copied:
        raise ValueError("no pretrained key matches the model: is this a MulT checkpoint?")
    return {"copied": copied, "skipped": skipped}


@register("mult")
class MulT(MissingModalityModel):
    """Plain MulT on complete data (pre-training model). ``modes`` are ignored, as in the reference."""

    reads_modes = False
    inputs_only_through_projections = True

    config_class = MulTConfig

    def __init__(self, dims, seq_lens, output_dim: int = 1, config: Optional[MulTConfig] = None) -> None:
        super().__init__(dims, seq_lens, output_dim, config)
        self.backbone = MulTBackbone(tuple(dims), output_dim, self.settings)

    # The backbone's submodules are exposed under MulT's original names (proj_l, trans_l_with_a, ...)
    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            backbone = super().__getattr__("backbone")
            return getattr(backbone, name)

    def forward(self, text, audio, vision, modes=None, frame_masks=None, lengths=None, need_weights: bool = False):
        """Prediction ``(B, output_dim)`` (and the attention weights with ``need_weights``). ``lengths (B, 3)``:
        real steps per modality (clamped; steps beyond are zero-filled and never read); ``modes`` and
        ``frame_masks`` are ignored, as in the reference."""
        if lengths is not None:
            lengths = clamp_lengths(lengths, [x.shape[1] for x in (text, audio, vision)], text.device)
            text, audio, vision = zero_padding((text, audio, vision), lengths)
        xl, xa, xv = self.backbone.project(text, audio, vision)
        enc = self.backbone.encode(xl, xa, xv, need_weights=need_weights, lengths=lengths)
        if need_weights:
            h, attn = enc
            return self.backbone.head(h), attn
        return self.backbone.head(enc)
