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


def unknown_keys_message(what: str, unknown: Iterable[str], accepted: Iterable[str]) -> str:
    """``"unknown <what> 'x' (did you mean 'y'?); accepted: a, b, c"`` for one or more unknown keys."""
    accepted = sorted(accepted)
    parts = []
    for key in sorted(unknown):
        hint = closest(key, accepted)
        parts.append(f"'{key}'" + (f" (did you mean '{hint}'?)" if hint else ""))
    noun = what if len(parts) == 1 else f"{what}s"
    return f"unknown {noun} {', '.join(parts)}; accepted: {', '.join(accepted)}"


def check_number(name: str, value, *, minimum: Optional[float] = None, maximum: Optional[float] = None,
                 integer: bool = False, strict_min: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a number in range (``integer``: a whole number)."""
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name}: expected {kind}, got {value!r}")
    if value != value:  # NaN
        raise ConfigError(f"{name}: expected a number, got NaN")
    kind = "an integer" if integer else "a number"
    if minimum is not None and (value <= minimum if strict_min else value < minimum):
        raise ConfigError(f"{name}: expected {kind} {'>' if strict_min else '>='} {minimum:g}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}: expected {kind} <= {maximum:g}, got {value!r}")
