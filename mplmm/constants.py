"""Shared constants: modality order, the MPLMM missing-mode table and MulT's transformer names.

The modality order is always L, A, V (text, audio, vision), as in MulT and MPLMM. Every other module derives its
modality lists, present tables and module names from here.
"""
from __future__ import annotations

from enum import IntEnum

MODALITIES: tuple[str, str, str] = ("text", "audio", "vision")
SHORT: dict[str, str] = {"text": "l", "audio": "a", "vision": "v"}
#: one-letter modality names in :data:`MODALITIES` order (MulT's module names use them: ``proj_l``, ``trans_a_mem``)
LETTERS: tuple[str, str, str] = tuple(SHORT[m] for m in MODALITIES)  # type: ignore[assignment]
LETTER_TO_NAME: dict[str, str] = {letter: name for name, letter in SHORT.items()}

#: MPLMM missing modes (docs/protocol_metrics.md, "Missing modes"): mode -> *present* flags (text, audio, vision).
MODE_PRESENT: dict[int, tuple[bool, bool, bool]] = {
    0: (False, True, True),   # text missing
    1: (True, False, True),   # audio missing
    2: (True, True, False),   # vision missing
    3: (False, False, True),  # text + audio missing
    4: (False, True, False),  # text + vision missing
    5: (True, False, False),  # audio + vision missing
    6: (True, True, True),    # complete
}
MODE_NAMES: dict[int, str] = {
    0: "text missing",
    1: "audio missing",
    2: "vision missing",
    3: "text+audio missing",
    4: "text+vision missing",
    5: "audio+vision missing",
    6: "complete",
}
COMPLETE_MODE = 6


class Mode(IntEnum):
    """The seven missing modes by name (``Mode.COMPLETE == 6``); an ``int`` everywhere a mode number is taken."""

    TEXT_MISSING = 0
    AUDIO_MISSING = 1
    VISION_MISSING = 2
    TEXT_AUDIO_MISSING = 3
    TEXT_VISION_MISSING = 4
    AUDIO_VISION_MISSING = 5
    COMPLETE = 6


N_MODES = 7
#: the present flags of modes 0..6 as rows of a ``(7, 3)`` table (text, audio, vision)
PRESENT_ROWS: tuple[tuple[bool, bool, bool], ...] = tuple(MODE_PRESENT[k] for k in range(N_MODES))

#: MulT's crossmodal transformers as (module name, target letter, source letter): the target's sequence queries the
#: source's, in MulT's order (l<-a, l<-v, a<-l, a<-v, v<-l, v<-a)
CROSSMODAL: tuple[tuple[str, str, str], ...] = tuple(
    (f"trans_{t}_with_{s}", t, s) for t in LETTERS for s in LETTERS if s != t)
#: MulT's memory (self-attention) transformers as (module name, branch letter)
MEMORY: tuple[tuple[str, str], ...] = tuple((f"trans_{m}_mem", m) for m in LETTERS)


def present_to_mode(text: bool, audio: bool, vision: bool) -> int:
    """Inverse of :data:`MODE_PRESENT`; raises if all three are missing."""
    key = (bool(text), bool(audio), bool(vision))
    for mode, flags in MODE_PRESENT.items():
        if flags == key:
            return mode
    raise ValueError("all three modalities missing: MPLMM has no such mode")
