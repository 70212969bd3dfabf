"""Anomaly detection at the images' own resolution: tiles cover any image and stitch back, a
small blemish raises its image's score, the threshold needs enough held-out normal images, and
scores.json reads back."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_reads_back
from selfsight.anomaly import AnomalyConfig, AnomalyModel, anomaly_fit, anomaly_score
from selfsight.anomaly.calibration import more_normal_images, threshold_needs
from selfsight.anomaly.tiles import auto_tile, full_images, stitch, tile_boxes
from selfsight.backbones import Backbone, BackboneConfig
from selfsight.results import AnomalyScores
from selfsight.summaries import summary_lines


def tiny_backbone(size: int = 32) -> Backbone:
    """An untrained narrow RGB ResNet-18 (the stride-1 stem of small inputs)."""
    torch.manual_seed(0)
    return Backbone(BackboneConfig(name="resnet18", in_chans=3, image_size=size,
                                   model_kwargs={"channels": (8, 16, 32, 64)})).eval()


def texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random texture, (H, W, 3) uint8, like a plain surface photographed."""
    small = rng.integers(90, 170, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    big = Image.fromarray(small).resize((width // 8 * 8 + 8, height // 8 * 8 + 8),
                                        Image.BICUBIC)
    return np.asarray(big, dtype=np.uint8)[:height, :width].copy()


def blemish(image: np.ndarray, cy: int, cx: int, diameter: float = 10) -> np.ndarray:
    """A dark disc with a soft edge."""
    yy, xx = np.mgrid[:image.shape[0], :image.shape[1]]
    r = np.hypot(yy - cy, xx - cx)
    alpha = np.clip((diameter / 2 - r) / 2 + 0.5, 0, 1)[..., None] * 0.85
    return (image * (1 - alpha)).round().astype(np.uint8)


def test_tiles_cover_a_three_to_one_image_and_stitch_back():
    height, width, tile = 100, 300, 64
    side, boxes = tile_boxes(height, width, tile, 0.25)
    assert side == 64
    covered = np.zeros((height, width), int)
    for y, x in boxes:
        assert 0 <= y <= height - side and 0 <= x <= width - side
        covered[y:y + side, x:x + side] += 1
    assert covered.min() >= 1  # every pixel, the last row/column aligned to the edge
    assert max(x for _, x in boxes) == width - side and max(y for y, _ in boxes) == height - side
    # Constant per-tile maps stitch to that constant; the mean where tiles overlap.
    maps = np.stack([np.full((side, side), float(i)) for i in range(len(boxes))])
    out = stitch(maps, boxes, side, height, width)
    assert out.shape == (height, width)
    assert out[0, 0] == 0 and out[-1, -1] == len(boxes) - 1
    # A tile larger than the short side shrinks to it, square: aspect ratio kept.
    assert tile_boxes(40, 120, 64, 0.25)[0] == 40
    # auto: tiles only when the whole image would shrink more than 2x.
    assert auto_tile([768, 768], 64) == 128 and auto_tile([100], 64) == 0


def test_threshold_needs_enough_held_out_images():
    assert threshold_needs(0.99) == 100 and threshold_needs(0.9) == 10
    assert threshold_needs(0.5) == 10 and threshold_needs(1.0) == 10
    assert more_normal_images(20, 0.99, 0.1) == 975  # round(0.1 * 995) = 100 held out
    assert more_normal_images(100, 0.9, 0.1) == 0


def test_blemish_in_one_tile_raises_the_score_and_maps_keep_the_shape(tmp_path):
    rng = np.random.default_rng(0)
    normal = [texture(rng, 96, 288) for _ in range(12)]  # 3:1, tiled at 64 px
    config = AnomalyConfig(tile=64, quantile=0.9, val_fraction=0.1, coreset=400)
    model = AnomalyModel.fit(tiny_backbone(), normal, config, device="cpu", progress=False)
    assert model.tile == 64
    assert model.calibration.threshold is None  # 1 held-out image < 10
    assert model.calibration.more_images == 83  # 12 + 83: round(9.5) = 10 held out
    assert "83 more normal images needed" in model.threshold_rule
    clean = [texture(rng, 96, 288) for _ in range(6)]
    bad = [blemish(texture(rng, 96, 288), 40 + 5 * i, 30 + 40 * i) for i in range(6)]
    scores = model.score(clean + bad, device="cpu", progress=False)
    assert [m.shape for m in scores["maps"]] == [(96, 288)] * 12
    assert scores["patch"][6:].min() > scores["patch"][:6].max()
    assert not scores["anomalous"].any()  # no threshold: ranked, none flagged
    # The map peaks at the blemish.
    peak = np.unravel_index(scores["maps"][6].argmax(), (96, 288))
    assert abs(peak[0] - 40) <= 12 and abs(peak[1] - 30) <= 12
    # Saved and loaded, the tile comes back.
    model.save(tmp_path / "model")
    loaded = AnomalyModel.load(tmp_path / "model")
    assert loaded.tile == 64 and loaded.calibration == model.calibration
    again = loaded.score(bad[:2], device="cpu", progress=False)
    np.testing.assert_allclose(again["patch"], scores["patch"][6:8], rtol=1e-5)


def test_enough_held_out_images_give_a_threshold():
    rng = np.random.default_rng(1)
    normal = [texture(rng, 64, 64) for _ in range(22)]
    config = AnomalyConfig(tile=32, quantile=0.9, val_fraction=0.5, coreset=0.2)
    model = AnomalyModel.fit(tiny_backbone(16), normal, config, device="cpu", progress=False)
    cal = model.calibration
    assert cal.val_images == 11 and cal.threshold is not None and cal.more_images == 0
    assert cal.pixel_threshold is not None
    assert model.threshold_rule == "0.9 quantile of 11 held-out normal images' scores"


def test_cli_folders_at_their_own_size_round_trip(tmp_path, capsys):
    rng = np.random.default_rng(2)
    good, test = tmp_path / "good", tmp_path / "test"
    good.mkdir()
    test.mkdir()
    for i in range(8):
        Image.fromarray(texture(rng, 120, 200)).save(good / f"g{i}.png")
    for i in range(3):
        Image.fromarray(texture(rng, 120, 200)).save(test / f"ok{i}.png")
        Image.fromarray(blemish(texture(rng, 120, 200), 60, 50 + 40 * i)).save(
            test / f"bad{i}.png")
    (test / "notes.png").write_text("not an image")
    run = tmp_path / "run"
    tiny_backbone().save(run)  # 32 px: auto tiles of 64 px for 120-px short sides
    model_dir = anomaly_fit(run, good, progress=False, coreset=0.5)
    err = capsys.readouterr().err
    assert "tiles: 64 px" in err and "more normal images needed" in err
    meta = json.loads((model_dir / "anomaly.json").read_text())
    assert meta["tile"] == 64 and meta["calibration"]["threshold"] is None
    assert full_images(test, 3, every=True).skipped  # the text file, with its reason
    result = anomaly_score(model_dir, test, tmp_path / "scores", overlays=2, progress=False)
    assert result.threshold is None and result.flagged == 0 and result.count == 6
    assert "more normal images needed" in result.threshold_rule
    assert "none flagged" in summary_lines(result)[0]
    assert len(list((tmp_path / "scores" / "overlays").glob("*.png"))) == 2
    raw = json.loads((tmp_path / "scores" / "scores.json").read_text())
    assert raw["threshold"] is None and len(raw["skipped_files"]) == 1
    assert_reads_back(AnomalyScores, tmp_path / "scores" / "scores.json")
    with Image.open(sorted((tmp_path / "scores" / "overlays").glob("*.png"))[0]) as png:
        assert png.width >= 440


def test_bad_tile_options():
    with pytest.raises(ValueError, match="tile"):
        AnomalyConfig(tile=-1)
    with pytest.raises(ValueError, match="tile_overlap"):
        AnomalyConfig(tile_overlap=1.0)
    assert AnomalyConfig(tile="96").tile == 96
