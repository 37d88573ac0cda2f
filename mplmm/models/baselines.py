"""MulT baselines under missingness: missing modalities and dropped frames are zero-filled before MulT.

* ``mult_zero``: trained on complete data (``train_on_complete = True``: the trainer forces mode 6), tested with
  zero-filled inputs — the "no adaptation" reference.
* ``mult_dropout``: the same network trained with modality dropout at the training missing rate.

Zeros are what MulT itself treats as padding (bias-free projections keep an all-zero frame at zero, and its positions
give such frames a zero position vector), so zero filling is the backbone's native notion of "absent". With
``lengths`` a missing modality has effective length 0 (its one zero step at position 0 is what every query sees), so
a simulated absence and a recorded one (zeros + length 0) are the same input.
"""
from __future__ import annotations

from ..missing import apply_missing_torch
from .base import register
from .lengths import effective_lengths
from .mult import MulT


class _ZeroFilledMulT(MulT):
    """MulT that zero-fills what the sample may not read, then runs the plain backbone."""

    train_on_complete: bool = False
    reads_modes = True  # missing modalities are zero-filled before the backbone

    def forward(self, text, audio, vision, modes, frame_masks=None, lengths=None, need_weights: bool = False):
        text, audio, vision = apply_missing_torch(text, audio, vision, modes, frame_masks)
        if lengths is not None:  # a missing modality has effective length 0
            lengths = effective_lengths(lengths, modes, [x.shape[1] for x in (text, audio, vision)], text.device)
        return super().forward(text, audio, vision, modes, None, lengths=lengths, need_weights=need_weights)


@register("mult_zero")
class MulTZero(_ZeroFilledMulT):
    """MulT trained on complete data; missing inputs zero-filled at test time."""

    train_on_complete = True


@register("mult_dropout")
class MulTDropout(_ZeroFilledMulT):
    """MulT trained with modality dropout (zero filling) at the training missing rate."""

    train_on_complete = False
