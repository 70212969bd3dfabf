"""Training and prediction of the CutLER segmenter (Wang et al., 2023) on pseudo-masks.

MaskCut's pseudo-masks miss objects, so the detector (:mod:`selfsight.segment.model`) is trained
with **DropLoss** (sec. 3.2): the ROI classification loss is dropped for proposals that overlap no
pseudo-mask (max IoU <= ``drop_iou``), so it may find what the masks missed. One round of
**self-training** (sec. 3.3) then trains again on its own confident predictions (score >= 0.7)
plus the old pseudo-masks those predictions do not cover (mask IoU < 0.5), continuing from the
trained weights and without DropLoss, as CutLER's released self-training config does
(``MODEL.WEIGHTS`` = the previous round's checkpoint, ``USE_DROPLOSS: False``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.ops import masks_to_boxes
from tqdm.auto import tqdm

from selfsight.artifacts import (
    SEGMENTER,
    config_from_meta,
    load_artifact,
    load_weights,
    save_artifact,
)
from selfsight.backbones import Backbone, saved_backbone_config
from selfsight.device import default_device
from selfsight.errors import UserError
from selfsight.segment.model import InstanceSegmenter, SegmenterConfig, build_segmenter
from selfsight.segment.overlap import mask_iou
from selfsight.train.loop import train_steps

# ----------------------------------------------------------------------------- data


def to_tensor(images: np.ndarray, in_chans: int, device: torch.device) -> torch.Tensor:
    """uint8 (B, H, W) or (B, H, W, C) -> float (B, in_chans, H, W) in [0, 1]."""
    x = torch.as_tensor(np.asarray(images), device=device)
    x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)  # (B, C, H, W)
    x = x.float() / 255.0
    if x.shape[1] == in_chans:
        return x
    if x.shape[1] == 1:  # grayscale into an RGB backbone
        return x.expand(-1, in_chans, -1, -1)
    if in_chans == 1:
        return x.mean(dim=1, keepdim=True)
    raise ValueError(f"cannot feed {x.shape[1]}-channel images to a {in_chans}-channel backbone")


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """(K, H, W) bool -> (K, 4) float boxes in pixel-edge coordinates (x1, y1, x2, y2)."""
    boxes = masks_to_boxes(masks).float()  # inclusive max pixel
    boxes[:, 2:] += 1.0  # edge of the last pixel, so a 1-px mask has a non-empty box
    return boxes


def make_target(masks: np.ndarray, flip: bool, device: torch.device) -> dict[str, torch.Tensor]:
    """Mask R-CNN target from (K, H, W) bool pseudo-masks, empty masks removed."""
    m = torch.as_tensor(np.asarray(masks, dtype=bool), device=device)
    if flip:
        m = m.flip(-1)
    m = m[m.flatten(1).any(dim=1)] if m.shape[0] else m
    return {"boxes": boxes_from_masks(m) if m.shape[0] else torch.zeros(0, 4, device=device),
            "labels": torch.ones(m.shape[0], dtype=torch.int64, device=device),
            "masks": m.to(torch.uint8)}


# ----------------------------------------------------------------------------- training


def warmup_fraction(config: SegmenterConfig) -> float:
    """``config.warmup_steps`` as a fraction of training, the unit of the schedule. A run bounded
    by time alone has no step count, so its warm-up takes the fraction that ``warmup_steps``
    would of the default steps."""
    return min(1.0, config.warmup_steps / (config.steps or SegmenterConfig.steps))


def _check_images(images: np.ndarray, masks: list[np.ndarray], config: SegmenterConfig) -> None:
    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} mask sets")
    if images.shape[1:3] != (config.image_size, config.image_size):
        raise ValueError(f"images are {images.shape[1:3]}, config.image_size is "
                         f"{config.image_size}: set it to the images' size")
    if config.steps is None and config.time_budget is None:
        raise UserError("set config.steps or config.time_budget")


def train_segmenter(
    images: np.ndarray,
    masks: list[np.ndarray],
    config: SegmenterConfig,
    device: str | torch.device | None = None,
    progress: bool = True,
    model: InstanceSegmenter | None = None,
    history: list[dict[str, float]] | None = None,
) -> InstanceSegmenter:
    """Train (or continue training ``model``) on uint8 images and (K_i, H, W) bool masks.

    AdamW with warmup + cosine, random horizontal flips, seeded; stops after ``config.steps``
    or ``config.time_budget`` seconds. Each step's losses are appended to ``history``.
    """
    images = np.asarray(images)
    _check_images(images, masks, config)
    device = default_device(device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = (model if model is not None else build_segmenter(config)).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    batch_size = min(config.batch_size, len(images))

    def flipped_batches() -> Iterator[tuple[torch.Tensor, list[dict[str, torch.Tensor]]]]:
        """Seeded permutations of the images, each image flipped at random with its masks."""
        while True:
            order = rng.permutation(len(images))
            for start in range(0, len(order) - batch_size + 1, batch_size):
                batch = order[start:start + batch_size]
                flips = rng.random(len(batch)) < 0.5
                x = to_tensor(images[batch], model.in_chans, device)
                x = torch.where(torch.as_tensor(flips, device=device)[:, None, None, None],
                                x.flip(-1), x)  # (B, C, H, W)
                yield x, [make_target(masks[i], f, device) for i, f in zip(batch, flips)]

    def losses(batch: tuple[torch.Tensor, list[dict[str, torch.Tensor]]]
               ) -> dict[str, torch.Tensor]:
        images_in, targets = batch
        return model(list(images_in), targets)  # in training mode Mask R-CNN returns its losses

    records = train_steps(optimizer, flipped_batches(), losses, config.steps or None,
                          time_budget=config.time_budget,
                          warmup=warmup_fraction(config), grad_clip=config.grad_clip,
                          progress=progress, desc="segmenter", images_per_step=batch_size)
    if history is not None:
        history.extend(records)
    return model.eval()


@torch.no_grad()
def predict(
    model: InstanceSegmenter,
    images: np.ndarray,
    score_threshold: float = 0.05,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> list[dict[str, np.ndarray]]:
    """Per image: ``masks`` (K, H, W) bool (probability > 0.5), ``scores`` (K,), ``boxes``
    (K, 4) x1, y1, x2, y2, sorted by score."""
    device = default_device(device) if device is not None else next(model.parameters()).device
    model = model.to(device).eval()
    saved, model.roi_heads.score_thresh = model.roi_heads.score_thresh, score_threshold
    out: list[dict[str, np.ndarray]] = []
    try:
        for start in tqdm(range(0, len(images), batch_size), desc="segmenter", unit="batch",
                          disable=not progress):
            x = to_tensor(np.asarray(images[start:start + batch_size]), model.in_chans, device)
            for det in model(list(x)):
                out.append({"masks": (det["masks"][:, 0] > 0.5).cpu().numpy(),
                            "scores": det["scores"].cpu().numpy(),
                            "boxes": det["boxes"].cpu().numpy()})
    finally:
        model.roi_heads.score_thresh = saved
    return out


# ----------------------------------------------------------------------------- self-training


def self_training_targets(
    pseudo_masks: list[np.ndarray],
    predictions: list[dict[str, np.ndarray]],
    score_keep: float = 0.7,
    cover_iou: float = 0.5,
) -> list[np.ndarray]:
    """CutLER's self-training targets (sec. 3.3): per image, the predictions with score >=
    ``score_keep`` followed by the old pseudo-masks that no kept prediction covers (mask IoU <
    ``cover_iou`` with every kept one)."""
    targets = []
    for old, pred in zip(pseudo_masks, predictions):
        old = np.asarray(old, dtype=bool)  # (K_old, H, W)
        kept = np.asarray(pred["masks"], dtype=bool)[np.asarray(pred["scores"]) >= score_keep]
        if len(kept) and len(old):
            old = old[mask_iou(old, kept).max(axis=1) < cover_iou]
        targets.append(np.concatenate([kept.reshape(-1, *old.shape[1:]), old]))
    return targets


def train_with_self_training(
    images: np.ndarray,
    pseudo_masks: list[np.ndarray],
    config: SegmenterConfig,
    rounds: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> tuple[InstanceSegmenter, dict[str, Any]]:
    """CutLER: train on pseudo-masks with DropLoss, then ``rounds`` rounds of self-training
    (default ``config.self_training_rounds``), each continuing from the previous round's
    weights on merged targets."""
    rounds = config.self_training_rounds if rounds is None else rounds
    history: dict[str, Any] = {"losses": [], "targets_per_image": [], "seconds": []}
    targets = pseudo_masks
    model: InstanceSegmenter | None = None
    for round_ in range(rounds + 1):
        losses: list[dict[str, float]] = []
        round_config = config
        if round_ > 0:
            steps = config.self_train_steps or config.steps
            round_config = replace(config, steps=steps, seed=config.seed + round_)
            model.roi_heads.drop_iou = config.drop_iou if config.self_train_drop_loss else None
            targets = self_training_targets(targets, predict(model, images), config.score_keep,
                                            config.cover_iou)
        start = time.perf_counter()
        model = train_segmenter(images, targets, round_config, device, progress, model, losses)
        history["losses"].append(losses)
        history["targets_per_image"].append(float(np.mean([len(t) for t in targets])))
        history["seconds"].append(time.perf_counter() - start)
    model.roi_heads.drop_iou = config.drop_iou
    return model, history


# ----------------------------------------------------------------------------- save / load


def save_segmenter(model: InstanceSegmenter, config: SegmenterConfig,
                   directory: str | Path) -> None:
    """``segmenter.safetensors`` + ``segmenter.json`` (this config and the backbone's)."""
    meta = {"segmenter": asdict(config), "backbone": asdict(model.backbone.body.config)}
    save_artifact(directory, SEGMENTER, meta, model.state_dict())


def load_segmenter(directory: str | Path, device: str | torch.device | None = "cpu"
                   ) -> InstanceSegmenter:
    """Rebuild a saved segmenter (no pickle, no SSL run folder needed)."""
    meta, tensors = load_artifact(directory, SEGMENTER)
    where = Path(directory) / SEGMENTER.meta_file
    config = config_from_meta(SegmenterConfig, meta.get("segmenter"), where)
    model = build_segmenter(config, Backbone(saved_backbone_config(meta.get("backbone"), where)))
    load_weights(model, tensors, Path(directory) / SEGMENTER.weights_file)
    return model.to(default_device(device)).eval()
