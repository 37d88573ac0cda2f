"""bfloat16 inference on a CPU (``--amp`` of evaluate / curve / predict): speed against fp32, and the metric drift.

1. **Speed**: MPLMM at MOSEI-like shapes (dims 300/74/35, lengths 50/500/500, d=30, P=16, 5 layers), batch 16,
   inference samples/s in fp32 and under bf16 autocast (best of ``--reps``), in one process, one after the other.
2. **Drift**: MulT pre-trained and MPLMM prompt-tuned (rate 0.7) on the shared real MOSI file (``--epochs`` each),
   then the test split evaluated at missing rates 0 and 0.7 (mask seeds 0-2) in fp32 and with ``amp=True``; the
   largest |bf16 - fp32| of Non0_acc_2 and MAE must be at most 0.005.

bf16 autocast is used only where :func:`mplmm.utils.native_bf16` is True (AVX512-BF16 or AMX); on other CPUs the
script says so and measures the emulated path anyway (slower, same numbers). Last line: ``native=… fp32_sps=…
bf16_sps=… speedup=… max_drift_acc2=… max_drift_mae=…``.

    python benchmarks/bench_amp.py [--data ../shared/data/mosi_bclstm] [--epochs 10] [--reps 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import cpu_name  # noqa: E402  (benchmarks/, the script's folder)

from mplmm.data import load_dataset  # noqa: E402
from mplmm.evaluate import evaluate_model  # noqa: E402
from mplmm.missing import MissingSpec  # noqa: E402
from mplmm.models import create_model  # noqa: E402
from mplmm.train import TrainConfig, train  # noqa: E402
from mplmm.utils import native_bf16  # noqa: E402

MOSEI = dict(dims=(300, 74, 35), seq_lens=(50, 500, 500))
DRIFT_TARGET = 0.005


def samples_per_second(model: torch.nn.Module, bf16: bool, batch: int, reps: int) -> float:
    """Best inference throughput of ``model`` on random MOSEI-shaped batches (fp32 or bf16 autocast)."""
    x = [torch.randn(batch, t, d) for d, t in zip(MOSEI["dims"], MOSEI["seq_lens"])]
    modes = torch.arange(batch) % 7
    best = float("inf")
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        model(*x, modes)  # warm-up
        for _ in range(reps):
            t0 = time.perf_counter()
            model(*x, modes)
            best = min(best, time.perf_counter() - t0)
    return batch / best


def drift(data: str, epochs: int, out: Path) -> list[dict]:
    """fp32 vs amp metrics of a MulT -> MPLMM pipeline on real MOSI at test rates 0 and 0.7."""
    ds = load_dataset(data, verbose=False)
    pre = train(TrainConfig(model="mult", epochs=epochs, progress=False, seed=0), ds, out / "mult")
    tuned = train(TrainConfig(model="mplmm", epochs=epochs, train_rate=0.7, progress=False, seed=0,
                              pretrained=str(out / "mult" / "best.pt")), ds, out / "mplmm")
    rows = []
    for name, model in (("mult", pre.model), ("mplmm", tuned.model)):
        for rate in (0.0, 0.7):
            for seed in (0, 1, 2):
                spec = MissingSpec("modality", rate, seed)
                a = evaluate_model(model, ds, spec, device="cpu")
                b = evaluate_model(model, ds, spec, device="cpu", amp=True)
                rows.append({"model": name, "rate": rate, "seed": seed, "fp32_acc2": a["Non0_acc_2"],
                             "bf16_acc2": b["Non0_acc_2"], "fp32_mae": a["MAE"], "bf16_mae": b["MAE"]})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/mosi_bclstm"))
    ap.add_argument("--epochs", type=int, default=10, help="training epochs of each stage for the drift check")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions (the best is reported)")
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args(argv)
    native = native_bf16()
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, "
          f"native bf16: {native}")
    torch.manual_seed(0)
    model = create_model("mplmm", output_dim=1, **MOSEI).eval()
    fp32 = samples_per_second(model, False, args.batch, args.reps)
    bf16 = samples_per_second(model, True, args.batch, args.reps)
    print(f"MPLMM inference at MOSEI shapes, batch {args.batch}: fp32 {fp32:.1f} samples/s, bf16 autocast "
          f"{bf16:.1f} samples/s ({bf16 / fp32:.2f}x)")
    with tempfile.TemporaryDirectory() as tmp:
        rows = drift(args.data, args.epochs, Path(tmp))
    worst_acc = max(abs(r["bf16_acc2"] - r["fp32_acc2"]) for r in rows)
    worst_mae = max(abs(r["bf16_mae"] - r["fp32_mae"]) for r in rows)
    print(f"{'model':6s} {'rate':>4s} {'seed':>4s} {'Acc2 fp32':>9s} {'Acc2 bf16':>9s} {'MAE fp32':>9s} "
          f"{'MAE bf16':>9s}")
    for r in rows:
        print(f"{r['model']:6s} {r['rate']:4.1f} {r['seed']:4d} {r['fp32_acc2']:9.4f} {r['bf16_acc2']:9.4f} "
              f"{r['fp32_mae']:9.4f} {r['bf16_mae']:9.4f}")
    verdict = "met" if max(worst_acc, worst_mae) <= DRIFT_TARGET else "MISSED"
    print(f"largest drift: Acc-2 {worst_acc:.4f}, MAE {worst_mae:.4f} (target <= {DRIFT_TARGET}: {verdict})")
    print(f"native={native} fp32_sps={fp32:.2f} bf16_sps={bf16:.2f} speedup={bf16 / fp32:.3f} "
          f"max_drift_acc2={worst_acc:.4f} max_drift_mae={worst_mae:.4f}")


if __name__ == "__main__":
    main()
