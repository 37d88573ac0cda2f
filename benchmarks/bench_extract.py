"""Extraction throughput on real clips built here (scikit-image's astronaut moved about, espeak-ng speech, H.264 +
AAC): seconds per clip per modality, and the wall time of audio + vision with ``--workers``.

(a) Writes ``--clips`` clips of ``--seconds`` s at ``--fps`` frames per second, ``--size`` pixels a side (default:
8 clips of 10 s, 25 fps, 360 x 360), reused with ``--dir``. (b) Extracts them with one worker (per-clip audio and
vision seconds from the report), then, from an empty cache, with ``--workers`` (default 2): the wall time per clip
includes starting the worker processes (each imports torch, openSMILE and OpenCV once). (c) Encodes the transcripts
with a local encoder (``--text_model``; default a small random BERT written here: the real code path, not
BERT-base's cost; pass a local BERT-base folder to measure that): loading once, then seconds per clip. Target: at
most 2 s per 10-s clip for audio + vision detection with 2 workers on a 2-core CPU. Prints the machine, a table and
as its last line ``audio_s_per_clip=… vision_s_per_clip=… av_wall_s_per_clip=… text_s_per_clip=… workers=…``.

    python benchmarks/bench_extract.py [--clips 8] [--seconds 10] [--fps 25] [--size 360] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import cpu_name  # noqa: E402  (benchmarks/, the script's folder)

TARGET_S = 2.0
SENTENCES = ["I really loved this movie and the music was wonderful", "this was a terrible and boring film",
             "the acting was great but the ending was sad", "what a beautiful and happy story that was"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--size", type=int, default=360)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--text_model", default=None, help="a local encoder folder (default: a small random BERT)")
    ap.add_argument("--dir", default=None, help="where the clips go (default: a temporary folder, removed)")
    args = ap.parse_args()

    import pandas as pd

    from mplmm.extract import extract
    from mplmm.extract.samples import write_clip
    from mplmm.extract.text import tiny_encoder

    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench_extract_"))
    folder = work / f"clips_{args.clips}x{args.seconds:g}s_{args.fps}fps_{args.size}px"
    t0 = time.perf_counter()
    rows = []
    for i in range(args.clips):
        path = folder / f"clip_{i:03d}.mp4"
        text = SENTENCES[i % len(SENTENCES)]
        if not path.is_file():
            write_clip(path, text=text, seconds=args.seconds, fps=args.fps, size=args.size, seed=i)
        rows.append({"id": path.stem, "text": text})
    pd.DataFrame(rows).to_csv(work / "transcripts.csv", index=False)
    build_s = time.perf_counter() - t0
    encoder = args.text_model or tiny_encoder(work / "encoder", " ".join(SENTENCES).split())

    print(f"machine: {platform.machine()} {cpu_name()}, {os.cpu_count()} CPUs, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; {args.clips} clips of {args.seconds:g} s, {args.fps} fps, "
          f"{args.size} px (built in {build_s:.1f} s)")
    for old in ("cache_one", "cache_par"):  # clips are reused with --dir, results never: measure extraction
        shutil.rmtree(work / old, ignore_errors=True)
    t0 = time.perf_counter()
    one = extract(folder, work / "one.npz", work / "transcripts.csv", text_model="none", progress=False,
                  cache=str(work / "cache_one"))
    one_wall = (time.perf_counter() - t0) / args.clips
    t0 = time.perf_counter()
    par = extract(folder, work / "par.npz", work / "transcripts.csv", text_model="none", progress=False,
                  workers=args.workers, cache=str(work / "cache_par"))
    av_wall = (time.perf_counter() - t0) / args.clips
    ok = (par.report["audio"] == "ok").all() and (par.report["vision"] == "ok").all()
    from mplmm.extract.config import ExtractConfig
    from mplmm.extract.text import TextEncoder

    t0 = time.perf_counter()
    enc = TextEncoder(ExtractConfig(text_model=encoder))
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    enc([r["text"] for r in rows])
    text_s = (time.perf_counter() - t0) / args.clips
    audio_s = float(one.report["audio_s"].mean())
    vision_s = float(one.report["vision_s"].mean())
    per10 = av_wall * 10.0 / args.seconds
    print(f"{'step':<44}{'s per clip':>12}")
    print(f"{'audio (decode, VAD, openSMILE), 1 worker':<44}{audio_s:>12.3f}")
    print(f"{'vision (decode, faces, HOG), 1 worker':<44}{vision_s:>12.3f}")
    print(f"{'audio + vision wall, 1 worker (in process)':<44}{one_wall:>12.3f}")
    print(f"{f'audio + vision wall, {args.workers} workers':<44}{av_wall:>12.3f}")
    what = "given encoder" if args.text_model else "small random BERT"
    print(f"{f'text ({what}; loading once: {load_s:.2f} s)':<44}{text_s:>12.3f}")
    print(f"target: audio + vision <= {TARGET_S} s per 10-s clip with 2 workers: {per10:.2f} s "
          f"({'met' if per10 <= TARGET_S else 'NOT met'}; speed-up over 1 worker {one_wall / av_wall:.2f}x, worker "
          f"start-up included); every clip extracted: {ok}")
    print(f"audio_s_per_clip={audio_s:.3f} vision_s_per_clip={vision_s:.3f} av_wall_s_per_clip={av_wall:.3f} "
          f"one_worker_wall_s_per_clip={one_wall:.3f} text_s_per_clip={text_s:.3f} workers={args.workers}")
    if not args.dir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
