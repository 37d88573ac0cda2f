"""Plain, slow reference implementations (loops over samples, heads and positions) used only by tests.

They read the weights of the fast modules and recompute everything from the definitions in docs/models.md, so a test
can compare fast vs naive outputs on the same weights.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mplmm.constants import MODE_PRESENT


def naive_mask(len_q: int, len_k: int) -> torch.Tensor:
    """MulT's buffered_future_mask as an additive matrix, from the formula j > i + |Lk - Lq|."""
    m = torch.zeros(len_q, len_k)
    for i in range(len_q):
        for j in range(len_k):
            if j > i + abs(len_k - len_q):
                m[i, j] = float("-inf")
    return m


def naive_positions(x_in: torch.Tensor, dim: int) -> torch.Tensor:
    """fairseq make_positions + sinusoidal table, one sample and one step at a time."""
    b, t, _ = x_in.shape
    half = dim // 2
    out = torch.zeros(b, t, dim)
    for s in range(b):
        count = 0
        for i in range(t):
            if x_in[s, i, 0] == 0:
                continue  # padding: zero vector
            count += 1
            for k in range(half):
                freq = math.exp(-k * math.log(10000) / (half - 1))
                out[s, i, k] = math.sin(count * freq)
                out[s, i, half + k] = math.cos(count * freq)
    return out


def naive_mha(mha, q_in: torch.Tensor, kv_in: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Multi-head attention for ONE sample ``q_in (Lq, E)``, ``kv_in (Lk, E)``, head by head."""
    e, h = mha.embed_dim, mha.num_heads
    hd = e // h
    w, bias = mha.in_proj_weight, mha.in_proj_bias
    q = q_in @ w[:e].T + bias[:e]
    k = kv_in @ w[e:2 * e].T + bias[e:2 * e]
    v = kv_in @ w[2 * e:].T + bias[2 * e:]
    heads = []
    for j in range(h):
        sl = slice(j * hd, (j + 1) * hd)
        scores = (q[:, sl] * hd ** -0.5) @ k[:, sl].T
        if mask is not None:
            scores = scores + mask
        heads.append(torch.softmax(scores, dim=-1) @ v[:, sl])
    return mha.out_proj(torch.cat(heads, dim=-1))


def naive_encoder(enc, x_in: torch.Tensor, x_in_k: torch.Tensor | None = None) -> torch.Tensor:
    """MulT TransformerEncoder in eval mode, sample by sample."""
    e = enc.embed_dim
    x = math.sqrt(e) * x_in + naive_positions(x_in, e)
    xk = None if x_in_k is None else math.sqrt(e) * x_in_k + naive_positions(x_in_k, e)
    outs = []
    for s in range(x.shape[0]):
        h = x[s]
        for layer in enc.layers:
            ln0, ln1 = layer.layer_norms
            src = h if xk is None else xk[s]
            mask = naive_mask(h.shape[0], src.shape[0]) if layer.attn_mask else None
            h = h + naive_mha(layer.self_attn, ln0(h), ln0(src), mask)
            h = h + layer.fc2(F.relu(layer.fc1(ln1(h))))
        outs.append(enc.layer_norm(h))
    return torch.stack(outs)


def naive_mult_encode(bb, xl, xa, xv, extra=None) -> torch.Tensor:
    """Crossmodal + memory transformers + last-step readout of a MulTBackbone (eval mode)."""
    x = {"l": xl, "a": xa, "v": xv}
    reads = []
    for i, m in enumerate("lav"):
        parts = [naive_encoder(getattr(bb, f"trans_{m}_with_{s}"), x[m], x[s]) for s in "lav" if s != m]
        seq = torch.cat(parts, dim=-1)
        if extra is not None:
            seq = torch.cat([seq, extra[i]], dim=1)
        reads.append(naive_encoder(getattr(bb, f"trans_{m}_mem"), seq)[:, -1])
    return torch.cat(reads, dim=-1)


def naive_head(bb, h: torch.Tensor) -> torch.Tensor:
    return bb.out_layer(bb.proj2(F.relu(bb.proj1(h))) + h)


def naive_mult(model, text, audio, vision) -> torch.Tensor:
    bb = model.backbone
    proj = [p(x.transpose(1, 2)).transpose(1, 2) for p, x in ((bb.proj_l, text), (bb.proj_a, audio),
                                                              (bb.proj_v, vision))]
    return naive_head(bb, naive_mult_encode(bb, *proj))


# generation table (docs/models.md, missing-modality generation): mode -> {target: ordered source list}
GEN_TABLE = {
    0: {"l": ["a", "v"]}, 1: {"a": ["l", "v"]}, 2: {"v": ["l", "a"]},
    3: {"l": ["v"], "a": ["v"]}, 4: {"l": ["a"], "v": ["a"]}, 5: {"a": ["l"], "v": ["l"]}, 6: {},
}
FUSER_NAME = {("l", ("a",)): "l_ap", ("l", ("v",)): "l_vp", ("l", ("a", "v")): "l_avp",
              ("a", ("l",)): "a_lp", ("a", ("v",)): "a_vp", ("a", ("l", "v")): "a_lvp",
              ("v", ("a",)): "v_ap", ("v", ("l",)): "v_lp", ("v", ("l", "a")): "v_alp"}


def naive_mplmm(model, text, audio, vision, modes, lengths=None) -> torch.Tensor:
    """MPLMM forward written as the released code does it: a Python loop over samples. The ablation switches
    (``generative_prompts``, ``signal_prompts``, ``type_prompts`` in ``model.config``) drop their term.

    ``lengths (B, 3)``: a present modality is truncated to its real steps (one zero frame when 0), a source's mapper
    outputs are zero beyond its length, a generated modality has its full length, the missing-type tokens follow the
    real steps; every sample then runs alone (:func:`naive_sample_mult_encode`)."""
    bb, d = model.backbone, model.d
    use_gen, use_signal, use_type = (model.config.get(k, True) for k in
                                     ("generative_prompts", "signal_prompts", "type_prompts"))
    gp = {"l": 0, "a": 1, "v": 2}
    raw_all = {"l": text, "a": audio, "v": vision}
    feats = {m: [] for m in "lav"}
    tokens = [[], [], []]
    real = []  # per sample: the number of real steps of each completed modality
    for s in range(text.shape[0]):
        mode = int(modes[s])
        raw = {m: raw_all[m][s].T for m in "lav"}  # (D, L)
        given = {m: raw[m].shape[1] if lengths is None else int(lengths[s, j]) for j, m in enumerate("lav")}
        real.append({})
        for t in "lav":
            if t in GEN_TABLE[mode]:
                srcs = GEN_TABLE[mode][t]
                parts = [model.generative_prompt[gp[t]]] if use_gen else []
                for src in srcs:
                    mapped = F.gelu(model.mappers[f"{src}2{t}"].conv(raw[src].unsqueeze(0))[0])  # (d, L_src)
                    parts.append(mapped if lengths is None else mapped * (torch.arange(mapped.shape[1]) < given[src]))
                cat = torch.cat(parts, dim=1)  # (d, P + ΣL) or (d, ΣL) without generative prompts
                fuser = model.fusers[FUSER_NAME[(t, tuple(srcs))]]
                gen = F.gelu(fuser.conv(cat.T.unsqueeze(0))[0]).T  # (d, L_t)
                if model.config["gen_projection"] == "conv":
                    gen = model.gen_proj[t](gen.unsqueeze(0))[0]
                feats[t].append(gen + model.prompt_m[t] if use_signal else gen)
                real[s][t] = gen.shape[1]
            else:
                proj = getattr(bb, f"proj_{t}")
                rows = raw[t][:, :given[t]] if given[t] else torch.zeros(raw[t].shape[0], 1)  # model zero-fills
                x = proj(rows.unsqueeze(0))[0]
                feats[t].append(x + model.prompt_nm[t][:, :x.shape[1]] if use_signal else x)
                real[s][t] = given[t]
        if not use_type:
            continue
        # missing-type prompts: M_P for this sample's mode, then T = P_MT @ M_P
        mp = torch.zeros(d, 2 * d)
        for i, m in enumerate("lav"):
            prompt = model.prompt_nm[m] if MODE_PRESENT[mode][i] else model.prompt_m[m]
            mp = mp + prompt @ model.m[m]
        for i in range(3):
            tokens[i].append(model.missing_type_prompt[i] @ mp)
    if lengths is not None:
        return naive_head(bb, torch.stack([
            naive_sample_mult_encode(bb, {m: feats[m][s].T for m in "lav"}, real[s],
                                     [t[s] for t in tokens] if use_type else None)
            for s in range(text.shape[0])]))
    x = [torch.stack(feats[m]).transpose(1, 2) for m in "lav"]
    extra = [torch.stack(t) for t in tokens] if use_type else None
    return naive_head(bb, naive_mult_encode(bb, *x, extra=extra))


# -- per-sample lengths: every sample run alone on its truncated sequences -------------------------------------------
def naive_sinusoid(position: int, dim: int) -> torch.Tensor:
    """MulT's sinusoidal vector of one position (zero vector for position 0), element by element."""
    out = torch.zeros(dim)
    if position == 0:
        return out
    half = dim // 2
    for k in range(half):
        freq = math.exp(-k * math.log(10000) / (half - 1))
        out[k] = math.sin(position * freq)
        out[half + k] = math.cos(position * freq)
    return out


def truncate(x: torch.Tensor, length: int) -> torch.Tensor:
    """The real steps ``x[:length]`` of one sample ``x (T, E)``; for length 0 its step 0 alone (the step that the
    no-valid-key convention attends to)."""
    return x[:length] if length > 0 else x[:1]


def naive_sample_encoder(enc, q: torch.Tensor, len_q: int, k: torch.Tensor | None = None,
                         len_k: int | None = None) -> torch.Tensor:
    """MulT TransformerEncoder (eval mode) for ONE sample on truncated sequences: ``q (n_q, E)`` holds the ``len_q``
    real steps, or the single step 0 when ``len_q`` is 0 (likewise ``k``). Positions 1..len regardless of values
    (0 for that lone step); MulT's mask ``j > i + |len_k - len_q|`` with the real lengths."""
    e = enc.embed_dim

    def embed(rows: torch.Tensor, length: int) -> torch.Tensor:
        pos = torch.stack([naive_sinusoid(i + 1 if length else 0, e) for i in range(rows.shape[0])])
        return math.sqrt(e) * rows + pos

    h = embed(q, len_q)
    src_in = None if k is None else embed(k, len_k)
    real_k = len_q if k is None else len_k
    for layer in enc.layers:
        ln0, ln1 = layer.layer_norms
        src = h if src_in is None else src_in
        mask = None
        if layer.attn_mask:
            mask = torch.zeros(h.shape[0], src.shape[0])
            for i in range(h.shape[0]):
                for j in range(src.shape[0]):
                    if j > i + abs(real_k - len_q):
                        mask[i, j] = float("-inf")
        h = h + naive_mha(layer.self_attn, ln0(h), ln0(src), mask)
        h = h + layer.fc2(F.relu(layer.fc1(ln1(h))))
    return enc.layer_norm(h)


def naive_sample_mult_encode(bb, x: dict, lens: dict, extra: list | None = None) -> torch.Tensor:
    """Crossmodal + memory transformers of ONE sample: ``x[m]`` truncated ``(n_m, d)`` with ``lens[m]`` real steps;
    appended tokens ``extra[i] (P, 2d)`` follow the real steps. Readout: the last row of the memory output."""
    reads = []
    for i, m in enumerate("lav"):
        parts = [naive_sample_encoder(getattr(bb, f"trans_{m}_with_{s}"), x[m], lens[m], x[s], lens[s])
                 for s in "lav" if s != m]
        seq, n = torch.cat(parts, dim=-1), lens[m]
        if extra is not None and extra[i].shape[0]:
            seq, n = torch.cat([seq[:n], extra[i]], dim=0), n + extra[i].shape[0]
        reads.append(naive_sample_encoder(getattr(bb, f"trans_{m}_mem"), seq, n)[-1])
    return torch.cat(reads)


def naive_mult_lengths(model, text, audio, vision, lengths) -> torch.Tensor:
    """Plain MulT with per-sample lengths: each sample alone on its truncated inputs (length 0: one zero frame)."""
    bb = model.backbone
    convs = {"l": bb.proj_l, "a": bb.proj_a, "v": bb.proj_v}
    outs = []
    for b in range(text.shape[0]):
        x, lens = {}, {}
        for j, (m, raw) in enumerate(zip("lav", (text, audio, vision))):
            lens[m] = int(lengths[b, j])
            rows = raw[b, :lens[m]] if lens[m] else torch.zeros(1, raw.shape[-1])
            x[m] = convs[m](rows.T.unsqueeze(0))[0].T
        outs.append(naive_sample_mult_encode(bb, x, lens))
    return naive_head(bb, torch.stack(outs))
