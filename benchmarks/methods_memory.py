"""Peak training memory of each method: a fresh process per method runs a few real training steps
(views, forward, backward, optimizer step; bf16 autocast, 20-px views, Fashion-MNIST)
and reports its peak resident set, so evaluation buffers do not mask the difference.

    python benchmarks/methods_memory.py --cnn-backbone resnet18_cpu_tiny --batch 512
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path


def measure(method: str, backbone: str, batch: int, steps: int) -> dict:
    import torch

    from selfsight.backbones import backbone_config
    from selfsight.data import load_fashion_mnist
    from selfsight.methods import get_method

    images = torch.from_numpy(load_fashion_mnist("train").images[:batch]).permute(0, 3, 1, 2)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cfg = backbone_config(backbone, 1, 20, None)
    cls = get_method(method)
    model = cls(backbone=cfg, config=cls.default_config(cfg), views=cls.default_views(20),
                batch_size=batch)
    optimizer = model.configure_optimizers()
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _ = model.compute_loss(model.make_views(images.contiguous()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.on_train_batch_end(None, None, 0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"method": method, "backbone": backbone, "batch": batch,
            "peak_rss_mb": round(peak), "training_rss_mb": round(peak - before),
            "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--one", nargs=2, metavar=("METHOD", "BACKBONE"))
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--cnn-backbone", default="resnet18_cpu", help="backbone of the CNN methods")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/methods_memory.json")
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one, args.batch, args.steps)))
        return
    from selfsight.methods import get_method, list_methods

    rows = []
    for method in sorted(list_methods()):
        backbone = "vit_tiny_patch16_224" if get_method(method).requires_vit else args.cnn_backbone
        out = subprocess.run([sys.executable, __file__, "--one", method, backbone, "--batch",
                              str(args.batch), "--steps", str(args.steps)],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
