"""The full evaluation of one pretrained run on Fashion-MNIST (issue: what is the representation
worth): kNN and linear probe, kNN sweep, few-shot, clustering, robustness, coverage,
near-duplicates, inference cost, and the label-efficiency A/B (fine-tuning the pretrained
backbone vs the same architecture from scratch, same recipe, each arm's steps chosen on a
validation hold-out of its labels, 3 seeds per fraction).

    python benchmarks/evaluate_fashion_mnist.py --run benchmarks/results/simclr_30min/selfsight

Writes RUN/eval/fashion-mnist*.json and benchmarks/results/evaluate_fashion_mnist/result.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

import selfsight
from selfsight.cli import add_step_ladder, label_efficiency_table, summary_table
from selfsight.eval.label_efficiency import FinetuneRecipe


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run", default="benchmarks/results/simclr_30min/selfsight")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--finetune-epochs", type=float, default=2.0)
    p.add_argument("--min-steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-3)
    add_step_ladder(p)
    p.add_argument("--distill-epochs", type=float, default=0.0,
                   help="SimCLRv2 distillation arms: epochs over the unlabelled images")
    p.add_argument("--label-only", action="store_true",
                   help="the label-efficiency study alone (no probes, clustering, robustness)")
    p.add_argument("--out", default="benchmarks/results/evaluate_fashion_mnist")
    return p.parse_args()


def main() -> None:
    args = parse()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.monotonic()
    result = selfsight.evaluate(
        args.run, full=not args.label_only, label_fractions=tuple(args.fractions),
        seeds=tuple(range(args.seeds)),
        recipe=FinetuneRecipe(epochs=args.finetune_epochs, min_steps=args.min_steps,
                              lr=args.lr, step_ladder=tuple(args.step_ladder),
                              validation_fraction=args.validation_fraction,
                              distill_epochs=args.distill_epochs),
        device=device)
    report = {"command": " ".join(sys.argv), "device": device, "torch": str(torch.__version__),
              "cpu": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads(),
              "wall_seconds": round(time.monotonic() - started, 1), **result}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(report, indent=2))
    print(summary_table(result))
    print(label_efficiency_table(result["label_efficiency"]))
    print(f"written to {out / 'result.json'} and {args.run}/eval/")


if __name__ == "__main__":
    main()
