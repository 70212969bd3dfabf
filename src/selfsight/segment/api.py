"""``selfsight segment``: instance masks for a folder of a user's own images, no labels needed.

Masks come from a segmenter trained on the run's pseudo-masks (``RUN/segmenter``) when there is
one, else from MaskCut on the run's patch features. Every image is processed at one square
working size (letterboxed: the aspect ratio kept, the rest black) and its masks are cut to the
image's own part of the square and resized back to the file's own size. Output: a JSON file with
one COCO RLE per instance (plus box, area, score) for every image, the files that could not be
read, and overlay pictures.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from selfsight.artifacts import SEGMENTER
from selfsight.backbones import load_backbone
from selfsight.data.folder import read_resized
from selfsight.device import current_precision, runs_at_precision
from selfsight.errors import MissingInput, UserError
from selfsight.file_names import portable_name
from selfsight.files import write_atomic, write_text
from selfsight.results import SegmentResult
from selfsight.run_folder import RunFolder
from selfsight.segment.coco_eval import encode
from selfsight.segment.model import SegmenterConfig
from selfsight.segment.overlay import draw_instances, save_panel
from selfsight.segment.pseudo_masks import PseudoMaskConfig, pseudo_masks
from selfsight.segment.segmenter import (
    load_segmenter,
    predict,
    save_segmenter,
    train_with_self_training,
)

EXAMPLES = 8  # overlay pictures kept for the report
METHODS = ("auto", "maskcut", "segmenter")


def _resize_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(K, h, w) bool -> (K, H, W) bool, nearest neighbour."""
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
            device: str | None = None, progress: bool = True) -> SegmentResult:
    """Instance masks for every image under ``images``, written to ``out`` (JSON).

    ``method``: ``maskcut`` (pseudo-masks from the run's patch features), ``segmenter``
    (``RUN/segmenter``), or ``auto`` (the segmenter when the run has one). ``train_segmenter``:
    first train a segmenter on the folder's own pseudo-masks (DropLoss and self-training) and save
    it to ``RUN/segmenter``."""
    if method not in METHODS:
        raise UserError(f"method must be one of {METHODS}, got {method!r}")
    run = RunFolder(run)
    segmenter_dir = run.segmenter
    if method == "segmenter" and train_segmenter is None and not (
            segmenter_dir / SEGMENTER.meta_file).is_file():
        raise MissingInput(f"{segmenter_dir} holds no trained segmenter: train one with "
                           "--train-segmenter, or use --method maskcut")
    backbone = load_backbone(run.root)
    size = image_size or backbone.config.image_size
    folder = read_resized(images, size, backbone.config.in_chans, progress)
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
        method = "segmenter" if (segmenter_dir / SEGMENTER.meta_file).is_file() else "maskcut"
    if method == "segmenter":
        model = load_segmenter(segmenter_dir)
        predictions = predict(model, folder.images, device=device, progress=progress)
        found = [(p["masks"], p["scores"]) for p in predictions]
    else:
        found = list(zip(*pseudo_masks(backbone, folder.images, masks, device=device,
                                       progress=progress)))
    results, pictures = [], []
    for index, (file, own_size, (m, s)) in enumerate(zip(folder.files, folder.sizes, found)):
        resized = _resize_masks(folder.unbox(index, m), own_size)
        results.append({"file": portable_name(file), "height": own_size[0], "width": own_size[1],
                        "instances": _instances(resized, s)})
        if overlays is None and index >= EXAMPLES:
            continue
        picture = draw_instances(folder.own_image(index), folder.unbox(index, m))
        if index < EXAMPLES:
            pictures.append(picture)
        if overlays is not None:
            target = Path(overlays) / f"{Path(portable_name(file)).with_suffix('')}.png"
            write_atomic(target, lambda f, p=picture: Image.fromarray(p).save(f, "PNG"))
    summary = SegmentResult(run=str(run), images=str(images), method=method, working_size=size,
                            precision=current_precision(device).name,
                            pseudo_masks=asdict(masks), segmenter_history=history,
                            skipped=[{**entry, "file": portable_name(entry["file"])}
                                     for entry in folder.skipped], results=results)
    write_text(out, json.dumps(summary.to_json()))  # one line: masks files grow large
    # For `selfsight report`: this segmentation's counts and a row of examples.
    run.segment_dir.mkdir(exist_ok=True)
    save_panel(run.segment_dir / "examples.png", [[p] for p in pictures])
    write_text(run.segment_summary, json.dumps({
        "out": str(out), "images": str(images), "method": method,
        "instances_per_image": [len(r["instances"]) for r in results],
        "skipped": len(folder.skipped)}))
    return summary
