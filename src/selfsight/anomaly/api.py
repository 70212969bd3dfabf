"""The anomaly verbs: ``anomaly_fit`` (a run's backbone + normal images -> a fitted model folder)
and ``anomaly_score`` (a model folder + images -> per-file scores, flags and overlay PNGs)."""

from __future__ import annotations

import heapq
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from selfsight.anomaly.model import AnomalyConfig, AnomalyModel, resolve_tile
from selfsight.anomaly.overlay import save_overlay
from selfsight.anomaly.tiles import AUTO_SHRINK, FullImages, full_images
from selfsight.backbones import load_backbone
from selfsight.config import config_from_dict
from selfsight.data import ImageSet, load_every_image, load_images
from selfsight.device import current_precision, default_device, runs_at_precision
from selfsight.file_names import display_name, portable_name
from selfsight.results import AnomalyScores, SignalAnomalyScores
from selfsight.run_folder import RunFolder
from selfsight.signals.names import is_signal_backbone


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
    the decision threshold is the ``quantile`` of their image scores. A run with a signal
    backbone fits on signals instead (:mod:`selfsight.signals.anomaly_api`).
    """
    backbone = load_backbone(run)
    if is_signal_backbone(backbone.config.name):  # sensor signals and time series
        from selfsight.signals.anomaly_api import fit_signal_anomaly

        return fit_signal_anomaly(backbone, run, normal_images, out, device=device,
                                  progress=progress, **options)
    config = config_from_dict(AnomalyConfig, options, "anomaly options")
    size = config.image_size or backbone.config.image_size
    channels = backbone.config.in_chans
    full = _full_images(normal_images, channels, config)  # headers only until read
    tile = resolve_tile(config, full.sizes, size) if full is not None else 0
    if full is not None:
        _say(_tile_line(config, tile, full, size))
    images: Any = full if tile else _images(normal_images, size, channels, progress).images
    started = time.perf_counter()
    model = AnomalyModel.fit(backbone, images, config, device=device, progress=progress)
    info = model.calibration.info
    _say(f"memory bank: {info['patch_rows']} patch rows (coreset {config.coreset} of "
         f"{info['patch_rows_searched']} searched, {info['patch_rows_before_coreset']} in all)")
    if model.calibration.threshold is None:
        _say(model.threshold_rule)
    out = Path(out) if out is not None else RunFolder(run).anomaly
    return model.save(out, extra={"run": str(run), "normal_images": _label(normal_images),
                                  "fit_seconds": round(time.perf_counter() - started, 1),
                                  "precision": current_precision(device).name,
                                  "threshold_rule": model.threshold_rule})


def _full_images(data: Any, channels: int, config: AnomalyConfig) -> FullImages | None:
    """The normal images at their own size (headers read, pixels not yet) when tiles may be
    used; None for tile 0 and for sources without own-size images (Fashion-MNIST)."""
    if config.tile == 0 or (isinstance(data, (str, os.PathLike))
                            and not Path(data).expanduser().is_dir()):
        return None
    return full_images(data, channels, every=False)


def _say(line: str) -> None:
    print(line, file=sys.stderr)


def _tile_line(config: AnomalyConfig, tile: int, full: FullImages, size: int) -> str:
    short = sorted(min(s) for s in full.sizes)
    median = short[len(short) // 2]
    how = "auto: " if config.tile == "auto" else ""
    if not tile:
        return (f"tiles: none ({how}whole images resized to {size} px; median short side "
                f"{median} px)")
    return (f"tiles: {tile} px, overlap {config.tile_overlap} ({how}median short side {median} "
            f"px > {AUTO_SHRINK} x the backbone's {size} px: each tile is resized to {size} px, "
            f"so a defect shrinks at most {tile / size:g}x)")


@runs_at_precision
def anomaly_score(model_dir: str | Path, images: Any, out: str | Path | None = None, *,
                  overlays: int = 50, device: str | None = None,
                  progress: bool = True) -> AnomalyScores | SignalAnomalyScores:
    """Score ``images`` with a fitted model; writes OUT/scores.json (per-file score and flag)
    and overlay PNGs of the ``overlays`` highest-scoring images to OUT/overlays/ (default OUT:
    MODEL_DIR/scores). Returns the JSON content. File names, in the JSON and in the overlays'
    own names, are written as :func:`selfsight.files.portable_name` writes them. A model
    fitted on signals scores every time step instead (OUT/step_scores.npy) and draws the top
    ``min(overlays, 6)`` series in one picture (OUT/top_scores.png)."""
    from selfsight.signals.anomaly import is_signal_model

    if is_signal_model(model_dir):
        from selfsight.signals.anomaly_api import score_signal_anomaly

        return score_signal_anomaly(model_dir, images, out, overlays=overlays, device=device,
                                    progress=progress)
    model = AnomalyModel.load(model_dir)
    channels = model.backbone.config.in_chans
    started = time.perf_counter()
    out = Path(out) if out is not None else Path(model_dir) / "scores"
    out.mkdir(parents=True, exist_ok=True)
    if model.tile:
        shown, scores, top, skipped = _score_tiles(model, images, channels, overlays, device,
                                                   progress)
    else:
        # Every image, as embed and predict read them (a pre-split folder: train/ then test/).
        data = load_every_image(images, model.image_size, channels, progress)
        scores = model.score(data.images, device=device, progress=progress)
        shown, skipped = data.row_names(), [f for f, _ in data.skipped]
        ranked = np.argsort(-scores["image"], kind="stable")[:max(0, overlays)]
        top = [(int(i), data.images[i], scores["maps"][i]) for i in ranked]
    seconds = round(time.perf_counter() - started, 1)
    cal = model.calibration
    names = [portable_name(name) for name in shown]
    vmax = max([float(m.max()) for _, _, m in top] + [cal.pixel_threshold or 0.0])
    threshold = "no threshold" if cal.threshold is None else f"threshold {cal.threshold:.3f}"
    for i, image, amap in tqdm(top, desc="overlays", unit="image", disable=not progress):
        flag = "ANOMALOUS" if scores["anomalous"][i] else "normal"
        save_overlay(out / "overlays" / f"{Path(names[i]).stem}_{i:05d}.png", image, amap,
                     cal.pixel_threshold, vmax=vmax,
                     title=f"{display_name(shown[i])}: {scores['image'][i]:.3f} ({flag}; "
                           f"{threshold})")
    result = {
        "model": str(model_dir), "images": _label(images), "count": len(names),
        "flagged": int(scores["anomalous"].sum()), "image_score": model.config.image_score,
        "threshold": cal.threshold, "pixel_threshold": cal.pixel_threshold,
        "threshold_rule": model.threshold_rule,
        "skipped_files": [portable_name(f) for f in skipped],
        "seconds": seconds,
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


def _score_tiles(model: AnomalyModel, images: Any, channels: int, overlays: int,
                 device: str | None, progress: bool) -> tuple[list[str], dict[str, np.ndarray],
                                                              list[tuple], list[str]]:
    """Score images at their own size, one at a time, keeping only the ``overlays``
    highest-scoring images and maps (full-resolution maps of every image would not fit)."""
    full = full_images(images, channels, every=True)
    patch, pooled, readable, skipped = [], [], [], [f for f, _ in full.skipped]
    heap: list[tuple[float, int, int, np.ndarray, np.ndarray]] = []
    cal = model.calibration

    current: list[np.ndarray] = []  # the image being scored, for its overlay

    class _Readable(FullImages):  # files that fail to decode past their header are skipped
        def __iter__(self) -> Any:
            for i in range(len(full)):
                try:
                    image = full.read(i)
                except Exception:  # PIL raises many kinds; listed as skipped
                    skipped.append(full.names[i])
                    continue
                readable.append(i)
                current[:] = [image]
                yield image

    stream = _Readable(full.names, full.sizes, channels, full.paths, full.arrays)
    for k, (p, q, amap) in enumerate(model.iter_tiled(stream, device, progress)):
        patch.append(p)
        pooled.append(q)
        value = float(model._image_score(np.array([p]), np.array([q]), cal)[0])
        if overlays > 0:
            item = (value, -k, k, current[0], amap)
            if len(heap) < overlays:
                heapq.heappush(heap, item)
            elif item[:2] > heap[0][:2]:
                heapq.heapreplace(heap, item)
    scores: dict[str, np.ndarray] = {"patch": np.array(patch, np.float32),
                                     "pooled": np.array(pooled, np.float32)}
    scores["image"] = model._image_score(scores["patch"], scores["pooled"], cal)
    scores["anomalous"] = model.flag(scores["image"])
    top = [(k, image, amap) for _, _, k, image, amap in sorted(heap, reverse=True)]
    return [full.names[i] for i in readable], scores, top, sorted(skipped)
