"""Embedding drift on Fashion-MNIST: does ``drift_score`` (unbiased MMD^2 with a permutation
test) stay quiet on a resample and speak up on real changes?

Cases, in a pretrained run's feature space: two random halves of the test split (no drift),
train vs test (same distribution, different images), test vs test under a brightness shift
(severity 1 and 3), and test vs a class-imbalanced test subset (3 of 10 classes doubled).

    python benchmarks/drift_fashion_mnist.py  # --run: default, the 10-minute SimCLR run
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from selfsight import load_backbone
from selfsight.data import load_eval_sets
from selfsight.eval import extract_features
from selfsight.eval.drift import drift_score
from selfsight.eval.robustness import corrupt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="benchmarks/results/methods_fashion_mnist/simclr/selfsight")
    p.add_argument("--items", type=int, default=2000, help="images per side")
    p.add_argument("--out", default="benchmarks/results/drift_fashion_mnist")
    args = p.parse_args()
    backbone = load_backbone(args.run)
    cfg = backbone.config
    train, test = load_eval_sets("fashion-mnist", cfg.image_size, cfg.in_chans)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(test))
    half_a, half_b = order[:len(order) // 2], order[len(order) // 2:]
    labels_b = test.labels[half_b]
    weights = np.where(np.isin(labels_b, [0, 1, 2]), 2.0, 1.0)  # three classes twice as common
    imbalanced = rng.choice(half_b, size=len(half_b), p=weights / weights.sum())

    def feats(images: np.ndarray):
        return extract_features(backbone, images, progress=False)

    reference = feats(test.images[half_a])
    cases = {
        "test half vs other half (no drift)": feats(test.images[half_b]),
        "test half vs training images (no drift)": feats(train.images[rng.permutation(
            len(train))[:len(half_b)]]),
        "brightness +0.1 (severity 1)": feats(corrupt(test.images[half_b], "brightness", 1)),
        "brightness +0.3 (severity 3)": feats(corrupt(test.images[half_b], "brightness", 3)),
        "classes 0-2 twice as common": feats(test.images[np.sort(imbalanced)]),
    }
    rows = {name: drift_score(reference, current, max_items=args.items)
            for name, current in cases.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps({"command": " ".join(sys.argv),
                                                 "run": args.run, "cases": rows}, indent=2))
    print(f"{'case':<42}{'MMD^2':>10}{'null 95%':>10}{'p':>8}")
    for name, r in rows.items():
        print(f"{name:<42}{r['mmd2']:>10.5f}{r['null_mmd2_95']:>10.5f}{r['p_value']:>8.3f}")


if __name__ == "__main__":
    main()
