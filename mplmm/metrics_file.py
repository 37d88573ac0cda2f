"""The ``metrics.json`` of a run folder: its name, the versioned schema, :func:`write_metrics` / :func:`read_metrics`.

Written by :func:`mplmm.train.train` and the notebooks, read by the workbench (:mod:`mplmm.workbench.runs`, the batch
index, the leaderboard). Files are stamped ``"schema": "mplmm-metrics/1"``; files written before the stamp existed
(no ``schema`` key) read as version 0 and need no conversion (see ``docs/runs.md`` for the keys).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from .config import bad_value, from_dict, option, specs
from .errors import UserError
from .utils import PathLike, jsonable, read_json, write_json

METRICS = "metrics.json"  # what the notebook (or train) measured: this module's schema
SCHEMA_VERSION = 1
_SCHEMA_PREFIX = "mplmm-metrics/"
METRICS_SCHEMA = f"{_SCHEMA_PREFIX}{SCHEMA_VERSION}"  # the value of metrics["schema"]
SCHEMA_KEY = "schema"


@dataclass
class MetricsSchema:
    """The top-level keys of ``metrics.json`` that some reader relies on, with their types; any other key may be
    added freely, and every key may be absent."""

    schema: Optional[str] = option(None, "schema version, stamped by write_metrics")
    model: Optional[str] = option(None, "registered model name")
    dataset: Optional[Union[dict, str]] = option(None, "ds.summary() (a mapping with name, source, task, ...) or "
                                                 "the dataset name")
    config: Optional[dict] = option(None, "the training configuration (TrainConfig as a mapping)")
    provenance: Optional[dict] = option(None, "versions, git commit, host, time")
    runtime: Optional[dict] = option(None, "device, precision, TF32, deterministic algorithms, CPU threads")
    parameters: Optional[dict] = option(None, "parameter counts: total, trainable, frozen")
    best_epoch: Optional[int] = option(None, "the epoch selected on validation")
    epochs_run: Optional[int] = option(None, "epochs trained (early stopping may end sooner)")
    compute: Optional[dict] = option(None, "what training cost: epochs, seconds, the pretrained backbone's, and "
                                     "total_epochs / total_seconds of the whole pipeline")
    n_samples: Optional[int] = option(None, "samples an interpretation notebook looked at")
    primary_metric: Optional[str] = option(None, "the headline metric, a key of test and valid")
    test: Optional[dict] = option(None, "test-split metrics {name: number} under the fixed evaluation masks")
    valid: Optional[dict] = option(None, "validation-split metrics {name: number}")
    key_metrics: Optional[dict] = option(None, "headline numbers {name: number} shown in the batch index")
    metric: Optional[str] = option(None, "the metric column of curves and per_mode")
    protocol: Optional[str] = option(None, "missing-data protocol of curves (mplmm.missing.PROTOCOLS: modality, entry, "
                                     "frame, block, temporal, temporal_block, observed)")
    rates: Optional[list] = option(None, "test missing rates evaluated")
    mask_seeds: Optional[list] = option(None, "seeds of the fixed test masks")
    label: Optional[str] = option(None, "a robustness run's name for its set of checkpoints (e.g. tuned, default); "
                                  "'' for none")
    runs: Optional[list] = option(None, "records of the checkpoints evaluated: path, run, model, seed, method, "
                                  "epochs and train_seconds (whole pipeline)")
    curves: Optional[list] = option(None, "records: method, seed, rate, mask_seed and one column per metric")
    summary: Optional[list] = option(None, "records: method, rate, mean, std, n_seeds of metric")
    auc: Optional[list] = option(None, "records: method, seed, auc")
    auc_summary: Optional[list] = option(None, "records: method, auc_mean, auc_std, n_seeds")
    per_mode: Optional[list] = option(None, "records: method, seed, mode (0-6), mode_name and one column per metric")
    summaries: Optional[list] = option(None, "records: method, seed, auc and the papers' summaries of the curve "
                                       "(auilc, auilc_caption, air, air_effective, relative_robustness, "
                                       "effective_robustness; mplmm.summaries)")
    effective_reference: Optional[str] = option(None, "the method effective robustness is measured against")
    noise_levels: Optional[list] = option(None, "Gaussian feature-noise levels evaluated (missing rate 0)")
    noise_curves: Optional[list] = option(None, "records: method, seed, noise, noise_seed and one column per metric "
                                          "(a corruption, apart from the missing-rate curves)")
    noise_summaries: Optional[list] = option(None, "records: method, seed and the summaries over the noise levels")


#: the top-level keys that some reader relies on → their meaning (types: :class:`MetricsSchema`)
METRICS_KEYS: dict[str, str] = {s.name: s.help for s in specs(MetricsSchema)}
#: columns every record of these list keys must have (plus the column named by ``metric`` when it is set)
RECORD_COLUMNS: dict[str, tuple[str, ...]] = {
    "curves": ("method", "seed", "rate"),
    "per_mode": ("method", "seed", "mode"),
    "auc_summary": ("method", "auc_mean"),
    "summaries": ("method", "seed", "auc"),
    "noise_curves": ("method", "seed", "noise"),
    "noise_summaries": ("method", "seed", "auc"),
}

log = logging.getLogger(__name__)


class MetricsError(UserError):
    """A ``metrics.json`` breaks the schema (a known key of the wrong type, a record without its columns)."""


def metrics_version(metrics: dict) -> int:
    """The schema version of a metrics mapping: 0 for files written before the stamp existed."""
    tag = metrics.get(SCHEMA_KEY)
    if isinstance(tag, str) and tag.startswith(_SCHEMA_PREFIX) and tag[len(_SCHEMA_PREFIX):].isdigit():
        return int(tag[len(_SCHEMA_PREFIX):])
    return 0


def check_metrics(metrics: dict) -> None:
    """Raise :class:`MetricsError` when a known key has the wrong type (:class:`MetricsSchema`) or a record lacks a
    required column."""
    from_dict(MetricsSchema, metrics, "metrics", error=MetricsError, allow_unknown=True)
    metric = metrics.get("metric")
    for key, columns in RECORD_COLUMNS.items():
        wanted = [*columns, metric] if metric and key in ("curves", "per_mode", "noise_curves") else list(columns)
        for i, rec in enumerate(metrics.get(key) or []):
            if any(not isinstance(rec, dict) or c not in rec for c in wanted):
                raise MetricsError(bad_value("metrics", f"{key}[{i}]", f"a record with columns {', '.join(wanted)}",
                                             rec))


def _metrics_path(folder_or_path: PathLike) -> Path:
    path = Path(folder_or_path)
    return path if path.suffix == ".json" else path / METRICS


def write_metrics(folder_or_path: PathLike, metrics: dict[str, Any]) -> Path:
    """Check ``metrics`` (:func:`check_metrics`), stamp the schema version and write it atomically as JSON (NumPy
    values converted) to ``folder/metrics.json`` or to the ``.json`` path given; returns the path."""
    stamped = jsonable({SCHEMA_KEY: METRICS_SCHEMA, **{k: v for k, v in metrics.items() if k != SCHEMA_KEY}})
    check_metrics(stamped)
    return write_json(_metrics_path(folder_or_path), stamped)


def read_metrics(folder_or_path: PathLike) -> dict:
    """The metrics of a run folder (or a ``.json`` path): ``{}`` when the file is missing or not a JSON mapping.
    Unversioned (older) files read as they are; a newer schema than this code knows is read with a warning."""
    data = read_json(_metrics_path(folder_or_path))
    if metrics_version(data) > SCHEMA_VERSION:
        log.warning("%s: written with %s, newer than %s; some keys may be ignored",
                    _metrics_path(folder_or_path), data[SCHEMA_KEY], METRICS_SCHEMA)
    return data


__all__ = ["METRICS", "METRICS_KEYS", "METRICS_SCHEMA", "RECORD_COLUMNS", "SCHEMA_VERSION", "MetricsError",
           "MetricsSchema", "check_metrics", "metrics_version", "read_metrics", "write_metrics"]
