"""Why DINO on a small ViT stays at loss ln K on the Fashion-MNIST scenes (issue 6 diagnosis).

At initialisation: how alike the ViT's pooled features of different scenes are, and the entropy
of the centred, sharpened teacher distribution, with and without batch norm in the head's MLP.
Then (``--steps``) a short DINO run of each head on the same scenes, printing the loss every 10
steps; a loss that stays at ln K means a uniform teacher and student (no signal).

    python benchmarks/dino_vit_start.py --steps 200
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import selfsight
from selfsight.backbones import Backbone, backbone_config
from selfsight.data.scenes import make_scenes
from selfsight.nn.heads import DINOHead

# The ViT and DINO options of segment_scenes.py.
BACKBONE = {"patch_size": 8, "depth": 6}
OPTIONS = {"out_dim": 4096, "hidden_dim": 1024, "ema_momentum": 0.99}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=512)
    p.add_argument("--steps", type=int, default=0, help="short DINO runs per head (0: none)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", default=None, help="JSON file")
    return p.parse_args()


def mean_cosine(x: torch.Tensor) -> float:
    x = F.normalize(x.float(), dim=1)
    return float((x @ x.T).mean())


@torch.no_grad()
def at_init(images: np.ndarray, batch_norm: bool) -> dict:
    x = torch.from_numpy(images[:128, None].astype(np.float32) / 255)
    x = F.interpolate((x - 0.449) / 0.226, size=64, mode="bilinear")
    torch.manual_seed(0)
    backbone = Backbone(backbone_config("vit_tiny_patch16_224", 1, 64, BACKBONE))
    head = DINOHead(backbone.dim, OPTIONS["out_dim"], OPTIONS["hidden_dim"], 256,
                    batch_norm=batch_norm).train()  # batch statistics, as in training
    features = backbone(x)
    logits = head(features)
    centred = logits - logits.mean(0, keepdim=True)
    result = {"features_mean_cosine": mean_cosine(features),
              "bottleneck_mean_cosine": mean_cosine(head.mlp(features))}
    for temp in (0.04, 0.07):
        p = torch.softmax(centred / temp, dim=1)
        result[f"teacher_entropy_t{temp}"] = float(-(p * p.clamp_min(1e-12).log()).sum(1).mean())
    return result


def short_run(images: np.ndarray, batch_norm: bool, steps: int, batch_size: int) -> list:
    with tempfile.TemporaryDirectory() as out:
        selfsight.pretrain(images[..., None], "dino", "vit_tiny_patch16_224", Path(out) / "run",
                           batch_size=batch_size, image_size=96, view_size=64,
                           options={**OPTIONS, "head_batch_norm": batch_norm},
                           backbone_options=BACKBONE, max_steps=steps, log_every=10,
                           progress=False, epochs=100_000)
        lines = (Path(out) / "run" / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], round(r["loss"], 4)) for r in map(json.loads, lines) if "loss" in r]


def main() -> None:
    args = parse()
    images = np.stack([scene.image for scene in make_scenes(args.scenes, "train", seed=0)])
    report: dict = {"command": " ".join(sys.argv), "ln_K": math.log(OPTIONS["out_dim"])}
    for batch_norm in (False, True):
        key = "head_batch_norm" if batch_norm else "paper_head"
        report[key] = {"at_init": at_init(images, batch_norm)}
        print(key, json.dumps(report[key]["at_init"]), flush=True)
        if args.steps:
            losses = short_run(images, batch_norm, args.steps, args.batch_size)
            report[key]["losses"] = losses
            print(key, "loss by step:", losses, flush=True)
    print(f"ln K = {report['ln_K']:.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
