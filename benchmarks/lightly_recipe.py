"""lightly's own SimCLR recipe, for ``pretrain_fashion_mnist.py --compare lightly``.

Follows lightly's CIFAR-10 benchmark: its SimCLRTransform (per-sample PIL transforms in a
DataLoader), SimCLRProjectionHead, NTXentLoss, SGD lr 0.06 * batch/128 with momentum 0.9 and
weight decay 5e-4, cosine schedule. Only the backbone is ours, so both arms train the same network,
and the schedule runs on the same wall-clock budget, at the precision ``auto`` picks for the
device (bf16 autocast only where it is native). Needs ``pip install -e .[compare]``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from selfsight.backbones import Backbone, BackboneConfig
from selfsight.device import autocast, computing_at, resolve_precision


class PILImages(Dataset):
    def __init__(self, images: np.ndarray, transform) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i][..., 0]))


def train_lightly(images: np.ndarray, backbone_cfg: BackboneConfig, budget: float,
                  batch_size: int, out: Path, workers: int = 2, device: str = "cpu",
                  precision: str = "auto") -> dict:
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform

    torch.manual_seed(0)
    transform = SimCLRTransform(input_size=backbone_cfg.image_size, cj_strength=0.5,
                                gaussian_blur=0.0, normalize={"mean": list(backbone_cfg.mean),
                                                              "std": list(backbone_cfg.std)})
    loader = DataLoader(PILImages(images, transform), batch_size=batch_size, shuffle=True,
                        drop_last=True, num_workers=workers, persistent_workers=workers > 0)
    backbone = Backbone(backbone_cfg).to(device, memory_format=torch.channels_last)
    head = SimCLRProjectionHead(backbone.dim, backbone.dim, 128).to(device)
    criterion = NTXentLoss()
    params = list(backbone.parameters()) + list(head.parameters())
    base_lr = 0.06 * batch_size / 128
    opt = torch.optim.SGD(params, lr=base_lr, momentum=0.9, weight_decay=5e-4)
    seen, steps, start, loss = 0, 0, time.monotonic(), torch.tensor(0.0)
    chosen = resolve_precision(precision, device)
    while time.monotonic() - start < budget:
        for (x0, x1), *_ in ((batch, None) for batch in loader):
            progress = min((time.monotonic() - start) / budget, 1.0)
            for g in opt.param_groups:
                g["lr"] = base_lr * 0.5 * (1 + math.cos(math.pi * progress))
            x0 = x0.to(device).contiguous(memory_format=torch.channels_last)
            x1 = x1.to(device).contiguous(memory_format=torch.channels_last)
            with computing_at(chosen.name, device, announce=False), \
                    autocast(torch.device(device)):
                loss = criterion(head(backbone(x0)), head(backbone(x1)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(x0)
            steps += 1
            if time.monotonic() - start >= budget:
                break
    elapsed = time.monotonic() - start
    backbone.cpu().save(out)
    return {"images_seen": seen, "steps": steps, "seconds": round(elapsed, 1),
            "images_per_sec": round(seen / elapsed, 1), "epochs": round(seen / len(images), 3),
            "final_loss": loss.item(), "precision": chosen.name}
