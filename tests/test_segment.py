"""Patch features, instance-ness and class-agnostic mask AP."""

import numpy as np
import pytest
import torch

from conftest import assert_reads_back
from selfsight.backbones import Backbone, BackboneConfig
from selfsight.results import SegmentResult
from selfsight.segment.coco_eval import mask_ap
from selfsight.segment.instanceness import BACKGROUND, MIXED, instanceness, patch_labels
from selfsight.segment.patch_features import extract_patch_features, patch_grid


def _box(h, w, top, left, bottom, right):
    m = np.zeros((h, w), bool)
    m[top:bottom, left:right] = True
    return m


def test_mask_ap_perfect_partial_and_empty():
    gt = [np.stack([_box(40, 40, 0, 0, 10, 10), _box(40, 40, 20, 20, 40, 40)])]
    assert mask_ap(gt, gt, [np.array([0.9, 0.8])])["AP"] == pytest.approx(1.0)
    # IoU 0.64 (8x10 of 10x10 + ... ): a box shifted by 2 rows -> 80 / 120 = 0.667.
    shifted = [np.stack([_box(40, 40, 2, 0, 12, 10)])]
    r = mask_ap([gt[0][:1]], shifted, [np.array([1.0])])
    # Matched at IoU thresholds 0.50, 0.55, 0.60, 0.65 (4 of 10), not above.
    assert r["AP50"] == pytest.approx(1.0)
    assert r["AP75"] == pytest.approx(0.0)
    assert r["AP"] == pytest.approx(0.4)
    assert mask_ap(gt, [np.zeros((0, 40, 40), bool)], [np.zeros(0)])["AP"] == 0.0
    # A confident false positive ranked first halves precision at the first recall step.
    fp = [np.stack([_box(40, 40, 30, 0, 40, 10), *gt[0]])]
    assert mask_ap(gt, fp, [np.array([0.99, 0.9, 0.8])])["AP"] < 1.0


def test_patch_labels_pure_background_and_mixed():
    masks = np.stack([_box(8, 8, 0, 0, 4, 4), _box(8, 8, 4, 4, 8, 7)])
    labels = patch_labels(masks, (4, 4), purity=0.75)  # 2x2-pixel patches
    assert labels[0, 0] == labels[1, 1] == 0
    assert labels[2, 2] == 1 and labels[3, 2] == 1
    assert labels[2, 3] == MIXED  # half covered
    assert labels[0, 3] == BACKGROUND


def test_instanceness_separates_instance_features_from_category_features():
    rng = np.random.default_rng(0)
    h = w = 8
    masks = [np.stack([_box(32, 32, 0, 0, 16, 16), _box(32, 32, 0, 16, 16, 32)])]
    categories = [np.array([3, 3])]  # two twins
    labels = patch_labels(masks[0], (h, w))

    def features(code):  # (D, h, w): a one-hot code per patch plus noise
        out = rng.normal(0, 0.05, (4, h, w))
        for y in range(h):
            for x in range(w):
                out[code(labels[y, x]), y, x] += 1
        return torch.tensor(out, dtype=torch.float32)[None]

    by_instance = instanceness(features(lambda k: k + 1 if k >= 0 else 0), masks, categories)
    by_category = instanceness(features(lambda k: 1 if k >= 0 else 0), masks, categories)
    assert by_instance["same_category"] > 0.99 and by_instance["background"] > 0.99
    assert 0.3 < by_category["same_category"] < 0.7 and by_category["background"] > 0.99
    assert by_instance["pairs_same_category"] == 16 * 16  # 4x4 patches each twin


def test_vit_keys_are_the_last_blocks_attention_keys():
    torch.manual_seed(0)
    backbone = Backbone(BackboneConfig("vit_tiny_patch16_224", in_chans=1, image_size=32,
                                       model_kwargs={"depth": 2})).eval()
    x = torch.randn(2, 1, 48, 48)  # another size than training's: a finer grid
    keys = patch_grid(backbone, x, "keys")
    vit = backbone.model
    with torch.no_grad():
        tokens = vit.norm_pre(vit._pos_embed(vit.patch_embed(x)))
        tokens = vit.blocks[0](tokens)
        last = vit.blocks[1]
        qkv = last.attn.qkv(last.norm1(tokens))  # (B, 1 + N, 3D)
    d = backbone.dim
    expected = qkv[:, 1:, d:2 * d].transpose(1, 2).reshape(2, d, 12, 12)
    torch.testing.assert_close(keys, expected)
    tokens_grid = patch_grid(backbone, x, "tokens")
    assert tokens_grid.shape == (2, d, 12, 12) and not torch.allclose(tokens_grid, keys)


def test_extract_patch_features_cnn_and_channels():
    backbone = Backbone(BackboneConfig("resnet18", in_chans=3, image_size=32))
    images = np.random.default_rng(0).integers(0, 255, (3, 40, 40), dtype=np.uint8)  # gray
    out = extract_patch_features(backbone, images, size=64, progress=False)
    assert out.shape[0] == 3 and out.shape[1] == backbone.dim and out.dtype == torch.float32
    with pytest.raises(ValueError, match="no attention keys"):
        patch_grid(backbone, torch.zeros(1, 3, 32, 32), "keys")


def _blob_scene(rng, size):
    """Dark noisy background with 2-3 bright squares; returns the image and its masks."""
    image = rng.integers(0, 40, (size, size)).astype(np.uint8)
    masks = []
    for top, left in [(8, 8), (40, 44), (10, 50)][:rng.integers(2, 4)]:
        side = 22
        image[top:top + side, left:left + side] = 220
        masks.append(_box(size, size, top, left, top + side, left + side))
    return image, np.stack(masks)


def _tiny_vit_run(run):
    """An untrained 2-block ViT with 8-px patches on 64-px gray images, saved as a run."""
    torch.manual_seed(0)
    Backbone(BackboneConfig("vit_tiny_patch16_224", in_chans=1, image_size=64, patch_size=8,
                            model_kwargs={"depth": 2}, mean=(0.2,), std=(0.3,))).save(run)


def test_segment_cli_on_a_folder_with_a_corrupt_file(tmp_path, capsys):
    import json

    from PIL import Image
    from pycocotools import mask as mask_utils

    from selfsight.cli import main

    rng = np.random.default_rng(0)
    run = tmp_path / "run"
    _tiny_vit_run(run)
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    truth = {}
    for i in range(4):
        image, masks = _blob_scene(rng, 80)
        name = f"sub/scene{i}.png" if i % 2 else f"scene{i}.png"
        Image.fromarray(image).save(folder / name)
        truth[name] = masks
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "masks.json"
    assert main(["segment", str(run), str(folder), "--out", str(out), "--overlays",
                 str(tmp_path / "overlays"), "--no-progress"]) == 0
    result = json.loads(out.read_text())
    assert_reads_back(SegmentResult, out)
    assert result["method"] == "maskcut"
    assert [s["file"] for s in result["skipped"]] == ["broken.png"]
    assert sorted(r["file"] for r in result["results"]) == sorted(truth)
    best = []
    for r in result["results"]:
        decoded = [mask_utils.decode(i["segmentation"]).astype(bool) for i in r["instances"]]
        assert all(d.shape == (80, 80) for d in decoded)  # back at the file's own size
        for gt in truth[r["file"]]:
            best.append(max((d & gt).sum() / (d | gt).sum() for d in decoded) if decoded else 0)
    assert np.mean(best) > 0.5  # bright squares on noise: found even by an untrained ViT
    assert (tmp_path / "overlays" / "sub" / "scene1.png").is_file()
    # MaskCut's options reach the cut; an unknown one is named.
    options = ["--maskcut-set", "center=true", "--maskcut-set", "exclude_found=true",
               "--maskcut-set", "split_ncut=0.45", "--maskcut-set", "split_sigma=0.1"]
    assert main(["segment", str(run), str(folder), "--out", str(out), "--masks", "5",
                 *options, "--no-progress"]) == 0
    assert len(json.loads(out.read_text())["results"]) == len(truth)
    assert main(["segment", str(run), str(folder), "--out", str(out), "--maskcut-set",
                 "sigma=0.1"]) == 2
    assert "unknown option(s) ['sigma']" in capsys.readouterr().err
    assert main(["segment", str(run), str(folder), "--out", str(out), "--method",
                 "segmenter"]) == 2
    assert "holds no trained segmenter" in capsys.readouterr().err
    assert main(["report", str(run), "--no-progress"]) == 0  # the report shows the instances
    assert "Instances found without labels" in (run / "report" / "index.html").read_text()
    assert (run / "report" / "instances.png").stat().st_size > 10_000

    # Train a (tiny) segmenter on the folder's pseudo-masks; "auto" then uses it.
    assert main(["segment", str(run), str(folder), "--out", str(out), "--train-segmenter",
                 "--segmenter-set", "steps=2", "--segmenter-set", "self_train_steps=1",
                 "--segmenter-set", "batch_size=2", "--no-progress"]) == 0
    assert (run / "segmenter" / "segmenter.safetensors").is_file()
    assert json.loads(out.read_text())["method"] == "segmenter"


def test_pseudo_masks_shapes_scores_and_images_without_objects(monkeypatch):
    import sys

    from selfsight.segment import PseudoMaskConfig, pseudo_masks

    pseudo_masks_module = sys.modules["selfsight.segment.pseudo_masks"]  # the function shadows it

    torch.manual_seed(0)
    backbone = Backbone(BackboneConfig("vit_tiny_patch16_224", in_chans=1, image_size=64,
                                       patch_size=8, model_kwargs={"depth": 2}, mean=(0.2,),
                                       std=(0.3,)))
    rng = np.random.default_rng(1)
    scene, _ = _blob_scene(rng, 64)
    masks, scores = pseudo_masks(backbone, scene[None], PseudoMaskConfig(), progress=False)
    assert masks[0].shape[1:] == (64, 64) and len(masks[0]) >= 1
    assert masks[0].sum(0).max() <= 1  # disjoint
    assert list(scores[0]) == sorted(scores[0], reverse=True)
    # An image where every cut is rejected: an empty (0, H, W) result, not a crash.
    monkeypatch.setattr(pseudo_masks_module, "maskcut",
                        lambda f, _c: [np.zeros((0, *f.shape[-2:]), bool)] * len(f))
    masks, scores = pseudo_masks(backbone, scene[None], PseudoMaskConfig(), progress=False)
    assert masks[0].shape == (0, 64, 64) and scores[0].shape == (0,)


def test_segment_keeps_a_wide_images_aspect_ratio(tmp_path):
    """A 3:1 image is letterboxed, not squashed: a bright square in it comes back as a square
    mask at the file's own size, at its own place."""
    import json

    from PIL import Image
    from pycocotools import mask as mask_utils

    from selfsight.cli import main
    from selfsight.data.folder import read_resized

    rng = np.random.default_rng(1)
    run = tmp_path / "run"
    _tiny_vit_run(run)
    folder = tmp_path / "wide"
    folder.mkdir()
    image = rng.integers(0, 60, (60, 180)).astype(np.uint8)
    image[15:45, 120:150] = 220  # a 30 x 30 square, right of centre
    Image.fromarray(image).save(folder / "wide.png")
    read = read_resized(folder, 64, 1, progress=False)
    top, _, h, w = read.boxes[0]
    assert (h, w) == (21, 64) and read.images[0, :top].max() == 0  # 1:3 kept, black around
    square = read.own_image(0)[..., 0] > 150
    rows, cols = np.nonzero(square)
    assert abs(np.ptp(rows) - np.ptp(cols)) <= 1  # still a square, not squashed 3x
    out = tmp_path / "masks.json"
    assert main(["segment", str(run), str(folder), "--out", str(out), "--no-progress"]) == 0
    result = json.loads(out.read_text())["results"][0]
    assert (result["height"], result["width"]) == (60, 180)
    truth = np.zeros((60, 180), bool)
    truth[15:45, 120:150] = True
    decoded = [mask_utils.decode(i["segmentation"]).astype(bool) for i in result["instances"]]
    assert decoded and all(d.shape == (60, 180) for d in decoded)
    assert max((d & truth).sum() / (d | truth).sum() for d in decoded) > 0.5
