"""Small shared helpers: seeding and random states, devices and runtime settings, provenance, atomic writes.

:func:`atomic_write` is the one way files are written in place (checkpoints, ``metrics.json``, masks, datasets).
"""
from __future__ import annotations

import json
import os
import platform
import random
import secrets
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Union

import numpy as np
import torch

PathLike = Union[str, os.PathLike]


def seed_everything(seed: int) -> None:
    """Seed ``random``, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def rng_state(device: torch.device | str = "cpu") -> dict[str, Any]:
    """Every global random generator a run may draw from: torch's CPU one, the CUDA ones (all devices, when
    ``device`` is CUDA), Python's and NumPy's. Tensors, tuples and numbers only: loadable with ``weights_only=True``."""
    _, mt, gauss = random.getstate()
    _, key, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": (torch.tensor(mt, dtype=torch.int64), gauss),
                             "numpy": (torch.from_numpy(key.astype(np.int64)), int(pos), int(has_gauss),
                                       float(cached))}
    if torch.device(device).type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (entries it lacks are left alone; CUDA devices beyond those present are
    skipped)."""
    torch.set_rng_state(state["torch"])
    if "python" in state:
        mt, gauss = state["python"]
        random.setstate((3, tuple(int(v) for v in mt.tolist()), gauss))
    if "numpy" in state:
        key, pos, has_gauss, cached = state["numpy"]
        np.random.set_state(("MT19937", key.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        for i, s in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    from .errors import ConfigError

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use --device cpu or auto")
    return dev


def native_bf16() -> bool:
    """True on a CPU with native bfloat16 arithmetic (AVX512-BF16 or AMX-BF16 in ``/proc/cpuinfo``; elsewhere
    oneDNN's own check). Inference under bf16 autocast is faster there; elsewhere it is emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        flags = ""
    if flags:
        return " avx512_bf16" in flags or " amx_bf16" in flags
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def amp_active(device: torch.device | str, amp: bool) -> bool:
    """Whether ``amp`` (bfloat16 autocast) really applies on ``device``: always on CUDA, on CPUs only with native
    bfloat16 (:func:`native_bf16`); fp32 everywhere else."""
    dev = torch.device(device)
    return bool(amp) and (dev.type == "cuda" or (dev.type == "cpu" and native_bf16()))


def autocast_for(device: torch.device | str, amp: bool):
    """The autocast context inference runs under: bfloat16 where :func:`amp_active`, else a no-op."""
    dev = torch.device(device)
    return torch.autocast(dev.type, torch.bfloat16, enabled=amp_active(dev, amp))


@contextmanager
def runtime_settings(deterministic: bool = False, tf32: bool = False) -> Iterator[None]:
    """Within the block: TF32 matmuls/convolutions on CUDA only when ``tf32``; with ``deterministic``, torch's
    deterministic algorithms (errors, not warnings, for ops without one), deterministic cuDNN without benchmarking and
    ``CUBLAS_WORKSPACE_CONFIG`` (if unset; it takes effect only before cuBLAS first starts: set it in the environment
    for a whole process). The process-wide settings are restored afterwards."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             cudnn.deterministic, cudnn.benchmark, matmul.allow_tf32, cudnn.allow_tf32)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=False)
        cudnn.deterministic, cudnn.benchmark = True, False
    matmul.allow_tf32 = cudnn.allow_tf32 = bool(tf32)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        cudnn.deterministic, cudnn.benchmark, matmul.allow_tf32, cudnn.allow_tf32 = saved[2:]


def runtime_info(device: torch.device | str, amp: bool = False) -> dict[str, Any]:
    """The device a run actually used and how: type, name, CUDA and cuDNN versions, precision (``fp32`` or
    ``bf16-amp``; autocast is CUDA-only), TF32 and deterministic algorithms as currently set, CPU threads."""
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    return {
        "device": str(dev),
        "type": dev.type,
        "name": torch.cuda.get_device_name(dev) if cuda else (platform.processor() or platform.machine()),
        "capability": "{}.{}".format(*torch.cuda.get_device_capability(dev)) if cuda else None,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "precision": "bf16-amp" if amp and cuda else "fp32",
        "tf32": bool(cuda and torch.backends.cuda.matmul.allow_tf32),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "cpu_threads": torch.get_num_threads(),
    }


def git_commit(path: PathLike | None = None) -> str:
    """The git commit of the checkout holding this package (``"unknown"`` outside git), ``+dirty`` if modified."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("+dirty" if dirty else "")) if sha else "unknown"


def provenance() -> dict[str, Any]:
    """Versions, git commit, host facts and time: recorded with every result."""
    from . import __version__

    return {
        "mplmm": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def temp_sibling(path: PathLike, make: Callable[[Path], Any]) -> Path:
    """Create a new temporary sibling of ``path`` (a hidden, unique name in the same folder) with ``make(name)``,
    which must fail with :class:`FileExistsError` when the name is taken (``os.open`` with ``O_EXCL``, ``os.mkdir``);
    returns its name. Unlike :mod:`tempfile` (always 0600 / 0700), what ``make`` creates keeps the user's umask."""
    path = Path(path)
    for _ in range(100):
        candidate = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            make(candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"{path}: no free temporary name beside it")


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (the rename) to disk where the platform allows opening folders."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Write a file atomically: ``write(fileobj)`` fills a temporary file beside ``path`` (opened ``wb``), which is
    flushed, fsync-ed and renamed onto ``path`` with :func:`os.replace`; on any error it is removed and ``path`` is
    left as it was. The file gets the permissions of a plain ``open(path, "w")``: ``0666 & ~umask``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fds: list[int] = []
    tmp = temp_sibling(path, lambda name: fds.append(os.open(name, flags, 0o666)))
    try:
        with os.fdopen(fds[0], "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def jsonable(obj: Any) -> Any:
    """``obj`` with NumPy scalars and arrays, tuples and paths turned into what ``json`` writes."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: PathLike, data: Any) -> Path:
    """Atomically write ``data`` as indented JSON (NumPy scalars and arrays converted)."""
    text = json.dumps(jsonable(data), indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def read_json(path: PathLike) -> dict:
    """The JSON mapping in ``path``: ``{}`` when the file is missing, unreadable or not a mapping."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
