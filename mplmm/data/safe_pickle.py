"""Reading dataset pickles without running code from them.

A pickle names the functions that rebuild its objects, and unpickling calls them: a file from an unknown mirror can
name ``os.system``. :class:`DatasetUnpickler` (the C unpickler, with :meth:`~DatasetUnpickler.find_class` replaced)
resolves only the names that the supported layouts need (see :data:`ALLOWED_GLOBALS`); any other name raises
:class:`PickleRefused` when it is read, before anything could call it.

Allowing ``numpy.ndarray`` and ``numpy.dtype`` by name is not enough: called with a buffer, ``numpy.ndarray`` reads raw
bytes as object pointers, and a dtype whose pickled state was edited (an object field past the item size) makes numpy
write outside its memory. So the name ``numpy.ndarray`` resolves to a marker that only numpy's ``_reconstruct`` accepts,
every array is rebuilt through :class:`_Rebuilt` whose ``__setstate__`` hands numpy a dtype rebuilt from its type
string (:func:`safe_dtype`: booleans, numbers, bytes, str and object only), and :func:`plain` turns the result into
ordinary ``numpy.ndarray`` objects. Object arrays are fine: their items come from the same restricted unpickler.
"""
from __future__ import annotations

import _compat_pickle
import codecs
import collections
import pickle
from typing import Any, BinaryIO

import numpy as np

try:
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy 1.x without the numpy._core alias
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

#: dtype kinds the layouts use: bool, signed/unsigned int, float, complex, bytes, str, object
SAFE_KINDS = "biufcSUO"
KIND_NAMES = {"V": "structured or void", "M": "datetime64", "m": "timedelta64", "T": "StringDType"}
LATIN1 = ("latin1", "latin-1", "iso-8859-1")


class PickleRefused(Exception):
    """Something a pickle asked for that the restricted reader does not allow; ``str()`` completes "refusing …"."""


class _NdarrayName:
    """What the name ``numpy.ndarray`` resolves to: accepted by :func:`_reconstruct` only, never called."""

    __slots__ = ()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise PickleRefused("a call of numpy.ndarray, which can read raw bytes as objects")

    def __repr__(self) -> str:
        return "numpy.ndarray (named in a pickle)"


NDARRAY = _NdarrayName()


def safe_dtype(spec: Any) -> np.dtype:
    """``spec`` as numpy's own dtype for its type string (byte order and size kept; edited pickled state dropped).

    Refuses (:class:`PickleRefused`) kinds outside :data:`SAFE_KINDS`; a size that the type string does not reproduce
    is a ValueError (a damaged file)."""
    d = spec if isinstance(spec, np.dtype) else np.dtype(spec)
    if d.kind not in SAFE_KINDS:
        raise PickleRefused(f"a numpy {KIND_NAMES.get(d.kind, repr(d.kind))} dtype")
    clean = np.dtype(d.str)
    if clean.itemsize != d.itemsize:
        raise ValueError(f"numpy dtype {d.str} with item size {d.itemsize} instead of {clean.itemsize}")
    return clean


class _Rebuilt(np.ndarray):
    """An array while it is unpickled: its state reaches numpy with a :func:`safe_dtype`."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise ValueError(f"unexpected numpy array state ({type(state).__name__})")
        at = len(state) - 3  # (version,) shape, dtype, is_fortran, data
        np.ndarray.__setstate__(self, state[:at] + (safe_dtype(state[at]),) + state[at + 1:])


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """``numpy._core.multiarray._reconstruct`` for plain arrays; shape and dtype come with the state."""
    if subtype is not NDARRAY:
        raise PickleRefused(f"numpy _reconstruct of {type(subtype).__name__} (only numpy.ndarray is read)")
    return _multiarray._reconstruct(_Rebuilt, (0,), b"b")


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any, *rest: Any) -> np.ndarray:
    """``numpy._core.numeric._frombuffer`` (protocol 5) with a :func:`safe_dtype`."""
    return _numeric._frombuffer(buf, safe_dtype(dtype), shape, order, *rest).view(_Rebuilt)


def _scalar(dtype: Any, *obj: Any) -> Any:
    """``numpy._core.multiarray.scalar`` with a :func:`safe_dtype`; an object "scalar" is its object."""
    d = safe_dtype(dtype)
    if d.kind == "O":
        return obj[0] if obj else None
    return _multiarray.scalar(d, *obj)


def _encode(text: Any, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 writes bytes in protocols 0-2: ``encode(str, "latin1")``."""
    if not isinstance(text, str) or str(encoding).lower() not in LATIN1:
        raise PickleRefused(f"_codecs.encode of {type(text).__name__} with encoding {str(encoding)[:40]!r}")
    return codecs.encode(text, "latin1")


#: every global a dataset pickle may name (Python-2 names are mapped to Python 3 first)
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("builtins", "set"): set,  # sets in protocols 0-3
    ("builtins", "frozenset"): frozenset,  # frozensets in protocols 0-3
    ("builtins", "bytearray"): bytearray,  # bytearrays in protocols 0-4
    ("builtins", "complex"): complex,  # complex numbers, every protocol
    ("collections", "OrderedDict"): collections.OrderedDict,  # a dict subclass; items come from the same reader
    ("_codecs", "encode"): _encode,  # bytes (array data included) in Python-3 pickles of protocols 0-2
    ("numpy", "ndarray"): NDARRAY,  # argument of _reconstruct
    ("numpy", "dtype"): np.dtype,  # every array's dtype; checked by safe_dtype wherever numpy uses one
}
for _core in ("numpy.core", "numpy._core"):  # numpy 1.x / numpy 2.x module names
    ALLOWED_GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = _reconstruct  # arrays in protocols 0-4, object arrays
    ALLOWED_GLOBALS[(f"{_core}.multiarray", "scalar")] = _scalar  # numpy scalars (np.float32(1.5), ...)
    ALLOWED_GLOBALS[(f"{_core}.numeric", "_frombuffer")] = _frombuffer  # non-object arrays in protocol 5


def shown_global(module: str, name: str) -> str:
    """``'module.name'`` quoted and escaped for a one-line message (long names shortened)."""
    text = f"{module}.{name}"
    return repr(text if len(text) <= 120 else text[:117] + "...")


class DatasetUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only :data:`ALLOWED_GLOBALS`; anything else raises :class:`PickleRefused`."""

    def find_class(self, module: str, name: str) -> Any:
        key = _compat_pickle.NAME_MAPPING.get((module, name),
                                              (_compat_pickle.IMPORT_MAPPING.get(module, module), name))
        if key in ALLOWED_GLOBALS:
            return ALLOWED_GLOBALS[key]
        raise PickleRefused(f"to load pickle global {shown_global(module, name)}")


def plain(obj: Any, seen: dict | None = None) -> Any:
    """``obj`` with every array an ordinary ``numpy.ndarray`` (a view: no copy) and every dtype a :func:`safe_dtype`.

    Lists, dicts and object arrays are changed in place; shared objects stay shared (``seen``: id -> (object, result),
    the object kept so that its id stays its own)."""
    seen = {} if seen is None else seen
    if isinstance(obj, (str, bytes, int, float, type(None))):
        return obj
    if id(obj) in seen:
        return seen[id(obj)][1]
    out = obj
    seen[id(obj)] = (obj, out)  # lists and dicts that contain themselves
    if isinstance(obj, _Rebuilt):
        out = obj.view(np.ndarray)
        seen[id(obj)] = (obj, out)
        if out.dtype.kind == "O":
            flat = out.reshape(-1, order="A")  # a view: unpickled arrays are C- or Fortran-contiguous
            for i, item in enumerate(flat):
                new = plain(item, seen)
                if new is not item:
                    flat[i] = new
    elif isinstance(obj, np.dtype):
        out = safe_dtype(obj)
    elif isinstance(obj, list):
        obj[:] = [plain(x, seen) for x in obj]
    elif isinstance(obj, dict):
        items = [(plain(k, seen), plain(v, seen)) for k, v in obj.items()]
        obj.clear()
        obj.update(items)
    elif isinstance(obj, (tuple, set, frozenset)):
        items = [plain(x, seen) for x in obj]
        if any(a is not b for a, b in zip(items, obj)):
            out = type(obj)(items)
    seen[id(obj)] = (obj, out)
    return out


def unpickle(fh: BinaryIO, *, trusted: bool = False) -> Any:
    """Unpickle ``fh`` (retrying with ``encoding="latin1"`` for Python-2 pickles) with :class:`DatasetUnpickler`,
    or with plain ``pickle`` when ``trusted``."""
    reader = pickle.Unpickler if trusted else DatasetUnpickler
    try:
        obj = reader(fh).load()
    except UnicodeDecodeError:
        fh.seek(0)
        obj = reader(fh, encoding="latin1").load()
    return obj if trusted else plain(obj)
