"""Pretraining on one long recording: cut into overlapping windows of the trained length (said in
one line), so that `pretrain`, `anomaly fit` and `anomaly score` on the same recording run end
to end from the command line; a few short series still train whole."""

import json

import numpy as np
import pytest

from conftest import one_thread
from selfsight.cli import main
from selfsight.signals.data import SignalSet, load_signals
from selfsight.signals.train import training_split
from selfsight.signals.windows import cut_recordings

STEPS, WINDOW, PERIOD = 1200, 64, 32


def recording(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(STEPS)
    return (np.sin(2 * np.pi * t / PERIOD) + 0.05 * rng.standard_normal(STEPS)).astype(np.float32)


def reference_windows(series: np.ndarray, window: int, stride: int) -> list[np.ndarray]:
    """Slow and obvious: every stride-th start, and one more ending at the series' end."""
    steps = series.shape[1]
    starts = sorted({*range(0, steps - window + 1, stride), steps - window})
    return [series[:, s:s + window] for s in starts]


def test_windows_are_the_recordings_pieces_with_their_labels():
    rng = np.random.default_rng(0)
    signals = SignalSet(rng.standard_normal((2, 3, 300)).astype(np.float32),
                        np.array([0, 1]), ["a", "b"])
    cut = cut_recordings(signals, 64)
    expected = [w for s in signals.signals for w in reference_windows(s, 64, 16)]
    assert cut.signals.shape == (len(expected), 3, 64)
    assert np.array_equal(cut.signals, np.stack(expected))
    first = len(reference_windows(signals.signals[0], 64, 16))
    assert cut.labels.tolist() == [0] * first + [1] * (len(expected) - first)
    assert "2 recordings of 300 steps cut into" in cut.notes[-1]


def test_few_short_series_train_whole(tmp_path, capsys):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "short.npy", rng.standard_normal((3, 1, 200)).astype(np.float32))
    whole, windows = training_split(str(tmp_path / "short.npy"), None, None)  # 200 < 2 x 128
    assert whole.signals.shape == (3, 1, 200) and not windows
    assert "cut into" not in capsys.readouterr().err
    many, windows = training_split(str(tmp_path / "short.npy"), 64, 2)  # a batch: cropped
    assert many.signals.shape == (3, 1, 64) and not windows
    assert np.array_equal(many.signals, whole.signals[:, :, :64])
    assert "200 steps cropped to 64 (--image-size)" in capsys.readouterr().err
    cut, windows = training_split(str(tmp_path / "short.npy"), 64, None)  # fewer than a batch
    assert cut.length == 64 and len(cut) == 3 * len(reference_windows(whole.signals[0], 64, 16))
    assert windows


def test_later_verbs_cut_windows_only_when_the_run_trained_on_them(tmp_path, capsys):
    """The run records what it trained on: a run trained on many whole series takes one long
    recording cropped to its length, as one row, not as windows."""
    import selfsight

    rng = np.random.default_rng(2)
    np.save(tmp_path / "many.npy", rng.standard_normal((16, 1, WINDOW)).astype(np.float32))
    np.save(tmp_path / "long.npy", recording(0)[None, None])
    with one_thread():
        run = selfsight.pretrain(str(tmp_path / "many.npy"), out=tmp_path / "run", max_steps=1,
                                 batch_size=8, precision="32-true", progress=False,
                                 backbone_options={"channels": (8, 8, 8)})
        assert not json.loads((run / "backbone.json").read_text())["windows"]
        capsys.readouterr()
        summary = selfsight.embed(run, str(tmp_path / "long.npy"), tmp_path / "e.npy",
                                  progress=False, precision="32-true")
    assert summary.count == 1
    assert f"{STEPS:,} steps cropped to {WINDOW} (the run's length)" in capsys.readouterr().err


def test_pretrain_then_anomaly_fit_and_score_one_recording(tmp_path, capsys):
    normal = recording(0)
    np.save(tmp_path / "normal.npy", normal[None, None])
    faulty = recording(1)
    faulty[700:740] += 1.5  # a level shift of 40 steps
    np.save(tmp_path / "faulty.npy", faulty[None, None])
    with one_thread():  # tiny batches (conftest.one_thread)
        assert main(["pretrain", str(tmp_path / "normal.npy"), "--out", str(tmp_path / "run"),
                     "--image-size", str(WINDOW), "--max-steps", "3", "--batch-size", "32",
                     "--precision", "32-true", "--no-progress",
                     "--backbone-set", "channels=[16,32,32]"]) == 0
        windows = len(reference_windows(normal[None], WINDOW, WINDOW // 4))
        said = capsys.readouterr().err
        assert (f"1 recording of {STEPS:,} steps cut into {windows} windows of {WINDOW} steps, "
                f"stride {WINDOW // 4}") in said
        saved = json.loads((tmp_path / "run" / "backbone.json").read_text())
        assert saved["image_size"] == WINDOW and saved["windows"]  # what anomaly fit cuts
        assert main(["anomaly", "fit", str(tmp_path / "run"), str(tmp_path / "normal.npy"),
                     "--precision", "32-true"]) == 0
        assert f"windows of {WINDOW} steps" in capsys.readouterr().err
        assert main(["anomaly", "score", str(tmp_path / "run" / "anomaly"),
                     str(tmp_path / "faulty.npy"), "--out", str(tmp_path / "scores"),
                     "--precision", "32-true"]) == 0
    scores = np.load(tmp_path / "scores" / "step_scores.npy")
    assert scores.shape == (1, STEPS) and np.isfinite(scores).all()
    assert 680 <= int(scores[0].argmax()) < 760  # the fault stands out of the recording
    assert load_signals(str(tmp_path / "faulty.npy")).length == STEPS


if __name__ == "__main__":
    pytest.main([__file__])
