"""Every method on Fashion-MNIST at the same wall-clock budget, one after another (PROTOCOL.md).

Each method runs in its own process (``pretrain_fashion_mnist.py``) so that its peak memory is its
own; a method whose result already exists is not rerun, so an interrupted table resumes. Adds the
same backbones untrained (the floor every method must beat by 5 points) and, for MAE, fine-tuning
from the pretrained and from a fresh backbone.

    python benchmarks/methods_fashion_mnist.py --budget 600
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

import selfsight
from selfsight.backbones import Backbone, backbone_config
from selfsight.data import load_eval_sets
from selfsight.eval import finetune
from selfsight.eval.extract import default_device
from selfsight.methods import get_method, list_methods

HERE = Path(__file__).parent
CNN, VIT = "resnet10_cpu", "vit_tiny_patch16_224"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=600)
    p.add_argument("--methods", nargs="*", default=sorted(list_methods()))
    p.add_argument("--view-size", type=int, default=20)
    p.add_argument("--cnn-backbone", default=CNN, help="backbone of the CNN methods")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--finetune-epochs", type=float, default=3)
    p.add_argument("--out", default="benchmarks/results/methods_fashion_mnist")
    p.add_argument("--parallel", action="store_true",
                   help="train all methods at once (a GPU shared alike for the same wall clock); "
                   "images/s is then each method's share, not its speed alone")
    return p.parse_args()


def backbone_for(method: str, args: argparse.Namespace) -> str:
    return VIT if get_method(method).requires_vit else args.cnn_backbone


def train_methods(args: argparse.Namespace, out: Path) -> None:
    """Each method without a result in its own process: one after another, or all at once."""
    jobs = {}
    for method in args.methods:
        if (out / method / "result.json").is_file():
            continue
        cmd = [sys.executable, str(HERE / "pretrain_fashion_mnist.py"), "--budget",
               str(args.budget), "--method", method, "--backbone", backbone_for(method, args),
               "--view-size", str(args.view_size), "--batch-size", str(args.batch_size),
               "--out", str(out / method)]
        print(" ".join(cmd), flush=True)
        if not args.parallel:
            subprocess.run(cmd, check=True)
            continue
        (out / method).mkdir(parents=True, exist_ok=True)
        with (out / f"{method}.log").open("w") as log:  # the child keeps its own handle
            jobs[method] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    failed = [method for method, job in jobs.items() if job.wait()]
    if failed:
        raise SystemExit(f"failed: {failed}; see {out}/METHOD.log")


def read_result(method: str, args: argparse.Namespace, out: Path) -> dict:
    report = json.loads((out / method / "result.json").read_text())
    return {**report["selfsight"], "peak_rss_mb": report["peak_rss_mb"],
            "backbone": backbone_for(method, args)}


def untrained(name: str, args: argparse.Namespace, out: Path) -> tuple[Backbone, dict]:
    run = out / f"untrained_{name}"
    torch.manual_seed(0)
    backbone = Backbone(backbone_config(name, 1, args.view_size, None))
    backbone.save(run)
    result_file = run / "eval" / "fashion-mnist.json"
    if result_file.is_file():
        return backbone, json.loads(result_file.read_text())
    return backbone, selfsight.evaluate(run, pixels=False, full=False, progress=False,
                                          device=str(default_device()))


def main() -> None:
    args = parse()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table: dict = {"budget_seconds": args.budget, "view_size": args.view_size,
                   "batch_size": args.batch_size,
                   "command": " ".join(sys.argv), "methods": {}, "untrained": {}}
    floors = {}
    for name in sorted({backbone_for(m, args) for m in args.methods}):
        _, floors[name] = untrained(name, args, out)
        table["untrained"][name] = floors[name]
    train_methods(args, out)
    for method in args.methods:
        row = read_result(method, args, out)
        floor = floors[row["backbone"]]
        row["knn_gain_over_untrained"] = round(row["knn_k200"] - floor["knn_k200"], 4)
        row["linear_gain_over_untrained"] = round(row["linear_top1"] - floor["linear_top1"], 4)
        table["methods"][method] = row
        (out / "table.json").write_text(json.dumps(table, indent=2))
    if "mae" in args.methods:
        table["mae_finetune"] = mae_finetune(args, out)
    (out / "table.json").write_text(json.dumps(table, indent=2))
    print_table(table)


def mae_finetune(args: argparse.Namespace, out: Path) -> dict:
    """Fine-tuning accuracy from MAE's backbone and from the same ViT untrained, same recipe."""
    train, test = load_eval_sets("fashion-mnist", 28, 1)
    result = {}
    for arm, backbone in (("mae", selfsight.load_backbone(out / "mae" / "selfsight")),
                          ("scratch", untrained(VIT, args, out)[0])):
        result[arm] = finetune(backbone, train.images, train.labels, test.images, test.labels,
                               epochs=args.finetune_epochs, device=default_device())
        print(arm, result[arm], flush=True)
    return result


def print_table(table: dict) -> None:
    print(f"\n{'method':<12} {'backbone':<22} {'img/s':>7} {'epochs':>6} {'kNN200':>7} "
          f"{'kNN20':>6} {'linear':>7} {'RSS MB':>7} {'+kNN':>6} {'+lin':>6}")
    for name, r in table["untrained"].items():
        print(f"{'untrained':<12} {name:<22} {'':>7} {'':>6} {r['knn_k200']:>7.4f} "
              f"{r['knn_k20']:>6.4f} {r['linear_top1']:>7.4f}")
    for method, r in table["methods"].items():
        print(f"{method:<12} {r['backbone']:<22} {r['images_per_sec']:>7.0f} {r['epochs']:>6.2f} "
              f"{r['knn_k200']:>7.4f} {r['knn_k20']:>6.4f} {r['linear_top1']:>7.4f} "
              f"{r['peak_rss_mb']:>7} {r['knn_gain_over_untrained']:>+6.3f} "
              f"{r['linear_gain_over_untrained']:>+6.3f}")
    for arm, r in table.get("mae_finetune", {}).items():
        print(f"fine-tune from {arm}: top-1 {r['finetune_top1']:.4f} "
              f"({r['finetune_epochs']} epochs)")


if __name__ == "__main__":
    main()
