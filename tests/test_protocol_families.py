"""The frame-level mask families of the published protocols (OpenVNA structural drop, CIDer temporal and structural
temporal drops) and seeded feature noise: each against a naive per-sample implementation written from the
definitions in mplmm/missing.py and mplmm/noise.py, plus nesting, order independence and statistics."""
from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from mplmm.constants import COMPLETE_MODE, MODALITIES
from mplmm.data.schema import Split
from mplmm.errors import ConfigError
from mplmm.missing import (
    FRAME_PROTOCOLS,
    PROTOCOLS,
    MissingSpec,
    draw_frame_masks,
    draw_modes,
    eval_masks,
    expected_missing_fraction,
)
from mplmm.noise import NoiseSpec, draw_noise, noise_scales

IDS = np.array([f"v{i // 7}_{i % 7}" for i in range(300)])
LENS = {"text": 10, "audio": 16, "vision": 7}


def _u(text: str) -> float:
    h = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    return (h >> 11) / 2 ** 53


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _lengths(n: int, rng_seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(rng_seed)
    return np.stack([rng.integers(0, LENS[m] + 1, n) for m in MODALITIES], axis=1)


# ------------------------------------------------------------------------------------------------------------------
# naive references: one sample, one modality, one step at a time
# ------------------------------------------------------------------------------------------------------------------
def naive_block(protocol: str, rate: float, seed: int, split: str, ids, lengths) -> dict:
    out = {m: np.ones((len(ids), LENS[m]), dtype=bool) for m in MODALITIES}
    for i, sid in enumerate(ids):
        for j, m in enumerate(MODALITIES):
            t_rec = int(lengths[i][j])
            stream = f"block:{m}" if protocol == "block" else "block"
            u = _u(f"{protocol}|{seed}|{split}|{sid}|{stream}")
            size = int(math.floor(rate * t_rec + 0.5))
            start = int(math.floor(u * (t_rec - size + 1)))
            for t in range(LENS[m]):
                if start <= t < start + size:
                    out[m][i, t] = False
    return out


def naive_temporal(rate: float, seed: int, split: str, ids, lengths) -> dict:
    grid = max(LENS.values())
    out = {m: np.ones((len(ids), LENS[m]), dtype=bool) for m in MODALITIES}
    for i, sid in enumerate(ids):
        u = np.random.default_rng(_seed(f"temporal|{seed}|{split}|{sid}|temporal")).random(grid)
        for j, m in enumerate(MODALITIES):
            t_rec = int(lengths[i][j])
            for t in range(t_rec):
                instant = min(t * grid // t_rec, grid - 1)
                if u[instant] < rate:
                    out[m][i, t] = False
    return out


# ------------------------------------------------------------------------------------------------------------------
# vectorised == naive
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["block", "temporal_block"])
@pytest.mark.parametrize("rate", [0.05, 0.3, 0.5, 0.77, 1.0])
def test_block_families_match_naive(protocol: str, rate: float) -> None:
    ids = IDS[:60]
    lengths = _lengths(len(ids))
    fast = draw_frame_masks(MissingSpec(protocol, rate, 3), ids, "test", LENS, lengths)
    slow = naive_block(protocol, rate, 3, "test", ids, lengths)
    for m in MODALITIES:
        np.testing.assert_array_equal(fast[m], slow[m], err_msg=f"{protocol} {rate} {m}")


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9, 1.0])
def test_temporal_matches_naive(rate: float) -> None:
    ids = IDS[:60]
    lengths = _lengths(len(ids), 1)
    fast = draw_frame_masks(MissingSpec("temporal", rate, 5), ids, "valid", LENS, lengths)
    slow = naive_temporal(rate, 5, "valid", ids, lengths)
    for m in MODALITIES:
        np.testing.assert_array_equal(fast[m], slow[m], err_msg=f"temporal {rate} {m}")


def test_padded_lengths_are_the_default() -> None:
    full = np.tile([LENS[m] for m in MODALITIES], (len(IDS), 1))
    for protocol in ("block", "temporal_block", "temporal"):
        spec = MissingSpec(protocol, 0.4, 0)
        a = draw_frame_masks(spec, IDS, "test", LENS)
        b = draw_frame_masks(spec, IDS, "test", LENS, full)
        for m in MODALITIES:
            np.testing.assert_array_equal(a[m], b[m])


# ------------------------------------------------------------------------------------------------------------------
# structure of each family
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", FRAME_PROTOCOLS)
def test_frame_families_nest_in_the_rate(protocol: str) -> None:
    lengths = _lengths(len(IDS), 2)
    rates = [0.0, 0.1, 0.25, 0.5, 0.5001, 0.75, 0.9, 1.0]
    prev = None
    for r in rates:
        cur = draw_frame_masks(MissingSpec(protocol, r, 1), IDS, "test", LENS, lengths)
        if prev is not None:
            for m in MODALITIES:
                assert not (cur[m] & ~prev[m]).any(), f"{protocol}: a step kept at {r} was dropped earlier ({m})"
        prev = cur


@pytest.mark.parametrize("protocol", ["block", "temporal_block", "temporal"])
def test_frame_families_do_not_depend_on_order_or_n(protocol: str) -> None:
    lengths = _lengths(len(IDS), 3)
    spec = MissingSpec(protocol, 0.45, 9)
    whole = draw_frame_masks(spec, IDS, "test", LENS, lengths)
    perm = np.random.default_rng(0).permutation(len(IDS))[:50]
    part = draw_frame_masks(spec, IDS[perm], "test", LENS, lengths[perm])
    for m in MODALITIES:
        np.testing.assert_array_equal(part[m], whole[m][perm])
    other = draw_frame_masks(MissingSpec(protocol, 0.45, 10), IDS, "test", LENS, lengths)
    assert any((other[m] != whole[m]).any() for m in MODALITIES), "the mask seed changes nothing"


def test_blocks_are_contiguous_with_the_rounded_length() -> None:
    lengths = _lengths(len(IDS), 4)
    for protocol in ("block", "temporal_block"):
        for r in (0.2, 0.5, 0.8):
            masks = draw_frame_masks(MissingSpec(protocol, r, 0), IDS, "test", LENS, lengths)
            for j, m in enumerate(MODALITIES):
                dropped = ~masks[m]
                assert (dropped.sum(1) == np.floor(r * lengths[:, j] + 0.5)).all()
                for row, t_rec in zip(dropped, lengths[:, j]):
                    idx = np.flatnonzero(row)
                    if idx.size:
                        assert idx[-1] - idx[0] + 1 == idx.size and idx[-1] < t_rec  # one block, inside the record


def test_temporal_block_shares_the_relative_position() -> None:
    same = {m: 12 for m in MODALITIES}
    masks = draw_frame_masks(MissingSpec("temporal_block", 0.5, 0), IDS, "test", same)
    np.testing.assert_array_equal(masks["text"], masks["audio"])
    np.testing.assert_array_equal(masks["text"], masks["vision"])
    per_modality = draw_frame_masks(MissingSpec("block", 0.5, 0), IDS, "test", same)
    assert (per_modality["text"] != per_modality["audio"]).any()  # the OpenVNA family draws one start per modality


def test_temporal_drops_an_instant_in_every_modality() -> None:
    same = {m: 16 for m in MODALITIES}
    masks = draw_frame_masks(MissingSpec("temporal", 0.4, 2), IDS, "test", same)
    np.testing.assert_array_equal(masks["text"], masks["vision"])
    frac = 1 - masks["audio"].mean()
    assert abs(frac - 0.4) < 5 * math.sqrt(0.24 / masks["audio"].size)


def test_block_start_is_uniform() -> None:
    ids = np.array([f"s{i}" for i in range(6000)])
    masks = draw_frame_masks(MissingSpec("block", 0.25, 0), ids, "test", {"text": 8, "audio": 8, "vision": 8})
    starts = np.argmax(~masks["audio"], axis=1)  # block of 2 over 8 steps: 7 start positions
    counts = np.bincount(starts, minlength=7)
    assert counts.shape == (7,)
    assert np.abs(counts / len(ids) - 1 / 7).max() < 5 * math.sqrt((1 / 7) * (6 / 7) / len(ids))


def test_frame_families_keep_every_mode_complete_and_report_r() -> None:
    for protocol in ("block", "temporal", "temporal_block"):
        assert protocol in PROTOCOLS
        assert (draw_modes(MissingSpec(protocol, 0.9, 0), IDS, "test") == COMPLETE_MODE).all()
        assert expected_missing_fraction(protocol, 0.3) == pytest.approx(0.3)


def test_eval_masks_uses_the_split_lengths() -> None:
    n = 40
    rng = np.random.default_rng(0)
    lengths = _lengths(n, 5)
    split = Split(ids=IDS[:n], text=rng.normal(size=(n, LENS["text"], 2)).astype(np.float32),
                  audio=rng.normal(size=(n, LENS["audio"], 2)).astype(np.float32),
                  vision=rng.normal(size=(n, LENS["vision"], 2)).astype(np.float32),
                  labels=np.zeros(n, dtype=np.float32),
                  lengths={m: lengths[:, j] for j, m in enumerate(MODALITIES)})
    masks = eval_masks(MissingSpec("block", 0.6, 1), split, "test")
    expected = draw_frame_masks(MissingSpec("block", 0.6, 1), IDS[:n], "test", LENS, lengths)
    for m in MODALITIES:
        np.testing.assert_array_equal(masks.frame_masks[m], expected[m])
    with pytest.raises(ValueError, match="seq_lens"):
        eval_masks(MissingSpec("temporal", 0.6, 1), IDS[:n], "test")


# ------------------------------------------------------------------------------------------------------------------
# noise: a corruption, not an absence
# ------------------------------------------------------------------------------------------------------------------
def naive_noise(level: float, seed: int, split: str, ids, shapes, scales, present) -> dict:
    out = {}
    for j, m in enumerate(MODALITIES):
        arr = np.zeros((len(ids), *shapes[m]), dtype=np.float32)
        for i, sid in enumerate(ids):
            if present[i, j] and level > 0:
                z = np.random.default_rng(_seed(f"noise|{seed}|{split}|{sid}|{m}")).standard_normal(shapes[m])
                arr[i] = (z * np.float32(level * scales[m])).astype(np.float32)
        out[m] = arr
    return out


def test_noise_matches_naive_and_grows_linearly() -> None:
    ids = IDS[:30]
    shapes = {"text": (4, 3), "audio": (5, 2), "vision": (1, 6)}
    scales = {"text": 2.0, "audio": 0.5, "vision": 1.0}
    present = np.random.default_rng(0).random((30, 3)) > 0.2
    fast = draw_noise(NoiseSpec(0.7, 4), ids, "test", shapes, scales, present)
    slow = naive_noise(0.7, 4, "test", ids, shapes, scales, present)
    for m in MODALITIES:
        np.testing.assert_allclose(fast[m], slow[m], rtol=1e-6, atol=1e-7)
    double = draw_noise(NoiseSpec(1.4, 4), ids, "test", shapes, scales, present)
    np.testing.assert_allclose(double["audio"], 2 * fast["audio"], rtol=1e-5, atol=1e-7)
    zero = draw_noise(NoiseSpec(0.0, 4), ids, "test", shapes, scales, present)
    assert all(not zero[m].any() for m in MODALITIES)
    part = draw_noise(NoiseSpec(0.7, 4), ids[::-1], "test", shapes, scales, present[::-1])
    np.testing.assert_array_equal(part["text"], fast["text"][::-1])


def test_noise_scales_and_validation() -> None:
    rng = np.random.default_rng(0)
    n = 50
    split = Split(ids=IDS[:n], text=3 * rng.normal(size=(n, 2, 4)).astype(np.float32),
                  audio=np.ones((n, 2, 4), dtype=np.float32), vision=rng.normal(size=(n, 2, 4)).astype(np.float32),
                  labels=np.zeros(n, dtype=np.float32))
    scales = noise_scales(split)
    assert scales["text"] == pytest.approx(3.0, rel=0.15)
    assert scales["audio"] == 1.0  # constant features: unit scale
    for bad in (-0.1, float("nan"), float("inf"), "0.5", True):
        with pytest.raises(ConfigError, match="level"):
            NoiseSpec(bad)
    with pytest.raises(ConfigError, match="seed"):
        NoiseSpec(0.1, 1.5)
    assert NoiseSpec(0.5, 2).to_dict() == {"kind": "gaussian", "level": 0.5, "seed": 2}
