"""Weighted kNN classifier on cosine similarity (Wu et al., 2018, as used by lightly/solo-learn)."""

from __future__ import annotations

import torch


def knn_predict(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
    chunk: int = 2048,
) -> torch.Tensor:
    """Class scores (Q, C): sum over the k most similar bank items of exp(sim / T) per class.

    bank (N, D) and queries (Q, D) must be L2-normalised.
    """
    num_classes = num_classes or int(bank_labels.max()) + 1
    k = min(k, len(bank))
    scores = []
    for start in range(0, len(queries), chunk):
        sim = queries[start:start + chunk] @ bank.T  # (q, N)
        top_sim, top_idx = sim.topk(k, dim=1)  # (q, k)
        scores.append(knn_votes(top_sim, bank_labels[top_idx], temperature, num_classes))
    return torch.cat(scores)


def knn_votes(top_sim: torch.Tensor, top_labels: torch.Tensor, temperature: float,
              num_classes: int) -> torch.Tensor:
    """(q, C) class scores from the neighbours' similarities and labels, both (q, k)."""
    weights = (top_sim / temperature).exp()
    votes = torch.zeros(len(top_sim), num_classes, dtype=weights.dtype)
    return votes.scatter_add_(1, top_labels, weights)


def knn_accuracy(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    query_labels: torch.Tensor,
    ks: tuple[int, ...] = (20, 200),
    temperature: float = 0.1,
) -> dict[str, float]:
    """Top-1 accuracy for each k: {"knn_k20": ..., "knn_k200": ...}."""
    bank_labels, query_labels = bank_labels.long(), query_labels.long()
    num_classes = int(max(bank_labels.max(), query_labels.max())) + 1
    return {
        f"knn_k{k}": float((knn_predict(bank, bank_labels, queries, k, temperature, num_classes)
                            .argmax(1) == query_labels).float().mean())
        for k in ks
    }
