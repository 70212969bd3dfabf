"""Exploring unlabelled images: the number of clusters chosen by silhouette on planted structure,
clusters numbered by size with their truly most typical members, near-duplicates found."""

import numpy as np
import pytest
from sklearn.metrics import silhouette_score

from selfsight.eval.explore import choose_clusters, explore_features
from selfsight.label_selection import typical_picks, typicality


def planted_blobs(sizes: tuple[int, ...], dim: int = 16, noise: float = 0.05,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tight groups around random directions (features are compared by angle)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(sizes), dim))
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return centres[labels] + noise * rng.normal(size=(len(labels), dim)), labels


def test_silhouette_finds_the_planted_number_of_groups():
    for groups in (3, 5):
        features, _ = planted_blobs((60,) * groups, seed=groups)
        chosen, scores = choose_clusters(features, range(2, 9))
        assert chosen == groups and sorted(scores) == list(range(2, 9))
        assert scores[groups] > 0.8


def test_silhouette_scores_match_sklearn_on_the_unit_features():
    features, labels = planted_blobs((40, 40, 40))
    _, scores = choose_clusters(features, [3])
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    assert scores[3] == pytest.approx(silhouette_score(unit, labels), abs=1e-4)


def test_clusters_are_numbered_by_size_with_their_most_typical_members():
    features, labels = planted_blobs((30, 80, 50), noise=0.3)
    features[5] = features[100]  # a planted copy: a member of group 1 now
    result, rows = explore_features(features, max_clusters=6, typical=4, labels=labels)
    assert result["n_clusters"] == 3
    assert [c["size"] for c in result["clusters"]] == [81, 50, 29]
    assert result["agreement_with_labels"]["nmi"] > 0.95
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    for c in result["clusters"]:
        members = np.flatnonzero(rows["cluster"] == c["cluster"])
        centre = unit[members].mean(0)
        cosine = unit[members] @ (centre / np.linalg.norm(centre))
        np.testing.assert_allclose(rows["similarity"][members], cosine, atol=1e-4)
        assert c["typical"] == members[np.argsort(-cosine)[:4]].tolist()
        assert c["mean_similarity"] == pytest.approx(cosine.mean(), abs=1e-3)
    assert result["near_duplicates"]["pairs"] == 1
    assert result["near_duplicates"]["examples"][0][:2] == [5, 100]


def test_a_given_number_of_clusters_is_kept_and_impossible_ones_refused():
    features, _ = planted_blobs((20, 20))
    result, rows = explore_features(features, clusters=4)
    assert result["n_clusters"] == 4 and result["silhouette"] == {}
    assert set(rows["cluster"].tolist()) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="50 clusters for 40 images"):
        explore_features(features, clusters=50)
    with pytest.raises(ValueError, match="need at least 2 clusters"):
        choose_clusters(features[:2], range(2, 5))


def test_typicality_is_the_inverse_mean_squared_distance_to_the_nearest_others():
    points = np.random.default_rng(0).normal(size=(30, 4))
    squared = ((points[:, None] - points[None]) ** 2).sum(-1)
    np.fill_diagonal(squared, np.inf)
    expected = 1 / (np.sort(squared, axis=1)[:, :5].mean(1) + 1e-5)
    np.testing.assert_allclose(typicality(points, 5), expected, rtol=1e-5)


def test_typiclust_picks_one_typical_image_per_group_then_cycles_without_repeats():
    features, labels = planted_blobs((200, 120, 60, 30, 12), noise=0.2)
    picks, clusters, scores = typical_picks(features, 5)
    assert sorted(labels[picks].tolist()) == [0, 1, 2, 3, 4]  # every group once, even of 12
    assert len(set(clusters.tolist())) == 5
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    for pick, score in zip(picks, scores):
        group = np.flatnonzero(labels == labels[pick])
        best = typicality(unit[group], min(20, len(group) // 2))
        assert group[np.argmax(best)] == pick and score == pytest.approx(best.max())
    # Random draws of 5 of these 422 images miss a group most of the time.
    rng = np.random.default_rng(0)
    misses = np.mean([len(set(labels[rng.choice(422, 5, replace=False)])) < 5
                      for _ in range(200)])
    assert misses > 0.5
    many, _, _ = typical_picks(features, 60)
    assert len(set(many.tolist())) == 60
    with pytest.raises(ValueError, match="cannot pick 500 images to label out of 422"):
        typical_picks(features, 500)
