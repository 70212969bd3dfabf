"""CutLER segmenter: DropLoss vs a hand loop, self-training targets vs a worked example,
learning on planted ellipses, save/load round trip."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.models.detection.roi_heads import fastrcnn_loss

from selfsight.segment.model import (
    IGNORE_LABEL,
    DropLossRoIHeads,
    InstanceSegmenter,
    SegmenterConfig,
    build_segmenter,
)
from selfsight.segment.overlap import mask_iou
from selfsight.segment.segmenter import (
    load_segmenter,
    make_target,
    predict,
    save_segmenter,
    self_training_targets,
    train_segmenter,
    train_with_self_training,
)

SIZE = 64


def ellipse_scenes(n: int, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Bright non-overlapping ellipses (planted exact masks) on a noisy dark background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images, masks = [], []
    for _ in range(n):
        image = rng.normal(60, 15, (SIZE, SIZE))
        objects: list[np.ndarray] = []
        for _ in range(rng.integers(2, 4)):
            for _ in range(50):  # rejection-sample a position that overlaps nothing
                cy, cx = rng.uniform(12, SIZE - 12, 2)
                ry, rx = rng.uniform(5, 11, 2)
                mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
                if not any((mask & o).any() for o in objects):
                    break
            objects.append(mask)
            image[mask] = rng.uniform(150, 230) + rng.normal(0, 10, mask.sum())
        images.append(np.clip(image, 0, 255).astype(np.uint8))
        masks.append(np.stack(objects))
    return np.stack(images), masks


def mean_best_iou(predictions: list[dict[str, np.ndarray]], masks: list[np.ndarray],
                  score: float) -> float:
    """Mean over planted objects of the best IoU with any prediction scoring >= ``score``."""
    best = []
    for pred, truth in zip(predictions, masks):
        found = pred["masks"][pred["scores"] >= score]
        best += list(mask_iou(truth, found).max(axis=1) if len(found) else np.zeros(len(truth)))
    return float(np.mean(best))


def box_iou_by_hand(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return w * h / (area - w * h)


def test_droploss_ignores_proposals_far_from_every_pseudo_box() -> None:
    torch.manual_seed(0)
    heads = DropLossRoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, None, 0.05, 0.5, 10,
                             drop_iou=0.01)
    truth = [10.0, 10.0, 30.0, 30.0]
    proposals = torch.tensor([
        [11.0, 11.0, 30.0, 31.0],  # IoU ~0.9: object
        [15.0, 15.0, 40.0, 40.0],  # IoU ~0.3: background, kept
        [26.0, 26.0, 50.0, 50.0],  # IoU ~0.017: background, kept
        [29.0, 29.0, 60.0, 60.0],  # IoU ~0.0007: dropped
        [70.0, 70.0, 90.0, 90.0],  # IoU 0: dropped
    ])
    targets = [{"boxes": torch.tensor([truth]), "labels": torch.ones(1, dtype=torch.int64)},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    sampled, _, labels, regression = heads.select_training_samples(
        [proposals, proposals.clone()], targets)

    def expected(box: list[float]) -> int:
        iou = box_iou_by_hand(box, truth)
        return 1 if iou >= 0.5 else IGNORE_LABEL if iou <= 0.01 else 0

    assert labels[0].tolist() == [expected(b) for b in sampled[0].tolist()]
    assert sorted(labels[0].tolist()) == [IGNORE_LABEL, IGNORE_LABEL, 0, 0, 1, 1]  # + the GT box
    assert labels[1].tolist() == [0] * 5  # no pseudo-masks: plain background, nothing dropped

    all_labels = torch.cat(labels)
    logits = torch.randn(len(all_labels), 2)
    loss, _ = fastrcnn_loss(logits, torch.zeros(len(all_labels), 8), labels, regression)
    kept = [(row, y) for row, y in zip(logits.tolist(), all_labels.tolist()) if y != IGNORE_LABEL]
    by_hand = sum(math.log(sum(math.exp(v) for v in row)) - row[y] for row, y in kept) / len(kept)
    assert len(kept) == len(all_labels) - 2
    assert loss.item() == pytest.approx(by_hand, rel=1e-5)


def test_self_training_targets_worked_example() -> None:
    def box_mask(y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        mask = np.zeros((10, 10), dtype=bool)
        mask[y0:y1, x0:x1] = True
        return mask

    old_a, old_b, old_c = box_mask(0, 0, 4, 4), box_mask(6, 6, 10, 10), box_mask(0, 6, 3, 10)
    new_a = box_mask(0, 0, 4, 3)  # IoU 0.75 with old_a: covers it
    new_d = box_mask(5, 0, 9, 4)  # an object the pseudo-masks missed
    weak_c = box_mask(0, 6, 3, 10)  # covers old_c exactly but scores too low to count
    partial_b = box_mask(6, 6, 10, 8)  # IoU 0.5 with old_b but score too low
    predictions = [
        {"masks": np.stack([new_a, new_d, weak_c, partial_b]),
         "scores": np.array([0.9, 0.7, 0.69, 0.2])},
        {"masks": np.zeros((0, 10, 10), dtype=bool), "scores": np.zeros(0)},
        {"masks": np.stack([new_d]), "scores": np.array([0.95])},
    ]
    pseudo = [np.stack([old_a, old_b, old_c]), np.stack([old_b]), np.zeros((0, 10, 10), bool)]
    targets = self_training_targets(pseudo, predictions, score_keep=0.7, cover_iou=0.5)
    np.testing.assert_array_equal(targets[0], np.stack([new_a, new_d, old_b, old_c]))
    np.testing.assert_array_equal(targets[1], np.stack([old_b]))  # nothing predicted: kept
    np.testing.assert_array_equal(targets[2], np.stack([new_d]))


def test_targets_flip_with_the_image() -> None:
    masks = np.zeros((1, 8, 8), dtype=bool)
    masks[0, 2:5, 1:3] = True
    plain = make_target(masks, False, torch.device("cpu"))
    flipped = make_target(masks, True, torch.device("cpu"))
    assert plain["boxes"].tolist() == [[1.0, 2.0, 3.0, 5.0]]
    assert flipped["boxes"].tolist() == [[5.0, 2.0, 7.0, 5.0]]  # x -> 8 - x
    assert torch.equal(flipped["masks"], plain["masks"].flip(-1))


@pytest.fixture(scope="module")
def trained() -> tuple[InstanceSegmenter, SegmenterConfig, list[dict[str, float]]]:
    torch.set_num_threads(1)
    images, masks = ellipse_scenes(16)
    config = SegmenterConfig(image_size=SIZE, steps=70, batch_size=4, warmup_steps=10)
    history: list[dict[str, float]] = []
    model = train_segmenter(images, masks, config, device="cpu", progress=False,
                            history=history)
    return model, config, history


def test_training_lowers_the_loss_and_recovers_planted_objects(trained: tuple) -> None:
    model, config, history = trained
    images, masks = ellipse_scenes(16)
    first = np.mean([r["loss"] for r in history[:5]])
    last = np.mean([r["loss"] for r in history[-10:]])
    assert last < 0.5 * first
    torch.manual_seed(0)
    untrained = predict(build_segmenter(config).eval(), images, score_threshold=0.0,
                        device="cpu")
    learned = predict(model, images, score_threshold=0.3, device="cpu")
    before = mean_best_iou(untrained, masks, 0.0)
    after = mean_best_iou(learned, masks, 0.3)
    assert after > 0.6 and after > before + 0.3, (before, after)


def test_save_load_gives_identical_predictions(trained: tuple, tmp_path: Path) -> None:
    model, config, _ = trained
    images, _ = ellipse_scenes(4, seed=1)
    save_segmenter(model, config, tmp_path)
    loaded = load_segmenter(tmp_path)
    before = predict(model, images, score_threshold=0.0, device="cpu")
    after = predict(loaded, images, score_threshold=0.0, device="cpu")
    assert loaded.config == config
    assert sum(len(p["scores"]) for p in before) > 0
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a["masks"], b["masks"])
        np.testing.assert_array_equal(a["scores"], b["scores"])
        np.testing.assert_array_equal(a["boxes"], b["boxes"])


def test_self_training_round_trains_on_merged_targets() -> None:
    torch.set_num_threads(1)
    images, masks = ellipse_scenes(4)
    config = SegmenterConfig(image_size=SIZE, steps=2, batch_size=2, score_keep=0.0)
    model, history = train_with_self_training(images, masks, config, rounds=1, device="cpu")
    assert [len(losses) for losses in history["losses"]] == [2, 2]
    # score_keep=0: every prediction is kept, so round 1 has at least as many targets.
    assert history["targets_per_image"][1] >= history["targets_per_image"][0]
    assert model.roi_heads.drop_iou == config.drop_iou
