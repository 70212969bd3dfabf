"""Fine-tuning a backbone end to end with a linear classifier on labelled images: the usual
downstream measure for MAE (He et al., 2022, sec. 4), and the A/B arm against training from
scratch.

Plain recipe, stated in the result: crop + flip views drawn on the device, AdamW, warm-up +
cosine, label smoothing 0.1, bf16 autocast. No layer-wise decay, mixup or cutmix: at a few CPU
epochs they cost more than they give.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from selfsight.backbones import Backbone
from selfsight.eval.extract import autocast, preprocess
from selfsight.nn.param_groups import decay_groups
from selfsight.nn.schedules import warmup_cosine
from selfsight.views import MultiViewConfig, ViewConfig, ViewPipeline


def finetune(
    backbone: Backbone,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    epochs: float = 3,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, float]:
    """Top-1 on the test images after fine-tuning a copy of ``backbone`` (left untouched).

    ``train_images``: (N, H, W, C) uint8; ``epochs`` may be fractional (steps = epochs * N / B).
    """
    device = torch.device(device)
    torch.manual_seed(seed)
    cfg = backbone.config
    model = copy.deepcopy(backbone).to(device).train()
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    head = nn.Linear(model.dim, num_classes).to(device)
    opt = torch.optim.AdamW(decay_groups([*model.parameters(), *head.parameters()],
                                         weight_decay), lr=lr)
    views = ViewPipeline(MultiViewConfig(views=[ViewConfig(
        size=cfg.image_size, scale=(0.5, 1.0), jitter_p=0.0, grayscale_p=0.0, blur_p=0.0)]),
        cfg.mean, cfg.std)
    batch_size = min(batch_size, len(train_images))
    steps = max(1, math.ceil(epochs * len(train_images) / batch_size))
    gen = torch.Generator().manual_seed(seed)
    view_gen = torch.Generator(device=device).manual_seed(seed)
    labels = torch.as_tensor(train_labels).long()
    order = torch.randperm(len(train_images), generator=gen)
    cursor = 0
    for step in tqdm(range(steps), desc="fine-tune", disable=not progress, unit="step"):
        if cursor + batch_size > len(order):
            order, cursor = torch.randperm(len(train_images), generator=gen), 0
        idx = order[cursor:cursor + batch_size].sort().values.numpy()
        cursor += batch_size
        batch = torch.from_numpy(np.ascontiguousarray(train_images[idx])).permute(0, 3, 1, 2)
        x = views(batch.to(device), view_gen)[0].contiguous(memory_format=torch.channels_last)
        for group in opt.param_groups:
            group["lr"] = lr * warmup_cosine(step / steps, 1.0, 0.1)
        with autocast(device):
            loss = F.cross_entropy(head(model(x)).float(), labels[idx].to(device),
                                   label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return {"finetune_top1": accuracy(model, head, test_images, test_labels, device),
            "finetune_epochs": round(steps * batch_size / len(train_images), 3),
            "finetune_lr": lr}


@torch.no_grad()
def accuracy(model: Backbone, head: nn.Module, images: np.ndarray, labels: np.ndarray,
             device: torch.device, batch_size: int = 512) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.array(images[start:start + batch_size])).permute(0, 3, 1, 2)
        x = preprocess(batch.to(device), model).contiguous(memory_format=torch.channels_last)
        with autocast(device):
            pred = head(model(x)).argmax(1).cpu()
        correct += int((pred == torch.as_tensor(labels[start:start + batch_size])).sum())
    return correct / len(images)
