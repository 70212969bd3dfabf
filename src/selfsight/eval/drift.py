"""What is in the data and whether it changed: per-class coverage and accuracy, near-duplicate
pairs, and an embedding drift score between two image sets (kernel two-sample test with the
unbiased MMD, Gretton et al., 2012, and a permutation p-value)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import confusion_matrix


def per_class(train_labels: np.ndarray, test_labels: np.ndarray, predicted: np.ndarray,
              classes: list[str] | None = None) -> dict:
    """Counts per class in each split, test accuracy per class, and the confusion matrix."""
    n = int(max(train_labels.max(), test_labels.max())) + 1
    confusion = confusion_matrix(test_labels, predicted, labels=range(n))  # (true, predicted)
    test_counts = confusion.sum(1)
    return {"classes": list(classes) if classes else [str(i) for i in range(n)],
            "train_counts": np.bincount(train_labels, minlength=n).tolist(),
            "test_counts": test_counts.tolist(),
            "accuracy": [round(float(d / max(t, 1)), 4)
                         for d, t in zip(np.diag(confusion), test_counts)],
            "confusion": confusion.tolist()}


def near_duplicates(queries: torch.Tensor, bank: torch.Tensor | None = None,
                    relative: float = 0.25, chunk: int = 2048,
                    max_examples: int = 20) -> dict:
    """Pairs much closer than is usual in this feature space (features L2-normalised).

    A pair is a near-duplicate when its distance is below ``relative`` times the median
    nearest-neighbour distance of the queries: self-supervised features crowd together (typical
    neighbours sit at cosine 0.98), so a fixed cosine threshold would mean something different
    for every model. With ``bank`` None, pairs within ``queries`` (each unordered pair once);
    otherwise each query against the bank (e.g. test images that also sit in the training set).
    """
    within = bank is None
    bank = queries if within else bank

    def similarities(start: int) -> torch.Tensor:
        sim = queries[start:start + chunk] @ bank.T  # (q, N)
        if within:  # keep j > i only: each pair once, never an item with itself
            rows = torch.arange(start, start + len(sim)).unsqueeze(1)
            sim = sim.masked_fill(torch.arange(len(bank)).unsqueeze(0) <= rows, -1)
        return sim

    starts = range(0, len(queries), chunk)
    if within:  # the nearest other item in either direction: the full row, minus itself
        nearest = torch.cat([_nearest_other(queries, s, chunk) for s in starts])
    else:
        nearest = torch.cat([similarities(s).max(1).values for s in starts])
    typical = (2 - 2 * nearest.clamp(max=1)).clamp_min(0).sqrt().median()
    threshold = float(1 - (relative * typical) ** 2 / 2)  # distance -> cosine similarity
    count, best = 0, {}  # best: query -> (similarity, its closest partner)
    for start in starts:
        sim = similarities(start)
        hits = torch.nonzero(sim >= threshold)
        count += len(hits)
        for i, j in hits.tolist():
            best[start + i] = max(best.get(start + i, (-1.0, -1)), (float(sim[i, j]), j))
    ranked = sorted(best.items(), key=lambda item: -item[1][0])[:max_examples]
    examples = [[i, j, round(v, 5)] for i, (v, j) in ranked]  # most similar first
    return {"relative": relative, "median_neighbour_distance": round(float(typical), 5),
            "threshold": round(threshold, 6), "pairs": count, "examples": examples}


def _nearest_other(x: torch.Tensor, start: int, chunk: int) -> torch.Tensor:
    """Similarity of each of x[start:start + chunk] to its nearest other row of x."""
    sim = x[start:start + chunk] @ x.T  # (q, N)
    rows = torch.arange(len(sim))
    sim[rows, rows + start] = -1
    return sim.max(1).values


def drift_score(reference: torch.Tensor, current: torch.Tensor, max_items: int = 2000,
                permutations: int = 200, seed: int = 0) -> dict:
    """Unbiased MMD^2 between two feature sets (Gaussian kernel, median-distance bandwidth) and
    the permutation p-value of "both sets come from the same distribution"."""
    gen = torch.Generator().manual_seed(seed)

    def sample(x: torch.Tensor) -> torch.Tensor:
        return x[torch.randperm(len(x), generator=gen)[:max_items]].double()

    x, y = sample(reference), sample(current)
    both = torch.cat([x, y])
    dist2 = torch.cdist(both, both).pow(2)  # (n + m, n + m)
    bandwidth = dist2[dist2 > 0].median()
    kernel = torch.exp(-dist2 / bandwidth)
    n = len(x)

    def mmd2(index: torch.Tensor) -> float:
        k = kernel[index][:, index]
        kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
        m = len(k) - n
        return float((kxx.sum() - kxx.diag().sum()) / (n * (n - 1))
                     + (kyy.sum() - kyy.diag().sum()) / (m * (m - 1)) - 2 * kxy.mean())

    observed = mmd2(torch.arange(len(both)))
    null = [mmd2(torch.randperm(len(both), generator=gen)) for _ in range(permutations)]
    p_value = (1 + sum(v >= observed for v in null)) / (1 + permutations)
    return {"mmd2": round(observed, 6), "p_value": round(p_value, 4),
            "null_mmd2_95": round(float(np.quantile(null, 0.95)), 6),
            "reference_items": n, "current_items": len(y), "permutations": permutations}
