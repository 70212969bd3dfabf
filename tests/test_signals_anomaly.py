"""Anomaly detection on signals: a tiny pretrain on windows of a clean sine, a bank fitted on one
long normal recording, and per-step scores that single out an injected fault, through the
public verbs and the CLI; the window stitching against a slow reference; bad input as one line."""

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import selfsight
from conftest import one_thread
from selfsight.cli import main
from selfsight.device import computing_at
from selfsight.errors import UserError
from selfsight.results import SignalAnomalyScores
from selfsight.signals.anomaly import SignalAnomalyModel
from selfsight.signals.data import load_signal_splits
from selfsight.signals.windows import cut_windows, stitch_windows
from selfsight.summaries import summary_lines

PERIOD, WINDOW = 32, 64


def sine(steps, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    return (np.sin(2 * np.pi * t / PERIOD) + 0.05 * rng.standard_normal(steps)).astype(np.float32)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("signal_anomaly")
    normal = sine(40 * WINDOW, seed=0)
    windows = np.stack([normal[s:s + WINDOW] for s in range(0, len(normal) - WINDOW, 8)])
    np.save(root / "windows.npy", windows[:, None])
    np.save(root / "normal.npy", normal[None, None])
    with one_thread():  # tiny batches (conftest.one_thread)
        path = selfsight.pretrain(str(root / "windows.npy"), out=root / "run", max_steps=8,
                                  seed=0, precision="32-true", progress=False, batch_size=64,
                                  backbone_options={"channels": (16, 32, 32)})
    return root, path


def test_step_scores_single_out_an_injected_fault(run, capsys):
    root, path = run
    model = selfsight.anomaly_fit(path, str(root / "normal.npy"), progress=False,
                                  precision="32-true")
    test = sine(30 * WINDOW, seed=1)
    inside = np.zeros(len(test), bool)
    inside[900:940] = True
    test[900:940] += 1.5  # a level shift for 40 steps of a 1920-step recording
    np.save(root / "test.npy", test[None, None])
    assert main(["anomaly", "score", str(model), str(root / "test.npy"),
                 "--out", str(root / "scores"), "--precision", "32-true"]) == 0
    printed = capsys.readouterr().out
    assert "1920 time steps scored" in printed and "step_scores.npy" in printed
    scores = np.load(root / "scores" / "step_scores.npy")
    assert scores.shape == (1, len(test)) and scores.dtype == np.float32
    assert roc_auc_score(inside, scores[0]) > 0.9
    raw = json.loads((root / "scores" / "scores.json").read_text())
    assert SignalAnomalyScores.from_json(raw).to_json() == raw
    (series,) = raw["results"]
    assert 880 <= series["peak_step"] < 960 and series["score"] == pytest.approx(scores.max())
    # The saved model reloads to the same scores.
    with computing_at("32-true", announce=False):
        again = SignalAnomalyModel.load(model).step_scores(test[None, None], progress=False)
    assert np.allclose(again, scores, atol=1e-4)


def test_many_series_get_a_threshold_that_flags_the_faulty_ones(run, tmp_path):
    _, path = run
    normal = np.stack([sine(WINDOW, seed=10 + i) for i in range(100)])[:, None]
    np.save(tmp_path / "normal.npy", normal)
    model = selfsight.anomaly_fit(path, str(tmp_path / "normal.npy"), tmp_path / "model",
                                  progress=False, precision="32-true", quantile=0.9)
    clean = np.stack([sine(WINDOW, seed=200 + i) for i in range(10)])
    faulty = clean.copy()
    faulty[:, 20:28] += 2.0  # a spike of 8 steps in each
    np.savez(tmp_path / "mixed.npz", X=clean[:, None], X_test=faulty[:, None])
    result = selfsight.anomaly_score(model, str(tmp_path / "mixed.npz"), progress=False,
                                     precision="32-true")
    assert result.threshold is not None and "10 held-out normal series" in result.threshold_rule
    flags = [r["anomalous"] for r in result.results]
    names = [r["series"] for r in result.results]
    assert names[0] == "mixed-train/0" and names[10] == "mixed-test/0"
    assert all(flags[10:]) and sum(flags[:10]) <= 3
    assert f"{sum(flags)} series and {result.flagged_steps} steps flagged" in \
        summary_lines(result)[1]
    assert all(20 - 8 <= r["peak_step"] < 28 + 8 for r in result.results[10:])


def test_stitching_is_the_centre_weighted_mean_of_every_covering_window():
    series = np.arange(2 * 103, dtype=np.float64).reshape(2, 103)
    starts, windows = cut_windows(series, 20, overlap=0.5)
    assert windows.shape == (len(starts), 2, 20) and starts[-1] == 83
    assert all(np.array_equal(w, series[:, s:s + 20]) for s, w in zip(starts, windows))
    values = np.random.default_rng(0).random((len(starts), 20))
    got = stitch_windows(values, starts, 103)
    for step in range(103):  # the slow way: every window that covers the step
        num = den = 0.0
        for s, v in zip(starts, values):
            if s <= step < s + 20:
                weight = min(step - s + 0.5, s + 20 - step - 0.5)
                num, den = num + weight * v[step - s], den + weight
        assert got[step] == pytest.approx(num / den, rel=1e-5)


def test_bundled_anomaly_set_reads_as_one_recording_per_split():
    train, test = load_signal_splits("tsad:KDD-TSAD_135", verbose=False, own_lengths=True)
    assert train.signals.shape == (1, 1, 1200) and test.signals.shape == (1, 1, 7501)
    assert np.allclose(train.signals[0, 0], test.signals[0, 0, :1200])


def test_bad_input_is_one_line(run, tmp_path, capsys):
    root, path = run
    np.save(tmp_path / "three.npy", np.zeros((1, 3, 500), np.float32))
    assert main(["anomaly", "fit", str(path), str(tmp_path / "three.npy"),
                 "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "three.npy: 3 channels, but the backbone was trained on 1" in err
    np.save(tmp_path / "short.npy", sine(100, seed=3)[None, None])
    with pytest.raises(UserError, match="one normal series of 100 steps: anomaly fit needs "
                                        "at least 128"):
        selfsight.anomaly_fit(path, str(tmp_path / "short.npy"), progress=False)
    with pytest.raises(UserError, match="overlap must lie in"):
        selfsight.anomaly_fit(path, str(root / "normal.npy"), progress=False, overlap=1.0)
