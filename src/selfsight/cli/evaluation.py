"""Verbs that measure and show a backbone: ``evaluate``, ``explore``, ``drift``, ``report``."""

from __future__ import annotations

import argparse

from selfsight.cli.options import (
    EVERY_IMAGE_HELP,
    LABELLED_HELP,
    RUN_HELP,
    add_device_options,
    add_finetune_recipe,
    at_least_two,
    device_kwargs,
    finetune_recipe,
    fraction,
    non_negative_int,
    positive_int,
    print_lines,
    section_sizes,
)


def evaluate_arguments(e: argparse.ArgumentParser) -> None:
    e.add_argument("run", help=RUN_HELP)
    e.add_argument("--data", default="fashion-mnist",
                   help=f"{LABELLED_HELP}; for a run on signals, labelled signals (uea:NAME, "
                        "ucr:NAME, a .ts file, a .npz of X, y, X_test, y_test, ...)")
    e.add_argument("--labels", default=None, help="CSV of file,label")
    e.add_argument("--no-linear", action="store_true")
    e.add_argument("--quick", action="store_true",
                   help="kNN and linear probe only (no sweep, few-shot, clustering, robustness)")
    e.add_argument("--all-images", action="store_true",
                   help="robustness and clustering on every image (default: seeded random "
                        "subsamples of 2,000 test images and 10,000 images)")
    e.add_argument("--label-fractions", type=fraction, nargs="+", default=None, metavar="F",
                   help="label-efficiency A/B: fine-tune vs scratch on these label fractions, "
                        "each in (0, 1]")
    e.add_argument("--seeds", type=positive_int, default=3, help="seeds per label fraction")
    add_finetune_recipe(e)
    add_device_options(e)


def run_evaluate(args: argparse.Namespace) -> int:
    import selfsight
    from selfsight.summaries import summary_lines

    result = selfsight.evaluate(
        args.run, args.data, labels=args.labels, linear=not args.no_linear, full=not args.quick,
        label_fractions=args.label_fractions, seeds=tuple(range(args.seeds)),
        recipe=finetune_recipe(args), sizes=section_sizes(args.all_images),
        **device_kwargs(args))
    print_lines(summary_lines(result))
    print(f"written to {args.run}/eval/")
    return 0


def explore_arguments(x: argparse.ArgumentParser) -> None:
    x.add_argument("run", help=RUN_HELP)
    x.add_argument("images", help=EVERY_IMAGE_HELP)
    x.add_argument("--clusters", type=at_least_two, default=None,
                   help="number of clusters, >= 2 (default: chosen by the silhouette)")
    x.add_argument("--max-clusters", type=at_least_two, default=20,
                   help="the silhouette choice tries 2 to this many clusters")
    x.add_argument("--suggest", type=non_negative_int, default=0, metavar="N",
                   help="also pick the N images to label first (TypiClust; 0, the default: "
                        "none)")
    add_device_options(x)


def run_explore(args: argparse.Namespace) -> int:
    import selfsight
    from selfsight.run_folder import RunFolder
    from selfsight.summaries import summary_lines

    result = selfsight.explore(args.run, args.images, args.clusters, args.max_clusters,
                               args.suggest, **device_kwargs(args))
    print_lines(summary_lines(result))
    run = RunFolder(args.run)
    print(f"written to {run.evaluation(args.images, '_explore.json')} and "
          f"{run.evaluation(args.images, '_clusters.csv').name}; "
          f"`selfsight report {args.run}` draws them")
    return 0


def drift_arguments(d: argparse.ArgumentParser) -> None:
    d.add_argument("run", help=RUN_HELP)
    d.add_argument("reference", help="the earlier images (folder, or 'fashion-mnist'); for a "
                                     "signal run, signals (.npy/.npz/.csv/.ts, uea:/ucr:NAME)")
    d.add_argument("current", help="the images (or signals) to compare with them")
    d.add_argument("--permutations", type=positive_int, default=200,
                   help="permutations of the significance test")
    add_device_options(d)


def run_drift(args: argparse.Namespace) -> int:
    import selfsight
    from selfsight.run_folder import RunFolder
    from selfsight.summaries import summary_lines

    result = selfsight.drift(args.run, args.reference, args.current, args.permutations,
                             **device_kwargs(args))
    print_lines(summary_lines(result))
    print(f"written to {RunFolder(args.run).drift}")
    return 0


def report_arguments(r: argparse.ArgumentParser) -> None:
    r.add_argument("run", help="run folder (metrics.jsonl, eval/*.json from selfsight evaluate)")
    r.add_argument("--out", default=None, help="folder for index.html (default RUN/report)")
    r.add_argument("--no-progress", action="store_true")


def run_report(args: argparse.Namespace) -> int:
    from selfsight.reports import report

    page = report(args.run, args.out, progress=not args.no_progress)
    print(f"report written to {page}")
    return 0
