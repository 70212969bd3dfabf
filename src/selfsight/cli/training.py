"""Verbs that train: ``pretrain``, ``distill``, ``finetune`` (and ``predict`` with what it
trained). Each is an ``*_arguments`` function and a ``run_*`` function."""

from __future__ import annotations

import argparse

from selfsight.cli.options import (
    ACCELERATORS,
    EVERY_IMAGE_HELP,
    LABELLED_HELP,
    RUN_HELP,
    add_device_options,
    add_finetune_recipe,
    add_precision,
    below_one,
    device_kwargs,
    devices_value,
    finetune_recipe,
    fraction,
    key_values,
    non_negative_int,
    positive_float,
    positive_int,
    print_lines,
    seed_value,
)
from selfsight.errors import UserError
from selfsight.signals.names import is_signal_source

ALLOW_CHANGED_HELP = ("with --resume: continue although files were added to or removed from "
                      "the data since the run started (the schedule and image count change)")


def pretrain_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="?", default="fashion-mnist",
                   help="'fashion-mnist' or an image folder (searched recursively); signals: "
                        "uea:/ucr:NAME, .npy/.npz/.csv/.parquet/.ts, long:FILE, or a folder "
                        "of .csv files (one recording each)")
    p.add_argument("--method", default="simclr", help="see `selfsight list methods`")
    p.add_argument("--backbone", default="auto",
                   help="any timm model name or selfsight alias (`selfsight list backbones`); "
                        "auto: resnet10_cpu on a CPU, resnet18 on a GPU")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="default: 100, or as many as --time-budget allows")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="global batch size (default: 512 on a CPU, 256 on a GPU, smaller for "
                        "small folders)")
    p.add_argument("--out", default=None, help="run folder (default runs/METHOD-BACKBONE-TIME)")
    p.add_argument("--image-size", type=positive_int, default=None,
                   help="inference resolution")
    p.add_argument("--view-size", type=positive_int, default=None, help="training crop size")
    p.add_argument("--time-budget", type=positive_float, default=None,
                   help="seconds of training")
    p.add_argument("--max-steps", type=positive_int, default=None,
                   help="steps of training (default: from --epochs)")
    p.add_argument("--accelerator", default="auto", choices=ACCELERATORS,
                   help="cpu, gpu, auto (default: the GPU when there is one)")
    p.add_argument("--devices", type=devices_value, default=1,
                   help="number of devices, or 'auto'")
    p.add_argument("--num-nodes", type=positive_int, default=1)
    p.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp")
    add_precision(p)
    p.add_argument("--seed", type=seed_value, default=0)
    p.add_argument("--workers", type=non_negative_int, default=0)
    p.add_argument("--checkpoint-every", type=non_negative_int, default=200,
                   help="steps between checkpoints (0: only at each epoch end)")
    p.add_argument("--knn-every", type=non_negative_int, default=0,
                   help="online kNN every N epochs (0, the default: off)")
    p.add_argument("--importance", type=below_one, default=0.0,
                   help="fraction of each batch drawn by the images' most recent losses "
                        "(methods that report them: simclr, hierarchical; 0: off)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints")
    p.add_argument("--allow-changed-data", action="store_true", help=ALLOW_CHANGED_HELP)
    p.add_argument("--init", default=None, metavar="FILE|RUN",
                   help="start from these weights: a timm/torchvision checkpoint (.pth, .pt, "
                        ".bin, .ckpt, .safetensors; classifier head ignored) or a run folder "
                        "with the same backbone (continual pretraining)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="method option, e.g. --set temperature=0.1 (repeatable)")
    p.add_argument("--backbone-set", action="append", metavar="KEY=VALUE",
                   help="backbone option or timm kwarg, e.g. --backbone-set stem_stride=2")
    p.add_argument("--view-set", action="append", metavar="KEY=VALUE",
                   help="view option for every view, e.g. --view-set scale=0.4,1.0")
    p.add_argument("--no-progress", action="store_true")


def check_hardware(args: argparse.Namespace) -> None:
    """--accelerator gpu without a GPU (or more --devices than GPUs): one line before anything
    is chosen, loaded or printed (TrainConfig's own check)."""
    from selfsight.train.fit import TrainConfig

    TrainConfig(accelerator=args.accelerator, devices=getattr(args, "devices", 1))


def run_pretrain(args: argparse.Namespace) -> int:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    import selfsight

    check_hardware(args)
    run = selfsight.pretrain(
        args.data, args.method, args.backbone, args.out, args.epochs, args.batch_size,
        image_size=args.image_size, view_size=args.view_size,
        options=key_values(args.set, "--set"),
        backbone_options=key_values(args.backbone_set, "--backbone-set"),
        view_options=key_values(args.view_set, "--view-set"),
        resume=args.resume, allow_changed_data=args.allow_changed_data, init=args.init,
        time_budget=args.time_budget, max_steps=args.max_steps,
        accelerator=args.accelerator, devices=args.devices, num_nodes=args.num_nodes,
        strategy=args.strategy, precision=args.precision, seed=args.seed,
        workers=args.workers, checkpoint_every=args.checkpoint_every,
        knn_every=args.knn_every, importance=args.importance,
        progress=not args.no_progress)
    if rank_zero_only.rank == 0:  # under DDP every process returns here
        print(f"run folder: {run}")
    return 0


def distill_arguments(d: argparse.ArgumentParser) -> None:
    d.add_argument("run", help="teacher run folder with backbone.safetensors")
    d.add_argument("--student", default="resnet18", help="any timm model name")
    d.add_argument("--student-set", action="append", metavar="KEY=VALUE",
                   help="student option or timm kwarg, e.g. --student-set channels=16,32,64,128")
    d.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="distillation option, e.g. --set loss=smooth_l1 (repeatable)")
    d.add_argument("--data", default=None, help="images to distil on (default: the teacher's)")
    d.add_argument("--out", default=None, help="student run folder")
    d.add_argument("--image-size", type=positive_int, default=None,
                   help="default: the teacher's")
    d.add_argument("--epochs", type=positive_int, default=None,
                   help="default: 100, or as many as --time-budget allows")
    d.add_argument("--batch-size", type=positive_int, default=256)
    d.add_argument("--time-budget", type=positive_float, default=None,
                   help="seconds of training")
    d.add_argument("--max-steps", type=positive_int, default=None,
                   help="steps of training (default: from --epochs)")
    add_precision(d)
    d.add_argument("--accelerator", default="auto", choices=ACCELERATORS,
                   help="cpu, gpu, auto (default: the GPU when there is one)")
    d.add_argument("--seed", type=seed_value, default=0)
    d.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints")
    d.add_argument("--allow-changed-data", action="store_true", help=ALLOW_CHANGED_HELP)
    d.add_argument("--no-progress", action="store_true")


def run_distill(args: argparse.Namespace) -> int:
    from selfsight.distill import distill

    check_hardware(args)
    run = distill(args.run, args.student, args.out, data=args.data, epochs=args.epochs,
                  batch_size=args.batch_size, image_size=args.image_size,
                  student_options=key_values(args.student_set, "--student-set"),
                  options=key_values(args.set, "--set"), resume=args.resume,
                  allow_changed_data=args.allow_changed_data, time_budget=args.time_budget,
                  max_steps=args.max_steps,
                  precision=args.precision, accelerator=args.accelerator, seed=args.seed,
                  progress=not args.no_progress)
    print(f"student run folder: {run}")
    return 0


def finetune_arguments(f: argparse.ArgumentParser) -> None:
    f.add_argument("run", help=RUN_HELP)
    f.add_argument("data", nargs="?", default=None,
                   help=f"{LABELLED_HELP} (default fashion-mnist); for a run on signals, "
                        "labelled signals (uea:NAME, ucr:NAME, a .ts file, a .npz of X, y, "
                        "X_test, y_test, a folder of .csv files with class sub-folders, ...)")
    f.add_argument("--data", dest="data_option", default=None, metavar="DATA",
                   help="the same as DATA")
    f.add_argument("--labels", default=None, help="CSV of file,label")
    f.add_argument("--out", default=None, help="classifier folder (default RUN/classifier)")
    f.add_argument("--fraction", type=fraction, default=1.0,
                   help="keep this stratified share of the labelled training images, in (0, 1]")
    f.add_argument("--seed", type=seed_value, default=0)
    add_finetune_recipe(f)
    add_device_options(f)


def run_finetune(args: argparse.Namespace) -> int:
    import selfsight
    from selfsight.summaries import summary_lines

    if args.data and args.data_option and args.data != args.data_option:
        raise UserError(f"finetune: data given twice ({args.data} and --data "
                        f"{args.data_option}); give it once")
    data = args.data or args.data_option or "fashion-mnist"
    result = selfsight.finetune(args.run, data, labels=args.labels, out=args.out,
                                fraction=args.fraction, seed=args.seed,
                                recipe=finetune_recipe(args), **device_kwargs(args))
    print_lines(summary_lines(result))
    print(f"classifier: {args.out or f'{args.run}/classifier'}")
    return 0


def predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("classifier", help="classifier folder (RUN/classifier)")
    p.add_argument("images", help=f"{EVERY_IMAGE_HELP}; for a classifier on signals, a signal "
                                  "source (uea:NAME, a .npy/.npz/.csv/.ts file, a folder of "
                                  ".csv files)")
    p.add_argument("--out", required=True, help="CSV: file (series for signals), label, "
                                                "confidence, per-class")
    add_device_options(p)


def run_predict(args: argparse.Namespace) -> int:
    import selfsight

    summary = selfsight.predict(args.classifier, args.images, args.out, **device_kwargs(args))
    unit = "series" if is_signal_source(args.images) else "images"
    print(f"{summary.count} {unit} labelled, {summary.skipped_count} unreadable skipped: "
          + ", ".join(f"{c} {n}" for c, n in (summary.counts or {}).items()))
    print(f"written: {summary.out} (+ {summary.out}.json)")
    return 0
