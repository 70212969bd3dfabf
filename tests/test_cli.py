"""The CLI end to end on a small labelled folder, and its error messages."""

import json
import re

import numpy as np
from PIL import Image

from selfsight.cli import main
from selfsight.results import DriftResult, EvalResult, LabelEfficiency

TINY = ["--backbone-set", "stem_stride=2", "--backbone-set", "channels=(8,16,32,64)",
        "--set", "proj_hidden_dim=64", "--precision", "32-true", "--no-progress"]


def test_list_methods_and_backbones(capsys):
    assert main(["list", "methods"]) == 0
    assert "simclr" in capsys.readouterr().out
    assert main(["list", "backbones"]) == 0
    listed = capsys.readouterr().out
    assert "resnet18" in listed and "standardize" in listed


def test_unknown_method_lists_the_choices(tmp_path, capsys):
    assert main(["pretrain", "fashion-mnist", "--method", "simclrr", "--out",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown method 'simclrr'" in err and "simclr," in err


def test_unknown_option_lists_the_valid_keys(tmp_path, capsys):
    assert main(["pretrain", "fashion-mnist", "--set", "temprature=0.1", "--out",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "temprature" in err and "temperature" in err


def test_unknown_backbone_is_a_clear_error(tmp_path, capsys):
    assert main(["pretrain", "fashion-mnist", "--backbone", "resnet1800", "--out",
                 str(tmp_path)]) == 2
    assert "unknown backbone 'resnet1800'" in capsys.readouterr().err


def test_missing_folder_names_the_path(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["pretrain", str(missing), "--out", str(tmp_path / "run")]) == 2
    assert str(missing) in capsys.readouterr().err


def make_folder(root, per_class=40):
    """Two visually different classes of 20-px images, plus one corrupt file."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name, level in (("dark", 40), ("bright", 200)):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(per_class):
                img = np.clip(rng.normal(level, 20, (20, 20, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{i}.png")
    (root / "train" / "dark" / "broken.jpg").write_bytes(b"not a jpeg")


def test_pretrain_then_evaluate_a_labelled_folder(tmp_path, capsys):
    data, run = tmp_path / "images", tmp_path / "run"
    make_folder(data)
    assert main(["pretrain", str(data), "--image-size", "16", "--max-steps", "3",
                 "--batch-size", "16", "--out", str(run), *TINY]) == 0
    for name in ("config.yaml", "metrics.jsonl", "backbone.safetensors", "backbone.json",
                 "checkpoints/last.ckpt", "skipped_files.json"):
        assert (run / name).is_file(), name
    skipped = json.loads((run / "skipped_files.json").read_text())
    assert skipped["count"] == 1 and "broken.jpg" in skipped["files"][0]["file"]
    assert main(["evaluate", str(run), "--data", str(data), "--no-progress",
                 "--label-fractions", "0.1", "1.0", "--seeds", "2", "--finetune-epochs", "1",
                 "--min-steps", "2", "--distill-epochs", "1", "--validation-folds", "2"]) == 0
    result = json.loads((run / "eval" / "images.json").read_text())
    assert result["train_images"] == 80 and result["test_images"] == 80
    printed = capsys.readouterr().out  # the full evaluation, summed up in the terminal
    c, r = result["clustering"], result["robustness"]
    assert re.search(r"k-means \(2 clusters, mean of 3 seeds\): acc / NMI / ARI +"
                     + re.escape(f"{c['accuracy']:.3f} / {c['nmi']:.3f} / {c['ari']:.3f} "
                                 f"(acc ± {c['std']['accuracy']:.3f})"), printed)
    assert ("few-shot" in printed) == bool(result["few_shot"])  # 2 classes: no 5-way episodes
    worst = min(accs[-1] for accs in r["corruptions"].values())
    assert f"{r['clean']:.3f} / {r['mean_corrupted']:.3f} / {worst:.3f}" in printed
    # The typed records read the files back unchanged (keys, values and their order).
    for record, name in ((EvalResult, "images.json"),
                         (LabelEfficiency, "images_label_efficiency.json")):
        raw = json.loads((run / "eval" / name).read_text())
        assert list(record.load(run / "eval" / name).to_json().items()) == list(raw.items())
    assert result["knn_k20"] > 0.9  # dark vs bright is easy even for a barely trained net
    # The full suite: every section the report draws, on the same 80 test images.
    assert result["clustering"]["items"] == 160 and result["clustering"]["n_clusters"] == 2
    assert result["per_class"]["classes"] == ["bright", "dark"]
    assert sum(result["per_class"]["test_counts"]) == 80
    assert set(result["robustness"]["corruptions"]) == {"gaussian_noise", "gaussian_blur",
                                                         "brightness", "contrast"}
    assert result["compute"]["inference_ms_per_image"] > 0
    predictions = np.load(run / "eval" / "images_predictions.npz")
    assert predictions["test_features"].shape[0] == len(predictions["knn_pred"]) == 80
    study = json.loads((run / "eval" / "images_label_efficiency.json").read_text())
    for arm in ("pretrained", "scratch", "linear"):
        assert [len(study["arms"][arm][f]) for f in ("0.1", "1.0")] == [2, 2]
    # Each arm's steps chosen by 2-fold cross-validation on its labels (every labelled image
    # validated once), from the ladder's rungs (base 2).
    for arm in ("pretrained", "scratch"):
        for f, labelled in (("0.1", 8), ("1.0", 80)):
            budget = study["budgets"][arm][f]
            assert budget["folds"] == 2 and budget["held_out"] == labelled
            assert str(budget["steps"]) in budget["validation"]
            assert set(budget["validation"]) <= {"2", "4", "8", "16"}
            assert budget["validation"][str(budget["steps"])] == max(
                budget["validation"].values())
    # A reference arm stopped by the top of the ladder makes the factor an upper bound.
    assert study["savings_upper_bound"] == (
        bool(study["savings_factor"]) and "note" in study["budgets"]["scratch"]["1.0"])
    assert ("upper bound" in study["savings_note"]) == study["savings_upper_bound"]
    # Distilled arms only where some images are unlabelled.
    for arm in ("pretrained_distilled", "scratch_distilled"):
        assert {f: len(runs) for f, runs in study["arms"][arm].items()} == {"0.1": 2}
    assert all(s in printed for s in ("savings factor", "scratch distilled",
                                      "scratch fine-tuning steps"))
    # Drift between two folders in this run's feature space: dark vs bright images differ.
    assert main(["drift", str(run), str(data / "test" / "dark"), str(data / "test" / "bright"),
                 "--permutations", "50", "--no-progress"]) == 0
    drift = json.loads((run / "eval" / "drift.json").read_text())
    assert DriftResult.load(run / "eval" / "drift.json").to_json() == drift
    assert drift["p_value"] < 0.05 and drift["mmd2"] > drift["null_mmd2_95"]
    assert ": drift" in capsys.readouterr().out


def test_ddp_on_two_cpu_processes(tmp_path):
    """The same command on 2 processes (Lightning DDP, gloo) trains and saves once."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    data, run = tmp_path / "images", tmp_path / "run"
    make_folder(data, per_class=16)
    exe = Path(sys.executable).parent / "selfsight"
    proc = subprocess.run(
        [str(exe), "pretrain", str(data), "--image-size", "16", "--max-steps", "2",
         "--batch-size", "16", "--out", str(run), "--accelerator", "cpu", "--devices", "2",
         "--strategy", "ddp", *TINY], capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run folder:") == 1
    assert "Starting with 2 processes" in proc.stderr + proc.stdout
    assert (run / "backbone.safetensors").is_file()
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    assert records[-1]["step"] == 2 and records[-1]["images_seen"] == 32


def test_too_few_images_for_a_batch_is_a_clear_error(tmp_path, capsys):
    data = tmp_path / "images"
    make_folder(data, per_class=2)
    assert main(["pretrain", str(data), "--batch-size", "64", "--out", str(tmp_path / "run"),
                 *TINY]) == 2
    assert "fewer than one batch of 64" in capsys.readouterr().err
