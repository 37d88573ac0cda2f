"""Time only the attention calls MPLMM makes at MOSI-unaligned shapes (SDPA), in isolation.

The sum is a hard bound: whatever the rest of the model costs, a forward (or a training step) cannot be faster than
its attention. Shapes as in ``bench_train.py``: L/A/V 50/375/500, d = 30 (crossmodal heads of width 6), memory
transformers at 2d = 60 (heads of width 12) over L + P tokens (P = 16), 5 heads, 5 layers (the memory
transformers' last layer reads one query row), batch 64, 2 threads, MulT's masks exactly as the model passes them,
heads padded as the model pads them on that device (CPU: to 16; CUDA: to multiples of 8). On CUDA timers are read
after a synchronisation and the peak GPU memory is printed; ``--amp`` times bfloat16 q/k/v.

    python benchmarks/bench_attention.py [--device auto] [--amp] [--batch 64] [--threads 2] [--reps 3]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import add_device_flags, best_seconds, peak_gpu_mb, reset_peak  # noqa: E402  (the script's folder)
from mplmm.constants import CROSSMODAL  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import mplmm.models.transformer as T  # noqa: E402
from mplmm.models.transformer import offset_causal_mask  # noqa: E402
from mplmm.utils import resolve_device  # noqa: E402

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


def time_call(b: int, lq: int, lk: int, e: int, kind: str, reps: int, backward: bool, device: torch.device,
              dtype: torch.dtype) -> float:
    hd = e // HEADS
    # as the model calls it: the width its attention module computes these heads at on this device
    width = T.MultiheadAttention(e, HEADS)._head_width(device, need_weights=False)
    g = torch.Generator().manual_seed(0)
    q, k, v = (F.pad(torch.randn(b, HEADS, n, hd, generator=g), (0, width - hd)).to(device, dtype)
               .requires_grad_(backward) for n in (lq, lk, lk))
    mask = offset_causal_mask(lq, lk, device) if kind == "offset" else None
    grad = torch.randn(b, HEADS, lq, width, generator=g).to(device, dtype)

    def run() -> None:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=kind == "causal", scale=hd ** -0.5)
        if backward:
            out.backward(grad)

    return best_seconds(run, reps, warmup=1, device=device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions per shape (best is kept)")
    ap.add_argument("--no-pad", action="store_true", help="SDPA at the true head widths (no zero-padding)")
    add_device_flags(ap)
    args = ap.parse_args()
    dev = resolve_device(args.device)
    dtype = torch.bfloat16 if args.amp and dev.type == "cuda" else torch.float32
    torch.set_num_threads(args.threads)
    if args.no_pad:
        T.CPU_SDPA_MIN_HEAD_DIM = T.CUDA_SDPA_HEAD_MULTIPLE = 0
    reset_peak(dev)
    cache: dict[tuple, tuple[float, float]] = {}
    fwd_total = train_total = 0.0
    rows = []
    for name, lq, lk, e, kind in calls():
        key = (lq, lk, e, kind)
        if key not in cache:
            cache[key] = tuple(time_call(args.batch, *key, args.reps, bwd, dev, dtype) for bwd in (False, True))
        f, t = cache[key]
        fwd_total += f
        train_total += t
        rows.append((name, lq, lk, e, kind, f, t))
    widths = sorted({T.padded_head_width(e // HEADS, dev.type) for _, _, _, e, _ in calls()})
    print(f"torch {torch.__version__}, {dev}, {str(dtype).removeprefix('torch.')}, threads {torch.get_num_threads()}, "
          f"batch {args.batch}, heads computed at widths {widths} (true widths {D // HEADS}, {2 * D // HEADS})")
    print(f"{'module':28s} {'Lq':>5s} {'Lk':>5s} {'E':>3s} {'mask':>7s} {'fwd ms':>8s} {'fwd+bwd ms':>11s}")
    seen = set()
    for name, lq, lk, e, kind, f, t in rows:
        if (name, lq) in seen:
            continue
        seen.add((name, lq))
        n = sum(1 for r in rows if r[0] == name and r[1] == lq)
        print(f"{name:28s} {lq:5d} {lk:5d} {e:3d} {kind:>7s} {1e3 * f:8.1f} {1e3 * t:11.1f}  x{n}")
    print(f"attention per batch: forward {fwd_total:.4f} s, forward+backward {train_total:.4f} s")
    if dev.type == "cuda":
        print(f"peak GPU memory: {peak_gpu_mb(dev):.0f} MiB")
    print(f"attention_bound_infer_samples_per_s={args.batch / fwd_total:.1f} "
          f"attention_bound_train_samples_per_s={args.batch / train_total:.1f}")


if __name__ == "__main__":
    main()
