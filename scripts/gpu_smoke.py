"""Python parts of ``scripts/gpu_smoke.sh``: each subcommand checks one thing and prints ONE result line last (the
row's number); a failed check exits non-zero.

    python scripts/gpu_smoke.py metric RUN_DIR [KEY]           # test metric (and epoch seconds) of a training run
    python scripts/gpu_smoke.py same-weights A.pt B.pt [TOL]   # max |diff| of two checkpoints' weights
    python scripts/gpu_smoke.py same-numbers A.json B.json TOL [KEYS]  # max |diff| of numbers both files have
                                                               # (KEYS: comma-separated, the last path part)
    python scripts/gpu_smoke.py notebooks OUT_DIR DEVICE       # notebooks 01-04 through papermill, small parameters
    python scripts/gpu_smoke.py grid OUT_DIR DEVICE            # tiny.yaml for DEVICE, output under OUT_DIR
    python scripts/gpu_smoke.py grid-check OUT_DIR             # every run of that grid finished ok
    python scripts/gpu_smoke.py bench LOG                      # summary of a bench_train.py log (fails on missed targets)
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _numbers(obj: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every numeric leaf of a JSON document as ``(path, value)``."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{prefix}{k}.")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{prefix}{i}.")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield prefix.rstrip("."), float(obj)


def _verdict(diff: float, tol: float, what: str) -> int:
    print(f"max |diff| {what} = {diff:.3g} (tolerance {tol:g})")
    return 0 if diff <= tol else 1


def metric(run: str, key: str = "MAE") -> int:
    """The run's test ``key`` and its mean epoch time."""
    m = json.loads((Path(run) / "metrics.json").read_text())
    hist = (Path(run) / "history.csv").read_text().splitlines()
    col = hist[0].split(",").index("seconds")
    secs = [float(line.split(",")[col]) for line in hist[1:]]
    rt = m["runtime"]
    print(f"test {key} {m['test'][key]:.4f}, {sum(secs) / len(secs):.2f} s/epoch, {rt['precision']} on {rt['name']}")
    return 0


def same_weights(a: str, b: str, tol: str = "0") -> int:
    """Max |diff| over the state dicts of two checkpoints (same keys required)."""
    from mplmm.checkpoint import read_checkpoint

    sa, sb = read_checkpoint(a)["state_dict"], read_checkpoint(b)["state_dict"]
    if sa.keys() != sb.keys():
        print(f"different keys: {sorted(set(sa) ^ set(sb))[:5]}")
        return 1
    diff = max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa if sa[k].numel())
    return _verdict(diff, float(tol), "of weights")


def same_numbers(a: str, b: str, tol: str, keys: str = "") -> int:
    """Max |diff| over the numbers found at the same place in two JSON files (e.g. evaluate on CUDA and on CPU),
    only those whose last path part is in ``keys`` when given (accuracies jump by 1/N when one prediction crosses a
    class boundary, so a CUDA/CPU comparison uses the continuous metrics)."""
    na = dict(_numbers(json.loads(Path(a).read_text())))
    nb = dict(_numbers(json.loads(Path(b).read_text())))
    wanted = set(keys.split(",")) if keys else None
    shared = sorted(k for k in set(na) & set(nb) if wanted is None or k.rsplit(".", 1)[-1] in wanted)
    if not shared:
        print("no numbers in common")
        return 1
    return _verdict(max(abs(na[k] - nb[k]) for k in shared), float(tol), f"of {len(shared)} numbers")


def notebooks(out: str, device: str) -> int:
    """01 (pretrain, then prompt-tune), 02, 03 and 04 with small parameters on ``device``; each must finish."""
    import papermill as pm

    from mplmm.workbench.batch import ensure_kernel

    base, kernel = Path(out), ensure_kernel()
    small = {"model_config": {"d": 16, "num_heads": 4, "layers": 1}, "epochs": 1}
    runs = [("01_train", "pre", {"model": "mult", "stage": "pretrain", **small}),
            ("01_train", "tune", {"model": "mplmm", "stage": "prompt-tune", "pretrained": str(base / "pre" / "best.pt"),
                                  "train_rate": 0.7, "epochs": 1, "model_config": {"prompt_length": 4}}),
            ("02_robustness", "robust", {"checkpoints": [str(base / "tune" / "best.pt")], "rates": [0.0, 0.5, 1.0],
                                         "mask_seeds": [0]}),
            ("03_prompt_attention", "attention", {"checkpoint": str(base / "tune" / "best.pt"), "n_samples": 8}),
            ("04_attributions", "attributions", {"checkpoint": str(base / "tune" / "best.pt"), "n_samples": 4,
                                                 "ig_steps": 4})]
    done = 0
    for stem, name, params in runs:
        folder = base / name
        folder.mkdir(parents=True, exist_ok=True)
        try:
            pm.execute_notebook(str(ROOT / "notebooks" / f"{stem}.ipynb"), str(folder / "run.ipynb"),
                                kernel_name=kernel, cwd=str(folder), progress_bar=False, execution_timeout=300,
                                parameters={"output_dir": str(folder), "device": device, **params})
            done += 1
        except Exception as exc:  # noqa: BLE001 - report and go on with the next notebook
            print(f"{stem} ({name}) failed: {str(exc).strip().splitlines()[-1][:200]}")
    print(f"{done}/{len(runs)} notebook runs ok on {device}")
    return 0 if done == len(runs) else 1


def grid(out: str, device: str) -> int:
    """Write ``OUT/grid.yaml``: papermill_runs/grids/tiny.yaml with every run on ``device``, output under ``OUT``."""
    import yaml

    spec = yaml.safe_load((ROOT / "papermill_runs" / "grids" / "tiny.yaml").read_text())
    spec["output_root"] = str(Path(out) / "runs")
    spec.setdefault("defaults", {})["device"] = device
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "grid.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    print(Path(out) / "grid.yaml")
    return 0


def grid_check(out: str) -> int:
    """Every row of the grid's index.csv has status ok."""
    import pandas as pd

    index = pd.read_csv(Path(out) / "runs" / "index.csv")
    ok = int((index["status"] == "ok").sum())
    print(f"{ok}/{len(index)} grid runs ok")
    return 0 if ok == len(index) and ok > 0 else 1


def bench(log: str) -> int:
    """Throughputs, peak GPU memory and targets from the machine-readable last line of a bench_train.py log."""
    lines = Path(log).read_text().strip().splitlines()
    fields = dict(re.findall(r"(\w+)=(\S+)", lines[-1])) if lines else {}
    if "train_samples_per_s" not in fields:
        print("no result line")
        return 1
    gpu = f", peak {fields['peak_gpu_mb']} MiB, epoch {fields['epoch_s']} s" if "peak_gpu_mb" in fields else ""
    targets = fields.get("targets", "n/a (CPU)")
    print(f"train {float(fields['train_samples_per_s']):.0f}/s, infer {float(fields['infer_samples_per_s']):.0f}/s"
          f"{gpu}, targets {targets}")
    return 1 if targets == "fail" else 0


COMMANDS: dict[str, Callable[..., int]] = {"metric": metric, "same-weights": same_weights,
                                           "same-numbers": same_numbers, "notebooks": notebooks, "grid": grid,
                                           "grid-check": grid_check, "bench": bench}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    sys.exit(COMMANDS[sys.argv[1]](*sys.argv[2:]))
