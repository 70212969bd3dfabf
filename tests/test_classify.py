"""`selfsight finetune` and `selfsight predict`: a classifier fine-tuned on real Fashion-MNIST
images in a labelled folder really labels new images, and its saved form loads without pickle."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_reads_back
from selfsight.artifacts import CLASSIFIER
from selfsight.backbones import Backbone, backbone_config
from selfsight.classify import finetune, load_classifier, probabilities, save_classifier
from selfsight.cli import main
from selfsight.eval.finetune import Classifier
from selfsight.eval.label_efficiency import FinetuneRecipe
from selfsight.results import FinetuneResult

TINY = {"stem_stride": 2, "channels": (8, 16, 32, 64)}
NAMES = {1: "trouser", 7: "sneaker", 8: "bag"}


@pytest.fixture
def labelled_folder(tmp_path, fmnist_small):
    """train/ (40 per class) and test/ (20 per class) sub-folders of real Fashion-MNIST images
    of three classes, and one corrupt file among the test images."""
    root = tmp_path / "labelled"
    for label, name in NAMES.items():
        members = np.flatnonzero(fmnist_small.labels == label)
        for split, index in (("train", members[:40]), ("test", members[40:60])):
            (root / split / name).mkdir(parents=True)
            for i in index:
                Image.fromarray(fmnist_small.images[i, :, :, 0]).save(
                    root / split / name / f"{i}.png")
    (root / "test" / "bag" / "broken.png").write_bytes(b"not a png")
    return root


def tiny_run(directory):
    torch.manual_seed(0)
    Backbone(backbone_config("resnet18", 1, 28, TINY)).save(directory)
    return directory


def test_finetune_then_predict_labels_new_images(tmp_path, labelled_folder, capsys):
    run = tiny_run(tmp_path / "run")
    assert main(["finetune", str(run), "--data", str(labelled_folder), "--fraction", "0.5",
                 "--min-steps", "30", "--step-ladder", "1", "2", "--validation-folds", "2",
                 "--no-progress"]) == 0
    meta = json.loads((run / "classifier" / "classifier.json").read_text())
    assert_reads_back(FinetuneResult, run / "classifier" / "classifier.json")
    assert meta["classes"] == ["bag", "sneaker", "trouser"]  # sorted folder names
    assert meta["labelled_images"] == 60 and meta["test_images"] == 60  # half of 120; 1 broken
    assert meta["steps"]["folds"] == 2 and meta["steps"]["held_out"] == 60
    assert meta["steps"]["steps"] in (30, 60)
    assert meta["test_top1"] > 0.7  # chance is 1/3: three garments, from a random start
    captured = capsys.readouterr()
    printed = captured.out
    assert "decoding" not in captured.err  # --no-progress silences the folder decode too
    assert f"test top-1 {meta['test_top1']:.4f}" in printed
    assert "chosen by 2-fold cross-validation on 60 labels" in printed
    table = tmp_path / "predictions.csv"
    assert main(["predict", str(run / "classifier"), str(labelled_folder / "test"), "--out",
                 str(table), "--no-progress"]) == 0
    with table.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 60
    for row in rows:
        probs = {c: float(row[c]) for c in meta["classes"]}
        assert sum(probs.values()) == pytest.approx(1, abs=2e-3)
        assert row["label"] == max(probs, key=probs.get)
        assert float(row["confidence"]) == probs[row["label"]]
    # The same test images as the fine-tuning's own test split: the same accuracy.
    correct = np.mean([row["label"] in row["file"].split("/")[-2] for row in rows])
    assert correct == pytest.approx(meta["test_top1"], abs=1e-4)
    summary = json.loads((tmp_path / "predictions.csv.json").read_text())
    assert summary["skipped_count"] == 1 and "broken.png" in summary["skipped"][0]["file"]
    assert sum(summary["counts"].values()) == 60
    # Deployed: the ONNX graph takes uint8 images and gives the same probabilities.
    assert main(["export", str(run / "classifier"), "--format", "onnx", "--no-latency"]) == 0
    spec = json.loads((run / "classifier" / "export" / "export.json").read_text())
    assert spec["output"]["name"] == "probabilities" and spec["output"]["classes"] == \
        meta["classes"]
    assert spec["parity"]["passed"] and "given images" in spec["parity"]["inputs"]
    import onnxruntime as ort

    session = ort.InferenceSession(str(run / "classifier" / "export" / "model.onnx"))
    first = np.asarray(Image.open(rows[0]["file"]))[None, :, :, None]  # (1, 28, 28, 1) uint8
    got = session.run(None, {"images": first})[0][0]
    # (predict runs under bf16 autocast, the graph in fp32: close, not bit-equal)
    assert got == pytest.approx([float(rows[0][c]) for c in meta["classes"]], abs=1e-2)


def test_saved_classifier_loads_without_pickle_to_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    model = Classifier(Backbone(backbone_config("resnet18", 1, 28, TINY)), 3).eval()
    folder = save_classifier(model, tmp_path / "clf", {"classes": ["a", "b", "c"]})
    loaded, meta = load_classifier(folder)
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28, 1), dtype=np.uint8)
    cpu = torch.device("cpu")
    assert np.allclose(probabilities(loaded, images, cpu), probabilities(model, images, cpu),
                       atol=1e-6)
    assert meta["classes"] == ["a", "b", "c"]
    (folder / "classifier.json").write_text(json.dumps({"classes": ["a", "b"]}))
    with pytest.raises(ValueError, match=f"{CLASSIFIER.weights_file}.*2 classes"):
        load_classifier(folder)
    for broken in ("{not json", json.dumps({"labels": ["a"]})):
        (folder / "classifier.json").write_text(broken)
        with pytest.raises(ValueError, match=r"classifier\.json: (not valid JSON|needs 'classes')"):
            load_classifier(folder)
    with pytest.raises(FileNotFoundError, match="selfsight finetune"):
        load_classifier(tiny_run(tmp_path / "plain_run"))


def test_distillation_uses_the_runs_own_unlabelled_images(tmp_path, labelled_folder):
    run = tiny_run(tmp_path / "run")
    recipe = FinetuneRecipe(min_steps=20, step_ladder=(1,), distill_epochs=1)
    with pytest.raises(ValueError, match=r"config\.yaml.*nothing unlabelled"):
        finetune(run, labelled_folder, recipe=recipe, progress=False)
    (run / "config.yaml").write_text(f"data: {labelled_folder}\n")  # pretrained on train/
    meta = finetune(run, labelled_folder, fraction=0.25, recipe=recipe, progress=False)
    assert meta["distilled_on_images"] == 120 and meta["labelled_images"] == 30
    assert meta["steps"] == {"steps": 20}  # one rung: nothing to validate
    assert meta["test_top1"] > 0.6
