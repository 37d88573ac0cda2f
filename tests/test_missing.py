"""Tests for mplmm.missing: statistics, nesting, determinism, order independence, torch masking, persistence."""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch

from mplmm.constants import COMPLETE_MODE, MODALITIES, MODE_PRESENT
from mplmm.data.schema import Split
from mplmm.missing import (
    MissingMasks,
    MissingSpec,
    apply_missing_torch,
    draw_frame_masks,
    draw_modes,
    epoch_spec,
    eval_masks,
    expected_missing_fraction,
    missing_entry_fraction,
    mode_counts,
    present_matrix,
    present_matrix_to_modes,
    sample_uniforms,
)

N_IDS = 4000
SEEDS = (0, 1, 2, 3, 4)
IDS = np.array([f"vid{i // 25:04d}$_${i % 25}" for i in range(N_IDS)])


def _tol(p: float, n: int, k: float = 5.0) -> float:
    """k binomial standard deviations of a proportion p over n trials (plus a tiny floor)."""
    return k * math.sqrt(max(p * (1 - p), 0.0) / n) + 1e-12


def _pooled_modes(protocol: str, rate: float) -> np.ndarray:
    return np.concatenate([draw_modes(MissingSpec(protocol, rate, s), IDS, "test") for s in SEEDS])


# ------------------------------------------------------------------------------------------------------------------
# hashing primitive
# ------------------------------------------------------------------------------------------------------------------
def test_uniform_is_documented_blake2b() -> None:
    spec = MissingSpec("modality", 0.5, 7)
    u = sample_uniforms(spec, ["abc", "x$_$1"], "valid", "missing")
    for sid, val in zip(["abc", "x$_$1"], u):
        h = int.from_bytes(hashlib.blake2b(f"modality|7|valid|{sid}|missing".encode(), digest_size=8).digest(), "little")
        assert val == (h >> 11) / 2 ** 53
    assert ((0 <= u) & (u < 1)).all()


# ------------------------------------------------------------------------------------------------------------------
# modality protocol
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_modality_protocol_statistics(rate: float) -> None:
    modes = _pooled_modes("modality", rate)
    n = modes.size
    assert abs(np.mean(modes != COMPLETE_MODE) - rate) < _tol(rate, n)
    counts = mode_counts(modes)
    assert sum(counts.values()) == n
    for m in range(6):
        assert abs(counts[m] / n - rate / 6) < _tol(rate / 6, n), (m, counts)
    # missing-entry fraction: per-sample X/3 with X in {0,1,2}; E = p/2, Var = 2.5p/9 - p^2/4
    var = 2.5 * rate / 9 - rate ** 2 / 4
    assert abs(missing_entry_fraction(modes) - rate / 2) < 5 * math.sqrt(var / n)
    assert expected_missing_fraction("modality", rate) == pytest.approx(rate / 2)
    # each modality individually missing w.p. p/2
    present = present_matrix(modes)
    for j in range(3):
        assert abs((1 - present[:, j].mean()) - rate / 2) < _tol(rate / 2, n)


def test_modality_protocol_extremes() -> None:
    assert (draw_modes(MissingSpec("modality", 0.0, 3), IDS, "test") == COMPLETE_MODE).all()
    full = draw_modes(MissingSpec("modality", 1.0, 3), IDS, "test")
    assert (full != COMPLETE_MODE).all() and set(np.unique(full)) == set(range(6))


# ------------------------------------------------------------------------------------------------------------------
# entry protocol
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8, 1.0])
def test_entry_protocol_statistics(rate: float) -> None:
    modes = _pooled_modes("entry", rate)
    n = modes.size
    present = present_matrix(modes)
    assert present.any(axis=1).all(), "entry protocol must keep at least one modality"
    marginal = rate - rate ** 3 / 3  # drawn missing w.p. r, restored w.p. r^3/3
    for j in range(3):
        assert abs((1 - present[:, j].mean()) - marginal) < _tol(marginal, n)
    assert abs(np.mean(modes == COMPLETE_MODE) - (1 - rate) ** 3) < _tol((1 - rate) ** 3, n)
    assert expected_missing_fraction("entry", rate) == pytest.approx(marginal)
    # a sample has exactly one modality left w.p. 3 r^2 (1-r) + r^3
    one_left = 3 * rate ** 2 * (1 - rate) + rate ** 3
    assert abs(np.mean(present.sum(axis=1) == 1) - one_left) < _tol(one_left, n)


def test_entry_rate_one_keeps_one_uniformly() -> None:
    modes = _pooled_modes("entry", 1.0)
    present = present_matrix(modes)
    assert (present.sum(axis=1) == 1).all()
    for j in range(3):
        assert abs(present[:, j].mean() - 1 / 3) < _tol(1 / 3, modes.size)


# ------------------------------------------------------------------------------------------------------------------
# frame protocol
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [0.0, 0.3, 0.6, 1.0])
def test_frame_protocol_statistics(rate: float) -> None:
    lens = (7, 5, 3)
    spec = MissingSpec("frame", rate, 11)
    modes = draw_modes(spec, IDS, "train")
    assert (modes == COMPLETE_MODE).all()
    fm = draw_frame_masks(spec, IDS, "train", lens)
    for m, t in zip(MODALITIES, lens):
        assert fm[m].shape == (N_IDS, t) and fm[m].dtype == bool
        assert abs(fm[m].mean() - (1 - rate)) < _tol(rate, N_IDS * t)
    frac = missing_entry_fraction(modes, fm)
    assert abs(frac - rate) < _tol(rate, N_IDS * 3)
    assert expected_missing_fraction("frame", rate) == rate


def test_frame_masks_all_true_for_other_protocols() -> None:
    for proto in ("modality", "entry"):
        fm = draw_frame_masks(MissingSpec(proto, 0.7, 1), IDS[:50], "test", {"text": 4, "audio": 2, "vision": 1})
        assert all(v.all() and v.shape[0] == 50 for v in fm.values())


def test_frame_fraction_combines_modes_and_frames() -> None:
    modes = np.array([0, 6])  # text missing in sample 0
    fm = {"text": np.array([[True, False], [False, True]]), "audio": np.ones((2, 1), bool), "vision": np.ones((2, 3), bool)}
    # text: 3 of 4 (sample, frame) entries missing; audio, vision: none
    assert missing_entry_fraction(modes, fm) == pytest.approx((3 / 4) / 3)


# ------------------------------------------------------------------------------------------------------------------
# nesting, determinism, order independence
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["modality", "entry"])
def test_nested_in_rate(protocol: str) -> None:
    rates = [0.0, 0.1, 0.3, 0.5, 0.8, 1.0]
    prev_present = None
    prev_modes = None
    for r in rates:
        modes = draw_modes(MissingSpec(protocol, r, 5), IDS, "test")
        present = present_matrix(modes)
        if prev_present is not None:
            # anything missing at the lower rate is still missing
            assert not (present & ~prev_present).any()
            if protocol == "modality":
                both = (prev_modes != COMPLETE_MODE)
                assert (modes[both] == prev_modes[both]).all(), "mode must not depend on the rate"
        prev_present, prev_modes = present, modes


def test_frame_nested_in_rate() -> None:
    lo = draw_frame_masks(MissingSpec("frame", 0.3, 2), IDS[:500], "test", (6, 6, 6))
    hi = draw_frame_masks(MissingSpec("frame", 0.5, 2), IDS[:500], "test", (6, 6, 6))
    for m in MODALITIES:
        assert not (hi[m] & ~lo[m]).any()
        assert (lo[m] & ~hi[m]).any()


@pytest.mark.parametrize("protocol", ["modality", "entry", "frame"])
def test_determinism_and_sensitivity(protocol: str) -> None:
    lens = (4, 4, 4)
    spec = MissingSpec(protocol, 0.5, 9)

    def draw(s: MissingSpec, split: str) -> np.ndarray:
        if protocol == "frame":
            return np.concatenate(list(draw_frame_masks(s, IDS[:1000], split, lens).values()), axis=1)
        return draw_modes(s, IDS[:1000], split)

    a = draw(spec, "test")
    assert np.array_equal(a, draw(MissingSpec(protocol, 0.5, 9), "test"))
    assert not np.array_equal(a, draw(MissingSpec(protocol, 0.5, 10), "test"))
    assert not np.array_equal(a, draw(spec, "valid"))


def test_protocols_use_distinct_streams() -> None:
    a = sample_uniforms(MissingSpec("modality", 0.5, 0), IDS[:100], "test", "s")
    b = sample_uniforms(MissingSpec("entry", 0.5, 0), IDS[:100], "test", "s")
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("protocol", ["modality", "entry", "frame"])
def test_independent_of_order_and_n(protocol: str) -> None:
    spec = MissingSpec(protocol, 0.6, 4)
    ids = IDS[:800]
    perm = np.random.default_rng(0).permutation(len(ids))
    modes = draw_modes(spec, ids, "train")
    assert np.array_equal(draw_modes(spec, ids[perm], "train"), modes[perm])
    assert np.array_equal(draw_modes(spec, ids[:37], "train"), modes[:37])
    fm = draw_frame_masks(spec, ids, "train", (5, 3, 2))
    fm_p = draw_frame_masks(spec, ids[perm], "train", (5, 3, 2))
    fm_s = draw_frame_masks(spec, ids[100:150], "train", (5, 3, 2))
    for m in MODALITIES:
        assert np.array_equal(fm_p[m], fm[m][perm])
        assert np.array_equal(fm_s[m], fm[m][100:150])


def test_force_mode() -> None:
    for protocol in ("modality", "entry", "frame"):
        for mode in range(7):
            modes = draw_modes(MissingSpec(protocol, 0.3, 1, force_mode=mode), IDS[:200], "test")
            assert modes.dtype == np.int64 and (modes == mode).all()
            assert (present_matrix(modes) == np.array(MODE_PRESENT[mode])).all()


def test_epoch_spec() -> None:
    base = MissingSpec("modality", 0.5, 3)
    specs = [epoch_spec(base, e) for e in range(6)]
    assert len({s.seed for s in specs}) == 6 and base.seed not in {s.seed for s in specs}
    assert all(s.protocol == "modality" and s.rate == 0.5 and s.force_mode is None for s in specs)
    assert epoch_spec(base, 2) == specs[2]
    assert epoch_spec(MissingSpec("modality", 0.5, 4), 2).seed != specs[2].seed
    m0 = draw_modes(specs[0], IDS[:500], "train")
    m1 = draw_modes(specs[1], IDS[:500], "train")
    assert not np.array_equal(m0, m1)


# ------------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------------
def test_present_matrix_and_inverse() -> None:
    modes = np.arange(7)
    pm = present_matrix(modes)
    for m in range(7):
        assert tuple(pm[m]) == MODE_PRESENT[m]
    assert np.array_equal(present_matrix_to_modes(pm), modes)
    with pytest.raises(ValueError, match="all three"):
        present_matrix_to_modes(np.zeros((1, 3), bool))
    with pytest.raises(ValueError, match="0..6"):
        present_matrix([7])


def test_mode_counts_includes_zeros() -> None:
    assert mode_counts([6, 6, 0]) == {0: 1, 1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 6: 2}


# ------------------------------------------------------------------------------------------------------------------
# torch application
# ------------------------------------------------------------------------------------------------------------------
def test_apply_missing_torch_matches_naive_loop() -> None:
    g = torch.Generator().manual_seed(0)
    b, lens, dims = 40, (6, 4, 3), (5, 2, 7)
    xs = [torch.randn(b, t, d, generator=g) + 10.0 for t, d in zip(lens, dims)]
    ids = IDS[:b]
    modes = draw_modes(MissingSpec("modality", 0.8, 2), ids, "test")
    fm = draw_frame_masks(MissingSpec("frame", 0.4, 2), ids, "test", lens)
    for frame_masks, fill in ((None, 0.0), (fm, 0.0), (fm, -1.5)):
        out = apply_missing_torch(*xs, modes, frame_masks, fill=fill)
        for j, (m, x, o) in enumerate(zip(MODALITIES, xs, out)):
            expect = x.clone()
            for i in range(b):
                if not MODE_PRESENT[int(modes[i])][j]:
                    expect[i] = fill
                elif frame_masks is not None:
                    for t in range(x.shape[1]):
                        if not frame_masks[m][i, t]:
                            expect[i, t] = fill
            assert torch.equal(o, expect), m
            assert (x > 5).all()  # inputs untouched
    # modes as a tensor work too
    out = apply_missing_torch(*xs, torch.as_tensor(modes))
    assert torch.equal(out[0], apply_missing_torch(*xs, modes)[0])
    with pytest.raises(ValueError):
        apply_missing_torch(*xs, modes[:-1])


# ------------------------------------------------------------------------------------------------------------------
# persistence and convenience
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["modality", "frame"])
def test_masks_save_load_roundtrip(tmp_path, protocol: str) -> None:
    masks = eval_masks(MissingSpec(protocol, 0.5, 8), IDS[:100], "test", seq_lens=(3, 2, 1))
    path = masks.save(tmp_path / "sub" / "masks.npz")
    assert path.exists() and [p.name for p in path.parent.iterdir()] == ["masks.npz"]
    back = MissingMasks.load(path)
    assert back.spec == masks.spec and back.split == "test"
    assert np.array_equal(back.modes, masks.modes) and np.array_equal(back.ids, masks.ids)
    if protocol == "frame":
        assert back.frame_masks is not None
        for m in MODALITIES:
            assert np.array_equal(back.frame_masks[m], masks.frame_masks[m])
    else:
        assert back.frame_masks is None
    d = json.loads(json.dumps(masks.to_json_dict()))
    assert d["modes"] == masks.modes.tolist() and d["spec"] == masks.spec.to_dict()


def test_eval_masks_from_split_object() -> None:
    n = 30
    split = Split(
        text=np.zeros((n, 4, 2), np.float32), audio=np.zeros((n, 3, 2), np.float32),
        vision=np.zeros((n, 2, 2), np.float32), labels=np.zeros(n, np.float32), ids=IDS[:n],
    )
    masks = eval_masks(MissingSpec("frame", 0.5, 1), split, "valid")
    assert masks.frame_masks["text"].shape == (n, 4) and masks.frame_masks["vision"].shape == (n, 2)
    assert np.array_equal(eval_masks(MissingSpec("modality", 0.5, 1), split, "valid").modes,
                          draw_modes(MissingSpec("modality", 0.5, 1), IDS[:n], "valid"))
    with pytest.raises(ValueError, match="seq_lens"):
        eval_masks(MissingSpec("frame", 0.5, 1), IDS[:n], "valid")


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        ({"protocol": "sample"}, "protocol"),
        ({"rate": 1.5}, "rate"),
        ({"rate": -0.1}, "rate"),
        ({"rate": float("nan")}, "rate"),
        ({"rate": "0.5"}, "rate"),
        ({"force_mode": 7}, "force_mode"),
        ({"force_mode": -1}, "force_mode"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_invalid_spec(kwargs: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        MissingSpec(**kwargs)


def test_spec_dict_roundtrip() -> None:
    s = MissingSpec("entry", 0.25, 3, force_mode=2)
    assert MissingSpec.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="unknown"):
        MissingSpec.from_dict({"protocol": "entry", "bogus": 1})
