"""Find and separate objects without labels: MaskCut pseudo-masks from patch features, their
instance-ness, class-agnostic mask AP, and a Mask R-CNN trained on pseudo-masks (CutLER)."""

from selfsight.segment.api import segment
from selfsight.segment.coco_eval import mask_ap
from selfsight.segment.instanceness import instanceness
from selfsight.segment.model import SegmenterConfig
from selfsight.segment.ncut import MaskCutConfig, maskcut
from selfsight.segment.patch_features import extract_patch_features
from selfsight.segment.pseudo_masks import PseudoMaskConfig, pseudo_masks

__all__ = ["MaskCutConfig", "PseudoMaskConfig", "SegmenterConfig", "extract_patch_features",
           "instanceness", "mask_ap", "maskcut", "pseudo_masks", "segment"]
