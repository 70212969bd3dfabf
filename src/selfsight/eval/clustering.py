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
                    seeds: tuple[int, ...] = (0, 1, 2), n_init: int = 10) -> dict:
    """k-means (k = number of classes unless given) on ``features``, once per seed: accuracy,
    NMI and ARI as the mean over seeds, their spread in ``std`` and each run in ``per_seed``.

    k-means lands in a different local optimum for each initialisation, and clustering
    accuracy moves by points between them, so one seed is not a measurement."""
    labels = np.asarray(labels)
    n_clusters = n_clusters or len(np.unique(labels))
    features = np.asarray(features, dtype=np.float32)
    runs = []
    for seed in seeds:
        clusters = KMeans(n_clusters, n_init=n_init, random_state=seed).fit_predict(features)
        runs.append({"seed": seed, "accuracy": cluster_accuracy(labels, clusters),
                     "nmi": float(normalized_mutual_info_score(labels, clusters)),
                     "ari": float(adjusted_rand_score(labels, clusters))})
    metrics = ("accuracy", "nmi", "ari")
    return {"n_clusters": n_clusters, "items": len(labels), "seeds": list(seeds),
            **{m: round(float(np.mean([r[m] for r in runs])), 4) for m in metrics},
            "std": {m: round(float(np.std([r[m] for r in runs])), 4) for m in metrics},
            "per_seed": [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}
                         for r in runs]}
