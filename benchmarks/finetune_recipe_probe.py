"""How much does the fine-tuning recipe move the 1%-label A/B? Both arms (the pretrained
backbone and the same architecture from scratch) fine-tuned on the same stratified 1% subset
with each learning rate and step count, scored on a validation split of 10,000 other training
images (the test split is not touched, so a recipe could be chosen from this table).

    python benchmarks/finetune_recipe_probe.py --run RUN --recipes 1e-3:200 3e-3:200 1e-3:400
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from selfsight import load_backbone
from selfsight.backbones import Backbone
from selfsight.data import load_eval_sets
from selfsight.eval.extract import default_device
from selfsight.eval.finetune import accuracy, train_classifier
from selfsight.eval.label_efficiency import stratified_subset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True)
    p.add_argument("--fraction", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--recipes", nargs="+", default=["1e-3:200", "3e-4:200", "3e-3:200",
                                                    "1e-3:400"], metavar="LR:STEPS")
    p.add_argument("--out", default="benchmarks/results/finetune_recipe_probe")
    args = p.parse_args()
    backbone = load_backbone(args.run)
    train, _ = load_eval_sets("fashion-mnist", backbone.config.image_size,
                              backbone.config.in_chans)
    index = stratified_subset(train.labels, args.fraction, args.seed)
    rest = np.setdiff1d(np.arange(len(train)), index)
    val = np.sort(np.random.default_rng(args.seed).choice(rest, 10000, replace=False))
    device = default_device()
    rows = []
    for recipe in args.recipes:
        lr, steps = float(recipe.split(":")[0]), int(recipe.split(":")[1])
        row = {"lr": lr, "steps": steps}
        for arm in ("pretrained", "scratch"):
            torch.manual_seed(args.seed)
            start = backbone if arm == "pretrained" else Backbone(backbone.config)
            model = train_classifier(start, train.images[index], train.labels[index], 10, steps,
                                     lr=lr, seed=args.seed, device=device, progress=False)
            row[arm] = round(accuracy(model, train.images[val], train.labels[val], device), 4)
        row["gap"] = round(row["pretrained"] - row["scratch"], 4)
        rows.append(row)
        print(f"lr {lr:g}, {steps} steps: pretrained {row['pretrained']:.4f}, scratch "
              f"{row['scratch']:.4f}, gap {100 * row['gap']:+.1f} points", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(
        {"command": " ".join(sys.argv), "run": args.run, "fraction": args.fraction,
         "labelled": len(index), "validation": len(val), "seed": args.seed, "rows": rows},
        indent=2))
    print(f"written to {out / 'result.json'}")


if __name__ == "__main__":
    main()
