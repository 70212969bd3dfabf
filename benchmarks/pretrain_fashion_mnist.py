"""Pretrain on Fashion-MNIST for a fixed wall-clock budget, then measure (PROTOCOL.md).

Prints and writes JSON: images/s, epochs completed, final kNN (k=200, k=20), linear probe, and the
raw-pixel kNN computed in the same run. ``--compare lightly`` also trains lightly's own SimCLR
recipe on the same backbone and budget and evaluates it identically.

    python benchmarks/pretrain_fashion_mnist.py --budget 600 --compare lightly
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch
import yaml

import selfsight
from selfsight.api import pixel_knn
from selfsight.backbones import backbone_config
from selfsight.cli import key_values
from selfsight.data import load_eval_sets
from selfsight.device import cpu_facts

# The default CPU recipe (see BENCHMARKS.md for why).
DEFAULTS = {"method": "simclr", "backbone": "resnet10_cpu", "batch_size": 512,
            "view_size": 20}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=600, help="training seconds per arm")
    p.add_argument("--method", default=DEFAULTS["method"])
    p.add_argument("--backbone", default=DEFAULTS["backbone"])
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    p.add_argument("--view-size", type=int, default=DEFAULTS["view_size"])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--backbone-set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--knn-every", type=int, default=0, help="online kNN every N epochs")
    p.add_argument("--importance", type=float, default=0.0)
    p.add_argument("--compare", choices=["lightly"], default=None)
    p.add_argument("--precision", default="auto", help="both arms (auto: from the hardware)")
    p.add_argument("--lightly-workers", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/pretrain_fashion_mnist")
    return p.parse_args()


def selfsight_arm(args: argparse.Namespace, out: Path, device: str) -> dict:
    run = out / "selfsight"
    if run.exists():
        raise SystemExit(f"{run} exists: choose another --out")
    started = time.monotonic()
    selfsight.pretrain("fashion-mnist", args.method, args.backbone, run, epochs=100_000,
                       batch_size=args.batch_size, view_size=args.view_size,
                       options=key_values(args.set, "--set"),
                       backbone_options=key_values(args.backbone_set, "--backbone-set"),
                       time_budget=args.budget, knn_every=args.knn_every,
                       importance=args.importance, precision=args.precision,
                       accelerator="gpu" if device == "cuda" else "cpu")
    wall = time.monotonic() - started
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    last = records[-1]
    result = {"images_seen": last["images_seen"], "seconds": last["elapsed"],
              "images_per_sec": round(last["images_seen"] / last["elapsed"], 1),
              "epochs": round(last["images_seen"] / 60_000, 3), "steps": last["step"],
              "final_loss": last["loss"], "wall_seconds_with_setup": round(wall, 1),
              "precision": yaml.safe_load((run / "config.yaml").read_text())["train"]["precision"]}
    result.update(selfsight.evaluate(run, progress=False, device=device, pixels=False,
                                     full=False))
    return result


def lightly_arm(args: argparse.Namespace, out: Path, device: str) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    from lightly_recipe import train_lightly
    from selfsight.data import load_fashion_mnist

    train = load_fashion_mnist("train")
    cfg = backbone_config(args.backbone, 1, 28, key_values(args.backbone_set, "--backbone-set"))
    result = train_lightly(train.images, cfg, args.budget, args.batch_size, out / "lightly",
                           workers=args.lightly_workers, device=device, precision=args.precision)
    result.update(selfsight.evaluate(out / "lightly", progress=False, device=device, full=False,
                                     pixels=False))
    return result


def main() -> None:
    args = parse()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train, test = load_eval_sets("fashion-mnist", 28, 1)
    report: dict = {
        "command": " ".join(sys.argv), "device": device, "torch": str(torch.__version__),
        "cpu": cpu_facts(), "threads": torch.get_num_threads(),
        "budget_seconds": args.budget, "batch_size": args.batch_size,
        "pixels": pixel_knn(train, test),
    }
    report["selfsight"] = selfsight_arm(args, out, device)
    if args.compare == "lightly":
        report["lightly"] = lightly_arm(args, out, device)
        s, lt = report["selfsight"], report["lightly"]
        report["throughput_ratio"] = round(s["images_per_sec"] / lt["images_per_sec"], 2)
        report["knn_k200_difference"] = round(s["knn_k200"] - lt["knn_k200"], 4)
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    (out / "result.json").write_text(json.dumps(report, indent=2))
    print_table(report)
    print(f"written to {out / 'result.json'}")


def print_table(report: dict) -> None:
    px = report["pixels"]
    cpu = report["cpu"]
    print(f"\nFashion-MNIST, {report['budget_seconds']:.0f} s budget on {report['device']}, "
          f"batch {report['batch_size']}; CPU {cpu['model']} ({', '.join(cpu['flags'])}; "
          f"native bf16: {cpu['native_bf16']}; caps {cpu['isa_caps'] or 'none'})")
    print(f"{'arm':<10} {'img/s':>8} {'epochs':>7} {'kNN k200':>9} {'kNN k20':>8} {'linear':>7}"
          f" {'precision':>10}")
    print(f"{'pixels':<10} {'':>8} {'':>7} {px['knn_k200']:>9.4f} {px['knn_k20']:>8.4f}")
    for arm in ("selfsight", "lightly"):
        if arm in report:
            r = report[arm]
            print(f"{arm:<10} {r['images_per_sec']:>8.1f} {r['epochs']:>7.2f} "
                  f"{r['knn_k200']:>9.4f} {r['knn_k20']:>8.4f} {r['linear_top1']:>7.4f} "
                  f"{r['precision']:>10}")
    if "throughput_ratio" in report:
        print(f"throughput ratio {report['throughput_ratio']}x, "
              f"kNN k200 difference {report['knn_k200_difference']:+.4f}")


if __name__ == "__main__":
    main()
