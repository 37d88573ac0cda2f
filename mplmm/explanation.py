"""Why did the model predict that? One offline HTML page (plus JSON) for chosen samples of new or known data.

For each chosen id (:func:`explain`): what the sample really has and the missing mode it runs in, its label if any,
its prediction in **every missing mode it can run in** (the modes that keep a subset of its modalities), the signed
importance of each modality (``f(x) − f(x without it)``, Captum feature ablation) and per-time-step attributions
(Integrated Gradients on the projections ``proj_l/a/v`` where the model has them, and one-step occlusion), the
methods of notebook 04, computed in the sample's own mode and shown over its real (unpadded) steps.
The page embeds plotly.js once and loads nothing from the network.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import pandas as pd

from .constants import MODALITIES, MODE_NAMES
from .data.schema import MultimodalDataset
from .models.base import MissingModalityModel
from .prediction import _label_column, _prediction_columns, find_ids, modes_of_present, predict_outputs, prepare_data
from .utils import PathLike, atomic_write, model_device, resolve_device

#: attribution methods computed for each sample (IG only where the model has projection layers)
DEFAULT_METHODS = ("ig", "occlusion")


def _per_mode(model: MissingModalityModel, ds: MultimodalDataset, split: str, row: int) -> pd.DataFrame:
    """The sample's prediction in each mode it can run in (one forward pass), its own mode flagged."""
    sp = ds[split]
    own = int(sp.observed_modes()[row])
    modes = modes_of_present(sp.present[row])
    out = predict_outputs(model, sp.subset(np.full(len(modes), row)), np.asarray(modes))
    table = pd.DataFrame({"mode": modes, "mode_name": [MODE_NAMES[k] for k in modes],
                          "own_mode": [k == own for k in modes], **_prediction_columns(ds, out)})
    return table


def _shares(model: MissingModalityModel, ds: MultimodalDataset, split: str, row: int, mode: int) -> dict:
    """Signed modality importance of one sample in ``mode`` (feature ablation)."""
    from .interpret import modality_importance

    frame = modality_importance(model, ds, split, modes=[mode], indices=[row], per_sample=True)
    return {str(r.modality): float(r.importance) for r in frame.itertuples()}


def _timesteps(model: MissingModalityModel, ds: MultimodalDataset, split: str, row: int, mode: int,
               methods: Sequence[str], n_steps: int) -> tuple[dict, list[str]]:
    """Per-method ``{modality: [relevance per real step]}`` of one sample, and notes on methods left out."""
    from .interpret import get_batch, projection_layers, timestep_attributions

    batch = get_batch(ds, split, indices=[row], device=model_device(model))
    lengths = ds[split].length_matrix()
    real = [int(v) for v in (lengths[row] if lengths is not None else ds.seq_lens)]
    out, notes = {}, []
    for method in methods:
        if method == "ig":
            try:
                projection_layers(model)
            except NotImplementedError as exc:
                notes.append(str(exc))
                continue
        attrs = timestep_attributions(model, batch, mode, method=method, n_steps=n_steps)
        out[method] = {m: attrs[m][0, : real[j]].tolist() for j, m in enumerate(MODALITIES)
                       if ds[split].present[row, j]}  # absent modalities have no steps to show
    return out, notes


def explain_sample(model: MissingModalityModel, ds: MultimodalDataset, split: str, row: int,
                   methods: Sequence[str] = DEFAULT_METHODS, n_steps: int = 16) -> dict:
    """Everything the page shows for one sample, as a JSON-able dict."""
    sp = ds[split]
    own = int(sp.observed_modes()[row])
    per_mode = _per_mode(model, ds, split, row)
    label = _label_column(ds, sp.labels[row:row + 1])
    attributions, notes = _timesteps(model, ds, split, row, own, methods, n_steps)
    mine = per_mode[per_mode["own_mode"]].iloc[0].to_dict()
    return {"id": str(sp.ids[row]), "split": split,
            "present": [m for m, p in zip(MODALITIES, sp.present[row]) if p], "mode": own,
            "mode_name": MODE_NAMES[own], "label": None if label is None else label[0],
            "prediction": {k: v for k, v in mine.items() if k not in ("mode", "mode_name", "own_mode")},
            "per_mode": per_mode.to_dict("records"),
            "modality_importance": _shares(model, ds, split, row, own),
            "attributions": attributions, "notes": notes}


def _figures(record: dict) -> list:
    """The plotly figures of one sample's section."""
    from .plots import interpret as PI

    figs = [PI.mode_predictions_figure(pd.DataFrame(record["per_mode"]),
                                       title="prediction in each missing mode the sample can run in "
                                             "(outlined: its own)"),
            PI.modality_share_figure(record["modality_importance"],
                                     title=f"modality importance in its own mode ({record['mode_name']})")]
    for method, attrs in record["attributions"].items():
        figs.append(PI.timestep_bars({m: np.asarray(v) for m, v in attrs.items()}, sample=0,
                                     title=f"{method}: relevance per real time step ({record['mode_name']})"))
    return figs


def _section(record: dict, index: int) -> str:
    """One sample's HTML section: a facts table and its figures."""
    facts = {"id": record["id"], "split": record["split"], "has": " + ".join(record["present"]),
             "runs in mode": f"{record['mode']} ({record['mode_name']})",
             "label": "—" if record["label"] is None else record["label"],
             **{k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in record["prediction"].items()}}
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in facts.items())
    parts = [f"<section><h2>{html.escape(record['id'])}</h2><table class='facts'>{rows}</table>"]
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in record["notes"]]
    absent = [m for m in MODALITIES if m not in record["present"]]
    if absent:
        parts.append(f"<p class='note'>{' and '.join(absent)}: never recorded for this sample, so never read "
                     "(importance 0, no time steps)</p>")
    for j, fig in enumerate(_figures(record)):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"s{index}f{j}"))
    return "\n".join(parts) + "</section>"


def render_html(records: Sequence[dict], title: str, facts: dict) -> str:
    """The whole offline page: plotly.js inlined once in the head, one section per sample."""
    from .plots import plotlyjs_source

    head = "".join(f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in facts.items())
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}table.facts th{text-align:"
             "left;padding-right:1em}section{border-top:1px solid #ccc;margin-top:2em}.note{color:#a60}")
    body = "\n".join(_section(r, i) for i, r in enumerate(records))
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style><script>{plotlyjs_source().read_text(encoding='utf-8')}</script></head>"
            f"<body><h1>{html.escape(title)}</h1><ul>{head}</ul>{body}</body></html>")


def explain(model: MissingModalityModel, data: Union[MultimodalDataset, PathLike], ids: Sequence[str],
            out_dir: PathLike, *, methods: Sequence[str] = DEFAULT_METHODS, n_steps: int = 16,
            device: Optional[str] = None, **options: Any) -> dict[str, Any]:
    """Write ``explain.html`` and ``explain.json`` for the samples ``ids`` of ``data`` into ``out_dir``.

    ``data``: a dataset or a path (prepared by :func:`mplmm.prediction.prepare_data`; ``options`` go to the
    loader). An unknown id is a one-line error naming it. Returns ``{"html", "json", "samples"}``.
    """
    if device is not None:
        model.to(resolve_device(device))
    ds = prepare_data(model, data, **options)
    chosen = find_ids(ds, ids)
    records = [explain_sample(model, ds, split, row, methods, n_steps) for _uid, split, row in chosen]
    out = Path(out_dir)
    info = getattr(model, "checkpoint", None) or {}
    prepared = [n for n in ds.notes if "checkpoint" in n or "trained lengths" in n or "kept raw" in n]
    facts = {"model": getattr(model, "registry_name", type(model).__name__),
             "checkpoint": info.get("path", "(in memory)"), "data": ds.source, "task": ds.task,
             "the data has": "; ".join(f"{k}: {v}" for k, v in ds.presence_summary().items()),
             "prepared": "; ".join(prepared) or "as read (no statistics to apply)"}
    page = render_html(records, f"mplmm explain: {len(records)} sample(s)", facts)
    html_path = atomic_write(out / "explain.html", lambda fh: fh.write(page.encode("utf-8")))
    text = json.dumps({"facts": facts, "samples": records}, indent=2, default=float)
    json_path = atomic_write(out / "explain.json", lambda fh: fh.write(text.encode("utf-8")))
    return {"html": html_path, "json": json_path, "samples": records}


__all__ = ["DEFAULT_METHODS", "explain", "explain_sample", "render_html"]
