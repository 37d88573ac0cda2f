"""MulT / MPLMM semantics: fast modules vs the naive reference, the offset mask, prompts, counts, bugs fixed."""
from __future__ import annotations

import pytest
import torch

from mplmm.models import create_model
from mplmm.models.transformer import TransformerEncoder, offset_causal_mask, sinusoidal_positions
from naive_reference import naive_encoder, naive_mask, naive_mplmm, naive_mult, naive_positions

TOL = 1e-5


def _inputs(b, dims, seqs, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, t, d, generator=g) for d, t in zip(dims, seqs)]


@pytest.mark.parametrize("lq,lk", [(5, 8), (8, 5), (6, 6), (10, 3), (3, 10), (7, 4), (1, 1), (9, 5)])
def test_offset_mask_matches_formula(lq, lk):
    expected = naive_mask(lq, lk) == 0  # allowed positions
    mask = offset_causal_mask(lq, lk)
    if mask is None:
        assert bool(expected.all()), "None must mean that nothing is masked"
        assert 2 * lk <= lq + 1 or lq == lk == 1
    else:
        assert torch.equal(mask, expected)


@pytest.mark.parametrize("lq,lk", [(5, 8), (6, 6), (3, 10), (8, 5), (10, 4)])
def test_offset_mask_vs_lower_right_causal(lq, lk):
    lower_right = torch.ones(lq, lk, dtype=torch.bool).tril(diagonal=lk - lq)
    mask = offset_causal_mask(lq, lk)
    mask = torch.ones(lq, lk, dtype=torch.bool) if mask is None else mask
    assert torch.equal(mask, lower_right) == (lk >= lq)


def test_positions_zero_channel_is_padding():
    x = torch.randn(2, 6, 8)
    x[0, 2, 0] = 0.0  # padding step in sample 0
    x[1, 0, 0] = 0.0
    fast = sinusoidal_positions(x, 8)
    assert torch.allclose(fast, naive_positions(x, 8), atol=1e-6)
    assert torch.all(fast[0, 2] == 0) and torch.all(fast[1, 0] == 0)


@pytest.mark.parametrize("lq,lk", [(None, None), (5, 9), (9, 5), (7, 7)])
def test_encoder_fast_equals_naive(lq, lk):
    torch.manual_seed(0)
    enc = TransformerEncoder(12, 3, 2, attn_dropout=0.1, relu_dropout=0.1, res_dropout=0.1,
                             embed_dropout=0.2).eval()
    x = torch.randn(3, lq or 6, 12)
    xk = None if lk is None else torch.randn(3, lk, 12)
    fast, _ = enc(x, xk)
    slow = naive_encoder(enc, x, xk)
    assert (fast - slow).abs().max() < TOL
    with_weights, weights = enc(x, xk, need_weights=True)
    assert (with_weights - fast).abs().max() < TOL
    assert len(weights) == 2 and torch.allclose(weights[0].sum(-1), torch.ones(()), atol=1e-5)
    if xk is None:
        last, _ = enc(x, last_only=True)
        assert last.shape == (3, 1, 12) and (last[:, 0] - fast[:, -1]).abs().max() < TOL


#: (padding rule, CPU minimum width, embed dim, heads, expected head width): no padding, the CPU rule (narrow heads to
#: 16) and the CUDA rule (multiples of 8) forced on CPU, at MulT's crossmodal (30/5 = 6) and memory (60/5 = 12) widths
PADDINGS = [("cpu", 0, 12, 3, 4), ("cpu", 16, 12, 3, 16), ("cuda", 16, 12, 3, 8), ("cuda", 16, 30, 5, 8),
            ("cuda", 16, 60, 5, 16), ("cuda", 16, 16, 2, 8)]


@pytest.mark.parametrize("rule,cpu_min,e,heads,width", PADDINGS)
@pytest.mark.parametrize("lq,lk", [(None, None), (5, 9), (9, 5)])
def test_encoder_gradients_equal_naive_with_and_without_head_padding(monkeypatch, rule, cpu_min, e, heads, width,
                                                                    lq, lk):
    """Heads are computed zero-padded (CPU: narrow heads to ``CPU_SDPA_MIN_HEAD_DIM``; CUDA: to a multiple of 8, here
    forced on CPU): outputs and the gradients of inputs and weights equal the naive encoder either way."""
    import mplmm.models.transformer as T

    monkeypatch.setattr(T, "CPU_SDPA_MIN_HEAD_DIM", cpu_min)
    monkeypatch.setattr(T, "FORCE_HEAD_PADDING", rule)
    torch.manual_seed(1)
    enc = TransformerEncoder(e, heads, 2).eval()
    assert enc.layers[0].self_attn._head_width(torch.device("cpu"), need_weights=False) == width
    x = torch.randn(2, lq or 6, e, requires_grad=True)
    xk = None if lk is None else torch.randn(2, lk, e, requires_grad=True)
    grad = torch.randn(2, lq or 6, e)
    fast, _ = enc(x, xk)
    inputs = ([x] if xk is None else [x, xk]) + list(enc.parameters())  # inputs and weights
    g_fast = torch.autograd.grad(fast, inputs, grad, allow_unused=True)
    slow = naive_encoder(enc, x, xk)
    g_slow = torch.autograd.grad(slow, inputs, grad, allow_unused=True)
    assert (fast - slow).abs().max() < TOL
    for a, b in zip(g_fast, g_slow):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.shape == b.shape and (a - b).abs().max() < 1e-4


def test_mult_fast_equals_naive():
    torch.manual_seed(1)
    dims, seqs = (7, 5, 4), (4, 9, 6)
    m = create_model("mult", dims=dims, seq_lens=seqs, output_dim=1, d=10, num_heads=2, layers=2).eval()
    x = _inputs(5, dims, seqs)
    with torch.no_grad():
        assert (m(*x, torch.full((5,), 6)) - naive_mult(m, *x)).abs().max() < TOL


@pytest.fixture(params=[False, True], ids=["gather", "masked"])
def generation(request, monkeypatch):
    """Both ways MPLMM generates missing modalities, on CPU: row gathers (the CPU default) and the sync-free masked
    path (the accelerator default)."""
    import mplmm.models.mplmm as MP

    monkeypatch.setattr(MP, "MASKED_GENERATION", request.param)
    return request.param


MP_DIMS, MP_SEQS = (7, 5, 4), (4, 9, 6)  # the small MPLMM of the per-sample-loop comparisons
MP_MODES = torch.tensor([0, 1, 2, 3, 4, 5, 6, 3, 0, 6, 5])


def _small_mplmm(**cfg):
    return create_model("mplmm", dims=MP_DIMS, seq_lens=MP_SEQS, output_dim=1, d=10, num_heads=2, layers=2,
                        prompt_length=3, **cfg).eval()


def _assert_equals_per_sample_loop(m) -> list:
    """The vectorised forward of ``m`` equals the naive per-sample loop on random inputs of every mode (returned)."""
    x = _inputs(len(MP_MODES), MP_DIMS, MP_SEQS)
    with torch.no_grad():
        fast = m(*x, MP_MODES)
        slow = naive_mplmm(m, *x, MP_MODES)
    assert (fast - slow).abs().max() < TOL
    return x


@pytest.mark.parametrize("gen_projection", ["conv", "bypass"])
def test_mplmm_vectorised_equals_per_sample_loop(gen_projection, generation):
    torch.manual_seed(2)
    _assert_equals_per_sample_loop(_small_mplmm(gen_projection=gen_projection))


ABLATIONS = [{"generative_prompts": False}, {"signal_prompts": False}, {"type_prompts": False},
             {"signal_prompts": False, "type_prompts": False},
             {"generative_prompts": False, "signal_prompts": False, "type_prompts": False}]


@pytest.mark.parametrize("switches", ABLATIONS, ids=lambda s: "-".join(f"no_{k.split('_')[0]}" for k in s))
def test_mplmm_ablations_equal_per_sample_loop(switches, generation):
    """Each ablation switch removes exactly its prompts: the vectorised model equals the naive loop without them,
    the removed parameters do not exist, and the output still changes with the mode."""
    torch.manual_seed(4)
    m = _small_mplmm(**switches)
    names = {n for n, _ in m.named_parameters()}
    assert ("generative_prompt" in names) == switches.get("generative_prompts", True)
    assert any(n.startswith("missing_type_prompt") for n in names) == switches.get("type_prompts", True)
    has_signal = switches.get("signal_prompts", True) or switches.get("type_prompts", True)
    assert any(n.startswith("prompt_m.") for n in names) == has_signal
    fuser_in = m.fusers["l_avp"].conv.in_channels
    assert fuser_in == MP_SEQS[1] + MP_SEQS[2] + (3 if switches.get("generative_prompts", True) else 0)
    x = _assert_equals_per_sample_loop(m)
    fewer = _small_mplmm().parameter_counts()["total"] - m.parameter_counts()["total"]
    assert fewer == 0 if switches == {"signal_prompts": False} else fewer > 0  # no_signal keeps the M_P factors
    assert (m(*x, MP_MODES) - m(*x, torch.full_like(MP_MODES, 6))).abs().max() > 1e-6  # the mode still matters


def test_mplmm_ablation_keys_are_validated():
    from mplmm.errors import ConfigError
    from mplmm.models import validate_model_config

    validate_model_config("mplmm", {"type_prompts": False, "prompt_length": 8})
    with pytest.raises(ConfigError, match="type_prompts"):
        validate_model_config("mplmm", {"type_prompts": "no"})
    with pytest.raises(ConfigError, match="signal_prompts"):
        validate_model_config("mplmm", {"signal_prompt": False})  # a typo: the closest key is named
    m = create_model("mplmm", dims=(4, 4, 4), seq_lens=(2, 2, 2), d=8, num_heads=2, layers=1, type_prompts=False)
    with pytest.raises(ConfigError, match="type_prompts=false"):
        m.missing_type_tokens(torch.zeros(1, dtype=torch.long))


def test_mplmm_batch_invariance_and_missing_not_read(generation):
    torch.manual_seed(3)
    dims, seqs = (6, 5, 4), (5, 6, 7)
    m = create_model("mplmm", dims=dims, seq_lens=seqs, output_dim=3, layers=2, d=12, num_heads=3).eval()
    modes = torch.arange(7)
    x = _inputs(7, dims, seqs)
    with torch.no_grad():
        full = m(*x, modes)
        for i in range(7):  # each sample alone gives the same output as inside the mixed batch
            alone = m(*[t[i:i + 1] for t in x], modes[i:i + 1])
            assert (alone - full[i:i + 1]).abs().max() < TOL
        from mplmm.constants import MODE_PRESENT
        x2 = [t.clone() for t in x]
        for i in range(7):
            for j, present in enumerate(MODE_PRESENT[i]):
                if not present:
                    x2[j][i] += 100.0
        assert (m(*x2, modes) - full).abs().max() == 0


def _mt_grads(prompt_init):
    torch.manual_seed(4)
    dims, seqs = (6, 5, 4), (5, 6, 7)
    m = create_model("mplmm", dims=dims, seq_lens=seqs, layers=2, d=12, num_heads=3, prompt_init=prompt_init)
    m.train()
    x = _inputs(8, dims, seqs)
    m(*x, torch.tensor([0, 1, 2, 3, 4, 5, 6, 6])).pow(2).mean().backward()
    return m


def test_masked_generation_equals_gathered_with_gradients(monkeypatch):
    """The sync-free masked generation gives the row-gather path's outputs and parameter gradients (training mode,
    every mode in the batch, frame masks)."""
    import mplmm.models.mplmm as MP

    dims, seqs = (6, 5, 4), (5, 6, 7)
    modes = torch.tensor([0, 1, 2, 3, 4, 5, 6, 2, 0])
    frames = {"audio": torch.rand(9, 6) > 0.3}
    results = []
    for masked in (False, True):
        monkeypatch.setattr(MP, "MASKED_GENERATION", masked)
        torch.manual_seed(6)
        m = create_model("mplmm", dims=dims, seq_lens=seqs, layers=1, d=12, num_heads=3, embed_dropout=0.0)
        out = m(*_inputs(9, dims, seqs), modes, frames)
        out.pow(2).mean().backward()
        results.append((out.detach(), {n: p.grad for n, p in m.named_parameters() if p.grad is not None}))
    (out_g, grads_g), (out_m, grads_m) = results
    assert (out_g - out_m).abs().max() < TOL
    assert grads_g.keys() == grads_m.keys() and "fusers.a_lvp.conv.weight" in grads_m
    for name in grads_g:
        assert (grads_g[name] - grads_m[name]).abs().max() < 1e-5, name


def test_missing_type_prompts_learn_with_default_init():
    m = _mt_grads("lora")
    assert m.missing_type_prompt.grad.abs().sum() > 0
    assert all(m.m[k].grad.abs().sum() > 0 for k in "lav")


def test_zero_init_reproduces_dead_missing_type_branch():
    """Bug B1 of the released code: with all-zero prompts the missing-type branch gets exactly zero gradient."""
    m = _mt_grads("zeros")
    assert m.missing_type_prompt.grad.abs().sum() == 0
    assert all(m.m[k].grad.abs().sum() == 0 for k in "lav")
    assert m.generative_prompt.grad.abs().sum() > 0  # the input path still learns


@pytest.mark.parametrize("dims,seqs,out,total,trainable", [
    ((300, 5, 20), (50, 375, 500), 1, 2_176_946, 1_115_666),
    ((300, 5, 20), (50, 50, 50), 1, 1_149_421, 88_141),
    ((1024, 130, 342), (22, 350, 50), 4, 1_377_066, 315_786),
    ((768, 33, 709), (39, 400, 55), 1, 1_443_875, 382_595),
    ((100, 73, 100), (1, 1, 1), 1, 1_089_616, 28_336),
])
def test_parameter_counts_match_released_code(dims, seqs, out, total, trainable):
    """The counts of docs/models.md (released code = gen_projection 'bypass'), after transfer from a MOSEI MulT."""
    src = create_model("mult", dims=(300, 74, 35), seq_lens=(50, 500, 500))
    assert src.parameter_counts()["total"] == 1_073_731
    m = create_model("mplmm", dims=dims, seq_lens=seqs, output_dim=out, gen_projection="bypass")
    report = m.load_pretrained_backbone(src.state_dict(), src.config)
    assert m.parameter_counts() == {"total": total, "trainable": trainable, "frozen": 1_061_280}
    assert sorted(k.split(".", 1)[1] for k in report["skipped"]) == sorted(
        ["proj_l.weight", "proj_a.weight", "proj_v.weight", "out_layer.weight", "out_layer.bias"])


def test_transfer_rejects_other_backbone_sizes():
    src = create_model("mult", dims=(6, 5, 4), seq_lens=(5, 6, 7), d=12, num_heads=3, layers=2)
    m = create_model("mplmm", dims=(6, 5, 4), seq_lens=(5, 6, 7), d=12, num_heads=3, layers=3)
    with pytest.raises(ValueError, match="layers=2"):
        m.load_pretrained_backbone(src.state_dict(), src.config)


def test_no_global_default_tensor_type_change():
    import mplmm.models.mplmm  # noqa: F401
    import mplmm.train  # noqa: F401

    assert torch.get_default_dtype() == torch.float32
    assert torch.empty(1).device.type == "cpu"


def test_projection_hooks_fire_and_do_not_change_outputs():
    """Captum's layer attributions hook proj_l/a/v: the hook must fire and the output must not change."""
    torch.manual_seed(5)
    dims, seqs = (6, 5, 4), (5, 6, 7)
    m = create_model("mplmm", dims=dims, seq_lens=seqs, layers=1, d=12, num_heads=3).eval()
    x, modes = _inputs(4, dims, seqs), torch.tensor([0, 3, 5, 6])
    with torch.no_grad():
        plain = m(*x, modes)
        seen = []
        handle = m.backbone.proj_a.register_forward_hook(lambda mod, inp, out: seen.append(out.shape))
        hooked = m(*x, modes)
        handle.remove()
    assert seen and (plain - hooked).abs().max() < TOL
