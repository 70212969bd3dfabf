"""The full evaluation of a frozen backbone beyond kNN and the linear probe: the sections of
``RUN/eval/<name>.json`` that the report draws (schema in each function's result)."""

from __future__ import annotations

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

FEW_SHOT_SETTINGS = ((5, 1), (5, 5), (10, 5))


def evaluation_sections(
    backbone: Backbone,
    train: ImageSet,
    test: ImageSet,
    train_f: torch.Tensor,
    test_f: torch.Tensor,
    device: torch.device,
    pixels: bool = True,
    progress: bool = True,
) -> tuple[dict, dict[str, np.ndarray]]:
    """(sections, predictions): kNN sweep, few-shot, clustering, robustness, per-class
    coverage, near-duplicates and inference cost; predictions = test features, labels, kNN."""
    y_train, y_test = torch.tensor(train.labels).long(), torch.tensor(test.labels).long()
    classes = int(max(y_train.max(), y_test.max())) + 1

    predicted = knn_predict(train_f, y_train, test_f, 20, 0.1, classes).argmax(1).numpy()
    sections: dict = {
        "knn_sweep": knn_sweep(train_f, y_train, test_f, y_test),
        "few_shot": [few_shot(test_f, y_test, n, k) for n, k in FEW_SHOT_SETTINGS
                     if n <= len(y_test.unique())],
        "clustering": cluster_metrics(torch.cat([train_f, test_f]).numpy(),
                                      np.concatenate([train.labels, test.labels])),
        "robustness": knn_robustness(backbone, train_f, y_train, test, device),
        "per_class": per_class(train.labels, test.labels, predicted, test.classes),
        "near_duplicates": {**near_duplicates(test_f, train_f),
                            "test_pairs": near_duplicates(test_f)["pairs"],
                            "note": "pairs: test images with a training image closer than "
                                    "relative x the median neighbour distance; test_pairs: "
                                    "pairs within the test split"},
        "compute": inference_cost(backbone, np.asarray(test.images[:512]), device),
    }
    if pixels:
        sections["clustering"]["pixels"] = cluster_metrics(
            pixel_vectors(np.concatenate([train.images, test.images])),
            np.concatenate([train.labels, test.labels]), n_init=1)
    predictions = {"test_features": test_f.numpy().astype(np.float16),
                   "test_labels": test.labels.astype(np.int64), "knn_pred": predicted}
    return sections, predictions


def knn_robustness(backbone: Backbone, train_f: torch.Tensor, y_train: torch.Tensor,
                   test: ImageSet, device: torch.device) -> dict:
    """kNN (k=20, T=0.1, the clean training features as the bank) on clean and corrupted test
    images: what a deployed model meets when the camera, light or exposure changes."""
    classes = max(int(y_train.max()), int(test.labels.max())) + 1

    def classify(images: np.ndarray) -> np.ndarray:
        feats = extract_features(backbone, images, device=device, progress=False)
        return knn_predict(train_f, y_train, feats, 20, 0.1, classes).argmax(1).numpy()

    return {"classifier": "kNN (k=20, T=0.1) with the clean training features",
            **corruption_accuracy(classify, np.asarray(test.images), test.labels)}


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
