"""The full evaluation of a frozen backbone beyond kNN and the linear probe: the sections of
``RUN/eval/<name>.json`` that the report draws (schema in each function's result)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from selfsight.backbones import Backbone
from selfsight.data import ImageSet
from selfsight.eval.clustering import cluster_metrics
from selfsight.eval.drift import near_duplicates, per_class
from selfsight.eval.extract import extract_features, preprocess
from selfsight.eval.knn import knn_predict
from selfsight.eval.probes import few_shot, knn_sweep
from selfsight.eval.robustness import corruption_accuracy
from selfsight.eval.timing import median_ms_per_image
from selfsight.files import write_atomic
from selfsight.progress import stage
from selfsight.results import EvalResult, LabelEfficiency
from selfsight.run_folder import RunFolder

FEW_SHOT_SETTINGS = ((5, 1), (5, 5), (10, 5))


@dataclass(frozen=True)
class SectionSizes:
    """How many images the costly sections use: a seeded random subsample by default, so the
    full evaluation of Fashion-MNIST fits in minutes on a CPU; None: all of them."""

    robustness: int | None = 2000  # test images, each passed 21 times (clean + 20 corruptions)
    clustering: int | None = 10_000  # training + test images, k-means x 3 seeds
    seed: int = 0

    @classmethod
    def everything(cls) -> SectionSizes:
        return cls(robustness=None, clustering=None)


def subsample(n: int, size: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random ``size`` of ``n`` items (all when size is None)."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def evaluation_sections(
    backbone: Backbone,
    train: ImageSet,
    test: ImageSet,
    train_f: torch.Tensor,
    test_f: torch.Tensor,
    device: torch.device,
    pixels: bool = True,
    progress: bool = True,
    sizes: SectionSizes | None = None,
    robustness: bool = True,
) -> tuple[dict, dict[str, np.ndarray]]:
    """(sections, predictions): kNN sweep, few-shot, clustering, robustness (image corruptions;
    ``robustness=False`` leaves it out, as for signals), per-class coverage, near-duplicates
    and inference cost; predictions = test features, labels, kNN."""
    sizes = sizes or SectionSizes()
    y_train, y_test = torch.tensor(train.labels).long(), torch.tensor(test.labels).long()
    classes = int(max(y_train.max(), y_test.max())) + 1
    sections: dict = {}
    with stage(f"kNN sweep over k and T ({len(test):,} test images)", progress):
        predicted = knn_predict(train_f, y_train, test_f, 20, 0.1, classes).argmax(1).numpy()
        sections["knn_sweep"] = knn_sweep(train_f, y_train, test_f, y_test)
    with stage("few-shot episodes (" + ", ".join(f"{n}-way {k}-shot" for n, k in
                                                 FEW_SHOT_SETTINGS) + ")", progress):
        sections["few_shot"] = [few_shot(test_f, y_test, n, k) for n, k in FEW_SHOT_SETTINGS
                                if n <= len(y_test.unique())]
    all_labels = np.concatenate([train.labels, test.labels])
    rows = subsample(len(all_labels), sizes.clustering, sizes.seed)
    with stage(f"k-means clustering ({len(rows):,} of {len(all_labels):,} images, 3 seeds"
               + (", and raw pixels" if pixels else "") + ")", progress):
        sections["clustering"] = cluster_metrics(torch.cat([train_f, test_f]).numpy()[rows],
                                                 all_labels[rows])
        if pixels:
            both = np.concatenate([np.asarray(train.images), np.asarray(test.images)])
            sections["clustering"]["pixels"] = cluster_metrics(
                pixel_vectors(both[rows]), all_labels[rows], n_init=1)
        sections["clustering"]["subsample"] = subsample_note(rows, len(all_labels), sizes)
    if robustness:
        sections["robustness"] = knn_robustness(backbone, train_f, y_train, test, device, sizes,
                                                progress)
    with stage("per-class accuracy, near-duplicates, inference latency", progress):
        sections["per_class"] = per_class(train.labels, test.labels, predicted, test.classes)
        sections["near_duplicates"] = {
            **near_duplicates(test_f, train_f), "test_pairs": near_duplicates(test_f)["pairs"],
            "note": "pairs: test images with a training image closer than relative x the "
                    "median neighbour distance; test_pairs: pairs within the test split"}
        sections["compute"] = inference_cost(backbone, np.asarray(test.images[:512]), device)
    predictions = {"test_features": test_f.numpy().astype(np.float16),
                   "test_labels": test.labels.astype(np.int64), "knn_pred": predicted}
    return sections, predictions


def subsample_note(rows: np.ndarray, total: int, sizes: SectionSizes) -> str:
    if len(rows) == total:
        return f"all {total} images"
    return f"{len(rows)} of {total} images, drawn at random with seed {sizes.seed}"


def knn_robustness(backbone: Backbone, train_f: torch.Tensor, y_train: torch.Tensor,
                   test: ImageSet, device: torch.device, sizes: SectionSizes | None = None,
                   progress: bool = False) -> dict:
    """kNN (k=20, T=0.1, the clean training features as the bank) on clean and corrupted test
    images (a seeded subsample of ``sizes.robustness``): what a deployed model meets when the
    camera, light or exposure changes."""
    sizes = sizes or SectionSizes()
    rows = subsample(len(test), sizes.robustness, sizes.seed)
    classes = max(int(y_train.max()), int(test.labels.max())) + 1

    def classify(images: np.ndarray) -> np.ndarray:
        feats = extract_features(backbone, images, device=device, progress=False)
        return knn_predict(train_f, y_train, feats, 20, 0.1, classes).argmax(1).numpy()

    return {"classifier": "kNN (k=20, T=0.1) with the clean training features",
            "subsample": subsample_note(rows, len(test), sizes),
            **corruption_accuracy(classify, np.asarray(test.images)[rows], test.labels[rows],
                                  progress=progress)}


def pixel_vectors(images: np.ndarray, size: int = 28) -> np.ndarray:
    """uint8 (N, H, W, C) -> (N, size * size * C) floats in [0, 1]: the raw-pixel baseline,
    downsampled so k-means on large images stays cheap."""
    x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 255
    if x.shape[-1] > size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="area")
    return x.flatten(1).numpy()


@torch.no_grad()
def inference_cost(backbone: Backbone, images: np.ndarray, device: torch.device,
                   repeats: int = 20) -> dict:
    """Median latency of one image, and per image in a batch, features only (no I/O)."""
    backbone.eval().to(device)
    x = preprocess(torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).to(device), backbone)

    def features(batch: torch.Tensor) -> None:
        backbone(batch)
        if device.type == "cuda":  # wait for the kernels, or only the launch is timed
            torch.cuda.synchronize()

    return {"device": str(device), "dtype": "float32", "batch_size": len(x),
            "latency_ms_batch1": round(median_ms_per_image(lambda: features(x[:1]), 1, repeats), 3),
            "inference_ms_per_image": round(
                median_ms_per_image(lambda: features(x), len(x), repeats), 4)}


def save_evaluation(run: RunFolder, data: Any, result: dict[str, Any], started: float,
                    predictions: dict[str, np.ndarray] | None,
                    label_study: Callable[[], dict[str, Any]] | None) -> EvalResult:
    """The end every ``evaluate`` shares: the predictions (``<data>_predictions.npz``), the
    result with its time (``<data>.json``), then, with ``label_study``, the label-efficiency
    study it runs (``<data>_label_efficiency.json``), each written atomically."""
    if predictions is not None:
        write_atomic(run.evaluation(data, "_predictions.npz"),
                     lambda f: np.savez_compressed(f, **predictions))
    result["eval_seconds"] = round(time.perf_counter() - started, 1)
    typed = EvalResult.from_json(result)
    typed.save(run.evaluation(data))
    if label_study is not None:
        typed.label_efficiency = LabelEfficiency.from_json(label_study())
        typed.label_efficiency.save(run.evaluation(data, "_label_efficiency.json"))
    return typed
