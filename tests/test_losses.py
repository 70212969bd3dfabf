import math

import pytest
import torch
import torch.nn.functional as F

from selfsight.losses import nt_xent


def naive_nt_xent(z1, z2, temperature, decoupled=False):
    """SimCLR's loss written as the paper's equation, one anchor at a time; ``decoupled``: DCL's
    equation, whose denominator sums over the negatives only."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        j = (i + n2 // 2) % n2
        numerator = math.exp(float(z[i] @ z[j]) / temperature)
        denominator = sum(math.exp(float(z[i] @ z[k]) / temperature) for k in range(n2)
                          if k != i and not (decoupled and k == j))
        total += -math.log(numerator / denominator)
    return total / n2


def test_nt_xent_matches_naive_loop():
    torch.manual_seed(0)
    z1, z2 = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    for t in (0.1, 0.5, 1.0):
        assert abs(float(nt_xent(z1, z2, t)) - naive_nt_xent(z1, z2, t)) < 1e-5


def test_decoupled_nt_xent_matches_naive_loop():
    torch.manual_seed(1)
    z1, z2 = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    per_image = nt_xent(z1, z2, 0.2, per_image=True, decoupled=True)
    assert abs(float(per_image.mean()) - naive_nt_xent(z1, z2, 0.2, decoupled=True)) < 1e-6
    assert float(nt_xent(z1, z2, 0.2, decoupled=True)) < float(nt_xent(z1, z2, 0.2))
    z1.requires_grad_(True)
    nt_xent(z1, z2, 0.2, decoupled=True).backward()
    assert torch.isfinite(z1.grad).all() and z1.grad.abs().sum() > 0


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


# ----- the other methods' losses against slow, obviously correct references --------------------
from selfsight.losses import (  # noqa: E402
    DINOLoss,
    barlow_twins,
    infonce,
    masked_reconstruction,
    negative_cosine,
    patchify,
    vicreg,
)
from selfsight.nn.masking import random_masking  # noqa: E402


def test_infonce_matches_naive_loop():
    torch.manual_seed(0)
    q, k, t = torch.randn(5, 4), torch.randn(5, 4), 0.2
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
    naive = 0.0
    for i in range(5):
        logits = [float(qn[i] @ kn[j]) / t for j in range(5)]
        naive += -(logits[i] - math.log(sum(math.exp(v) for v in logits)))
    assert float(infonce(q, k, t)) == pytest.approx(naive / 5 * 2 * t, rel=1e-5)


def test_negative_cosine_is_two_minus_two_cosine():
    p, z = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    # cos = 1/sqrt(2) and -1
    assert float(negative_cosine(p, z)) == pytest.approx(((2 - math.sqrt(2)) + 4) / 2)


def naive_dino(student, teacher, center, t_temp, s_temp):
    """Every (teacher global view i, student view j != i) pair, sample by sample."""
    total, pairs = 0.0, 0
    for i, t in enumerate(teacher):
        for j, s in enumerate(student):
            if i == j:
                continue
            for b in range(t.shape[0]):
                p = [math.exp((float(t[b, k]) - float(center[0, k])) / t_temp)
                     for k in range(t.shape[1])]
                q = [math.exp(float(s[b, k]) / s_temp) for k in range(s.shape[1])]
                total += -sum(pk / sum(p) * math.log(qk / sum(q)) for pk, qk in zip(p, q))
            pairs += 1
    return total / (pairs * teacher[0].shape[0])


def test_dino_loss_matches_pairwise_reference_and_updates_center():
    torch.manual_seed(0)
    student = [torch.randn(3, 6) for _ in range(4)]  # 2 global + 2 local
    teacher = [torch.randn(3, 6) for _ in range(2)]
    loss_fn = DINOLoss(6, student_temp=0.1, center_momentum=0.9)
    loss_fn.center.copy_(torch.randn(1, 6) * 0.1)
    center = loss_fn.center.clone()
    loss = loss_fn(student, teacher, teacher_temp=0.04)
    assert float(loss) == pytest.approx(naive_dino(student, teacher, center, 0.04, 0.1),
                                        rel=1e-4)
    expected = 0.9 * center + 0.1 * torch.cat(teacher).mean(0, keepdim=True)
    assert torch.allclose(loss_fn.center, expected, atol=1e-6)


def test_barlow_twins_matches_cross_correlation_loops():
    torch.manual_seed(0)
    z1, z2, lambd = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, 3), 0.5
    n, d = z1.shape

    def standard(z, i):
        col = [float(z[b, i]) for b in range(n)]
        mean = sum(col) / n
        std = math.sqrt(sum((c - mean) ** 2 for c in col) / n + 1e-5)
        return [(c - mean) / std for c in col]

    naive = 0.0
    for i in range(d):
        for j in range(d):
            a, b = standard(z1, i), standard(z2, j)
            c = sum(x * y for x, y in zip(a, b)) / n
            naive += (1 - c) ** 2 if i == j else lambd * c ** 2
    assert float(barlow_twins(z1, z2, lambd)) == pytest.approx(naive, rel=1e-4)


def test_vicreg_terms_match_numpy_definitions():
    import numpy as np

    torch.manual_seed(0)
    z1, z2 = torch.randn(10, 4) * 0.5, torch.randn(10, 4) * 2
    loss, terms = vicreg(z1, z2, invariance=2.0, variance=3.0, covariance=4.0)
    a, b = z1.double().numpy(), z2.double().numpy()
    invariance = ((a - b) ** 2).mean()
    variance = np.mean([np.maximum(0, 1 - np.sqrt(x.var(0, ddof=1) + 1e-4)).mean()
                        for x in (a, b)])
    covariance = sum(((np.cov(x.T) ** 2).sum() - (np.diag(np.cov(x.T)) ** 2).sum()) / 4
                     for x in (a, b))
    assert terms["invariance"] == pytest.approx(invariance, rel=1e-5)
    assert terms["variance"] == pytest.approx(variance, rel=1e-5)
    assert terms["covariance"] == pytest.approx(covariance, rel=1e-4)
    assert float(loss) == pytest.approx(2 * invariance + 3 * variance + 4 * covariance, rel=1e-4)


def test_random_masking_counts_and_inverse():
    gen = torch.Generator().manual_seed(0)
    keep, mask, restore = random_masking(5, 16, 0.75, gen)
    assert keep.shape == (5, 4) and mask.shape == (5, 16)
    assert torch.all(mask.sum(1) == 12)  # 75% hidden, per sample
    for b in range(5):
        assert set(keep[b].tolist()) == {i for i in range(16) if mask[b, i] == 0}
    shuffle = restore.argsort(1)  # [visible; hidden] order
    assert torch.equal(shuffle[:, :4], keep)
    patches = torch.arange(16).expand(5, 16)
    assert torch.equal(torch.gather(torch.gather(patches, 1, shuffle), 1, restore), patches)
    assert len({tuple(k.tolist()) for k in keep}) > 1  # per-sample draws


def test_masked_reconstruction_counts_only_hidden_patches():
    torch.manual_seed(0)
    images = torch.randn(2, 1, 4, 4)
    target = patchify(images, 2)
    assert target.shape == (2, 4, 4)
    assert torch.equal(target[0, 1], images[0, 0, 0:2, 2:4].reshape(-1))  # row-major patches
    mask = torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0]])
    pred = torch.randn(2, 4, 4)
    naive = sum(float(((pred[b, n] - target[b, n]) ** 2).mean())
                for b in range(2) for n in range(4) if mask[b, n]) / 3
    assert float(masked_reconstruction(pred, target, mask, norm_pix=False)) == \
        pytest.approx(naive, rel=1e-5)
    visible_changed = pred.clone()
    visible_changed[mask == 0] += 100  # the loss ignores what the encoder saw
    assert float(masked_reconstruction(visible_changed, target, mask, norm_pix=False)) == \
        pytest.approx(naive, rel=1e-5)
    normed = masked_reconstruction(pred, target, mask, norm_pix=True)
    t = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    assert float(normed) == pytest.approx(
        float((((pred - t) ** 2).mean(-1) * mask).sum() / 3), rel=1e-5)
