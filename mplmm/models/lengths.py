"""Per-sample sequence lengths: clamping, effective lengths, step-validity masks and readout indices.

``lengths`` is ``None`` or a ``LongTensor (B, 3)``: the number of real (recorded) time steps of text, audio and vision
of each sample. Steps ``t >= lengths[b, j]`` are end padding and never influence a prediction; a length of 0 means
that nothing was recorded (a real absence). Lengths are clamped to ``[0, T_j]``.

* **Effective length**: a modality that is missing under the sample's mode counts as length 0, so a simulated
  absence (mode) and a real absence (zeros + length 0) are the same input to a model.
* **Validity mask** ``(B, T)`` bool: True for the real steps ``t < length``.
* **No valid key**: attention over a key set without a valid step attends to step 0 only (:func:`with_fallback`); the
  models zero-fill unreadable steps and give step 0 a zero position, so that key is the model's notion of "absent".
  A sequence of length 0 is read out at step 0 (:func:`last_valid_index`).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..missing import present_table


def clamp_lengths(lengths: torch.Tensor, sizes: Sequence[int], device: Optional[torch.device] = None) -> torch.Tensor:
    """``lengths (B, 3)`` as a long tensor on ``device``, each column clamped to ``[0, sizes[j]]`` (no host copy, so
    no synchronisation on an accelerator)."""
    lengths = torch.as_tensor(lengths, device=device)
    if lengths.ndim != 2 or lengths.shape[1] != len(sizes):
        raise ValueError(f"lengths must have shape (B, {len(sizes)}), got {tuple(lengths.shape)}")
    return torch.stack([lengths[:, j].long().clamp(0, int(t)) for j, t in enumerate(sizes)], dim=1)


def effective_lengths(lengths: torch.Tensor, modes: torch.Tensor, sizes: Sequence[int],
                      device: Optional[torch.device] = None) -> torch.Tensor:
    """Clamped ``lengths (B, 3)`` on ``device``, 0 for every modality that is missing under ``modes (B,)``."""
    lengths = clamp_lengths(lengths, sizes, device)
    modes = torch.as_tensor(modes, device=lengths.device).long()
    return torch.where(present_table(lengths.device)[modes], lengths, torch.zeros_like(lengths))


def step_valid(length: torch.Tensor, steps: int) -> torch.Tensor:
    """``(B, steps)`` bool: step ``t`` of sample ``b`` is real (``t < length[b]``)."""
    return torch.arange(steps, device=length.device) < length.unsqueeze(-1)


def valid_masks(lengths: torch.Tensor, sizes: Sequence[int]) -> list[torch.Tensor]:
    """One :func:`step_valid` mask per column of ``lengths (B, n)`` with ``sizes[j]`` steps."""
    return [step_valid(lengths[:, j], t) for j, t in enumerate(sizes)]


def zero_fill(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``x (B, T, D)`` with the steps where ``keep (B, T)`` is False set to exactly 0 (a missing feature never reaches
    the graph, not even as ``NaN * 0``)."""
    return torch.where(keep.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))


def zero_padding(feats: Sequence[torch.Tensor], lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``feats`` (``(B, T_j, D_j)`` each) with every step beyond ``lengths[:, j]`` set to exactly 0."""
    return tuple(zero_fill(x, v) for x, v in zip(feats, valid_masks(lengths, [x.shape[1] for x in feats])))


def with_fallback(valid: torch.Tensor) -> torch.Tensor:
    """``valid (..., T)`` with step 0 made valid in every row that has no valid step (no-valid-key convention)."""
    first = torch.zeros_like(valid)
    first[..., 0] = True
    return valid | (first & ~valid.any(dim=-1, keepdim=True))


def last_valid_index(valid: torch.Tensor) -> torch.Tensor:
    """``(B,)`` long: index of the last valid step of each row of ``valid (B, T)``, 0 when none is valid."""
    steps = torch.arange(valid.shape[-1], device=valid.device)
    return torch.where(valid, steps, torch.zeros_like(steps)).amax(dim=-1)


def gather_steps(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``x[b, index[b]]`` of ``x (B, T, ...)`` as ``(B, 1, ...)``."""
    shape = (x.shape[0], 1) + tuple(x.shape[2:])
    return x.gather(1, index.view((-1, 1) + (1,) * (x.ndim - 2)).expand(shape))
