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
from selfsight.cli.options import add_finetune_recipe, finetune_recipe
from selfsight.summaries import summary_lines


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--run", default="benchmarks/results/simclr_30min/selfsight")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    p.add_argument("--seeds", type=int, default=3)
    add_finetune_recipe(p)
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
        recipe=finetune_recipe(args),
        device=device)
    report = {"command": " ".join(sys.argv), "device": device, "torch": str(torch.__version__),
              "cpu": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads(),
              "wall_seconds": round(time.monotonic() - started, 1), **result}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(report, indent=2))
    print("\n".join(summary_lines(result)))
    print(f"written to {out / 'result.json'} and {args.run}/eval/")


if __name__ == "__main__":
    main()
