"""Lighting robustness with per-image standardisation (the backbone option ``standardize``):
kNN accuracy under noise, blur, brightness and contrast at 5 severities, for each run as it was
trained and, where it was trained without it, with ``standardize`` switched on at evaluation
(same weights: the option adds none).

    python benchmarks/robustness_standardize.py --runs RUN_A RUN_B
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from selfsight import load_backbone
from selfsight.backbones import Backbone
from selfsight.data import load_eval_sets
from selfsight.eval import extract_features
from selfsight.eval.suite import knn_robustness


def with_standardize(backbone: Backbone) -> Backbone:
    switched = Backbone(replace(backbone.config, standardize=True))
    switched.load_state_dict(backbone.state_dict())
    return switched.eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--out", default="benchmarks/results/robustness_standardize")
    args = p.parse_args()
    rows = []
    for run in args.runs:
        trained = load_backbone(run)
        arms = [("as trained", trained)]
        if not trained.config.standardize:
            arms.append(("switched on at evaluation", with_standardize(trained)))
        cfg = trained.config
        train, test = load_eval_sets("fashion-mnist", cfg.image_size, cfg.in_chans)
        y_train = torch.tensor(train.labels).long()
        for arm, backbone in arms:
            train_f = extract_features(backbone, train.images, device="cpu", progress=False)
            result = knn_robustness(backbone, train_f, y_train, test, torch.device("cpu"))
            corrupted = result["corruptions"]
            rows.append({"run": run, "trained_standardized": cfg.standardize, "arm": arm,
                         "clean": result["clean"],
                         "mean_per_corruption": {n: round(float(np.mean(a)), 4)
                                                 for n, a in corrupted.items()},
                         **result})
            r = rows[-1]
            print(f"{run} [{'trained with' if cfg.standardize else 'trained without'}; {arm}]: "
                  f"clean {r['clean']:.4f}, mean corrupted {r['mean_corrupted']:.4f}; "
                  + ", ".join(f"{n} {v:.4f}" for n, v in r["mean_per_corruption"].items()),
                  flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows},
                                                indent=2))
    print(f"written to {out / 'result.json'}")


if __name__ == "__main__":
    main()
