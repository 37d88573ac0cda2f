"""Command line: ``mplmm {train,evaluate,curve,predict,explain,synth,import,params,batch,table,report,models}``
(``python -m mplmm`` is the same).

The flags are generated from the typed configs (:mod:`mplmm.config`): ``train`` takes one flag per
:class:`~mplmm.train.TrainConfig` field (``--epochs``, ``--train_rate``, ``--select_metric``, ...), the MulT
backbone's keys (:class:`~mplmm.models.mult.MulTConfig`: ``--d``, ``--layers``, the dropouts, ...) and MPLMM's prompt
keys, with the reference ``main.py``'s names as aliases (``--num_epochs``, ``--drop_rate``, ``--select``,
``--proj_dim``, ``--nlevels``, ...); any other key of the chosen model goes through ``--model_arg KEY=VALUE``, checked
by that model's config. Every data-reading subcommand shares the data flags of
:class:`~mplmm.data.options.DataOptions`. Help texts, defaults and choices come from the fields.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from .config import add_flags, canonical, flag_values, from_dict, specs
from .constants import MODALITIES
from .data.options import LABEL_OPTIONS, DataOptions
from .errors import UserError
from .missing import MODE_PROTOCOLS
from .models import config_class
from .models.mplmm import MPLMMConfig
from .models.mult import BACKBONE_KEYS, MulTConfig
from .train import TrainConfig
from .utils import write_json

DESCRIPTION = """Multimodal learning with missing modalities: train, evaluate, predict, explain, run notebook grids.
`python -m mplmm` is the same command. Each subcommand has --help; `mplmm train` takes one flag per training and
backbone option (the reference main.py's names, such as --drop_rate or --num_epochs, are accepted too)."""
#: the MPLMM keys that have flags of their own (the reference's --prompt_length among them)
MPLMM_FLAGS = tuple(s.name for s in specs(MPLMMConfig) if s.flag and s.name not in MulTConfig.__dataclass_fields__)


def _data_options(args) -> DataOptions:
    """The data flags given, checked."""
    return from_dict(DataOptions, flag_values(args, DataOptions), "DataOptions")


def _dataset(args) -> "MultimodalDataset":  # noqa: F821
    from .data import load_dataset

    opts = _data_options(args)
    return load_dataset(opts.source(), **opts.load_options())


def _model_and_data(args, for_prediction: bool = False):
    """The checkpoint's model on ``--device`` and the data prepared for it (its training statistics, lengths)."""
    from .checkpoint import load_model
    from .prediction import prepare_data
    from .utils import resolve_device

    model = load_model(args.checkpoint, device=resolve_device(args.device))
    opts = _data_options(args)
    ds = prepare_data(model, opts.source(), for_prediction=for_prediction, verbose=True, **opts.load_options())
    for note in ds.notes:
        if "checkpoint" in note or "trained lengths" in note:
            print(f"mplmm: {note}", file=sys.stderr)
    return model, ds


def _model_keys(args) -> dict:
    """The model keys given: the backbone and MPLMM flags (as given, aliases included), then ``--model_arg``."""
    cfg = flag_values(args, MPLMMConfig)
    for item in args.model_arg or []:
        key, _, raw = item.partition("=")
        try:
            cfg[key] = json.loads(raw)
        except json.JSONDecodeError:
            cfg[key] = raw
    return cfg


def train_config(args) -> TrainConfig:
    """The checked :class:`~mplmm.train.TrainConfig` of ``train``'s flags (the model: ``--model``, else ``mplmm``
    with ``--pretrained``, else ``mult``)."""
    keys = canonical(TrainConfig, flag_values(args, TrainConfig), "TrainConfig")
    model = keys.setdefault("model", "mplmm" if keys.get("pretrained") else "mult")
    model_config = canonical(config_class(model), _model_keys(args), f"model {model!r}")  # saved under its names
    keys.update(model_config=model_config, progress=not args.quiet)
    return from_dict(TrainConfig, keys, "TrainConfig")


def cmd_train(args) -> int:
    from .train import train

    cfg = train_config(args)  # before reading data: a typo fails in a second
    ds = _dataset(args)
    out = Path(args.out or (Path("runs") / (args.name or f"{cfg.model}_{ds.name}_seed{cfg.seed}")))
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
        path = write_json(Path(args.out) / "evaluate.json", {"checkpoint": args.checkpoint, "spec": spec.to_dict(),
                                                             "split": args.split, **res, "by_pattern": patterns})
        print(f"wrote {path}")
    return 0


def cmd_curve(args) -> int:
    from .evaluate import ModePredictions, noise_curve, per_mode_table, robustness_curve
    from .metrics import headline_metric
    from .missing import MissingSpec
    from .noise import NoiseSpec
    from .summaries import summarise

    for rate in args.rates:
        MissingSpec(args.protocol, rate, 0)  # validates each rate and noise level before any work
    for level in args.noise_levels or []:
        NoiseSpec(level, 0)
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
    summaries = summarise(curve, key)
    record = {"checkpoint": args.checkpoint, "metric": key, "protocol": args.protocol, "auc": summaries["auc"],
              "summaries": summaries, "curve": curve.to_dict("records"), "per_mode": modes.to_dict("records")}
    noise = None
    if args.noise_levels:
        noise = noise_curve(model, ds, args.noise_levels, args.mask_seeds, args.split, args.device,
                            progress=not args.quiet, amp=args.amp)
        noise.to_csv(out / "noise.csv", index=False)
        record.update(noise_curve=noise.to_dict("records"), noise_summaries=summarise(noise, key, level="noise"))
    write_json(out / "curve.json", record)
    print(curve.groupby("rate")[[key, "MAE" if "MAE" in curve else key]].mean().round(4).to_string())
    print(f"area under {key} curve: {summaries['auc']:.4f}")
    print(f"{key} summaries ({args.protocol} protocol; docs/protocols.md): "
          + ", ".join(f"{k} {v:.4f}" for k, v in summaries.items()))
    if noise is not None:
        print(noise.groupby("noise")[[key]].mean().round(4).to_string())
        print(f"{key} over feature-noise levels: "
              + ", ".join(f"{k} {v:.4f}" for k, v in record["noise_summaries"].items()))
    print(modes[["mode", "mode_name", key]].round(4).to_string(index=False))
    print(f"wrote {out}/curve.csv, per_mode.csv{', noise.csv' if noise is not None else ''}, curve.json")
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
                               **_data_options(args).load_options(("seq_lens", "drop_empty", *LABEL_OPTIONS)))
    sizes = "; ".join(f"{k} {len(ds[k])} ({v})" for k, v in ds.presence_summary().items())
    print(f"wrote {path}: {sizes}; dims {ds.dims}, seq_lens {ds.seq_lens} (lengths recorded)")
    for note in ds.notes:
        print(f"  {note}")
    return 0


def cmd_extract(args) -> int:
    from .extract import ExtractConfig, extract

    options = {**flag_values(args, ExtractConfig), "progress": not args.quiet}
    labels = _data_options(args).load_options(LABEL_OPTIONS)
    result = extract(args.clips, args.out, args.transcripts, report=args.report, name=args.name, **options, **labels)
    print(result.summary)
    print(f"per-clip report: {result.report_path}")
    for note in result.dataset.notes:
        print(f"  {note}")
    return 0


def cmd_params(args) -> int:
    from .models import create_model

    keys = canonical(TrainConfig, flag_values(args, TrainConfig), "TrainConfig")
    name, pretrained = keys.get("model", TrainConfig.model), keys.get("pretrained")
    ds = _dataset(args)
    model = create_model(name, dims=ds.dims, seq_lens=ds.seq_lens, output_dim=ds.output_dim, **_model_keys(args))
    if pretrained:
        from .checkpoint import read_checkpoint

        ck = read_checkpoint(pretrained)
        model.load_pretrained_backbone(ck["state_dict"], ck["model_config"])
    elif model.uses_pretrained_backbone:
        # freeze exactly what a transfer would freeze, using a fresh backbone of the same sizes
        src = create_model("mult", dims=ds.dims, seq_lens=ds.seq_lens, output_dim=ds.output_dim,
                           **{k: v for k, v in model.config.items() if k in BACKBONE_KEYS})
        model.load_pretrained_backbone(src.state_dict(), src.config)
    counts = model.parameter_counts()
    print(f"{name} on {ds.name} dims {ds.dims} seq_lens {ds.seq_lens}: "
          f"total {counts['total']:,}  trainable {counts['trainable']:,}  frozen {counts['frozen']:,}")
    if args.verbose:
        for pname, n in model.trainable_parameters():
            print(f"  {pname:60s} {n:>10,}")
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

    print(markdown_for(args.run_dir, reference=args.reference, rates=args.rates, metrics=args.metrics,
                       effective_reference=args.effective_reference), end="")
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
    parser = argparse.ArgumentParser(prog="mplmm", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_evaluate, _add_curve, _add_predict, _add_explain, _add_synth, _add_import,
                _add_extract, _add_params, _add_batch, _add_table, _add_report, _add_models):
        add(sub)
    return parser


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    """The data flags every data-reading subcommand shares (:class:`~mplmm.data.options.DataOptions`) and
    ``--device``."""
    group = p.add_argument_group("data (DataOptions)")
    add_flags(group, DataOptions)
    add_flags(group, TrainConfig, ["device"], keep_defaults=True)


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    """The model's keys: the MulT backbone's, MPLMM's prompt keys, any other key through ``--model_arg``."""
    add_flags(p.add_argument_group("MulT backbone (MulTConfig; mult, mult_zero, mult_dropout, mplmm, dcp)"), MulTConfig)
    add_flags(p.add_argument_group("MPLMM prompts (MPLMMConfig; --model mplmm)"), MPLMMConfig, MPLMM_FLAGS)
    p.add_argument_group("any model key").add_argument(
        "--model_arg", action="append", metavar="KEY=VALUE",
        help="a key of the chosen model's config (JSON value, else a string), repeatable, e.g. --model_arg "
             "type_prompts=false; every model's keys: docs/training.md, 'Every name, one vocabulary'")


def _add_train(sub: argparse._SubParsersAction) -> None:
    """``train``: the data flags, one flag per TrainConfig field, the model's keys, the run folder."""
    t = sub.add_parser("train", help="pre-train (complete data) or prompt-tune (from --pretrained)",
                       description="Train one model. The reference main.py's flag names are accepted too (--drop_rate, "
                                   "--num_epochs, --proj_dim, --nlevels, --select, --pretrained_model, ...).")
    _add_data_flags(t)
    add_flags(t.add_argument_group("training (TrainConfig)"), TrainConfig,
              [s.name for s in specs(TrainConfig) if s.name != "device"],
              default_text={"model": "default mult, or mplmm with --pretrained"})
    _add_model_flags(t)
    run = t.add_argument_group("run")
    run.add_argument("--name", default=None, help="run name (folder under runs/ unless --out is given)")
    run.add_argument("--out", default=None, help="output folder (best.pt, last.pt, metrics.json, history.csv)")
    run.add_argument("--restart", action="store_true", help="ignore an existing last.pt instead of resuming")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)


def _add_eval_flags(p: argparse.ArgumentParser) -> None:
    """The flags ``evaluate`` and ``curve`` share."""
    _add_data_flags(p)
    p.add_argument("checkpoint", help="best.pt written by train")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"), help="split (default test)")
    add_flags(p, TrainConfig, ["protocol", "eval_seed", "amp"], keep_defaults=True,
              help={"amp": "for inference also on CPUs with native bfloat16 (AVX512-BF16/AMX); fp32 elsewhere",
                    "eval_seed": "the mask seed"})
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    """``evaluate``: one test missing rate or mode."""
    e = sub.add_parser("evaluate", help="metrics of a checkpoint at one test missing rate or mode")
    _add_eval_flags(e)
    e.add_argument("--test_rate", type=float, default=0.0, help="missing rate of the fixed masks (default 0)")
    e.add_argument("--mode", type=int, default=None, choices=range(7), help="force one missing mode 0..6")
    e.add_argument("--out", default=None, help="folder for evaluate.json (default: none written)")
    e.set_defaults(func=cmd_evaluate)


def _add_curve(sub: argparse._SubParsersAction) -> None:
    """``curve``: metrics over missing rates and per missing mode."""
    c = sub.add_parser("curve", help="metrics over missing rates 0.0-1.0 and per missing mode, the papers' "
                      "summaries (AUILC, AIR, relative robustness) -> CSV/JSON")
    _add_eval_flags(c)
    c.add_argument("--rates", type=float, nargs="+", default=[round(0.1 * i, 1) for i in range(11)],
                   help="test missing rates (default 0.0 0.1 ... 1.0)")
    c.add_argument("--mask_seeds", type=int, nargs="+", default=[0, 1, 2], help="mask seeds (default 0 1 2)")
    c.add_argument("--noise_levels", type=float, nargs="+", default=None,
                   help="also a curve over Gaussian feature-noise levels (sigma in units of each modality's training "
                        "spread) at missing rate 0, seeds = mask seeds (default: none)")
    c.add_argument("--out", default=None, help="folder for curve.csv, per_mode.csv and curve.json (default: "
                   "<checkpoint folder>/curve)")
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
    add_flags(pr, TrainConfig, ["protocol", "eval_seed", "batch_size", "amp"], keep_defaults=True,
              choices={"protocol": [*MODE_PROTOCOLS, "observed"]},
              help={"protocol": "of the what-if drops", "eval_seed": "of the what-if drops",
                    "batch_size": "samples per forward pass; memory grows with it",
                    "amp": "also on CPUs with native bfloat16"})
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
    i.add_argument("--name", default=None, help="dataset name (default: the output file's stem)")
    add_flags(i, DataOptions, ("seq_lens", "drop_empty", *LABEL_OPTIONS),
              default_text={"seq_lens": "default: the longest utterance per modality"})
    i.set_defaults(func=cmd_import)


def _add_extract(sub: argparse._SubParsersAction) -> None:
    """``extract``: raw clips to the project's ``.npz`` (needs the extra ``.[extract]``)."""
    from .extract.config import ExtractConfig

    x = sub.add_parser("extract", help="raw clips (a folder or a CSV of paths) -> features .npz with presence masks "
                       "and a per-clip failure report (pip install -e '.[extract]')")
    x.add_argument("clips", help="a folder of video/audio files, or a CSV with a 'path' column (optional id, text, "
                   "split, label)")
    x.add_argument("--out", required=True, help="the .npz to write")
    x.add_argument("--transcripts", default=None, help="CSV with columns id, text (optional split, label); ids are "
                   "the clip file names without extension")
    x.add_argument("--report", default=None, help="per-clip CSV (default: extract_report.csv beside --out)")
    x.add_argument("--name", default=None, help="dataset name (default: the output file's stem)")
    x.add_argument("--quiet", action="store_true", help="no progress bar")
    add_flags(x.add_argument_group("extraction (ExtractConfig)"), ExtractConfig)
    add_flags(x.add_argument_group("labels"), DataOptions, LABEL_OPTIONS)
    x.set_defaults(func=cmd_extract)


def _add_params(sub: argparse._SubParsersAction) -> None:
    """``params``: parameter counts of a model on a dataset."""
    p = sub.add_parser("params", help="trainable / frozen parameter counts of a model on a dataset")
    _add_data_flags(p)
    add_flags(p, TrainConfig, ["model", "pretrained"], help={"pretrained": "freeze as after this transfer"})
    p.add_argument("--verbose", action="store_true", help="list every trainable tensor")
    _add_model_flags(p)
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
    tb.add_argument("--effective-reference", dest="effective_reference", default=None,
                    help="method MultiBench's effective robustness is measured against (default: mult_zero)")
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
