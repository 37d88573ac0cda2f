"""Speed of the data side: loading the default synthetic dataset and drawing seeded missing-modality masks.

Targets (idle 2-core CPU): the default synthetic dataset loads in < 1 s; ``draw_modes`` takes < 0.5 s per 20 000 ids
for each protocol. Frame masks (one numpy Generator per sample, MOSI-unaligned lengths) are reported, no target.
Prints best-of-``--reps`` seconds for each, the target beside it, and as its last line
``synthetic_load_s=… draw_modes_entry_s=… draw_modes_modality_s=… frame_masks_s=…``.

    python benchmarks/bench_data.py [--ids 20000] [--reps 3]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import best_seconds  # noqa: E402  (benchmarks/, the script's folder)

from mplmm.data import load_dataset  # noqa: E402
from mplmm.missing import MissingSpec, draw_frame_masks, draw_modes  # noqa: E402

SEQ_LENS = (50, 375, 500)  # MOSI-unaligned text / audio / vision lengths


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ids", type=int, default=20000, help="number of sample ids for the mask timings")
    ap.add_argument("--reps", type=int, default=3, help="repetitions; the best is reported")
    args = ap.parse_args(argv)
    ids = [f"s{i}" for i in range(args.ids)]
    per_20k = 20000 / max(args.ids, 1)
    rows = [
        ("synthetic_load_s", best_seconds(lambda: load_dataset("synthetic", verbose=False), args.reps), 1.0),
        ("draw_modes_entry_s",
         best_seconds(lambda: draw_modes(MissingSpec("entry", 0.4, 1), ids, "train"), args.reps) * per_20k, 0.5),
        ("draw_modes_modality_s",
         best_seconds(lambda: draw_modes(MissingSpec("modality", 0.4, 1), ids, "train"), args.reps) * per_20k, 0.5),
        ("frame_masks_s",
         best_seconds(lambda: draw_frame_masks(MissingSpec("frame", 0.4, 1), ids, "train", SEQ_LENS), args.reps)
         * per_20k, None),
    ]
    for name, sec, target in rows:
        verdict = "no target" if target is None else (f"target < {target:g} s: " + ("met" if sec < target else "MISSED"))
        scale = "" if name == "synthetic_load_s" else " per 20k ids"
        print(f"{name:24s} {sec:8.3f} s{scale:12s}  ({verdict})")
    print(" ".join(f"{name}={sec:.4f}" for name, sec, _ in rows))


if __name__ == "__main__":
    main()
