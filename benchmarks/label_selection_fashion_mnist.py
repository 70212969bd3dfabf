"""Which images to label: TypiClust picks against images drawn at random, for a few label budgets
on Fashion-MNIST. The picks are made on the run's features of the 60,000 training images (labels
unseen); then a linear probe on the frozen features, and optionally fine-tuning the backbone
(the A/B recipe at a fixed 200 steps: too few labels to hold any out), learn from the picked
images' labels and are scored on the 10,000 test images. Also: how many of the 10 classes the
picks cover.

    python benchmarks/label_selection_fashion_mnist.py --run RUN --budgets 10 20 50 100 600
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from selfsight import load_backbone
from selfsight.data import load_eval_sets
from selfsight.eval import extract_features, linear_probe
from selfsight.eval.extract import default_device
from selfsight.eval.finetune import accuracy
from selfsight.eval.label_efficiency import FinetuneRecipe
from selfsight.label_selection import typical_picks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True)
    p.add_argument("--budgets", type=int, nargs="+", default=[10, 20, 50, 100, 600])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--finetune-steps", type=int, default=200, help="0: linear probe only")
    p.add_argument("--out", default="benchmarks/results/label_selection_fashion_mnist")
    args = p.parse_args()
    started = time.perf_counter()
    backbone = load_backbone(args.run)
    device = default_device()
    train, test = load_eval_sets("fashion-mnist", backbone.config.image_size,
                                 backbone.config.in_chans)
    train_f = extract_features(backbone, train.images, device=device)
    test_f = extract_features(backbone, test.images, device=device)
    y_test = torch.tensor(np.asarray(test.labels))
    recipe = FinetuneRecipe()
    rows = []
    for budget in args.budgets:
        for seed in range(args.seeds):
            chosen = {"random": np.sort(np.random.default_rng(seed).choice(
                len(train), budget, replace=False))}
            tick = time.perf_counter()
            chosen["typiclust"] = np.sort(typical_picks(train_f.numpy(), budget, seed)[0])
            pick_seconds = round(time.perf_counter() - tick, 1)
            for strategy, index in chosen.items():
                labels = np.asarray(train.labels[index])
                row = {"budget": budget, "seed": seed, "strategy": strategy,
                       "classes_covered": len(np.unique(labels)),
                       "linear": round(linear_probe(train_f[index], torch.tensor(labels),
                                                    test_f, y_test)["linear_top1"], 4)}
                if strategy == "typiclust":
                    row["pick_seconds"] = pick_seconds
                if args.finetune_steps:
                    model = recipe.train(backbone, train.images[index], labels, 10,
                                         args.finetune_steps, seed, device, progress=False)
                    row["finetune"] = round(accuracy(model, test.images, test.labels, device), 4)
                rows.append(row)
                print(json.dumps(row), flush=True)
    summary = {}
    for budget in args.budgets:
        for strategy in ("random", "typiclust"):
            picked = [r for r in rows if r["budget"] == budget and r["strategy"] == strategy]
            summary[f"{budget}/{strategy}"] = {
                key: [round(float(np.mean([r[key] for r in picked])), 4),
                      round(float(np.std([r[key] for r in picked], ddof=1)), 4)
                      if len(picked) > 1 else 0.0]
                for key in ("classes_covered", "linear", "finetune") if key in picked[0]}
    print(f"{'labels':>7} {'strategy':>10} {'classes':>8} {'linear':>15} {'fine-tuned':>15}")
    for key, stats in summary.items():
        budget, strategy = key.split("/")
        cells = [f"{stats[k][0]:.4f} ± {stats[k][1]:.3f}" if k in stats else "-"
                 for k in ("linear", "finetune")]
        print(f"{budget:>7} {strategy:>10} {stats['classes_covered'][0]:>8.1f} "
              f"{cells[0]:>15} {cells[1]:>15}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(
        {"command": " ".join(sys.argv), "run": args.run, "seeds": args.seeds,
         "finetune_steps": args.finetune_steps, "summary (mean, std over seeds)": summary,
         "rows": rows, "seconds": round(time.perf_counter() - started, 1)}, indent=2))
    print(f"written to {out / 'result.json'}")


if __name__ == "__main__":
    main()
