import math

import torch
import torch.nn.functional as F

from selfsight.losses import nt_xent


def naive_nt_xent(z1, z2, temperature):
    """SimCLR's loss written as the paper's equation, one anchor at a time."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        j = (i + n2 // 2) % n2
        numerator = math.exp(float(z[i] @ z[j]) / temperature)
        denominator = sum(math.exp(float(z[i] @ z[k]) / temperature) for k in range(n2) if k != i)
        total += -math.log(numerator / denominator)
    return total / n2


def test_nt_xent_matches_naive_loop():
    torch.manual_seed(0)
    z1, z2 = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    for t in (0.1, 0.5, 1.0):
        assert abs(float(nt_xent(z1, z2, t)) - naive_nt_xent(z1, z2, t)) < 1e-5


def test_nt_xent_is_low_for_matching_views_and_high_for_random():
    torch.manual_seed(0)
    z = torch.randn(32, 16)
    aligned = nt_xent(z, z + 0.01 * torch.randn_like(z), 0.1)
    shuffled = nt_xent(z, torch.randn_like(z), 0.1)
    assert aligned < 0.5 < math.log(63) - 1 < shuffled


def test_nt_xent_gradient_flows_to_both_views():
    z1, z2 = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8, requires_grad=True)
    nt_xent(z1, z2).backward()
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0
