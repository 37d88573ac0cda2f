"""Attributions with Captum: which modality, and which time steps, a prediction rests on.

:func:`modality_importance` (feature ablation, one group per modality, per missing mode), :func:`timestep_attributions`
(Integrated Gradients on the projection layers ``proj_l/a/v`` or one-time-step occlusion; per-modality ``(B, T_m)``
relevance) and :func:`attribution_summary` (dataset-level mean ``|attribution|``). The forward wrapper only takes
tensors (``modes`` travels as a tensor in ``additional_forward_args``); the target is output 0 for regression and
the predicted class for classification.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..constants import LETTERS, MODALITIES, MODE_NAMES, MODE_PRESENT, N_MODES
from ..errors import ConfigError
from ..missing import PRESENT_TABLE
from .common import Batch, batch_parts, batches, effective_modes_tensor, eval_mode, model_device, model_name, modes_list

ATTRIBUTION_METHODS = ("ig", "occlusion")
#: scale of the near-zero input used as IG's effective baseline in the completeness check (see timestep_attributions)
BASELINE_EPS = 1e-6


def _target(model: nn.Module, batch: Batch, modes: torch.Tensor, lengths: Optional[torch.Tensor] = None):
    """Captum target: 0 for one output (regression), the predicted class per sample otherwise."""
    with torch.no_grad():
        out = model(*batch, modes, *(() if lengths is None else (lengths,)))
    if out.dim() == 1 or out.shape[-1] == 1:
        return 0
    return out.argmax(dim=-1)


def _select(out: torch.Tensor, target) -> torch.Tensor:
    """``(B,)`` outputs at ``target`` (an int column or one class per sample)."""
    if isinstance(target, int):
        return out[:, target]
    return out.gather(1, target.view(-1, 1)).squeeze(1)


class ForwardWrapper(nn.Module):
    """``f(text, audio, vision, modes[, lengths]) -> (B, output_dim)``: tensors only, for Captum (modes and lengths
    travel in ``additional_forward_args``, which Captum expands with the batch)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, text: torch.Tensor, audio: torch.Tensor, vision: torch.Tensor,
                modes: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        from ..evaluate import run_model

        out = run_model(self.model, (text, audio, vision), modes, None, lengths)
        return out.unsqueeze(-1) if out.dim() == 1 else out


def _extra_args(modes: torch.Tensor, lengths: Optional[torch.Tensor]) -> tuple:
    """Captum's ``additional_forward_args``: the modes, and the lengths when the data records them."""
    return (modes,) if lengths is None else (modes, lengths)


def modality_importance(model: nn.Module, ds, split: str = "test", modes: Iterable[int] = range(N_MODES),
                        n_samples: Optional[int] = None, batch_size: int = 64, baseline: float = 0.0,
                        per_sample: bool = False, indices: Optional[Sequence[int]] = None) -> pd.DataFrame:
    """Feature ablation with one group per modality (Captum ``FeatureAblation``), each sample forced into each mode
    it can run in (a sample lacking one of a mode's modalities is left out of that mode's rows: ``n`` counts the
    others). ``indices``: the rows of ``split`` to use (else the first ``n_samples``).

    Attribution of a modality = ``f(x) - f(x with that modality set to baseline)`` for the model's output (regression)
    or the predicted class (classification). A modality the model does not read in that mode gets exactly 0. One row
    per mode × modality: ``importance`` (mean signed), ``abs_importance`` (mean ``|·|``), ``share`` (of the mode's total
    ``|·|``), ``present`` and ``n``; with ``per_sample`` one row per sample instead (``sample``, ``importance``).
    """
    from captum.attr import FeatureAblation

    dev = model_device(model)
    modes = modes_list(modes)
    fwd = ForwardWrapper(model)
    fa = FeatureAblation(fwd)
    records: list[tuple[int, int, np.ndarray, np.ndarray]] = []  # (mode, modality, attributions, sample idx)
    with eval_mode(model):
        for mode in modes:
            for idx, batch in batches(ds, split, n_samples, batch_size, dev, indices, mode):
                m = effective_modes_tensor(mode, batch, dev)
                lengths = batch.lengths
                masks = tuple(torch.full((1, 1, 1), i, dtype=torch.long, device=dev) for i in range(3))
                masks = tuple(mk.expand(1, x.shape[1], x.shape[2]) for mk, x in zip(masks, batch))
                attr = fa.attribute(tuple(batch), baselines=(baseline,) * 3, target=_target(fwd, batch, m, lengths),
                                    additional_forward_args=_extra_args(m, lengths), feature_mask=masks,
                                    perturbations_per_eval=3)
                reads = PRESENT_TABLE[m.cpu().numpy()]  # (B, 3): what each sample's mode reads
                for i, a in enumerate(attr):  # exactly 0 where unread (the batched passes differ in the last bits)
                    records.append((mode, i, np.where(reads[:, i], a[:, 0, 0].detach().cpu().numpy(), 0.0), idx))
    if per_sample:
        rows = [dict(mode=mode, mode_name=MODE_NAMES[mode], modality=MODALITIES[i], present=MODE_PRESENT[mode][i],
                     sample=int(s), importance=float(v))
                for mode, i, vals, idx in records for s, v in zip(idx, vals)]
        return pd.DataFrame(rows)
    grouped: dict[tuple[int, int], list[np.ndarray]] = {(mode, i): [] for mode in modes for i in range(3)}
    for mode, i, vals, _ in records:
        grouped[(mode, i)].append(vals)
    rows = []
    for (mode, i), parts in grouped.items():
        v = np.concatenate(parts) if parts else np.zeros(0)  # no sample has this mode's modalities: n = 0
        if not v.size:
            rows.append(dict(mode=mode, mode_name=MODE_NAMES[mode], modality=MODALITIES[i],
                             present=MODE_PRESENT[mode][i], importance=0.0, abs_importance=0.0, std=0.0, n=0))
            continue
        rows.append(dict(mode=mode, mode_name=MODE_NAMES[mode], modality=MODALITIES[i],
                         present=MODE_PRESENT[mode][i], importance=float(v.mean()),
                         abs_importance=float(np.abs(v).mean()), std=float(v.std()), n=int(v.size)))
    frame = pd.DataFrame(rows)
    total = frame.groupby("mode")["abs_importance"].transform("sum")
    frame["share"] = np.where(total > 0, frame["abs_importance"] / total.where(total > 0, 1.0), 0.0)
    return frame.sort_values(["mode", "modality"], key=lambda c: c.map({n: i for i, n in enumerate(MODALITIES)})
                             if c.name == "modality" else c).reset_index(drop=True)


def projection_layers(model: nn.Module) -> list[nn.Module]:
    """The per-modality input projections ``[proj_l, proj_a, proj_v]`` (MulT-based models)."""
    layers = [getattr(model, f"proj_{m}", None) for m in LETTERS]
    if any(layer is None for layer in layers):
        raise NotImplementedError(f"method 'ig' attributes to the projection layers proj_l/proj_a/proj_v, which model "
                                  f"{model_name(model)!r} does not have; use method='occlusion'")
    return layers  # type: ignore[return-value]


@contextlib.contextmanager
def hookable_projections(layers: Sequence[nn.Module]) -> Iterator[None]:
    """Make calls to ``layers`` go through ``Module.__call__`` so forward hooks (Captum's layer methods) see them.

    The MulT/MPLMM models apply their 1×1 projections as ``conv1x1_time_last(conv, x)`` (``F.linear`` on the
    weights, no module call, so no hook fires). For the block, every ``mplmm.models.*`` module's
    ``conv1x1_time_last`` is swapped for a version that calls the module itself when it is one of ``layers``
    (numerically the same map); the originals are restored afterwards.
    """
    import sys

    wanted = {id(layer) for layer in layers}
    patched = []
    for name, mod in list(sys.modules.items()):
        fn = getattr(mod, "conv1x1_time_last", None) if name.startswith("mplmm.models") else None
        if fn is None or getattr(fn, "_mplmm_hookable", False):
            continue

        def via_module(conv: nn.Module, x: torch.Tensor, _orig=fn) -> torch.Tensor:
            if id(conv) in wanted:
                return conv(x.transpose(1, 2)).transpose(1, 2)
            return _orig(conv, x)

        via_module._mplmm_hookable = True  # type: ignore[attr-defined]
        mod.conv1x1_time_last = via_module
        patched.append((mod, fn))
    try:
        yield
    finally:
        for mod, fn in patched:
            mod.conv1x1_time_last = fn


def _per_step(layer: nn.Module, attr: torch.Tensor, t_len: int) -> torch.Tensor:
    """Sum a layer attribution over its feature axis → ``(B, T)``."""
    if isinstance(layer, nn.Conv1d):  # (B, d, T)
        return attr.sum(dim=1)
    if attr.dim() == 3 and attr.shape[1] == t_len:  # (B, T, d)
        return attr.sum(dim=-1)
    return attr.sum(dim=1)


def timestep_attributions(model: nn.Module, batch: Batch, modes: Union[int, Sequence[int], torch.Tensor],
                          method: str = "ig", n_steps: int = 16, internal_batch_size: Optional[int] = None,
                          perturbations_per_eval: int = 8, return_delta: bool = False):
    """Per-modality, per-time-step relevance ``{"text": (B, T_l), "audio": (B, T_a), "vision": (B, T_v)}``.

    * ``"ig"``: ``LayerIntegratedGradients`` on the three projection layers ``proj_l/a/v`` (zero baseline, so the
      baseline activation is 0: the projections are bias-free); the per-step value is the attribution summed over the
      ``d`` projected channels. Completeness: the sum over all modalities and steps ≈ ``f(x) − f(0⁺)`` when the
      projections are the only paths from the inputs (MulT; MPLMM in mode 6). ``f(0⁺)`` is the limit of
      ``f(εx)``, not ``f(0)``: MulT derives positions from channel 0 and treats an exactly-zero frame as padding
      (zero positional vector), so ``mult`` jumps at the all-zero input. ``return_delta`` also returns the
      completeness gap ``Σ attributions − (f(x) − f(1e-6·x))`` per sample ``(B,)``. MPLMM's generator reads the raw
      features of the present modalities through its own mappers, which IG on ``proj_*`` does not see, so the gap
      is larger in missing modes.
    * ``"occlusion"``: one-time-step windows (all features of one step set to 0); value = ``f(x) − f(x without step
      t)``. ``perturbations_per_eval`` batches several occlusions per forward.

    Target: output 0 (regression) or the predicted class. ``internal_batch_size`` chunks IG's ``B × n_steps``
    evaluations (raised to at least ``B``).
    """
    if method not in ATTRIBUTION_METHODS:
        raise ConfigError(f"method must be one of {ATTRIBUTION_METHODS}, got {method!r}")
    dev = model_device(model)
    m = effective_modes_tensor(modes, batch, dev)
    lengths, _ = batch_parts(batch)
    lengths = None if lengths is None else lengths.to(dev)
    batch = tuple(x.to(dev).float() for x in batch)  # type: ignore[assignment]
    fwd = ForwardWrapper(model)
    extra = _extra_args(m, lengths)
    delta = None
    with eval_mode(model):
        target = _target(fwd, batch, m, lengths)
        if method == "ig":
            out, delta = _ig_steps(model, fwd, batch, target, extra, n_steps, internal_batch_size, return_delta)
        else:
            out = _occlusion_steps(fwd, batch, target, extra, perturbations_per_eval)
    return (out, delta) if return_delta else out


def _ig_steps(model: nn.Module, fwd: ForwardWrapper, batch: tuple, target: Any, extra: tuple, n_steps: int,
              internal_batch_size: Optional[int], return_delta: bool) -> tuple[dict, Optional[torch.Tensor]]:
    """``timestep_attributions``' ``"ig"`` method: per-step attributions and, with ``return_delta``, the
    completeness gap."""
    from captum.attr import LayerIntegratedGradients

    b, delta = batch[0].shape[0], None
    layers = projection_layers(model)
    with warnings.catch_warnings():  # the three projections are independent (captum warns regardless)
        warnings.filterwarnings("ignore", message="Multiple layers provided")
        lig = LayerIntegratedGradients(fwd, layers)
    ibs = None if internal_batch_size is None else max(int(internal_batch_size), b)
    try:
        with hookable_projections(layers):
            attrs = lig.attribute(batch, baselines=(0.0, 0.0, 0.0), target=target,
                                  additional_forward_args=extra, n_steps=int(n_steps),
                                  internal_batch_size=ibs)
    except AssertionError as exc:  # captum: "Forward hook did not obtain any outputs for given layer"
        raise NotImplementedError(f"model {model_name(model)!r} does not call proj_l/proj_a/proj_v as "
                                  f"modules, so IG on the projections cannot hook them ({exc}); use "
                                  f"method='occlusion'") from exc
    out = {name: _per_step(layer, a.detach(), x.shape[1]).cpu()
           for name, layer, a, x in zip(MODALITIES, layers, attrs, batch)}
    if return_delta:
        # completeness gap against the baseline LIMIT f(eps * x): MulT treats exactly-zero frames as padding
        # (no positional vector), so f jumps at the all-zero input and f(0) is not what IG integrates to
        with torch.no_grad():
            fx = _select(fwd(*batch, *extra), target)
            f0 = _select(fwd(*(x * BASELINE_EPS for x in batch), *extra), target)
        total = sum(a.sum(1) for a in out.values())
        delta = (total - (fx - f0).cpu()).detach()
    return out, delta


def _occlusion_steps(fwd: ForwardWrapper, batch: tuple, target: Any, extra: tuple,
                     perturbations_per_eval: int) -> dict:
    """``timestep_attributions``' ``"occlusion"`` method: one-time-step windows."""
    from captum.attr import Occlusion

    occ = Occlusion(fwd)
    windows = tuple((1, int(x.shape[2])) for x in batch)
    attrs = occ.attribute(batch, sliding_window_shapes=windows, strides=windows, baselines=(0.0, 0.0, 0.0),
                          target=target, additional_forward_args=extra,
                          perturbations_per_eval=int(perturbations_per_eval))
    return {name: a.detach().mean(dim=-1).cpu() for name, a in zip(MODALITIES, attrs)}


def attribution_summary(model: nn.Module, ds, split: str = "test", modes: Iterable[int] = (6,),
                        method: str = "ig", n_samples: Optional[int] = None, batch_size: int = 32,
                        n_steps: int = 16, internal_batch_size: Optional[int] = None,
                        indices: Optional[Sequence[int]] = None) -> pd.DataFrame:
    """Dataset-level time-step attributions: one row per mode × modality × time step with ``mean_abs`` (mean
    ``|attribution|`` over samples), ``mean`` (signed) and ``n`` (the samples that have the mode's modalities, see
    :func:`modality_importance`); columns ``method`` and ``present`` as well."""
    dev = model_device(model)
    modes = modes_list(modes)
    rows = []
    for mode in modes:
        sums: dict[str, list[torch.Tensor]] = {}
        n = 0
        for _idx, batch in batches(ds, split, n_samples, batch_size, dev, indices, mode):
            att = timestep_attributions(model, batch, mode, method=method, n_steps=n_steps,
                                        internal_batch_size=internal_batch_size)
            n += batch[0].shape[0]
            for name, a in att.items():
                s = sums.setdefault(name, [torch.zeros(a.shape[1]), torch.zeros(a.shape[1])])
                s[0] += a.abs().sum(0)
                s[1] += a.sum(0)
        for i, name in enumerate(MODALITIES):  # a mode no sample can run in: zeros with n = 0
            abs_sum, sig_sum = sums.get(name, [torch.zeros(ds.seq_lens[i])] * 2)
            for t in range(abs_sum.shape[0]):
                rows.append(dict(method=method, mode=mode, mode_name=MODE_NAMES[mode], modality=name,
                                 present=MODE_PRESENT[mode][i], timestep=t, mean_abs=float(abs_sum[t]) / max(n, 1),
                                 mean=float(sig_sum[t]) / max(n, 1), n=n))
    return pd.DataFrame(rows)


__all__ = ["ATTRIBUTION_METHODS", "BASELINE_EPS", "ForwardWrapper", "attribution_summary", "hookable_projections",
           "modality_importance", "projection_layers", "timestep_attributions"]
