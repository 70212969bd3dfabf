"""A quick probe of a ViT recipe on Fashion-MNIST: a few hundred steps of DINO or MAE on a
4-block ViT-Tiny (4-px patches at 28 px), then kNN (k=200, T=0.1) on seeded subsets of 10,000
training and 2,000 test images, with the class token and with mean-pooled patch tokens, beside
the same ViT untrained. Small enough to compare recipe settings on one thread in minutes.

    OMP_NUM_THREADS=1 python benchmarks/vit_recipe_probe.py --method mae --steps 300
    OMP_NUM_THREADS=1 python benchmarks/vit_recipe_probe.py --method mae --set mask_ratio=0.5
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

import selfsight
from selfsight.backbones import Backbone, backbone_config, load_backbone
from selfsight.cli import key_values
from selfsight.data import load_images
from selfsight.device import cpu_facts
from selfsight.eval import extract_features, knn_accuracy

BACKBONE = "vit_tiny_patch16_224"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="mae", choices=["dino", "mae"])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default=None, help="JSON result (default: printed only)")
    return p.parse_args()


def knn(backbone: Backbone) -> dict[str, float]:
    """kNN k=200 on the seeded subsets, class token and mean-pooled patch tokens."""
    rng = np.random.default_rng(0)
    sets = []
    for split, n in (("train", 10_000), ("test", 2_000)):
        data = load_images("fashion-mnist", split=split, progress=False)
        sets.append(data.subset(np.sort(rng.permutation(len(data))[:n])))
    result = {}
    for pool in ("token", "avg"):
        backbone.model.global_pool = pool
        bank, test = (extract_features(backbone, s.images, progress=False) for s in sets)
        result[pool] = round(knn_accuracy(bank, torch.tensor(sets[0].labels), test,
                                          torch.tensor(sets[1].labels), ks=(200,))["knn_k200"], 4)
    return result


def main() -> None:
    args = parse()
    options = {"depth": 4}
    torch.manual_seed(0)
    untrained = knn(Backbone(backbone_config(BACKBONE, 1, 28, options)))
    with tempfile.TemporaryDirectory() as tmp:
        run = selfsight.pretrain("fashion-mnist", args.method, BACKBONE, out=Path(tmp) / "run",
                                 max_steps=args.steps, batch_size=args.batch_size,
                                 options=key_values(args.set, "--set"),
                                 backbone_options=options, progress=False)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").open()]
        trained = knn(load_backbone(run))
    result = {"method": args.method, "steps": args.steps, "batch_size": args.batch_size,
              "options": args.set, "final_loss": round(rows[-1]["loss"], 4),
              "cpu_seconds": rows[-1]["cpu_seconds"], "knn_k200": trained,
              "untrained_knn_k200": untrained, "threads": torch.get_num_threads(),
              "cpu": cpu_facts()}
    print(json.dumps(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
