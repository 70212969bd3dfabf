"""The CutLER detector (Wang et al., 2023): a class-agnostic Mask R-CNN (He et al., 2017) on a
small selfsight CNN backbone + FPN (Lin et al., 2017), with DropLoss in its ROI heads.

It is kept at the images' own scale (no resize to 800 px), with anchors and heads sized for
10-80 px objects, so that it trains on a small CPU. Training and prediction are in
:mod:`selfsight.segment.segmenter`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import MultiScaleRoIAlign, box_iou
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from selfsight.backbones import GRAY_MEAN, GRAY_STD, Backbone, backbone_config, load_backbone
from selfsight.errors import UserError

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
            raise UserError("the segmenter needs a CNN backbone (multi-scale maps); got a ViT")
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
