"""``selfsight segment``: instance masks for a folder of a user's own images, no labels needed.

Masks come from a segmenter trained on the run's pseudo-masks (``RUN/segmenter``) when there is
one, else from MaskCut on the run's patch features. Every image is processed at one square working
size and its masks are resized back to the file's own size. Output: a JSON file with one COCO RLE
per instance (plus box, area, score) for every image, the files that could not be read, and
overlay pictures.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from selfsight.backbones import load_backbone
from selfsight.data.folder import open_image, scan_folder
from selfsight.device import current_precision, runs_at_precision
from selfsight.segment.coco_eval import encode
from selfsight.segment.overlay import draw_instances, save_panel
from selfsight.segment.pseudo_masks import PseudoMaskConfig, pseudo_masks
from selfsight.segment.segmenter import (
    SegmenterConfig,
    load_segmenter,
    predict,
    save_segmenter,
    train_with_self_training,
)

SEGMENTER_DIR = "segmenter"
EXAMPLES = 8  # overlay pictures kept for the report
METHODS = ("auto", "maskcut", "segmenter")


@dataclass
class ImageFolder:
    images: np.ndarray  # (N, S, S, C) uint8 at the working size
    files: list[str]  # relative to the folder
    sizes: list[tuple[int, int]]  # each file's own (H, W)
    skipped: list[dict[str, str]]  # {"file", "error"} for files that could not be read


def read_folder(root: str | Path, size: int, channels: int, progress: bool = True
                ) -> ImageFolder:
    """Every readable image under ``root`` resized (not cropped) to ``size`` x ``size``; an
    unreadable file is skipped and listed with its error."""
    root = Path(root)
    images, files, sizes, skipped = [], [], [], []
    for path in tqdm(scan_folder(root), desc="read images", unit="img", disable=not progress):
        rel = path.relative_to(root).as_posix()
        try:
            img = open_image(path, channels)
        except Exception as error:  # PIL raises many kinds; the file is skipped, not the run
            skipped.append({"file": rel, "error": f"{type(error).__name__}: {error}"})
            continue
        sizes.append((img.height, img.width))
        array = np.asarray(img.resize((size, size), Image.BILINEAR), dtype=np.uint8)
        images.append(array.reshape(size, size, channels))
        files.append(rel)
    if not images:
        raise ValueError(f"none of the images in {root} could be read: {skipped[:3]} ...")
    return ImageFolder(np.stack(images), files, sizes, skipped)


def _resize_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(K, S, S) bool -> (K, H, W) bool, nearest neighbour."""
    return np.array([np.asarray(Image.fromarray(m).resize(size[::-1], Image.NEAREST))
                     for m in masks], bool).reshape(len(masks), *size)


def _instances(masks: np.ndarray, scores: np.ndarray) -> list[dict[str, Any]]:
    out = []
    for mask, score in zip(masks, scores):
        ys, xs = np.nonzero(mask)
        if not len(ys):
            continue
        out.append({"segmentation": encode(mask), "score": float(score),
                    "area": int(mask.sum()),
                    "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                             int(ys.max() - ys.min() + 1)]})
    return out


@runs_at_precision
def segment(run: str | Path, images: str | Path, out: str | Path, *,
            overlays: str | Path | None = None, image_size: int | None = None,
            masks: PseudoMaskConfig | None = None, method: str = "auto",
            train_segmenter: SegmenterConfig | None = None,
            device: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Instance masks for every image under ``images``, written to ``out`` (JSON).

    ``method``: ``maskcut`` (pseudo-masks from the run's patch features), ``segmenter``
    (``RUN/segmenter``), or ``auto`` (the segmenter when the run has one). ``train_segmenter``:
    first train a segmenter on the folder's own pseudo-masks (DropLoss and self-training) and save
    it to ``RUN/segmenter``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    run = Path(run)
    segmenter_dir = run / SEGMENTER_DIR
    if method == "segmenter" and train_segmenter is None and not (
            segmenter_dir / "segmenter.json").is_file():
        raise FileNotFoundError(f"{segmenter_dir} holds no trained segmenter: train one with "
                                "--train-segmenter, or use --method maskcut")
    backbone = load_backbone(run)
    size = image_size or backbone.config.image_size
    folder = read_folder(images, size, backbone.config.in_chans, progress)
    masks = masks or PseudoMaskConfig()
    history = None
    if train_segmenter is not None:
        pseudo, _ = pseudo_masks(backbone, folder.images, masks, device=device,
                                 progress=progress)
        config = SegmenterConfig(**{**asdict(train_segmenter), "image_size": size})
        model, rounds = train_with_self_training(folder.images, pseudo, config, device=device,
                                                 progress=progress)
        save_segmenter(model, config, segmenter_dir)
        history = {k: v for k, v in rounds.items() if k != "losses"}  # per-step losses: bulky
    if method == "auto":
        method = "segmenter" if (segmenter_dir / "segmenter.json").is_file() else "maskcut"
    if method == "segmenter":
        model = load_segmenter(segmenter_dir)
        predictions = predict(model, folder.images, device=device, progress=progress)
        found = [(p["masks"], p["scores"]) for p in predictions]
    else:
        found = list(zip(*pseudo_masks(backbone, folder.images, masks, device=device,
                                       progress=progress)))
    results, pictures = [], []
    for index, (file, own_size, (m, s)) in enumerate(zip(folder.files, folder.sizes, found)):
        resized = _resize_masks(m, own_size)
        results.append({"file": file, "height": own_size[0], "width": own_size[1],
                        "instances": _instances(resized, s)})
        if overlays is None and index >= EXAMPLES:
            continue
        picture = draw_instances(folder.images[index], m)
        if index < EXAMPLES:
            pictures.append(picture)
        if overlays is not None:
            target = Path(overlays) / f"{Path(file).with_suffix('')}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(picture).save(target)
    summary = {"run": str(run), "images": str(images), "method": method, "working_size": size,
               "precision": current_precision(device).name,
               "pseudo_masks": asdict(masks), "segmenter_history": history,
               "skipped": folder.skipped, "results": results}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary))
    # For `selfsight report`: the latest segmentation's counts and a row of examples.
    (run / "segment").mkdir(exist_ok=True)
    save_panel(run / "segment" / "examples.png", [[p] for p in pictures])
    (run / "segment" / "summary.json").write_text(json.dumps({
        "out": str(out), "images": str(images), "method": method,
        "instances_per_image": [len(r["instances"]) for r in results],
        "skipped": len(folder.skipped)}))
    return summary
