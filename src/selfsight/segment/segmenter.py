"""CutLER (Wang et al., 2023): a class-agnostic Mask R-CNN trained on pseudo-masks.

MaskCut's pseudo-masks miss objects, so the detector is trained with **DropLoss** (sec. 3.2):
the ROI classification loss is dropped for proposals that overlap no pseudo-mask (max IoU <=
``drop_iou``), so it may find what the masks missed. One round of **self-training** (sec. 3.3)
then trains again on its own confident predictions (score >= 0.7) plus the old pseudo-masks those
predictions do not cover (mask IoU < 0.5), continuing from the trained weights and without
DropLoss, as CutLER's released self-training config does (``MODEL.WEIGHTS`` = the previous
round's checkpoint, ``USE_DROPLOSS: False``).

The detector is torchvision's Mask R-CNN (He et al., 2017) on a small selfsight CNN backbone +
FPN (Lin et al., 2017), kept at the images' own scale (no resize to 800 px) with anchors and
heads sized for 10-80 px objects so that it trains on a small CPU.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import MultiScaleRoIAlign, box_iou, masks_to_boxes
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool
from tqdm.auto import tqdm

from selfsight.backbones import Backbone, BackboneConfig, backbone_config, load_backbone
from selfsight.device import default_device
from selfsight.views.pipeline import GRAY_MEAN, GRAY_STD

IGNORE_LABEL = -100  # F.cross_entropy's default ignore_index


@dataclass
class SegmenterConfig:
    """Knobs of the pseudo-mask segmenter; defaults measured on 96-px grayscale scenes (CPU)."""

    backbone: str = "resnet18_cpu"  # selfsight alias or timm CNN name (ignored with backbone_run)
    backbone_run: str | None = None  # a run folder with backbone.safetensors: start from SSL
    image_size: int = 96  # training/inference images are image_size x image_size
    image_scale: float = 1.0  # the detector sees image_size * image_scale pixels
    fpn_channels: int = 64  # 128 halves CPU training speed (ROI-align backward dominates)
    head_dim: int = 256  # box-head MLP width
    mask_dim: int = 64  # mask-head conv width: 256 (the COCO default) costs ~10x on CPU
    object_sizes: tuple[float, float] = (10.0, 80.0)  # anchor sizes span this (input pixels)
    steps: int | None = 600
    time_budget: float | None = None  # seconds; training stops at whichever comes first
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    grad_clip: float = 1.0  # CutLER clips the gradient norm at 1.0
    drop_iou: float | None = 0.01  # None: no DropLoss
    self_train_drop_loss: bool = False  # CutLER's self-training rounds turn DropLoss off
    self_train_steps: int | None = None  # None: the same steps/time budget as the first round
    # CutLER's recipe has one round; on our scenes it lowered AP50 (BENCHMARKS.md section 7).
    self_training_rounds: int = 1
    score_keep: float = 0.7
    cover_iou: float = 0.5
    detections_per_image: int = 30
    roi_samples: int = 64  # sampled proposals per image for the ROI heads (COCO: 512)
    seed: int = 0


class DropLossRoIHeads(RoIHeads):
    """RoIHeads with CutLER's DropLoss (Wang et al., 2023, sec. 3.2).

    Sampled proposals whose max IoU with every target box is <= ``drop_iou`` get label
    ``IGNORE_LABEL``: ``fastrcnn_loss``'s cross-entropy skips them, and the box and mask
    branches only read labels > 0, so only the classification loss changes. The box loss is
    still divided by all sampled proposals, as CutLER's. Images without any target box keep
    their background loss (there is nothing to be "missed" against). ``drop_iou=None`` turns
    it off.
    """

    def __init__(self, *args: Any, drop_iou: float | None = 0.01, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.drop_iou = drop_iou

    def select_training_samples(
        self, proposals: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        proposals, matched_idxs, labels, regression_targets = super().select_training_samples(
            proposals, targets)
        if self.drop_iou is None or targets is None:
            return proposals, matched_idxs, labels, regression_targets
        for i, (boxes, target) in enumerate(zip(proposals, targets)):
            if target["boxes"].numel() == 0:
                continue
            best_iou = box_iou(boxes, target["boxes"].to(boxes.dtype)).max(dim=1).values  # (P,)
            labels[i] = torch.where(best_iou <= self.drop_iou,
                                    torch.full_like(labels[i], IGNORE_LABEL), labels[i])
        return proposals, matched_idxs, labels, regression_targets


class PyramidBackbone(nn.Module):
    """A selfsight CNN's last four stages (``forward_intermediates``) + FPN + max-pool level."""

    def __init__(self, backbone: Backbone, out_channels: int, probe_size: int) -> None:
        super().__init__()
        if backbone.is_vit:
            raise ValueError("the segmenter needs a CNN backbone (multi-scale maps); got a ViT")
        self.body = backbone
        self.num_levels = min(4, len(backbone.model.feature_info))
        was_training = backbone.training
        with torch.no_grad():  # eval: a probe must not touch the batch-norm statistics
            maps = self.forward_levels(backbone.eval(), torch.zeros(
                1, backbone.config.in_chans, probe_size, probe_size))
        backbone.train(was_training)
        # Measured, not read from feature_info: a small stem changes the strides.
        self.strides = [probe_size / m.shape[-1] for m in maps]
        self.fpn = FeaturePyramidNetwork([m.shape[1] for m in maps], out_channels,
                                         extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    @property
    def level_names(self) -> list[str]:
        return [str(i) for i in range(self.num_levels)]

    def forward_levels(self, body: Backbone, x: torch.Tensor) -> list[torch.Tensor]:
        return body.model.forward_intermediates(  # fine to coarse, each (B, C, h, w)
            x, indices=self.num_levels, intermediates_only=True)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        maps = self.forward_levels(self.body, x)
        return self.fpn(OrderedDict(zip(self.level_names, maps)))


class InstanceSegmenter(MaskRCNN):
    """Class-agnostic Mask R-CNN (background + object) that remembers how it was built."""

    def __init__(self, config: SegmenterConfig, backbone: Backbone) -> None:
        size = round(config.image_size * config.image_scale)
        pyramid = PyramidBackbone(backbone, config.fpn_channels, size)
        levels = pyramid.num_levels + 1  # + the max-pool level
        low, high = config.object_sizes
        sizes = np.geomspace(low, high, levels) * config.image_scale
        anchors = AnchorGenerator(tuple((float(s),) for s in sizes), ((0.5, 1.0, 2.0),) * levels)
        width, dim, mask_dim = config.fpn_channels, config.head_dim, config.mask_dim
        box_pool = MultiScaleRoIAlign(pyramid.level_names, output_size=7, sampling_ratio=2)
        mask_pool = MultiScaleRoIAlign(pyramid.level_names, output_size=14, sampling_ratio=2)
        box_head, box_predictor = TwoMLPHead(width * 7 * 7, dim), FastRCNNPredictor(dim, 2)
        mask_head = MaskRCNNHeads(width, (mask_dim,) * 4, 1)
        mask_predictor = MaskRCNNPredictor(mask_dim, mask_dim, 2)
        in_chans = backbone.config.in_chans
        mean = backbone.config.mean if len(backbone.config.mean) == in_chans else GRAY_MEAN
        std = backbone.config.std if len(backbone.config.std) == in_chans else GRAY_STD
        detector = {
            # Small scenes: fewer proposals and ROI samples than the COCO defaults.
            "rpn_pre_nms_top_n_train": 600, "rpn_post_nms_top_n_train": 300,
            "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 100,
            "box_batch_size_per_image": config.roi_samples,
            "box_detections_per_img": config.detections_per_image,
        }
        super().__init__(pyramid, num_classes=None, min_size=size, max_size=size,
                         image_mean=list(mean), image_std=list(std),
                         rpn_anchor_generator=anchors, box_roi_pool=box_pool, box_head=box_head,
                         box_predictor=box_predictor, mask_roi_pool=mask_pool,
                         mask_head=mask_head, mask_predictor=mask_predictor, **detector)
        old = self.roi_heads  # same modules and settings, plus DropLoss
        self.roi_heads = DropLossRoIHeads(
            box_pool, box_head, box_predictor, old.proposal_matcher.high_threshold,
            old.proposal_matcher.low_threshold, config.roi_samples,
            old.fg_bg_sampler.positive_fraction, old.box_coder.weights,
            old.score_thresh, old.nms_thresh, old.detections_per_img,
            mask_roi_pool=mask_pool, mask_head=mask_head, mask_predictor=mask_predictor,
            drop_iou=config.drop_iou)
        self.config = config

    @property
    def in_chans(self) -> int:
        return self.backbone.body.config.in_chans


def backbone_for(config: SegmenterConfig) -> Backbone:
    """The SSL run's backbone, or a fresh one with the standard (strided) stem: at 96 px the
    small-image stem would keep 4-16x more positions in every stage."""
    if config.backbone_run is not None:
        return load_backbone(config.backbone_run).train()
    return Backbone(backbone_config(config.backbone, 1, config.image_size, {"small_stem": False}))


def build_segmenter(config: SegmenterConfig, backbone: Backbone | None = None
                    ) -> InstanceSegmenter:
    return InstanceSegmenter(config, backbone if backbone is not None else backbone_for(config))


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


def lr_factor(step: int, progress: float, warmup_steps: int) -> float:
    """Linear warmup, then cosine decay over the training's progress (steps or time)."""
    return min(1.0, (step + 1) / max(warmup_steps, 1)) * 0.5 * (1 + math.cos(math.pi * progress))


def _check_images(images: np.ndarray, masks: list[np.ndarray], config: SegmenterConfig) -> None:
    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} mask sets")
    if images.shape[1:3] != (config.image_size, config.image_size):
        raise ValueError(f"images are {images.shape[1:3]}, config.image_size is "
                         f"{config.image_size}: set it to the images' size")
    if config.steps is None and config.time_budget is None:
        raise ValueError("set config.steps or config.time_budget")


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
    steps, budget = config.steps or math.inf, config.time_budget or math.inf
    bar = tqdm(total=config.steps if config.steps else round(budget),
               unit="step" if config.steps else "s", disable=not progress, desc="segmenter")
    order, cursor, step, start = rng.permutation(len(images)), 0, 0, time.perf_counter()
    while step < steps and (elapsed := time.perf_counter() - start) < budget:
        if cursor + config.batch_size > len(order):
            order, cursor = rng.permutation(len(images)), 0
        batch = order[cursor:cursor + config.batch_size]
        cursor += config.batch_size
        flips = rng.random(len(batch)) < 0.5
        x = to_tensor(images[batch], model.in_chans, device)
        x = torch.where(torch.as_tensor(flips, device=device)[:, None, None, None],
                        x.flip(-1), x)  # (B, C, H, W)
        targets = [make_target(masks[i], f, device) for i, f in zip(batch, flips)]
        for group in optimizer.param_groups:
            group["lr"] = config.lr * lr_factor(step, max(step / steps, elapsed / budget),
                                                config.warmup_steps)
        losses = model(list(x), targets)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        step += 1
        record = {"loss": loss.item(), **{k: v.item() for k, v in losses.items()}}
        if history is not None:
            history.append(record)
        bar.update(1 if config.steps else round(time.perf_counter() - start) - bar.n)
        rate = step * len(batch) / max(time.perf_counter() - start, 1e-9)
        bar.set_postfix(loss=f"{record['loss']:.3f}", img_s=f"{rate:.1f}")
    bar.close()
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


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Ka, H, W) x (Kb, H, W) bool -> (Ka, Kb) IoU."""
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return inter / np.maximum(union, 1.0)


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
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "segmenter.safetensors"))
    meta = {"segmenter": asdict(config), "backbone": asdict(model.backbone.body.config)}
    (directory / "segmenter.json").write_text(json.dumps(meta, indent=2))


def _tuples(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def load_segmenter(directory: str | Path, device: str | torch.device | None = "cpu"
                   ) -> InstanceSegmenter:
    """Rebuild a saved segmenter (no pickle, no SSL run folder needed)."""
    directory = Path(directory)
    meta = json.loads((directory / "segmenter.json").read_text())
    seg = {k: _tuples(v) for k, v in meta["segmenter"].items()}
    bb = {k: _tuples(v) for k, v in meta["backbone"].items()}
    bb["model_kwargs"] = {k: _tuples(v) for k, v in bb["model_kwargs"].items()}
    model = build_segmenter(SegmenterConfig(**seg), Backbone(BackboneConfig(**bb)))
    model.load_state_dict(load_file(str(directory / "segmenter.safetensors")))
    return model.to(default_device(device)).eval()
