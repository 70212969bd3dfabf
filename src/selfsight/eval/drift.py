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
                    threshold: float = 0.99, chunk: int = 2048,
                    max_examples: int = 20) -> dict:
    """Pairs with cosine similarity >= ``threshold`` (features L2-normalised).

    With ``bank`` None, pairs within ``queries`` (each unordered pair once); otherwise each
    query against the bank (e.g. test images that also sit in the training set)."""
    within = bank is None
    bank = queries if within else bank
    count, examples = 0, []
    for start in range(0, len(queries), chunk):
        sim = queries[start:start + chunk] @ bank.T  # (q, N)
        if within:  # keep j > i only
            rows = torch.arange(start, start + len(sim)).unsqueeze(1)
            sim = sim.masked_fill(torch.arange(len(bank)).unsqueeze(0) <= rows, -1)
        hits = torch.nonzero(sim >= threshold)
        count += len(hits)
        for i, j in hits[:max(0, max_examples - len(examples))].tolist():
            examples.append([start + i, j, round(float(sim[i, j]), 4)])
    return {"threshold": threshold, "pairs": count, "examples": examples}


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
