"""Inference cost of per-sample sequence lengths: MulT and MPLMM with ``lengths=None`` vs random ``lengths``.

MOSEI-like shapes: dims 300/74/35, sequence lengths 50/500/500, d=30, 5 heads, 5 layers (MPLMM: P=16), batch 16,
2 threads on CPU, every mode in the batch (MPLMM). The lengths path builds one ``(B, 1, Lq, Lk)`` mask per encoder
call (padding keys hidden, MulT's offset rule with each sample's real lengths) and reads out the last real step; the
figures are the best of ``--reps`` timed forward passes under ``torch.inference_mode``. The last line is
``mult_ratio=… mplmm_ratio=…`` (time with lengths / time without).

    python benchmarks/bench_lengths.py [--device auto] [--batch 16] [--threads 2] [--reps 5] [--quick]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import add_device_flags, best_seconds, cpu_name  # noqa: E402

from mplmm.models import create_model  # noqa: E402
from mplmm.utils import resolve_device  # noqa: E402

DIMS, SEQS = (300, 74, 35), (50, 500, 500)


def inputs(batch: int, seqs: tuple[int, ...], device: torch.device) -> tuple[list[torch.Tensor], torch.Tensor,
                                                                             torch.Tensor]:
    """Random features, every mode in turn, and random lengths in ``[1, T]`` (some full)."""
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(batch, t, d, generator=g).to(device) for t, d in zip(seqs, DIMS)]
    modes = (torch.arange(batch) % 7).to(device)
    lengths = torch.stack([torch.randint(1, t + 1, (batch,), generator=g) for t in seqs], dim=1)
    lengths[::4] = torch.tensor(seqs)
    return feats, modes, lengths.to(device)


def time_model(name: str, batch: int, seqs: tuple[int, ...], reps: int, device: torch.device) -> tuple[float, float]:
    """Best forward seconds of model ``name`` without and with lengths."""
    torch.manual_seed(0)
    model = create_model(name, dims=DIMS, seq_lens=seqs).to(device).eval()
    feats, modes, lengths = inputs(batch, seqs, device)
    with torch.inference_mode():
        plain = best_seconds(lambda: model(*feats, modes), reps, warmup=1, device=device)
        masked = best_seconds(lambda: model(*feats, modes, lengths=lengths), reps, warmup=1, device=device)
    return plain, masked


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5, help="timed forward passes per path (best is kept)")
    ap.add_argument("--quick", action="store_true", help="sequence lengths / 10 (a smoke run, not the figures)")
    add_device_flags(ap, amp=False)
    args = ap.parse_args()
    dev = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    seqs = tuple(max(2, t // 10) for t in SEQS) if args.quick else SEQS
    machine = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name()
    print(f"machine: {machine}, {os.cpu_count()} CPUs, torch {torch.__version__}, {dev}, "
          f"threads {torch.get_num_threads()}, batch {args.batch}, lengths {seqs}, dims {DIMS}")
    print(f"{'model':8s} {'lengths=None ms':>16s} {'lengths ms':>11s} {'ratio':>6s}")
    ratios = {}
    for name in ("mult", "mplmm"):
        plain, masked = time_model(name, args.batch, seqs, args.reps, dev)
        ratios[name] = masked / plain
        print(f"{name:8s} {1e3 * plain:16.1f} {1e3 * masked:11.1f} {ratios[name]:6.2f}")
    print(" ".join(f"{name}_ratio={r:.2f}" for name, r in ratios.items()))


if __name__ == "__main__":
    main()
