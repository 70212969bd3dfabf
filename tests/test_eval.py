import math

import torch
import torch.nn.functional as F

from selfsight.eval import knn_accuracy, knn_predict, linear_probe


def naive_knn(bank, labels, query, k, t, classes):
    sims = [(float(query @ b), int(y)) for b, y in zip(bank, labels)]
    sims.sort(key=lambda s: -s[0])
    votes = [0.0] * classes
    for sim, y in sims[:k]:
        votes[y] += math.exp(sim / t)
    return votes


def test_knn_matches_naive_vote():
    torch.manual_seed(0)
    bank = F.normalize(torch.randn(50, 8), dim=1)
    labels = torch.randint(0, 4, (50,))
    queries = F.normalize(torch.randn(7, 8), dim=1)
    scores = knn_predict(bank, labels, queries, k=10, temperature=0.1, num_classes=4, chunk=3)
    for q, s in zip(queries, scores):
        assert torch.allclose(s, torch.tensor(naive_knn(bank, labels, q, 10, 0.1, 4)), rtol=1e-4)


def test_knn_and_linear_separate_clusters():
    torch.manual_seed(0)
    centres = F.normalize(torch.randn(3, 16), dim=1) * 3
    y = torch.arange(600) % 3
    x = F.normalize(centres[y] + 0.3 * torch.randn(600, 16), dim=1)
    acc = knn_accuracy(x[:400], y[:400], x[400:], y[400:], ks=(5,))
    assert acc["knn_k5"] > 0.95
    assert linear_probe(x[:400], y[:400], x[400:], y[400:])["linear_top1"] > 0.95
    random = knn_accuracy(x[:400], y[torch.randperm(400)], x[400:], y[400:], ks=(5,))
    assert random["knn_k5"] < 0.6
