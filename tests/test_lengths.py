"""Per-sample sequence lengths: fast vs naive (truncated sequences), padding invariance of every registered model,
``lengths=None`` unchanged, real vs simulated absence, training with lengths, other sequence lengths."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from naive_reference import naive_mplmm, naive_mult_lengths, naive_sample_encoder, truncate
from test_peers import DIMS, LENS, SMALL_MULT, _one_thread  # noqa: F401  (_one_thread: autouse fixture)

from mplmm.constants import MODALITIES
from mplmm.models import available_models, create_model, model_class
from mplmm.models.comp import segment_matrix
from mplmm.models.lengths import effective_lengths, last_valid_index, step_valid, with_fallback
from mplmm.models.transformer import TransformerEncoder, length_mask

TOL = 1e-5
SEQS = LENS
#: a small configuration of every registered model (a model missing here runs with its defaults)
CONFIGS = {
    "mult": SMALL_MULT, "mult_zero": SMALL_MULT, "mult_dropout": SMALL_MULT,
    "mplmm": dict(SMALL_MULT, prompt_length=3),
    "dcp": dict(SMALL_MULT, n_prompt=2),
    "comp": {"depth": 2, "seq_len": 3},
    "emt_dlfr": {},
    "mmml": {"modalities": ("text", "audio", "vision")},
}
MODELS = available_models()
#: every mode, twice for some; per sample the real steps of text, audio, vision (0 = nothing recorded)
MODES = torch.tensor([0, 1, 2, 3, 4, 5, 6, 6, 1, 5])
LENGTHS = torch.tensor([[5, 3, 7], [2, 6, 1], [1, 4, 0], [5, 1, 2], [3, 5, 6],
                        [4, 0, 7], [5, 6, 7], [3, 0, 4], [0, 2, 5], [1, 6, 3]])


def build(name: str, seed: int = 0, **extra):
    torch.manual_seed(seed)
    return create_model(name, dims=DIMS, seq_lens=SEQS, output_dim=1, **CONFIGS.get(name, {}), **extra)


def inputs(b: int, seqs=SEQS, seed: int = 1) -> list[torch.Tensor]:
    """Random features whose channel 0 is never exactly zero (MulT's padding rule without lengths)."""
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(b, t, d, generator=g) for t, d in zip(seqs, DIMS)]
    for x in feats:
        x[..., 0] = x[..., 0].sign() * (x[..., 0].abs() + 0.1)
    return feats


def frame_masks(b: int, seqs=SEQS, seed: int = 2) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.rand(b, t, generator=g) >= 0.3 for m, t in zip(MODALITIES, seqs)}


def padded_randomly(feats: list[torch.Tensor], lengths: torch.Tensor, seed: int = 5) -> list[torch.Tensor]:
    """``feats`` with every step beyond its sample's length replaced by large random values."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for j, x in enumerate(feats):
        pad = ~step_valid(lengths[:, j], x.shape[1])
        out.append(torch.where(pad[..., None], 50 * torch.randn(x.shape, generator=g) + 3, x))
    return out


def appended(feats: list[torch.Tensor], k: int, masks: dict | None) -> tuple[list, dict | None]:
    """``k`` zero frames appended to every modality (frame masks: appended frames kept)."""
    feats = [F.pad(x, (0, 0, 0, k)) for x in feats]
    if masks is not None:
        masks = {m: F.pad(v, (0, k), value=True) for m, v in masks.items()}
    return feats, masks


def predict(model, feats, modes, masks=None, lengths=None):
    with torch.no_grad():
        return model(*feats, modes, masks, lengths=lengths)


# -- the fast encoder with validity masks vs the naive encoder on truncated sequences --------------------------------
ENCODER_CASES = [  # (query lengths, key lengths or None = self-attention), sequences of 6 (query) and 8 (key) steps
    ([6, 3, 0, 1], [8, 2, 5, 0]), ([2, 6, 4, 0], [0, 8, 1, 8]), ([6, 3, 0, 1], None), ([1, 6, 2, 0], None)]


@pytest.mark.parametrize("attn_mask", [True, False])
@pytest.mark.parametrize("lens_q,lens_k", ENCODER_CASES)
def test_encoder_with_valid_masks_equals_naive_on_truncated_sequences(lens_q, lens_k, attn_mask):
    torch.manual_seed(0)
    enc = TransformerEncoder(12, 3, 2, attn_mask=attn_mask).eval()
    x = torch.randn(4, 6, 12)
    xk = None if lens_k is None else torch.randn(4, 8, 12)
    valid = step_valid(torch.tensor(lens_q), 6)
    valid_k = None if lens_k is None else step_valid(torch.tensor(lens_k), 8)
    with torch.no_grad():
        fast, _ = enc(x, xk, valid=valid, valid_k=valid_k)
        weighted, weights = enc(x, xk, need_weights=True, valid=valid, valid_k=valid_k)
        last = enc(x, last_only=True, valid=valid)[0] if xk is None else None
        for b, lq in enumerate(lens_q):
            lk = lq if xk is None else lens_k[b]
            k_rows = None if xk is None else truncate(xk[b], lk)
            slow = naive_sample_encoder(enc, truncate(x[b], lq), lq, k_rows, lk)
            n = slow.shape[0]
            assert (fast[b, :n] - slow).abs().max() < TOL
            assert (weighted[b, :n] - slow).abs().max() < TOL
            hidden = ~with_fallback(valid_k if valid_k is not None else valid)[b]
            assert all(w[b][..., hidden].abs().max() == 0 for w in weights) if hidden.any() else True
            if last is not None:  # the readout row: the last real step, step 0 when there is none
                assert (last[b, 0] - slow[-1]).abs().max() < TOL


def test_length_mask_rule():
    """Offset rule with each sample's real lengths, invalid keys hidden, step 0 alone for a row with no key."""
    valid_q = step_valid(torch.tensor([3, 0, 2]), 4)
    valid_k = step_valid(torch.tensor([6, 2, 0]), 6)
    mask = length_mask(valid_q, valid_k, causal=True)
    assert mask.shape == (3, 1, 4, 6)
    for b, (lq, lk) in enumerate([(3, 6), (0, 2), (2, 0)]):
        for i in range(4):
            expected = [j < lk and j <= i + abs(lk - lq) for j in range(6)]
            if not any(expected):
                expected[0] = True
            assert mask[b, 0, i].tolist() == expected


def test_readout_index_and_effective_lengths():
    valid = step_valid(torch.tensor([3, 0, 1]), 5)
    assert last_valid_index(valid).tolist() == [2, 0, 0]
    eff = effective_lengths(torch.tensor([[9, -2, 4], [3, 3, 3]]), torch.tensor([6, 1]), (5, 6, 7))
    assert eff.tolist() == [[5, 0, 4], [3, 0, 3]]  # clamped to [0, T]; audio missing under mode 1


# -- whole models vs their naive per-sample loops ---------------------------------------------------------------------
def test_mult_with_lengths_equals_naive():
    model = build("mult").eval()
    feats = inputs(len(MODES))
    with torch.no_grad():
        fast = model(*feats, MODES, lengths=LENGTHS)
        weighted, _ = model(*feats, MODES, lengths=LENGTHS, need_weights=True)
        slow = naive_mult_lengths(model, *feats, LENGTHS)
    assert (fast - slow).abs().max() < TOL and (weighted - slow).abs().max() < TOL


@pytest.mark.parametrize("masked", [False, True], ids=["gather", "masked"])
@pytest.mark.parametrize("cfg", [{}, {"gen_projection": "bypass", "generative_prompts": False},
                                 {"type_prompts": False}], ids=["full", "bypass-no_gen", "no_type"])
def test_mplmm_with_lengths_equals_per_sample_loop(cfg, masked, monkeypatch):
    import mplmm.models.mplmm as MP

    monkeypatch.setattr(MP, "MASKED_GENERATION", masked)
    model = build("mplmm", **cfg).eval()
    feats = padded_randomly(inputs(len(MODES)), LENGTHS)
    with torch.no_grad():
        fast = model(*feats, MODES, lengths=LENGTHS)
        weighted, _ = model(*feats, MODES, lengths=LENGTHS, need_weights=True)
        slow = naive_mplmm(model, *feats, MODES, LENGTHS)
    assert (fast - slow).abs().max() < TOL and (weighted - slow).abs().max() < TOL


# -- padding never influences a prediction ----------------------------------------------------------------------------
@pytest.mark.parametrize("use_frames", [False, True], ids=["modes", "frames"])
@pytest.mark.parametrize("name", MODELS)
def test_padding_invariance(name, use_frames):
    """Random values in the padding change nothing; appending zero frames changes nothing (models that accept
    other sequence lengths)."""
    model = build(name).eval()
    feats, b = inputs(len(MODES)), len(MODES)
    masks = frame_masks(b) if use_frames else None
    ref = predict(model, feats, MODES, masks, LENGTHS)
    assert torch.isfinite(ref).all()
    noisy = predict(model, padded_randomly(feats, LENGTHS), MODES, masks, LENGTHS)
    torch.testing.assert_close(noisy, ref, rtol=0, atol=TOL)
    if model.fixed_seq_lens:
        return
    for k in (1, 5):
        longer, longer_masks = appended(feats, k, masks)
        torch.testing.assert_close(predict(model, longer, MODES, longer_masks, LENGTHS), ref, rtol=0, atol=TOL)


@pytest.mark.parametrize("name", MODELS)
def test_padding_invariance_of_the_training_loss(name):
    """``compute_loss`` (eval mode: no dropout) reads no padding either, auxiliary losses included."""
    model = build(name).eval()
    feats, target = inputs(len(MODES)), torch.randn(len(MODES), 1)
    with torch.no_grad():
        ref, _, _ = model.compute_loss(*feats, MODES, target, F.l1_loss, frame_masks(len(MODES)), lengths=LENGTHS)
        noisy, _, _ = model.compute_loss(*padded_randomly(feats, LENGTHS), MODES, target, F.l1_loss,
                                         frame_masks(len(MODES)), lengths=LENGTHS)
    assert torch.isfinite(ref) and (noisy - ref).abs() < TOL


# -- lengths=None keeps today's outputs --------------------------------------------------------------------------------
#: models whose lengths=None output equals lengths=full in every mode (MPLMM generates missing modalities at full
#: length, plain MulT ignores modes, MMML and ComP already masked unreadable frames); the others zero-fill a missing
#: modality and read it as T zero frames without lengths, as one absent step with lengths (effective length 0)
AGREE_IN_EVERY_MODE = {"mult", "mplmm", "mmml", "comp"}


@pytest.mark.parametrize("name", MODELS)
def test_full_lengths_equal_no_lengths(name):
    model = build(name).eval()
    modes = MODES if name in AGREE_IN_EVERY_MODE else torch.full_like(MODES, 6)
    feats, full = inputs(len(MODES)), torch.tensor([SEQS]).repeat(len(MODES), 1)
    torch.testing.assert_close(predict(model, feats, modes, None, full), predict(model, feats, modes), rtol=0,
                               atol=TOL)
    if name in ("mult", "mplmm"):  # also the attention-map path
        with torch.no_grad():
            a = model(*feats, modes, lengths=full, need_weights=True)[0]
            b = model(*feats, modes, need_weights=True)[0]
        torch.testing.assert_close(a, b, rtol=0, atol=TOL)


def test_lengths_none_is_the_unmasked_path(monkeypatch):
    """Without lengths the encoder never builds a length mask (today's code path, bit for bit)."""
    import mplmm.models.transformer as T

    def fail(*args, **kwargs):
        raise AssertionError("length_mask called without lengths")

    monkeypatch.setattr(T, "length_mask", fail)
    for name in ("mult", "mplmm", "dcp", "mult_zero"):
        predict(build(name).eval(), inputs(4), MODES[:4])


# -- a real absence is a simulated one ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_real_absence_equals_simulated_absence(name):
    """Mode 1 (audio missing) with the recorded audio at full length == mode 1 with zero audio of length 0. Plain
    ``mult`` ignores modes (it reads what it is given), so for it: zero audio of length 0 == random audio of
    length 0."""
    model = build(name).eval()
    feats, b = inputs(4), 4
    modes = torch.full((b,), 1)
    full = torch.tensor([[5, 6, 7], [3, 6, 2], [1, 6, 7], [0, 6, 4]])
    absent = full.clone()
    absent[:, 1] = 0
    zero_audio = [feats[0], torch.zeros_like(feats[1]), feats[2]]
    real = predict(model, zero_audio, modes, None, absent)
    simulated = predict(model, feats, modes, None, absent if not model.reads_modes else full)
    torch.testing.assert_close(real, simulated, rtol=0, atol=TOL)


# -- training with lengths ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_training_step_with_lengths(name):
    model = build(name).train()
    feats, target = inputs(len(MODES)), torch.randn(len(MODES), 1)
    loss, pred, parts = model.compute_loss(*feats, MODES, target, F.mse_loss, frame_masks(len(MODES)),
                                           lengths=LENGTHS, observed_modes=torch.full_like(MODES, 6))
    assert pred.shape == (len(MODES), 1) and torch.isfinite(loss)
    loss.backward()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert not [n for n, p in params if p.grad is None]
    assert all(torch.isfinite(p.grad).all() for _, p in params)
    assert any(p.grad.abs().sum() > 0 for _, p in params)


def test_emt_observed_modes_define_the_complete_view_and_the_reconstruction():
    """The complete view is what is really recorded; frames never observed or beyond length are not reconstructed."""
    model = build("emt_dlfr").eval()
    feats, target, b = inputs(6), torch.randn(6, 1), 6
    modes = torch.full((b,), 1)  # audio dropped in the incomplete view

    def parts(observed, lengths=None, x=feats):
        with torch.no_grad():
            return model.compute_loss(*x, modes, target, F.l1_loss, lengths=lengths, observed_modes=observed)[2]

    assert parts(None)["reconstruction"] > 0  # audio observed (complete) and dropped: reconstructed
    never = parts(torch.full((b,), 1))  # audio never recorded: nothing to reconstruct, the views agree
    assert never["reconstruction"] == 0 and never["task_complete"] == never["task"]
    zeroed = [feats[0], torch.zeros_like(feats[1]), feats[2]]
    assert parts(torch.full((b,), 1), x=zeroed)["task_complete"] == never["task_complete"]
    lengths = torch.tensor([[5, 2, 7]] * b)
    short = parts(None, lengths)
    assert 0 < short["reconstruction"]
    assert parts(None, lengths, padded_randomly(feats, lengths))["reconstruction"] == short["reconstruction"]


# -- other sequence lengths --------------------------------------------------------------------------------------------
def test_only_models_sized_by_sequence_length_claim_fixed_lengths():
    assert {n for n in MODELS if model_class(n).fixed_seq_lens} == {"mplmm"}


@pytest.mark.parametrize("seqs", [(3, 2, 4), (9, 11, 8)], ids=["shorter", "longer"])
@pytest.mark.parametrize("name", [n for n in MODELS if not model_class(n).fixed_seq_lens])
def test_other_sequence_lengths_at_inference(name, seqs):
    model = build(name).eval()
    feats, b = inputs(len(MODES), seqs), len(MODES)
    lengths = torch.minimum(LENGTHS, torch.tensor([seqs]))
    for lens in (None, lengths):
        out = predict(model, feats, MODES, frame_masks(b, seqs), lens)
        assert out.shape == (b, 1) and torch.isfinite(out).all()


def test_comp_segments_each_sample_by_its_own_length():
    model = build("comp")
    lengths = torch.tensor([0, 1, 2, 5, 7])
    seg = model._segments(2, 7, lengths)
    for b, n in enumerate(lengths.tolist()):
        expected = torch.zeros(3, 7)
        if n:
            expected[:, :n] = segment_matrix(n, 3)
        assert torch.equal(seg[b], expected)
    assert model._segments(2, 7, None) is model.seg2  # the fixed buffer without lengths
    assert torch.equal(model._segments(2, 10, None), segment_matrix(10, 3))
