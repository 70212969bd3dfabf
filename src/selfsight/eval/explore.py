"""What is in a pile of unlabelled images: k-means clusters of the features, the number of
clusters chosen by the mean silhouette coefficient (Rousseeuw, 1987, "Silhouettes: a graphical aid
to the interpretation and validation of cluster analysis"), each cluster's most typical images,
and near-duplicates. The evaluation a run gets when there are no labels to score it with."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score
from sklearn.preprocessing import normalize
from tqdm.auto import tqdm

from selfsight.errors import UserError
from selfsight.eval.drift import near_duplicates
from selfsight.progress import stage

SILHOUETTE_SAMPLE = 4000  # silhouettes cost O(n^2): scored on a seeded sample


def choose_clusters(features: np.ndarray, candidates: range | list[int], seed: int = 0,
                    sample: int = SILHOUETTE_SAMPLE, progress: bool = False,
                    ) -> tuple[int, dict[int, float]]:
    """The k among ``candidates`` whose k-means partition of (a sample of) the L2-normalised
    ``features`` has the highest mean silhouette, and the silhouette of every k tried."""
    x = normalize(np.asarray(features, dtype=np.float32))
    if len(x) > sample:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), sample, replace=False))]
    ks = [k for k in candidates if 2 <= k < len(x)]
    if not ks:
        raise UserError(f"cannot choose among {list(candidates)} clusters for {len(x)} images: "
                        "need at least 2 clusters and more images than clusters")
    scores = {k: round(float(silhouette_score(
        x, KMeans(k, n_init=4, random_state=seed).fit_predict(x))), 4)
        for k in tqdm(ks, desc=f"silhouette ({len(x):,} images)", unit="k", disable=not progress)}
    return max(scores, key=scores.get), scores


def explore_features(features: np.ndarray, clusters: int | None = None, max_clusters: int = 20,
                     typical: int = 8, labels: np.ndarray | None = None,
                     seed: int = 0, progress: bool = False) -> tuple[dict, dict[str, np.ndarray]]:
    """(result, per row: ``cluster`` and ``similarity`` to its centre). Clusters are numbered by
    size, largest first; each lists its size, mean cosine similarity to its centre and its
    ``typical`` rows (nearest the centre).
    With ``labels`` (a labelled source explored as if it had none) the agreement of the clusters
    with them (NMI, ARI) says whether the clusters found are the classes."""
    x = normalize(np.asarray(features, dtype=np.float32))
    if clusters is None:
        clusters, scores = choose_clusters(x, range(2, max_clusters + 1), seed,
                                           progress=progress)
        how = f"highest mean silhouette among k = 2..{max_clusters}"
    else:
        scores, how = {}, "given"
    if not 1 <= clusters <= len(x):
        raise UserError(f"{clusters} clusters for {len(x)} images")
    with stage(f"k-means, {clusters} clusters of {len(x):,} images", progress):
        kmeans = KMeans(clusters, n_init=10, random_state=seed).fit(x)
    order = np.argsort(-np.bincount(kmeans.labels_, minlength=clusters), kind="stable")
    rank = np.empty(clusters, dtype=np.int64)
    rank[order] = np.arange(clusters)
    assigned = rank[kmeans.labels_]
    centres = normalize(kmeans.cluster_centers_[order])
    closeness = np.einsum("nd,nd->n", x, centres[assigned])  # cosine to own centre
    found = []
    for c in range(clusters):
        rows = np.flatnonzero(assigned == c)
        nearest = rows[np.argsort(-closeness[rows], kind="stable")[:typical]]
        found.append({"cluster": c, "size": len(rows),
                      "mean_similarity": round(float(closeness[rows].mean()), 4),
                      "typical": nearest.tolist()})
    with stage(f"near-duplicates among {len(x):,} images", progress):
        duplicates = near_duplicates(torch.from_numpy(x))
    result = {"n_clusters": clusters, "chosen_by": how, "silhouette": scores,
              "clusters": found, "near_duplicates": duplicates}
    if labels is not None:
        result["agreement_with_labels"] = {
            "nmi": round(float(normalized_mutual_info_score(labels, assigned)), 4),
            "ari": round(float(adjusted_rand_score(labels, assigned)), 4),
            "classes": len(np.unique(labels))}
    return result, {"cluster": assigned, "similarity": closeness}
