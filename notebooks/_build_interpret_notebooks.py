"""Regenerate ``03_prompt_attention.ipynb`` and ``04_attributions.ipynb`` (unexecuted, no outputs, kernel ``mplmm``).

    python notebooks/_build_interpret_notebooks.py           # rewrite both
    python notebooks/_build_interpret_notebooks.py --check   # exit 1 if a stored notebook differs from this script

Edit the notebooks HERE, not in Jupyter: deterministic cell ids, one ``parameters`` cell with annotated literals
(``papermill --help-notebook`` documents them), derived values in the next cell, static ``go.Figure`` output first
and the interactive panel last (the HTML report does not depend on it).
"""
from __future__ import annotations

import sys

from _build_notebooks import code, md, run  # shared cell helpers and writer (same folder)

#: start of each notebook's derived-values cell (the notebook-specific lines follow)
DERIVED_HEAD = '''
# derived values (never in the parameters cell: papermill does not recompute them)
from pathlib import Path

from mplmm.utils import resolve_device

out_dir = Path(output_dir)
out_dir.mkdir(parents=True, exist_ok=True)
device = str(resolve_device(device))  # "auto" -> "cuda" or "cpu"
'''


def setup_cell(constants: str) -> str:
    """The imports + ``setup_notebook`` cell; ``constants``: the names imported from ``mplmm.constants``."""
    return f'''
import json
import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from IPython.display import display

from mplmm import interpret as I
from mplmm.constants import {constants}
from mplmm.data import label_options, load_dataset
from mplmm.notebook import setup_notebook, show, write_metrics
from mplmm.plots import interpret as PI

setup_notebook(seed)
'''


MODEL_CELL = '''
ds = load_dataset(dataset, verbose=False, **label_options(label_range, threshold))
t0 = time.time()
model, model_info = I.load_or_train_demo(checkpoint, ds, out_dir, seed=seed, device=device)
model_name = getattr(model, "registry_name", type(model).__name__)
print(f"{model_name} on {ds.name} ({'trained here' if model_info['trained_here'] else checkpoint}) "
      f"in {time.time() - t0:.1f} s")
pd.DataFrame({"feature dim": dict(zip(MODALITIES, ds.dims)), "sequence length": dict(zip(MODALITIES, ds.seq_lens))})
'''

ATTENTION = [
    md("""
# 03 · Prompt attention: what the missing-type prompts do

How an MPLMM model (prompt-tuned on a frozen MulT backbone) uses its prompts, per missing mode:

1. **attention maps** of the crossmodal and memory transformers, with the `P` missing-type prompt tokens (appended
   to every memory transformer, the readout is the output at the last prompt token) marked;
2. **how much** the readout token attends to the prompt tokens, per mode × branch × layer;
3. **how the prompts differ across modes**: cosine similarity of the seven modes' prompt tokens and a 2-D PCA
   projection;
4. **generated vs real features** of a dropped modality: per time step MSE and cosine similarity between what the
   generation module produces and the real path `proj(x) + P_NMS` of the same samples.

With `checkpoint=""` a tiny `mult` → `mplmm` model is trained on the synthetic default in seconds. Static figures come
first; the interactive attention viewer at the end is optional (not part of the HTML report's content).
Parameters: `papermill --help-notebook 03_prompt_attention.ipynb`.
"""),
    code('''
checkpoint: str = ""  # an mplmm best.pt; "" trains a tiny mult -> mplmm model on `dataset` (seconds)
dataset: str = "synthetic"  # dataset name (synthetic, ...) or a path in any supported format
label_range: list = []  # regression label scale [LO, HI]; empty: the MOSI/SIMS scale when recognised, else inferred from training labels
threshold: float = float("nan")  # generic regression family: binary threshold; nan: 0 for a symmetric range, else the midpoint
split: str = "test"  # split the maps and statistics are computed on
n_samples: int = 32  # samples of `split` used (the first n)
seed: int = 0  # seed (tiny model training, plotting)
output_dir: str = "runs/attention_demo"  # metrics.json (and the tiny model's checkpoints) go here
device: str = "auto"  # "auto" (CUDA if available), "cpu", "cuda"
''', "parameters"),
    code(DERIVED_HEAD + '''n_samples = int(n_samples)
ALL_MODES = list(range(7))
GRID_MODES = [6, 0, 5]  # complete, text missing, audio+vision missing: full memory-transformer maps
'''),
    code(setup_cell("MODALITIES, MODE_NAMES")),
    md("## Model and data"),
    code(MODEL_CELL),
    code('''
if not I.supports_attention(model):
    raise NotImplementedError(f"notebook 03 needs attention weights; model {model_name!r} does not expose them "
                              f"(use an mplmm or mult checkpoint)")
has_prompts = hasattr(model, "missing_type_tokens")
batch = I.get_batch(ds, split, n=n_samples, device=device)
maps_by_mode = {k: I.attention_maps(model, batch, k) for k in ALL_MODES}
maps_by_mode[6].info.drop(columns="module")
'''),
    md("""
## Memory transformers: attention per missing mode

Mean over the samples and heads, last layer. Rows are queries, columns keys; the shaded columns are the missing-type
prompt tokens, and the last row is the readout token the prediction is taken from.
"""),
    code('''
memory_modules = [name for name, _ in I.MEMORY_MODULES]
figs_memory = {}
for k in GRID_MODES:
    figs_memory[k] = PI.attention_grid(maps_by_mode[k], memory_modules, layer=-1, sample=None,
                                       title=f"memory transformers, last layer — {MODE_NAMES[k]}")
    show(figs_memory[k])
'''),
    md("""
### The readout token across all seven modes

The last row of each memory transformer's map (what the prediction reads), one row per mode for the same samples.
"""),
    code('''
fig_readout = PI.readout_attention_figure(maps_by_mode, layer=-1, title="readout-token attention, last layer")
show(fig_readout)
'''),
    md("""
## Crossmodal transformers

Query = target modality, key = source modality (e.g. `trans_l_with_a`: text queries attend to audio). In a missing
mode the missing modality's rows/columns are generated features. No prompt tokens enter these transformers.
"""),
    code('''
crossmodal_modules = [name for name, *_ in I.CROSSMODAL_MODULES]
figs_cross = {}
for k in (6, 0):
    figs_cross[k] = PI.attention_grid(maps_by_mode[k], crossmodal_modules, layer=-1, sample=None,
                                      title=f"crossmodal transformers, last layer — {MODE_NAMES[k]}")
    show(figs_cross[k])
'''),
    md("""
## How much attention goes to the prompt tokens

Share of the readout token's attention on the `P` prompt tokens, per mode × branch × layer (mean over samples and
heads; error bars: standard deviation over samples). The black tick is the share a uniform attention would give,
`P / (L + P)`.
"""),
    code('''
if has_prompts:
    share = I.prompt_attention_share(model, ds, split, modes=ALL_MODES, n_samples=n_samples)
    fig_share = PI.prompt_share_figure(share, title="readout attention share on the missing-type prompts")
    show(fig_share)
    last_layer = int(share["layer"].max())
    display(share[share["layer"] == last_layer].pivot(index="mode_name", columns="branch", values="share")
            .reindex([MODE_NAMES[k] for k in ALL_MODES])[list(MODALITIES)])
else:
    share = pd.DataFrame()
    print(f"{model_name} has no missing-type prompts: skipped")
'''),
    md("""
## How the prompts differ across modes

Each mode `k` has its own prompt tokens `P_MT · M_P[k]` (3 branches × `P` tokens of width `2d`). Cosine similarity of
the flattened tokens, per branch, and a 2-D PCA (SVD of the centred tokens).
"""),
    code('''
if has_prompts:
    sim = I.prompt_similarity(model)
    fig_sim = PI.similarity_heatmap(sim.similarity, title="cosine similarity of the modes' prompt tokens")
    show(fig_sim)
    fig_pca = PI.prompt_pca_figure(sim.pca_modes, sim.pca_tokens, sim.explained_variance,
                                   title="missing-type prompts, 2-D PCA")
    show(fig_pca)
    display(pd.DataFrame({b: s.to_numpy()[np.triu_indices(7, 1)].mean() for b, s in sim.branch_similarity.items()},
                         index=["mean off-diagonal cosine"]))
'''),
    md("""
## Generated vs real features of a dropped modality

For each modality and each mode in which it is missing, the same samples are passed through `complete_inputs` once
in that mode (generated features) and once complete (real path `proj(x) + P_NMS`). Lower MSE and higher cosine mean
the generator reproduces what the backbone would have seen.
"""),
    code('''
if has_prompts:
    quality = I.generation_quality(model, ds, split, n_samples=n_samples)
    fig_gen = PI.generation_figure(quality, title="generated vs real features per time step")
    show(fig_gen)
    gen_summary = I.generation_summary(quality)
    display(gen_summary)
else:
    quality = gen_summary = pd.DataFrame()
'''),
    md("## Results file"),
    code('''
results = {
    "model": model_name,
    "model_info": {k: v for k, v in model_info.items() if k != "pretrain_test"},
    "dataset": ds.name,
    "split": split,
    "n_samples": int(batch[0].shape[0]),
    "modules": maps_by_mode[6].info.drop(columns="module").to_dict("records"),
    "prompt_share": share.to_dict("records"),
    "prompt_similarity": sim.similarity.round(6).to_dict() if has_prompts else None,
    "pca_explained_variance": sim.explained_variance if has_prompts else None,
    "generation": gen_summary.to_dict("records"),
}
# headline numbers for the batch index (mplmm.batch.key_metrics)
key = {}
if len(share):
    last = share[share["layer"] == share.groupby("module")["layer"].transform("max")]
    key["prompt share (last layer)"] = float(last["share"].mean())
    key["uniform share"] = float(last["uniform"].mean())
if len(gen_summary):
    key["generation cosine"] = float(gen_summary["cosine"].mean())
    key["generation rel. MSE"] = float(gen_summary["rel_mse"].mean())
results["key_metrics"] = key
write_metrics(out_dir / "metrics.json", results)
sorted(p.name for p in out_dir.iterdir())
'''),
    md("## Checks"),
    code('''
saved = json.loads((out_dir / "metrics.json").read_text())
assert saved["model"] == model_name and saved["n_samples"] == min(n_samples, len(ds[split]))
for maps in maps_by_mode.values():
    for module, per_layer in maps.weights.items():
        for w in per_layer:
            assert np.allclose(w.sum(-1).numpy(), 1.0, atol=1e-4), module  # attention rows sum to 1
assert all(isinstance(f, go.Figure) for f in [*figs_memory.values(), *figs_cross.values(), fig_readout])
if has_prompts:
    P = int(model.P)
    assert all(maps_by_mode[6].prompt_columns(m) == list(range(maps_by_mode[6].info.loc[m, "k_len"] - P,
                                                                maps_by_mode[6].info.loc[m, "k_len"]))
               for m in memory_modules)
    assert share["share"].between(0, 1).all() and len(share) == 7 * 3 * share["layer"].nunique()
    assert np.allclose(np.diag(sim.similarity.to_numpy()), 1.0, atol=1e-4)
    assert len(quality) == 3 * sum(ds.seq_lens) and quality["cosine"].between(-1, 1).all()
    assert len(saved["generation"]) == 9 and (quality["mse"] >= 0).all()
print("ok")
'''),
    md("""
## Interactive attention viewer

Pick a sample, a mode, a module, a layer and a head (−1 = mean). Live only in a running kernel; the figures above are
the report.
"""),
    code('''
from widgets import build_attention_panel

# figure_widget=False: a plain figure in an Output (a FigureWidget would store ~5 MB of anywidget state here)
viewer = build_attention_panel(model, ds, split=split, n_samples=min(n_samples, 8), mode=6, module="trans_l_mem",
                               figure_widget=False)
viewer.widget
'''),
]

ATTRIBUTIONS = [
    md("""
# 04 · Attributions: which modality and which time step drive the prediction

Captum attributions of a MulT / MPLMM model under each missing mode:

1. **modality importance** — feature ablation with one group per modality (`f(x) − f(x without modality m)`), each
   sample forced into each of the seven modes; a modality the model does not read in that mode scores 0;
2. **time-step attributions** — Integrated Gradients on the projection layers `proj_l/a/v` (summed over the projected
   channels) and occlusion of one time step at a time, as per-sample heatmaps;
3. **dataset-level summaries** — mean |attribution| per modality × time step.

Regression: the attribution target is the prediction; classification: the predicted class. Zero is the baseline
(MulT's own "absent": an all-zero frame is padding). With `checkpoint=""` a tiny `mult` → `mplmm` model is trained on
the synthetic default in seconds. Parameters: `papermill --help-notebook 04_attributions.ipynb`.
"""),
    code('''
checkpoint: str = ""  # a best.pt (mplmm, mult, ...); "" trains a tiny mult -> mplmm model on `dataset` (seconds)
dataset: str = "synthetic"  # dataset name (synthetic, ...) or a path in any supported format
label_range: list = []  # regression label scale [LO, HI]; empty: the MOSI/SIMS scale when recognised, else inferred from training labels
threshold: float = float("nan")  # generic regression family: binary threshold; nan: 0 for a symmetric range, else the midpoint
split: str = "test"  # split the attributions are computed on
n_samples: int = 16  # samples of `split` used (the first n) for importance and per-sample heatmaps
ig_steps: int = 16  # Integrated Gradients steps
internal_batch_size: int = 64  # IG evaluations per forward pass (memory bound; raised to the batch size if smaller)
seed: int = 0  # seed (tiny model training, plotting)
output_dir: str = "runs/attributions_demo"  # metrics.json (and the tiny model's checkpoints) go here
device: str = "auto"  # "auto" (CUDA if available), "cpu", "cuda"
''', "parameters"),
    code(DERIVED_HEAD + '''n_samples, ig_steps, internal_batch_size = int(n_samples), int(ig_steps), int(internal_batch_size)
ALL_MODES = list(range(7))
SAMPLE_MODES = [6, 0]  # per-sample heatmaps: complete and text missing
SUMMARY_MODES = [6, 0, 1, 2]  # dataset-level summaries: complete and each single modality missing
SUMMARY_SAMPLES = 2 * n_samples  # dataset-level summaries use the first 2 × n_samples samples of the split
'''),
    code(setup_cell("MODALITIES, MODE_NAMES, MODE_PRESENT")),
    md("## Model and data"),
    code(MODEL_CELL),
    code('''
try:
    I.projection_layers(model)
    methods = ["ig", "occlusion"]
except NotImplementedError as exc:  # peer models without proj_l/a/v: occlusion only
    print(exc)
    methods = ["occlusion"]
reads_modes = model_name != "mult"  # plain mult ignores `modes` (it always reads every modality)
batch = I.get_batch(ds, split, n=n_samples, device=device)
timings = {}
'''),
    md("""
## Modality importance per missing mode

Feature ablation, one group per modality (all time steps and features set to 0 together), per mode. Left: mean
|attribution|; cells of modalities that are missing in that mode are marked (they should be 0: the model never reads
them).
"""),
    code('''
t0 = time.time()
importance = I.modality_importance(model, ds, split, modes=ALL_MODES, n_samples=n_samples)
timings["modality_importance"] = time.time() - t0
fig_importance = PI.modality_importance_heatmap(importance, value="abs_importance",
                                                title="mean |f(x) − f(x without modality)| per mode")
show(fig_importance)
fig_importance_signed = PI.modality_importance_heatmap(importance, value="importance",
                                                       title="mean signed importance per mode")
show(fig_importance_signed)
importance.pivot(index="mode_name", columns="modality", values="share").reindex(
    [MODE_NAMES[k] for k in ALL_MODES])[list(MODALITIES)]
'''),
    md("""
## Time-step attributions, per sample

Rows are samples, columns time steps, one panel per modality; red pushes the prediction up, blue down.
**IG** attributes to the outputs of `proj_l/a/v`; its sum over modalities and steps equals `f(x) − f(0⁺)` up to the
integration error when the projections are the only paths from the inputs (MulT, MPLMM complete). MPLMM's
generator reads present modalities through its own mappers, which IG on the projections does not see.
**Occlusion** sets one time step (all features) to 0 at a time.
"""),
    code('''
per_sample, deltas, figs_samples = {}, {}, []
for k in SAMPLE_MODES:
    for method in methods:
        t0 = time.time()
        if method == "ig":
            attrs, delta = I.timestep_attributions(model, batch, k, method="ig", n_steps=ig_steps,
                                                   internal_batch_size=internal_batch_size, return_delta=True)
            deltas[k] = delta
        else:
            attrs = I.timestep_attributions(model, batch, k, method="occlusion")
        timings[f"{method}_mode{k}"] = time.time() - t0
        per_sample[(k, method)] = attrs
        fig = PI.timestep_heatmaps(attrs, title=f"{method} — {MODE_NAMES[k]} ({len(batch[0])} samples)")
        figs_samples.append(fig)
        show(fig)
if deltas:
    display(pd.DataFrame({MODE_NAMES[k]: {"mean |completeness gap|": float(d.abs().mean()),
                                          "max |completeness gap|": float(d.abs().max())} for k, d in deltas.items()}))
'''),
    md("### Do IG and occlusion agree?\n\nPearson correlation of the two methods' per-step relevance, per modality."),
    code('''
agreement = {}
if "ig" in methods:
    for k in SAMPLE_MODES:
        row = {}
        for m in MODALITIES:
            a = per_sample[(k, "ig")][m].flatten().numpy()
            b = per_sample[(k, "occlusion")][m].flatten().numpy()
            row[m] = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else None  # None: constant
        agreement[MODE_NAMES[k]] = row
pd.DataFrame(agreement).T
'''),
    md("""
## Dataset-level summaries

Mean |attribution| per modality × time step over the first `2 × n_samples` samples of the split (all of it when
smaller), for the complete mode and each single missing modality (solid: IG, dashed: occlusion).
"""),
    code('''
t0 = time.time()
summary = pd.concat([I.attribution_summary(model, ds, split, modes=SUMMARY_MODES, method=method, n_steps=ig_steps,
                                           n_samples=SUMMARY_SAMPLES, internal_batch_size=internal_batch_size,
                                           batch_size=64)
                     for method in methods], ignore_index=True)
timings["summary"] = time.time() - t0
fig_summary = PI.attribution_summary_figure(summary, value="mean_abs",
                                            title=f"mean |attribution| per time step ({split}, {summary['n'].max()} "
                                                  f"samples)")
show(fig_summary)
summary.groupby(["method", "mode_name", "modality"], sort=False)["mean_abs"].sum().unstack("modality")[
    list(MODALITIES)]
'''),
    md("## Results file"),
    code('''
results = {
    "model": model_name,
    "model_info": {k: v for k, v in model_info.items() if k != "pretrain_test"},
    "dataset": ds.name,
    "split": split,
    "n_samples": int(batch[0].shape[0]),
    "methods": methods,
    "ig_steps": ig_steps,
    "modality_importance": importance.to_dict("records"),
    "ig_completeness_gap": {MODE_NAMES[k]: float(d.abs().mean()) for k, d in deltas.items()},
    "ig_occlusion_agreement": agreement,
    "summary_total": summary.groupby(["method", "mode", "modality"])["mean_abs"].sum().reset_index()
    .to_dict("records"),
    "timings_s": timings,
}
# headline numbers for the batch index (mplmm.batch.key_metrics)
key = {f"share {r.modality} (complete)": float(r.share)
       for r in importance[importance["mode"] == 6].itertuples()}
if 6 in deltas:
    key["IG gap (complete)"] = float(deltas[6].abs().mean())
results["key_metrics"] = key
write_metrics(out_dir / "metrics.json", results)
sorted(p.name for p in out_dir.iterdir())
'''),
    md("## Checks"),
    code('''
saved = json.loads((out_dir / "metrics.json").read_text())
assert saved["model"] == model_name and len(saved["modality_importance"]) == 7 * 3
if reads_modes:  # a missing modality is never read: zero importance (up to float noise)
    missing = importance[~importance["present"]]
    assert (missing["abs_importance"] < 1e-4).all(), missing
assert np.allclose(importance.groupby("mode")["share"].sum(), 1.0, atol=1e-6) or \\
    (importance["abs_importance"] == 0).all()
for (k, method), attrs in per_sample.items():
    assert [tuple(a.shape) for a in attrs.values()] == [(len(batch[0]), t) for t in ds.seq_lens]
if "ig" in methods and model_name in ("mult", "mplmm"):  # projections are the only input paths when complete
    gap = per_sample[(6, "ig")]
    total = sum(a.abs().sum(1) for a in gap.values())
    assert float(deltas[6].abs().mean()) <= 0.05 + 0.1 * float(total.mean()), deltas[6]
assert set(summary["mode"]) == set(SUMMARY_MODES) and (summary["mean_abs"] >= 0).all()
assert all(isinstance(f, go.Figure) for f in [fig_importance, fig_summary, *figs_samples])
print("ok")
'''),
    md("""
## Interactive attribution viewer

Pick a sample, a mode and a method. Live only in a running kernel; the figures above are the report.
"""),
    code('''
from widgets import build_attribution_panel

# figure_widget=False: a plain figure in an Output (a FigureWidget would store ~5 MB of anywidget state here)
viewer = build_attribution_panel(model, ds, split=split, n_samples=min(n_samples, 8), mode=6, method=methods[0],
                                 n_steps=ig_steps, internal_batch_size=internal_batch_size, figure_widget=False)
viewer.widget
'''),
]

NOTEBOOKS = {"03_prompt_attention": ATTENTION, "04_attributions": ATTRIBUTIONS}


if __name__ == "__main__":
    sys.exit(run(NOTEBOOKS, "_build_interpret_notebooks.py", sys.argv[1:]))
