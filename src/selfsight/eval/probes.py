"""Probes of frozen features beyond the single kNN / linear figure: a kNN sweep over k and
temperature, and few-shot prototype classification (Snell et al., 2017) in N-way K-shot
episodes."""

from __future__ import annotations

import numpy as np
import torch

from selfsight.errors import UserError
from selfsight.eval.knn import knn_votes


def knn_sweep(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    query_labels: torch.Tensor,
    ks: tuple[int, ...] = (1, 5, 10, 20, 50, 100, 200),
    temperatures: tuple[float, ...] = (0.02, 0.05, 0.07, 0.1, 0.2, 0.5),
    chunk: int = 2048,
) -> dict:
    """Weighted-kNN top-1 for every (k, T): the neighbours are found once, at the largest k.
    A k over the bank's size is capped to it (the ``ks`` of the result are the k used)."""
    ks = tuple(sorted({min(k, len(bank)) for k in ks}))
    bank_labels, query_labels = bank_labels.long(), query_labels.long()
    num_classes = int(max(bank_labels.max(), query_labels.max())) + 1
    k_max = min(max(ks), len(bank))
    correct = torch.zeros(len(ks), len(temperatures))
    for start in range(0, len(queries), chunk):
        sim = queries[start:start + chunk] @ bank.T  # (q, N)
        top_sim, top_idx = sim.topk(k_max, dim=1)  # (q, k_max), sorted by similarity
        truth = query_labels[start:start + chunk]
        for i, k in enumerate(ks):
            for j, t in enumerate(temperatures):
                votes = knn_votes(top_sim[:, :k], bank_labels[top_idx[:, :k]], t, num_classes)
                correct[i, j] += (votes.argmax(1) == truth).sum()
    top1 = correct / len(queries)
    return {"ks": list(ks), "temperatures": list(temperatures),
            "top1": [[round(float(a), 4) for a in row] for row in top1]}


def few_shot(
    features: torch.Tensor,
    labels: torch.Tensor,
    n_way: int = 5,
    k_shot: int = 1,
    n_query: int = 15,
    episodes: int = 600,
    seed: int = 0,
) -> dict:
    """Mean accuracy and 95% interval of a nearest-prototype classifier (cosine) over episodes.

    Each episode draws ``n_way`` classes, ``k_shot`` support and ``n_query`` query images per
    class; a class prototype is the normalised mean of its support features."""
    labels = labels.long()
    classes = labels.unique()
    if n_way > len(classes):
        raise UserError(f"few_shot: {n_way}-way needs {n_way} classes, the data has "
                        f"{len(classes)}")
    by_class = {int(c): torch.nonzero(labels == c).flatten() for c in classes}
    gen = torch.Generator().manual_seed(seed)
    accuracies = []
    for _ in range(episodes):
        chosen = classes[torch.randperm(len(classes), generator=gen)[:n_way]]
        support, query = [], []
        for c in chosen:
            pool = by_class[int(c)]
            pick = pool[torch.randperm(len(pool), generator=gen)[:k_shot + n_query]]
            support.append(pick[:k_shot])
            query.append(pick[k_shot:])
        protos = torch.stack([features[s].mean(0) for s in support])  # (n_way, D)
        protos = torch.nn.functional.normalize(protos, dim=1)
        q = torch.cat(query)
        truth = torch.cat([torch.full((len(s),), i) for i, s in enumerate(query)])
        pred = (features[q] @ protos.T).argmax(1)
        accuracies.append(float((pred == truth).float().mean()))
    acc = np.asarray(accuracies)
    return {"n_way": n_way, "k_shot": k_shot, "n_query": n_query, "episodes": episodes,
            "mean": round(float(acc.mean()), 4),
            "ci95": round(float(1.96 * acc.std(ddof=1) / np.sqrt(len(acc))), 4)}
