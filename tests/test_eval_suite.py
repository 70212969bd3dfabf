"""The evaluation suite against slow, obviously correct references and planted structure."""

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from selfsight.eval.clustering import cluster_accuracy, cluster_metrics
from selfsight.eval.drift import drift_score, near_duplicates, per_class
from selfsight.eval.knn import knn_accuracy
from selfsight.eval.label_efficiency import (
    FinetuneRecipe,
    choose_steps,
    savings_factor,
    stratified_subset,
    validation_splits,
)
from selfsight.eval.probes import few_shot, knn_sweep
from selfsight.eval.robustness import SEVERITIES, corrupt


def test_cluster_accuracy_is_the_best_permutation():
    rng = np.random.default_rng(0)
    labels, clusters = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    best = max(np.mean(np.array(perm)[clusters] == labels)
               for perm in itertools.permutations(range(4)))
    assert cluster_accuracy(labels, clusters) == pytest.approx(best)


def test_kmeans_recovers_planted_clusters():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(5, 16)) * 10
    labels = rng.integers(0, 5, 500)
    result = cluster_metrics(centers[labels] + rng.normal(size=(500, 16)), labels)
    assert result["accuracy"] == 1.0 and result["nmi"] == pytest.approx(1.0)


def test_kmeans_reports_every_seed_and_their_mean():
    # Overlapping blobs: k-means initialisations end in different optima, so seeds disagree.
    from sklearn.cluster import KMeans
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 6, 600)
    features = rng.normal(size=(6, 8))[labels] * 1.5 + rng.normal(size=(600, 8))
    result = cluster_metrics(features, labels, seeds=(0, 1, 2, 3), n_init=1)
    assert [r["seed"] for r in result["per_seed"]] == [0, 1, 2, 3]
    for run in result["per_seed"]:
        alone = KMeans(6, n_init=1, random_state=run["seed"]).fit_predict(
            features.astype(np.float32))
        assert run["accuracy"] == pytest.approx(cluster_accuracy(labels, alone), abs=1e-4)
    accuracies = [r["accuracy"] for r in result["per_seed"]]
    assert result["accuracy"] == pytest.approx(np.mean(accuracies), abs=1e-4)
    assert result["std"]["accuracy"] == pytest.approx(np.std(accuracies), abs=1e-4)
    assert len(set(accuracies)) > 1 and result["std"]["accuracy"] > 0


def test_knn_sweep_matches_knn_accuracy_at_every_setting():
    gen = torch.Generator().manual_seed(0)
    bank = F.normalize(torch.randn(400, 8, generator=gen), dim=1)
    queries = F.normalize(torch.randn(100, 8, generator=gen), dim=1)
    bank_y, query_y = (bank[:, 0] > 0).long() + (bank[:, 1] > 0), (queries[:, 0] > 0).long()
    sweep = knn_sweep(bank, bank_y, queries, query_y, ks=(1, 7, 50), temperatures=(0.05, 0.5),
                      chunk=33)
    for i, k in enumerate(sweep["ks"]):
        for j, t in enumerate(sweep["temperatures"]):
            ref = knn_accuracy(bank, bank_y, queries, query_y, (k,), t)[f"knn_k{k}"]
            assert sweep["top1"][i][j] == pytest.approx(ref, abs=1e-4)


def test_few_shot_separable_and_chance():
    labels = torch.arange(10).repeat_interleave(40)
    separable = F.one_hot(labels, 10).float() + 0.01 * torch.randn(400, 10)
    assert few_shot(F.normalize(separable, dim=1), labels, 5, 1, episodes=50)["mean"] == 1.0
    noise = few_shot(F.normalize(torch.randn(400, 32), dim=1), labels, 5, 1, episodes=300)
    assert abs(noise["mean"] - 0.2) < 3 * noise["ci95"] + 0.02
    with pytest.raises(ValueError, match="11-way"):
        few_shot(separable, labels, 11, 1)


def test_corruptions_keep_shape_grow_with_severity_and_are_seeded(fmnist_small):
    images = fmnist_small.images[:64]
    for name in SEVERITIES:
        change = [np.abs(corrupt(images, name, s).astype(int) - images).mean() for s in (1, 3, 5)]
        out = corrupt(images, name, 2)
        assert out.shape == images.shape and out.dtype == np.uint8
        assert change[0] < change[1] < change[2], name
        assert np.array_equal(out, corrupt(images, name, 2))
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(images, "fog", 1)


def test_near_duplicates_match_brute_force():
    gen = torch.Generator().manual_seed(1)
    x = F.normalize(torch.randn(50, 6, generator=gen), dim=1)
    x[30], x[41] = x[3], F.normalize(x[7] + 1e-3, dim=0)
    found = near_duplicates(x, relative=0.25, chunk=16)
    nearest = torch.tensor([max(float(x[i] @ x[j]) for j in range(50) if j != i)
                            for i in range(50)])
    typical = (2 - 2 * nearest).clamp_min(0).sqrt().median()
    threshold = 1 - (0.25 * typical) ** 2 / 2
    brute = [(i, j) for i in range(50) for j in range(i + 1, 50) if x[i] @ x[j] >= threshold]
    assert found["threshold"] == pytest.approx(float(threshold), abs=1e-5)
    assert found["pairs"] == len(brute) == 2
    assert sorted((i, j) for i, j, _ in found["examples"]) == sorted(brute)
    against = near_duplicates(x[:10], x[10:])
    assert sorted((i, j) for i, j, _ in against["examples"]) == [(3, 20), (7, 31)]


def test_drift_score_detects_a_shift_and_not_a_resample():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, 8, generator=gen), torch.randn(300, 8, generator=gen)
    same = drift_score(a, b, permutations=100)
    shifted = drift_score(a, b + 0.5, permutations=100)
    assert same["p_value"] > 0.05 and shifted["p_value"] < 0.02
    assert shifted["mmd2"] > shifted["null_mmd2_95"] > same["mmd2"] - 1


def test_per_class_counts_accuracy_confusion():
    out = per_class(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]), np.array([0, 1, 0, 2]))
    assert out["train_counts"] == [2, 1, 1] and out["test_counts"] == [1, 2, 1]
    assert out["accuracy"] == [1.0, 0.5, 1.0]
    assert out["confusion"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]


def test_stratified_subset_keeps_class_proportions():
    labels = np.repeat(np.arange(10), [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000])
    index = stratified_subset(labels, 0.1, seed=0)
    assert len(index) == 550 and np.all(np.diff(index) > 0)
    assert np.allclose(np.bincount(labels[index]), np.bincount(labels) * 0.1, atol=1)
    assert not np.array_equal(index, stratified_subset(labels, 0.1, seed=1))
    assert set(labels[stratified_subset(labels, 0.0001, 0)]) == set(range(10))
    assert len(stratified_subset(labels, 1.0, 0)) == len(labels)


def test_choose_steps_climbs_until_longer_training_stops_helping():
    curve = {100: 0.70, 200: 0.78, 400: 0.80, 800: 0.79, 1600: 0.95}
    trained = []

    def score(steps):
        trained.append(steps)
        return curve[steps]

    best, scores = choose_steps(sorted(curve), score)
    # stops at the first rung that does not beat the best: 1600 is never trained
    assert best == 400 and trained == [100, 200, 400, 800] and scores == {
        n: curve[n] for n in trained}
    # a converged arm (no gain from doubling) keeps the shortest budget; ties go short
    assert choose_steps([100, 200, 400], lambda n: 0.8)[0] == 100
    # an arm that keeps improving climbs to the top rung
    assert choose_steps([100, 200, 400], lambda n: n / 1000) == (400, {100: .1, 200: .2, 400: .4})


def test_validation_splits_hold_out_once_or_every_image_once_per_fold():
    labels = np.repeat(np.arange(3), [10, 20, 30])
    (kept, held), = validation_splits(labels, FinetuneRecipe(validation_fraction=0.2), seed=0)
    assert np.array_equal(np.bincount(labels[held]), [2, 4, 6])
    assert np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(60))
    splits = validation_splits(labels, FinetuneRecipe(validation_folds=5), seed=0)
    assert len(splits) == 5
    held_all = np.concatenate([held for _, held in splits])
    assert np.array_equal(np.sort(held_all), np.arange(60))  # each image validated exactly once
    for kept, held in splits:
        assert np.array_equal(np.bincount(labels[held]), [2, 4, 6])  # stratified
        assert not set(kept) & set(held) and len(kept) + len(held) == 60
    other = validation_splits(labels, FinetuneRecipe(validation_folds=5), seed=1)
    assert not np.array_equal(other[0][1], splits[0][1])  # the seed draws the folds
    with pytest.raises(ValueError, match="smallest class has 10"):
        validation_splits(labels, FinetuneRecipe(validation_folds=11), seed=0)


@pytest.mark.parametrize("bad", [{"step_ladder": ()}, {"step_ladder": (1, 0)},
                                 {"validation_fraction": 1.0}, {"validation_folds": 0},
                                 {"validation_folds": 2.5}])
def test_recipe_rejects_a_ladder_or_hold_out_it_cannot_use(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        FinetuneRecipe(**bad)


def test_recipe_settings_read_as_name_value_pairs_that_rebuild_the_recipe():
    recipe = FinetuneRecipe(lr=3e-4, step_ladder=(1, 2.5), validation_folds=5)
    text = recipe.settings()
    assert "lr=0.0003" in text and "step_ladder=1/2.5" in text and "{" not in text
    pairs = dict(item.split("=") for item in text.split(", "))
    assert pairs.keys() == vars(recipe).keys()
    rebuilt = {k: tuple(float(v) for v in pairs[k].split("/")) if k == "step_ladder"
               else type(getattr(recipe, k))(float(pairs[k])) for k in pairs}
    assert FinetuneRecipe(**rebuilt) == recipe


def test_savings_factor_interpolates_in_log_fraction():
    factor, _ = savings_factor([0.01, 0.1, 1.0], [0.70, 0.80, 0.90], target=0.75)
    assert factor == pytest.approx(1 / math.sqrt(0.01 * 0.1))
    bound, note = savings_factor([0.01, 0.1, 1.0], [0.91, 0.92, 0.93], target=0.90)
    assert bound == pytest.approx(100) and "lower bound" in note
    none, _ = savings_factor([0.01, 1.0], [0.5, 0.6], target=0.9)
    assert none is None
    # a study that stops below 100%: scratch at its largest fraction is the reference
    partial, note = savings_factor([0.01, 0.1], [0.70, 0.80], target=0.75)
    assert partial == pytest.approx(0.1 / math.sqrt(0.01 * 0.1)) and "scratch@10%" in note
    alone, note = savings_factor([0.01], [0.80], target=0.70)
    assert alone is None and "one fraction" in note
