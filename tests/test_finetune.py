"""Fine-tuning and SimCLRv2-style distillation: the loss against a per-sample loop, and a
student that really learns from a teacher's predictions on unlabelled images."""

import numpy as np
import pytest
import torch

from selfsight.backbones import Backbone, backbone_config
from selfsight.eval.finetune import accuracy, soft_cross_entropy, train_classifier

TINY = {"stem_stride": 2, "channels": (8, 16, 32, 64)}


def test_soft_cross_entropy_matches_a_loop():
    gen = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(5, 4, generator=gen), torch.randn(5, 4, generator=gen)
    for t in (0.5, 1.0, 3.0):
        expected = 0.0
        for s_row, t_row in zip(student.tolist(), teacher.tolist()):
            p = [np.exp(v / t) for v in t_row]
            log_z = np.log(sum(np.exp(v / t) for v in s_row))
            expected -= sum(pi / sum(p) * (si / t - log_z) for pi, si in zip(p, s_row))
        assert soft_cross_entropy(student, teacher, t).item() == pytest.approx(expected / 5,
                                                                               rel=1e-5)
    # A confident teacher makes it the ordinary cross-entropy with the teacher's argmax.
    hard = torch.nn.functional.cross_entropy(student, teacher.argmax(1))
    assert soft_cross_entropy(student, teacher * 1e4, 1.0).item() == pytest.approx(hard.item(),
                                                                                   rel=1e-4)


def test_distillation_needs_teacher_and_unlabelled_images(fmnist_small):
    backbone = Backbone(backbone_config("resnet18", 1, 20, TINY))
    with pytest.raises(ValueError, match="teacher and unlabeled"):
        train_classifier(backbone, fmnist_small.images[:8], fmnist_small.labels[:8], 10, 1,
                         unlabeled=fmnist_small.images, progress=False)


def test_a_student_learns_the_teacher_from_unlabelled_images(fmnist_small):
    """Three labels per class alone against the same labels plus a teacher's soft predictions
    on 1,500 unlabelled images: the distilled student is far better on held-out images."""
    torch.manual_seed(0)
    start = Backbone(backbone_config("resnet18", 1, 20, TINY))
    images, labels = fmnist_small.images, fmnist_small.labels
    pool, held_out = np.arange(1500), np.arange(1500, 2000)
    few = np.concatenate([np.flatnonzero(labels[pool] == c)[:3] for c in range(10)])

    def fit(index, steps, **kw):
        return train_classifier(start, images[index], labels[index], 10, steps, batch_size=128,
                                lr=3e-3, progress=False, **kw)

    def score(model):
        return accuracy(model, images[held_out], labels[held_out], torch.device("cpu"))

    teacher = fit(pool, 120)
    alone = fit(few, 120)
    student = fit(few, 120, teacher=teacher, unlabeled=images[pool])
    print(f"teacher {score(teacher):.3f}, labels alone {score(alone):.3f}, "
          f"distilled {score(student):.3f}")
    assert score(teacher) > 0.65
    assert score(student) > score(alone) + 0.08
    assert score(student) > score(teacher) - 0.12
