"""`selfsight finetune` and `selfsight predict` on a run with a signal backbone: a classifier
fine-tuned on labelled series separates two easy classes, labels new series one row each, in
order and by name, loads back from its saved files to the same outputs, and a series with the
wrong channel count or of the wrong kind is one line."""

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import assert_reads_back
from selfsight.backbones import Backbone, backbone_config
from selfsight.classify import finetune, load_classifier, predict, save_classifier
from selfsight.cli import main
from selfsight.errors import UserError
from selfsight.eval.finetune import Classifier, probabilities
from selfsight.eval.label_efficiency import FinetuneRecipe
from selfsight.results import FinetuneResult
from selfsight.signals.data import SignalSet, channel_stats

LENGTH = 48
TINY = {"channels": (16, 32, 32)}
IMAGE_TINY = {"stem_stride": 2, "channels": (8, 16, 32, 64)}
CPU = torch.device("cpu")


def ramps(count: int, seed: int, channels: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(count, channels, LENGTH) float32 series, every other one rising, the rest falling
    (slope 0.5..2 over the length), each channel at a random offset, with Gaussian noise."""
    rng = np.random.default_rng(seed)
    labels = np.where(np.arange(count) % 2 == 0, "rise", "fall")
    sign = np.where(labels == "rise", 1.0, -1.0)[:, None, None]
    slope = sign * rng.uniform(0.5, 2, (count, 1, 1))
    x = (slope * np.linspace(-1, 1, LENGTH) + rng.normal(0, 1, (count, channels, 1))
         + rng.normal(0, 0.3, (count, channels, LENGTH)))
    return x.astype(np.float32), labels


pytestmark = pytest.mark.usefixtures("single_thread_module")  # one thread (conftest.one_thread)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """40 training and 40 test series of two channels in one .npz, labels 'rise' and 'fall'."""
    x, y = ramps(40, 0)
    x_test, y_test = ramps(40, 1)
    path = tmp_path_factory.mktemp("signals") / "ramps.npz"
    np.savez(path, X=x, y=y, X_test=x_test, y_test=y_test)
    return path


def signal_backbone(channels: int = 2, seed: int = 0) -> Backbone:
    """A small resnet1d from a seeded random start, standardising with the training split's
    statistics as pretrain saves them."""
    torch.manual_seed(seed)
    mean, std = channel_stats(SignalSet(ramps(40, 0, channels)[0]))
    return Backbone(replace(backbone_config("resnet1d", channels, LENGTH, TINY), mean=mean,
                            std=std))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run") / "run"
    signal_backbone().save(folder)
    return folder


def test_finetune_then_predict_labels_series_in_order(run, labelled, tmp_path, capsys):
    assert main(["finetune", str(run), str(labelled), "--min-steps", "40", "--step-ladder",
                 "1", "--no-progress"]) == 0
    meta = json.loads((run / "classifier" / "classifier.json").read_text())
    assert_reads_back(FinetuneResult, run / "classifier" / "classifier.json")
    assert meta["classes"] == ["fall", "rise"] and meta["backbone"] == "resnet1d"
    assert meta["labelled_images"] == 40 and meta["test_images"] == 40
    assert meta["steps"]["steps"] == 40 and meta["views"] == "jitter + channel-scaling views"
    assert meta["test_top1"] >= 0.8  # chance is 0.5, from a random start
    printed = capsys.readouterr().out
    assert "40 labelled series, 40 steps on jitter + channel-scaling views (fixed)" in printed
    assert f"test top-1 {meta['test_top1']:.4f} on 40 series" in printed

    table = tmp_path / "predictions.csv"
    assert main(["predict", str(run / "classifier"), str(labelled), "--out", str(table),
                 "--no-progress"]) == 0
    assert "80 series labelled" in capsys.readouterr().out
    with table.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["series"] for r in rows] == ([f"ramps-train/{i}" for i in range(40)]
                                           + [f"ramps-test/{i}" for i in range(40)])
    for row in rows:
        probs = {c: float(row[c]) for c in meta["classes"]}
        assert sum(probs.values()) == pytest.approx(1, abs=2e-3)
        assert row["label"] == max(probs, key=probs.get)
        assert float(row["confidence"]) == probs[row["label"]]
    # The test rows are the fine-tuning's own test split: the same accuracy.
    y_test = ramps(40, 1)[1]
    assert np.mean([r["label"] == y for r, y in zip(rows[40:], y_test)]) == \
        pytest.approx(meta["test_top1"], abs=1e-4)
    summary = json.loads((tmp_path / "predictions.csv.json").read_text())
    assert summary["count"] == 80 and sum(summary["counts"].values()) == 80


def test_predict_names_each_recording_of_a_folder(run, tmp_path):
    """A folder of CSV files (one recording each, a column per channel): a row per file, in the
    folder's order, named by the file, with the classifier's own probabilities."""
    model = Classifier(Backbone(signal_backbone().config), 2)
    classifier = save_classifier(model, tmp_path / "clf", {"classes": ["fall", "rise"]})
    x = ramps(5, 2)[0]
    folder = tmp_path / "new"
    folder.mkdir()
    for i, series in enumerate(x):
        np.savetxt(folder / f"rec{i}.csv", series.T, delimiter=",", fmt="%.6f")
    table = tmp_path / "labels.csv"
    summary = predict(classifier, folder, table, device="cpu", progress=False)
    with table.open() as f:
        rows = list(csv.DictReader(f))
    assert summary.count == 5 and [r["series"] for r in rows] == [f"rec{i}.csv" for i in range(5)]
    loaded, _ = load_classifier(classifier)
    expected = probabilities(loaded, SignalSet(np.round(x, 6)).images, CPU)
    got = np.array([[float(r["fall"]), float(r["rise"])] for r in rows])
    assert got == pytest.approx(expected, abs=1e-3)


def test_signal_classifier_round_trips_through_its_files(tmp_path):
    model = Classifier(signal_backbone(seed=3), 2).eval()
    folder = save_classifier(model, tmp_path / "clf", {"classes": ["fall", "rise"]})
    loaded, meta = load_classifier(folder)
    assert loaded.backbone.config == model.backbone.config  # resnet1d, its channel statistics
    signals = SignalSet(ramps(6, 4)[0]).images
    assert np.allclose(probabilities(loaded, signals, CPU), probabilities(model, signals, CPU),
                       atol=1e-6)
    assert meta["classes"] == ["fall", "rise"]


def test_wrong_channels_and_kinds_are_one_line(run, tmp_path, capsys):
    three = tmp_path / "three.npz"
    x, y = ramps(10, 5, channels=3)
    np.savez(three, X=x, y=y, X_test=x, y_test=y)
    recipe = FinetuneRecipe(min_steps=1, step_ladder=(1,))
    wrong = r"three\.npz: 3 channels, but the backbone was trained on 2"
    with pytest.raises(UserError, match=wrong):
        finetune(run, str(three), out=tmp_path / "clf", recipe=recipe, progress=False)
    classifier = save_classifier(Classifier(signal_backbone(), 2), tmp_path / "clf",
                                 {"classes": ["fall", "rise"]})
    np.save(tmp_path / "three.npy", x)
    assert main(["predict", str(classifier), str(tmp_path / "three.npy"), "--out",
                 str(tmp_path / "p.csv"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "3 channels, but the backbone was trained on 2" in err
    assert not (tmp_path / "p.csv").exists()
    images = Classifier(Backbone(backbone_config("resnet18", 1, 28, IMAGE_TINY)), 2)
    image_classifier = save_classifier(images, tmp_path / "image_clf", {"classes": ["a", "b"]})
    with pytest.raises(UserError, match="is for images; uea:BasicMotions holds signals"):
        predict(image_classifier, "uea:BasicMotions", tmp_path / "q.csv", progress=False)
    with pytest.raises(UserError, match="is for images"):
        finetune(tmp_path / "image_clf", "uea:BasicMotions", recipe=recipe, progress=False)


def test_a_share_of_the_labels_and_distillation_on_the_runs_own_series(labelled, tmp_path,
                                                                         capsys):
    run = tmp_path / "run"
    signal_backbone().save(run)
    recipe = FinetuneRecipe(min_steps=40, step_ladder=(1,), distill_epochs=1)
    with pytest.raises(UserError, match=r"config\.yaml.*nothing unlabelled"):
        finetune(run, labelled, recipe=recipe, progress=False)
    (run / "config.yaml").write_text(f"data: {labelled}\n")  # as pretrain records it
    meta = finetune(run, labelled, fraction=0.25, recipe=recipe, progress=False)
    assert meta["distilled_on_images"] == 40 and meta["labelled_images"] == 10
    assert meta["per_class"]["train_counts"] == [5, 5]  # stratified: a quarter of each class
    assert meta["test_top1"] >= 0.8
    assert main(["finetune", str(run), str(labelled), "--data", "uea:BasicMotions"]) == 2
    assert "data given twice" in capsys.readouterr().err
