"""``evaluate`` on a run with a signal backbone: kNN (k capped at the training size) and the linear
probe find two classes that differ only in frequency, the raw-series baselines match a slow
reference, label efficiency runs both arms, and a run and data of different kinds are one line."""

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier

import selfsight
from conftest import assert_reads_back
from selfsight.backbones import Backbone, BackboneConfig
from selfsight.cli import main
from selfsight.errors import UserError
from selfsight.eval.label_efficiency import FinetuneRecipe
from selfsight.results import EvalResult, LabelEfficiency
from selfsight.signals.data import SignalSet, channel_stats
from selfsight.signals.evaluate import raw_signal_baselines

LENGTH = 64


def two_frequencies(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, 2, LENGTH) series: class 0 at 2 cycles, class 1 at 6, random phase and amplitude,
    Gaussian noise; the second channel is the first a quarter period later."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 2
    cycles = np.where(labels == 0, 2.0, 6.0)[:, None]
    t = np.linspace(0, 1, LENGTH)[None]
    phase = rng.uniform(0, 2 * np.pi, (count, 1))
    amplitude = rng.uniform(0.5, 2.0, (count, 1))
    waves = [amplitude * np.sin(2 * np.pi * cycles * t + phase + shift)
             for shift in (0, np.pi / 2)]
    signals = np.stack(waves, axis=1) + rng.normal(0, 0.3, (count, 2, LENGTH))
    return signals.astype(np.float32), labels


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("signals")
    x, y = two_frequencies(40, 0)
    x_test, y_test = two_frequencies(40, 1)
    path = folder / "waves.npz"
    np.savez(path, X=x, y=y, X_test=x_test, y_test=y_test)
    return path


pytestmark = pytest.mark.usefixtures("single_thread_module")  # one thread (conftest.one_thread)


@pytest.fixture(scope="module")
def run(labelled, tmp_path_factory):
    """A short real pretrain."""
    return selfsight.pretrain(labelled, out=tmp_path_factory.mktemp("run") / "run",
                              max_steps=10, seed=0, precision="32-true", progress=False,
                              backbone_options={"channels": (16, 32, 32)})


def test_evaluate_finds_the_classes_and_reports_raw_baselines(run, labelled):
    recipe = FinetuneRecipe(min_steps=15, step_ladder=(1,))
    result = selfsight.evaluate(run, labelled, label_fractions=(0.25, 1.0), seeds=(0, 1),
                                recipe=recipe, precision="32-true", progress=False)
    assert sorted(result.knn) == [1, 20, 40]  # k=200 capped at the 40 training series
    assert min(result.knn.values()) >= 0.8 and result.linear_top1 >= 0.8  # chance: 0.5
    assert result.raw_euclidean_1nn is not None and result.raw_dtw_1nn is not None
    assert "DTW" in result.raw_baseline and not result.pixels_knn
    assert set(result.skipped_sections) >= {"robustness", "clustering.pixels"}
    assert result.robustness is None and result.clustering.pixels is None
    assert result.knn_sweep["ks"][-1] == 40
    path = run / "eval" / "waves.npz.json"
    assert_reads_back(EvalResult, path)
    study = result.label_efficiency
    assert set(study.arms) == {"pretrained", "scratch", "linear"}
    for arm in study.arms.values():
        assert set(arm) == {"0.25", "1.0"} and all(len(runs) == 2 for runs in arm.values())
    assert "jitter" in study.recipe
    assert_reads_back(LabelEfficiency, run / "eval" / "waves.npz_label_efficiency.json")


def test_raw_baselines_match_a_slow_reference():
    x, y = two_frequencies(10, 2)
    x[:, 1] *= 50  # a channel in other units: standardising keeps it from dominating
    train = SignalSet(x[:6, :, :12].copy(), y[:6])
    test = SignalSet(x[6:, :, :12].copy(), y[6:])
    mean, std = (np.array(v)[None, :, None] for v in channel_stats(train))
    z_train, z_test = (train.signals - mean) / std, (test.signals - mean) / std

    def dtw(a: np.ndarray, b: np.ndarray) -> float:  # dependent DTW, squared Euclidean cost
        cost = np.full((a.shape[1] + 1, b.shape[1] + 1), np.inf)
        cost[0, 0] = 0
        for i in range(1, a.shape[1] + 1):
            for j in range(1, b.shape[1] + 1):
                step = ((a[:, i - 1] - b[:, j - 1]) ** 2).sum()
                cost[i, j] = step + min(cost[i - 1, j], cost[i, j - 1], cost[i - 1, j - 1])
        return cost[-1, -1]

    nearest = [train.labels[np.argmin([dtw(q, r) for r in z_train])] for q in z_test]
    euclidean = KNeighborsClassifier(1).fit(z_train.reshape(6, -1), train.labels)
    result = raw_signal_baselines(train, test, progress=False)
    assert result["raw_dtw_1nn"] == pytest.approx(np.mean(np.array(nearest) == test.labels))
    assert result["raw_euclidean_1nn"] == pytest.approx(
        (euclidean.predict(z_test.reshape(4, -1)) == test.labels).mean())
    skipped = raw_signal_baselines(train, test, dtw_cells=10, progress=False)
    assert "raw_dtw_1nn" not in skipped and "DTW skipped" in skipped["raw_baseline"]


def test_cli_quick_and_a_source_without_a_test_split(run, labelled, tmp_path, capsys):
    assert main(["evaluate", str(run), "--data", str(labelled), "--quick", "--no-progress",
                 "--precision", "32-true"]) == 0
    assert "raw-signal 1-NN: Euclidean" in capsys.readouterr().out
    x, y = two_frequencies(40, 3)
    alone = tmp_path / "alone.npy"
    np.save(alone, x)
    with pytest.raises(UserError, match="needs labelled series"):
        selfsight.evaluate(run, alone, full=False, progress=False)
    one_split = tmp_path / "one.npz"
    np.savez(one_split, X=x, y=y)
    result = selfsight.evaluate(run, one_split, full=False, pixels=False, progress=False)
    assert (result.train_images, result.test_images) == (32, 8)  # 20% held out by class


def test_a_run_and_data_of_different_kinds_are_one_line(run, labelled, tmp_path, capsys):
    images_run = tmp_path / "images"
    Backbone(BackboneConfig("resnet18", in_chans=1, image_size=28)).save(images_run)
    with pytest.raises(UserError, match="is for images"):
        selfsight.evaluate(images_run, labelled, progress=False)
    with pytest.raises(UserError, match="is for signals"):
        selfsight.evaluate(run, np.zeros((4, 28, 28, 1), np.uint8), progress=False)
    assert main(["evaluate", str(run), "--data", "fashion-mnist", "--no-progress"]) == 2
    assert "is for signals" in capsys.readouterr().err
