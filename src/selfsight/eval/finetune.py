"""Fine-tuning a backbone end to end with a linear classifier on labelled images: the usual
downstream measure for MAE (He et al., 2022, sec. 4), and the A/B arm against training from
scratch. With a ``teacher`` it is also the third step of SimCLRv2 (Chen et al., 2020, "Big
self-supervised models are strong semi-supervised learners", sec. 2.3): the student learns the
fine-tuned teacher's soft predictions on unlabelled images beside the labelled loss.

Plain recipe, stated in the result: crop + flip views (on signals jitter + scaling, see
:func:`finetune_views`) drawn on the device (in fp32), AdamW,
warm-up + cosine, label smoothing 0.1, autocast at the current precision (bf16 where native), all
run by :func:`selfsight.train.loop.train_steps`. No layer-wise decay, mixup or cutmix: at a few
CPU epochs they cost more than they give.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from selfsight.backbones import Backbone, BackboneConfig
from selfsight.device import autocast
from selfsight.eval.extract import preprocess
from selfsight.nn.param_groups import decay_groups
from selfsight.signals.names import is_signal_backbone
from selfsight.signals.views import SignalViewConfig, SignalViewPipeline, SignalViews
from selfsight.train.loop import train_steps
from selfsight.views import MultiViewConfig, ViewConfig, ViewPipeline

# Jitter (0.1) and per-channel scaling (0.2) in units of each channel's standard deviation.
SIGNAL_FINETUNE_VIEW = SignalViewConfig(crop_scale=(1.0, 1.0), magnitude_warp_sigma=0.0,
                                        time_warp_sigma=0.0, channel_drop_p=0.0)


class Classifier(nn.Module):
    """A backbone with a linear head on its pooled feature."""

    def __init__(self, backbone: Backbone, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class BatchSampler:
    """Index batches that walk seeded permutations of ``n`` items, epoch after epoch."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size = n, min(batch_size, n)
        self.gen = torch.Generator().manual_seed(seed)
        self.order, self.cursor = torch.randperm(n, generator=self.gen), 0

    def next(self) -> np.ndarray:
        if self.cursor + self.batch_size > self.n:
            self.order, self.cursor = torch.randperm(self.n, generator=self.gen), 0
        idx = self.order[self.cursor:self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return idx.sort().values.numpy()


def finetune_views(cfg: BackboneConfig) -> nn.Module:
    """The one view a classifier trains on: a crop (half the area or more) and a flip of an
    image; for a signal backbone, jitter and per-channel scaling of the whole series, the weak
    view of TS-TCC (Eldele et al., 2021), since a flip or a crop can change a series' class."""
    if is_signal_backbone(cfg.name):
        return SignalViewPipeline(SignalViews(views=[SIGNAL_FINETUNE_VIEW]), cfg.mean, cfg.std)
    return ViewPipeline(MultiViewConfig(views=[ViewConfig(
        size=cfg.image_size, scale=(0.5, 1.0), jitter_p=0.0, grayscale_p=0.0, blur_p=0.0)]),
        cfg.mean, cfg.std)


def finetune_views_note(cfg: BackboneConfig) -> str:
    """:func:`finetune_views` in words, for the recipe line of a result."""
    return "jitter + channel-scaling views" if is_signal_backbone(cfg.name) \
        else "crop+flip views"


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                       temperature: float) -> torch.Tensor:
    """-sum_y p_T(y|x; t) log p_S(y|x; t), averaged over the batch (SimCLRv2, eq. 3)."""
    target = F.softmax(teacher_logits.float() / temperature, dim=1)
    return -(target * F.log_softmax(student_logits.float() / temperature, dim=1)).sum(1).mean()


def train_classifier(
    backbone: Backbone,
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    steps: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    teacher: Classifier | None = None,
    unlabeled: np.ndarray | None = None,
    temperature: float = 1.0,
) -> Classifier:
    """A classifier on a copy of ``backbone`` (left untouched) after ``steps`` steps on the
    labelled ``images`` (N, H, W, C) uint8 (for a signal backbone the float signals
    (N, 1, L, C) of ``SignalSet.images``); with ``teacher``, each step also draws a batch of
    ``unlabeled`` images and adds the soft cross-entropy to the teacher's predictions on the
    same view."""
    if (teacher is None) != (unlabeled is None):
        raise ValueError("distillation needs both a teacher and unlabeled images")
    device = torch.device(device)
    torch.manual_seed(seed)
    cfg = backbone.config
    model = Classifier(copy.deepcopy(backbone), num_classes).to(device).train()
    opt = torch.optim.AdamW(decay_groups(list(model.parameters()), weight_decay), lr=lr)
    views = finetune_views(cfg)
    view_gen = torch.Generator(device=device).manual_seed(seed)
    labelled = BatchSampler(len(images), batch_size, seed)
    unlabelled = None if unlabeled is None else BatchSampler(len(unlabeled), batch_size, seed + 1)
    if teacher is not None:
        teacher = teacher.to(device).eval()
    targets = torch.tensor(np.asarray(labels)).long()  # a copy: memory-mapped labels are read-only

    def view(source: np.ndarray, idx: np.ndarray) -> torch.Tensor:
        batch = torch.from_numpy(np.ascontiguousarray(source[idx])).permute(0, 3, 1, 2)
        return views(batch.to(device), view_gen)[0].contiguous(memory_format=torch.channels_last)

    def draw() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        idx = labelled.next()
        x, y = view(images, idx), targets[idx].to(device)
        return x, y, None if unlabelled is None else view(unlabeled, unlabelled.next())

    def losses(batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]
               ) -> dict[str, torch.Tensor]:
        x, y, u = batch
        if u is None:
            logits = model(x)
        else:
            with torch.no_grad():
                soft = teacher(u)
            logits = model(torch.cat([x, u]))  # one pass: batch norm sees both
        terms = {"cross_entropy": F.cross_entropy(logits[:len(y)].float(), y,
                                                  label_smoothing=0.1)}
        if u is not None:
            terms["distillation"] = soft_cross_entropy(logits[len(y):], soft, temperature)
        return terms

    train_steps(opt, draw, losses, steps, warmup=0.1, autocast_on=device, progress=progress,
                desc="distil" if teacher is not None else "fine-tune")
    return model.eval()


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
    batch_size = min(batch_size, len(train_images))
    steps = max(1, math.ceil(epochs * len(train_images) / batch_size))
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    model = train_classifier(backbone, train_images, train_labels, num_classes, steps,
                             batch_size, lr, weight_decay, seed, device, progress)
    return {"finetune_top1": accuracy(model, test_images, test_labels, torch.device(device)),
            "finetune_epochs": round(steps * batch_size / len(train_images), 3),
            "finetune_lr": lr}


def accuracy(model: Classifier, images: np.ndarray, labels: np.ndarray,
             device: torch.device, batch_size: int = 512) -> float:
    predicted = probabilities(model, images, device, batch_size).argmax(1)
    return float((predicted == np.asarray(labels)).mean())


@torch.no_grad()
def probabilities(model: Classifier, images: np.ndarray, device: torch.device,
                  batch_size: int = 512, progress: bool = False) -> np.ndarray:
    """(N, classes) softmax probabilities for (N, H, W, C) uint8 ``images``."""
    model = model.to(device).eval()
    out = []
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc="predict", unit="batch", disable=not progress):
        batch = torch.from_numpy(np.array(images[start:start + batch_size])).permute(0, 3, 1, 2)
        x = preprocess(batch.to(device), model.backbone)
        with autocast(device):
            logits = model(x.contiguous(memory_format=torch.channels_last))
        out.append(logits.float().softmax(1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.head.out_features), np.float32)
