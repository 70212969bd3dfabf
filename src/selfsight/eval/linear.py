"""Linear probe on frozen features: standardised features, multinomial logistic regression
trained full-batch with L-BFGS (deterministic, seconds on a CPU for 60k x 512)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def linear_probe(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    test: torch.Tensor,
    test_labels: torch.Tensor,
    weight_decay: float = 1e-5,
    max_iter: int = 500,
) -> dict[str, float]:
    """Top-1 test accuracy of a softmax classifier fit on (train, train_labels)."""
    train_labels, test_labels = train_labels.long(), test_labels.long()
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    x_train, x_test = (train - mean) / std, (test - mean) / std
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    torch.manual_seed(0)
    layer = torch.nn.Linear(train.shape[1], num_classes)
    opt = torch.optim.LBFGS(layer.parameters(), lr=1, max_iter=max_iter, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-6)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(layer(x_train), train_labels)
        loss = loss + weight_decay * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        train_acc = (layer(x_train).argmax(1) == train_labels).float().mean()
        test_acc = (layer(x_test).argmax(1) == test_labels).float().mean()
    return {"linear_top1": float(test_acc), "linear_train_top1": float(train_acc)}
