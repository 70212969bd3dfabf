"""Which images to label first, when labels are few: TypiClust (Hacohen, Dekel and Weinshall,
2022, "Active learning on a budget: opposite strategies suit high and low budgets").

With a budget of B labels the features are split into B clusters (k-means), and from each
cluster, largest first, the most *typical* image is picked: the one whose nearest neighbours in
its cluster are closest (typicality = 1 / mean squared distance to its K=20 nearest neighbours,
fewer in small clusters). The picks cover every dense region of the data once, and each is a
clear example of its region rather than an outlier: at low budgets this beats drawing images at
random, which spends labels on the common modes and on oddities.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import normalize

from selfsight.errors import UserError

NEIGHBOURS = 20
MIN_CLUSTER = 5  # smaller clusters are left out: too small to be a region worth a label
MAX_CLUSTERS = 500  # the paper's cap; larger budgets cycle through the clusters again


def typicality(features: np.ndarray, neighbours: int = NEIGHBOURS) -> np.ndarray:
    """1 / (mean squared distance to the ``neighbours`` nearest other rows + 1e-5)."""
    k = max(1, min(neighbours, len(features) - 1))
    if len(features) < 2:
        return np.ones(len(features))
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(features).kneighbors(features)
    return 1 / ((distances[:, 1:] ** 2).mean(1) + 1e-5)  # column 0: the row itself


def typical_picks(features: np.ndarray, budget: int, seed: int = 0,
                  neighbours: int = NEIGHBOURS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows to label in order, each pick's cluster, each pick's typicality) for ``budget``
    labels among the (N, D) ``features`` (L2-normalised here)."""
    x = normalize(np.asarray(features, dtype=np.float32))
    if not 1 <= budget <= len(x):
        raise UserError(f"cannot pick {budget} images to label out of {len(x)}")
    k = min(budget, MAX_CLUSTERS)
    kmeans = KMeans(k, n_init=3, random_state=seed) if k <= 50 else \
        MiniBatchKMeans(k, batch_size=5000, n_init=3, random_state=seed)
    clusters = kmeans.fit_predict(x)
    sizes = np.bincount(clusters, minlength=k)
    order = [c for c in np.argsort(-sizes, kind="stable") if sizes[c] > MIN_CLUSTER] or \
        [int(np.argmax(sizes))]
    free = np.ones(len(x), dtype=bool)
    picks, picked_from, scores = [], [], []
    while len(picks) < budget:
        for cluster in order:
            members = np.flatnonzero((clusters == cluster) & free)
            if len(members) == 0 or len(picks) == budget:
                continue
            typical = typicality(x[members], min(neighbours, max(1, len(members) // 2)))
            best = int(np.argmax(typical))
            picks.append(members[best])
            picked_from.append(cluster)
            scores.append(typical[best])
            free[members[best]] = False
        if not free[np.isin(clusters, order)].any():
            order = list(range(k))  # every kept cluster used up: the small ones too
    return np.array(picks), np.array(picked_from), np.array(scores)
