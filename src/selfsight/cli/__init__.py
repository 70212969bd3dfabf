"""``selfsight`` command line: one table of verbs; each parses its flags, calls one public
function and says where the results went. Nothing here imports torch until a verb runs.

Adding a verb is one ``Verb`` entry below plus its ``*_arguments`` and ``run_*`` functions.
A ``UserError`` (bad input: a file, a folder, an option) prints one line and exits 2; any other
exception is a bug and keeps its traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

from selfsight.cli import catalogue, evaluation, training, using
from selfsight.cli.options import key_values
from selfsight.errors import RunInterrupted, UserError


@dataclass(frozen=True)
class Verb:
    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


VERBS = (
    Verb("pretrain", "pretrain a backbone on unlabeled images",
         training.pretrain_arguments, training.run_pretrain),
    Verb("evaluate", "kNN and linear probe of a run's backbone",
         evaluation.evaluate_arguments, evaluation.run_evaluate),
    Verb("drift", "embedding drift between two image (or signal) sets",
         evaluation.drift_arguments, evaluation.run_drift),
    Verb("list", "list methods, backbones or small-image recipes",
         catalogue.list_arguments, catalogue.run_list),
    Verb("anomaly", "find defects: fit on normal images, score new ones",
         using.anomaly_arguments, using.run_anomaly),
    Verb("export", "export a run's backbone (ONNX) with a parity check",
         using.export_arguments, using.run_export),
    Verb("embed", "L2-normalised embeddings of every image, with file names",
         using.embed_arguments, using.run_embed),
    Verb("distill", "distil a run's backbone into a small fast student",
         training.distill_arguments, training.run_distill),
    Verb("report", "one self-contained HTML page (and PNGs) about a run",
         evaluation.report_arguments, evaluation.run_report),
    Verb("segment", "instance masks for a folder of images, no labels needed",
         using.segment_arguments, using.run_segment),
    Verb("finetune", "a classifier for your labels: fine-tune a run's backbone",
         training.finetune_arguments, training.run_finetune),
    Verb("predict", "label images with a classifier from `selfsight finetune`",
         training.predict_arguments, training.run_predict),
    Verb("explore", "what is in unlabelled images: clusters, typical images, near-duplicates",
         evaluation.explore_arguments, evaluation.run_explore),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selfsight", description="Self-supervised representations from unlabelled images: "
        "pretrain, measure, explore, find anomalies and instances, distil, export.")
    sub = parser.add_subparsers(dest="command", required=True)
    for verb in VERBS:
        verb.arguments(sub.add_parser(verb.name, help=verb.help))
        sub.choices[verb.name].set_defaults(handler=verb.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as err:
        print(f"selfsight: error: {err}", file=sys.stderr)
        return 2
    except RunInterrupted as err:
        print(f"selfsight: {err}", file=sys.stderr)
        return 128 + err.signum


# For the benchmark scripts, which parse --set style flags the same way.
__all__ = ["VERBS", "Verb", "build_parser", "key_values", "main"]
