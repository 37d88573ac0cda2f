"""One training loop for every registered model: pre-train on complete data, or prompt-tune from a checkpoint.

* Adam, ``ReduceLROnPlateau`` on the validation loss, gradient-norm clipping (MPLMM defaults: lr 1e-3, batch 64,
  40 epochs, clip 0.8, patience 10, factor 0.1), shuffled training batches, optional early stopping.
* Training masks are redrawn every epoch (seeded); validation and test masks are **fixed** (seeded by the evaluation
  spec), so every method sees the same ones. Selection on validation only; final metrics on **test**.
* ``last.pt`` is written atomically after every epoch (resume continues from it, random states included: torch CPU
  and CUDA, Python, NumPy), ``best.pt`` when validation improves; ``metrics.json`` records config, seed, versions,
  git commit, the evaluation masks' statistics and the ``runtime`` actually used (device, precision, TF32, determinism).
* No per-step host synchronisation: losses are summed on the device and checked for finiteness every
  ``FINITE_CHECK_STEPS`` steps on accelerators (every step on CPU, where checking costs nothing).

:func:`train` runs in named steps: ``_setup`` (model, optimiser, device tensors, fixed masks), ``_resume``
(``last.pt``), per epoch ``_train_epoch``, ``_validate`` (scheduler, selection, ``best.pt``) and ``_save_last``, then
``_finish`` (best weights, final validation/test metrics, ``metrics.json``, ``history.csv``, masks). Prediction and
scoring come from :mod:`mplmm.evaluate`, the losses from :mod:`mplmm.losses`.
"""
from __future__ import annotations

import copy
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import metrics as M
from .checkpoint import CheckpointError, check_config, read_checkpoint, save_checkpoint
from .config import bad_value, check, option
from .constants import COMPLETE_MODE
from .data.schema import DataError, MultimodalDataset, presence_text
from .errors import ConfigError, closest
from .evaluate import SplitTensors, evaluate_split, frame_rows, frames_on, pattern_table, predict, score_predictions
from .losses import criterion_for, loss_target
from .metrics_file import write_metrics
from .missing import (
    FRAME_PROTOCOLS,
    PROTOCOLS,
    MissingMasks,
    MissingSpec,
    draw_frame_masks,
    draw_modes,
    effective_modes,
    epoch_spec,
    eval_masks,
)
from .models import canonical_config, create_model, model_class, validate_model_config
from .models.base import MissingModalityModel
from .models.mult import BACKBONE_KEYS
from .utils import (
    atomic_write,
    provenance,
    resolve_device,
    rng_state,
    runtime_info,
    runtime_settings,
    seed_everything,
    set_rng_state,
)

#: training steps between finiteness checks of the loss on accelerators (each check waits for the device)
FINITE_CHECK_STEPS = 25


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved with every checkpoint and result). The reference ``main.py``'s
    names are aliases (``num_epochs``, ``drop_rate``, ``select``, ``pretrained_model``): the docs' "Every name, one
    vocabulary" table lists them all."""

    model: str = option("mplmm", "registered model name (mplmm models)")
    model_config: dict = option(default_factory=dict, help="the model's keys, e.g. {\"d\": 30, \"layers\": 2} (its "
                                "config class: MulTConfig, MPLMMConfig, ...)", flag=False)
    epochs: int = option(40, "training epochs", aliases=("num_epochs",), low=1)
    batch_size: int = option(64, "batch size", low=1)
    lr: float = option(1e-3, "learning rate", low=0, low_open=True)
    optim: str = option("Adam", "torch.optim optimizer class name (Adam, AdamW, SGD, ...)")
    clip: float = option(0.8, "gradient-norm clip", low=0)
    when: int = option(10, "ReduceLROnPlateau patience in epochs", low=0)
    lr_factor: float = option(0.1, "ReduceLROnPlateau factor", low=0, high=1, low_open=True)
    early_stopping: Optional[int] = option(None, "stop after this many epochs without validation improvement (None: "
                                           "off)", low=1)
    protocol: str = option("modality", "missing-data protocol: modality (MPLMM), entry (ComP; CIDer RMM), frame "
                           "(EMT-DLFR, LNLN, OpenVNA random drop; CIDer RMFM), block (OpenVNA structural drop), "
                           "temporal (CIDer TMFM), temporal_block (CIDer STMFM), observed (no simulated drops: the "
                           "data as it is); docs/protocols.md", choices=PROTOCOLS)
    train_rate: float = option(0.0, "training missing rate: share of samples with >= 1 missing modality (0 for "
                               "pre-training; the reference uses 0.7 for prompt tuning)", aliases=("drop_rate",),
                               low=0, high=1)
    test_rate: Optional[float] = option(None, "missing rate of the fixed validation/test masks (None: the same as "
                                        "train_rate)", low=0, high=1)
    seed: int = option(666, "training seed: weights, batches, training masks")
    eval_seed: int = option(0, "seed of the fixed validation/test masks (shared by all methods)")
    device: str = option("auto", "auto (CUDA if present), cpu or cuda[:N]")
    amp: bool = option(False, "bfloat16 autocast (CUDA)")
    tf32: bool = option(False, "TF32 for fp32 matmuls and convolutions on CUDA")
    deterministic: bool = option(False, "deterministic algorithms only (an error for ops without one), deterministic "
                                 "cuDNN and CUBLAS_WORKSPACE_CONFIG: a run repeats bit for bit on the same machine")
    pretrained: Optional[str] = option(None, "best.pt of a 'mult' run: prompt-tune from it (backbone frozen; "
                                       "projections and head re-initialised)", aliases=("pretrained_model",))
    select_metric: str = option("loss", "selection criterion on validation: loss (as the reference) or a metric name "
                                "such as Non0_acc_2", aliases=("select",))
    progress: bool = option(True, "a progress bar", flag=False)
    evaluate_test: bool = option(True, "evaluate the test split at the end (false while tuning: the test split is "
                                 "never evaluated, metrics test stays empty)")

    def validate(self, where: str = "TrainConfig") -> "TrainConfig":
        """Check every field (one-line :class:`~mplmm.errors.ConfigError` naming it, :mod:`mplmm.config`); returns
        ``self``."""
        return check(self, where)

    def cross_check(self, where: str) -> None:
        """The model is registered and ``model_config`` fits it; ``optim`` names an optimizer; ``device`` exists."""
        model_class(self.model)
        validate_model_config(self.model, self.model_config)
        opt = getattr(torch.optim, str(self.optim), None)
        if not (isinstance(opt, type) and issubclass(opt, torch.optim.Optimizer)):
            raise ConfigError(bad_value(where, "optim", "a torch.optim optimizer class name such as Adam, AdamW or "
                                        "SGD", self.optim))
        resolve_device(self.device)

    def eval_spec(self) -> MissingSpec:
        rate = self.train_rate if self.test_rate is None else self.test_rate
        return MissingSpec(self.protocol, rate, self.eval_seed)

    def train_spec(self) -> MissingSpec:
        return MissingSpec(self.protocol, self.train_rate, self.seed)


def build_model(cfg: TrainConfig, ds: MultimodalDataset) -> tuple[MissingModalityModel, Optional[dict]]:
    """Create the model for ``ds``; with ``cfg.pretrained`` copy and freeze the pretrained MulT backbone."""
    model_cfg = canonical_config(cfg.model, cfg.model_config)  # aliases renamed: the checkpoint's keys fill the rest
    transfer = None
    if cfg.pretrained:
        ckpt = read_checkpoint(cfg.pretrained)
        if ckpt["model_name"] != "mult":
            raise CheckpointError(f"{cfg.pretrained}: a pretrained backbone must be a 'mult' checkpoint, "
                                  f"found {ckpt['model_name']!r}")
        for key in BACKBONE_KEYS:  # the backbone's sizes come from the checkpoint
            model_cfg.setdefault(key, ckpt["model_config"][key])
    model = create_model(cfg.model, dims=ds.dims, seq_lens=ds.seq_lens, output_dim=ds.output_dim, **model_cfg)
    if cfg.pretrained:
        try:
            transfer = model.load_pretrained_backbone(ckpt["state_dict"], ckpt["model_config"])
        except NotImplementedError as exc:
            raise ValueError(f"--pretrained_model given, but {exc}") from exc
        transfer = {"from": str(cfg.pretrained), "copied": len(transfer["copied"]),
                    "skipped": transfer["skipped"], "compute": ckpt.get("compute")}
    return model, transfer


def training_compute(history: list[dict], transfer: Optional[dict]) -> dict:
    """What a run cost: its own epochs and training seconds (validation included), the backbone's (from the
    pretrained checkpoint's record; ``None`` when there is none or it predates the record) and the whole pipeline's,
    ``total_epochs`` / ``total_seconds`` (``None`` when the backbone's cost is unknown)."""
    own = {"epochs": len(history), "seconds": round(float(sum(h.get("seconds", 0.0) for h in history)), 3)}
    prior = (transfer or {}).get("compute") or {}
    backbone = None
    if prior.get("total_epochs") is not None:
        backbone = {"epochs": int(prior["total_epochs"]), "seconds": float(prior["total_seconds"])}
    if transfer is not None and backbone is None:  # a backbone of unknown cost: the total is unknown, not low
        return {**own, "backbone": None, "total_epochs": None, "total_seconds": None}
    before = backbone or {"epochs": 0, "seconds": 0.0}
    return {**own, "backbone": backbone, "total_epochs": own["epochs"] + before["epochs"],
            "total_seconds": round(own["seconds"] + before["seconds"], 3)}


def check_select_metric(name: str, ds: MultimodalDataset, where: str = "TrainConfig") -> None:
    """``name`` must be ``loss`` or one of the metrics of ``ds``'s family."""
    if name == "loss":
        return
    y = ds["valid"].labels
    dummy = y.reshape(-1, 1).astype(np.float32) if ds.task == "regression" else np.eye(ds.output_dim)[y]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = M.dataset_metrics(ds, dummy, y)
    if name not in names:
        accepted = ["loss", *names]
        hint = closest(name, accepted)
        raise ConfigError(bad_value(where, "select_metric", f"one of {', '.join(accepted)}"
                                    + (f" (did you mean '{hint}'?)" if hint else ""), name))


@dataclass
class TrainResult:
    """What :func:`train` returns: the best model, its metrics, the history and where files went."""

    model: MissingModalityModel
    history: pd.DataFrame
    metrics: dict
    out_dir: Optional[Path]


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=True)


def _check_finite(loss_sum: torch.Tensor, n: int, epoch: int) -> None:
    """Raise a clear :class:`FloatingPointError` when the summed training loss is no longer finite."""
    if not bool(torch.isfinite(loss_sum)):
        raise FloatingPointError(f"epoch {epoch}: training loss became {float(loss_sum) / max(n, 1)}; lower --lr or "
                                 f"check the data for extreme values")


def train(cfg: TrainConfig, ds: MultimodalDataset, out_dir: Optional[str | Path] = None, resume: bool = True,
          callback: Optional[Callable[[dict], Any]] = None) -> TrainResult:
    """Train ``cfg.model`` on ``ds``; select on validation, report on test. Resumes from ``out_dir/last.pt``.

    ``callback(row: dict)`` is called after every epoch with the history row (for live plots). TF32 and
    deterministic algorithms are set as ``cfg`` asks for the run, and restored afterwards.
    """
    cfg.validate()
    check_select_metric(cfg.select_metric, ds)
    with runtime_settings(cfg.deterministic, cfg.tf32):
        return _train(cfg, ds, out_dir, resume, callback)


@dataclass
class _Run:
    """What one training run carries from step to step: its parts, fixed at set-up, and its progress."""

    cfg: TrainConfig
    ds: MultimodalDataset
    out: Optional[Path]
    device: torch.device
    model: MissingModalityModel
    transfer: Optional[dict]
    criterion: nn.Module
    params: list[nn.Parameter]
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.ReduceLROnPlateau
    data: dict[str, SplitTensors]
    masks: dict[str, MissingMasks]  # the fixed validation and test masks
    config_dict: dict
    data_sig: dict
    frozen: list[str]
    train_rows: np.ndarray  # the training samples used (all, or the complete ones: see complete_only)
    start_epoch: int = 1
    history: list[dict] = field(default_factory=list)
    best_score: Optional[float] = None
    best_state: Optional[dict] = None
    since_best: int = 0


def _train(cfg: TrainConfig, ds: MultimodalDataset, out_dir: Optional[str | Path], resume: bool,
           callback: Optional[Callable[[dict], Any]]) -> TrainResult:
    """Set up (and resume), run the epochs, then evaluate the best model and write the run folder."""
    run = _setup(cfg, ds, Path(out_dir) if out_dir else None)
    if resume:
        _resume(run)
    stopped = _run_epochs(run, callback)
    return _finish(run, stopped)


def _setup(cfg: TrainConfig, ds: MultimodalDataset, out: Optional[Path]) -> _Run:
    """Seed, build the model, its optimiser and scheduler; put the splits on the device; draw the fixed masks."""
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    model, transfer = build_model(cfg, ds)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"model {cfg.model!r} has no trainable parameters")
    opt = getattr(torch.optim, cfg.optim)(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", patience=cfg.when, factor=cfg.lr_factor)
    data = {s: SplitTensors(ds[s], device) for s in ("train", "valid", "test")}
    espec = cfg.eval_spec()
    masks = {s: eval_masks(espec, ds[s], s, ds.seq_lens) for s in ("valid", "test")}
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    return _Run(cfg, ds, out, device, model, transfer, criterion_for(ds), params, opt, sched, data, masks,
                asdict(cfg), ds.signature(), frozen, training_rows(model, ds))


def complete_only(model: MissingModalityModel) -> bool:
    """True for models trained on complete samples only: those that ignore ``modes`` (plain ``mult``: an absent
    modality would reach it as zeros labelled present) and those trained on complete data (``mult_zero``)."""
    return not getattr(model, "reads_modes", True) or bool(getattr(model, "train_on_complete", False))


def training_rows(model: MissingModalityModel, ds: MultimodalDataset) -> np.ndarray:
    """Indices of the training samples ``model`` trains on: all, or the complete ones (:func:`complete_only`)."""
    train = ds["train"]
    if not complete_only(model):
        return np.arange(len(train))
    rows = np.flatnonzero(train.present.all(axis=1))
    if not len(rows):
        raise DataError(f"{ds.source} [train]: model {model.registry_name!r} trains on complete samples only, and "
                        f"no training sample has all three modalities ({presence_text(train.present)})")
    return rows


def _resume(run: _Run) -> None:
    """Continue from ``last.pt`` in the run folder when there is one: weights, optimiser, scheduler, random states,
    history and early-stopping counters (and the best weights so far from ``best.pt``)."""
    if run.out is None or not (run.out / "last.pt").is_file():
        return
    ckpt = read_checkpoint(run.out / "last.pt")
    check_config(run.out / "last.pt", ckpt, run.model.registry_name, run.model.config)
    run.model.load_state_dict(ckpt["state_dict"])
    run.opt.load_state_dict(ckpt["optimizer"])
    run.sched.load_state_dict(ckpt["scheduler"])
    set_rng_state(ckpt["rng"] if "rng" in ckpt else {"torch": ckpt["torch_rng"]})  # "torch_rng": older files
    run.history, run.best_score, run.since_best = ckpt["history"], ckpt["best_score"], ckpt["since_best"]
    run.start_epoch = ckpt["epoch"] + 1
    best = run.out / "best.pt"
    run.best_state = read_checkpoint(best)["state_dict"] if best.is_file() else None


def _run_epochs(run: _Run, callback: Optional[Callable[[dict], Any]]) -> bool:
    """Epochs ``start_epoch..cfg.epochs``: train, validate, checkpoint, report. True when early stopping ended them."""
    cfg = run.cfg
    bar = _progress(cfg.epochs, cfg.progress, f"{cfg.model}")
    bar.update(run.start_epoch - 1)
    stopped = False
    for epoch in range(run.start_epoch, cfg.epochs + 1):
        t0 = time.time()
        train_loss, parts = _train_epoch(run, epoch)
        row = _validate(run, epoch, train_loss, parts, t0)
        _save_last(run, epoch)
        bar.update(1)
        bar.set_postfix(train=f"{row['train_loss']:.3f}", valid=f"{row['valid_loss']:.3f}",
                        best=f"{run.best_score:.3f}")
        if callback is not None:
            callback(row)
        if cfg.early_stopping and run.since_best >= cfg.early_stopping:
            stopped = True
            break
    bar.close()
    return stopped


def _epoch_masks(run: _Run, epoch: int) -> tuple[torch.Tensor, Optional[dict]]:
    """This epoch's training modes ``(N,)`` and frame masks on the device (complete data for ``train_on_complete``
    models)."""
    cfg, train = run.cfg, run.ds["train"]
    spec = epoch_spec(cfg.train_spec(), epoch)
    if getattr(run.model, "train_on_complete", False):
        spec = MissingSpec(cfg.protocol, 0.0, spec.seed)
    modes = effective_modes(draw_modes(spec, train.ids, "train"), train.present)
    frames = (draw_frame_masks(spec, train.ids, "train", run.ds.seq_lens, train.length_matrix())
              if cfg.protocol in FRAME_PROTOCOLS else None)
    return torch.as_tensor(modes, device=run.device), frames_on(frames, run.device)


def _train_epoch(run: _Run, epoch: int) -> tuple[float, dict[str, float]]:
    """One pass over the shuffled training split; returns the mean training loss and the mean of each loss part the
    model reports (summed on the device, checked for finiteness every ``FINITE_CHECK_STEPS`` steps off the CPU)."""
    cfg, model, device, data = run.cfg, run.model, run.device, run.data["train"]
    model.train()
    modes_all, frames = _epoch_masks(run, epoch)
    observed = None if data.all_present else torch.as_tensor(data.observed, device=device)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    n_rows = len(run.train_rows)
    order = torch.randperm(n_rows, generator=gen)
    if n_rows != data.n:  # complete samples only: the same shuffle over the rows that are used
        order = torch.as_tensor(run.train_rows)[order]
    order = order.to(device)
    check_every = 1 if device.type == "cpu" else FINITE_CHECK_STEPS
    total, parts_sum, seen = torch.zeros((), dtype=torch.float64, device=device), {}, 0
    for step, start in enumerate(range(0, n_rows, cfg.batch_size)):
        idx = order[start:start + cfg.batch_size]
        x, y = data.batch(idx)
        run.opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
            loss, _, parts = model.compute_loss(*x, modes_all[idx], loss_target(y, run.ds.task), run.criterion,
                                                frame_rows(frames, idx), lengths=data.lengths_of(idx),
                                                observed_modes=None if observed is None else observed[idx])
        total = total + loss.detach().double() * len(idx)
        seen += len(idx)
        if (step + 1) % check_every == 0:
            _check_finite(total, seen, epoch)
        loss.backward()
        if cfg.clip:
            nn.utils.clip_grad_norm_(run.params, cfg.clip)
        run.opt.step()
        for k, v in parts.items():
            v = v.double() if isinstance(v, torch.Tensor) else v
            parts_sum[k] = parts_sum.get(k, 0.0) + v * len(idx)
    _check_finite(total, seen, epoch)
    return float(total) / n_rows, {k: float(v) / n_rows for k, v in parts_sum.items() if k != "task"}


def _validate(run: _Run, epoch: int, train_loss: float, parts: dict[str, float], t0: float) -> dict:
    """Validate, step the scheduler, keep the best weights (``best.pt``) and append the epoch's history row."""
    cfg = run.cfg
    valid = evaluate_split(run.model, run.ds, run.data["valid"], run.masks["valid"], amp=_eval_amp(run))
    run.sched.step(valid["loss"])
    row = {"epoch": epoch, "train_loss": train_loss, "valid_loss": valid["loss"],
           **{f"valid_{k}": v for k, v in valid.items() if k != "loss"},
           **{f"train_{k}": v for k, v in parts.items()},
           "lr": run.opt.param_groups[0]["lr"], "seconds": time.time() - t0}
    score = valid["loss"] if cfg.select_metric == "loss" else valid[cfg.select_metric]
    lower = cfg.select_metric == "loss" or M.metric_direction(cfg.select_metric) == "lower"
    improved = run.best_score is None or (score < run.best_score if lower else score > run.best_score)
    if improved:
        run.best_score, run.since_best = score, 0
        run.best_state = copy.deepcopy(run.model.state_dict())
        if run.out is not None:
            save_checkpoint(run.out / "best.pt", run.model, train_config=run.config_dict, epoch=epoch,
                            frozen=run.frozen, valid=valid, data=run.data_sig, preprocessing=run.ds.preprocessing)
    else:
        run.since_best += 1
    row["best"] = improved
    run.history.append(row)
    return row


def _eval_amp(run: _Run) -> bool:
    """bf16 autocast for evaluation inside training: on CUDA only (as training itself), never on a CPU."""
    return run.cfg.amp and run.device.type == "cuda"


def _save_last(run: _Run, epoch: int) -> None:
    """``last.pt``: everything :func:`_resume` needs to continue after ``epoch``."""
    if run.out is None:
        return
    save_checkpoint(run.out / "last.pt", run.model, train_config=run.config_dict, epoch=epoch, frozen=run.frozen,
                    data=run.data_sig, preprocessing=run.ds.preprocessing,
                    optimizer=run.opt.state_dict(), scheduler=run.sched.state_dict(),
                    rng=rng_state(run.device), history=run.history, best_score=run.best_score,
                    since_best=run.since_best)


def _finish(run: _Run, stopped: bool) -> TrainResult:
    """Restore the best weights, evaluate them on validation and test, write the run folder (``best.pt``,
    ``metrics.json``, ``history.csv``, the masks) and return the result."""
    model, masks = run.model, run.masks
    if run.best_state is not None:
        model.load_state_dict(run.best_state)
    hist = pd.DataFrame(run.history)
    best_epoch = int(hist.loc[hist["best"], "epoch"].iloc[-1]) if len(hist) else 0
    splits = ("valid", "test") if run.cfg.evaluate_test else ("valid",)
    final, patterns = {}, {}
    for s in splits:
        pred = predict(model, run.data[s], masks[s], amp=_eval_amp(run))
        final[s] = score_predictions(run.ds, pred, run.data[s].y.cpu())
        patterns[s] = pattern_table(run.ds, pred, run.data[s].y.cpu().numpy(), masks[s]).to_dict("records")
    final.setdefault("test", {})  # not evaluated (tuning): nothing of the test split was read
    result = _metrics(run, hist, best_epoch, stopped, final)
    result["by_pattern"] = patterns  # metrics per observed missing pattern (what the samples really have)
    if run.out is not None:
        save_checkpoint(run.out / "best.pt", model, train_config=run.config_dict, epoch=best_epoch,
                        frozen=run.frozen, valid=final["valid"], test=final["test"], data=run.data_sig,
                        preprocessing=run.ds.preprocessing, compute=result["compute"])
        write_metrics(run.out, result)  # the run-folder contract: schema-stamped metrics.json
        atomic_write(run.out / "history.csv", lambda fh: fh.write(hist.to_csv(index=False).encode("utf-8")))
        for s, mk in masks.items():
            mk.save(run.out / f"masks_{s}.npz")
    return TrainResult(model, hist, result, run.out)


def _metrics(run: _Run, hist: pd.DataFrame, best_epoch: int, stopped: bool, final: dict) -> dict:
    """The content of ``metrics.json``: config, data, parameters, selection, the masks' statistics, final metrics,
    provenance and runtime."""
    cfg, model, masks = run.cfg, run.model, run.masks
    return {
        "model": cfg.model,
        "dataset": run.ds.summary(),
        "config": run.config_dict,
        "model_config": model.config,
        "parameters": model.parameter_counts(),
        "transfer": run.transfer,
        "best_epoch": best_epoch,
        "epochs_run": len(hist),
        "compute": training_compute(run.history, run.transfer),
        "train_samples": {"used": int(len(run.train_rows)), "total": len(run.ds["train"]),
                          "complete": int(run.ds["train"].present.all(axis=1).sum()),
                          "complete_only": complete_only(model)},
        "presence": run.ds.presence_summary(),
        "early_stopped": stopped,
        "select_metric": cfg.select_metric,
        "eval_spec": cfg.eval_spec().to_dict(),
        "eval_masks": {s: {"missing_sample_fraction": float(np.mean(masks[s].modes != COMPLETE_MODE)),
                           "missing_entry_fraction": masks[s].missing_fraction(),
                           "mode_counts": {int(k): int(v) for k, v in
                                           zip(*np.unique(masks[s].modes, return_counts=True))}}
                       for s in masks},
        "valid": final["valid"],
        "test": final["test"],
        "primary_metric": M.headline_metric(run.ds),
        "provenance": provenance(),
        "runtime": runtime_info(run.device, cfg.amp),
    }
