"""Issue "Reading a dataset pickle never runs code": every pickle read goes through mplmm.data.safe_pickle.

A payload (``os.system``, ``builtins.eval``, ``subprocess.Popen``) anywhere in a file, in the first pass or only in the
``latin1`` retry, is refused by name before it is called: the marker file is never created and the error is one line.
Numpy's constructors are not a way around it. Every supported layout (MulT, MMSA, Python-2 era, numpy 1.x and 2.x
names, protocols 2, 4 and 5, our own writer, the shared real file) loads exactly as plain ``pickle`` loads it; the
fixtures follow the original layouts (MulT ``(N, 3)`` byte-string ids, MMSA ``raw_text`` and length lists).
"""
from __future__ import annotations

import collections
import dataclasses
import os
import pickle
import pickletools
import struct
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import own_data as O  # noqa: E402

from mplmm.cli import build_parser  # noqa: E402
from mplmm.cli import main as cli_main  # noqa: E402
from mplmm.data import DataError, detect_format, load_dataset, make_synthetic, save_dataset  # noqa: E402
from mplmm.data.readers_pickle import read_mmsa_pickle, read_mult_pickle  # noqa: E402
from mplmm.data.safe_pickle import unpickle  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_PKL = ROOT.parent / "shared/data/mosi_bclstm/mosi_bclstm_utterance.pkl"
OPT_OUT = "if you trust this file, pass --trust_pickle / load_dataset(..., trust_pickle=True)"
Point = collections.namedtuple("Point", "x y")
pytestmark = pytest.mark.filterwarnings("ignore:mplmm.*non-finite:UserWarning")  # MOSEI-style -inf audio


@dataclasses.dataclass
class Note:
    text: str


class Payload:
    """Pickles as ``func(*args)``: what a malicious file would carry."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker: Path) -> dict:
    return {"os.system": Payload(os.system, f"touch {marker}"),
            "builtins.eval": Payload(eval, f"open({str(marker)!r}, 'w').close()"),
            "subprocess.Popen": Payload(subprocess.Popen, ["touch", str(marker)])}


def _global_of(payload: Payload) -> str:
    return f"{payload.func.__module__}.{payload.func.__qualname__}"


def _splits(add, seed: int, n=(6, 4, 5), lens=(3, 4, 2), dims=(5, 3, 4)) -> dict:
    """Three splits of float32 ``(N, T, D)`` features; ``add(d, rng, split, k, lens)`` puts in the layout's own keys."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, k in zip(("train", "valid", "test"), n):
        out[split] = {m: rng.standard_normal((k, t, dim)).astype(np.float32)
                      for m, t, dim in zip(("text", "audio", "vision"), lens, dims)}
        add(out[split], rng, split, k, lens)
    return out


def mult_dict() -> dict:
    """MulT layout: labels (N, 1, 1), ids (N, 3) byte strings, MOSEI-style -inf in audio."""
    def add(d, rng, split, k, lens):
        d["audio"][0, 0, 0] = -np.inf
        d["labels"] = np.round(rng.uniform(-3, 3, (k, 1, 1)), 1).astype(np.float32)
        d["id"] = O.mult_ids(split, k)

    return _splits(add, seed=0)


def mmsa_dict() -> dict:
    """MMSA layout: raw_text (list / object array of str), text_bert, lengths (list / int array), ids, both labels."""
    def add(d, rng, split, k, lens):
        d["text_bert"] = rng.integers(0, 100, (k, 3, lens[0])).astype(np.float64)
        d["raw_text"] = [f"ça va {i}" for i in range(k)] if split == "train" else \
            np.array([f"utt {i}" for i in range(k)], dtype=object)
        d["regression_labels"] = np.round(rng.uniform(-3, 3, k), 1).astype(np.float32)
        d["classification_labels"] = rng.integers(0, 3, k).astype(np.float32)
        d["audio_lengths"] = [int(v) for v in rng.integers(1, lens[1] + 1, k)]
        d["vision_lengths"] = rng.integers(1, lens[2] + 1, k)
        d["id"] = np.array([f"{split}_vid{i}$_${i}" for i in range(k)], dtype=object)

    return _splits(add, seed=1)


def numpy1_names(data: bytes) -> bytes:
    """The same pickle with numpy 1.x module names (``numpy.core.*`` for ``numpy._core.*``); frames are dropped."""
    ops = list(pickletools.genops(data))
    out = bytearray()
    for (op, arg, pos), end in zip(ops, [p for _, _, p in ops[1:]] + [len(data)]):
        raw = data[pos:end]
        if op.name == "FRAME":
            continue
        if op.name == "GLOBAL" and arg.startswith("numpy._core."):
            raw = b"c" + arg.replace("numpy._core.", "numpy.core.").replace(" ", "\n").encode() + b"\n"
        elif op.name == "SHORT_BINUNICODE" and arg.startswith("numpy._core."):
            name = arg.replace("numpy._core.", "numpy.core.").encode()
            raw = b"\x8c" + bytes([len(name)]) + name
        out += raw
    return bytes(out)


class Global:
    """A global name in a Python-2 pickle."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name


def py2_pickle(obj) -> bytes:
    """``obj`` as Python 2's cPickle writes it in protocol 2: ``bytes`` are py2 ``str`` (SHORT_BINSTRING / BINSTRING,
    array data included), ``str`` is py2 ``unicode``, arrays through ``numpy.core.multiarray._reconstruct``."""
    out = bytearray(b"\x80\x02")

    def py2(value):  # reduce arguments/state as Python 2 numpy writes them: str -> py2 str, bool -> int
        if isinstance(value, tuple):
            return tuple(py2(v) for v in value)
        if isinstance(value, bool):
            return int(value)
        return value.encode() if isinstance(value, str) else value

    def save(x):
        if x is None:
            out.extend(b"N")
        elif x is True or x is False:
            out.extend(b"\x88" if x else b"\x89")
        elif isinstance(x, int):
            out.extend(b"K" + bytes([x]) if 0 <= x < 256 else b"J" + struct.pack("<i", x))
        elif isinstance(x, float):
            out.extend(b"G" + struct.pack(">d", x))
        elif isinstance(x, bytes):
            out.extend((b"U" + bytes([len(x)]) if len(x) < 256 else b"T" + struct.pack("<I", len(x))) + x)
        elif isinstance(x, str):
            data = x.encode("utf-8")
            out.extend(b"X" + struct.pack("<I", len(data)) + data)
        elif isinstance(x, Global):
            out.extend(f"c{x.module}\n{x.name}\n".encode())
        elif isinstance(x, tuple):
            if 1 <= len(x) <= 3:
                for v in x:
                    save(v)
                out.append(0x84 + len(x))  # TUPLE1..TUPLE3
            else:
                out.extend(b"(")
                for v in x:
                    save(v)
                out.extend(b"t")
        elif isinstance(x, list):
            out.extend(b"](")
            for v in x:
                save(v)
            out.extend(b"e")
        elif isinstance(x, dict):
            out.extend(b"}(")
            for k, v in x.items():
                save(k)
                save(v)
            out.extend(b"u")
        elif isinstance(x, np.dtype):
            _, args, state = x.__reduce__()
            save(Global("numpy", "dtype"))
            save(py2(args))
            out.extend(b"R")
            save(py2(state))
            out.extend(b"b")
        elif isinstance(x, np.ndarray):
            save(Global("numpy.core.multiarray", "_reconstruct"))
            save((Global("numpy", "ndarray"), (0,), b"b"))
            out.extend(b"R")
            data = [py2(v) if isinstance(v, str) else v for v in x.ravel().tolist()] if x.dtype.kind == "O" \
                else x.tobytes()
            save((1, x.shape, x.dtype, False, data))
            out.extend(b"b")
        else:
            raise TypeError(type(x))

    save(obj)
    return bytes(out + b".")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _same_tree(a, b, where="top"):
    """``a`` and ``b`` are equal and of the same types all the way down (arrays: plain ndarrays, same dtype)."""
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        if a.dtype.kind == "O":
            assert a.tolist() == b.tolist(), where
        else:
            assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _same_tree(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same_tree(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _both(path: Path):
    """(restricted, plain) unpickling of ``path``; the restricted reader warns about nothing (numpy 1.x names
    included, which plain pickle reports as deprecated)."""
    with open(path, "rb") as fh, warnings.catch_warnings():
        warnings.simplefilter("error")
        safe = unpickle(fh)
    with open(path, "rb") as fh, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            plain = pickle.load(fh)
        except UnicodeDecodeError:
            fh.seek(0)
            plain = pickle.load(fh, encoding="latin1")
    return safe, plain


def _refused(path: Path, what: str, call=None) -> str:
    """The one-line DataError of ``call(path)`` (default: load_dataset) names the file and ``what``."""
    call = call or (lambda p: load_dataset(p, verbose=False))
    with pytest.raises(DataError) as info:
        call(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: refusing {what}") and msg.endswith(OPT_OUT) and "\n" not in msg, msg
    return msg


# ---------------------------------------------------------------- payloads never run

@pytest.mark.parametrize("where", ["split", "deep", "object_array"])
@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "subprocess.Popen"])
def test_payload_is_refused_before_it_runs(tmp_path, kind, where):
    marker = tmp_path / "marker"
    payload = _payloads(marker)[kind]
    data = mult_dict()
    if where == "split":
        data["train"]["extra"] = payload
    elif where == "deep":
        data["valid"]["meta"] = {"a": [1, (2, {"b": [payload]})]}
    else:
        data["test"]["id"] = np.array([payload] + ["x"] * 4, dtype=object)
    path = _write(tmp_path / "evil.pkl", pickle.dumps(data, protocol=4))
    what = f"to load pickle global '{_global_of(payload)}' (not needed by any supported dataset layout)"
    _refused(path, what)
    _refused(path, what, detect_format)
    _refused(path, what, lambda p: load_dataset(p, format="mult_pickle", verbose=False))
    _refused(path, what, read_mult_pickle)
    time.sleep(0.2)  # a Popen would have touched it by now
    assert not marker.exists()


def test_payload_fixtures_are_live(tmp_path):
    """The same files DO run their payload under plain pickle (in a child process): the tests above test something."""
    paths = []
    for i, kind in enumerate(["os.system", "builtins.eval", "subprocess.Popen"]):
        marker = tmp_path / f"marker{i}"
        paths.append((_write(tmp_path / f"evil{i}.pkl", pickle.dumps({"train": {"x": _payloads(marker)[kind]}})),
                      marker))
    code = "import pickle, sys\nfor p in sys.argv[1:]:\n    pickle.load(open(p, 'rb'))"
    subprocess.run([sys.executable, "-c", code, *(str(p) for p, _ in paths)], check=True, timeout=60)
    deadline = time.time() + 10
    while not all(m.exists() for _, m in paths) and time.time() < deadline:
        time.sleep(0.05)
    assert all(m.exists() for _, m in paths)


def test_global_reached_only_in_the_latin1_retry_is_refused(tmp_path):
    marker = tmp_path / "marker"
    command = f"touch {marker}".encode()
    data = (b"\x80\x02}(U\x05train}(U\x03rawU\x01\xffU\x01xcposix\nsystem\nU" + bytes([len(command)]) + command
            + b"\x85Ruu.")
    path = _write(tmp_path / "py2_evil.pkl", data)
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(data)  # the first, ASCII pass stops at the py2 str before the global
    _refused(path, "to load pickle global 'posix.system'")
    _refused(path, "to load pickle global 'posix.system'", detect_format)
    assert not marker.exists()


def test_cli_refuses_with_one_error_line_and_exit_2(tmp_path):
    marker = tmp_path / "marker"
    data = mult_dict()
    data["train"]["text"] = Payload(os.system, f"touch {marker}")
    path = _write(tmp_path / "evil.pkl", pickle.dumps(data))
    proc = subprocess.run([sys.executable, "-m", "mplmm", "train", "--data_path", str(path), "--num_epochs", "1",
                           "--out", str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0] == (f"error: {path}: refusing to load pickle global 'posix.system' (not needed by any supported "
                        f"dataset layout); {OPT_OUT}")
    assert not marker.exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["numpy.load", "numpy.fromfile", "numpy.memmap", "numpy.lib.format.read_array",
                                  "numpy._core.multiarray.fromfile", "numpy.frompyfunc", "builtins.getattr",
                                  "builtins.__import__", "__builtin__.eval", "copy_reg._reconstructor",
                                  "pandas.read_pickle", "numpy._core._internal._convert_to_stringdtype_kwargs",
                                  "torch.load"])
def test_other_globals_are_refused_by_name(tmp_path, name):
    module, _, attr = name.rpartition(".")
    path = _write(tmp_path / "g.pkl", b"\x80\x02c" + module.encode() + b"\n" + attr.encode() + b"\n.")
    _refused(path, f"to load pickle global '{name}'")


def test_odd_global_names_stay_on_one_line(tmp_path):
    long = "x" * 300
    path = _write(tmp_path / "g.pkl", b"\x80\x04\x8c\x04os\nx\x8c\x06system\x93.")
    _refused(path, "to load pickle global 'os\\nx.system'")
    path = _write(tmp_path / "h.pkl", b"\x80\x04\x8c\x02os\x8d" + struct.pack("<Q", 300) + long.encode() + b"\x93.")
    _refused(path, f"to load pickle global 'os.{long[:114]}...'")


# ---------------------------------------------------------------- numpy is not a way around it

def test_numpy_ndarray_called_with_a_buffer_is_refused(tmp_path):
    """``numpy.ndarray((1,), object, buffer)`` would read the bytes as an object pointer."""
    data = mult_dict()
    data["train"]["id"] = Payload(np.ndarray, (1,), np.dtype("O"), bytearray(b"\x10" * 8))
    path = _write(tmp_path / "raw.pkl", pickle.dumps(data, protocol=4))
    _refused(path, "a call of numpy.ndarray")


class EditedDtype:
    """A dtype whose pickled state puts an object field in a 1-byte item: plain pickle corrupts memory with it."""

    def __reduce__(self):
        return np.dtype, ("V16", False, True), (3, "|", None, ("a",), {"a": (np.dtype("O"), 0)}, 1, 1, 63)


class ArrayWithDtype:
    def __init__(self, dtype, data):
        self.dtype, self.data = dtype, data

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        return _reconstruct, (np.ndarray, (0,), b"b"), (1, (len(self.data),), self.dtype, False, self.data)


def test_edited_dtype_state_is_refused(tmp_path):
    data = mult_dict()
    data["train"]["id"] = ArrayWithDtype(EditedDtype(), [("x",), ("y",), ("z",)])
    path = _write(tmp_path / "dtype.pkl", pickle.dumps(data, protocol=4))
    _refused(path, "a numpy structured or void dtype")


def test_dtype_kinds_outside_the_layouts_are_refused(tmp_path):
    path = _write(tmp_path / "dt.pkl", pickle.dumps({"train": {"t": np.array(["2020-01-01"], "datetime64[D]")}}))
    _refused(path, "a numpy datetime64 dtype")


def test_codecs_encode_only_as_python_writes_bytes(tmp_path):
    path = _write(tmp_path / "c.pkl", b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x04\x00\x00\x00zlib\x86R.")
    _refused(path, "_codecs.encode of str with encoding 'zlib'")


# ---------------------------------------------------------------- unknown classes and the opt-out

@pytest.mark.parametrize("value", [Point(1, 2), Note("hello")], ids=["namedtuple", "dataclass"])
def test_unknown_harmless_class_is_refused_by_name_and_loads_when_trusted(tmp_path, value, capsys):
    data = mult_dict()
    data["train"]["extra"] = value
    path = _write(tmp_path / "own.pkl", pickle.dumps(data, protocol=4))
    name = f"{type(value).__module__}.{type(value).__qualname__}"
    _refused(path, f"to load pickle global '{name}'")
    assert load_dataset(path, verbose=False, trust_pickle=True).format == "mult_pickle"
    assert detect_format(path, trust_pickle=True) == "mult_pickle"
    assert read_mult_pickle(path, trust_pickle=True).format == "mult_pickle"
    argv = ["params", "--data_path", str(path), "--model", "mult"]
    assert cli_main(argv) == 2
    assert capsys.readouterr().err.strip() == f"error: {path}: refusing to load pickle global '{name}' (not needed " \
                                              f"by any supported dataset layout); {OPT_OUT}"
    assert cli_main(argv + ["--trust_pickle"]) == 0
    mmsa = mmsa_dict()
    mmsa["test"]["extra"] = value
    path = _write(tmp_path / "mmsa.pkl", pickle.dumps(mmsa, protocol=4))
    _refused(path, f"to load pickle global '{name}'", read_mmsa_pickle)
    assert read_mmsa_pickle(path, trust_pickle=True).format == "mmsa_pickle"


@pytest.mark.parametrize("command", ["train", "evaluate", "curve", "params"])
def test_trust_pickle_flag_on_every_subcommand_that_reads_data(command):
    extra = ["best.pt"] if command in ("evaluate", "curve") else []
    parser = build_parser()
    assert parser.parse_args([command, *extra]).trust_pickle is False
    assert parser.parse_args([command, *extra, "--trust_pickle"]).trust_pickle is True


# ---------------------------------------------------------------- every supported layout still loads

@pytest.mark.parametrize("numpy_names", ["numpy2", "numpy1"])
@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("layout", ["mult", "mmsa"])
def test_layouts_load_as_plain_pickle_loads_them(tmp_path, layout, protocol, numpy_names):
    data = mult_dict() if layout == "mult" else mmsa_dict()
    blob = pickle.dumps(data, protocol=protocol)
    if numpy_names == "numpy1":
        blob = numpy1_names(blob)
        assert b"numpy._core" not in blob and b"numpy.core" in blob
    path = _write(tmp_path / "data.pkl", blob)
    safe, plain = _both(path)
    _same_tree(safe, plain)
    _same_tree(safe, data)
    ds = load_dataset(path, verbose=False)
    assert ds.format == f"{layout}_pickle" and len(ds["valid"]) == 4
    if layout == "mult":
        assert ds["train"].ids[0] == "vidtrain000_0_0.0"
        assert np.array_equal(ds["test"].labels, data["test"]["labels"].reshape(-1))
    else:
        assert ds["train"].lengths["audio"].tolist() == data["train"]["audio_lengths"]


@pytest.mark.parametrize("layout", ["mult", "mmsa"])
def test_python2_latin1_pickles_load(tmp_path, layout):
    data = mult_dict() if layout == "mult" else mmsa_dict()
    if layout == "mmsa":  # py2 MMSA files: raw_text and ids as py2 str (bytes here), lengths as lists
        for d in data.values():
            d["id"] = np.array([s.encode() for s in d["id"]], dtype=object)
            d["vision_lengths"] = d["vision_lengths"].tolist()
    path = _write(tmp_path / "py2.pkl", py2_pickle(data))
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(path.read_bytes())  # float data in py2 str: only the latin1 retry reads it
    safe, plain = _both(path)
    _same_tree(safe, plain)
    assert safe["train"]["text"].dtype == np.float32 and np.array_equal(safe["train"]["text"], data["train"]["text"])
    ds = load_dataset(path, verbose=False)
    assert ds.format == f"{layout}_pickle"
    assert np.array_equal(ds["valid"].text, data["valid"]["text"])
    if layout == "mult":
        assert ds["valid"].ids[1] == "vidvalid000_1_1.5"


@pytest.mark.parametrize("layout", ["iemocap", "1-5", "mmsa", "mmsa_classes"])
def test_original_layout_fixtures_load_as_plain_pickle_loads_them(tmp_path, layout):
    path = (O.mmsa_pickle(tmp_path / "m.pkl", classes=["a", "b"] if layout == "mmsa_classes" else None)
            if layout.startswith("mmsa") else O.mult_pickle(tmp_path / "m.pkl", layout))
    safe, plain = _both(path)
    _same_tree(safe, plain)
    assert load_dataset(path, verbose=False).format == ("mmsa_pickle" if layout.startswith("mmsa") else "mult_pickle")


@pytest.mark.parametrize("fmt", ["mult_pickle", "mmsa_pickle"])
def test_own_writer_files_load(tmp_path, fmt):
    ds = make_synthetic("iemocap" if fmt == "mult_pickle" else "mosi", seq_lens=(2, 3, 2), sizes=(8, 4, 4))
    path = save_dataset(ds, tmp_path / "w.pkl", fmt)
    safe, plain = _both(path)
    _same_tree(safe, plain)
    back = load_dataset(path, verbose=False)
    assert back.format == fmt and back.class_names == ds.class_names
    assert np.array_equal(back["test"].ids, ds["test"].ids)


@pytest.mark.skipif(not SHARED_PKL.is_file(), reason=f"shared data not found at {SHARED_PKL}")
def test_shared_real_file_loads_as_plain_pickle_loads_it():
    safe, plain = _both(SHARED_PKL)
    _same_tree(safe, plain)
    assert load_dataset(SHARED_PKL, verbose=False).format == "mmsa_pickle"


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_scalars_and_containers_load_at_every_protocol(tmp_path, protocol):
    value = {"f": np.float64(1.5), "i": np.int32(-3), "b": np.bool_(True), "s": np.str_("é"), "y": np.bytes_(b"\xff"),
             "set": {1, 2}, "frozen": frozenset("ab"), "od": collections.OrderedDict(z=1, a=2), "c": 1 + 2j,
             "ba": bytearray(b"\x00\xff"), "bytes": b"\x00\xff", "big": 2 ** 80, "none": None, "t": (1.0, "x"),
             "dtype": np.dtype(">i2"), "u": np.array(["ab", "c"]), "S": np.array([b"a\xff"]),
             "shared": [np.arange(3)] * 2, "f16": np.ones((2, 2), np.float16).T, "c64": np.ones(2, np.complex64)}
    path = _write(tmp_path / "v.pkl", pickle.dumps(value, protocol=protocol))
    safe, plain = _both(path)
    _same_tree(safe, plain)
    assert safe["shared"][0] is safe["shared"][1]
