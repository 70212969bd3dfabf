"""``selfsight`` command line: parse, call one public function, say where results went."""

from __future__ import annotations

import argparse
import sys
from typing import Any

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true")


def _key_values(pairs: list[str] | None, flag: str) -> dict[str, Any]:
    from selfsight.api import parse_value

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"{flag} expects key=value, got '{pair}'")
        out[key.replace("-", "_")] = parse_value(value)
    return out


def add_pretrain(sub: argparse._SubParsersAction) -> None:
    from selfsight.methods import list_methods

    p = sub.add_parser("pretrain", help="pretrain a backbone on unlabeled images")
    p.add_argument("data", nargs="?", default="fashion-mnist",
                   help="'fashion-mnist' or an image folder (searched recursively)")
    p.add_argument("--method", default="simclr", choices=sorted(list_methods()))
    p.add_argument("--backbone", default="resnet18", help="any timm model name")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=256, help="global batch size")
    p.add_argument("--out", default=None, help="run folder (default runs/METHOD-BACKBONE-TIME)")
    p.add_argument("--image-size", type=int, default=None, help="inference resolution")
    p.add_argument("--view-size", type=int, default=None, help="training crop size")
    p.add_argument("--time-budget", type=float, default=None, help="seconds of training")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--accelerator", default="auto", help="cpu, gpu, auto")
    p.add_argument("--devices", default="1", help="number of devices, or 'auto'")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp")
    p.add_argument("--precision", default="bf16-mixed", choices=PRECISIONS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=200, help="steps")
    p.add_argument("--knn-every", type=int, default=0, help="online kNN every N epochs")
    p.add_argument("--importance", type=float, default=0.0,
                   help="fraction of each batch drawn by the images' latest losses "
                        "(methods that report them: simclr, hierarchical)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="method option, e.g. --set temperature=0.1 (repeatable)")
    p.add_argument("--backbone-set", action="append", metavar="KEY=VALUE",
                   help="backbone option or timm kwarg, e.g. --backbone-set stem_stride=2")
    p.add_argument("--view-set", action="append", metavar="KEY=VALUE",
                   help="view option for every view, e.g. --view-set scale=0.4,1.0")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run_pretrain)


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("evaluate", help="kNN and linear probe of a run's backbone")
    e.add_argument("run", help="run folder with backbone.safetensors")
    e.add_argument("--data", default="fashion-mnist",
                   help="'fashion-mnist' or a labelled folder (class sub-folders, or --labels)")
    e.add_argument("--labels", default=None, help="CSV of file,label")
    e.add_argument("--no-linear", action="store_true")
    e.add_argument("--device", default=None)
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(handler=run_evaluate)


def add_list(sub: argparse._SubParsersAction) -> None:
    ls = sub.add_parser("list", help="list methods or backbones")
    ls.add_argument("what", choices=["methods", "backbones"])
    ls.set_defaults(handler=run_list)


# One (add_X, run_X) pair per command: a new command adds its pair and one entry here.
COMMANDS = [add_pretrain, add_evaluate, add_list]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfsight", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def summary_table(result: dict[str, Any]) -> str:
    """kNN and linear accuracy of the backbone beside the raw-pixel kNN baseline."""
    def cell(key: str) -> str:
        return f"{result[key]:.4f}" if key in result else "-"

    rows = [f"{'':<12}{'kNN k=20':>10}{'kNN k=200':>11}{'linear':>9}",
            f"{'backbone':<12}{cell('knn_k20'):>10}{cell('knn_k200'):>11}"
            f"{cell('linear_top1'):>9}"]
    if "pixels_knn_k200" in result:
        rows.append(f"{'raw pixels':<12}{cell('pixels_knn_k20'):>10}"
                    f"{cell('pixels_knn_k200'):>11}{'-':>9}")
    return "\n".join(rows)


def run_list(args: argparse.Namespace) -> int:
    import selfsight

    items = selfsight.list_methods() if args.what == "methods" else selfsight.list_backbones()
    width = max(map(len, items))
    for name, text in items.items():
        print(f"{name:<{width}}  {text}")
    if args.what == "backbones":
        print("(any other timm model name works too)")
    return 0


def run_pretrain(args: argparse.Namespace) -> int:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    import selfsight

    devices = args.devices if args.devices == "auto" else int(args.devices)
    run = selfsight.pretrain(
        args.data, args.method, args.backbone, args.out, args.epochs, args.batch_size,
        image_size=args.image_size, view_size=args.view_size,
        options=_key_values(args.set, "--set"),
        backbone_options=_key_values(args.backbone_set, "--backbone-set"),
        view_options=_key_values(args.view_set, "--view-set"),
        resume=args.resume, time_budget=args.time_budget, max_steps=args.max_steps,
        accelerator=args.accelerator, devices=devices, num_nodes=args.num_nodes,
        strategy=args.strategy, precision=args.precision, seed=args.seed,
        workers=args.workers, checkpoint_every=args.checkpoint_every,
        knn_every=args.knn_every, importance=args.importance,
        progress=not args.no_progress)
    if rank_zero_only.rank == 0:  # under DDP every process returns here
        print(f"run folder: {run}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    import selfsight

    result = selfsight.evaluate(args.run, args.data, labels=args.labels,
                                linear=not args.no_linear, device=args.device,
                                progress=not args.no_progress)
    print(summary_table(result))
    print(f"written to {args.run}/eval/")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, FileExistsError, TypeError) as err:
        print(f"selfsight: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
