"""Command line: ``mplmm {train,evaluate,curve,predict,explain,synth,import,params,batch,table,report,models}``.

``train`` mirrors the reference ``main.py`` flags (``--dataset --data_path --pretrained_model --drop_rate --name`` and
the hyper-parameters) and adds ``--test_rate``, ``--seed``, ``--device``, ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from .constants import MODALITIES
from .missing import PROTOCOLS
from .errors import ConfigError, UserError
from .utils import write_json

#: reference dataset names → synthetic stand-ins when no --data_path is given
SYNTHETIC_FOR = {"mosi": "synthetic-mosi", "mosei": "synthetic-mosei", "sims": "synthetic-sims",
                 "iemocap": "synthetic-iemocap", "synthetic": "synthetic"}
BACKBONE_FLAGS = ("proj_dim", "num_heads", "nlevels", "attn_dropout", "attn_dropout_a", "attn_dropout_v",
                  "relu_dropout", "res_dropout", "embed_dropout", "out_dropout")


def _data_options(args) -> dict:
    """``load_dataset`` keywords from the data flags (size, seq_lens, drop_empty, label flags)."""
    opts = dict(_label_flags(args))
    if getattr(args, "size", None) is not None:
        opts["size"] = args.size
    if getattr(args, "seq_lens", None):
        opts["seq_lens"] = tuple(args.seq_lens)
    if getattr(args, "drop_empty", False):
        opts["drop_empty"] = True
    if getattr(args, "trust_pickle", False):
        opts["trust_pickle"] = True
    return opts


def _source(args) -> str:
    return args.data_path or SYNTHETIC_FOR.get(args.dataset.lower(), args.dataset)


def _dataset(args) -> "MultimodalDataset":  # noqa: F821
    from .data import load_dataset

    return load_dataset(_source(args), **_data_options(args))


def _model_and_data(args, for_prediction: bool = False):
    """The checkpoint's model on ``--device`` and the data prepared for it (its training statistics, lengths)."""
    from .checkpoint import load_model
    from .prediction import prepare_data
    from .utils import resolve_device

    model = load_model(args.checkpoint, device=resolve_device(args.device))
    ds = prepare_data(model, _source(args), for_prediction=for_prediction, verbose=True, **_data_options(args))
    for note in ds.notes:
        if "checkpoint" in note or "trained lengths" in note:
            print(f"mplmm: {note}", file=sys.stderr)
    return model, ds


def _label_flags(args) -> dict:
    """The label options given on the command line (``--label_range`` ... ``--metric_family``)."""
    out = {"label_range": args.label_range, "threshold": args.threshold, "task": args.task,
           "class_names": args.class_names.split(",") if args.class_names else None,
           "metric_family": args.metric_family}
    return {k: v for k, v in out.items() if v is not None}


def _add_label_flags(p: argparse.ArgumentParser) -> None:
    from .metrics import FAMILIES

    p.add_argument("--label_range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="regression label scale (default: the MOSI/SIMS scale when recognised, else inferred from "
                        "the training split)")
    p.add_argument("--threshold", type=float, default=None,
                   help="generic regression family: binary accuracy/F1 threshold (default 0 for a range symmetric "
                        "around 0, else the midpoint)")
    p.add_argument("--task", default=None, choices=("regression", "classification"),
                   help="classification for integer class labels (string labels are classes anyway)")
    p.add_argument("--class_names", default=None, help="comma-separated class names in class-index order")
    p.add_argument("--metric_family", default=None, choices=FAMILIES,
                   help="metric set (default: recognised from the data; see docs/protocol_metrics.md)")


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="synthetic",
                   help="dataset name: synthetic (default, embedded), mosi, mosei, sims, iemocap; without "
                        "--data_path the named synthetic stand-in is used")
    p.add_argument("--data_path", default=None,
                   help="file or folder in any supported format (MulT/MMSA pickle, .npz, MMIN IEMOCAP folder)")
    p.add_argument("--size", type=float, default=None, help="synthetic data only: split-size scale factor")
    p.add_argument("--seq_lens", type=int, nargs=3, default=None, metavar=("T_L", "T_A", "T_V"),
                   help="pad/truncate (files) or generate (synthetic) these sequence lengths")
    p.add_argument("--trust_pickle", action="store_true",
                   help="read a .pkl with plain pickle, which runs any code the file names: only for a file you "
                        "trust (default: a restricted reader that loads arrays, strings, numbers and containers)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda[:N]")
    p.add_argument("--drop_empty", action="store_true",
                   help="drop samples that have no modality at all (default: a one-line error naming the first)")
    _add_label_flags(p)


def _model_config(args) -> dict:
    cfg = {}
    mapping = {"proj_dim": "d", "nlevels": "layers"}
    for flag in BACKBONE_FLAGS:
        value = getattr(args, flag)
        if value is not None:
            cfg[mapping.get(flag, flag)] = value
    if args.model == "mplmm":
        if args.prompt_length is not None:
            cfg["prompt_length"] = args.prompt_length
        if args.prompt_init is not None:
            cfg["prompt_init"] = args.prompt_init
        if args.gen_projection is not None:
            cfg["gen_projection"] = args.gen_projection
    if args.no_attn_mask:
        cfg["attn_mask"] = False
    for item in args.model_arg or []:
        key, _, raw = item.partition("=")
        try:
            cfg[key] = json.loads(raw)
        except json.JSONDecodeError:
            cfg[key] = raw
    return cfg


def cmd_train(args) -> int:
    from .train import TrainConfig, train

    if args.model is None:
        args.model = "mplmm" if args.pretrained_model else "mult"
    if args.prompt_dim is not None and args.proj_dim is not None and args.prompt_dim != args.proj_dim:
        raise ConfigError("--prompt_dim must equal --proj_dim (generated features enter d-dim transformers)")
    cfg = TrainConfig(model=args.model, model_config=_model_config(args), epochs=args.num_epochs,
                      batch_size=args.batch_size, lr=args.lr, optim=args.optim, clip=args.clip, when=args.when,
                      early_stopping=args.early_stopping, protocol=args.protocol, train_rate=args.drop_rate,
                      test_rate=args.test_rate, seed=args.seed, eval_seed=args.eval_seed, device=args.device,
                      amp=args.amp, tf32=args.tf32, deterministic=args.deterministic,
                      pretrained=args.pretrained_model, select_metric=args.select,
                      progress=not args.quiet).validate()  # before reading data: a typo fails in a second
    ds = _dataset(args)
    out = Path(args.out or (Path("runs") / (args.name or f"{args.model}_{ds.name}_seed{args.seed}")))
    result = train(cfg, ds, out, resume=not args.restart)
    m = result.metrics
    used = m["train_samples"]
    if used["used"] < used["total"]:
        print(f"trained on the {used['used']} complete samples of {used['total']} ({cfg.model} reads complete data "
              "only)")
    print(f"best epoch {m['best_epoch']} of {m['epochs_run']}; parameters {m['parameters']}")
    print("test  " + "  ".join(f"{k}={v:.4f}" for k, v in m["test"].items()))
    _print_patterns(m["by_pattern"].get("test"))
    print(f"wrote {out}/best.pt, {out}/metrics.json, {out}/history.csv")
    return 0


def _print_patterns(records) -> None:
    """The per-observed-pattern table, when the data has more than complete samples."""
    import pandas as pd

    if records and len(records) > 1:
        print("by observed pattern (what the samples really have):")
        print(pd.DataFrame(records).round(4).to_string(index=False))


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate_model
    from .missing import MissingSpec

    spec = MissingSpec(args.protocol, args.test_rate, args.eval_seed, args.mode)
    model, ds = _model_and_data(args)
    res = evaluate_model(model, ds, spec, args.split, args.device, amp=args.amp, by_pattern=True)
    patterns = res.pop("by_pattern")
    print(json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in res.items()}, indent=2))
    _print_patterns(patterns)
    if args.out:
        write_json(args.out, {"checkpoint": args.checkpoint, "spec": spec.to_dict(), "split": args.split, **res,
                              "by_pattern": patterns})
    return 0


def cmd_curve(args) -> int:
    from .evaluate import ModePredictions, area_under_curve, per_mode_table, robustness_curve
    from .metrics import headline_metric
    from .missing import MissingSpec

    for rate in args.rates:
        MissingSpec(args.protocol, rate, 0)  # validates each rate before any work
    model, ds = _model_and_data(args)
    cache = ModePredictions(model, ds, args.split, args.device, amp=args.amp)  # <= 7 passes for curve + table
    curve = robustness_curve(model, ds, args.rates, args.mask_seeds, args.protocol, args.split, args.device,
                             progress=not args.quiet, amp=args.amp, cache=cache)
    modes = per_mode_table(model, ds, args.split, args.device, amp=args.amp, cache=cache)
    key = headline_metric(ds)
    out = Path(args.out or Path(args.checkpoint).parent / "curve")
    out.mkdir(parents=True, exist_ok=True)
    curve.to_csv(out / "curve.csv", index=False)
    modes.to_csv(out / "per_mode.csv", index=False)
    write_json(out / "curve.json", {"checkpoint": args.checkpoint, "metric": key,
                                    "auc": area_under_curve(curve, key), "curve": curve.to_dict("records"),
                                    "per_mode": modes.to_dict("records")})
    print(curve.groupby("rate")[[key, "MAE" if "MAE" in curve else key]].mean().round(4).to_string())
    print(f"area under {key} curve: {area_under_curve(curve, key):.4f}")
    print(modes[["mode", "mode_name", key]].round(4).to_string(index=False))
    print(f"wrote {out}/curve.csv, per_mode.csv, curve.json")
    return 0


def cmd_predict(args) -> int:
    from .prediction import predict, write_table

    model, ds = _model_and_data(args, for_prediction=True)
    table = predict(model, ds, args.split, mode=args.mode, rate=args.test_rate, protocol=args.protocol,
                    eval_seed=args.eval_seed, batch_size=args.batch_size, amp=args.amp, progress=not args.quiet)
    path = write_table(table, args.out)
    counts = table["mode_name"].value_counts().to_dict()
    print(f"wrote {path}: {len(table)} predictions; modes used: "
          + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if "label" in table.columns and table["label"].notna().any():
        print(f"(labels present for {int(table['label'].notna().sum())} samples: `mplmm evaluate` scores them)")
    return 0


def cmd_explain(args) -> int:
    from .explanation import explain

    model, ds = _model_and_data(args, for_prediction=True)
    result = explain(model, ds, args.ids, args.out, methods=args.methods, n_steps=args.ig_steps)
    for r in result["samples"]:
        pred = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in r["prediction"].items()
                         if not k.startswith("prob_"))
        print(f"{r['id']} ({r['split']}): has {'+'.join(r['present'])}, mode {r['mode']} ({r['mode_name']}), {pred}")
    print(f"wrote {result['html']} and {result['json']} (offline page)")
    return 0


def cmd_synth(args) -> int:
    from .data import make_synthetic, save_dataset

    ds = make_synthetic(args.kind, size=args.size, seed=args.seed,
                        seq_lens=tuple(args.seq_lens) if args.seq_lens else None)
    path = save_dataset(ds, args.out, args.format)
    print(f"wrote {path} ({args.format}): {json.dumps(ds.summary()['sizes'])}, dims {ds.dims}, "
          f"seq_lens {ds.seq_lens}")
    return 0


def cmd_import(args) -> int:
    from .data.importer import import_features

    path, ds = import_features(args.labels, args.text, args.audio, args.vision, args.out, name=args.name,
                               seq_lens=tuple(args.seq_lens) if args.seq_lens else None,
                               drop_empty=args.drop_empty, **_label_flags(args))
    sizes = "; ".join(f"{k} {len(ds[k])} ({v})" for k, v in ds.presence_summary().items())
    print(f"wrote {path}: {sizes}; dims {ds.dims}, seq_lens {ds.seq_lens} (lengths recorded)")
    for note in ds.notes:
        print(f"  {note}")
    return 0


def cmd_params(args) -> int:
    from .models import create_model

    ds = _dataset(args)
    model = create_model(args.model, dims=ds.dims, seq_lens=ds.seq_lens, output_dim=ds.output_dim,
                         **_model_config(args))
    if args.pretrained_model:
        from .checkpoint import read_checkpoint

        ck = read_checkpoint(args.pretrained_model)
        model.load_pretrained_backbone(ck["state_dict"], ck["model_config"])
    elif model.uses_pretrained_backbone:
        # freeze exactly what a transfer would freeze, using a fresh backbone of the same sizes
        src = create_model("mult", dims=ds.dims, seq_lens=ds.seq_lens, output_dim=ds.output_dim,
                  **{k: v for k, v in model.config.items() if k in ("d", "num_heads", "layers")})
        model.load_pretrained_backbone(src.state_dict(), src.config)
    counts = model.parameter_counts()
    print(f"{args.model} on {ds.name} dims {ds.dims} seq_lens {ds.seq_lens}: "
          f"total {counts['total']:,}  trainable {counts['trainable']:,}  frozen {counts['frozen']:,}")
    if args.verbose:
        for name, n in model.trainable_parameters():
            print(f"  {name:60s} {n:>10,}")
    return 0


def cmd_batch(args) -> int:
    from .workbench.batch import run_grid

    slurm = {"partition": args.slurm_partition, "time": args.slurm_time, "mem_gb": args.slurm_mem,
             "cpus_per_task": args.slurm_cpus, "array_parallelism": args.slurm_array_parallelism}
    index = run_grid(args.grid, jobs=args.jobs, force=args.force, no_input=args.no_input or None, only=args.only,
                     gpus=args.gpus, jobs_per_gpu=args.jobs_per_gpu, executor=args.executor,
                     slurm={k: v for k, v in slurm.items() if v is not None}, standalone=args.standalone or None)
    print(f"index: {index}")
    return 0


def cmd_table(args) -> int:
    from .workbench.batch import markdown_for

    print(markdown_for(args.run_dir, reference=args.reference, rates=args.rates, metrics=args.metrics), end="")
    return 0


def cmd_report(args) -> int:
    from .workbench.batch import export_html

    out = Path(args.out) if args.out else Path(args.notebook).with_suffix(".html")
    print(f"wrote {export_html(args.notebook, out, no_input=args.no_input)} (standalone, offline)")
    return 0


def cmd_models(args) -> int:
    from .models import available_models, model_class

    for name in available_models():
        doc = (model_class(name).__doc__ or "").strip().splitlines()[0]
        print(f"{name:14s} {doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mplmm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_evaluate, _add_curve, _add_predict, _add_explain, _add_synth, _add_import,
                _add_params, _add_batch, _add_table, _add_report, _add_models):
        add(sub)
    return parser


def _add_train(sub: argparse._SubParsersAction) -> None:
    """``train``: data, schedule and selection flags, then the model and runtime ones."""
    t = sub.add_parser("train", help="pre-train (complete data) or prompt-tune (from --pretrained_model)")
    _add_data_flags(t)
    t.add_argument("--model", default=None, help="registered model (python -m mplmm models); default: mult, "
                   "or mplmm when --pretrained_model is given")
    t.add_argument("--pretrained_model", default=None, help="best.pt of a 'mult' run: prompt-tune from it "
                   "(backbone frozen; projections and head re-initialised)")
    t.add_argument("--drop_rate", type=float, default=0.0,
                   help="training missing rate: share of samples with >=1 missing modality (0 for pre-training; "
                        "the reference README uses 0.7 for prompt tuning)")
    t.add_argument("--test_rate", type=float, default=None,
                   help="missing rate of the fixed valid/test masks (default: same as --drop_rate)")
    t.add_argument("--protocol", default="modality", choices=PROTOCOLS,
                   help="missing-data protocol: modality (MPLMM), entry (ComP), frame (EMT-DLFR), observed (no "
                        "simulated drops: the data as it is)")
    t.add_argument("--name", default=None, help="run name (folder under runs/ unless --out is given)")
    t.add_argument("--out", default=None, help="output folder (best.pt, last.pt, metrics.json, history.csv)")
    t.add_argument("--seed", type=int, default=666, help="training seed (reference default 666)")
    t.add_argument("--eval_seed", type=int, default=0, help="seed of the fixed evaluation masks (shared by "
                   "all methods)")
    t.add_argument("--num_epochs", type=int, default=40, help="epochs (reference default 40)")
    t.add_argument("--batch_size", type=int, default=64, help="batch size (reference default 64)")
    t.add_argument("--lr", type=float, default=1e-3, help="learning rate (reference default 1e-3)")
    t.add_argument("--optim", default="Adam", help="torch.optim class name (reference default Adam)")
    t.add_argument("--clip", type=float, default=0.8, help="gradient-norm clip (reference default 0.8)")
    t.add_argument("--when", type=int, default=10, help="ReduceLROnPlateau patience in epochs (default 10)")
    t.add_argument("--early_stopping", type=int, default=None, help="stop after N epochs without validation "
                   "improvement (default: off)")
    t.add_argument("--select", default="loss", help="selection criterion on validation: loss (default) or a "
                   "metric name such as Non0_acc_2")
    _add_model_flags(t)
    t.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA")
    t.add_argument("--tf32", action="store_true", help="TF32 for fp32 matmuls/convolutions on CUDA (default off)")
    t.add_argument("--deterministic", action="store_true",
                   help="deterministic algorithms only (an error for ops without one), deterministic cuDNN and "
                        "CUBLAS_WORKSPACE_CONFIG: a run repeats bit for bit on the same machine (slower on CUDA)")
    t.add_argument("--restart", action="store_true", help="ignore an existing last.pt instead of resuming")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)


def _add_model_flags(t: argparse.ArgumentParser) -> None:
    """``train``'s model flags: the MulT backbone, MPLMM's prompts, any other model key."""
    for flag, typ, help_ in (("proj_dim", int, "transformer width d (default 30)"),
                             ("num_heads", int, "attention heads (default 5)"),
                             ("nlevels", int, "layers per transformer (default 5)"),
                             ("attn_dropout", float, "attention dropout, text source / memory (default 0.1)"),
                             ("attn_dropout_a", float, "attention dropout, audio source (default 0.1)"),
                             ("attn_dropout_v", float, "attention dropout, vision source (default 0.1)"),
                             ("relu_dropout", float, "feed-forward dropout (default 0.1)"),
                             ("res_dropout", float, "residual dropout (default 0.1)"),
                             ("embed_dropout", float, "embedding dropout (default 0.25)"),
                             ("out_dropout", float, "head dropout (default 0.1)")):
        t.add_argument(f"--{flag}", type=typ, default=None, help=help_)
    t.add_argument("--prompt_dim", type=int, default=None, help="must equal --proj_dim (kept for compatibility)")
    t.add_argument("--prompt_length", type=int, default=None, help="MPLMM prompt length P (default 16)")
    t.add_argument("--prompt_init", choices=("lora", "zeros"), default=None,
                   help="MPLMM prompt initialisation: lora (default; missing-type prompts learn) or zeros (the "
                        "released code: missing-type prompts stay zero)")
    t.add_argument("--gen_projection", choices=("conv", "bypass"), default=None,
                   help="generated modalities through a learnable Conv1d as in the paper figure (conv, default) "
                        "or bypassing it as the released code (bypass)")
    t.add_argument("--no_attn_mask", action="store_true", help="disable MulT's offset causal attention mask")
    t.add_argument("--model_arg", action="append", metavar="KEY=VALUE",
                   help="extra model keyword argument (JSON value), repeatable")


def _add_eval_flags(p: argparse.ArgumentParser) -> None:
    """The flags ``evaluate`` and ``curve`` share."""
    _add_data_flags(p)
    p.add_argument("checkpoint", help="best.pt written by train")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"), help="split (default test)")
    p.add_argument("--protocol", default="modality", choices=PROTOCOLS,
                   help="protocol of the simulated drops (observed: none, the data as it is)")
    p.add_argument("--eval_seed", type=int, default=0, help="mask seed (default 0)")
    p.add_argument("--out", default=None, help="where to write results")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--amp", action="store_true",
                   help="bfloat16 autocast for inference on CUDA and on CPUs with native bfloat16 (AVX512-BF16/"
                        "AMX); fp32 elsewhere")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    """``evaluate``: one test missing rate or mode."""
    e = sub.add_parser("evaluate", help="metrics of a checkpoint at one test missing rate or mode")
    _add_eval_flags(e)
    e.add_argument("--test_rate", type=float, default=0.0, help="missing rate of the fixed masks (default 0)")
    e.add_argument("--mode", type=int, default=None, choices=range(7), help="force one missing mode 0..6")
    e.set_defaults(func=cmd_evaluate)


def _add_curve(sub: argparse._SubParsersAction) -> None:
    """``curve``: metrics over missing rates and per missing mode."""
    c = sub.add_parser("curve", help="metrics over missing rates 0.0-1.0 and per missing mode -> CSV/JSON")
    _add_eval_flags(c)
    c.add_argument("--rates", type=float, nargs="+", default=[round(0.1 * i, 1) for i in range(11)],
                   help="test missing rates (default 0.0 0.1 ... 1.0)")
    c.add_argument("--mask_seeds", type=int, nargs="+", default=[0, 1, 2], help="mask seeds (default 0 1 2)")
    c.set_defaults(func=cmd_curve)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    """``predict``: one row per sample of a (new) file."""
    pr = sub.add_parser("predict", help="one row per sample of a (new, unlabeled) file: mode used, prediction -> "
                        "CSV / Parquet / JSON lines")
    _add_data_flags(pr)
    pr.add_argument("checkpoint", help="best.pt written by train (it carries the training preprocessing)")
    pr.add_argument("--split", default="all", help="train, valid, test, unsplit or all (default: every split)")
    pr.add_argument("--out", required=True, help="predictions file: .csv, .parquet or .jsonl")
    pr.add_argument("--mode", type=int, default=None, choices=range(7),
                    help="what-if: force one missing mode 0..6 (never a modality a sample lacks)")
    pr.add_argument("--test_rate", type=float, default=0.0, help="what-if: simulated missing rate (default 0)")
    pr.add_argument("--protocol", default="modality", choices=[p for p in PROTOCOLS if p != "frame"],
                    help="protocol of the what-if drops (default modality)")
    pr.add_argument("--eval_seed", type=int, default=0, help="seed of the what-if drops (default 0)")
    pr.add_argument("--batch_size", type=int, default=64,
                    help="samples per forward pass (default 64; memory grows with it)")
    pr.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA and on CPUs with native bfloat16")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(func=cmd_predict)


def _add_explain(sub: argparse._SubParsersAction) -> None:
    """``explain``: an offline page explaining chosen samples."""
    ex = sub.add_parser("explain", help="one offline HTML page (+ JSON) explaining chosen samples: prediction per "
                        "missing mode, modality importance, time-step attributions")
    _add_data_flags(ex)
    ex.add_argument("checkpoint", help="best.pt written by train")
    ex.add_argument("--ids", nargs="+", required=True, help="sample ids to explain")
    ex.add_argument("--out", required=True, help="folder for explain.html and explain.json")
    ex.add_argument("--methods", nargs="+", default=["ig", "occlusion"], choices=("ig", "occlusion"),
                    help="time-step attribution methods (default both; ig needs proj_l/a/v)")
    ex.add_argument("--ig_steps", type=int, default=16, help="Integrated Gradients steps (default 16)")
    ex.set_defaults(func=cmd_explain)


def _add_synth(sub: argparse._SubParsersAction) -> None:
    """``synth``: a synthetic dataset in a chosen format."""
    s = sub.add_parser("synth", help="write a synthetic dataset in a chosen format")
    s.add_argument("--kind", default="mosi", choices=("mosi", "mosei", "sims", "iemocap"), help="shape to mimic")
    s.add_argument("--size", type=float, default=0.1, help="split-size scale factor (default 0.1)")
    s.add_argument("--seed", type=int, default=0, help="generator seed")
    s.add_argument("--seq_lens", type=int, nargs=3, default=None, metavar=("T_L", "T_A", "T_V"),
                   help="sequence lengths (default: the real dataset's)")
    s.add_argument("--format", default="npz", choices=("npz", "mult_pickle", "mmsa_pickle", "iemocap_mmin"),
                   help="output format (default npz)")
    s.add_argument("--out", required=True, help="output file (folder for iemocap_mmin)")
    s.set_defaults(func=cmd_synth)


def _add_import(sub: argparse._SubParsersAction) -> None:
    """``import``: own features and a labels CSV to the project's ``.npz``."""
    i = sub.add_parser("import", help="own features: per-utterance arrays + a CSV (id, split, label) -> .npz")
    i.add_argument("--labels", required=True, help="CSV with columns id, split (train/valid/test), label")
    for m in MODALITIES:
        i.add_argument(f"--{m}", required=True, help=f"{m} features: a folder of <id>.npy files ((T, D) or (D,)) "
                       "or an .npz archive with one entry per id")
    i.add_argument("--out", required=True, help="the .npz to write")
    i.add_argument("--drop_empty", action="store_true",
                   help="drop ids without any modality (default: a one-line error naming the first)")
    i.add_argument("--name", default=None, help="dataset name (default: the output file's stem)")
    i.add_argument("--seq_lens", type=int, nargs=3, default=None, metavar=("T_L", "T_A", "T_V"),
                   help="truncate/pad to these lengths (default: the longest utterance per modality)")
    _add_label_flags(i)
    i.set_defaults(func=cmd_import)


def _add_params(sub: argparse._SubParsersAction) -> None:
    """``params``: parameter counts of a model on a dataset."""
    p = sub.add_parser("params", help="trainable / frozen parameter counts of a model on a dataset")
    _add_data_flags(p)
    p.add_argument("--model", default="mplmm", help="registered model name")
    p.add_argument("--pretrained_model", default=None, help="freeze as after transfer from this checkpoint")
    p.add_argument("--verbose", action="store_true", help="list every trainable tensor")
    for flag in BACKBONE_FLAGS:
        p.add_argument(f"--{flag}", type=float if "dropout" in flag else int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--prompt_length", type=int, default=None, help="MPLMM prompt length P")
    p.add_argument("--prompt_init", default=None, help=argparse.SUPPRESS)
    p.add_argument("--gen_projection", choices=("conv", "bypass"), default=None,
                   help="conv (default) or bypass (the released code's count)")
    p.add_argument("--no_attn_mask", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model_arg", action="append", metavar="KEY=VALUE", help="extra model keyword argument")
    p.set_defaults(func=cmd_params)


def _add_batch(sub: argparse._SubParsersAction) -> None:
    """``batch``: run a papermill grid."""
    b = sub.add_parser("batch", help="run a papermill grid (papermill_runs/grids/*.yaml)")
    b.add_argument("grid", help="grid YAML file")
    b.add_argument("--jobs", type=int, default=None,
                   help="parallel runs within a stage (default: GPUs x --jobs-per-gpu when there are GPUs, else 1)")
    b.add_argument("--gpus", default=None, metavar="0,1,...",
                   help="GPUs the runs take turns on, one kernel per GPU slot (default: every visible GPU; "
                        "'none': no GPU pool)")
    b.add_argument("--jobs-per-gpu", dest="jobs_per_gpu", type=int, default=1,
                   help="runs sharing one GPU at once (default 1)")
    b.add_argument("--executor", default="local", choices=("local", "slurm", "slurm-local"),
                   help="local (default): this machine; slurm: one submitit job array per stage (per wave of "
                        "trials in a tuning stage); slurm-local: the same through submitit's local executor (for "
                        "trying it out)")
    b.add_argument("--slurm-partition", default=None, help="Slurm partition (overrides the grid's slurm: block)")
    b.add_argument("--slurm-time", type=int, default=None, help="minutes per run (default 240)")
    b.add_argument("--slurm-mem", type=float, default=None, help="memory per run in GB")
    b.add_argument("--slurm-cpus", type=int, default=None, help="CPU cores per run")
    b.add_argument("--slurm-array-parallelism", type=int, default=None, help="runs of one stage's array at once")
    b.add_argument("--force", action="store_true",
                   help="re-run finished runs (a tuning stage's studies start again)")
    b.add_argument("--no-input", dest="no_input", action="store_true",
                   help="hide code in the HTML reports (default: the grid's report: no_input, else shown)")
    b.add_argument("--standalone", action="store_true",
                   help="reports and index embed plotly.js (~5 MB each) instead of loading the grid's shared "
                        "_static/plotly.min.js (default: the grid's report: standalone, else shared)")
    b.add_argument("--only", default=None, help="run only this stage (earlier stages must have finished)")
    b.set_defaults(func=cmd_batch)


def _add_table(sub: argparse._SubParsersAction) -> None:
    """``table``: leaderboards of robustness runs as markdown."""
    tb = sub.add_parser("table", help="leaderboards of robustness runs as markdown (the tables of a grid's index)")
    tb.add_argument("run_dir", help="a grid's output root, or one robustness run folder (notebook 02's output_dir)")
    tb.add_argument("--reference", default=None,
                    help="method to compare every other one with (default: the grid's reference, from grid.json)")
    tb.add_argument("--rates", type=float, nargs="+", default=None,
                    help="only these test missing rates as columns (default: every evaluated rate; AUC uses all)")
    tb.add_argument("--metrics", nargs="+", default=None,
                    help="more metric columns after the headline one, e.g. Non0_F1_score MAE (the AUC and the "
                         "comparison use the headline metric)")
    tb.set_defaults(func=cmd_table)


def _add_report(sub: argparse._SubParsersAction) -> None:
    """``report``: an executed notebook as one offline HTML file."""
    r = sub.add_parser("report", help="export an executed notebook to one self-contained offline HTML file")
    r.add_argument("notebook", help="an executed .ipynb")
    r.add_argument("--out", default=None, help="the HTML file (default: the notebook's path with .html)")
    r.add_argument("--no-input", dest="no_input", action="store_true", help="hide code cells and prompts")
    r.set_defaults(func=cmd_report)


def _add_models(sub: argparse._SubParsersAction) -> None:
    """``models``: list the registered models."""
    m = sub.add_parser("models", help="list registered models")
    m.set_defaults(func=cmd_models)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; user errors (:class:`~mplmm.errors.UserError`: bad data, checkpoint or configuration) print one
    line and exit 2. Any other exception is a bug and keeps its traceback."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
