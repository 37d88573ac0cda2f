"""Shared constants: modality order and the MPLMM missing-mode table.

The modality order is always L, A, V (text, audio, vision), as in MulT and MPLMM.
"""
from __future__ import annotations

MODALITIES: tuple[str, str, str] = ("text", "audio", "vision")
SHORT: dict[str, str] = {"text": "l", "audio": "a", "vision": "v"}

#: MPLMM missing modes (mplmm.md §4.1): mode -> tuple of *present* flags (text, audio, vision).
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
N_MODES = 7


def present_to_mode(text: bool, audio: bool, vision: bool) -> int:
    """Inverse of :data:`MODE_PRESENT`; raises if all three are missing."""
    key = (bool(text), bool(audio), bool(vision))
    for mode, flags in MODE_PRESENT.items():
        if flags == key:
            return mode
    raise ValueError("all three modalities missing: MPLMM has no such mode")
