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
"""
from __future__ import annotations

import copy
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import metrics as M
from .checkpoint import CheckpointError, check_config, read_checkpoint, save_checkpoint
from .data.schema import MultimodalDataset
from .errors import ConfigError, check_number, unknown_keys_message
from .evaluate import SplitTensors, evaluate_split, frame_rows, frames_on
from .losses import criterion_for, loss_target
from .missing import PROTOCOLS, MissingSpec, draw_frame_masks, draw_modes, epoch_spec, eval_masks
from .models import create_model
from .models.base import MissingModalityModel
from .utils import (provenance, resolve_device, rng_state, runtime_info, runtime_settings, seed_everything,
                    set_rng_state, write_json)

#: training steps between finiteness checks of the loss on accelerators (each check waits for the device)
FINITE_CHECK_STEPS = 25


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved with every checkpoint and result)."""

    model: str = "mplmm"
    model_config: dict = field(default_factory=dict)
    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    optim: str = "Adam"
    clip: float = 0.8
    when: int = 10  # ReduceLROnPlateau patience
    lr_factor: float = 0.1
    early_stopping: Optional[int] = None  # epochs without validation improvement
    protocol: str = "modality"
    train_rate: float = 0.0
    test_rate: Optional[float] = None  # None: same as train_rate
    seed: int = 666
    eval_seed: int = 0  # seed of the fixed validation/test masks (shared by all methods)
    device: str = "auto"
    amp: bool = False  # bfloat16 autocast (CUDA only)
    tf32: bool = False  # TF32 for fp32 matmuls and convolutions on CUDA
    deterministic: bool = False  # deterministic algorithms only (errors for ops without one), deterministic cuDNN
    pretrained: Optional[str] = None
    select_metric: str = "loss"  # "loss" (valid loss, as the reference) or a metric name
    progress: bool = True

    def validate(self) -> "TrainConfig":
        """Check every field (one-line :class:`~mplmm.errors.ConfigError` naming it); returns ``self``."""
        from .models.base import model_class, validate_model_config

        model_class(self.model)
        validate_model_config(self.model, self.model_config)
        check_number("epochs", self.epochs, minimum=1, integer=True)
        check_number("batch_size", self.batch_size, minimum=1, integer=True)
        check_number("lr", self.lr, minimum=0, strict_min=True)
        check_number("clip", self.clip, minimum=0)
        check_number("when", self.when, minimum=0, integer=True)
        check_number("lr_factor", self.lr_factor, minimum=0, maximum=1, strict_min=True)
        if self.early_stopping is not None:
            check_number("early_stopping", self.early_stopping, minimum=1, integer=True)
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"protocol: expected one of {list(PROTOCOLS)}, got {self.protocol!r}")
        check_number("train_rate", self.train_rate, minimum=0, maximum=1)
        if self.test_rate is not None:
            check_number("test_rate", self.test_rate, minimum=0, maximum=1)
        for flag in ("amp", "tf32", "deterministic", "progress"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(f"{flag}: expected true or false, got {getattr(self, flag)!r}")
        check_number("seed", self.seed, integer=True)
        check_number("eval_seed", self.eval_seed, integer=True)
        opt = getattr(torch.optim, str(self.optim), None)
        if not (isinstance(opt, type) and issubclass(opt, torch.optim.Optimizer)):
            raise ConfigError(f"optim: expected a torch.optim optimizer class name such as Adam, AdamW or SGD, "
                              f"got {self.optim!r}")
        resolve_device(self.device)
        return self

    def eval_spec(self) -> MissingSpec:
        rate = self.train_rate if self.test_rate is None else self.test_rate
        return MissingSpec(self.protocol, rate, self.eval_seed)

    def train_spec(self) -> MissingSpec:
        return MissingSpec(self.protocol, self.train_rate, self.seed)


def build_model(cfg: TrainConfig, ds: MultimodalDataset) -> tuple[MissingModalityModel, Optional[dict]]:
    """Create the model for ``ds``; with ``cfg.pretrained`` copy and freeze the pretrained MulT backbone."""
    model_cfg = dict(cfg.model_config)
    transfer = None
    if cfg.pretrained:
        ckpt = read_checkpoint(cfg.pretrained)
        if ckpt["model_name"] != "mult":
            raise CheckpointError(f"{cfg.pretrained}: a pretrained backbone must be a 'mult' checkpoint, "
                                  f"found {ckpt['model_name']!r}")
        for key in ("d", "num_heads", "layers"):  # the backbone's sizes come from the checkpoint
            model_cfg.setdefault(key, ckpt["model_config"][key])
    model = create_model(cfg.model, dims=ds.dims, seq_lens=ds.seq_lens, output_dim=ds.output_dim, **model_cfg)
    if cfg.pretrained:
        try:
            transfer = model.load_pretrained_backbone(ckpt["state_dict"], ckpt["model_config"])
        except NotImplementedError as exc:
            raise ValueError(f"--pretrained_model given, but {exc}") from exc
        transfer = {"from": str(cfg.pretrained), "copied": len(transfer["copied"]),
                    "skipped": transfer["skipped"]}
    return model, transfer


def check_select_metric(name: str, ds: MultimodalDataset) -> None:
    """``name`` must be ``loss`` or one of the metrics of ``ds``'s family."""
    if name == "loss":
        return
    y = ds["valid"].labels
    dummy = y.reshape(-1, 1).astype(np.float32) if ds.task == "regression" else np.eye(ds.output_dim)[y]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = M.dataset_metrics(ds, dummy, y)
    if name not in names:
        raise ConfigError("select_metric: " + unknown_keys_message("metric", [name], ["loss", *names]))


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
          callback=None) -> TrainResult:
    """Train ``cfg.model`` on ``ds``; select on validation, report on test. Resumes from ``out_dir/last.pt``.

    ``callback(row: dict)`` is called after every epoch with the history row (for live plots). TF32 and
    deterministic algorithms are set as ``cfg`` asks for the run, and restored afterwards.
    """
    cfg.validate()
    check_select_metric(cfg.select_metric, ds)
    with runtime_settings(cfg.deterministic, cfg.tf32):
        return _train(cfg, ds, out_dir, resume, callback)


def _train(cfg: TrainConfig, ds: MultimodalDataset, out_dir: Optional[str | Path], resume: bool,
           callback) -> TrainResult:
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    model, transfer = build_model(cfg, ds)
    model.to(device)
    crit = criterion_for(ds)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"model {cfg.model!r} has no trainable parameters")
    opt = getattr(torch.optim, cfg.optim)(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", patience=cfg.when, factor=cfg.lr_factor)
    data = {s: SplitTensors(ds[s], device) for s in ("train", "valid", "test")}
    espec = cfg.eval_spec()
    masks = {s: eval_masks(espec, ds[s].ids, s, ds.seq_lens) for s in ("valid", "test")}
    select = cfg.select_metric
    direction = "lower" if select == "loss" else M.metric_direction(select)

    out = Path(out_dir) if out_dir else None
    start_epoch, history, best_score, best_state, since_best = 1, [], None, None, 0
    config_dict = asdict(cfg)
    data_sig = ds.signature()
    if out is not None and resume and (out / "last.pt").is_file():
        ckpt = read_checkpoint(out / "last.pt")
        check_config(out / "last.pt", ckpt, model.registry_name, model.config)
        model.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"] if "rng" in ckpt else {"torch": ckpt["torch_rng"]})  # "torch_rng": older files
        history, best_score, since_best = ckpt["history"], ckpt["best_score"], ckpt["since_best"]
        start_epoch = ckpt["epoch"] + 1
        best_state = read_checkpoint(out / "best.pt")["state_dict"] if (out / "best.pt").is_file() else None
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]

    n_train = data["train"].n
    check_every = 1 if device.type == "cpu" else FINITE_CHECK_STEPS
    bar = _progress(cfg.epochs, cfg.progress, f"{cfg.model}")
    bar.update(start_epoch - 1)
    stopped = False
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.time()
        model.train()
        spec = epoch_spec(cfg.train_spec(), epoch)
        if getattr(model, "train_on_complete", False):
            spec = MissingSpec(cfg.protocol, 0.0, spec.seed)
        modes_np = draw_modes(spec, ds["train"].ids, "train")
        frame_np = draw_frame_masks(spec, ds["train"].ids, "train", ds.seq_lens) if cfg.protocol == "frame" else None
        modes_all = torch.as_tensor(modes_np, device=device)
        frames = frames_on(frame_np, device)
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        order = torch.randperm(n_train, generator=gen).to(device)
        total, parts_sum, seen = torch.zeros((), dtype=torch.float64, device=device), {}, 0
        for step, start in enumerate(range(0, n_train, cfg.batch_size)):
            idx = order[start:start + cfg.batch_size]
            x, y = data["train"].batch(idx)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, torch.bfloat16, enabled=cfg.amp and device.type == "cuda"):
                loss, _, parts = model.compute_loss(*x, modes_all[idx], loss_target(y, ds.task), crit, frame_rows(frames, idx))
            total = total + loss.detach().double() * len(idx)
            seen += len(idx)
            if (step + 1) % check_every == 0:
                _check_finite(total, seen, epoch)
            loss.backward()
            if cfg.clip:
                nn.utils.clip_grad_norm_(params, cfg.clip)
            opt.step()
            for k, v in parts.items():
                v = v.double() if isinstance(v, torch.Tensor) else v
                parts_sum[k] = parts_sum.get(k, 0.0) + v * len(idx)
        _check_finite(total, seen, epoch)
        valid = evaluate_split(model, ds, data["valid"], masks["valid"], amp=cfg.amp)
        sched.step(valid["loss"])
        row = {"epoch": epoch, "train_loss": float(total) / n_train, "valid_loss": valid["loss"],
               **{f"valid_{k}": v for k, v in valid.items() if k != "loss"},
               **{f"train_{k}": float(v) / n_train for k, v in parts_sum.items() if k != "task"},
               "lr": opt.param_groups[0]["lr"], "seconds": time.time() - t0}
        score = valid["loss"] if select == "loss" else valid[select]
        improved = best_score is None or (score < best_score if direction == "lower" else score > best_score)
        if improved:
            best_score, since_best = score, 0
            best_state = copy.deepcopy(model.state_dict())
            if out is not None:
                save_checkpoint(out / "best.pt", model, train_config=config_dict, epoch=epoch, frozen=frozen,
                                valid=valid, data=data_sig)
        else:
            since_best += 1
        row["best"] = improved
        history.append(row)
        if out is not None:
            save_checkpoint(out / "last.pt", model, train_config=config_dict, epoch=epoch, frozen=frozen,
                            data=data_sig,
                            optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                            rng=rng_state(device), history=history, best_score=best_score,
                            since_best=since_best)
        bar.update(1)
        bar.set_postfix(train=f"{row['train_loss']:.3f}", valid=f"{valid['loss']:.3f}",
                        best=f"{best_score:.3f}")
        if callback is not None:
            callback(row)
        if cfg.early_stopping and since_best >= cfg.early_stopping:
            stopped = True
            break
    bar.close()

    if best_state is not None:
        model.load_state_dict(best_state)
    hist = pd.DataFrame(history)
    best_epoch = int(hist.loc[hist["best"], "epoch"].iloc[-1]) if len(hist) else 0
    final = {s: evaluate_split(model, ds, data[s], masks[s], amp=cfg.amp) for s in ("valid", "test")}
    result = {
        "model": cfg.model,
        "dataset": ds.summary(),
        "config": config_dict,
        "model_config": model.config,
        "parameters": model.parameter_counts(),
        "transfer": transfer,
        "best_epoch": best_epoch,
        "epochs_run": len(hist),
        "early_stopped": stopped,
        "select_metric": select,
        "eval_spec": espec.to_dict(),
        "eval_masks": {s: {"missing_sample_fraction": float(np.mean(masks[s].modes != 6)),
                           "missing_entry_fraction": masks[s].missing_fraction(),
                           "mode_counts": {int(k): int(v) for k, v in
                                           zip(*np.unique(masks[s].modes, return_counts=True))}}
                       for s in masks},
        "valid": final["valid"],
        "test": final["test"],
        "primary_metric": M.headline_metric(ds),
        "provenance": provenance(),
        "runtime": runtime_info(device, cfg.amp),
    }
    if out is not None:
        save_checkpoint(out / "best.pt", model, train_config=config_dict, epoch=best_epoch, frozen=frozen,
                        valid=final["valid"], test=final["test"], data=data_sig)
        write_json(out / "metrics.json", result)
        hist.to_csv(out / "history.csv", index=False)
        for s, mk in masks.items():
            mk.save(out / f"masks_{s}.npz")
    return TrainResult(model, hist, result, out)
