"""User-facing error types: a mistake in the user's input (data, checkpoint, configuration) becomes one line.

Every such error derives from :class:`UserError`; the CLI prints it as ``error: <message>`` and exits 2. Any other
exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import difflib
from typing import Iterable, Optional


class UserError(ValueError):
    """A problem with what the user gave (file, flag, parameter, checkpoint); the message is one complete line."""


class ConfigError(UserError):
    """An unknown key or a bad value in a configuration (model keys, training flags, notebook parameters)."""


def closest(name: str, choices: Iterable[str]) -> Optional[str]:
    """The accepted name closest to ``name`` (typo hint), or None when nothing is close."""
    found = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_keys_message(what: str, unknown: Iterable[str], accepted: Iterable[str],
                         also: Iterable[str] = ()) -> str:
    """``"unknown <what> 'x' (did you mean 'y'?); accepted: a, b, c"`` for one or more unknown keys. ``also``: more
    accepted names a typo may be closest to (aliases), not listed."""
    accepted = sorted(accepted)
    names = [*accepted, *also]
    parts = []
    for key in sorted(unknown):
        hint = closest(key, names)
        parts.append(f"'{key}'" + (f" (did you mean '{hint}'?)" if hint else ""))
    noun = what if len(parts) == 1 else f"{what}s"
    return f"unknown {noun} {', '.join(parts)}; accepted: {', '.join(accepted)}"


def unknown_key_message(where: str, unknown: Iterable[str], accepted: Iterable[str], also: Iterable[str] = ()) -> str:
    """``"<where>: unknown key 'x' (did you mean 'y'?); accepted: a, b, c"``: the one wording of an unknown key in
    any configuration (see :mod:`mplmm.config`)."""
    return f"{where}: {unknown_keys_message('key', unknown, accepted, also)}"
