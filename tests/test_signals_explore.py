"""`explore` on signals: a run's clusters of a labelled synthetic set (two frequencies) match its
labels, each cluster's typical members are its series nearest its centre, the files explore
writes name every series, and the report draws the series where it draws images."""

import csv

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import normalize

import selfsight
from conftest import assert_reads_back, one_thread
from selfsight.cli import main
from selfsight.errors import UserError
from selfsight.reports import mosaics
from selfsight.reports.sections import _explore_images
from selfsight.results import ExploreResult
from selfsight.run_folder import RunFolder

PER_CLASS, STEPS, PERIODS = 24, 64, (6, 32)


@pytest.fixture(scope="module")
def explored(tmp_path_factory):
    root = tmp_path_factory.mktemp("signal_explore")
    rng = np.random.default_rng(0)
    t = np.arange(STEPS)
    series, labels = [], []
    for label, period in enumerate(PERIODS):
        for _ in range(PER_CLASS):
            phase = rng.uniform(0, 2 * np.pi)
            series.append(np.sin(2 * np.pi * t / period + phase)
                          + 0.1 * rng.standard_normal(STEPS))
            labels.append(label)
    order = rng.permutation(len(series))  # the classes interleaved, as a source would hold them
    x = np.stack(series)[order, None].astype(np.float32)
    y = np.array(labels)[order]
    np.savez(root / "waves.npz", X=x, y=y)
    with one_thread():  # tiny batches (conftest.one_thread)
        run = selfsight.pretrain(str(root / "waves.npz"), out=root / "run", max_steps=3,
                                 seed=0, precision="32-true", progress=False, batch_size=16,
                                 backbone_options={"channels": (16, 32, 32)})
        result = selfsight.explore(run, str(root / "waves.npz"), max_clusters=6, suggest=4,
                                   progress=False, precision="32-true")
    return root, run, result, y


def test_clusters_match_the_two_frequencies(explored):
    root, run, result, y = explored
    assert result.images == len(y) == 2 * PER_CLASS
    agreement = result.agreement_with_labels
    assert agreement["classes"] == 2 and agreement["ari"] > 0.8
    with open(RunFolder(run).evaluation(str(root / "waves.npz"), "_clusters.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["file"] for r in rows] == [f"waves-train/{i}" for i in range(len(y))]
    cluster = np.array([int(r["cluster"]) for r in rows])
    assert adjusted_rand_score(y, cluster) == pytest.approx(agreement["ari"], abs=1e-4)
    assert_reads_back(ExploreResult, RunFolder(run).evaluation(str(root / "waves.npz"),
                                                               "_explore.json"))


def test_typical_members_are_nearest_their_cluster_centre(explored):
    root, run, result, _ = explored
    with np.load(RunFolder(run).evaluation(str(root / "waves.npz"), "_explore.npz")) as f:
        features, cluster = normalize(f["features"].astype(np.float32)), f["cluster"]
    for c in result.clusters:
        members = np.flatnonzero(cluster == c["cluster"])
        assert c["size"] == len(members) and set(c["typical"]) <= set(members.tolist())
        centre = normalize(features[members].mean(axis=0, keepdims=True))[0]
        closeness = features[members] @ centre  # slow and obvious: every member to the centre
        expected = members[np.argsort(-closeness, kind="stable")][:len(c["typical"])]
        assert set(c["typical"]) == set(expected.tolist())


def test_the_report_draws_the_series(explored):
    _, run, result, _ = explored
    loaded = _explore_images(run, result.to_json())
    assert not isinstance(loaded, Exception), loaded
    tiles = loaded[1].images
    assert len(tiles) == len(loaded[1]) == 2 * PER_CLASS
    tile = tiles[0]
    assert tile.dtype == np.uint8 and tile.ndim == 3 and tile.shape[2] == 3
    assert (tile < 128).any() and (tile == 255).mean() > 0.5  # a line drawn on white
    assert tiles[np.array([1, 2])].shape == (2, *tile.shape)
    fig = mosaics.cluster_gallery(tiles, result.clusters)
    assert len(fig.axes) == 1


def test_a_signal_run_explores_only_signals(explored, tmp_path, capsys):
    _, run, _, _ = explored
    (tmp_path / "pictures").mkdir()
    with pytest.raises(UserError, match="cannot read signals"):
        selfsight.explore(run, str(tmp_path / "pictures"), progress=False)
    assert main(["explore", str(run), str(tmp_path / "missing.npz")]) == 2
    assert "missing.npz" in capsys.readouterr().err


if __name__ == "__main__":
    pytest.main([__file__])
