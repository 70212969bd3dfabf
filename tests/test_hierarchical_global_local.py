"""The two methods of our own: hierarchical multi-level contrastive and global+local (MNCLGLF),
against slow references, plus important-sample batch sampling."""

import copy
import math
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import selfsight
from selfsight.api import backbone_config
from selfsight.methods import get_method
from selfsight.methods.global_local import PAIRS
from selfsight.train.loader import StepBatchSampler
from test_losses import naive_nt_xent

TINY = {"stem_stride": 2, "channels": (8, 16, 32, 64)}


def build(name: str, **options):
    cfg = backbone_config("resnet18", 1, 16, TINY)
    cls = get_method(name)
    torch.manual_seed(0)
    config = replace(cls.default_config(cfg), proj_hidden_dim=32, **options)
    return cls(backbone=cfg, config=config, views=cls.default_views(16))


def views(n=6, count=2):
    torch.manual_seed(1)
    return [torch.randn(n, 1, 16, 16) for _ in range(count)]


@pytest.mark.parametrize("start_weights", [(), (0.0, 0.2, 0.5, 1.0)])
def test_hierarchical_loss_is_the_weighted_sum_of_per_level_nt_xent(start_weights):
    model = build("hierarchical", start_weights=start_weights).double()
    v = [x.double() for x in views()]
    loss, logs = model.compute_loss(v)
    cfg = model.config
    weights = start_weights or cfg.weights  # progress 0 outside a trainer
    expected = 0.0
    for i, level in enumerate(cfg.levels):
        z1, z2 = (model.heads[i](model.backbone.model.forward_intermediates(
            x, indices=[level], intermediates_only=True)[0].mean((2, 3))) for x in v)
        expected += weights[i] * naive_nt_xent(z1.detach(), z2.detach(), cfg.temperatures[i])
    assert float(loss) == pytest.approx(expected, rel=1e-4)
    assert model.sample_losses.shape == (6,)
    assert set(logs) == {f"loss_level{level}" for level in cfg.levels}


def test_coarse_to_fine_weights_move_from_start_to_end():
    model = build("hierarchical")
    model.time_budget, model.elapsed_before = 100.0, 50.0  # half-way through a time budget
    model._fit_started = time.monotonic()
    mid = model.level_weights()
    for s, w, m in zip(model.config.start_weights, model.config.weights, mid, strict=True):
        assert m == pytest.approx((s + w) / 2, abs=0.01)
    assert model.config.start_weights[0] < mid[0] < model.config.weights[0]


def test_hierarchical_rejects_mismatched_levels():
    with pytest.raises(ValueError, match="weights"):
        build("hierarchical", weights=(1.0, 1.0))
    with pytest.raises(ValueError, match="beyond"):
        build("hierarchical", levels=(1, 9), weights=(1, 1), temperatures=(0.2, 0.2),
              start_weights=())


def test_global_local_positive_is_the_queue_nearest_neighbour():
    model = build("globallocal", queue_size=5, proj_dim=4)
    model.queue.copy_(torch.cat([torch.eye(4), -torch.eye(4)[:1]]))
    z = torch.tensor([[0.1, 0.0, 3.0, 0.2], [-1.0, 0.0, 0.0, 0.0]])
    picked = model.positive(z)
    assert torch.equal(picked[0], model.queue[2])
    assert torch.equal(picked[1], model.queue[4])
    model.enqueue(torch.ones(2, 4))
    assert torch.allclose(model.queue[:2], torch.full((2, 4), 0.5))
    assert int(model.queue_pointer) == 2


def naive_local_term(preds, view, model, t):
    """InfoNCE of each prediction against the 6 pair-averaged patch embeddings, image by image."""
    with torch.no_grad():
        h = view.shape[-1] // 2
        feats = [model.backbone(view[..., i * h:(i + 1) * h, j * h:(j + 1) * h])
                 for i in (0, 1) for j in (0, 1)]
        local = [F.normalize(model.projector((feats[a] + feats[b]) / 2), dim=1) for a, b in PAIRS]
    total, count = 0.0, 0
    for p in preds:
        p = F.normalize(p, dim=1)
        for z in local:
            for i in range(len(p)):
                logits = [float(p[i] @ z[j]) / t for j in range(len(p))]
                total += -(logits[i] - math.log(sum(math.exp(x) for x in logits)))
                count += 1
    return total / count


def test_global_local_losses_match_references_and_release_flag_kills_the_local_gradient():
    model = build("globallocal", queue_size=64, temperature=0.5)
    model.eval()  # batch-norm statistics fixed: the reference recomputes the same forwards
    v = views(count=3)
    loss, logs = copy.deepcopy(model).compute_loss(v)
    p1, p2 = (model.predictor(model.projector(model.backbone(x))) for x in v[:2])
    assert logs["loss_local"] == pytest.approx(naive_local_term([p1, p2], v[2], model, 0.5),
                                               rel=1e-4)
    with torch.no_grad():
        m1, m2 = (model.momentum_projector(model.momentum_backbone(x)) for x in v[:2])
        n1, n2 = model.positive(m1), model.positive(m2)
    expected_global = (naive_nt_xent(n1, p2.detach(), 0.5)
                       + naive_nt_xent(n2, p1.detach(), 0.5)) / 2
    assert logs["loss_global"] == pytest.approx(expected_global, rel=1e-4)
    assert float(loss) == pytest.approx(6 * logs["loss_global"] + logs["loss_local"], rel=1e-5)

    def grads(**options):
        m = copy.deepcopy(model)
        m.config = replace(m.config, **options)
        m.compute_loss(v)[0].backward()
        return torch.cat([p.grad.flatten() for p in m.backbone.parameters()])

    no_local = grads(local_weight=0.0)
    assert torch.allclose(grads(release_gradient=True), no_local, atol=1e-6)  # trains nothing
    assert not torch.allclose(grads(), no_local, atol=1e-4)  # the intended gradient


def test_important_samples_come_back_more_often_and_every_image_once_per_epoch():
    scores = torch.ones(100)
    scores[:5] = 50.0  # five images with a high recent loss
    sampler = StepBatchSampler(100, 20, seed=3, scores=scores, importance=0.25)
    assert sampler.walked == 15 and sampler.steps_per_epoch == 6
    batches = list(sampler)
    walked = np.concatenate([b[:15] for b in batches])
    assert len(set(walked.tolist())) == len(walked) == 90  # no repeats within the epoch
    drawn = np.concatenate([b[15:] for b in batches])
    assert np.isin(drawn, np.arange(5)).mean() > 0.5  # 5% of images, most of the draws
    again = StepBatchSampler(100, 20, seed=3, scores=scores, importance=0.25, start_step=2)
    assert next(iter(again)) == batches[2]  # a pure function of the step and the scores


def test_importance_sampling_trains_and_records_losses(fmnist_small, tmp_path):
    run = selfsight.pretrain(fmnist_small.subset(range(256)), "simclr", "resnet18", tmp_path,
                             batch_size=64, max_steps=3, view_size=16, progress=False,
                             importance=0.25, backbone_options=TINY,
                             options={"proj_hidden_dim": 32})
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    scores = next(v for k, v in state.items() if "StepDataModule" in k)["scores"]
    assert (scores != 1).sum() >= 3 * 48  # every image seen has its own loss recorded
    with pytest.raises(ValueError, match="per-image losses"):
        selfsight.pretrain(fmnist_small.subset(range(256)), "byol", "resnet18", tmp_path / "b",
                           batch_size=64, max_steps=1, view_size=16, progress=False,
                           importance=0.25, backbone_options=TINY)
