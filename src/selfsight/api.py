"""The public verbs: ``pretrain``, ``evaluate``, ``explore`` and ``drift`` (the CLI calls exactly
these)."""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfsight.backbones import (
    backbone_config,
    is_vit_name,
    load_backbone,
    resolve_alias,
)
from selfsight.config import config_from_dict
from selfsight.data import (
    FASHION_MNIST,
    ImageSet,
    align_classes,
    load_eval_sets,
    load_every_image,
    load_images,
)
from selfsight.device import current_precision, default_device, device_for, runs_at_precision
from selfsight.errors import UserError
from selfsight.eval import extract_features, knn_accuracy, linear_probe
from selfsight.eval.drift import drift_score
from selfsight.eval.explore import explore_features
from selfsight.eval.label_efficiency import FinetuneRecipe, label_efficiency
from selfsight.eval.suite import SectionSizes, evaluation_sections, save_evaluation
from selfsight.file_names import portable_name
from selfsight.files import write_atomic, write_text
from selfsight.label_selection import typical_picks
from selfsight.methods import get_method
from selfsight.progress import stage
from selfsight.results import DriftResult, EvalResult, ExploreResult
from selfsight.run_folder import RunFolder
from selfsight.signals.names import is_signal_backbone, is_signal_source
from selfsight.train.defaults import choose_backbone, choose_batch_size, choose_epochs
from selfsight.train.fit import TrainConfig, fit_and_save, with_resolved_precision
from selfsight.train.init_weights import init_method, initial_weights_record
from selfsight.train.run_start import first_process, start_run

KNN_MONITOR_SIZE = 10_000


def _knn_sets(data: Any, train: ImageSet, size: int, channels: int,
              seed: int) -> tuple[ImageSet, ImageSet] | None:
    if train.labels is None or not isinstance(data, (str, Path)):
        return None  # in-memory data has no separate test split to monitor with
    try:
        test = load_images(data, split="test", size=size, channels=channels, progress=False)
        if test.labels is None:
            return None
        test = align_classes(test, train, data)
    except (ValueError, FileNotFoundError):
        return None
    rng = np.random.default_rng(seed)
    bank = rng.permutation(len(train))[:KNN_MONITOR_SIZE]
    queries = rng.permutation(len(test))[:KNN_MONITOR_SIZE]
    return train.subset(np.sort(bank)), test.subset(np.sort(queries))


def pretrain(
    data: Any = FASHION_MNIST,
    method: str = "simclr",
    backbone: str = "auto",
    out: str | Path | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    *,
    image_size: int | None = None,
    view_size: int | None = None,
    channels: int | None = None,
    options: dict[str, Any] | None = None,
    backbone_options: dict[str, Any] | None = None,
    view_options: dict[str, Any] | None = None,
    resume: bool = False,
    allow_changed_data: bool = False,
    init: str | Path | None = None,
    **train_options: Any,
) -> Path:
    """Pretrain ``backbone`` with ``method`` on unlabeled images; returns the run folder.

    ``data``: "fashion-mnist", an image folder, or an array/tensor of images. ``image_size`` is
    the inference resolution saved with the backbone, ``view_size`` the training crop size
    (default: the same; smaller crops train faster and test well a little larger, Touvron et al.
    2019, "Fixing the train-test resolution discrepancy"). ``options`` override
    the method's Config, ``backbone_options`` the BackboneConfig or timm kwargs,
    ``view_options`` fields of every view of the method's recipe (e.g. ``scale=(0.4, 1)``), and
    ``train_options`` any TrainConfig field (time_budget, devices, precision, knn_every, ...).
    ``resume`` refuses when the data changed since the run started, unless
    ``allow_changed_data``; a second run into the same ``out`` is refused while one trains.
    ``init``: start from these weights instead of random ones, a timm/torchvision checkpoint
    (.pth, .pt, .bin, .ckpt, .safetensors) or a selfsight run folder with the same backbone
    (:mod:`selfsight.train.init_weights`); what loaded is printed and kept in config.yaml under
    ``init``. A resumed run continues from its checkpoint and keeps that record.
    """
    if is_signal_source(data):  # sensor signals and time series: the same loop, 1-D parts
        if view_size is not None or channels is not None or init is not None:
            raise UserError("--view-size, --channels and --init are for images, not signals")
        from selfsight.signals.train import pretrain_signals

        return pretrain_signals(data, method, backbone, out, epochs, batch_size,
                                length=image_size, options=options,
                                backbone_options=backbone_options, view_options=view_options,
                                resume=resume, allow_changed_data=allow_changed_data,
                                **train_options)
    method_cls = get_method(method)
    if method_cls.signals_only:
        raise UserError(f"method '{method}' is for signals (uea:NAME, ucr:NAME, .npy/.npz/"
                        ".csv/.ts files of (N, channels, length)), not images")
    config_from_dict(method_cls.Config, options or {}, f"{method} options")  # fail before loading
    device = device_for(train_options.get("accelerator", "auto"))
    backbone = choose_backbone(backbone, device, vit=method_cls.requires_vit)
    if method_cls.requires_vit and not is_vit_name(resolve_alias(backbone)[0]):
        raise UserError(f"{method} needs a ViT backbone (patch tokens), got '{backbone}'; "
                        "try --backbone vit_tiny_patch16_224")
    epochs = choose_epochs(epochs, train_options.get("time_budget"))
    train_cfg = config_from_dict(TrainConfig, {"epochs": epochs, "batch_size": batch_size or 1,
                                               **train_options}, "training options")
    train_cfg, precision = with_resolved_precision(train_cfg)
    images = load_images(data, split="train", size=image_size, channels=channels,
                         progress=train_cfg.progress)
    train_cfg = replace(train_cfg, batch_size=choose_batch_size(batch_size, device, len(images)))
    # Inference at the training crop size measured best here (kNN +1 point over upscaling).
    size = image_size or view_size or images.size[0]
    backbone_cfg = backbone_config(backbone, images.channels, size, backbone_options)
    method_cfg = config_from_dict(method_cls.Config, options or {}, f"{method} options",
                                  base=method_cls.default_config(backbone_cfg))
    views = method_cls.views_for(backbone_cfg, view_size or size).with_options(view_options)
    # Filled by build() before start_run writes config.yaml from it (see init_weights).
    init_facts, init_record, init = initial_weights_record(out, resume, init)

    def build() -> Any:
        model = method_cls(backbone=backbone_cfg, config=method_cfg, views=views,
                           batch_size=train_cfg.batch_size, seed=train_cfg.seed,
                           time_budget=train_cfg.time_budget)
        if init is not None:
            report = init_method(model, init)
            init_record.update(report.to_json())
            if first_process():
                print("\n".join(report.lines()), flush=True)
        return model

    with start_run(
            out, f"{method}-{backbone}", data, images, train_cfg, precision, build, resume,
            allow_changed_data=allow_changed_data, **init_facts) as (run, model):  # RUN/.lock
        knn_sets = _knn_sets(data, images, size, images.channels, train_cfg.seed) \
            if train_cfg.knn_every else None
        fit_and_save(model, images, train_cfg, run.root, resume=resume, knn_sets=knn_sets)
    return run.root


@runs_at_precision
def evaluate(
    run: str | Path,
    data: Any = FASHION_MNIST,
    labels: str | Path | None = None,
    ks: tuple[int, ...] = (20, 200),
    temperature: float = 0.1,
    linear: bool = True,
    pixels: bool = True,
    full: bool = True,
    label_fractions: tuple[float, ...] | None = None,
    seeds: tuple[int, ...] = (0, 1, 2),
    recipe: FinetuneRecipe | None = None,
    device: str | None = None,
    progress: bool = True,
    sizes: SectionSizes | None = None,
) -> EvalResult:
    """Evaluate a run's frozen backbone; written to ``RUN/eval/<data>.json``.

    Always kNN (and the linear probe); with ``full`` also a kNN sweep, few-shot, clustering,
    robustness, per-class coverage, near-duplicates and inference cost, plus the test features
    and predictions (``<data>_predictions.npz``); with ``label_fractions`` the label-efficiency
    A/B against training from scratch (``<data>_label_efficiency.json``). ``sizes``: how many
    images robustness and clustering use (default: seeded subsamples, see SectionSizes).
    A run with a signal backbone, or signal data, goes to :mod:`selfsight.signals.evaluate`
    (raw-series 1-NN baselines in place of raw pixels; ``pixels`` switches them)."""
    run = RunFolder(run)
    backbone = load_backbone(run.root)
    device = default_device(device)
    cfg = backbone.config
    if is_signal_source(data) or is_signal_backbone(cfg.name):
        from selfsight.signals.evaluate import evaluate_signals

        return evaluate_signals(
            run, backbone, data, labels=labels, ks=ks, temperature=temperature, linear=linear,
            raw=pixels, full=full, label_fractions=label_fractions, seeds=seeds, recipe=recipe,
            device=device, progress=progress, sizes=sizes, train_rate=training_throughput(run))
    train, test = load_eval_sets(data, cfg.image_size, cfg.in_chans, labels, progress)
    started = time.perf_counter()
    train_f = extract_features(backbone, train.images, device=device, progress=progress)
    test_f = extract_features(backbone, test.images, device=device, progress=progress)
    y_train, y_test = torch.tensor(train.labels), torch.tensor(test.labels)
    result: dict[str, Any] = {"run": str(run), "data": str(data), "train_images": len(train),
                              "test_images": len(test), "backbone": cfg.name,
                              "precision": current_precision(device).name,
                              "temperature": temperature}
    with stage(f"kNN (k = {', '.join(map(str, ks))}) on {len(test):,} test images", progress):
        result.update(knn_accuracy(train_f, y_train, test_f, y_test, ks, temperature))
    if linear:
        with stage(f"linear probe ({len(train):,} training images, L-BFGS)", progress):
            result.update(linear_probe(train_f, y_train, test_f, y_test))
        result["linear_probe"] = "standardised features, softmax, full-batch L-BFGS, wd 1e-5"
    if pixels:
        with stage("raw-pixel kNN baseline", progress):
            baseline = pixel_knn(train, test, ks, temperature)
        result.update({f"pixels_{k}": v for k, v in baseline.items()})
    predictions = None
    if full:
        sections, predictions = evaluation_sections(backbone, train, test, train_f, test_f,
                                                     device, pixels, progress, sizes)
        sections["compute"]["train_images_per_sec"] = training_throughput(run)
        result.update(sections)

    def study() -> dict[str, Any]:
        return label_efficiency(backbone, train, test, tuple(label_fractions), tuple(seeds),
                                recipe, device, progress)

    return save_evaluation(run, data, result, started, predictions,
                           study if label_fractions else None)


@runs_at_precision
def explore(run: str | Path, data: Any, clusters: int | None = None, max_clusters: int = 20,
            suggest: int = 0, device: str | None = None, progress: bool = True,
            ) -> ExploreResult:
    """What is in unlabelled images, seen through the run's features (:mod:`eval.explore`):
    clusters with their typical images, near-duplicates, and, where the source has labels, how
    well the clusters agree with them. Writes ``RUN/eval/<data>_explore.json``, the features and
    clusters (``_explore.npz``) and ``<data>_clusters.csv`` (file, cluster, similarity to its
    centre) for sorting the images by cluster. ``suggest`` N also picks the N images to label
    first (TypiClust, :mod:`label_selection`) into ``<data>_to_label.csv``. A run with a signal
    backbone, or signal data, explores every series (:mod:`selfsight.signals.embed`)."""
    run = RunFolder(run)
    backbone = load_backbone(run.root)
    cfg = backbone.config
    if is_signal_source(data) or is_signal_backbone(cfg.name):
        from selfsight.signals.embed import every_signal

        images = every_signal(data, backbone)  # a SignalSet: labels, skipped, row_names()
    else:
        images = load_every_image(data, cfg.image_size, cfg.in_chans, progress)
    started = time.perf_counter()
    features = extract_features(backbone, images.images, device=default_device(device),
                                progress=progress).numpy()
    result, rows = explore_features(features, clusters, max_clusters, labels=images.labels,
                                    progress=progress)
    result = {"run": str(run), "data": str(data), "images": len(images),
              "precision": current_precision(device).name,
              "skipped_files": len(images.skipped), **result}
    to_label = run.evaluation(data, "_to_label.csv")
    if suggest:
        with stage(f"TypiClust: {suggest} images to label first", progress):
            picks, picked_from, typical = typical_picks(features, suggest)
        result["to_label"] = {"method": "TypiClust (Hacohen et al., 2022)", "budget": suggest,
                              "rows": picks.tolist(), "file": str(to_label)}
        if images.labels is not None:
            result["to_label"]["classes_covered"] = len(np.unique(images.labels[picks]))
        names = images.row_names()
        write_csv(to_label, ["order", "file", "pick_cluster", "typicality"],
                  ((i + 1, portable_name(names[r]), int(c), f"{t:.4g}")
                   for i, (r, c, t) in enumerate(zip(picks, picked_from, typical))))
    result["explore_seconds"] = round(time.perf_counter() - started, 1)
    typed = ExploreResult.from_json(result)
    typed.save(run.evaluation(data, "_explore.json"))
    write_atomic(run.evaluation(data, "_explore.npz"), lambda f: np.savez_compressed(
        f, features=features.astype(np.float16), cluster=rows["cluster"]))
    write_csv(run.evaluation(data, "_clusters.csv"), ["file", "cluster", "similarity_to_centre"],
              ((portable_name(file), int(c), f"{s:.4f}") for file, c, s in zip(
                  images.row_names(), rows["cluster"], rows["similarity"])))
    return typed


def write_csv(path: Path, header: list[str], rows: Any) -> None:
    """Write ``rows`` under ``header`` atomically as UTF-8 (file names in the rows are given as
    :func:`selfsight.files.portable_name` writes them)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def training_throughput(run: RunFolder) -> float | None:
    """Images/s of the run's last logged training step (None without metrics.jsonl)."""
    path = run.metrics
    if not path.exists():
        return None
    rates = [json.loads(line).get("images_per_sec") for line in path.read_text().splitlines()
             if line.strip()]
    rates = [r for r in rates if r]
    return rates[-1] if rates else None


@runs_at_precision
def drift(run: str | Path, reference: Any, current: Any, permutations: int = 200,
          device: str | None = None, progress: bool = True) -> DriftResult:
    """Embedding drift between two image sets (e.g. last month's and this month's images) in the
    run's feature space: MMD^2 and a permutation p-value; written to ``RUN/eval/drift.json``.
    A run with a signal backbone compares two signal sources (their training split, or the
    one split a file holds) at its trained length."""
    run = RunFolder(run)
    backbone = load_backbone(run.root)
    cfg = backbone.config
    if is_signal_backbone(cfg.name):
        from selfsight.signals.data import load_signals
        from selfsight.signals.embed import signal_features

        feats = []
        for data in (reference, current):
            signals = load_signals(data, "train", cfg.image_size)
            signals.check_channels(cfg.in_chans, data)
            feats.append(signal_features(backbone, signals.signals, device=device))
    elif any(is_signal_source(d) for d in (reference, current)):
        raise UserError(f"{run.root}: its backbone ({cfg.name}) is for images; drift on signals "
                        "needs a run pretrained on signals")
    else:
        feats = [extract_features(backbone, load_images(d, size=cfg.image_size,
                                                        channels=cfg.in_chans,
                                                        progress=progress).images,
                                  device=device, progress=progress) for d in (reference, current)]
    result = {"reference": str(reference), "current": str(current),
              "precision": current_precision(device).name,
              **drift_score(*feats, permutations=permutations)}
    typed = DriftResult.from_json(result)
    typed.save(run.drift)
    return typed


def pixel_knn(train: ImageSet, test: ImageSet, ks: tuple[int, ...] = (20, 200),
              temperature: float = 0.1) -> dict[str, float]:
    """The raw-pixel baseline: the same weighted cosine kNN on flattened pixels."""
    def flat(s: ImageSet) -> torch.Tensor:
        x = torch.from_numpy(np.asarray(s.images, dtype=np.float32).reshape(len(s), -1))
        return torch.nn.functional.normalize(x, dim=1)

    return knn_accuracy(flat(train), torch.tensor(train.labels), flat(test),
                        torch.tensor(test.labels), ks, temperature)
