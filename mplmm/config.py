"""One vocabulary for every configuration: typed dataclasses whose fields carry their meaning, aliases and range.

A config is a dataclass whose fields are declared with :func:`option` (the help text, the documented aliases, the
range or the choices). :func:`from_dict` is the one strict reader of a mapping into such a class, used for the model
configs, :class:`~mplmm.train.TrainConfig`, the grid file's blocks and the ``metrics.json`` schema. It resolves the
aliases, refuses unknown keys, checks every value against its field and runs the class's own ``cross_check`` (e.g.
``d`` divisible by ``num_heads``). Every mistake is one line in one of two forms::

    <where>: unknown key 'x' (did you mean 'y'?); accepted: a, b, c
    <where>: key 'x': expected <what>, got <value>

The command line builds its flags from the same fields (:func:`add_flags`, :func:`flag_values`), and the docs'
table of names is generated from them (:func:`markdown_table`).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import types
import typing
from dataclasses import MISSING, dataclass
from functools import lru_cache
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from .errors import ConfigError, unknown_key_message

#: stands for a required key that was not given, in an error message
NOTHING = "nothing"
#: prefix of the argparse destinations that hold a flag given under one of its aliases
_ALIAS_DEST = "alias__"


def option(default: Any = MISSING, help: str = "", *, aliases: Sequence[str] = (), choices: Optional[Sequence] = None,
           low: Optional[float] = None, high: Optional[float] = None, low_open: bool = False, high_open: bool = False,
           length: Optional[int] = None, unit: str = "", flag: bool = True, metavar: Any = None,
           default_factory: Any = MISSING) -> Any:
    """A dataclass field with its documentation and its checks.

    ``help``: its meaning (flag help, docs table); ``aliases``: other accepted names (the reference's, older ones);
    ``choices``: the accepted values (of each element, for a list); ``low``/``high``: the range, closed unless
    ``low_open``/``high_open``; ``length``: the length of a list; ``unit``: said after the expected value in errors;
    ``flag``: False keeps it off the command line; ``metavar``: the command line's name for the value(s).
    """
    meta = {"help": help, "aliases": tuple(aliases), "choices": None if choices is None else tuple(choices),
            "low": low, "high": high, "low_open": low_open, "high_open": high_open, "length": length, "unit": unit,
            "flag": flag, "metavar": metavar}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Spec:
    """One field of a config: its name, resolved type, default and :func:`option` metadata."""

    name: str
    type: Any
    default: Any  # MISSING when the key is required
    help: str = ""
    aliases: tuple = ()
    choices: Optional[tuple] = None
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    length: Optional[int] = None
    unit: str = ""
    flag: bool = True
    metavar: Any = None

    @property
    def required(self) -> bool:
        return self.default is MISSING

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` has the field's type and lies in its range or choices."""
        return _accepts(self.type, value, self)

    def expected(self) -> str:
        """What the field accepts, in words (``an integer >= 1``, ``one of 'lora', 'zeros'``)."""
        text = _what(self.type, self)
        return f"{text} ({self.unit})" if self.unit else text


@lru_cache(maxsize=None)
def specs(cls: type) -> tuple[Spec, ...]:
    """The :class:`Spec` of every field of config class ``cls``, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default_factory is MISSING else f.default_factory()
        meta = {k: v for k, v in f.metadata.items() if k in Spec.__dataclass_fields__}
        out.append(Spec(f.name, hints[f.name], default, **meta))
    return tuple(out)


def aliases(cls: type) -> dict[str, str]:
    """Alias → field name for config class ``cls``."""
    return {a: s.name for s in specs(cls) for a in s.aliases}


# ------------------------------------------------------------------------------------------------ types and ranges
def _optional_parts(tp: Any) -> tuple[list, bool]:
    """The members of a Union (``X | None`` included) other than None, and whether None is one of them."""
    args = typing.get_args(tp)
    return [a for a in args if a is not type(None)], type(None) in args


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _in_range(value: float, s: Spec) -> bool:
    if s.low is not None and (value <= s.low if s.low_open else value < s.low):
        return False
    return s.high is None or (value < s.high if s.high_open else value <= s.high)


def _accepts(tp: Any, value: Any, s: Spec) -> bool:
    if tp is Any:
        return True
    if _is_union(tp):
        members, optional = _optional_parts(tp)
        return (optional and value is None) or any(_accepts(m, value, s) for m in members)
    origin = typing.get_origin(tp) or tp
    if origin in (list, tuple):
        elem = (typing.get_args(tp) or (Any,))[0]
        return (isinstance(value, (list, tuple)) and (s.length is None or len(value) == s.length)
                and all(_accepts(elem, v, s) for v in value))
    if origin is dict:
        return isinstance(value, dict)
    if tp is bool:
        return isinstance(value, bool)
    if tp in (int, float):
        ok = isinstance(value, int) if tp is int else isinstance(value, (int, float)) and math.isfinite(value)
        return ok and not isinstance(value, bool) and _in_range(value, s) and (s.choices is None or value in s.choices)
    if tp is str:
        return isinstance(value, str) and (s.choices is None or value in s.choices)
    return isinstance(value, tp)


def _range_text(s: Spec) -> str:
    if s.low is not None and s.high is not None:
        return f" in {'(' if s.low_open else '['}{s.low:g}, {s.high:g}{')' if s.high_open else ']'}"
    if s.low is not None:
        return f" {'>' if s.low_open else '>='} {s.low:g}"
    if s.high is not None:
        return f" {'<' if s.high_open else '<='} {s.high:g}"
    return ""


def _noun(tp: Any, s: Spec, plural: bool = False) -> str:
    """``an integer >= 1`` / ``integers >= 1``, ``one of 'a', 'b'`` / ``names from a, b``."""
    if s.choices is not None and tp in (str, int):
        listed = ", ".join(repr(c) for c in s.choices)
        return f"names from {listed}" if plural else f"one of {listed}"
    words = {int: ("an integer", "integers"), float: ("a number", "numbers"), str: ("a string", "strings"),
             bool: ("true or false", "true/false values")}
    if tp in words:
        return words[tp][plural] + ("" if tp in (str, bool) else _range_text(s))
    return "values" if plural else "a value"


def _what(tp: Any, s: Spec) -> str:
    if tp is Any:
        return "any value"
    if _is_union(tp):
        members, optional = _optional_parts(tp)
        return " or ".join(_what(m, s) for m in members) + (" or None" if optional else "")
    origin = typing.get_origin(tp) or tp
    if origin in (list, tuple):
        elem = (typing.get_args(tp) or (Any,))[0]
        count = f"{s.length} " if s.length else ""
        return f"a list of {count}{_noun(elem, s, plural=True)}"
    if origin is dict:
        return "a mapping"
    return _noun(tp, s)


# ----------------------------------------------------------------------------------------------------- messages
def show(value: Any, limit: int = 80) -> str:
    """``repr(value)``, shortened to ``limit`` characters; :data:`NOTHING` as it is."""
    if value is NOTHING:
        return NOTHING
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def bad_value(where: str, key: str, what: str, value: Any) -> str:
    """``"<where>: key 'x': expected <what>, got <value>"``."""
    return f"{where}: key '{key}': expected {what}, got {show(value)}"


def _convert(exc: ConfigError, error: type) -> Exception:
    """``exc`` as an ``error`` (the same message), unless it already is one."""
    return exc if isinstance(exc, error) else error(str(exc))


# --------------------------------------------------------------------------------------------------- reading
def canonical(cls: type, data: Mapping, where: str, *, error: type = ConfigError,
              allow_unknown: bool = False) -> dict:
    """``data`` with every alias renamed to its field name; an unknown key (unless ``allow_unknown``) or one key
    given under two names with different values raises ``error``."""
    if not isinstance(data, Mapping):
        names = ", ".join(s.name for s in specs(cls))
        raise error(f"{where}: expected a mapping of keys ({names}), got {show(data)}")
    names, alias_of = {s.name for s in specs(cls)}, aliases(cls)
    unknown = [str(k) for k in data if k not in names and k not in alias_of]
    if unknown and not allow_unknown:
        raise error(unknown_key_message(where, unknown, sorted(names), also=alias_of))
    out: dict = {}
    given_as: dict = {}
    for key, value in data.items():
        name = alias_of.get(key, key)
        if name in out and out[name] != value:
            raise error(f"{where}: key '{name}': expected one value, got {show(out[name])} as '{given_as[name]}' "
                        f"and {show(value)} as '{key}'")
        out[name] = value
        given_as.setdefault(name, key)
    return out


def rename_aliases(cls: type, data: Mapping) -> dict:
    """``data`` with each alias of ``cls`` renamed to its field name (the field's own key wins); nothing checked.
    Reads configs written under older names, e.g. a checkpoint's ``model_config``."""
    alias_of = aliases(cls)
    out = {k: v for k, v in data.items() if k not in alias_of}
    for key, value in data.items():
        if key in alias_of:
            out.setdefault(alias_of[key], value)
    return out


def check(obj: Any, where: str, *, error: type = ConfigError) -> Any:
    """Check every field of config ``obj`` against its :class:`Spec`, then the class's ``cross_check(where)``;
    returns ``obj``."""
    for s in specs(type(obj)):
        value = getattr(obj, s.name)
        if not s.accepts(value):
            raise error(bad_value(where, s.name, s.expected(), value))
    hook: Optional[Callable[[str], None]] = getattr(obj, "cross_check", None)
    if hook is not None:
        try:
            hook(where)
        except ConfigError as exc:
            raise _convert(exc, error) from None
    return obj


def from_dict(cls: type, data: Mapping, where: str, *, error: type = ConfigError, allow_unknown: bool = False) -> Any:
    """The checked instance of config class ``cls`` read from ``data`` (aliases accepted, missing keys take their
    defaults). ``error``: the exception class raised (a :class:`~mplmm.errors.UserError`); ``allow_unknown``: ignore
    keys ``cls`` does not declare (a schema of known keys only)."""
    values = canonical(cls, data, where, error=error, allow_unknown=allow_unknown)
    known = {s.name: s for s in specs(cls)}
    for s in known.values():
        if s.required and s.name not in values:
            raise error(bad_value(where, s.name, s.expected(), NOTHING))
    obj = cls(**{k: v for k, v in values.items() if k in known})
    return check(obj, where, error=error)


def to_dict(obj: Any) -> dict:
    """The fields of config ``obj`` as a plain mapping (tuples as lists: what JSON and checkpoints store)."""
    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {s.name: plain(getattr(obj, s.name)) for s in specs(type(obj))}


def defaults(cls: type) -> dict:
    """Field name → default (required fields left out; a fresh copy of mutable ones)."""
    return {s.name: copy.deepcopy(s.default) for s in specs(cls) if not s.required}


# ---------------------------------------------------------------------------------------------------- flags
def _scalar(tp: Any) -> tuple[Any, bool]:
    """``(type the command line converts to, takes a list)`` of a field type."""
    if _is_union(tp):
        tp = _optional_parts(tp)[0][0]
    origin = typing.get_origin(tp) or tp
    if origin in (list, tuple):
        return (typing.get_args(tp) or (str,))[0], True
    return tp, False


def _default_text(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def flag_help(s: Spec, extra: str = "", default_text: Optional[str] = None) -> str:
    """A flag's help: the field's meaning, ``extra`` words, its default (none for an off switch or None; else
    ``default_text`` when given) and its aliases."""
    quiet = s.type is bool or any(s.default is v for v in (None, False, MISSING))
    shown = "" if quiet else f"default {_default_text(s.default)}"
    shown = shown if default_text is None else default_text
    also = "also " + ", ".join(f"--{a}" for a in s.aliases) if s.aliases else ""
    notes = [n for n in (extra, shown, also) if n]
    return s.help + (f" ({'; '.join(notes)})" if notes else "")


def add_flags(parser: Any, cls: type, names: Optional[Sequence[str]] = None, *, keep_defaults: bool = False,
              help: Optional[Mapping[str, str]] = None, choices: Optional[Mapping[str, Sequence]] = None,
              default_text: Optional[Mapping[str, str]] = None) -> None:
    """One flag ``--<field>`` per field of ``cls`` (``names``: only these; fields with ``flag=False`` never), help,
    choices and length from the field; each alias is a flag too (hidden: the help names it). A flag not given is
    None (:func:`flag_values` leaves it out; an off switch is False), unless ``keep_defaults``: then it defaults to
    the field's default.
    ``help``: more words for a field's help; ``choices``: other choices than the field's; ``default_text``: what
    the help says of the default instead (the command's own rule)."""
    chosen = [s for s in specs(cls) if s.flag and (names is None or s.name in names)]
    for s in chosen:
        kind, many = _scalar(s.type)
        default = s.default if keep_defaults else None
        text = flag_help(s, (help or {}).get(s.name, ""), (default_text or {}).get(s.name))
        if kind is bool and s.default is True:  # a switch that turns the field off
            parser.add_argument(f"--no_{s.name}", dest=s.name, action="store_false", default=default,
                                help=f"turn off ({s.name} false): {text}")
            continue
        if kind is bool:  # an off switch: False when not given
            kw: dict = {"action": "store_true", "default": False}
        else:
            kw = {"type": kind, "default": default, "metavar": s.metavar}
            picks = (choices or {}).get(s.name, s.choices)
            if picks is not None:
                kw["choices"] = picks
            if many:
                kw["nargs"] = s.length or "+"
        parser.add_argument(f"--{s.name}", dest=s.name, help=text, **kw)
        for alias in s.aliases:
            parser.add_argument(f"--{alias}", dest=f"{_ALIAS_DEST}{alias}", help=argparse.SUPPRESS,
                                **{**kw, "default": None})


def flag_values(args: Any, cls: type) -> dict:
    """The flags of ``cls``'s fields that were given, under the name they were given (field names and aliases: the
    config's reader resolves them)."""
    out = {}
    for s in specs(cls):
        for key, dest in ((s.name, s.name), *((a, f"{_ALIAS_DEST}{a}") for a in s.aliases)):
            value = getattr(args, dest, None)
            if value is not None:
                out[key] = value
    return out


# ---------------------------------------------------------------------------------------------------- docs
def _cell(value: Any) -> str:
    if value is MISSING:
        return "required"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value}`"


def type_name(tp: Any) -> str:
    """A field type as the docs write it: ``int``, ``Optional[float]``, ``list[int]``."""
    if _is_union(tp):
        members, optional = _optional_parts(tp)
        inner = " | ".join(type_name(m) for m in members)
        return f"Optional[{inner}]" if optional else inner
    origin = typing.get_origin(tp)
    if origin is not None:
        return f"{origin.__name__}[{', '.join(type_name(a) for a in typing.get_args(tp))}]"
    return getattr(tp, "__name__", str(tp))


def markdown_table(cls: type, skip: Sequence[str] = ()) -> str:
    """The fields of ``cls`` (but ``skip``) as a markdown table: name, aliases, type, default, meaning (with the
    accepted range or choices)."""
    rows = ["| name | aliases | type | default | meaning |", "|---|---|---|---|---|"]
    for s in specs(cls):
        if s.name in skip:
            continue
        names = ", ".join(f"`{a}`" for a in s.aliases)
        limited = any(v is not None for v in (s.low, s.high, s.choices, s.length))
        meaning = (f"{s.help}; {s.expected()}" if limited else s.help).replace("|", "\\|")
        rows.append(f"| `{s.name}` | {names} | `{type_name(s.type)}` | {_cell(s.default)} | {meaning} |")
    return "\n".join(rows) + "\n"


__all__ = ["NOTHING", "Spec", "add_flags", "aliases", "bad_value", "canonical", "check", "defaults", "flag_help",
           "flag_values", "from_dict", "markdown_table", "option", "rename_aliases", "show", "specs", "to_dict",
           "type_name"]
