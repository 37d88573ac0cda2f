"""Regenerate ``01_train.ipynb`` and ``02_robustness.ipynb`` (unexecuted, no outputs, kernel ``mplmm``).

    python notebooks/_build_notebooks.py           # rewrite both
    python notebooks/_build_notebooks.py --check   # exit 1 if a stored notebook differs from this script

Edit the notebooks HERE, not in Jupyter, so they stay reproducible: deterministic cell ids, one ``parameters`` cell
with annotated literals (``papermill --help-notebook`` documents them), derived values in the next cell.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
KERNELSPEC = {"name": "mplmm", "display_name": "Python (mplmm)", "language": "python"}


def _nb(stem: str, cells: list[tuple[str, str, list[str]]]) -> nbformat.NotebookNode:
    nb = new_notebook(metadata={"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}})
    for i, (kind, source, tags) in enumerate(cells):
        source = source.strip("\n")
        cell = new_markdown_cell(source) if kind == "md" else new_code_cell(source)
        cell["id"] = f"{stem.replace('_', '-')}-{i:02d}"
        if tags:
            cell["metadata"]["tags"] = list(tags)
        nb.cells.append(cell)
    return nb


def md(text: str) -> tuple[str, str, list[str]]:
    return ("md", text, [])


def code(text: str, *tags: str) -> tuple[str, str, list[str]]:
    return ("code", text, list(tags))


TRAIN = [
    md("""
# 01 · Train one model (pre-train or prompt-tune)

Trains one registered model with `mplmm.train.train` on a dataset and shows the data summary, live loss / metric
curves, the final validation and test metrics (selected on validation, reported on **test**, under fixed seeded
masks) and the trainable vs frozen parameter counts. `best.pt`, `last.pt`, `metrics.json`, `history.csv` and the
evaluation masks are written to `output_dir` (a re-run continues from `last.pt` when `resume` is true).

* `stage="pretrain"` — complete data (`train_rate` forced to 0), e.g. the `mult` backbone;
* `stage="prompt-tune"` — start from `pretrained` (a `mult` `best.pt`), backbone frozen, e.g. `mplmm`;
* `stage="train"` — from scratch at `train_rate` (baselines trained on incomplete data).

Run it in Jupyter, with `papermill 01_train.ipynb out.ipynb -p epochs 10`, or over a grid with
`python -m mplmm batch papermill_runs/grids/demo.yaml`. Parameters: `papermill --help-notebook 01_train.ipynb`.
"""),
    code('''
dataset: str = "synthetic"  # dataset name (synthetic, ...) or a path to a file/folder in any supported format
label_range: list = []  # regression label scale [LO, HI]; empty: the MOSI/SIMS scale when recognised, else inferred from training labels
threshold: float = float("nan")  # generic regression family: binary threshold; nan: 0 for a symmetric range, else the midpoint
model: str = "mult"  # registered model name (python -m mplmm models)
stage: str = "pretrain"  # "pretrain" (complete data), "prompt-tune" (from `pretrained`) or "train" (from scratch)
pretrained: str = ""  # best.pt of a pretrained 'mult' run; required by stage "prompt-tune"
train_rate: float = 0.0  # missing rate of the training samples (ignored, i.e. 0, for stage "pretrain")
test_rate: float = -1.0  # missing rate of the fixed validation/test masks (-1: same as train_rate)
epochs: int = 3  # training epochs
batch_size: int = 64  # batch size
lr: float = 1e-3  # learning rate (Adam)
seed: int = 0  # training seed (weights, batches, training masks)
device: str = "auto"  # "auto" (CUDA if available), "cpu", "cuda", "cuda:1"
output_dir: str = "runs/train_demo"  # checkpoints, metrics.json and history.csv go here
model_config: dict = {}  # extra model kwargs, e.g. {"d": 30, "layers": 2}
resume: bool = True  # continue from output_dir/last.pt when it exists
''', "parameters"),
    code('''
import json
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from IPython.display import display

from mplmm.data import describe_labels, label_options, load_dataset
from mplmm.metrics import headline_metric
from mplmm.notebook import setup_notebook, show
from mplmm.plots import training_curves
from mplmm.train import TrainConfig, train

setup_notebook(seed)
'''),
    code('''
# derived values (never in the parameters cell: papermill does not recompute them)
STAGES = ("pretrain", "prompt-tune", "train")
if stage not in STAGES:
    raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
if stage == "prompt-tune" and not pretrained:
    raise ValueError("stage 'prompt-tune' needs `pretrained` (the best.pt of a 'mult' pre-training run)")
effective_train_rate = 0.0 if stage == "pretrain" else float(train_rate)
effective_test_rate = None if test_rate < 0 else float(test_rate)
cfg = TrainConfig(model=model, model_config=dict(model_config), epochs=int(epochs), batch_size=int(batch_size),
                  lr=float(lr), seed=int(seed), device=device, train_rate=effective_train_rate,
                  test_rate=effective_test_rate, pretrained=(pretrained or None) if stage == "prompt-tune" else None,
                  progress=False)
out_dir = Path(output_dir)
out_dir.mkdir(parents=True, exist_ok=True)
pd.Series({"stage": stage, "model": cfg.model, "train_rate": cfg.train_rate,
           "eval rate": cfg.eval_spec().rate, "pretrained": cfg.pretrained, "output_dir": str(out_dir)},
          name="run").to_frame()
'''),
    md("## Data"),
    code('''
ds = load_dataset(dataset, verbose=False, **label_options(label_range, threshold))
summary = ds.summary()
metric = headline_metric(ds)
print(f"{summary['name']}: {describe_labels(ds)} (headline metric {metric}), source {summary['source']}")
display(pd.DataFrame({"feature dim": summary["dims"], "sequence length": summary["seq_lens"]}))
pd.Series(summary["sizes"], name="samples").to_frame().T
'''),
    md("## Training\n\nThe figure is redrawn after every epoch (`train(..., callback=...)`); this cell shows nothing "
       "else, since each redraw replaces the cell's output."),
    code('''
rows: list[dict] = []
title = f"{cfg.model} · {stage} · train rate {cfg.train_rate}"
empty = pd.DataFrame(columns=["epoch", "train_loss", "valid_loss", f"valid_{metric}"])
live = show(training_curves(empty, metric, title=title), live=True)


def on_epoch(row: dict) -> None:
    rows.append(row)
    live.update(training_curves(pd.DataFrame(rows), metric, title=title))


result = train(cfg, ds, out_dir, resume=resume, callback=on_epoch)
fig = training_curves(result.history, metric, title=title)
live.update(fig)
'''),
    md("## Final metrics\n\nBest epoch (selected on validation), fixed seeded masks at the evaluation rate."),
    code('''
metrics = result.metrics
final = pd.DataFrame({split: metrics[split] for split in ("valid", "test")}).T
print(f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']} run")
final
'''),
    code('''
counts = pd.Series(metrics["parameters"], name="parameters").to_frame()
counts["share"] = counts["parameters"] / max(int(counts.loc["total", "parameters"]), 1)
if metrics.get("transfer"):
    print(f"backbone copied from {metrics['transfer']['from']} ({metrics['transfer']['copied']} tensors)")
counts
'''),
    code('''
sorted(p.name for p in out_dir.iterdir())
'''),
    md("## Checks"),
    code('''
saved = json.loads((out_dir / "metrics.json").read_text())
prim = metrics["primary_metric"]
assert saved["model"] == cfg.model and saved["primary_metric"] == prim
assert 0 <= metrics["test"][prim] <= 1 and 0 <= metrics["valid"][prim] <= 1
assert abs(saved["test"][prim] - metrics["test"][prim]) < 1e-9
assert (out_dir / "best.pt").is_file() and (out_dir / "history.csv").is_file()
assert len(result.history) >= 1
assert isinstance(fig, go.Figure) and {"train_loss", "valid_loss"} <= {t.name for t in fig.data}
if stage == "prompt-tune":
    assert metrics["parameters"]["frozen"] > 0, "prompt-tuning should freeze the backbone"
print("ok")
'''),
    md("""
## Try it: missing modalities, live

The trained model re-evaluated on the test split as you move the missing rate or switch modalities off (every sample
then falls into that missing mode). Live only in a running kernel; the figures above are the report.
"""),
    code('''
from widgets import build_missing_explorer_panel

# figure_widget=False: a plain figure in an Output (a FigureWidget would store ~5 MB of anywidget state here)
explorer = build_missing_explorer_panel(result.model, ds, split="test", rate=cfg.eval_spec().rate,
                                        figure_widget=False)
assert explorer.state["result"]["metrics"], "the explorer evaluated nothing"
explorer.widget
'''),
]

ROBUSTNESS = [
    md("""
# 02 · Robustness to missing modalities

Evaluates trained checkpoints at several **test** missing rates under fixed, seeded masks (every method sees the same
masks) and for each of the 7 missing modes. Checkpoints are grouped by method (the model name, or the run folder when
one model comes from differently configured runs) and by training seed (`train_config.seed`); curves show the mean ±
std across training seeds (mask seeds are averaged first).

Shows the metric vs missing rate, the area under each curve, and a methods × modes heatmap. Writes
`output_dir/metrics.json` (curves, AUC, per-mode) and `output_dir/robustness.csv`. With no `checkpoints` it first
trains a tiny `mult` so the notebook runs standalone.
"""),
    code('''
checkpoints: list = []  # best.pt paths or globs (several methods / seeds); empty: train a tiny mult here
dataset: str = "synthetic"  # dataset name or path (the data the checkpoints were trained on)
label_range: list = []  # regression label scale [LO, HI]; empty: the MOSI/SIMS scale when recognised, else inferred from training labels
threshold: float = float("nan")  # generic regression family: binary threshold; nan: 0 for a symmetric range, else the midpoint
rates: list = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]  # test missing rates
mask_seeds: list = [0, 1]  # seeds of the fixed test masks (averaged per training seed)
protocol: str = "modality"  # "modality" (whole modalities missing) or "frame" (time steps missing)
output_dir: str = "runs/robustness_demo"  # metrics.json and robustness.csv go here
device: str = "auto"  # "auto" (CUDA if available), "cpu", "cuda"
''', "parameters"),
    code('''
import json
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from mplmm.checkpoint import load_model
from mplmm.data import label_options, load_dataset
from mplmm.evaluate import ModePredictions, per_mode_table, robustness_curve
from mplmm.metrics import headline_metric
from mplmm.notebook import find_checkpoints, setup_notebook, show, write_metrics
from mplmm.plots import (auc_summary, auc_table, per_mode_heatmap, per_mode_matrix, robustness_figure,
                         summarise_curves)
from mplmm.train import TrainConfig, train
from mplmm.utils import resolve_device

setup_notebook(0)
'''),
    code('''
# derived values
out_dir = Path(output_dir)
out_dir.mkdir(parents=True, exist_ok=True)
dev = resolve_device(device)
rate_list = [float(r) for r in rates]
seed_list = [int(s) for s in mask_seeds]
ds = load_dataset(dataset, verbose=False, **label_options(label_range, threshold))
metric = headline_metric(ds)
checkpoint_list = [str(c) for c in checkpoints]
if not checkpoint_list:  # standalone: a tiny complete-data mult, so the notebook runs without inputs
    tiny = TrainConfig(model="mult", epochs=1, model_config={"layers": 1}, seed=0, device=device, progress=False)
    train(tiny, ds, out_dir / "standalone_mult")
    checkpoint_list = [str(out_dir / "standalone_mult" / "best.pt")]
runs = find_checkpoints(checkpoint_list)
runs
'''),
    md("## Evaluation\n\nOne forward pass per missing mode and checkpoint (at most seven) serves the whole curve and "
       "the per-mode table under the `modality` protocol; `frame` runs one pass per rate and mask seed."),
    code('''
curve_parts, mode_parts = [], []
for run in runs.itertuples():
    model, _ = load_model(run.path, device=dev, data=ds)  # one clear line if it was trained on other data
    tags = {"method": run.method, "seed": run.seed, "run": run.run, "checkpoint": run.path}
    cache = ModePredictions(model, ds, device=device)  # the forced-mode passes, shared by curve and table
    curve = robustness_curve(model, ds, rates=rate_list, seeds=seed_list, protocol=protocol, device=device,
                             cache=cache)
    curve_parts.append(curve.assign(**tags))
    mode_parts.append(per_mode_table(model, ds, device=device, cache=cache).assign(**tags))
curves = pd.concat(curve_parts, ignore_index=True)
per_mode = pd.concat(mode_parts, ignore_index=True)
summary = summarise_curves(curves, metric)
print(f"{len(runs)} checkpoint(s), {runs['method'].nunique()} method(s), metric {metric}, protocol {protocol}")
'''),
    md("## Metric vs test missing rate"),
    code('''
fig_curve = robustness_figure(curves, metric, title=f"{metric} vs test missing rate · {ds.name} · {protocol}")
show(fig_curve)
'''),
    code('''
summary.pivot(index="rate", columns="method", values="mean")
'''),
    md("## Area under the curve\n\nTrapezoid over the rate range, normalised by its width (higher = more robust "
       "for accuracies); mean ± std over training seeds."),
    code('''
auc = auc_summary(curves, metric)
auc
'''),
    md("## Per missing mode"),
    code('''
fig_modes = per_mode_heatmap(per_mode, metric)
show(fig_modes)
'''),
    code('''
per_mode_matrix(per_mode, metric)
'''),
    code('''
results = {
    "dataset": ds.summary(),
    "metric": metric,
    "protocol": protocol,
    "rates": rate_list,
    "mask_seeds": seed_list,
    "runs": runs.to_dict("records"),
    "curves": curves.to_dict("records"),
    "summary": summary.to_dict("records"),
    "auc": auc_table(curves, metric).to_dict("records"),
    "auc_summary": auc.to_dict("records"),
    "per_mode": per_mode.to_dict("records"),
}
write_metrics(out_dir / "metrics.json", results)
curves.to_csv(out_dir / "robustness.csv", index=False)
sorted(p.name for p in out_dir.iterdir())
'''),
    md("## Checks"),
    code('''
saved = json.loads((out_dir / "metrics.json").read_text())
assert saved["metric"] == metric and len(saved["curves"]) == len(runs) * len(rate_list) * len(seed_list)
assert sorted(curves["rate"].unique()) == sorted(set(rate_list))
assert curves[metric].between(0, 1).all() and per_mode[metric].between(0, 1).all()
assert set(per_mode["mode"]) == set(range(7))
assert set(runs["method"]) <= {t.name for t in fig_curve.data}
assert isinstance(fig_curve, go.Figure) and isinstance(fig_modes, go.Figure)
assert len(pd.read_csv(out_dir / "robustness.csv")) == len(curves)
print("ok")
'''),
    md("""
## Try it: one checkpoint, live

Pick a checkpoint, then move the missing rate or switch modalities off: the model is re-evaluated on the test split
with the same seeded masks as above (mask seed = first of `mask_seeds`). Live only in a running kernel.
"""),
    code('''
import ipywidgets as W

from widgets import build_missing_explorer_panel


def explorer_for(path: str):
    chosen, _ = load_model(path, device=dev, data=ds)
    # figure_widget=False: a plain figure in an Output (a FigureWidget would store ~5 MB of widget state here)
    return build_missing_explorer_panel(chosen, ds, split="test", rate=0.5, seed=seed_list[0], protocol=protocol,
                                        figure_widget=False)


labels = [(f"{r.method} · seed {r.seed} · {r.run}", r.path) for r in runs.itertuples()]
picker = W.Dropdown(options=labels, value=labels[0][1], description="checkpoint", layout=W.Layout(width="60%"))
explorer = explorer_for(picker.value)
holder = W.VBox([picker, explorer.widget])


def on_pick(change) -> None:
    global explorer
    explorer = explorer_for(change["new"])
    holder.children = (picker, explorer.widget)


picker.observe(on_pick, names="value")
assert explorer.state["result"]["metrics"], "the explorer evaluated nothing"
holder
'''),
]

NOTEBOOKS = {"01_train": TRAIN, "02_robustness": ROBUSTNESS}


def build(notebooks: dict[str, list]) -> dict[str, str]:
    """Notebook JSON text per stem."""
    return {stem: nbformat.writes(_nb(stem, cells)) + "\n" for stem, cells in notebooks.items()}


def run(notebooks: dict[str, list], script: str, argv: list[str]) -> int:
    """Write ``notebooks`` next to this file, or with ``--check`` exit 1 if a stored one differs (shared by the
    notebook build scripts)."""
    check = "--check" in argv
    stale = []
    for stem, text in build(notebooks).items():
        path = HERE / f"{stem}.ipynb"
        nbformat.validate(nbformat.reads(text, as_version=4))
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"out of date (run python notebooks/{script}): {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run(NOTEBOOKS, "_build_notebooks.py", sys.argv[1:]))
