"""Class-agnostic instance-mask AP, AP50 and AR@10 with pycocotools (Lin et al., 2014).

Every ground-truth and predicted instance is one category, "object", as in CutLER's evaluation.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np


def encode(mask: np.ndarray) -> dict:
    """(H, W) bool -> COCO run-length encoding with a JSON-ready ``counts`` string."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def mask_ap(gt_masks: list[np.ndarray], pred_masks: list[np.ndarray],
            pred_scores: list[np.ndarray]) -> dict[str, float]:
    """``gt_masks[i]`` (K_i, H, W) bool; ``pred_masks[i]`` (P_i, H, W) bool with scores (P_i,).
    Returns mask AP (IoU .50:.95), AP50, AP75 and AR@1/10/100 over all images."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(gt_masks) != len(pred_masks) or len(pred_masks) != len(pred_scores):
        raise ValueError("gt_masks, pred_masks and pred_scores need one entry per image")
    images, annotations, results = [], [], []
    for image_id, (gt, pred, scores) in enumerate(zip(gt_masks, pred_masks, pred_scores), 1):
        h, w = gt.shape[-2:]
        images.append({"id": image_id, "height": int(h), "width": int(w)})
        for mask in gt:
            rle = encode(mask)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": 1, "segmentation": rle, "iscrowd": 0,
                                "area": float(mask.sum()),
                                "bbox": [float(v) for v in mask_utils.toBbox(rle)]})
        for mask, score in zip(pred, scores):
            results.append({"image_id": image_id, "category_id": 1,
                            "segmentation": encode(mask), "score": float(score)})
    if not results:
        return {k: 0.0 for k in ("AP", "AP50", "AP75", "AR1", "AR10", "AR100")}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its tables
        truth = COCO()
        truth.dataset = {"images": images, "annotations": annotations,
                         "categories": [{"id": 1, "name": "object"}]}
        truth.createIndex()
        evaluator = COCOeval(truth, truth.loadRes(results), iouType="segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    s = evaluator.stats
    return {"AP": float(s[0]), "AP50": float(s[1]), "AP75": float(s[2]),
            "AR1": float(s[6]), "AR10": float(s[7]), "AR100": float(s[8])}
