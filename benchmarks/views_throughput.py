"""Batched device-side views against per-sample PIL transforms in a DataLoader.

Same recipe both ways (SimCLR's small-image preset: crop, flip, jitter, grayscale, two views),
same Fashion-MNIST images, same batch size; only the view pipeline differs. Images/s counts an
image once for its two views.

    python benchmarks/views_throughput.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from selfsight.backbones import default_stats
from selfsight.data import load_fashion_mnist
from selfsight.train.loader import StepBatchSampler, training_loader
from selfsight.views import ViewPipeline, simclr_views


class TwoPILViews(Dataset):
    def __init__(self, images: np.ndarray, transform: T.Compose) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = Image.fromarray(self.images[i][..., 0])
        return self.transform(img), self.transform(img)


def pil_transform(size: int) -> T.Compose:
    v = simclr_views(size).views[0]
    mean, std = default_stats(1)
    return T.Compose([
        T.RandomResizedCrop(size, scale=v.scale, ratio=v.ratio),
        T.RandomHorizontalFlip(v.flip_p),
        T.RandomApply([T.ColorJitter(v.brightness, v.contrast, v.saturation, v.hue)],
                      p=v.jitter_p),
        T.RandomGrayscale(v.grayscale_p),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


def rate(batches, batch_size: int, n: int, warmup: int = 3) -> float:
    it = iter(batches)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(n):
        next(it)
    return n * batch_size / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--out", default="benchmarks/results/views_throughput.json")
    args = p.parse_args()
    images = load_fashion_mnist("train").images
    b, n = args.batch_size, args.batches
    mean, std = default_stats(1)
    pipe = ViewPipeline(simclr_views(28), mean, std)
    gen = torch.Generator().manual_seed(0)
    loader = training_loader(images, StepBatchSampler(len(images), b))
    batched = (pipe(batch["image"], gen) for batch in loader)
    result = {"batch_size": b, "threads": torch.get_num_threads(),
              "batched_views_images_per_sec": round(rate(batched, b, n), 1)}
    for workers in (0, 2):
        pil = DataLoader(TwoPILViews(images, pil_transform(28)), batch_size=b, shuffle=True,
                         num_workers=workers, persistent_workers=workers > 0, drop_last=True)
        result[f"pil_dataloader_{workers}_workers_images_per_sec"] = round(rate(pil, b, n), 1)
    best_pil = max(v for k, v in result.items() if k.startswith("pil_"))
    result["speedup_vs_best_pil"] = round(result["batched_views_images_per_sec"] / best_pil, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for key, value in result.items():
        print(f"{key:<42} {value}")


if __name__ == "__main__":
    main()
