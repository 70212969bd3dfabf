"""How well features cluster without labels: k-means, scored by clustering accuracy (the best
one-to-one match of clusters to classes, Hungarian algorithm, as in DEC, Xie et al., 2016),
NMI and ARI."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def cluster_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Fraction of items whose cluster maps to their class under the best one-to-one mapping."""
    labels, clusters = np.asarray(labels), np.asarray(clusters)
    size = int(max(labels.max(), clusters.max())) + 1
    counts = np.zeros((size, size), dtype=np.int64)  # (cluster, class)
    np.add.at(counts, (clusters, labels), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(labels))


def cluster_metrics(features: np.ndarray, labels: np.ndarray, n_clusters: int | None = None,
                    seed: int = 0, n_init: int = 10) -> dict:
    """k-means (k = number of classes unless given) on ``features``: accuracy, NMI, ARI."""
    labels = np.asarray(labels)
    n_clusters = n_clusters or len(np.unique(labels))
    clusters = KMeans(n_clusters, n_init=n_init, random_state=seed).fit_predict(
        np.asarray(features, dtype=np.float32))
    return {"n_clusters": n_clusters, "items": len(labels),
            "accuracy": round(cluster_accuracy(labels, clusters), 4),
            "nmi": round(float(normalized_mutual_info_score(labels, clusters)), 4),
            "ari": round(float(adjusted_rand_score(labels, clusters)), 4)}
