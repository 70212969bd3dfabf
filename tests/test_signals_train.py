"""A short real pretrain on BasicMotions through the CLI lowers its loss and writes a normal run
folder; embed gives the training then the test rows, named with their split."""

import json

import numpy as np
import pytest

import selfsight
from conftest import one_thread
from selfsight.artifacts import BACKBONE, load_artifact
from selfsight.cli import main
from selfsight.signals.data import channel_stats, load_signal_splits


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("signals") / "run"
    # The Python verb, which the CLI calls: it takes log_every, for a loss curve of 8 points;
    # a half-width ResNet keeps the test under 20 s on 2 cores.
    # One thread: batches of 32 short series are too small to split, and with two threads on
    # two shared cores a busy neighbour stalls every step (measured: 11 s here, 100 s with 2).
    with one_thread():  # tiny batches (conftest.one_thread)
        return selfsight.pretrain("uea:BasicMotions", out=out, max_steps=40, seed=0,
                                  precision="32-true", log_every=5, progress=False,
                                  backbone_options={"channels": (32, 64, 64)})


def test_pretrain_writes_a_run_that_lowers_its_loss(run):
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [s["loss"] for s in steps if "loss" in s]
    assert len(losses) >= 5
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.1
    config = (run / "config.yaml").read_text()
    assert "method: simclr" in config and "kind: signal" in config
    meta, _ = load_artifact(run, BACKBONE)
    train, _ = load_signal_splits("uea:BasicMotions", verbose=False)
    assert meta["name"] == "resnet1d" and meta["in_chans"] == 6 and meta["image_size"] == 100
    assert meta["model_kwargs"] == {"channels": [32, 64, 64]}
    assert np.allclose(meta["mean"], channel_stats(train)[0])


def test_embed_rows_are_train_then_test_named_by_split(run, tmp_path, capsys):
    out = tmp_path / "E.npy"
    assert main(["embed", str(run), "uea:BasicMotions", "--out", str(out)]) == 0
    features = np.load(out)
    names = json.loads((tmp_path / "E.npy.json").read_text())["files"]
    assert features.shape == (80, 64) and len(names) == 80
    assert names[:2] == ["BasicMotions-train/0", "BasicMotions-train/1"]
    assert names[40] == "BasicMotions-test/0" and names[-1] == "BasicMotions-test/39"
    assert np.allclose(np.linalg.norm(features, axis=1), 1, atol=1e-4)
    # The rows follow the splits' order: the same series embedded alone gives the same row.
    from selfsight.backbones import load_backbone
    from selfsight.signals.embed import signal_features

    _, test = load_signal_splits("uea:BasicMotions", verbose=False)
    alone = signal_features(load_backbone(run), test.signals[3:4]).numpy()
    assert np.allclose(alone[0], features[43], atol=1e-4)


def test_image_options_and_methods_on_signals_are_one_line(tmp_path, capsys):
    assert main(["pretrain", "uea:BasicMotions", "--method", "mae",
                 "--out", str(tmp_path / "r")]) == 2
    assert "for images" in capsys.readouterr().err
    assert main(["pretrain", "uea:BasicMotions", "--backbone", "resnet18",
                 "--out", str(tmp_path / "r")]) == 2
    assert "on signals use one of" in capsys.readouterr().err


def test_a_single_series_is_one_line_that_counts_series(tmp_path, capsys):
    # one of the two rows is empty and skipped: one series cannot make a contrastive batch
    (tmp_path / "one.csv").write_text("\n1,2,3,4\n")
    assert main(["pretrain", str(tmp_path / "one.csv"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "1 series are fewer than one batch of 2; a batch needs at least 2" in err
    assert "Traceback" not in err
