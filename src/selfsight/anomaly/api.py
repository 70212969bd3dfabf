"""The anomaly verbs: ``anomaly_fit`` (a run's backbone + normal images -> a fitted model folder)
and ``anomaly_score`` (a model folder + images -> per-file scores, flags and overlay PNGs)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from selfsight.anomaly.model import AnomalyConfig, AnomalyModel
from selfsight.anomaly.overlay import save_overlay
from selfsight.backbones import load_backbone
from selfsight.config import config_from_dict
from selfsight.data import ImageSet, load_every_image, load_images
from selfsight.device import current_precision, default_device, runs_at_precision
from selfsight.file_names import display_name, portable_name
from selfsight.results import AnomalyScores
from selfsight.run_folder import RunFolder


def _images(data: Any, size: int, channels: int, progress: bool = True) -> ImageSet:
    """Anything ``load_images`` accepts; folders are decoded at the model's input size."""
    return load_images(data, split="train", size=size, channels=channels, progress=progress)


def _label(data: Any) -> str:
    return str(data) if isinstance(data, (str, os.PathLike)) else type(data).__name__


@runs_at_precision
def anomaly_fit(run: str | Path, normal_images: Any, out: str | Path | None = None, *,
                device: str | None = None, progress: bool = True, **options: Any) -> Path:
    """Fit a PatchCore-style memory bank (Roth et al., 2022) on ``normal_images`` with the
    backbone of ``run``; returns the model folder (default RUN/anomaly).

    ``options`` set :class:`AnomalyConfig` fields (levels, coreset, image_score, quantile,
    val_fraction, ...). A ``val_fraction`` slice of the normal images is held out of the bank;
    the decision threshold is the ``quantile`` of their image scores.
    """
    config = config_from_dict(AnomalyConfig, options, "anomaly options")
    backbone = load_backbone(run)
    size = config.image_size or backbone.config.image_size
    images = _images(normal_images, size, backbone.config.in_chans, progress)
    started = time.perf_counter()
    model = AnomalyModel.fit(backbone, images.images, config, device=device, progress=progress)
    out = Path(out) if out is not None else RunFolder(run).anomaly
    return model.save(out, extra={"run": str(run), "normal_images": _label(normal_images),
                                  "fit_seconds": round(time.perf_counter() - started, 1),
                                  "precision": current_precision(device).name})


@runs_at_precision
def anomaly_score(model_dir: str | Path, images: Any, out: str | Path | None = None, *,
                  overlays: int = 50, device: str | None = None,
                  progress: bool = True) -> AnomalyScores:
    """Score ``images`` with a fitted model; writes OUT/scores.json (per-file score and flag)
    and overlay PNGs of the ``overlays`` highest-scoring images to OUT/overlays/ (default OUT:
    MODEL_DIR/scores). Returns the JSON content. File names, in the JSON and in the overlays'
    own names, are written as :func:`selfsight.files.portable_name` writes them."""
    model = AnomalyModel.load(model_dir)
    # Every image, as embed and predict read them (a pre-split folder: train/ then test/).
    data = load_every_image(images, model.image_size, model.backbone.config.in_chans, progress)
    started = time.perf_counter()
    scores = model.score(data.images, device=device, progress=progress)
    shown, cal = data.row_names(), model.calibration
    names = [portable_name(name) for name in shown]
    out = Path(out) if out is not None else Path(model_dir) / "scores"
    out.mkdir(parents=True, exist_ok=True)
    ranked = np.argsort(-scores["image"], kind="stable")[:max(0, overlays)]
    vmax = max(float(scores["maps"].max()), cal.pixel_threshold)
    for i in tqdm(ranked, desc="overlays", unit="image", disable=not progress):
        flag = "ANOMALOUS" if scores["anomalous"][i] else "normal"
        save_overlay(out / "overlays" / f"{Path(names[i]).stem}_{i:05d}.png", data.images[i],
                     scores["maps"][i], cal.pixel_threshold, vmax=vmax,
                     title=f"{display_name(shown[i])}: {scores['image'][i]:.3f} ({flag}; "
                           f"threshold {cal.threshold:.3f})")
    result = {
        "model": str(model_dir), "images": _label(images), "count": len(data),
        "flagged": int(scores["anomalous"].sum()), "image_score": model.config.image_score,
        "threshold": cal.threshold, "pixel_threshold": cal.pixel_threshold,
        "threshold_rule": f"{model.config.quantile} quantile of {cal.val_images} held-out "
                          "normal images' scores",
        "skipped_files": [portable_name(f) for f, _ in data.skipped],
        "seconds": round(time.perf_counter() - started, 1),
        "device": str(default_device(device)), "precision": current_precision(device).name,
        "results": [{"file": name, "score": float(scores["image"][i]),
                     "anomalous": bool(scores["anomalous"][i]),
                     "patch_score": float(scores["patch"][i]),
                     "pooled_score": float(scores["pooled"][i])}
                    for i, name in enumerate(names)],
    }
    typed = AnomalyScores.from_json(result)
    typed.save(out / "scores.json")
    return typed
