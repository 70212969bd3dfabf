"""Where to place features on a 2-D map, for the report's embedding maps: t-SNE of a seeded
sample of rows."""

from __future__ import annotations

import numpy as np


def tsne_2d(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """t-SNE (van der Maaten & Hinton, 2008) of (N, D) features to (N, 2), cosine metric."""
    from sklearn.manifold import TSNE

    x = np.asarray(features, dtype=np.float32)
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", metric="cosine",
                random_state=seed).fit_transform(x)


def spread_sample(labels: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """Up to ``limit`` sorted row indices, drawn at random (every row when there are fewer)."""
    if len(labels) <= limit:
        return np.arange(len(labels))
    return np.sort(np.random.default_rng(seed).choice(len(labels), limit, replace=False))


def embed_sample(features: np.ndarray, labels: np.ndarray, limit: int,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rows, points): up to ``limit`` rows of ``features`` drawn by :func:`spread_sample` and
    their (len(rows), 2) t-SNE."""
    rows = spread_sample(labels, limit, seed)
    return rows, tsne_2d(features[rows], seed)
