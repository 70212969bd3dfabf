"""Neighbours in feature space for the report's image grids: the most cosine-similar rows of a
query, the queries to show, and the near-duplicate pairs to show."""

from __future__ import annotations

import numpy as np


def nearest_neighbours(features: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray,
                                                                                np.ndarray]:
    """The ``k`` most cosine-similar rows of ``features`` for each query row, the query itself
    left out: (Q, k) indices and (Q, k) similarities, most similar first."""
    x = np.asarray(features, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sims = x[queries] @ x.T  # (Q, N)
    sims[np.arange(len(queries)), queries] = -np.inf
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]  # (Q, k)
    return order, np.take_along_axis(sims, order, axis=1)


def pick_queries(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` random query rows, one per class first (so the grid shows different classes)."""
    rng = np.random.default_rng(seed)
    present = rng.permutation(np.unique(labels))
    picks = [int(rng.choice(np.flatnonzero(labels == c))) for c in present[:n]]
    rest = np.setdiff1d(np.arange(len(labels)), picks)
    extra = rng.choice(rest, size=min(n - len(picks), len(rest)), replace=False)
    return np.array([*picks, *extra.tolist()], dtype=np.int64)


def query_neighbours(features: np.ndarray, labels: np.ndarray, queries: int, k: int,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query rows, their (Q, k) nearest rows, the (Q, k) similarities): ``queries`` rows picked
    by :func:`pick_queries`, each with its ``k`` nearest neighbours."""
    rows = pick_queries(labels, queries, seed)
    neighbours, similarities = nearest_neighbours(features, rows, k)
    return rows, neighbours, similarities


def distinct_pairs(examples: list[list[float]], limit: int) -> list[list[float]]:
    """The most similar (test, train, similarity) examples, one per test image."""
    seen: set[int] = set()
    chosen = []
    for example in sorted(examples, key=lambda e: -e[2]):
        if int(example[0]) not in seen:
            seen.add(int(example[0]))
            chosen.append(example)
    return chosen[:limit]
