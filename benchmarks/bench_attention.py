"""Time only the attention calls MPLMM makes at MOSI-unaligned shapes (SDPA on CPU), in isolation.

The sum is a hard bound: whatever the rest of the model costs, a forward (or a training step) cannot be faster than
its attention. Shapes as in ``bench_train.py``: L/A/V 50/375/500, d = 30 (crossmodal heads of width 6), memory
transformers at 2d = 60 (heads of width 12) over L + P tokens (P = 16), 5 heads, 5 layers (the memory
transformers' last layer reads one query row), batch 64, 2 threads, MulT's masks exactly as the model passes them.

    python benchmarks/bench_attention.py [--batch 64] [--threads 2] [--reps 3]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import best_seconds  # noqa: E402  (benchmarks/, the script's folder)
from mplmm.models.mult import CROSSMODAL  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import mplmm.models.transformer as T  # noqa: E402
from mplmm.models.transformer import offset_causal_mask  # noqa: E402

LENS = {"l": 50, "a": 375, "v": 500}
D, HEADS, LAYERS, P = 30, 5, 5, 16


def calls() -> list[tuple[str, int, int, int, str]]:
    """(name, len_q, len_k, embed_dim, mask kind) of every attention call of one forward pass."""
    out = []
    for name, tgt, src in CROSSMODAL:
        out += [(name, LENS[tgt], LENS[src], D, "offset")] * LAYERS
    for m in "lav":
        n = LENS[m] + P  # the two crossmodal outputs are concatenated along features (2d), not time
        out += [(f"trans_{m}_mem", n, n, 2 * D, "causal")] * (LAYERS - 1)
        out.append((f"trans_{m}_mem (last row)", 1, n, 2 * D, "none"))
    return out


def time_call(b: int, lq: int, lk: int, e: int, kind: str, reps: int, backward: bool) -> float:
    hd = e // HEADS
    # as the model calls it: the width its attention module computes these heads at on CPU
    width = T.MultiheadAttention(e, HEADS)._head_width(torch.device("cpu"), need_weights=False)
    g = torch.Generator().manual_seed(0)
    q, k, v = (F.pad(torch.randn(b, HEADS, n, hd, generator=g), (0, width - hd)).requires_grad_(backward)
               for n in (lq, lk, lk))
    mask = offset_causal_mask(lq, lk) if kind == "offset" else None
    grad = torch.randn(b, HEADS, lq, width, generator=g)

    def run() -> None:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=kind == "causal", scale=hd ** -0.5)
        if backward:
            out.backward(grad)

    return best_seconds(run, reps, warmup=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions per shape (best is kept)")
    ap.add_argument("--no-pad", action="store_true", help="SDPA at the true head widths (no zero-padding to 16)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.no_pad:
        T.CPU_SDPA_MIN_HEAD_DIM = 0
    cache: dict[tuple, tuple[float, float]] = {}
    fwd_total = train_total = 0.0
    rows = []
    for name, lq, lk, e, kind in calls():
        key = (lq, lk, e, kind)
        if key not in cache:
            cache[key] = (time_call(args.batch, *key, args.reps, False), time_call(args.batch, *key, args.reps, True))
        f, t = cache[key]
        fwd_total += f
        train_total += t
        rows.append((name, lq, lk, e, kind, f, t))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}, "
          f"CPU heads padded to width {T.CPU_SDPA_MIN_HEAD_DIM or 'off'}")
    print(f"{'module':28s} {'Lq':>5s} {'Lk':>5s} {'E':>3s} {'mask':>7s} {'fwd ms':>8s} {'fwd+bwd ms':>11s}")
    seen = set()
    for name, lq, lk, e, kind, f, t in rows:
        if (name, lq) in seen:
            continue
        seen.add((name, lq))
        n = sum(1 for r in rows if r[0] == name and r[1] == lq)
        print(f"{name:28s} {lq:5d} {lk:5d} {e:3d} {kind:>7s} {1e3 * f:8.1f} {1e3 * t:11.1f}  x{n}")
    print(f"attention per batch: forward {fwd_total:.2f} s, forward+backward {train_total:.2f} s")
    print(f"attention_bound_infer_samples_per_s={args.batch / fwd_total:.1f} "
          f"attention_bound_train_samples_per_s={args.batch / train_total:.1f}")


if __name__ == "__main__":
    main()
