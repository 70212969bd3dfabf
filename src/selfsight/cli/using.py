"""Verbs that put a backbone to use without labels, or ship it: ``anomaly``, ``segment``,
``embed``, ``export``."""

from __future__ import annotations

import argparse

from selfsight.cli.options import (
    EVERY_IMAGE_HELP,
    RUN_HELP,
    add_device_options,
    device_kwargs,
    key_values,
    non_negative_int,
    positive_int,
    print_lines,
)
from selfsight.signals.names import is_signal_source

EXPORT_FORMATS = ("onnx",)


def anomaly_arguments(a: argparse.ArgumentParser) -> None:
    verbs = a.add_subparsers(dest="anomaly_command", required=True)
    f = verbs.add_parser("fit", help="memory bank of a run's features on normal images")
    f.add_argument("run", help=RUN_HELP)
    f.add_argument("normal_images", help="folder of normal (defect-free) images; for a signal "
                                         "run, normal signals (.npy/.npz/.csv/.ts, uea:/ucr:/"
                                         "tsad:NAME; one long recording or many series)")
    f.add_argument("--out", default=None, help="model folder (default RUN/anomaly)")
    f.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="anomaly option, e.g. --set coreset=0.05 or --set quantile=0.995")
    s = verbs.add_parser("score", help="score images with a fitted model")
    s.add_argument("model_dir", help="folder written by `selfsight anomaly fit`")
    s.add_argument("images", help="folder of images to score; for a signal model, signals "
                                  "(every time step is scored)")
    s.add_argument("--out", default=None, help="results folder (default MODEL_DIR/scores)")
    s.add_argument("--overlays", type=non_negative_int, default=50,
                   help="overlay PNGs of the top N images (0: none); for signals, one "
                        "picture of the top min(N, 6) series")
    for p in (f, s):
        add_device_options(p)


def run_anomaly(args: argparse.Namespace) -> int:
    import selfsight
    from selfsight.summaries import summary_lines

    if args.anomaly_command == "fit":
        model = selfsight.anomaly_fit(args.run, args.normal_images, args.out,
                                      **device_kwargs(args), **key_values(args.set, "--set"))
        print(f"anomaly model: {model}")
        return 0
    result = selfsight.anomaly_score(args.model_dir, args.images, args.out,
                                     overlays=args.overlays, **device_kwargs(args))
    print_lines(summary_lines(result))
    out = args.out or f"{args.model_dir}/scores"
    shown = [f"{out}/overlays/"] if "step_scores" not in result else [
        f"{out}/step_scores.npy", *([result["picture"]] if result.get("picture") else [])]
    print(f"written to {out}/scores.json and {' and '.join(shown)}")
    return 0


def segment_arguments(g: argparse.ArgumentParser) -> None:
    g.add_argument("run", help="run folder with backbone.safetensors (ViT keys work best)")
    g.add_argument("images", help="image folder (searched recursively)")
    g.add_argument("--out", required=True, help="masks.json: COCO RLE per instance per file")
    g.add_argument("--overlays", default=None, help="folder for overlay PNGs (one per image)")
    g.add_argument("--method", default="auto", choices=("auto", "maskcut", "segmenter"),
                   help="auto: RUN/segmenter when trained, else MaskCut pseudo-masks")
    g.add_argument("--train-segmenter", action="store_true",
                   help="first train a Mask R-CNN on the folder's pseudo-masks (RUN/segmenter)")
    g.add_argument("--image-size", type=positive_int, default=None,
                   help="working size images are resized to (default: the run's image size)")
    g.add_argument("--feature-size", type=positive_int, default=None,
                   help="size for patch features (larger: a finer patch grid)")
    g.add_argument("--masks", type=positive_int, default=3, help="MaskCut cuts per image")
    g.add_argument("--tau", type=float, default=0.15, help="MaskCut affinity threshold")
    g.add_argument("--maskcut-set", action="append", metavar="KEY=VALUE",
                   help="other MaskCut option, e.g. --maskcut-set split_sigma=0.1 (touching "
                        "objects: center, exclude_found, split_ncut, split_sigma)")
    g.add_argument("--segmenter-set", action="append", metavar="KEY=VALUE",
                   help="segmenter option, e.g. --segmenter-set steps=2000")
    add_device_options(g)


def run_segment(args: argparse.Namespace) -> int:
    from selfsight.config import config_from_dict
    from selfsight.segment import MaskCutConfig, PseudoMaskConfig, SegmenterConfig, segment
    from selfsight.summaries import summary_lines

    cut = config_from_dict(MaskCutConfig, {"n_masks": args.masks, "tau": args.tau,
                                           **key_values(args.maskcut_set, "--maskcut-set")},
                           "--maskcut-set")
    masks = PseudoMaskConfig(size=args.feature_size, maskcut=cut)
    train = None
    if args.train_segmenter:
        train = config_from_dict(SegmenterConfig, key_values(args.segmenter_set,
                                                              "--segmenter-set"), "segmenter")
    result = segment(args.run, args.images, args.out, overlays=args.overlays,
                     image_size=args.image_size, masks=masks, method=args.method,
                     train_segmenter=train, **device_kwargs(args))
    (line,) = summary_lines(result)
    print(f"{line}; written: {args.out}"
          + (f", overlays in {args.overlays}" if args.overlays else ""))
    return 0


def embed_arguments(m: argparse.ArgumentParser) -> None:
    m.add_argument("run", help=RUN_HELP)
    m.add_argument("images", help=EVERY_IMAGE_HELP)
    m.add_argument("--out", required=True, help="FILE.npy (names in FILE.npy.json) or .parquet")
    m.add_argument("--batch-size", type=positive_int, default=512)
    add_device_options(m)


def run_embed(args: argparse.Namespace) -> int:
    from selfsight.export import embed

    summary = embed(args.run, args.images, args.out, batch_size=args.batch_size,
                    **device_kwargs(args))
    unit = "series" if is_signal_source(args.images) else "images"
    print(f"{summary.count} {unit} embedded ({summary.dim} dims), "
          f"{summary.skipped_count} unreadable skipped; written: {summary.out} "
          f"(+ {summary.out}.json)")
    return 0


def export_arguments(x: argparse.ArgumentParser) -> None:
    x.add_argument("run", help=RUN_HELP)
    x.add_argument("--format", default="onnx", choices=EXPORT_FORMATS)
    x.add_argument("--out", default=None, help="output folder (default RUN/export)")
    x.add_argument("--opset", type=positive_int, default=17)
    x.add_argument("--images", default=None,
                   help="real images (signals, for a signal run) for the parity check "
                        "(default: the run's training data)")
    x.add_argument("--float-input", action="store_true",
                   help="graph takes normalised float (B, C, S, S) instead of uint8 (B, H, W, C)")
    x.add_argument("--no-latency", action="store_true", help="skip the CPU latency measurement")


def run_export(args: argparse.Namespace) -> int:
    from selfsight.export import export_onnx
    from selfsight.summaries import summary_lines

    result = export_onnx(args.run, args.out, opset=args.opset, images=args.images,
                         preprocessing=not args.float_input, latency=not args.no_latency)
    print_lines(summary_lines(result))
    return 0
