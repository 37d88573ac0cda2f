"""Seeded missing-modality protocols (MPLMM sample-level, ComP entry-level, EMT-DLFR frame-level, OpenVNA / CIDer
structural and temporal drops) and seeded feature noise (a corruption, kept apart from missingness).

Every mask is a pure function of ``(protocol, rate, seed, split, sample id)``: nothing depends on the number of
samples, their order, the batch they fall into, or global RNG state.  The building block is a per-sample uniform

    u(stream) = (uint64(blake2b(f"{protocol}|{seed}|{split}|{sample_id}|{stream}", 8 bytes, little-endian)) >> 11) / 2**53

which lies in ``[0, 1)``.  Independent decisions use independent ``stream`` names, which makes the missing set
*nested* in the rate (a sample missing at rate 0.3 is also missing at 0.5, with the same mode) — the right property
for robustness curves.  See ``docs/protocol_metrics.md`` for the full description.

Protocols (``rate`` = r or p):

* ``"modality"`` (MPLMM; ``docs/protocol_metrics.md``, "Three protocols"): missing iff ``u("missing") < p``; the mode is
  ``floor(6 * u("mode"))`` ∈ {0..5}; otherwise mode 6 (complete).
* ``"entry"`` (ComP-style): modality m is drawn missing iff ``u(f"entry:{m}") < r``; when all three are drawn
  missing, the modality with the **largest** of the three uniforms is kept (uniform over the three by symmetry, and it
  keeps the missing set nested in r).
* ``"frame"`` (EMT-DLFR): all samples keep mode 6; each time step of each modality is dropped i.i.d. with
  probability r (kept iff its uniform ``>= r``), see :func:`draw_frame_masks`.
* ``"block"`` (OpenVNA structural feature drop): all samples keep mode 6; in each modality of each sample one
  contiguous block of ``L = floor(r * T + 1/2)`` of its ``T`` recorded steps is dropped, starting at
  ``floor(u(f"block:{m}") * (T - L + 1))``; the start uniform is drawn once, so the block only grows with r.
* ``"temporal"`` (CIDer TMFM / NIAT temporal missing): i.i.d. drops on one time axis shared by the three modalities
  (step t of a modality with T recorded steps reads position ``floor(t * G / T)`` of a grid of G = max padded length
  uniforms): a dropped instant is dropped in every modality at once.
* ``"temporal_block"`` (CIDer STMFM, structural temporal missing): one contiguous block on the shared relative time
  axis, dropped in every modality: as ``"block"`` with one start uniform ``u("block")`` for the three modalities.
* ``"observed"``: no simulated drop (the rate is ignored): every sample keeps what was really recorded.

The four frame-level protocols (:data:`FRAME_PROTOCOLS`) make per-time-step masks (:func:`draw_frame_masks`): a
prediction then depends on which steps are kept, not only on the sample's mode, so the 7-pass curve cache of
:mod:`mplmm.evaluate` cannot answer them (one forward pass per rate and mask seed).

**Noise** (:class:`NoiseSpec`, :func:`draw_noise`) is not missingness: it adds seeded Gaussian noise to the features
that are there and never marks anything absent; results record it in its own ``noise`` column.

**Real absence.** A dataset records which modalities each sample really has (``Split.present``). The mode a sample
is evaluated or trained in is :func:`effective_modes`: the intersection of what is present and what the protocol
keeps, so a simulated mask never restores an absent modality. When the intersection is empty (the protocol drops
the only modalities a sample has), the sample keeps what it has. For fully present data the modes are the drawn
ones, unchanged.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

import numpy as np

from .constants import COMPLETE_MODE, MODALITIES, N_MODES, PRESENT_ROWS, present_to_mode
from .errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

PROTOCOLS: tuple[str, ...] = ("modality", "entry", "frame", "block", "temporal", "temporal_block", "observed")
#: protocols that drop time steps (frame masks); every sample keeps mode 6 and the 7-pass cache does not apply
FRAME_PROTOCOLS: tuple[str, ...] = ("frame", "block", "temporal", "temporal_block")
#: protocols that drop whole modalities (one mode per sample): the 7-pass cache answers them
MODE_PROTOCOLS: tuple[str, ...] = ("modality", "entry")

#: (7, 3) bool table: row = mode, columns = present flags (text, audio, vision).
PRESENT_TABLE: np.ndarray = np.array(PRESENT_ROWS, dtype=bool)

_TWO_POW_M53 = 1.0 / float(1 << 53)
_PRESENT_TENSORS: dict[Any, "torch.Tensor"] = {}


# --------------------------------------------------------------------------------------------------------------------
# spec
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class MissingSpec:
    """Which protocol, at which rate, with which seed; ``force_mode`` gives every sample one fixed mode."""

    protocol: str = "modality"
    rate: float = 0.0
    seed: int = 0
    force_mode: Optional[int] = None

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"MissingSpec: protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float, np.integer, np.floating)):
            raise ConfigError(f"MissingSpec: rate must be a number in [0, 1], got {self.rate!r}")
        rate = float(self.rate)
        if not (0.0 <= rate <= 1.0):  # also rejects NaN
            raise ConfigError(f"MissingSpec: rate must be in [0, 1], got {self.rate!r}")
        self.rate = rate
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ConfigError(f"MissingSpec: seed must be an integer, got {self.seed!r}")
        self.seed = int(self.seed)
        if self.force_mode is not None:
            if isinstance(self.force_mode, bool) or not isinstance(self.force_mode, (int, np.integer)):
                raise ConfigError(f"MissingSpec: force_mode must be an integer in 0..6 or None, got {self.force_mode!r}")
            if not (0 <= int(self.force_mode) < N_MODES):
                raise ConfigError(f"MissingSpec: force_mode must be in 0..{N_MODES - 1}, got {self.force_mode!r}")
            self.force_mode = int(self.force_mode)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of the four fields."""
        return {"protocol": self.protocol, "rate": self.rate, "seed": self.seed, "force_mode": self.force_mode}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MissingSpec":
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        unknown = set(d) - {"protocol", "rate", "seed", "force_mode"}
        if unknown:
            raise ConfigError(f"MissingSpec.from_dict: unknown keys {sorted(unknown)}")
        return cls(**dict(d))


# --------------------------------------------------------------------------------------------------------------------
# hashing
# --------------------------------------------------------------------------------------------------------------------
def _as_id_list(ids: Union[Sequence[Any], np.ndarray]) -> list[str]:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {arr.shape}")
    return [str(x) for x in arr.tolist()]


def _digests(prefix: str, ids: Union[Sequence[Any], np.ndarray], suffix: str) -> np.ndarray:
    """uint64 (N,): blake2b(``prefix + id + suffix``), little-endian, 8-byte digest, per id."""
    digests = b"".join(
        hashlib.blake2b((prefix + sid + suffix).encode("utf-8"), digest_size=8).digest() for sid in _as_id_list(ids)
    )
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def hash_uint64(spec: MissingSpec, ids: Union[Sequence[Any], np.ndarray], split: str, stream: str) -> np.ndarray:
    """uint64 (N,) from blake2b(``f"{protocol}|{seed}|{split}|{id}|{stream}"``), little-endian, 8-byte digest."""
    return _digests(f"{spec.protocol}|{spec.seed}|{split}|", ids, f"|{stream}")


def sample_uniforms(spec: MissingSpec, ids: Union[Sequence[Any], np.ndarray], split: str, stream: str) -> np.ndarray:
    """Per-sample uniforms in [0, 1): the top 53 bits of :func:`hash_uint64` divided by 2**53 (float64, (N,))."""
    h = hash_uint64(spec, ids, split, stream)
    return (h >> np.uint64(11)).astype(np.float64) * _TWO_POW_M53


# --------------------------------------------------------------------------------------------------------------------
# modes
# --------------------------------------------------------------------------------------------------------------------
def draw_modes(spec: MissingSpec, ids: Union[Sequence[Any], np.ndarray], split: str) -> np.ndarray:
    """Missing mode (0..6, see :data:`mplmm.constants.MODE_PRESENT`) per sample, int64 (N,)."""
    n = len(np.asarray(ids))
    if spec.force_mode is not None:
        _as_id_list(ids)  # validate shape
        return np.full(n, spec.force_mode, dtype=np.int64)
    if spec.protocol in FRAME_PROTOCOLS or spec.protocol == "observed" or n == 0:
        _as_id_list(ids)
        return np.full(n, COMPLETE_MODE, dtype=np.int64)
    if spec.protocol == "modality":
        missing = sample_uniforms(spec, ids, split, "missing") < spec.rate
        which = np.minimum((sample_uniforms(spec, ids, split, "mode") * 6.0).astype(np.int64), 5)
        return np.where(missing, which, COMPLETE_MODE).astype(np.int64)
    # entry protocol
    u = np.stack([sample_uniforms(spec, ids, split, f"entry:{m}") for m in MODALITIES], axis=1)  # (N, 3)
    present = u >= spec.rate
    none_left = ~present.any(axis=1)
    keep = np.argmax(u, axis=1)  # the last modality to go missing as r grows
    present[none_left, keep[none_left]] = True
    return present_matrix_to_modes(present)


def present_matrix_to_modes(present: np.ndarray) -> np.ndarray:
    """(N, 3) bool present flags → int64 modes via :func:`mplmm.constants.present_to_mode`."""
    present = np.asarray(present, dtype=bool)
    if present.ndim != 2 or present.shape[1] != 3:
        raise ValueError(f"present must have shape (N, 3), got {present.shape}")
    lut = np.full(8, -1, dtype=np.int64)
    for t in (False, True):
        for a in (False, True):
            for v in (False, True):
                if t or a or v:
                    lut[4 * t + 2 * a + v] = present_to_mode(t, a, v)
    code = 4 * present[:, 0].astype(np.int64) + 2 * present[:, 1] + present[:, 2]
    modes = lut[code]
    if (modes < 0).any():
        raise ValueError("present_matrix_to_modes: a sample has all three modalities missing")
    return modes


def effective_modes(modes: Any, present: Optional[np.ndarray]) -> np.ndarray:
    """The mode each sample really runs in: the modalities its (simulated) mode keeps that were also recorded.

    ``present`` ``(N, 3)`` bool (None: everything recorded, ``modes`` unchanged). Where the two share no modality,
    the sample keeps its recorded ones: a simulation never removes a sample's last modality.
    """
    modes = _check_modes(modes)
    if present is None:
        return modes
    present = np.asarray(present, dtype=bool)
    if present.shape != (modes.shape[0], 3):
        raise ValueError(f"present must have shape ({modes.shape[0]}, 3), got {present.shape}")
    if present.all():
        return modes
    keep = PRESENT_TABLE[modes] & present
    empty = ~keep.any(axis=1)
    keep[empty] = present[empty]
    return present_matrix_to_modes(keep)


def _check_modes(modes: Any) -> np.ndarray:
    m = np.asarray(modes)
    if m.ndim != 1:
        raise ValueError(f"modes must be 1-D, got shape {m.shape}")
    if m.size and (not np.issubdtype(m.dtype, np.integer) or m.min() < 0 or m.max() >= N_MODES):
        raise ValueError(f"modes must be integers in 0..{N_MODES - 1}")
    return m.astype(np.int64)


def present_matrix(modes: Any) -> np.ndarray:
    """bool (N, 3): column j is True iff modality ``MODALITIES[j]`` is present under the sample's mode."""
    return PRESENT_TABLE[_check_modes(modes)]


def mode_counts(modes: Any) -> dict[int, int]:
    """Number of samples per mode, for all modes 0..6 (zeros included)."""
    counts = np.bincount(_check_modes(modes), minlength=N_MODES)
    return {m: int(counts[m]) for m in range(N_MODES)}


# --------------------------------------------------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------------------------------------------------
def _seq_lens_dict(seq_lens: Union[Mapping[str, int], Sequence[int]]) -> dict[str, int]:
    if isinstance(seq_lens, Mapping):
        missing = [m for m in MODALITIES if m not in seq_lens]
        if missing:
            raise ValueError(f"seq_lens lacks modalities {missing}")
        d = {m: int(seq_lens[m]) for m in MODALITIES}
    else:
        vals = list(seq_lens)
        if len(vals) != 3:
            raise ValueError(f"seq_lens must give 3 lengths (text, audio, vision), got {vals}")
        d = {m: int(v) for m, v in zip(MODALITIES, vals)}
    if any(v < 0 for v in d.values()):
        raise ValueError(f"seq_lens must be non-negative, got {d}")
    return d


def _valid_lengths(lengths: Optional[np.ndarray], n: int, lens: Mapping[str, int]) -> np.ndarray:
    """int64 ``(N, 3)``: the recorded lengths (clipped to the padded ones), or the padded lengths when None."""
    padded = np.array([lens[m] for m in MODALITIES], dtype=np.int64)
    if lengths is None:
        return np.broadcast_to(padded, (n, 3)).copy()
    arr = np.asarray(lengths)
    if arr.shape != (n, 3) or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"lengths must be integers of shape ({n}, 3), got {arr.dtype} {arr.shape}")
    return np.clip(arr.astype(np.int64), 0, padded)


def block_lengths(rate: float, lengths: np.ndarray) -> np.ndarray:
    """Steps a block drops at ``rate`` out of ``lengths`` recorded ones: ``floor(rate * T + 1/2)`` (halves round up,
    so the count never shrinks as the rate grows)."""
    return np.floor(float(rate) * np.asarray(lengths, dtype=np.float64) + 0.5).astype(np.int64)


def _block_masks(spec: MissingSpec, ids: Any, split: str, lens: Mapping[str, int], valid: np.ndarray) -> dict:
    """``block`` / ``temporal_block``: one contiguous dropped block per (sample, modality), nested in the rate."""
    if spec.protocol == "block":  # a start uniform per modality
        u = np.stack([sample_uniforms(spec, ids, split, f"block:{m}") for m in MODALITIES], axis=1)
    else:  # one start uniform for the three modalities: the same relative position
        u = np.repeat(sample_uniforms(spec, ids, split, "block")[:, None], 3, axis=1)
    size = block_lengths(spec.rate, valid)
    start = np.floor(u * (valid - size + 1)).astype(np.int64)
    out = {}
    for j, m in enumerate(MODALITIES):
        t = np.arange(lens[m])[None, :]
        out[m] = ~((t >= start[:, j:j + 1]) & (t < start[:, j:j + 1] + size[:, j:j + 1]))
    return out


def _temporal_masks(spec: MissingSpec, ids: Any, split: str, lens: Mapping[str, int], valid: np.ndarray) -> dict:
    """``temporal``: i.i.d. drops on a grid of G shared instants; modality step t reads instant ``t * G // T``."""
    grid = max(max(lens.values()), 1)
    seeds = hash_uint64(spec, ids, split, "temporal")
    u = np.empty((len(seeds), grid), dtype=np.float64)
    for i, s in enumerate(seeds.tolist()):
        u[i] = np.random.default_rng(s).random(grid)
    out = {}
    for j, m in enumerate(MODALITIES):
        t = np.arange(lens[m])[None, :]
        length = valid[:, j:j + 1]
        instant = np.minimum(t * grid // np.maximum(length, 1), grid - 1)
        dropped = np.take_along_axis(u, instant, axis=1) < spec.rate
        out[m] = ~(dropped & (t < length))
    return out


def draw_frame_masks(
    spec: MissingSpec,
    ids: Union[Sequence[Any], np.ndarray],
    split: str,
    seq_lens: Union[Mapping[str, int], Sequence[int]],
    lengths: Optional[np.ndarray] = None,
) -> dict[str, np.ndarray]:
    """Per-frame keep masks ``{modality: bool (N, T_m)}`` (True = kept) of the frame-level protocols.

    * ``frame``: sample i gets ``rng = np.random.default_rng(hash_uint64(..., stream="frame")[i])``, which draws
      ``T_text``, then ``T_audio``, then ``T_vision`` uniforms; a frame is kept iff its uniform ``>= rate`` (padded
      steps included; ``lengths`` is not used).
    * ``block``, ``temporal_block``, ``temporal``: see the module docstring; they act on each sample's recorded steps
      ``lengths`` ``(N, 3)`` (end padding after them; None: the padded lengths), padding stays True.

    Masks are nested in the rate and independent of N and of id order. Other protocols: all True.
    """
    lens = _seq_lens_dict(seq_lens)
    n = len(_as_id_list(ids))
    if spec.protocol not in FRAME_PROTOCOLS or spec.rate == 0.0 or n == 0:
        return {m: np.ones((n, lens[m]), dtype=bool) for m in MODALITIES}
    if spec.protocol in ("block", "temporal_block"):
        return _block_masks(spec, ids, split, lens, _valid_lengths(lengths, n, lens))
    if spec.protocol == "temporal":
        return _temporal_masks(spec, ids, split, lens, _valid_lengths(lengths, n, lens))
    seeds = hash_uint64(spec, ids, split, "frame")
    total = sum(lens.values())
    u = np.empty((n, total), dtype=np.float64)
    for i, s in enumerate(seeds.tolist()):
        u[i] = np.random.default_rng(s).random(total)
    kept = u >= spec.rate
    out: dict[str, np.ndarray] = {}
    start = 0
    for m in MODALITIES:
        out[m] = np.ascontiguousarray(kept[:, start:start + lens[m]])
        start += lens[m]
    return out


# --------------------------------------------------------------------------------------------------------------------
# epochs and fractions
# --------------------------------------------------------------------------------------------------------------------
def epoch_spec(spec: MissingSpec, epoch: int) -> MissingSpec:
    """Spec for training epoch ``epoch``: same protocol/rate/force_mode, seed = 63-bit blake2b of (seed, epoch)."""
    digest = hashlib.blake2b(f"epoch|{spec.seed}|{int(epoch)}".encode("utf-8"), digest_size=8).digest()
    new_seed = int.from_bytes(digest, "little") >> 1
    return MissingSpec(spec.protocol, spec.rate, new_seed, spec.force_mode)


def missing_entry_fraction(modes: Any, frame_masks: Optional[Mapping[str, np.ndarray]] = None) -> float:
    """Observed fraction of missing (sample, modality) entries.

    With ``frame_masks``: for each modality the fraction of missing (sample, frame) entries (a frame is missing if
    its modality is missing or the frame is dropped), averaged over the three modalities.
    """
    present = present_matrix(modes)
    if present.shape[0] == 0:
        return 0.0
    if frame_masks is None:
        return float(1.0 - present.mean())
    fracs = []
    for j, m in enumerate(MODALITIES):
        fm = np.asarray(frame_masks[m], dtype=bool)
        if fm.shape[0] != present.shape[0]:
            raise ValueError(f"frame_masks[{m!r}] has {fm.shape[0]} rows, modes has {present.shape[0]}")
        if fm.shape[1] == 0:
            fracs.append(float(1.0 - present[:, j].mean()))
            continue
        fracs.append(float(1.0 - (fm & present[:, j:j + 1]).mean()))
    return float(np.mean(fracs))


def expected_missing_fraction(protocol: str, rate: float) -> float:
    """Analytic expected fraction of missing entries.

    * modality: p/2 (a missing sample lacks 1 or 2 of 3 modalities with equal probability → 1.5/3);
    * entry: r − r³/3 (each modality drawn missing w.p. r; when all three are drawn missing, probability r³, one of
      the three — each with probability 1/3 — is restored);
    * frame, temporal: r (fraction of dropped frames);
    * block, temporal_block: r up to the rounding of the block length ``floor(r * T + 1/2)`` to whole steps;
    * observed: 0 (nothing is simulated).
    """
    spec = MissingSpec(protocol, rate)
    p = spec.rate
    if protocol == "observed":
        return 0.0
    if protocol == "modality":
        return p / 2.0
    if protocol == "entry":
        return p - p ** 3 / 3.0
    return p


# --------------------------------------------------------------------------------------------------------------------
# applying masks
# --------------------------------------------------------------------------------------------------------------------
def present_table(device: Any = "cpu") -> "torch.Tensor":
    """:data:`PRESENT_TABLE` as a ``(7, 3)`` bool tensor on ``device``, cached per device (no copy per call)."""
    import torch

    dev = torch.device(device)
    table = _PRESENT_TENSORS.get(dev)
    if table is None:
        with torch.inference_mode(False):  # usable in autograd even when first asked for under inference_mode
            table = _PRESENT_TENSORS[dev] = torch.tensor(PRESENT_TABLE.tolist(), dtype=torch.bool, device=dev)
    return table


def apply_missing_torch(
    text: "torch.Tensor",
    audio: "torch.Tensor",
    vision: "torch.Tensor",
    modes: Any,
    frame_masks: Optional[Mapping[str, Any]] = None,
    fill: float = 0.0,
) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
    """Return copies of ``(text, audio, vision)`` (each (B, T, D)) with missing modalities and dropped frames = ``fill``.

    The range of ``modes`` is checked on the host only (NumPy or CPU tensors): reading it from an accelerator would
    synchronise every forward pass."""
    import torch

    tensors = (text, audio, vision)
    b = text.shape[0]
    modes_t = torch.as_tensor(np.asarray(modes) if not isinstance(modes, torch.Tensor) else modes)
    if modes_t.ndim != 1 or modes_t.shape[0] != b:
        raise ValueError(f"modes must have shape ({b},), got {tuple(modes_t.shape)}")
    if modes_t.device.type == "cpu" and modes_t.numel() and (int(modes_t.min()) < 0 or int(modes_t.max()) >= N_MODES):
        raise ValueError(f"modes must be integers in 0..{N_MODES - 1}")
    present = present_table(text.device)[modes_t.to(device=text.device, dtype=torch.long)]  # (B, 3)
    out = []
    for j, (name, x) in enumerate(zip(MODALITIES, tensors)):
        if x.shape[0] != b:
            raise ValueError(f"{name} has batch size {x.shape[0]}, text has {b}")
        keep = present[:, j].reshape((b,) + (1,) * (x.ndim - 1))
        if frame_masks is not None and frame_masks.get(name) is not None:
            fm = torch.as_tensor(np.asarray(frame_masks[name]) if not isinstance(frame_masks[name], torch.Tensor)
                                 else frame_masks[name]).to(device=x.device, dtype=torch.bool)
            if x.ndim < 2 or tuple(fm.shape) != (b, x.shape[1]):
                raise ValueError(f"frame_masks[{name!r}] has shape {tuple(fm.shape)}, expected ({b}, {x.shape[1] if x.ndim > 1 else '?'})")
            keep = keep & fm.reshape((b, x.shape[1]) + (1,) * (x.ndim - 2))
        out.append(torch.where(keep, x, torch.full((), fill, dtype=x.dtype, device=x.device)))
    return out[0], out[1], out[2]


# --------------------------------------------------------------------------------------------------------------------
# bundle
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class MissingMasks:
    """The exact masks one split was evaluated on: ``modes`` (N,), optional ``frame_masks``, the spec and split."""

    modes: np.ndarray
    spec: MissingSpec
    split: str
    frame_masks: Optional[dict[str, np.ndarray]] = None
    ids: Optional[np.ndarray] = None
    #: the mode of what each sample really has (6 = complete; None: everything recorded)
    observed: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return int(np.asarray(self.modes).shape[0])

    def present(self) -> np.ndarray:
        """bool (N, 3) present flags."""
        return present_matrix(self.modes)

    def missing_fraction(self) -> float:
        """Observed missing-entry fraction (see :func:`missing_entry_fraction`)."""
        return missing_entry_fraction(self.modes, self.frame_masks)

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-able dict (arrays as lists)."""
        return {
            "spec": self.spec.to_dict(),
            "split": self.split,
            "modes": np.asarray(self.modes).astype(int).tolist(),
            "mode_counts": {str(k): v for k, v in mode_counts(self.modes).items()},
            "missing_entry_fraction": self.missing_fraction(),
            "frame_masks": None if self.frame_masks is None
            else {m: np.asarray(v).astype(bool).tolist() for m, v in self.frame_masks.items()},
            "ids": None if self.ids is None else [str(x) for x in np.asarray(self.ids).tolist()],
            "observed": None if self.observed is None else np.asarray(self.observed).astype(int).tolist(),
        }

    def save(self, path: Union[str, Path]) -> Path:
        """Write a ``.npz`` atomically (:func:`mplmm.utils.atomic_write`); loads without pickle."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        arrays: dict[str, np.ndarray] = {
            "modes": np.asarray(self.modes, dtype=np.int64),
            "spec_json": np.array(json.dumps(self.spec.to_dict())),
            "split": np.array(self.split),
        }
        if self.ids is not None:
            arrays["ids"] = np.asarray([str(x) for x in np.asarray(self.ids).tolist()], dtype=str)
        if self.observed is not None:
            arrays["observed"] = np.asarray(self.observed, dtype=np.int64)
        if self.frame_masks is not None:
            for m, v in self.frame_masks.items():
                arrays[f"frame__{m}"] = np.asarray(v, dtype=bool)
        from .utils import atomic_write

        return atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))

    @classmethod
    def load(cls, path: Union[str, Path]) -> "MissingMasks":
        """Read a file written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as z:
            spec = MissingSpec.from_dict(json.loads(str(z["spec_json"])))
            frames = {k[len("frame__"):]: z[k].astype(bool) for k in z.files if k.startswith("frame__")}
            return cls(
                modes=z["modes"].astype(np.int64),
                spec=spec,
                split=str(z["split"]),
                frame_masks=frames or None,
                ids=z["ids"] if "ids" in z.files else None,
                observed=z["observed"] if "observed" in z.files else None,
            )


def eval_masks(
    spec: MissingSpec,
    split_obj_or_ids: Any,
    split: str,
    seq_lens: Optional[Union[Mapping[str, int], Sequence[int]]] = None,
    present: Optional[np.ndarray] = None,
    lengths: Optional[np.ndarray] = None,
) -> MissingMasks:
    """Modes (and, for the frame protocol, frame masks) for one split.

    ``split_obj_or_ids`` is a :class:`mplmm.data.schema.Split` (its ``ids`` and ``present``; ``seq_lens`` default to
    its array lengths) or a 1-D sequence of ids (then ``present``, ``(N, 3)``, says what is really recorded).
    ``seq_lens`` is required for the frame-level protocols when ids are given; ``lengths`` ``(N, 3)`` (a Split's own
    :meth:`~mplmm.data.schema.Split.length_matrix` by default) are the recorded steps the block and temporal drops
    act on. The modes are :func:`effective_modes` of the drawn ones: never a modality the sample does not have.
    """
    if hasattr(split_obj_or_ids, "ids") and hasattr(split_obj_or_ids, "text"):
        ids = np.asarray(split_obj_or_ids.ids)
        if present is None:
            present = getattr(split_obj_or_ids, "present", None)
        if lengths is None and hasattr(split_obj_or_ids, "length_matrix"):
            lengths = split_obj_or_ids.length_matrix()
        if seq_lens is None:
            seq_lens = [int(split_obj_or_ids.modality(m).shape[1]) for m in MODALITIES]
    else:
        ids = np.asarray(split_obj_or_ids)
    modes = effective_modes(draw_modes(spec, ids, split), present)
    observed = None if present is None or np.asarray(present).all() else present_matrix_to_modes(present)
    frames = None
    if spec.protocol in FRAME_PROTOCOLS:
        if seq_lens is None:
            raise ValueError(f"eval_masks: the {spec.protocol} protocol needs seq_lens (T_text, T_audio, T_vision)")
        frames = draw_frame_masks(spec, ids, split, seq_lens, lengths)
    return MissingMasks(modes=modes, spec=spec, split=split, frame_masks=frames, ids=ids, observed=observed)


__all__ = [
    "PROTOCOLS", "FRAME_PROTOCOLS", "MODE_PROTOCOLS", "PRESENT_TABLE", "block_lengths", "MissingSpec", "MissingMasks",
    "hash_uint64", "sample_uniforms", "draw_modes",
    "effective_modes",
    "draw_frame_masks", "epoch_spec", "present_matrix", "present_matrix_to_modes", "missing_entry_fraction",
    "expected_missing_fraction", "mode_counts", "apply_missing_torch", "present_table", "eval_masks",
]
