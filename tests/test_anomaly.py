"""Anomaly detection: kNN/coreset against brute force, metrics against hand-computed cases,
the defect generator's masks, outliers above inliers on real images, save/load, and the CLI."""

import json

import numpy as np
import pytest
import torch

from conftest import assert_reads_back
from selfsight.anomaly import (
    AnomalyConfig,
    AnomalyModel,
    anomaly_fit,
    anomaly_score,
    image_auroc,
    kcenter_greedy,
    knn_distance,
    pixel_auroc,
    pro_auc,
    pro_curve,
)
from selfsight.backbones import Backbone, BackboneConfig
from selfsight.cli import main
from selfsight.data.defects import DEFECT_KINDS, FOREGROUND, add_defects, write_defect_folder
from selfsight.results import AnomalyScores


def tiny_backbone(size: int = 28) -> Backbone:
    """An untrained quarter-width ResNet-18 (random features already separate FMNIST items)."""
    torch.manual_seed(0)
    return Backbone(BackboneConfig(name="resnet18", in_chans=1, image_size=size, stem_stride=2,
                                   model_kwargs={"channels": (8, 16, 32, 64)}, mean=(0.29,),
                                   std=(0.35,))).eval()


def test_knn_distance_matches_brute_force_across_blocks():
    g = torch.Generator().manual_seed(0)
    queries, bank = torch.randn(37, 5, generator=g), torch.randn(101, 5, generator=g)
    for k in (1, 4):
        got = knn_distance(queries, bank, k=k, query_block=8, bank_block=16)
        full = ((queries[:, None] - bank[None]) ** 2).sum(-1).sqrt()  # (37, 101)
        expected = full.sort(dim=1).values[:, :k].mean(dim=1)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def brute_force_kcenter(x: np.ndarray, first: int, size: int) -> list[int]:
    """Each step: the point whose distance to its nearest chosen point is largest."""
    chosen = [first]
    while len(chosen) < size:
        d = np.linalg.norm(x[:, None] - x[chosen][None], axis=-1).min(axis=1)  # (N,)
        chosen.append(int(d.argmax()))
    return chosen


def test_kcenter_greedy_keeps_the_farthest_points():
    rng = np.random.default_rng(0)
    cluster = rng.normal(0, 0.1, (300, 16))
    far = np.zeros((5, 16))
    far[np.arange(5), np.arange(5)] = [10, 20, 30, 40, 50]  # planted, far from the cluster
    x = np.concatenate([cluster, far]).astype(np.float32)
    chosen = kcenter_greedy(torch.from_numpy(x), 12, projection=None, seed=3).tolist()
    assert chosen == brute_force_kcenter(x, chosen[0], 12)
    assert set(range(300, 305)) <= set(chosen[:6])  # every planted point among the first 6
    projected = kcenter_greedy(torch.from_numpy(x), 6, projection=8, seed=3).tolist()
    assert set(range(300, 305)) <= set(projected)  # survives a random projection to 8 dims


def test_metrics_on_a_hand_computed_case():
    masks = np.array([[[1, 1, 0, 0], [0, 0, 0, 1]]], dtype=bool)  # regions {(0,0),(0,1)}, {(1,3)}
    maps = np.array([[[0.9, 0.5, 0.7, 0.1], [0.2, 0.3, 0.4, 0.6]]])
    # Descending: 0.9 (region 1 half) 0.7 (normal) 0.6 (region 2) 0.5 (region 1 rest) ...
    fpr, pro = pro_curve(masks, maps)
    np.testing.assert_allclose(fpr, [0, 0, 0.2, 0.2, 0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(pro, [0, 0.25, 0.25, 0.75, 1, 1, 1, 1, 1])
    # Area to FPR 0.3: 0.25 * 0.2 + 1.0 * 0.1 = 0.15, normalised by 0.3.
    assert pro_auc(masks, maps, max_fpr=0.3) == pytest.approx(0.5)
    # Pixel AUROC: positive/negative pairs ordered right: 0.9 beats 5, 0.6 and 0.5 beat 4 each.
    assert pixel_auroc(masks, maps) == pytest.approx(13 / 15)
    assert image_auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75


def slow_pro_curve(masks: np.ndarray, maps: np.ndarray) -> tuple[list[float], list[float]]:
    """PRO at every distinct threshold straight from the definition (scipy labels)."""
    from scipy import ndimage

    regions = []
    for i, mask in enumerate(masks):
        labelled, n = ndimage.label(mask, structure=np.ones((3, 3)))
        for r in range(1, n + 1):
            region = np.zeros_like(masks)
            region[i] = labelled == r
            regions.append(region)
    fprs, pros = [0.0], [0.0]
    for t in sorted(set(maps.ravel()), reverse=True):
        pred = maps >= t
        fprs.append((pred & ~masks).sum() / (~masks).sum())
        pros.append(np.mean([(pred & r).sum() / r.sum() for r in regions]))
    return fprs, pros


def test_pro_curve_matches_the_definition_on_random_maps():
    rng = np.random.default_rng(1)
    masks = np.zeros((3, 9, 9), dtype=bool)
    masks[0, 1:3, 1:4] = masks[0, 6:8, 6:8] = masks[2, 4:7, 2:3] = True  # 3 regions, 1 clean image
    maps = np.round(rng.random((3, 9, 9)) + masks * 0.4, 2)  # ties on purpose
    fpr, pro = pro_curve(masks, maps)
    fprs, pros = slow_pro_curve(masks, maps)
    np.testing.assert_allclose(fpr, fprs)
    np.testing.assert_allclose(pro, pros)
    assert pro_auc(masks, np.where(masks, 1.0, 0.0)) == pytest.approx(1.0)


@pytest.mark.parametrize("channels", [1, 3])
def test_defect_masks_are_exactly_the_changed_item_pixels(fmnist_small, channels):
    images = fmnist_small.images[:40]
    if channels == 3:
        images = np.repeat(images, 3, axis=-1)
    out, masks, kinds = add_defects(images, seed=5)
    assert kinds[:4] == list(DEFECT_KINDS) and out.dtype == np.uint8
    changed = (out != images).any(axis=-1)  # (N, H, W)
    np.testing.assert_array_equal(changed, masks)
    assert (masks.sum(axis=(1, 2)) >= 4).all()
    assert (images.mean(axis=-1)[masks] > FOREGROUND).all()  # defects sit on the item
    again, _, _ = add_defects(images, seed=5)
    np.testing.assert_array_equal(again, out)
    assert not np.array_equal(add_defects(images, seed=6)[1], masks)


def test_injected_outliers_score_above_inliers(fmnist_small):
    """Bank: T-shirts. Other T-shirts score low; sneakers and damaged T-shirts score high."""
    images, labels = fmnist_small.images, fmnist_small.labels
    shirts, sneakers = images[labels == 0], images[labels == 7]
    normal, held = shirts[:120], shirts[120:180]
    damaged, masks, _ = add_defects(held[:30], kinds=("hole", "missing"), seed=0)
    queries = np.concatenate([held[30:], sneakers[:30], damaged])
    y = np.r_[np.zeros(30), np.ones(30)]
    # Random features are weak, but far better than chance (0.5, spread ~0.075 at 30 vs 30).
    # quantile 0.9: 12 held-out images back it (0.99 would need 100 and set no threshold).
    default = AnomalyModel.fit(tiny_backbone(), normal, AnomalyConfig(coreset=0.25, quantile=0.9),
                               device="cpu", progress=False)
    scores = default.score(queries, device="cpu", progress=False)
    inliers, other, _ = np.split(scores["image"], [30, 60])
    assert image_auroc(y, np.r_[inliers, other]) > 0.9  # measured 0.97
    assert scores["anomalous"][30:60].mean() > scores["anomalous"][:30].mean()
    # Small damage: finer levels (14x14 patches) and the max patch score.
    local = AnomalyModel.fit(tiny_backbone(), normal,
                             AnomalyConfig(coreset=0.25, levels=[1, 2], image_score="patch"),
                             device="cpu", progress=False)
    scores = local.score(queries, device="cpu", progress=False)
    inliers, _, broken = np.split(scores["image"], [30, 60])
    assert image_auroc(y, np.r_[inliers, broken]) > 0.72  # measured 0.82
    gt = np.concatenate([np.zeros((60, 28, 28), bool), masks])
    assert pixel_auroc(gt, scores["maps"]) > 0.6  # measured 0.68


def test_fit_save_load_score_round_trip(fmnist_small, tmp_path):
    images = fmnist_small.images[fmnist_small.labels == 1][:60]
    config = AnomalyConfig(coreset=0.2, quantile=0.9, val_fraction=0.25, image_score="combined")
    model = AnomalyModel.fit(tiny_backbone(), images, config, device="cpu", progress=False)
    model.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "anomaly.json", "anomaly.safetensors", "backbone.json", "backbone.safetensors"]
    loaded = AnomalyModel.load(tmp_path / "model")
    assert loaded.config == config and loaded.calibration == model.calibration
    queries = fmnist_small.images[:20]
    a = model.score(queries, device="cpu", progress=False)
    b = loaded.score(queries, device="cpu", progress=False)
    for key in ("image", "patch", "pooled", "maps"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6)
    # The threshold rule: the 0.9 quantile of the held-out normal images' scores.
    val = np.sort(np.random.default_rng(0).permutation(60)[:15])
    val_scores = model.score(images[val], device="cpu", progress=False)["image"]
    assert model.calibration.threshold == pytest.approx(np.quantile(val_scores, 0.9), rel=1e-5)
    assert model.calibration.info["bank_images"] == 45


def test_bad_options_name_the_choices(tmp_path):
    with pytest.raises(ValueError, match="patch"):
        AnomalyConfig(image_score="max")
    tiny_backbone().save(tmp_path / "run")
    with pytest.raises(ValueError, match="coreset"):
        anomaly_fit(tmp_path / "run", np.zeros((4, 28, 28, 1), np.uint8), corset=0.1)
    with pytest.raises(FileNotFoundError, match="anomaly fit"):
        anomaly_score(tmp_path / "run", np.zeros((4, 28, 28, 1), np.uint8))


def test_cli_fit_and_score_a_defect_folder(fmnist_small, tmp_path, capsys):
    items = fmnist_small.images[fmnist_small.labels == 8]  # bags
    root = write_defect_folder(tmp_path / "bags", items[:80], items[80:100], items[100:120],
                               kinds=("hole", "missing"), seed=0)
    run = tmp_path / "run"
    tiny_backbone().save(run)
    # 10 of the 80 held out: enough for a 0.9-quantile threshold (0.99 would need 100).
    assert main(["anomaly", "fit", str(run), str(root / "train" / "good"), "--set",
                 "coreset=0.2", "--set", "quantile=0.9", "--set", "val_fraction=0.125",
                 "--no-progress"]) == 0
    assert (run / "anomaly" / "anomaly.json").is_file()
    out = tmp_path / "scores"
    assert main(["anomaly", "score", str(run / "anomaly"), str(root / "test"), "--out",
                 str(out), "--overlays", "5", "--no-progress"]) == 0
    assert "flagged anomalous" in capsys.readouterr().out
    result = json.loads((out / "scores.json").read_text())
    assert_reads_back(AnomalyScores, out / "scores.json")
    assert result["count"] == 40 and len(result["results"]) == 40
    assert len(list((out / "overlays").glob("*.png"))) == 5
    # The JSON holds what the saved model computes on the same pictures, flagged by threshold.
    from selfsight.data import load_images

    scores = np.array([r["score"] for r in result["results"]])
    flags = np.array([r["anomalous"] for r in result["results"]])
    pictures = load_images(root / "test", size=28, channels=1).images
    expected = AnomalyModel.load(run / "anomaly").score(pictures, device="cpu", progress=False)
    np.testing.assert_allclose(scores, expected["image"], rtol=1e-5)
    np.testing.assert_array_equal(flags, scores >= result["threshold"])
    masks = sorted((root / "ground_truth" / "defect").glob("*_mask.png"))
    assert len(masks) == 20
